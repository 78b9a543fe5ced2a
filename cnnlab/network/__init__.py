"""The network pieces: shape arithmetic, layers, the model registry and model summaries.

    from cnnlab.network import conv2d_out, create, summarize
    conv2d_out(32, kernel=7, padding=3)      # 32: floor((N + 2P - K)/S) + 1
    summarize(create("seed"), (1, 3, 32, 32))
"""

from ..lazy import face

# name -> the module of this package that defines it; imported on first use, so that importing
# the package costs nothing and no module imports another at load time through it
_FACE = {'conv2d_out': 'shapes',
         'pool2d_out': 'shapes',
         'same_padding': 'shapes',
         'layer_out': 'shapes',
         'create': 'models',
         'count_params': 'models',
         'MODELS': 'models',
         'summarize': 'summary',
         'compare': 'summary'}
__all__ = sorted(_FACE)
__getattr__, __dir__ = face(__name__, _FACE)
