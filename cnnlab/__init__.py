"""cnnlab: teach and train convolutional neural networks on CIFAR-10 and image folders."""

__version__ = "0.2.0"
