"""Predictions of a trained run on your own image files.

    for item in predict(run_dir, ["photo.jpg", "holiday/"], top_k=3):
        item.path, item.top        # [(class name, probability), ...] best first; or item.error

Any image Pillow opens is turned into what the model saw in training, by the decoder training
used (cnnlab.data.decode) with the run's image size and resize rule from its config.json:
EXIF orientation applied, grey/palette/16-bit/CMYK/alpha converted to RGB (transparent parts
composited on white), then fitted to the size by the rule (crop: the shorter side resized and
the centre cut out; squash: the whole image resized). Folders are walked recursively in sorted
order (hidden files and folders skipped) and decoded and predicted in batches. A file that
is not a readable image (not an image, empty, truncated, over Pillow's pixel limit) gives
an item with an error instead of a prediction; nothing else stops the batch.
Weights come from model.safetensors (cnnlab.runs.load_run): nothing is unpickled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.decode import decode_or_reason, recorded
from ..errors import CnnlabError


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str | None = None  # why the file was skipped


def record(item: Prediction) -> dict:
    """What `cnnlab predict --json` prints for one image (and cnnlab.Run.predict returns)."""
    return {"path": item.path, "top": [{"class": c, "prob": p} for c, p in item.top]}


def walk(inputs) -> Iterator[Path]:
    """Every file named, and every visible file under every folder named, in sorted order."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        yield Path(folder) / name
        elif path.exists():
            yield path
        else:
            raise CnnlabError(f"{path} does not exist: pass image files or folders of images")


def _batches(paths: Iterator[Path], n: int) -> Iterator[list[Path]]:
    batch = []
    for p in paths:
        batch.append(p)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(run_dir, inputs, top_k: int = 3, tta: str | None = "none", device: str = "auto",
            batch_size: int = 256, model=None) -> Iterator[Prediction]:
    """One Prediction per file under inputs, in order, decoded and predicted batch by batch.

    tta: none, flip or flip-shift; None is the run's recipe's (as cnnlab evaluate).
    model: the network of a run of a model defined in Python (see cnnlab.runs.load_run).
    """
    import torch

    from ..analysis.evaluate import TTA_MODES, predict_logits, ranked
    from .saved import eval_precision, load_run, place
    for raw in inputs:  # a missing input is an error before any work
        if not Path(raw).exists():
            raise CnnlabError(f"{raw} does not exist: pass image files or folders of images")
    config, model = load_run(run_dir, model)
    if tta is None:
        tta = config["config"].get("tta", "none")
    if tta not in TTA_MODES:
        raise CnnlabError(f"--tta {tta!r} is unknown: choose one of {', '.join(TTA_MODES)}")
    info = config["data"]
    classes = info["classes"]
    size, rule = recorded(config)
    dev, channels_last = place(model, config, device)
    precision = eval_precision(config)
    k = max(1, min(top_k, len(classes)))
    for batch in _batches(walk(inputs), batch_size):
        decoded = [decode_or_reason(p, size, rule) for p in batch]
        good = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
        top = {}
        if good:
            x = torch.from_numpy(np.stack([decoded[i][0] for i in good])).to(dev)
            probs = torch.softmax(predict_logits(model, x, info["mean"], info["std"], batch_size,
                                                 channels_last, tta, precision), dim=1)
            p, idx = ranked(probs, k)
            for row, i in enumerate(good):
                top[i] = [(classes[int(c)], float(q)) for q, c in zip(p[row], idx[row])]
        for i, path in enumerate(batch):
            if i in top:
                yield Prediction(str(path), top[i])
            else:
                yield Prediction(str(path), error=decoded[i][1])
