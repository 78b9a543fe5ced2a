"""The speed-record family (cnnlab.network.models.fast): shapes, frozen parts, the whitening init against
a direct eigen-decomposition, and the summary's arithmetic."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from cnnlab.data import dataset as data
from cnnlab.cli import main
from cnnlab.network.layers import totals
from cnnlab.network.models import MODELS, create
from cnnlab.network.models import fast
from cnnlab.network.models.fast import WHITEN_EPS, FastNet, whitening_weights
from cnnlab.runs.saved import eval_precision
from cnnlab.network.summary import summarize

FAST = [name for name in MODELS if name.startswith("fast-")]


def test_the_family_has_a_sprint_a_middle_and_the_airbench94_size():
    assert len(FAST) >= 3
    big = create("fast-94")
    assert big.widths == (64, 256, 256) and big.convs == 2
    assert 1.9e6 < sum(p.numel() for p in big.parameters()) < 2.1e6
    large = create("fast-l")  # airbench95's size
    assert large.widths == (128, 384, 384) and large.convs == 2


@pytest.mark.parametrize("name, fraction", [("fast-q", 4), ("fast-h", 2)])
def test_the_narrow_widths_are_fast_94_scaled_down(name, fraction):
    """fast-q and fast-h are fast-94's layout at a quarter and half of its widths: the same
    layers, each conv's output channels divided by the fraction (the whitening conv unchanged)."""
    big, small = create("fast-94"), create(name)
    assert small.convs == big.convs and small.widths == tuple(w // fraction for w in big.widths)

    def convs(m):
        return [c for c in m.modules() if isinstance(c, nn.Conv2d)]

    assert [c.kernel_size for c in convs(small)] == [c.kernel_size for c in convs(big)]
    assert convs(small)[0].out_channels == convs(big)[0].out_channels
    assert [c.out_channels * fraction for c in convs(small)[1:]] == [c.out_channels for c in convs(big)[1:]]


def test_fast_c_is_fast_h_without_the_middle_blocks_second_conv_and_a_wider_last_block():
    """fast-c: fast-h's first block, its middle block's first conv only, and a last block of 160."""
    h, c = create("fast-h"), create("fast-c")
    assert c.widths == (32, 128, 160) and c.convs == (2, 1, 2)
    assert [b.second for b in c.blocks] == [True, False, True] and not hasattr(c.blocks[1], "conv2")
    assert c.blocks[0].conv2.weight.shape == h.blocks[0].conv2.weight.shape
    assert c.blocks[2].conv1.weight.shape == (160, 128, 3, 3) and c.fc.in_features == 160
    macs = {m: totals(summarize(create(m), (3, 32, 32)))["macs"] for m in ("fast-h", "fast-c")}
    # fast-h's 128 -> 128 conv at 7x7 is 22 % of its MACs; the wider last block adds back 8 %
    assert 0.8 < macs["fast-c"] / macs["fast-h"] < 0.9
    with pytest.raises(ValueError, match="convs"):
        FastNet((32, 64, 64), (2, 3, 2))


def test_stride_2_whitening_keeps_the_even_positions_of_stride_1():
    """fast-q-s2 is fast-q with the whitening conv at stride 2: the same parameters (fast-q's
    weights load into it), its whitened maps are fast-q's at the even positions, 16 x 16, and
    the head pools the final 2 x 2 map that the shape arithmetic gives."""
    torch.manual_seed(0)
    full, half = create("fast-q"), create("fast-q-s2")
    full.data_init(torch.randn(8, 3, 32, 32))
    half.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, 32, 32)
    a, b = full.whiten(x), half.whiten(x)
    assert a.shape[-2:] == (31, 31) and b.shape[-2:] == (16, 16)
    torch.testing.assert_close(b, a[..., ::2, ::2])  # positions 0, 2, ..., 30 of 31
    assert half.final_hw == (2, 2) and full.final_hw == (3, 3)  # the maps the head pools whole
    assert half(x).shape == (2, 10)
    # about a quarter of the work (0.298x: at stride 1 the maps are 31, 15, 7 and 3 wide, not 32, 16, 8, 4)
    macs = {m: totals(summarize(create(m), (3, 32, 32)))["macs"] for m in ("fast-q", "fast-q-s2")}
    assert 0.25 < macs["fast-q-s2"] / macs["fast-q"] < 0.35


@pytest.mark.parametrize("name", FAST)
def test_forward_backward_at_batch_2(name):
    torch.manual_seed(0)
    model = create(name)
    model.data_init(torch.randn(8, 3, 32, 32))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # the whitening weights and every BN scale are frozen; everything else learns
    bn_scales = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert frozen == {"whiten.weight"} | bn_scales
    for pname, p in model.named_parameters():
        if pname in frozen:
            assert p.grad is None, pname
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("size", [32, 28, (40, 24)])
def test_other_input_sizes_and_classes(size):
    model = create("fast-s", num_classes=7, image_size=size)
    h, w = (size, size) if isinstance(size, int) else size
    assert model(torch.randn(2, 3, h, w)).shape == (2, 7)
    assert model.fc.in_features == model.widths[-1]  # the head pools the whole final map


def test_param_groups_cover_the_trainable_parameters_once():
    model = create("fast-94")
    groups = model.param_groups()
    assert set(groups) <= {"weight", "bias", "norm"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    norms = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in groups["norm"]} == norms


def test_a_step_leaves_the_frozen_parameters_alone():
    torch.manual_seed(0)
    model = create("fast-s")
    model.data_init(torch.randn(8, 3, 32, 32))
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    nn.functional.cross_entropy(model(torch.randn(16, 3, 32, 32)), torch.arange(16) % 10).backward()
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_convs_start_as_the_identity_where_shapes_allow():
    model = FastNet((8, 16, 12), convs=2, image_size=16)
    x = torch.randn(2, 24, 9, 9)
    block = model.blocks[0]
    assert torch.allclose(block.conv1(x)[:, :8], x[:, :8], atol=1e-6)  # 24 -> 8: the first 8 pass
    y = torch.randn(2, 16, 5, 5)
    assert torch.allclose(model.blocks[1].conv1(y[:, :8])[:, :8], y[:, :8], atol=1e-6)  # 8 -> 16
    assert torch.allclose(model.blocks[1].conv2(y), y, atol=1e-6)  # 16 -> 16
    assert torch.allclose(model.blocks[2].conv1(y)[:, :12], y[:, :12], atol=1e-6)  # 16 -> 12


def loop_patch_covariance(x: np.ndarray, k: int) -> np.ndarray:
    """The k x k patch covariance written out: every patch, one at a time."""
    n, c, h, w = x.shape
    rows = [x[i, :, r:r + k, s:s + k].reshape(-1)
            for i in range(n) for r in range(h - k + 1) for s in range(w - k + 1)]
    cov = np.zeros((c * k * k, c * k * k))
    for v in rows:
        cov += np.outer(v, v)
    return cov / len(rows)


@pytest.mark.parametrize("k", [2, 3])
def test_patch_covariance_is_the_mean_outer_product_of_every_patch(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(7, 3, 6, 5)) + 0.2  # 7 images: chunks of 3 leave a part of 1
    cov = fast.patch_covariance(torch.tensor(x), k, chunk=3).numpy()
    np.testing.assert_allclose(cov, loop_patch_covariance(x, k), rtol=1e-12, atol=1e-12)


def test_whitening_init_matches_a_direct_eigen_decomposition():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 3))  # correlated channels, so the eigenvalues differ
    x = np.einsum("dc,nchw->ndhw", mix, rng.normal(size=(3, 3, 5, 4))) + 0.3
    cov = loop_patch_covariance(x, 2)
    lam, vec = np.linalg.eigh(cov)
    lam, vec = lam[::-1], vec[:, ::-1]  # largest first
    eps = 0.01
    w = whitening_weights(torch.tensor(x, dtype=torch.float32), 2, eps).double().numpy()
    assert w.shape == (24, 3, 2, 2)
    filters = w.reshape(24, 12)
    np.testing.assert_allclose(filters[12:], -filters[:12])  # both signs
    # each filter is its eigenvector (up to sign), scaled by 1/sqrt(eigenvalue + eps)
    np.testing.assert_allclose(np.linalg.norm(filters[:12], axis=1), 1 / np.sqrt(lam + eps), rtol=1e-4)
    cosines = np.abs(np.sum(filters[:12] * vec.T, axis=1)) * np.sqrt(lam + eps)
    np.testing.assert_allclose(cosines, 1, rtol=1e-4)
    # and together they invert the regularized covariance: W^T W = (S + eps I)^-1
    np.testing.assert_allclose(filters[:12].T @ filters[:12], np.linalg.inv(cov + eps * np.eye(12)),
                               rtol=1e-3, atol=1e-3)


def test_data_init_whitens_the_patches_of_real_training_images(real_subset):
    d = data.load(real_subset)
    mean, std = data.channel_stats(d.train_x)
    x = data.normalize(d.train_x, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1))
    model = create("fast-94")
    model.data_init(x)
    with torch.no_grad():
        z = model.whiten(x)[:, :12].double()  # the bias starts at 0: z are the whitened patches
    z = z.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = z.T @ z / len(z)
    # their covariance is diag(lam / (lam + eps)): the identity, except along the directions
    # whose variance is not far above eps (JPEG leaves little energy in the finest 2x2 patterns)
    lam = torch.linalg.eigvalsh(_patch_cov(x)).flip(0)
    np.testing.assert_allclose(cov.numpy(), np.diag((lam / (lam + WHITEN_EPS)).numpy()), atol=2e-3)
    assert (cov.diagonal()[lam > 10 * WHITEN_EPS] > 0.9).all()
    # without the eps, the whitened patches have the identity covariance
    w = whitening_weights(x, 2, eps=0.0)[:12].reshape(12, 12).double()
    p = _patch_cov(x)
    np.testing.assert_allclose((w @ p @ w.T).numpy(), np.eye(12), atol=1e-3)


def _patch_cov(x):
    p = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    return p.T @ p / len(p)


@pytest.mark.parametrize("name", FAST)
def test_summary_totals_are_the_parameter_count(name):
    model = create(name)
    rows = summarize(model, (3, 32, 32))
    assert totals(rows)["params"] == sum(p.numel() for p in model.parameters())
    assert [r.out_shape for r in rows][-1] == [1, 10]


def test_summary_command_for_fast_94(capsys):
    assert main(["summary", "--model", "fast-94"]) == 0
    out = capsys.readouterr().out
    assert "1,972,792" in out
    assert "whiten" in out and "frozen" in out


@pytest.mark.slow
def test_the_sprint_recipe_end_to_end_beats_chance_and_evaluates_again_the_same(real_subset, tmp_path, capsys):
    """The sprint as a user runs it, on 1,000 real training images: whitening from the data,
    SGD with the triangle schedule, alternating flips, flip TTA, validation and test in the
    run's own precision (eval_precision = "train"), which `cnnlab evaluate` uses again."""
    run = tmp_path / "run"
    # measured (AMD EPYC, AVX2, fp32): 35.3 %
    assert main(["train", "--recipe", "sprint", "--data", str(real_subset), "--batch-size", "50",
                 "--epochs", "3", "--max-steps", "60", "--out", str(run)]) == 0
    trained = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Test Accuracy: ")][0]
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    # 20 steps an epoch; epochs 2 and 3 train the hardest 45 % of the images: 9 steps each
    steps = 20 + 9 + 9
    assert metrics["recipe"] == "sprint" and metrics["steps"] == steps and metrics["tta"] == "flip"
    assert metrics["test_acc"] > 25, trained  # chance is 10 %
    assert config["config"]["eval_precision"] == "train"
    # the run's own precision: bf16 where the CPU has AMX or AVX512-BF16, fp32 elsewhere; the seed recipe's is fp32
    assert eval_precision(config) == config["arithmetic"]["precision"]
    assert eval_precision({**config, "config": {**config["config"], "eval_precision": "fp32"}}) == "fp32"
    assert main(["evaluate", str(run)]) == 0
    again = capsys.readouterr().out.splitlines()[0]
    assert f"{metrics['test_acc']:.3f} %" in again, (trained, again)
