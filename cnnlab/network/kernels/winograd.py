"""conv2d(x, w, padding=1) for a 3x3 conv without bias, on the CPU in fp32, by Winograd's F(4x4, 3x3):
36 products per 4x4 output tile and channel pair instead of 144, forward and backward.

    if conv_usable(x, conv):
        y = conv3x3(x, conv.weight)                          # (N, C_out, H, W), channels_last

The data transforms are compiled (winograd.c says how); the products between them are 36 matrix
products (torch.bmm), so the forward, the input gradient and the weight gradient each cost about
a quarter of a direct convolution's multiplies, plus the transforms' passes over memory. That pays
from 32 channels on (fast-94's 256 -> 256 conv at 7x7 in 0.44x oneDNN's time, forward and
backward, its 64 -> 64 at 15x15 in 0.54x, where a training process reuses freed memory); at 16
channels ATen's direct convolution stays faster, and conv_usable() says no. The results agree with
ATen's to fp32 rounding (of values about 10x the result's size), not bitwise; they do not depend on
the thread count beyond what torch.bmm's do. Where the library is missing or turned off, or
anything watches the layer (hooks, tracing, autocast), conv_usable() is False and the caller runs
ATen's conv2d.
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .build import library
from .guards import parallel, recorded, same_conv3x3, watched

_P, _I = ctypes.c_void_p, ctypes.c_int
# Winograd's F(4x4, 3x3) filter transform, points 0, 1, -1, 2, -2, infinity (Lavin and Gray, 2016)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
MIN_CHANNELS = 32  # below this ATen's direct convolution is as fast (benchmarks/winograd.py)


def _lib() -> ctypes.CDLL | None:
    lib = library("winograd.c")
    if lib is not None and not getattr(lib, "_typed", False):
        for name in ("winograd_input", "winograd_input_adjoint", "winograd_output", "winograd_output_adjoint"):
            getattr(lib, name).argtypes = [_P] * 2 + [_I] * 5
            getattr(lib, name).restype = None
        lib.winograd_threaded.restype = _I
        lib._threaded = bool(lib.winograd_threaded())
        lib._typed = True
    return lib


def conv_usable(x: torch.Tensor, conv: nn.Module, min_channels: int = MIN_CHANNELS) -> bool:
    """Whether conv(x) can run by conv3x3: a bias-free 3x3 'same' conv of fp32 CPU maps whose
    channel counts are multiples of 8 and at least min_channels, that nothing watches."""
    if recorded():
        return False
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.numel() > 0):
        return False
    if not (same_conv3x3(conv) and conv.bias is None
            and conv.in_channels % 8 == 0 and conv.out_channels % 8 == 0
            and min(conv.in_channels, conv.out_channels) >= min_channels):
        return False
    return not watched((conv,)) and parallel(_lib())


def _tiles(n: int, h: int, w: int) -> int:
    return n * ((h + 3) // 4) * ((w + 3) // 4)


def _filters(weight: torch.Tensor) -> torch.Tensor:
    """G w G^T of every channel pair: (36, C_in, C_out), in float64 and rounded once."""
    cout, cin = weight.shape[:2]
    w = weight.detach().double().permute(3, 2, 1, 0).reshape(3, 3, cin * cout)  # (l, k, pairs)
    return torch.matmul(_G, torch.matmul(_G, w).transpose(0, 1)).reshape(36, cin, cout).float()


def _filter_gradient(du: torch.Tensor) -> torch.Tensor:
    """G^T dU G of every channel pair (the adjoint of _filters): (C_out, C_in, 3, 3)."""
    cin, cout = du.shape[1:]
    d = du.double().reshape(6, 6, cin * cout)                                 # (a, b, pairs)
    k = torch.matmul(_G.T, torch.matmul(_G.T, d).transpose(0, 1))             # (l, k, pairs)
    return k.reshape(3, 3, cin, cout).permute(3, 2, 1, 0).contiguous().float()


class _Conv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight):
        lib, threads = _lib(), torch.get_num_threads()
        x = x.contiguous(memory_format=torch.channels_last)
        n, cin, h, w = x.shape
        cout = weight.shape[0]
        v = torch.empty((36, _tiles(n, h, w), cin))
        lib.winograd_input(x.data_ptr(), v.data_ptr(), n, h, w, cin, threads)
        u = _filters(weight)
        m = torch.bmm(v, u)                                  # (36, tiles, C_out)
        y = torch.empty((n, cout, h, w), memory_format=torch.channels_last)
        lib.winograd_output(m.data_ptr(), y.data_ptr(), n, h, w, cout, threads)
        ctx.shape = (n, cin, h, w)
        ctx.save_for_backward(v if weight.requires_grad else None, u)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        lib, threads = _lib(), torch.get_num_threads()
        v, u = ctx.saved_tensors
        n, cin, h, w = ctx.shape
        cout = u.shape[2]
        g = g.contiguous(memory_format=torch.channels_last)
        dm = torch.empty((36, _tiles(n, h, w), cout))
        lib.winograd_output_adjoint(g.data_ptr(), dm.data_ptr(), n, h, w, cout, threads)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dv = torch.bmm(dm, u.transpose(1, 2))            # (36, tiles, C_in)
            dx = torch.empty((n, cin, h, w), memory_format=torch.channels_last)
            lib.winograd_input_adjoint(dv.data_ptr(), dx.data_ptr(), n, h, w, cin, threads)
        if ctx.needs_input_grad[1]:
            dw = _filter_gradient(torch.bmm(v.transpose(1, 2), dm))  # from (36, C_in, C_out)
        return dx, dw


def conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv2d(x, weight, padding=1) by F(4x4, 3x3), compiled transforms (check conv_usable()
    first): (N, C_out, H, W) in channels_last memory, equal to ATen's to fp32 rounding."""
    return _Conv3x3.apply(x, weight)
