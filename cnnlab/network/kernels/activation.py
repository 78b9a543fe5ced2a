"""GELU (the exact, erf form) on the CPU in fp32 as one compiled pass that also keeps its
derivative, so the backward pass is a product instead of a second evaluation (gelu.c says how).

    act = GELU()           # nn.GELU's drop-in: the compiled pass where gelu_usable(), else ATen's
    y = gelu(x)            # the function (check gelu_usable(x) first)

The values agree with ATen's to a few fp32 roundings (they are not ATen's bits), and do not
depend on the thread count. Where the compiled library is missing or turned off, x is not a CPU
fp32 tensor, or anything watches the layer (hooks, tracing, autocast), ATen's GELU runs instead.
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .build import library
from .guards import parallel, recorded, watched


def _lib() -> ctypes.CDLL | None:
    lib = library("gelu.c")
    if lib is not None and not getattr(lib, "_typed", False):
        lib.gelu_forward.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long, ctypes.c_int]
        lib.gelu_forward.restype = None
        lib._threaded = bool(lib.gelu_threaded())
        lib._typed = True
    return lib


def gelu_usable(x: torch.Tensor, modules=()) -> bool:
    """Whether GELU of x can run compiled; modules: the layers it stands for (a hook keeps ATen's)."""
    if recorded() or not (x.device.type == "cpu" and x.dtype == torch.float32 and x.numel() > 0):
        return False
    return not watched(modules) and parallel(_lib())


class _GELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, train):
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        y = torch.empty_like(x)  # the same strides: the pass runs over the memory in order
        d = torch.empty_like(x) if train else None
        _lib().gelu_forward(x.data_ptr(), y.data_ptr(), None if d is None else d.data_ptr(), x.numel(),
                            torch.get_num_threads())
        if train:
            ctx.save_for_backward(d)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        return g * d, None


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU(x) = x * Phi(x), compiled (check gelu_usable() first); its derivative is kept only where
    autograd will ask for it."""
    return _GELU.apply(x, torch.is_grad_enabled() and x.requires_grad)


class GELU(nn.GELU):
    """nn.GELU whose exact (erf) form runs compiled where gelu_usable(): the same module for
    summaries, hooks and saved models, ATen's operator wherever the compiled pass does not apply."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "none" and gelu_usable(x, (self,)):
            return gelu(x)
        return super().forward(x)
