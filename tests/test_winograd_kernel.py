"""The 3x3 conv by Winograd's F(4x4, 3x3) (cnnlab/network/kernels/winograd.c and winograd.py)
against ATen's conv2d in float64, when it stands in for a layer, and the fast models through it."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.network import kernels
from cnnlab.network.kernels import build, conv3x3, conv_usable
from cnnlab.network.models import create
from kernel_helpers import graph, needs_cc


def reference(x, w, g):
    """conv2d's output and gradients in float64."""
    xd, wd = x.detach().double().requires_grad_(True), w.detach().double().requires_grad_(True)
    y = F.conv2d(xd, wd, padding=1)
    return (y.detach(), *torch.autograd.grad(y, (xd, wd), g.double()))


def close(a, r, tol=2e-5):
    """a agrees with r to fp32 rounding of sums of terms as large as r's largest."""
    assert a.dtype == torch.float32 and a.shape == r.shape
    assert (a.double() - r).abs().max() <= tol * max(r.abs().max().item(), 1e-30)


def run(n, cin, cout, h, w, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(n, cin, h, w).requires_grad_(True)
    wt = (torch.randn(cout, cin, 3, 3) / (3 * cin**0.5)).requires_grad_(True)
    g = torch.randn(n, cout, h, w)
    y = conv3x3(x, wt)
    dx, dw = torch.autograd.grad(y, (x, wt), g)
    return (y, dx, dw), reference(x, wt, g)


@needs_cc
def test_outputs_and_gradients_agree_with_aten_in_float64():
    """fast-94's shapes: 256 -> 256 at 7x7 (tiles cut at the edge) and at 3x3 (one tile)."""
    for h in (7, 3, 8):
        (y, dx, dw), (ry, rdx, rdw) = run(16, 256, 256, h, h)
        assert "_Conv3x3Backward" in graph(y)
        assert y.is_contiguous(memory_format=torch.channels_last)
        for a, r in ((y, ry), (dx, rdx), (dw, rdw)):
            close(a, r)


@needs_cc
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), cin8=st.integers(1, 4), cout8=st.integers(1, 4), h=st.integers(1, 13),
       w=st.integers(1, 13), seed=st.integers(0, 2**16))
def test_any_shape_agrees_with_aten(n, cin8, cout8, h, w, seed):
    for a, r in zip(*run(n, 8 * cin8, 8 * cout8, h, w, seed)):
        close(a, r)


@needs_cc
def test_only_the_gradients_asked_for_are_computed():
    x, w = torch.randn(2, 8, 5, 5), torch.randn(8, 8, 3, 3)
    assert conv3x3(x, w).grad_fn is None
    (dx,) = torch.autograd.grad(conv3x3(x.requires_grad_(True), w).sum(), x)
    (dw,) = torch.autograd.grad(conv3x3(x.detach(), w.requires_grad_(True)).sum(), w)
    ry, rdx, rdw = reference(x, w, torch.ones(2, 8, 5, 5))
    close(dx, rdx)
    close(dw, rdw)


@needs_cc
def test_the_results_repeat_bitwise_at_a_thread_count_and_agree_across_counts():
    threads = torch.get_num_threads()
    out = {}
    try:
        for t in (1, 2, 1):
            torch.set_num_threads(t)
            results, ref = run(8, 128, 128, 7, 7, seed=3)
            if t in out:
                assert all(torch.equal(a, b) for a, b in zip(results, out[t]))
            out[t] = results
    finally:
        torch.set_num_threads(threads)
    for a, r in zip(out[2], ref):
        close(a, r)


@needs_cc
def test_it_stands_in_only_for_the_layers_it_computes():
    x = torch.randn(2, 128, 7, 7)
    conv = nn.Conv2d(128, 128, 3, padding=1, bias=False)
    assert conv_usable(x, conv) and conv_usable(x, nn.Conv2d(128, 256, 3, padding="same", bias=False))
    assert not conv_usable(x, nn.Conv2d(128, 128, 3, padding=1))            # a bias
    assert not conv_usable(x, nn.Conv2d(128, 128, 3, padding=1, bias=False, stride=2))
    assert not conv_usable(x, nn.Conv2d(128, 128, 3, padding=0, bias=False))
    assert not conv_usable(x, nn.Conv2d(128, 128, 3, padding=2, dilation=2, bias=False))
    assert not conv_usable(x, nn.Conv2d(128, 128, 3, padding=1, bias=False, groups=2))
    assert not conv_usable(x, nn.Conv2d(128, 120 + 4, 3, padding=1, bias=False))  # not in 8s
    assert not conv_usable(x[:, :16], nn.Conv2d(16, 16, 3, padding=1, bias=False))  # too few: direct is faster
    assert conv_usable(x[:, :16], nn.Conv2d(16, 16, 3, padding=1, bias=False), min_channels=16)
    assert not conv_usable(x.double(), conv.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv_usable(x, conv)
    handle = conv.register_forward_hook(lambda m, i, o: None)
    assert not conv_usable(x, conv)
    handle.remove()


@needs_cc
def test_fast_94_trains_its_second_convs_through_it_as_through_atens(monkeypatch):
    """fast-94's blocks run their second conv by Winograd; the loss and every gradient agree with
    the model's on ATen's layers alone."""
    torch.manual_seed(0)
    model = create("fast-94").to(memory_format=torch.channels_last)
    model.data_init(torch.randn(64, 3, 32, 32))
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (4,))
    calls = []
    monkeypatch.setattr(kernels, "conv3x3", lambda x, w: calls.append(w.shape) or conv3x3(x, w))
    loss = F.cross_entropy(model(x), y)
    assert "_Conv3x3Backward" in graph(loss)
    assert calls == [(64, 64, 3, 3), (256, 256, 3, 3), (256, 256, 3, 3)]  # each block's second conv
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    ref = F.cross_entropy(model(x), y)
    assert "_Conv3x3Backward" not in graph(ref)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for a, r in zip(grads, torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4 * max(1e-3, r.abs().max().item()))


def test_turned_off_it_stands_in_for_nothing(monkeypatch):
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    assert build.library("winograd.c") is None
    assert not kernels.conv_usable(torch.randn(2, 128, 7, 7), nn.Conv2d(128, 128, 3, padding=1, bias=False))
