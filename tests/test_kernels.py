"""The compiled conv -> max pool -> ReLU pass (cnnlab/network/kernels) against ATen's own layers,
its fallbacks, and where the seed network uses it."""
from __future__ import annotations


import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnlab.network.kernels import build, pooled_conv, pooled_conv_relu, usable
from cnnlab.network.models import create
from kernel_helpers import fast_q_batch, graph, needs_cc


def aten(x, w, b):
    return F.relu(F.max_pool2d(F.conv2d(x, w, b, padding=1), 2))


def aten_pool(x, w, b):
    return F.max_pool2d(F.conv2d(x, w, b, padding=1), 2)


def both(x, w, b, g, relu=True, winograd=False):
    """Output and the gradients of x, w and b (None: no bias), by the compiled pass (its forward
    by F(2x2, 3x3) where winograd) and by ATen: conv -> max pool -> ReLU, or without the ReLU."""
    compiled = pooled_conv_relu if relu else pooled_conv
    if winograd:
        def compiled(*a):
            return pooled_conv(*a, relu=relu, winograd=True)
    out = []
    for fn in (compiled, aten if relu else aten_pool):
        xs, ws = (t.detach().clone().requires_grad_(True) for t in (x, w))
        bs = None if b is None else b.detach().clone().requires_grad_(True)
        y = fn(xs, ws, bs)
        y.backward(g)
        out.append((y.detach(), xs.grad, ws.grad, None if bs is None else bs.grad))
    return out


def clear_winners(x, w, b, rel=1e-5) -> bool:
    """Whether every pooling window's two largest conv outputs differ by more than rounding (rel of
    the largest output): at a closer call either position is a right winner, and the gradient's
    place depends on how the sums were rounded."""
    y = F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=1)
    n, c, h, w_ = y.shape
    win = y[:, :, :h // 2 * 2, :w_ // 2 * 2].unfold(2, 2, 2).unfold(3, 2, 2).reshape(n, c, h // 2, w_ // 2, 4)
    top = win.topk(2, dim=-1).values
    return bool((top[..., 0] - top[..., 1]).min() > rel * y.abs().max())


def close(a, b, scale=1.0):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


@needs_cc
def test_the_library_builds_here():
    assert build.library() is not None  # a build failure on a machine with a compiler is a defect


@needs_cc
@pytest.mark.parametrize("n,cin,cout,h,w", [(128, 3, 16, 32, 32), (64, 16, 32, 16, 16), (5, 1, 16, 15, 17),
                                           (9, 16, 48, 7, 6), (1, 4, 32, 2, 2), (17, 3, 16, 11, 8)])
def test_outputs_and_gradients_are_atens(n, cin, cout, h, w):
    torch.manual_seed(n + cin + h)
    x = torch.randn(n, cin, h, w).contiguous(memory_format=torch.channels_last)
    w_ = torch.randn(cout, cin, 3, 3) * 0.3
    b = torch.randn(cout) * 0.1
    g = torch.randn(n, cout, h // 2, w // 2)
    (y, dx, dw, db), (ry, rdx, rdw, rdb) = both(x, w_, b, g)
    assert y.shape == ry.shape
    close(y, ry)
    close(dx, rdx)
    close(dw, rdw, scale=rdw.abs().max().item())
    close(db, rdb, scale=rdb.abs().max().item())


@needs_cc
@pytest.mark.parametrize("n,cin,cout,h", [(16, 24, 32, 31), (8, 32, 128, 15), (8, 128, 128, 7), (5, 24, 16, 16),
                                         (3, 64, 64, 4), (3, 8, 16, 9), (3, 40, 16, 7), (3, 48, 32, 6)])
def test_without_relu_or_bias_as_the_fast_models_block_it_is_atens(n, cin, cout, h):
    """conv -> max pool alone (the fast-* models' blocks: BN and GELU follow), at their shapes, and
    at input widths whose kernel rows (3 x cin values) the backward sums 9, 6, 3 and 1 vectors at
    a time."""
    torch.manual_seed(cin + h)
    x = torch.randn(n, cin, h, h).contiguous(memory_format=torch.channels_last)
    w_ = torch.randn(cout, cin, 3, 3) * 0.1
    g = torch.randn(n, cout, h // 2, h // 2)
    (y, dx, dw, db), (ry, rdx, rdw, rdb) = both(x, w_, None, g, relu=False)
    assert db is None and rdb is None
    close(y, ry)
    close(dx, rdx, scale=rdx.abs().max().item())
    close(dw, rdw, scale=rdw.abs().max().item())


@needs_cc
@pytest.mark.parametrize("n,cin,cout,h,relu,bias", [(16, 24, 32, 31, False, False), (8, 32, 128, 15, False, False),
                                                   (8, 128, 128, 7, False, False), (5, 8, 16, 6, True, True),
                                                   (3, 40, 48, 9, True, False), (4, 16, 32, 2, False, True)])
def test_by_winograd_it_agrees_with_aten_to_rounding(n, cin, cout, h, relu, bias):
    """The fast models' products by F(2x2, 3x3): outputs and gradients ATen's to fp32 rounding."""
    torch.manual_seed(cin + h)
    x = torch.randn(n, cin, h, h).contiguous(memory_format=torch.channels_last)
    w_ = torch.randn(cout, cin, 3, 3) * 0.1
    b = torch.randn(cout) * 0.1 if bias else None
    g = torch.randn(n, cout, h // 2, h // 2)
    (y, dx, dw, db), (ry, rdx, rdw, rdb) = both(x, w_, b, g, relu=relu, winograd=True)
    assert not torch.equal(y, ry) or h == 2  # another order of sums: not ATen's bits
    close(y, ry, scale=ry.abs().max().item())
    close(dx, rdx, scale=rdx.abs().max().item())
    close(dw, rdw, scale=rdw.abs().max().item())
    if bias:
        close(db, rdb, scale=rdb.abs().max().item())


@needs_cc
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 6), c8=st.integers(1, 5), blocks=st.integers(1, 2), h=st.integers(2, 13),
       w=st.integers(2, 13), seed=st.integers(0, 2**16))
def test_by_winograd_any_shape_agrees_with_aten(n, c8, blocks, h, w, seed):
    torch.manual_seed(seed)
    x = torch.randn(n, 8 * c8, h, w).contiguous(memory_format=torch.channels_last)
    w_ = torch.randn(16 * blocks, 8 * c8, 3, 3) * 0.3
    ref = aten_pool(x, w_, None)
    close(pooled_conv(x, w_, winograd=True), ref, scale=ref.abs().max().item())


@needs_cc
def test_by_winograd_inputs_not_in_vectors_of_8_channels_run_direct():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    w_ = torch.randn(16, 3, 3, 3)
    assert torch.equal(pooled_conv(x, w_, winograd=True), aten_pool(x, w_, None))


@needs_cc
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), cin=st.integers(1, 20), blocks=st.integers(1, 3), h=st.integers(2, 13),
       w=st.integers(2, 13), seed=st.integers(0, 2**16))
def test_any_shape_agrees_with_aten(n, cin, blocks, h, w, seed):
    torch.manual_seed(seed)
    x = torch.randn(n, cin, h, w)  # NCHW in: the pass takes any layout
    w_ = torch.randn(16 * blocks, cin, 3, 3) * 0.3
    b = torch.randn(16 * blocks) * 0.1
    g = torch.randn(n, 16 * blocks, h // 2, w // 2)
    assume(clear_winners(x, w_, b))
    (y, dx, dw, db), (ry, rdx, rdw, rdb) = both(x, w_, b, g)
    close(y, ry)
    close(dx, rdx)
    close(dw, rdw, scale=max(1.0, rdw.abs().max().item()))
    close(db, rdb, scale=max(1.0, rdb.abs().max().item()))


@needs_cc
def test_ties_and_dead_units_send_the_gradient_where_aten_does():
    """Zero images make every window a tie (the first position wins, as in ATen) and a negative
    bias turns the ReLU off (no gradient at all)."""
    torch.manual_seed(0)
    x = torch.zeros(4, 3, 8, 8)
    x[0, :, 2:4, 2:4] = 1.0  # one window with a winner, the rest ties
    w_ = torch.ones(16, 3, 3, 3) * 0.1
    b = torch.linspace(-2.0, 0.5, 16)  # below -1.2 no output passes the ReLU (0.1 x at most 12 ones)
    g = torch.randn(4, 16, 4, 4)
    (y, dx, dw, db), (ry, rdx, rdw, rdb) = both(x, w_, b, g)
    close(y, ry)
    close(dx, rdx)
    close(dw, rdw, scale=rdw.abs().max().item())
    close(db, rdb, scale=rdb.abs().max().item())
    stopped = ry.amax(dim=(0, 2, 3)) == 0  # channels the ReLU stops everywhere
    assert stopped.sum() == 5 and (db[stopped] == 0).all() and (dw[stopped] == 0).all()


@needs_cc
def test_the_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(0)
    x = torch.randn(37, 16, 16, 16).contiguous(memory_format=torch.channels_last)
    w_, b, g = torch.randn(32, 16, 3, 3) * 0.2, torch.randn(32) * 0.1, torch.randn(37, 32, 8, 8)
    before, seen = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            seen.append(both(x, w_, b, g)[0])
            seen[-1] += (pooled_conv(x, w_, b, winograd=True),)
    finally:
        torch.set_num_threads(before)
    for other in seen[1:]:
        assert all(torch.equal(a, c) for a, c in zip(seen[0], other))


@needs_cc
def test_the_seed_network_trains_through_it_and_agrees_with_atens_layers(monkeypatch):
    torch.manual_seed(0)
    model = create("seed").to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    loss = F.cross_entropy(model(x), y)
    assert "_PooledConvBackward" in graph(loss)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    ref = F.cross_entropy(model(x), y)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    close(loss, ref)
    for a, r in zip(grads, ref_grads):
        close(a, r, scale=r.abs().max().item())


@needs_cc
def test_the_fast_models_train_their_pooled_convs_through_it(monkeypatch):
    model, x, y = fast_q_batch()
    loss = F.cross_entropy(model(x), y)
    assert "_PooledConvBackward" in graph(loss)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    ref = F.cross_entropy(model(x), y)
    assert "_PooledConvBackward" not in graph(ref)
    ref_grads = torch.autograd.grad(ref, params)
    close(loss, ref)
    for a, r in zip(grads, ref_grads):
        close(a, r, scale=max(1e-3, r.abs().max().item()))


def test_turned_off_or_without_a_compiler_the_network_runs_atens_layers(monkeypatch, tmp_path):
    x = torch.randn(2, 3, 32, 32)
    conv, pool = nn.Conv2d(3, 16, 3, padding=1), nn.MaxPool2d(2)
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    assert build.library() is None and not usable(x, conv, pool)
    monkeypatch.setenv("CNNLAB_KERNELS", "1")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(build, "_loaded", {})
    assert build.library() is None and build.prebuild() is None and not usable(x, conv, pool)
    monkeypatch.setenv("CC", "false")  # a compiler that fails: remembered, not tried again
    monkeypatch.setattr(build, "_loaded", {})
    assert build.library() is None and list((tmp_path / "kernels").glob("*.failed"))
    torch.manual_seed(0)
    model = create("seed")
    out = model(x)
    assert out.shape == (2, 10) and "MaxPool2DWithIndicesBackward0" in graph(out)
    assert "_PooledConvBackward" not in graph(out)


@needs_cc
def test_layers_it_cannot_stand_for_keep_atens():
    x = torch.randn(2, 3, 16, 16)
    pool = nn.MaxPool2d(2)
    assert usable(x, nn.Conv2d(3, 16, 3, padding=1), pool)
    assert usable(x, nn.Conv2d(3, 16, 3, padding="same"), pool)
    assert not usable(x, nn.Conv2d(3, 12, 3, padding=1), pool)  # not a multiple of 16 channels
    assert not usable(x, nn.Conv2d(3, 16, 5, padding=2), pool)
    assert not usable(x, nn.Conv2d(3, 16, 3, padding=0), pool)
    assert not usable(x, nn.Conv2d(3, 16, 3, padding=1, stride=2), pool)
    assert not usable(x, nn.Conv2d(3, 16, 3, padding=1), nn.MaxPool2d(3))
    assert not usable(x, nn.Conv2d(3, 16, 3, padding=1), nn.AvgPool2d(2))
    assert not usable(x.double(), nn.Conv2d(3, 16, 3, padding=1).double(), pool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not usable(x, nn.Conv2d(3, 16, 3, padding=1), pool)


@needs_cc
def test_a_hook_on_a_layer_sees_it_run():
    """Inspection and summaries hook the layers: then they run as layers, and the hook sees them."""
    model = create("seed")
    seen = []
    handle = model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    out = model(torch.randn(3, 3, 32, 32))
    handle.remove()
    assert seen == [(3, 16, 32, 32)]
    assert sum(name == "_PooledConvBackward" for name in graph(out)) == 1  # conv2 still compiled
