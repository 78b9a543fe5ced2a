"""Predictions of a trained run on your own image files.

    for item in predict(run_dir, ["photo.jpg", "holiday/"], top_k=3):
        item.path, item.top        # [(class name, probability), ...] best first; or item.error

Any image Pillow opens is turned into what the model saw in training: EXIF orientation
applied, grey/palette/16-bit/alpha converted to RGB (transparent parts composited on
white), then the shorter side resized to the run's image size and the centre cut out
(the aspect ratio is kept; nothing is squashed). Folders are walked recursively in sorted
order (hidden files and folders skipped) and decoded and predicted in batches. A file that
is not a readable image (not an image, empty, truncated, over Pillow's pixel limit) gives
an item with an error instead of a prediction; nothing else stops the batch.
Weights come from model.safetensors (cnnlab.runs.load_run): nothing is unpickled.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from ..errors import CnnlabError
from ..text import RESIZE_NOTE  # noqa: F401 - kept here too; the CLI reads it from text.py


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str | None = None  # why the file was skipped


def to_rgb(im: Image.Image) -> Image.Image:
    """An RGB image from any mode: EXIF orientation applied, 16-bit scaled to 8, alpha on white."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: keep the pixels as stored
        pass
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im).astype(np.int64)
        # 16-bit grey keeps its top 8 bits; 32-bit integer images are clipped to 0..65535 first
        im = Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), "L")
    elif im.mode == "F":
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "PA") or "A" in im.mode or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def fit_square(im: Image.Image, size: int) -> Image.Image:
    """Shorter side resized to size (bilinear, antialiased), then the centre size x size cut out."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


def load_image(path, size: int) -> np.ndarray:
    """uint8 (3, size, size) from an image file; raises on anything that is not a readable image."""
    with warnings.catch_warnings():
        # Pillow only warns between its pixel limit and twice it: refuse those bombs too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            rgb = fit_square(to_rgb(im), size)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_or_reason(path, size: int):
    """(array, None) or (None, one-line reason)."""
    try:
        if os.path.getsize(path) == 0:
            return None, "empty file"
        return load_image(path, size), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return None, f"too many pixels, a possible decompression bomb ({e})"
    except Image.UnidentifiedImageError:
        return None, "not an image Pillow can read"
    except Exception as e:  # noqa: BLE001 - any failure to decode one file is reported, not fatal
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"


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


def predict(run_dir, inputs, top_k: int = 3, tta: str = "none", device: str = "auto",
            batch_size: int = 256) -> Iterator[Prediction]:
    """One Prediction per file under inputs, in order, decoded and predicted batch by batch."""
    import torch

    from ..analysis.evaluate import predict_logits
    from .saved import eval_precision, load_run, place
    for raw in inputs:  # a missing input is an error before any work
        if not Path(raw).exists():
            raise CnnlabError(f"{raw} does not exist: pass image files or folders of images")
    config, model = load_run(run_dir)
    info = config["data"]
    classes, size = info["classes"], info["image_size"]
    dev, channels_last = place(model, config, device)
    precision = eval_precision(config)
    k = max(1, min(top_k, len(classes)))
    for batch in _batches(walk(inputs), batch_size):
        decoded = [decode_or_reason(p, size) for p in batch]
        good = [i for i, (arr, _) in enumerate(decoded) if arr is not None]
        top = {}
        if good:
            x = torch.from_numpy(np.stack([decoded[i][0] for i in good])).to(dev)
            probs = torch.softmax(predict_logits(model, x, info["mean"], info["std"], batch_size,
                                                 channels_last, tta, precision), dim=1)
            p, idx = probs.topk(k, dim=1)
            for row, i in enumerate(good):
                top[i] = [(classes[int(c)], float(q)) for q, c in zip(p[row], idx[row])]
        for i, path in enumerate(batch):
            if i in top:
                yield Prediction(str(path), top[i])
            else:
                yield Prediction(str(path), error=decoded[i][1])
