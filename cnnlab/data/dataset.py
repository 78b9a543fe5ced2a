"""Where the data comes from, the decoded-array cache, and the train/validation split.

A dataset is a tensor: load() returns every image of both splits as one uint8 tensor each,
decoded once and cached on disk under $CNNLAB_CACHE or ~/.cache/cnnlab (never in the data
folder, which may be read-only), keyed by a fingerprint of the source files. Later loads
read the cache in a fraction of a second.

    data = load()            # $CNNLAB_DATA, ./data, ../shared/datasets/cifar10-jpeg, download
    data = load("pets/", size=96, resize="crop")   # an image folder at 96x96 (see decode.py)
    train_idx, val_idx = split_indices(len(data.train_y), val_size="10%", seed=0)  # or a count
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .. import checkpoints, files
from . import cifar, decode, imagefolder
from .sources import (CACHE_FORMAT, SHARED_COPY, Source, cache_dir, default_candidates,  # noqa: F401
                      find_source, resolve, source_fingerprint)
from ..errors import CnnlabError, CnnlabWarning

@dataclass
class ImageData:
    train_x: torch.Tensor  # uint8 (N, 3, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str | None  # where the images came from (an absolute path); None for images from Python
    fingerprint: str  # sha256 of the decoded arrays and class names: the same data, the same value
    cache_path: str  # "" when the cache folder could not be written
    kind: str = ""  # folder | batches | archive (a path), or MEMORY (images given from Python; source None)


MEMORY = "memory"


def shown(data: ImageData) -> str:
    """Where the images came from, for a message: their path, or that Python gave them."""
    return data.source if data.source else "images given from Python"


def samples_path(source: str, split: str) -> Path:
    """Where `cnnlab data show` puts its grid by default: under runs/ (git-ignored), named
    after the dataset, so a second run replaces the grid it wrote before."""
    name = Path(source).name.lstrip(".") or "dataset"
    return Path("runs") / "samples" / f"{name}-{split}.png"


def content_fingerprint(tensors: dict[str, torch.Tensor], classes: list[str]) -> str:
    h = hashlib.sha256(json.dumps(classes).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name].numpy()))  # the bytes in place: no 185 MB copy
    return h.hexdigest()


def _decode(src: Source, size: int, spec: cifar.CifarSpec, resize: str):
    """(train_x, train_y, test_x, test_y, classes, notes) from any kind of source."""
    if src.kind == "folder":
        return imagefolder.read_image_folder(src.path, size, resize)
    folder = src.path
    if src.kind == "archive":
        folder = cifar.extract(src.path, _extract_dir(src.path), spec)
    return (*cifar.read_batches(folder, spec), {})


def _extract_dir(archive: Path) -> Path:
    """Beside the archive when that folder is writable, else in the cache."""
    parent = archive.parent
    return parent if os.access(parent, os.W_OK) else cache_dir()


def load(path=None, size: int = 32, strict: bool = False, download: bool = True,
         spec: cifar.CifarSpec = cifar.OFFICIAL, resize: str = decode.DEFAULT_RULE) -> ImageData:
    """Every image of the dataset as uint8 tensors, from the cache when the source is unchanged.

    An image folder is decoded at size x size by the resize rule (cnnlab.data.decode: crop or
    squash); CIFAR-10 is 32 x 32 and takes no other size.
    """
    try:
        decode.check_rule(resize)
    except ValueError as e:
        raise CnnlabError(f"{e}: --resize crop keeps the aspect, squash keeps the whole image") from None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CnnlabError(f"--image-size must be a positive integer, got {size!r}")
    src = resolve(path, download, spec)
    if src.kind != "folder" and size != 32:
        raise CnnlabError(f"CIFAR-10 images are 32x32, not {size}x{size}: --image-size sets the size of "
                          f"an image folder's images; drop it (or use 32) for CIFAR-10")
    key = source_fingerprint(src, size, spec, resize)
    cache = cache_dir() / f"{key[:32]}.safetensors"
    cached = _read_cache(cache)
    if cached is None:
        train_x, train_y, test_x, test_y, classes, notes = _decode(src, size, spec, resize)
        tensors = {"train_x": torch.from_numpy(np.ascontiguousarray(train_x)),
                   "train_y": torch.from_numpy(train_y), "test_x": torch.from_numpy(np.ascontiguousarray(test_x)),
                   "test_y": torch.from_numpy(test_y)}
        meta = {"classes": classes, "source": str(src.path.resolve()), "kind": src.kind,
                "fingerprint": content_fingerprint(tensors, classes), "notes": notes}
        if not _write_cache(cache, tensors, meta):
            cache = None
        cached = tensors, meta
    tensors, meta = cached
    imagefolder.report(src.path, meta.get("notes", {}), size, strict, resize)
    return ImageData(tensors["train_x"], tensors["train_y"], tensors["test_x"], tensors["test_y"],
                     meta["classes"], str(src.path.resolve()), meta["fingerprint"],
                     str(cache) if cache is not None else "", meta.get("kind", src.kind))


def _write_cache(path: Path, tensors, meta) -> bool:
    """Save the decoded arrays; when the cache folder cannot be written (read-only, full, not
    a folder), warn once and go on without a cache. Returns whether the cache was written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = save(tensors, metadata={"cnnlab": json.dumps(meta)})
        checkpoints.atomic_write_bytes(path, blob)
        return True
    except (OSError, files.WriteError) as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        warnings.warn(f"the data cache {path.parent} is unusable ({reason}): the images were decoded "
                      f"in memory and will be decoded again next time; set CNNLAB_CACHE to a writable "
                      f"folder to load them fast", CnnlabWarning)
        return False


def _read_cache(path: Path):
    """(tensors, meta) from a cache file, or None when absent or damaged (it is then rebuilt)."""
    try:
        if not path.is_file():
            return None
        with safe_open(path, "pt") as f:
            meta = json.loads(f.metadata()["cnnlab"])
            # Copied out of the file's memory map: what was checked is what is used, even if
            # the file is rewritten in place (or truncated: a SIGBUS) while the run holds it.
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
        if content_fingerprint(tensors, meta["classes"]) != meta["fingerprint"]:
            raise ValueError("content does not match its fingerprint")
        return tensors, meta
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        warnings.warn(f"the data cache {path} is damaged ({e}); rebuilding it", CnnlabWarning)
        return None


def parse_val_size(spec) -> int | Fraction:
    """A --val-size as given: a count (5000, "5000") or a percentage ("10%") as a Fraction of 100."""
    text = str(spec).strip()
    if isinstance(spec, bool):
        text = "?"
    try:
        if text.endswith("%"):
            percent = Fraction(text[:-1].strip())
            if 0 <= percent < 100:
                return percent
        elif int(text) >= 0:
            return int(text)
    except (ValueError, ZeroDivisionError):
        pass
    raise CnnlabError(f"--val-size {spec} is neither a count of images (e.g. 5000) nor a percentage "
                      f"of the training split below 100 (e.g. 10%)")


def val_count(spec, n: int) -> int:
    """Images held out for validation from a training split of n: a count as given, or a
    percentage of n, rounded down (10% of CIFAR-10's 50,000 is 5,000). At least one image
    is left to train on."""
    value = parse_val_size(spec)
    count = value if isinstance(value, int) else math.floor(value * n / 100)
    if not 0 <= count < n:
        raise CnnlabError(f"--val-size {spec} must be between 0 and {n - 1} (the training split has "
                          f"{n} images): give a smaller count or a percentage, e.g. --val-size 10%")
    return count


def split_indices(n: int, val_size, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of range(n): the first n - val_count for training, the rest to validate.

    val_size is a count or a percentage of n (see val_count).
    """
    val_size = val_count(val_size, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - val_size], perm[n - val_size:]


# The smallest std normalize divides by: one grey level (1/255). A channel that varies less
# (a constant one: all 0 in a blue-less dataset) would otherwise be divided by 0 and give NaN;
# its values then stay within -255..255, and real channels (std ~0.2 on CIFAR-10) are untouched.
STD_FLOOR = 1 / 255


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (sample) std of uint8 images (N, C, H, W), in units of 0..1.

    A std below STD_FLOOR (a constant channel) is raised to it, so that normalizing by it is safe.

    Exact: a 256-bin histogram per channel gives the integer sums of the pixels and of their
    squares, and each result is one correctly rounded division of integers (Python ints, so no
    overflow at any size), then the square root. The numbers are the same on every machine and
    in any order; earlier versions summed x / 255 in float64 and got within a few ulps of them,
    which leaves the float32 constants training normalizes with as they were (checked on
    CIFAR-10's splits). Counting is one pass over the bytes, not gigabytes of float64 copies.
    """
    channels = x.shape[1]
    n = x.numel() // channels if channels else 0
    if n == 0:
        return [math.nan] * channels, [math.nan] * channels
    mean, std = [], []
    levels = range(256)
    for c in range(channels):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).tolist()
        s1 = sum(k * m for k, m in zip(levels, counts))
        s2 = sum(k * k * m for k, m in zip(levels, counts))
        mean.append(s1 / (255 * n))
        # sum((v - mean)^2) / (n - 1) with v = k / 255, over the integers: (n s2 - s1^2) / (255^2 n (n - 1))
        std.append(max(math.sqrt((n * s2 - s1 * s1) / (255 * 255 * n * max(n - 1, 1))), STD_FLOOR))
    return mean, std


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 images -> float32 (x/255 - mean)/std, for a whole batch at once, keeping its layout.
    A std below STD_FLOOR counts as STD_FLOOR (never a division by zero)."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1).clamp_min(STD_FLOOR)
    return x.float().sub_(mean * 255).div_(std * 255)
