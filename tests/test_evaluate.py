"""Evaluation and test-time augmentation, checked against direct computations."""
import pytest
import torch
import torch.nn.functional as F

from cnnlab.analysis.evaluate import evaluate, predict_logits
from cnnlab.network.models import create

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def images(n=6, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def normalized(x):
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255 - m) / s


def shift(x, dy, dx):
    """x moved by (dy, dx) pixels with reflect padding, written out with index arithmetic."""
    h, w = x.shape[-2:]
    rows = [abs(i - dy) if 0 <= i - dy else -(i - dy) for i in range(h)]
    rows = [r if r < h else 2 * (h - 1) - r for r in rows]
    cols = [abs(j - dx) if 0 <= j - dx else -(j - dx) for j in range(w)]
    cols = [c if c < w else 2 * (w - 1) - c for c in cols]
    return x[..., rows, :][..., :, cols]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create("seed").eval()


def test_no_tta_is_the_plain_forward_pass(model):
    x = images()
    with torch.no_grad():
        direct = model(normalized(x))
    assert torch.allclose(predict_logits(model, x, MEAN, STD, batch_size=4), direct, atol=1e-5)


def test_flip_averages_the_image_and_its_mirror(model):
    x = images()
    z = normalized(x)
    with torch.no_grad():
        direct = (model(z) + model(z.flip(-1))) / 2
    assert torch.allclose(predict_logits(model, x, MEAN, STD, tta="flip"), direct, atol=1e-5)


def test_flip_shift_adds_the_one_pixel_shifts(model):
    x = images()
    z = normalized(x)

    def pair(v):
        return (model(v) + model(v.flip(-1))) / 2
    with torch.no_grad():
        # the two one-pixel shifts along the diagonal, in both directions
        direct = pair(z) / 2 + (pair(shift(z, -1, -1)) + pair(shift(z, 1, 1))) / 4
    assert torch.allclose(predict_logits(model, x, MEAN, STD, tta="flip-shift"), direct, atol=1e-5)


def test_evaluate_counts_and_loss_match_a_direct_computation(model):
    x, y = images(50), torch.randint(0, 10, (50,))
    with torch.no_grad():
        logits = model(normalized(x))
    out = evaluate(model, x, y, MEAN, STD, batch_size=16)
    assert out["correct"] == int((logits.argmax(1) == y).sum()) and out["total"] == 50
    assert out["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert evaluate(model, x[:0], y[:0], MEAN, STD)["total"] == 0


def test_unknown_tta_mode_is_refused(model):
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        predict_logits(model, images(2), MEAN, STD, tta="rotate")


def test_bf16_evaluation_is_the_forward_pass_under_bf16_autocast():
    torch.manual_seed(0)
    model = create("seed-bn").eval()
    x = images(20)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct = model(normalized(x)).float()
    bf16 = predict_logits(model, x, MEAN, STD, batch_size=8, precision="bf16")
    fp32 = predict_logits(model, x, MEAN, STD, batch_size=8)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16, direct, atol=1e-6)
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.1)
