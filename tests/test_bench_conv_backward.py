"""benchmarks/conv_backward.py: the weight gradient as one product of the unfolded input is the
conv's weight gradient, and the shapes it times are fast-94's 3x3 convs."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.network.shapes import conv2d_out, pool2d_out
from test_bench_isa import load_benchmark

conv_backward = load_benchmark("conv_backward")


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), cin=st.integers(1, 6), cout=st.integers(1, 6), h=st.integers(1, 9),
       w=st.integers(1, 9), seed=st.integers(0, 2**16), layout=st.sampled_from(["cl", "nchw"]))
def test_the_unfolded_weight_gradient_is_the_convs(n, cin, cout, h, w, seed, layout):
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    x = torch.randn(n, cin, h, w, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    grad = torch.randn(n, cout, h, w, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    expected = torch.nn.grad.conv2d_weight(x, (cout, cin, 3, 3), grad, padding=1)
    torch.testing.assert_close(conv_backward.unfolded_weight_gradient(x, grad), expected)


def test_the_shapes_are_fast_94s_3x3_convs_by_its_shape_arithmetic():
    hw = conv2d_out(32, 2, 1)  # the 2x2 whitening conv, no padding: 31
    expected = []
    for c_in, c_out in zip((2 * 3 * 4, 64, 256), (64, 256, 256)):
        expected.append((c_in, c_out, hw))  # the first conv runs before the block's pool
        hw = pool2d_out(hw, 2)
        expected.append((c_out, c_out, hw))
    # 256 -> 256 at 7x7 twice (the middle block's second conv, the last block's first): timed once
    assert conv_backward.fast_94_shapes() == list(dict.fromkeys(expected))
