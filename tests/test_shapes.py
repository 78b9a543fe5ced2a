"""Oracle tests: cnnlab.network.shapes against the shapes real PyTorch layers produce (or refuse)."""
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

from cnnlab.network.shapes import conv2d_out, pool2d_out, same_padding

sizes = st.integers(1, 64)
kernels = st.integers(1, 9)
strides = st.integers(1, 4)
paddings = st.integers(0, 4)
dilations = st.integers(1, 3)
pairs = lambda s: st.tuples(s, s)  # noqa: E731
ORACLE = settings(max_examples=4000, deadline=None, derandomize=True)


def torch_shape(layer, h, w):
    """(H, W) that the layer produces on a 1x1xHxW input, or None where PyTorch raises."""
    try:
        with torch.no_grad():
            return tuple(layer(torch.zeros(1, 1, h, w)).shape[2:])
    except (RuntimeError, ValueError):
        return None


def ours(fn, *args, **kwargs):
    try:
        return tuple(fn(*args, **kwargs))
    except ValueError:
        return None


@ORACLE
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@given(size=pairs(sizes), k=pairs(kernels), s=pairs(strides),
       p=st.one_of(pairs(paddings), st.sampled_from(["same", "valid"])), d=pairs(dilations))
def test_conv2d_out_matches_nn_conv2d(size, k, s, p, d):
    try:
        layer = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
    except (ValueError, RuntimeError):
        layer = None  # PyTorch refuses the layer itself ('same' with stride > 1)
    expected = torch_shape(layer, *size) if layer is not None else None
    assert ours(conv2d_out, size, k, s, p, d) == expected


@ORACLE
@given(size=pairs(sizes), k=pairs(kernels), s=pairs(strides), p=pairs(paddings),
       d=pairs(dilations), ceil=st.booleans())
def test_pool2d_out_matches_nn_maxpool2d(size, k, s, p, d, ceil):
    layer = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    assert ours(pool2d_out, size, k, s, p, d, ceil) == torch_shape(layer, *size)


@settings(max_examples=2500, deadline=None, derandomize=True)
@given(size=pairs(sizes), k=pairs(kernels), s=st.one_of(st.none(), pairs(strides)),
       p=pairs(paddings), ceil=st.booleans())
def test_pool2d_out_matches_nn_avgpool2d(size, k, s, p, ceil):
    layer = nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    assert ours(pool2d_out, size, k, s, p, 1, ceil) == torch_shape(layer, *size)


@settings(max_examples=500, deadline=None, derandomize=True)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@given(n=sizes, k=kernels, d=dilations)
def test_same_padding_keeps_size_as_pytorch_same(n, k, d):
    pad = same_padding(k, dilation=d)
    layer = nn.Conv2d(1, 1, k, padding="same", dilation=d, bias=False)
    assert torch_shape(layer, n, n) == (n, n)
    if isinstance(pad, int):
        assert conv2d_out(n, k, padding=pad, dilation=d) == n
        assert torch_shape(nn.Conv2d(1, 1, k, padding=pad, dilation=d), n, n) == (n, n)
    else:  # even effective kernel: asymmetric pad, as PyTorch's 'same' does
        left, right = pad
        assert right == left + 1
        padded = torch.nn.functional.pad(torch.zeros(1, 1, n, n), (left, right, left, right))
        conv = nn.Conv2d(1, 1, k, dilation=d)
        assert tuple(conv(padded).shape[2:]) == (n, n)


def test_report_exercise_1():
    # A 7x7 kernel at stride 1 on 1x1x32x32 keeps 32x32 with P = 3.
    assert same_padding(7) == 3
    assert conv2d_out(32, 7, 1, 3) == 32
    assert conv2d_out((32, 32), (7, 7), padding="same") == (32, 32)
    assert same_padding((7, 3)) == (3, 1)


def test_errors_explain_in_numbers():
    with pytest.raises(ValueError, match="kernel 7 with dilation 2 spans 13 pixels but the padded input has only 12"):
        conv2d_out(8, 7, padding=2, dilation=2)
    with pytest.raises(ValueError, match="stride 1"):
        conv2d_out(32, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="half the kernel"):
        pool2d_out(32, 2, padding=2)
    with pytest.raises(ValueError, match="at stride 2"):
        same_padding(3, stride=2)
    assert same_padding(4) == (1, 2)
