"""Shape arithmetic for convolution and pooling layers: the course's Exercise 1 as pure functions.

    conv2d_out(32, 7, padding=3)       -> 32     floor((32 + 2*3 - 1*(7-1) - 1)/1) + 1
    pool2d_out(32, 2)                  -> 16
    same_padding(7)                    -> 3
    layer_out("pool2", pool2d_out, 1, 2)  -> ValueError "pool2 (input 1x1): pool kernel 2 ..."

The rules are PyTorch's, checked against nn.Conv2d / nn.MaxPool2d / nn.AvgPool2d by property
tests (tests/test_shapes.py). Wherever a size, kernel, stride, padding or dilation is accepted
as an int, an (H, W) pair is accepted too, and the answer is then a pair. Invalid layers raise
ValueError saying why, in the numbers of the case. No torch needed.
"""
from __future__ import annotations

from typing import Union

Size = Union[int, tuple[int, int]]


def _per_dim(fn, *args):
    """Apply fn to each of H and W when any argument is a pair, else once."""
    if not any(isinstance(a, (tuple, list)) for a in args):
        return fn(*args)
    pairs = []
    for a in args:
        if isinstance(a, (tuple, list)):
            if len(a) != 2:
                raise ValueError(f"expected an int or an (H, W) pair, got {tuple(a)}")
            pairs.append(tuple(a))
        else:
            pairs.append((a, a))
    return tuple(fn(*(p[i] for p in pairs)) for i in range(2))


def _check_positive(**values):
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an integer, got {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Pixels a dilated kernel spans: d*(k-1) + 1."""
    return dilation * (kernel - 1) + 1


def conv2d_out(n: Size, kernel: Size, stride: Size = 1, padding: Size | str = 0,
               dilation: Size = 1):
    """Output size of a convolution: floor((n + 2p - d(k-1) - 1)/s) + 1.

    padding may be an int, 'valid' (0) or 'same' (output = input; PyTorch allows it only
    at stride 1 and pads d(k-1)//2 on the left, the rest on the right).
    """
    return _per_dim(_conv_out_1d, n, kernel, stride, padding, dilation)


def _conv_out_1d(n, kernel, stride, padding, dilation):
    _check_positive(size=n, kernel=kernel, stride=stride, dilation=dilation)
    span = effective_kernel(kernel, dilation)
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if stride != 1:
            raise ValueError(f"padding='same' needs stride 1 (PyTorch's rule), got stride {stride}: "
                             f"use an explicit padding with strided convolutions")
        return n
    elif isinstance(padding, str):
        raise ValueError(f"padding must be an integer, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    padded = n + 2 * padding
    if span > padded:
        raise ValueError(f"kernel {kernel} with dilation {dilation} spans {span} pixels "
                         f"but the padded input has only {padded} ({n} + 2*{padding})")
    return (padded - span) // stride + 1


def pool2d_out(n: Size, kernel: Size, stride: Size | None = None, padding: Size = 0,
               dilation: Size = 1, ceil_mode: bool = False):
    """Output size of max or average pooling (average pooling: dilation 1).

    floor((n + 2p - d(k-1) - 1)/s) + 1, or with ceil_mode the ceiling, less one when the last
    window would start beyond the input and its left padding. stride defaults to kernel;
    padding may be at most half the kernel (PyTorch's limit).
    """
    if stride is None:
        stride = kernel
    return _per_dim(lambda *a: _pool_out_1d(*a, ceil_mode), n, kernel, stride, padding, dilation)


def _pool_out_1d(n, kernel, stride, padding, dilation, ceil_mode):
    _check_positive(size=n, kernel=kernel, stride=stride, dilation=dilation)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"pooling padding must be a non-negative integer, got {padding!r}")
    span = effective_kernel(kernel, dilation)
    if padding > kernel // 2:
        raise ValueError(f"pooling padding {padding} is more than half the kernel {kernel} "
                         f"(PyTorch allows at most {kernel // 2})")
    numerator = n + 2 * padding - span
    if ceil_mode:
        out = -(-numerator // stride) + 1
        if (out - 1) * stride >= n + padding:  # last window must start inside input or left pad
            out -= 1
    else:
        out = numerator // stride + 1
    if out < 1:
        raise ValueError(f"pool kernel {kernel} with dilation {dilation} spans {span} pixels "
                         f"but the padded input has only {n + 2 * padding} ({n} + 2*{padding})")
    return out


def same_padding(kernel: Size, stride: Size = 1, dilation: Size = 1):
    """The padding P that keeps the size: solve (n + 2P - d(k-1) - 1)/1 + 1 = n, P = d(k-1)/2.

    Returns an int when d(k-1) is even. When it is odd (an even effective kernel) no symmetric
    padding keeps the size; the (left, right) pair that PyTorch's padding='same' uses is
    returned instead: (d(k-1)//2, d(k-1) - d(k-1)//2).
    """
    return _per_dim(_same_padding_1d, kernel, stride, dilation)


def _same_padding_1d(kernel, stride, dilation):
    _check_positive(kernel=kernel, stride=stride, dilation=dilation)
    if stride != 1:
        raise ValueError(f"no padding keeps the size at stride {stride}: the output is about "
                         f"n/{stride} whatever the padding (PyTorch allows 'same' at stride 1 only)")
    total = dilation * (kernel - 1)
    if total % 2 == 0:
        return total // 2
    return (total // 2, total - total // 2)


def layer_out(name: str, rule, n: Size, *args, **kwargs):
    """rule(n, *args, **kwargs) (conv2d_out or pool2d_out) for the layer called name: a model
    computing its sizes this way refuses an input too small for it by naming the layer."""
    try:
        return rule(n, *args, **kwargs)
    except ValueError as e:
        shown = "x".join(map(str, n)) if isinstance(n, (tuple, list)) else f"{n}x{n}"
        raise ValueError(f"{name} (input {shown}): {e}") from None
