"""Data: where images come from (CIFAR-10, image folders, tensors from Python), decoded once by one
decoder into uint8 tensors and cached.

    from cnnlab.data import load, split_indices, channel_stats, normalize
    data = load("mydir", size=64)        # ImageData: train_x (N, 3, 64, 64) uint8, train_y, test_x, ...
    image = load_image("photo.jpg", 64)  # the decoder training and predict share (decode.py)
"""

from ..lazy import face

# name -> the module of this package that defines it; imported on first use, so that importing
# the package costs nothing and no module imports another at load time through it
_FACE = {'ImageData': 'dataset',
         'load': 'dataset',
         'split_indices': 'dataset',
         'channel_stats': 'dataset',
         'normalize': 'dataset',
         'parse_val_size': 'dataset',
         'cache_dir': 'dataset',
         'load_image': 'decode',
         'decode_one': 'decode',
         'to_rgb': 'decode',
         'fit': 'decode'}
__all__ = sorted(_FACE)
__getattr__, __dir__ = face(__name__, _FACE)
