"""Every registered model: output shape, finite values, gradients; the report's parameter count."""
import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.network.models import MODELS, count_params, create


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_finite_and_every_parameter_learns(name):
    """Every trainable parameter gets a gradient; frozen ones (requires_grad False: the fast
    family's whitening conv and BN scales) get none and stay a minority."""
    torch.manual_seed(0)
    model = create(name)
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    trainable = [(pname, p) for pname, p in model.named_parameters() if p.requires_grad]
    assert sum(p.numel() for _, p in trainable) > 0.9 * sum(p.numel() for p in model.parameters())
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, pname
        else:
            assert p.grad is None, pname


def test_seed_has_the_reports_parameter_count():
    assert count_params(create("seed")) == 25_578
    assert count_params(create("seed-p1")) == 25_578


@pytest.mark.parametrize("size,flat", [(32, 32 * 8 * 8), (28, 32 * 7 * 7), (64, 32 * 16 * 16), ((32, 48), 32 * 8 * 12)])
def test_flatten_size_follows_the_input_size(size, flat):
    model = create("seed", num_classes=5, image_size=size)
    assert model.fc.in_features == flat
    h, w = (size, size) if isinstance(size, int) else size
    assert model(torch.zeros(2, 3, h, w)).shape == (2, 5)


def test_seed_and_seed_p1_are_the_same_network():
    torch.manual_seed(0)
    a, b = create("seed"), create("seed-p1")
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 3, 32, 32)
    assert torch.equal(a(x), b(x))


def test_unknown_model_and_too_small_input_are_clear_errors():
    with pytest.raises(CnnlabError, match="unknown model 'resnet9'.*seed"):
        create("resnet9")
    with pytest.raises(CnnlabError, match="cannot take 2x2"):
        create("seed", image_size=2)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_seed_is_bitwise_the_reports_layer_order(fmt, monkeypatch):
    """seed pools before its ReLUs for speed; outputs and gradients equal conv->ReLU->pool exactly.
    (With ATen's layers: the compiled pass adds its sums in another order, tests/test_kernels.py.)"""
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    torch.manual_seed(0)
    model = create("seed").to(memory_format=fmt)
    report = torch.nn.Sequential(model.conv1, torch.nn.ReLU(), torch.nn.MaxPool2d(2), model.conv2,
                                 torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), model.fc)
    x = torch.randn(32, 3, 32, 32).contiguous(memory_format=fmt)
    ours, theirs = model(x), report(x)
    assert torch.equal(ours, theirs)
    params = list(model.parameters())
    g_ours = torch.autograd.grad(ours.logsumexp(1).sum(), params)
    g_theirs = torch.autograd.grad(theirs.logsumexp(1).sum(), params)
    assert all(torch.equal(a, b) for a, b in zip(g_ours, g_theirs))
