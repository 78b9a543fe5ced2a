"""The compiled GELU (cnnlab/network/kernels/gelu.c) against ATen's in float64, its fallbacks, and
the fast models training through it."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.network.kernels import GELU, build, gelu, gelu_usable
from kernel_helpers import fast_q_batch, graph, needs_cc


def reference(x):
    """GELU and its derivative in float64 by ATen."""
    xd = x.detach().double().requires_grad_(True)
    y = F.gelu(xd)
    (d,) = torch.autograd.grad(y.sum(), xd)
    return y.detach(), d


@needs_cc
def test_values_and_gradients_agree_with_aten_in_float64():
    torch.manual_seed(0)
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.randn(100_003) * 3]).requires_grad_(True)
    y = gelu(x)
    (d,) = torch.autograd.grad(y.sum(), x)
    ref_y, ref_d = reference(x)
    assert "_GELUBackward" in graph(y)
    torch.testing.assert_close(y.double(), ref_y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(d.double(), ref_d, rtol=1e-6, atol=1e-6)
    # as close as ATen's own fp32 GELU
    assert (y.double() - ref_y).abs().max() <= 2 * (F.gelu(x.detach()).double() - ref_y).abs().max()


@needs_cc
def test_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -30.0, 30.0, 1e-30, -100.0, 88.0])
    y = gelu(x)
    assert torch.isnan(y[0]) and y[1] == float("inf") and torch.isnan(y[2])  # -inf * 0, as ATen
    assert y[3] == 0 and y[4] == 0 and y[5] == 30.0 and y[7] == 0 and y[8] == 88.0
    assert y[6] == F.gelu(x[6:7])[0]


@needs_cc
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), c=st.integers(1, 19), h=st.integers(1, 9), layout=st.sampled_from(["nchw", "nhwc", "t"]),
       seed=st.integers(0, 2**16))
def test_any_shape_and_layout(n, c, h, layout, seed):
    torch.manual_seed(seed)
    x = torch.randn(n, c, h, h + 1) * 4
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "t":
        x = x.transpose(1, 3)  # neither layout: copied first
    y = gelu(x)
    torch.testing.assert_close(y.double(), reference(x)[0], rtol=1e-6, atol=1e-6)
    if layout == "nhwc":
        assert y.is_contiguous(memory_format=torch.channels_last)


@needs_cc
def test_the_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(1)
    x = torch.randn(64, 32, 15, 15).requires_grad_(True)
    out = []
    threads = torch.get_num_threads()
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            y = gelu(x)
            out.append((y, torch.autograd.grad(y, x, torch.ones_like(y))[0]))
    finally:
        torch.set_num_threads(threads)
    for y, d in out[1:]:
        assert torch.equal(y, out[0][0]) and torch.equal(d, out[0][1])


@needs_cc
def test_the_derivative_is_kept_only_where_a_gradient_is_wanted():
    x = torch.randn(100)
    assert gelu(x).grad_fn is None
    with torch.no_grad():
        assert gelu(x.requires_grad_(True)).grad_fn is None


@needs_cc
def test_the_module_runs_compiled_where_it_can_and_atens_elsewhere(monkeypatch):
    act = GELU()
    x = torch.randn(4, 8, requires_grad=True)
    assert isinstance(act, nn.GELU) and repr(act) == repr(nn.GELU())
    assert "_GELUBackward" in graph(act(x))
    assert "GeluBackward0" in graph(GELU(approximate="tanh")(x))
    assert act(x.double()).dtype == torch.float64 and not gelu_usable(x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gelu_usable(x)
    handle = act.register_forward_hook(lambda m, i, o: None)  # a watched layer runs as ATen's
    assert "GeluBackward0" in graph(act(x))
    handle.remove()
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    assert build.library("gelu.c") is None and "GeluBackward0" in graph(act(x))


@needs_cc
def test_the_fast_models_train_through_it_as_through_atens(monkeypatch):
    model, x, y = fast_q_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    assert "_GELUBackward" in graph(loss) and "GeluBackward0" not in graph(loss)
    grads = torch.autograd.grad(loss, params)
    for m in model.modules():  # ATen's GELU, the compiled conv -> pool kept
        if isinstance(m, GELU):
            m.forward = F.gelu
    ref = F.cross_entropy(model(x), y)
    assert "GeluBackward0" in graph(ref)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for a, r in zip(grads, torch.autograd.grad(ref, params)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5 * max(1e-3, r.abs().max().item()))


@needs_cc
def test_prebuild_builds_every_kernel():
    assert build.prebuild() is not None
    assert all(build.library(name) is not None for name in build.SOURCES)
