"""The network pieces: shape arithmetic, layers, the model registry and model summaries."""
