"""max_pool2d(conv2d(x, w, b, padding=1), 2), with or without a ReLU after it, on the CPU in fp32
as one compiled pass, and its backward through the pooling's winners only (pooled_conv.c says how).

    if usable(x, conv, pool, modules):
        y = pooled_conv_relu(x, conv.weight, conv.bias)      # (N, C_out, H/2, W/2), channels_last
        y = pooled_conv(x, conv.weight, conv.bias)           # the same without the ReLU

The outputs are ATen's; the gradients are the same sums added in another order (they agree to
fp32 rounding), and they do not depend on the thread count. With winograd=True (the fast models)
the forward's products are Winograd's F(2x2, 3x3), 16 per window and channel pair instead of 36:
its outputs too agree with ATen's to fp32 rounding, not bitwise. Where the compiled library is missing,
turned off, or the layers are not exactly conv 3x3 'same' + max pool 2 (or anything watches the
layers: hooks, tracing, autocast), usable() is False and the caller runs ATen's operators.
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from .build import library
from .guards import parallel, recorded, same_conv3x3, watched

_P, _I = ctypes.c_void_p, ctypes.c_int
# Winograd's F(2x2, 3x3) filter transform (Lavin and Gray, 2016)
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _lib() -> ctypes.CDLL | None:
    lib = library("pooled_conv.c")
    if lib is not None and not getattr(lib, "_typed", False):
        lib.pooled_conv_forward.argtypes = [_P] * 5 + [_I] * 7
        lib.pooled_conv_forward.restype = None
        lib.pooled_conv_winograd.argtypes = [_P] * 5 + [_I] * 7
        lib.pooled_conv_winograd.restype = None
        lib.pooled_conv_backward.argtypes = [_P] * 8 + [_I] * 7
        lib.pooled_conv_backward.restype = None
        lib.pooled_conv_threaded.restype = _I
        lib._threaded = bool(lib.pooled_conv_threaded())
        lib._typed = True
    return lib


def _ptr(t: torch.Tensor | None):
    return None if t is None else t.data_ptr()


def usable(x: torch.Tensor, conv: nn.Conv2d, pool: nn.Module, modules=()) -> bool:
    """Whether conv -> max pool (-> ReLU) on x can run compiled, with ATen's results; modules:
    other layers the compiled pass stands for (a hook on any of them keeps ATen's)."""
    if recorded():
        return False
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.shape[2] >= 2 and x.shape[3] >= 2 and x.numel() > 0):
        return False
    if not (same_conv3x3(conv) and conv.out_channels % 16 == 0):
        return False
    if not (type(pool) is nn.MaxPool2d and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2))
            and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1)) and not pool.ceil_mode
            and not pool.return_indices):
        return False
    return not watched((conv, pool, *modules)) and parallel(_lib())


class _PooledConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, relu, train, winograd):
        lib = _lib()
        x = x.contiguous(memory_format=torch.channels_last)
        n, cin, h, w = x.shape
        cout = weight.shape[0]
        out = torch.empty((n, cout, h // 2, w // 2), memory_format=torch.channels_last)
        arg = torch.empty((n, h // 2, w // 2, cout), dtype=torch.uint8) if train else None
        b = None if bias is None else bias.detach().contiguous()
        if winograd and cin % 8 == 0:
            # G g G^T: (cout / 16, 16 of the 4x4 tile, cin, 16), in float64 and rounded once
            u = (_G @ weight.detach().double() @ _G.T).reshape(cout // 16, 16, cin, 16)
            u = u.permute(0, 3, 2, 1).contiguous().float()
            lib.pooled_conv_winograd(_ptr(x), _ptr(u), _ptr(b), _ptr(out), _ptr(arg), n, h, w, cin, cout,
                                     int(relu), torch.get_num_threads())
        else:
            # (cout / 16, ky, kx, cin, 16): each 16 output channels' weights in one contiguous block
            wf = weight.detach().reshape(cout // 16, 16, cin, 3, 3).permute(0, 3, 4, 2, 1).contiguous()
            lib.pooled_conv_forward(_ptr(x), _ptr(wf), _ptr(b), _ptr(out), _ptr(arg), n, h, w, cin, cout,
                                    int(relu), torch.get_num_threads())
        if train:
            ctx.relu, ctx.bias = relu, bias is not None
            ctx.save_for_backward(x, weight, out if relu else None, arg)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, weight, out, arg = ctx.saved_tensors
        n, cin, h, w = x.shape
        cout = weight.shape[0]
        g = g.contiguous(memory_format=torch.channels_last)
        want_dx = ctx.needs_input_grad[0]
        wd = None
        if want_dx and cin % 8 == 0:  # (cin / 8, cout, ky, kx, 8): vector j of every channel's taps together
            wd = weight.detach().reshape(cout, cin // 8, 8, 3, 3).permute(1, 0, 3, 4, 2).contiguous()
        elif want_dx:  # (cout, ky, kx, cin)
            wd = weight.detach().permute(0, 2, 3, 1).contiguous()
        dx = torch.empty((n, cin, h, w), memory_format=torch.channels_last) if want_dx else None
        dw = torch.empty((cout, 3, 3, cin))
        db = torch.empty(cout) if ctx.bias else None
        _lib().pooled_conv_backward(_ptr(x), _ptr(g), _ptr(out), _ptr(arg), _ptr(wd), _ptr(dx), _ptr(dw),
                                    _ptr(db), n, h, w, cin, cout, int(ctx.relu), torch.get_num_threads())
        return dx, dw.permute(0, 3, 1, 2).contiguous(), db, None, None, None


def pooled_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                relu: bool = False, winograd: bool = False) -> torch.Tensor:
    """max_pool2d(conv2d(x, weight, bias, padding=1), 2), then relu where asked, compiled (check
    usable() first): (N, C_out, H // 2, W // 2) in channels_last memory. winograd: the forward by
    F(2x2, 3x3) where C_in is a multiple of 8 (outputs equal to ATen's to rounding, not bitwise)."""
    train = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                         or (bias is not None and bias.requires_grad))
    return _PooledConv.apply(x, weight, bias, relu, train, winograd)


def pooled_conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """relu(max_pool2d(conv2d(x, weight, bias, padding=1), 2)), compiled (check usable() first)."""
    return pooled_conv(x, weight, bias, relu=True)
