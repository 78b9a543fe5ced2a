"""Compiled CPU kernels for the layers where ATen's general ones leave speed behind, built from C
on first use with the machine's compiler (build.library) and skipped cleanly where none builds.

    from cnnlab.network.kernels import pooled_conv, pooled_conv_relu, usable
    from cnnlab.network.kernels import GELU, gelu, gelu_usable
    from cnnlab.network.kernels import conv3x3, conv_usable
"""

from ...lazy import face

_FACE = {'GELU': 'activation',
         'gelu': 'activation',
         'gelu_usable': 'activation',
         'library': 'build',
         'enabled': 'build',
         'usable': 'pooled',
         'conv3x3': 'winograd',
         'conv_usable': 'winograd',
         'pooled_conv': 'pooled',
         'pooled_conv_relu': 'pooled'}
__all__ = sorted(_FACE)
__getattr__, __dir__ = face(__name__, _FACE)
