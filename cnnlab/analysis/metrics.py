"""Classification metrics as pure functions of logits and labels (numpy in, numbers out).

    cm = confusion_matrix(labels, logits.argmax(1), num_classes)   # rows: true class, columns: predicted
    per_class(cm)                 # accuracy (= recall), precision, recall and support of each class
    most_confused(cm, k=3)        # the largest off-diagonal cells: (true, predicted, count)
    mean_loss(logits, labels)     # mean cross-entropy, as training reports it
    reliability(probs, labels)    # calibration bins; expected_calibration_error(bins)

A class's accuracy is the share of its test images that the model labels correctly, which
is the same number as its recall; precision is the share of the images predicted as that
class that really are. A class that is never predicted has precision 0 by convention here
(no right answers among no predictions), and one with no test images has accuracy NaN.
"""
from __future__ import annotations

import numpy as np


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum so large logits cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mean_loss(logits, labels) -> float:
    """Mean cross-entropy -log softmax(logits)[label], computed with log-sum-exp."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(z) == 0:
        return float("nan")
    m = z.max(axis=1, keepdims=True)
    log_norm = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float((log_norm - z[np.arange(len(z)), labels]).mean())


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """int64 (num_classes, num_classes): cell [t, p] counts images of class t predicted as p."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def accuracy(cm: np.ndarray) -> float:
    """Percent correct over all images: trace / total * 100."""
    total = cm.sum()
    return 100.0 * float(np.trace(cm)) / total if total else float("nan")


def per_class(cm: np.ndarray) -> dict[str, list]:
    """Per class, in percent: accuracy (= recall), precision, recall; and support (test images)."""
    cm = np.asarray(cm, dtype=np.int64)
    hits = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, 100.0 * hits / support, np.nan)
        precision = np.where(predicted > 0, 100.0 * hits / np.maximum(predicted, 1), 0.0)
    return {"accuracy": recall.tolist(), "precision": precision.tolist(), "recall": recall.tolist(),
            "support": support.tolist()}


def most_confused(cm: np.ndarray, k: int = 3) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true class, predicted class, count), largest first;
    ties in the order of the cells (by true class, then predicted class); empty cells left out."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(cm)
    cells = [(int(cm[t, p]), t, p) for t in range(n) for p in range(n) if t != p and cm[t, p] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(t, p, count) for count, t, p in cells[:k]]


def reliability(probs, labels, n_bins: int = 15) -> dict[str, list]:
    """Calibration bins over the confidence (the top probability) in [0, 1].

    Bin b holds the images with confidence in (b/n, (b+1)/n] (the first bin also takes 0).
    Returns per bin: count, mean confidence, accuracy (fraction correct; NaN when empty),
    and the bin edges.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins: ceil(conf * n) - 1, with confidence 0 going to the first bin
    idx = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    return {"edges": edges.tolist(), "count": count.tolist(), "confidence": mean_conf.tolist(),
            "accuracy": acc.tolist()}


def expected_calibration_error(bins: dict) -> float:
    """ECE: sum over bins of (images in bin / all images) * |accuracy - mean confidence|, in [0, 1]."""
    count = np.asarray(bins["count"], dtype=np.float64)
    total = count.sum()
    if total == 0:
        return float("nan")
    gap = np.abs(np.nan_to_num(np.asarray(bins["accuracy"])) - np.nan_to_num(np.asarray(bins["confidence"])))
    return float((count / total * gap).sum())


def confident_mistakes(probs, labels, k: int = 24) -> list[tuple[int, int, float]]:
    """The k wrong predictions made with the highest probability: (image index, predicted, prob)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probs) == 0:
        return []
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:k]
    return [(int(i), int(predicted[i]), float(confidence[i])) for i in order]
