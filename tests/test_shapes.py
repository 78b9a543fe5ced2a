"""Oracle tests: cnnlab.network.shapes against the shapes real PyTorch layers produce (or refuse).

Each axis's arithmetic is checked against PyTorch on every case of the declared ranges (a grid of
1-row images, where a layer's width is its 1-D rule); property tests then draw 2-D layers to check
that H and W each follow their own axis, through nn.Conv2d / nn.MaxPool2d / nn.AvgPool2d themselves.
"""
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cnnlab.network.shapes import conv2d_out, pool2d_out, same_padding

SIZES, KERNELS, STRIDES, PADDINGS, DILATIONS = range(1, 65), range(1, 10), range(1, 5), range(0, 5), range(1, 4)
sizes = st.integers(SIZES[0], SIZES[-1])
kernels = st.integers(KERNELS[0], KERNELS[-1])
strides = st.integers(STRIDES[0], STRIDES[-1])
paddings = st.integers(PADDINGS[0], PADDINGS[-1])
dilations = st.integers(DILATIONS[0], DILATIONS[-1])
pairs = lambda s: st.tuples(s, s)  # noqa: E731
# Every 1-D case is in the grids below; a 2-D draw only has to catch H and W mixed up or a pair
# handled unlike two ints, which any few hundred asymmetric layers do.
ORACLE = settings(max_examples=300, deadline=None, derandomize=True)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These layers are tiny: on two threads each call waits on the other thread, which on a busy
    machine costs 100 times the arithmetic. The shapes are the same on any number of threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def ours_1d(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return None


def torch_width(op, n, *args):
    """The width that F.<op> gives a 1x1x1xN image (its 1-D rule), or None where PyTorch raises."""
    try:
        with torch.no_grad():
            return op(torch.zeros(1, 1, 1, n), *args).shape[-1]
    except (RuntimeError, ValueError):
        return None


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_conv_out_of_one_axis_matches_pytorch_on_every_case():
    weights = {k: torch.zeros(1, 1, 1, k) for k in KERNELS}
    for n, k, s, p, d in itertools.product(SIZES, KERNELS, STRIDES, [*PADDINGS, "same", "valid"], DILATIONS):
        pad = p if isinstance(p, str) else (0, p)
        expected = torch_width(F.conv2d, n, weights[k], None, (1, s), pad, (1, d))
        assert ours_1d(conv2d_out, n, k, s, p, d) == expected, (n, k, s, p, d)


def test_max_pool_out_of_one_axis_matches_pytorch_on_every_case():
    for n, k, s, p, d, ceil in itertools.product(SIZES, KERNELS, STRIDES, PADDINGS, DILATIONS, (False, True)):
        expected = torch_width(F.max_pool2d, n, (1, k), (1, s), (0, p), (1, d), ceil)
        assert ours_1d(pool2d_out, n, k, s, p, d, ceil) == expected, (n, k, s, p, d, ceil)


def test_avg_pool_out_of_one_axis_matches_pytorch_on_every_case():
    for n, k, s, p, ceil in itertools.product(SIZES, KERNELS, [None, *STRIDES], PADDINGS, (False, True)):
        expected = torch_width(F.avg_pool2d, n, (1, k), None if s is None else (1, s), (0, p), ceil)
        assert ours_1d(pool2d_out, n, k, s, p, 1, ceil) == expected, (n, k, s, p, ceil)


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


@ORACLE
@given(size=pairs(sizes), k=pairs(kernels), s=st.one_of(st.none(), pairs(strides)),
       p=pairs(paddings), ceil=st.booleans())
def test_pool2d_out_matches_nn_avgpool2d(size, k, s, p, ceil):
    layer = nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    assert ours(pool2d_out, size, k, s, p, 1, ceil) == torch_shape(layer, *size)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
def test_same_padding_keeps_size_as_pytorch_same_on_every_case():
    for n, k, d in itertools.product(SIZES, KERNELS, DILATIONS):
        pad = same_padding(k, dilation=d)
        layer = nn.Conv2d(1, 1, (1, k), padding="same", dilation=(1, d), bias=False)
        assert torch_shape(layer, 1, n) == (1, n), (n, k, d)
        if isinstance(pad, int):
            assert conv2d_out(n, k, padding=pad, dilation=d) == n
            assert torch_shape(nn.Conv2d(1, 1, (1, k), padding=(0, pad), dilation=(1, d)), 1, n) == (1, n)
        else:  # even effective kernel: asymmetric pad, as PyTorch's 'same' does
            left, right = pad
            assert right == left + 1, (n, k, d)
            padded = F.pad(torch.zeros(1, 1, 1, n), (left, right))
            conv = nn.Conv2d(1, 1, (1, k), dilation=(1, d))
            assert tuple(conv(padded).shape[2:]) == (1, n), (n, k, d)


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
