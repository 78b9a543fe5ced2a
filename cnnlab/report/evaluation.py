"""A run's evaluation as numbers and files: eval.json, confusion.png, mistakes.png, calibration.png.

    out = evaluate_run(run_dir)                 # cnnlab.runs: logits and labels of the test split
    summary = summarize(out)                    # what eval.json holds
    pngs = draw(out, summary)                   # {'confusion.png': bytes, ...}
    write_eval(run_dir, summary, pngs)          # never overwrites a file that is not cnnlab's

eval.json: test accuracy (the number training printed), correct/total, mean loss, expected
calibration error (15 equal-width confidence bins), per class accuracy/precision/recall/support,
the most confused pairs, the confusion matrix as counts (rows: true class, columns:
predicted, with the class names), the reliability bins, and the most confidently wrong test
images (their index in the test split).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..analysis import metrics
from ..errors import CnnlabError

EVAL_JSON = "eval.json"
FIGURES = ("confusion.png", "mistakes.png", "calibration.png")
FORMAT = "cnnlab-eval"
N_BINS = 15
N_MISTAKES = 24
N_CONFUSED = 10


def _clean(x):
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def summarize(out: dict) -> dict:
    """eval.json's content from evaluate_run's result."""
    from ..runs import versions
    logits, labels, classes = out["logits"], out["labels"], out["classes"]
    n = len(classes)
    probs = metrics.softmax(logits) if len(logits) else np.zeros((0, n))
    predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    cm = metrics.confusion_matrix(labels, predicted, n)
    pc = metrics.per_class(cm)
    bins = metrics.reliability(probs, labels, N_BINS)
    support = cm.sum(axis=1)
    confused = [{"true": classes[t], "predicted": classes[p], "count": c,
                 "percent_of_true": 100.0 * c / support[t]} for t, p, c in metrics.most_confused(cm, N_CONFUSED)]
    mistakes = [{"index": i, "true": classes[int(labels[i])], "predicted": classes[p], "prob": prob}
                for i, p, prob in metrics.confident_mistakes(probs, labels, N_MISTAKES)]
    config = out["config"]
    return _clean({
        "format": FORMAT, "version": 1,
        "model": out["model"], "tta": out["tta"],
        "test_acc": out["acc"], "correct": out["correct"], "total": out["total"],
        "mean_loss": metrics.mean_loss(logits, labels),
        "ece": metrics.expected_calibration_error(bins), "ece_bins": N_BINS,
        "classes": classes,
        "per_class": [{"class": classes[i], **{k: pc[k][i] for k in ("accuracy", "precision", "recall", "support")}}
                      for i in range(n)],
        "most_confused": confused,
        "confusion_matrix": {"rows": "true class", "columns": "predicted class", "classes": classes,
                             "counts": cm.tolist()},
        "calibration": bins,
        "mistakes": mistakes,
        "data": {"source": out.get("data_source"), "fingerprint": out.get("data_fingerprint"),
                 "same_as_training": out["same_data"], "run_fingerprint": config["data"].get("fingerprint")},
        "seconds": out["seconds"], "versions": versions(), "files": list(FIGURES),
    })


def draw(out: dict, summary: dict) -> dict[str, bytes]:
    """The three figures of an evaluation, as PNG bytes keyed by file name."""
    from . import figures
    classes = summary["classes"]
    picked = summary["mistakes"]
    images = np.asarray(out["test_x"][[m["index"] for m in picked]]) if picked else np.zeros((0, 3, 1, 1), np.uint8)
    return {
        "confusion.png": figures.confusion(np.asarray(summary["confusion_matrix"]["counts"]), classes),
        "mistakes.png": figures.mistakes(images, [m["true"] for m in picked], [m["predicted"] for m in picked],
                                         [m["prob"] for m in picked], title=_mistakes_title(out)),
        "calibration.png": figures.calibration(summary["calibration"], summary["ece"] or 0.0),
    }


def _mistakes_title(out: dict) -> str:
    run = Path(str((out.get("config") or {}).get("config", {}).get("out") or "")).name
    data = Path(str(out.get("data_source") or "")).name
    return (f"Most confident mistakes of {run}" if run else "Most confident mistakes") + (f" on {data}" if data else "")


def read_eval(run_dir) -> dict | None:
    """eval.json of a run when cnnlab wrote it, else None."""
    path = Path(run_dir) / EVAL_JSON
    if path.is_symlink() or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _owned(path: Path) -> bool:
    """Whether cnnlab may replace the file at path: absent, or a file cnnlab wrote."""
    from .figures import is_ours
    if not os.path.lexists(path):
        return True
    if path.is_symlink() or not path.is_file():
        return False
    if path.name == EVAL_JSON:
        return read_eval(path.parent) is not None
    return is_ours(path)


def write_eval(run_dir, summary: dict, pngs: dict[str, bytes]) -> list[Path]:
    """Write eval.json and the figures into the run folder, atomically, each replacing only
    an earlier file of cnnlab's own; a foreign file of the same name stops the whole write."""
    from .. import checkpoints
    run_dir = Path(run_dir)
    targets = {EVAL_JSON: (json.dumps(summary, indent=2) + "\n").encode(), **pngs}
    for name in targets:
        if not _owned(run_dir / name):
            raise CnnlabError(f"{run_dir / name} exists and was not written by cnnlab: nothing was "
                              f"written; move that file away, or pass --no-save")
    for name, blob in targets.items():  # a full or read-only disk is one line (files.WriteError)
        checkpoints.atomic_write_bytes(run_dir / name, blob)
    return [run_dir / name for name in targets]
