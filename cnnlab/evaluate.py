"""Evaluation: accuracy and loss of a model on uint8 images, in large batches, returned as numbers."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import normalize


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std,
             batch_size: int = 1000, channels_last: bool = False) -> dict:
    """{'acc': percent correct, 'loss': mean cross-entropy, 'correct', 'total'} over (x, y).

    x is uint8 (N, C, H, W) on the model's device; predictions are made batch by batch.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), batch_size):
        xb = normalize(x[i:i + batch_size], mean, std)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        logits = model(xb).float()
        yb = y[i:i + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    total = len(x)
    n_correct = int(correct)  # one host sync for the whole evaluation
    if total == 0:
        return {"acc": float("nan"), "loss": float("nan"), "correct": 0, "total": 0}
    return {"acc": 100.0 * n_correct / total, "loss": float(loss_sum) / total,
            "correct": n_correct, "total": total}

