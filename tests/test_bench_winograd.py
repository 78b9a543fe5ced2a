"""benchmarks/winograd.py: Winograd convolution F(2x2 / 4x4, 3x3) against torch's conv2d, values
and gradients, and the conv shapes it times, found by running the model."""
import re

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.network.models import create
from cnnlab.network.shapes import conv2d_out, pool2d_out
from test_bench_isa import load_benchmark

winograd = load_benchmark("winograd")


@settings(max_examples=30, deadline=None)
@given(m=st.sampled_from([2, 4]), n=st.integers(1, 3), c=st.integers(1, 6), k=st.integers(1, 6),
       h=st.integers(1, 13), w=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_winograd_conv_is_conv2d_with_same_padding_values_and_gradients(m, n, c, k, h, w, seed):
    """Any map size, the tiles that overhang it included; float64 so that only a wrong formula fails."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(k, c, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(n, k, h, w, generator=g, dtype=torch.float64)
    ours = winograd.winograd_conv(x, weight, m)
    theirs = F.conv2d(x, weight, padding=1)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, weight), grad),
                               torch.autograd.grad(theirs, (x, weight), grad))


def test_fp32_channels_last_input_as_the_benchmark_times_it():
    x = torch.randn(8, 24, 15, 15).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(32, 24, 3, 3) / 15
    reference = F.conv2d(x, weight, padding=1)
    assert (winograd.winograd_conv(x, weight, 4) - reference).abs().max() < 1e-4 * reference.abs().max()


def test_conv_shapes_of_fast_94_follow_its_shape_arithmetic():
    model = create("fast-94")
    hw = conv2d_out(32, 2, 1)  # the 2x2 whitening conv, no padding: 31
    expected = []
    for c_in, c_out in zip((2 * 3 * 4, 64, 256), (64, 256, 256)):
        expected.append((c_in, c_out, hw, hw))  # the first conv runs before the block's pool
        hw = pool2d_out(hw, 2)
        expected.append((c_out, c_out, hw, hw))
    assert winograd.conv_shapes(model) == expected


def test_the_benchmark_prints_a_row_per_conv_and_the_total(capsys):
    winograd.main(["--model", "fast-q", "--batch", "2"])
    out = capsys.readouterr().out.splitlines()
    rows = [tuple(int(v) for v in m.groups()) for m in map(re.compile(r"\s*(\d+)->\s*(\d+) @\s*(\d+)").match, out) if m]
    assert rows == [s[:3] for s in winograd.conv_shapes(create("fast-q"))]
    assert out[-1].startswith("all convs") and "fastest way" in out[-1]
