"""Evaluation: logits, accuracy and loss of a model on uint8 images, in large batches, as numbers.

    out = evaluate(model, x, y, mean, std)                 # {'acc', 'loss', 'correct', 'total'}
    out = evaluate(model, x, y, mean, std, tta="flip")     # test-time augmentation
    z = predict_logits(model, x, mean, std, tta="none")    # (N, classes) float32 logits
    out = evaluate(model, x, y, mean, std, precision="bf16")   # a bf16 run's own arithmetic

Evaluation is IEEE fp32 unless precision says bf16 (autocast, as the run trained): a recipe
chooses with eval_precision (cnnlab.training.arithmetic.eval_precision).

Test-time augmentation (tta) averages the logits of a few views of each image:
    none        the image alone
    flip        the image and its mirror image, each weighted 1/2
    flip-shift  flip, then the same for the image shifted by one pixel up-left and down-right
                (reflect padding); the unshifted pair weighs 1/2, each shifted pair 1/4
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..training.arithmetic import eval_arithmetic
from ..data.dataset import normalize

TTA_MODES = ("none", "flip", "flip-shift")


def _flip_mean(model, x):
    return 0.5 * (model(x).float() + model(x.flip(-1)).float())


def _views_logits(model, x, tta: str):
    """Logits of one normalized batch under test-time augmentation tta."""
    if tta == "none":
        return model(x).float()
    if tta == "flip":
        return _flip_mean(model, x)
    if tta == "flip-shift":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :h, :w], padded[..., 2:, 2:]
        shifted = 0.5 * (_flip_mean(model, up_left) + _flip_mean(model, down_right))
        return 0.5 * _flip_mean(model, x) + 0.5 * shifted
    raise ValueError(f"unknown test-time augmentation {tta!r}: choose one of {', '.join(TTA_MODES)}")


def ranked(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, class indices) of each row's k best, best first. Classes that tie come in
    class order, so a row's first is the argmax that accuracy counts: bf16 logits tie exactly
    now and then, and topk breaks ties its own way."""
    p, idx = torch.sort(probs, dim=1, descending=True, stable=True)
    return p[:, :k], idx[:, :k]


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, mean, std, batch_size: int = 1000,
                   channels_last: bool = False, tta: str = "none", precision: str = "fp32") -> torch.Tensor:
    """float32 logits (N, classes) of uint8 images x (N, C, H, W) on the model's device, in eval
    mode, computed in precision (fp32, or bf16 autocast)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        with eval_arithmetic(precision, x.device):  # fp32: TF32 off on CUDA, as on the CPU
            for i in range(0, len(x), batch_size):
                xb = normalize(x[i:i + batch_size], mean, std)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                out.append(_views_logits(model, xb, tta))
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros((0, 0), device=x.device)
    return torch.cat(out)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std,
             batch_size: int = 1000, channels_last: bool = False, tta: str = "none",
             precision: str = "fp32") -> dict:
    """{'acc': percent correct, 'loss': mean cross-entropy, 'correct', 'total'} over (x, y).

    x is uint8 (N, C, H, W) on the model's device; predictions are made batch by batch.
    """
    total = len(x)
    if total == 0:
        return {"acc": float("nan"), "loss": float("nan"), "correct": 0, "total": 0}
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, total, batch_size):
        logits = predict_logits(model, x[i:i + batch_size], mean, std, batch_size, channels_last, tta, precision)
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n_correct = int(correct)  # one host sync for the whole evaluation
    return {"acc": 100.0 * n_correct / total, "loss": float(loss_sum) / total,
            "correct": n_correct, "total": total}
