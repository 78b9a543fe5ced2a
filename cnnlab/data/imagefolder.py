"""Image-folder datasets: PATH/train/<class>/* and PATH/test/<class>/*, decoded to uint8 arrays.

Classes are the sorted names of the non-hidden class folders and must match between the
splits. Hidden files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints) are ignored. Every
image becomes RGB at size x size (grey, palette, alpha and 16-bit images are converted;
images of another size are resized, and one warning counts them). Files that are not
readable images (empty, truncated, not an image, over Pillow's pixel limit, or a link that
leads outside the dataset) are skipped with one warning that names them, or refused with
strict=True. Decoding runs in worker processes, once: data.py caches the result.
"""
from __future__ import annotations

import difflib
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CnnlabError, CnnlabWarning

SPLITS = ("train", "test")
MAX_LISTED = 20  # bad files named in the warning


def is_image_folder(root: Path) -> bool:
    """A folder with train/ or test/ in it: scan() then says what else it needs."""
    return any((Path(root) / s).is_dir() for s in SPLITS)


def _visible(entries):
    return sorted(e for e in entries if not e.name.startswith("."))


def _inside(path: Path, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def scan(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Classes and, per split, the (path, label) of every visible file, in sorted order.

    A file whose link leads outside root is listed with label -1: decode() reports it.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    class_sets = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            others = [d.name for d in _visible(root.iterdir()) if d.is_dir() and d.name not in SPLITS]
            close = difflib.get_close_matches(split, others, n=1, cutoff=0.5)
            hint = f" (there is {close[0]}/: rename it to {split}/)" if close else ""
            raise CnnlabError(f"{folder} is missing{hint}: an image-folder dataset needs "
                              f"{root}/train/<class>/ and {root}/test/<class>/")
        class_sets[split] = [d.name for d in _visible(folder.iterdir()) if d.is_dir()]
        if not class_sets[split]:
            raise CnnlabError(f"{folder} has no class folders: put each class's images in "
                              f"{folder}/<class>/")
    train_c, test_c = class_sets["train"], class_sets["test"]
    if train_c != test_c:
        only_train = sorted(set(train_c) - set(test_c))
        only_test = sorted(set(test_c) - set(train_c))
        raise CnnlabError(f"train and test have different classes (only in train: {only_train}, "
                          f"only in test: {only_test}): give both splits the same class folders")
    files = {}
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(train_c):
            folder = root / split / name
            if not _inside(folder, real_root):
                raise CnnlabError(f"class folder {folder} is a link to {os.path.realpath(folder)}, "
                                  f"outside the dataset {root}: copy the images in instead")
            found = [p for p in _visible(folder.iterdir()) if p.is_file()]
            if not found:
                raise CnnlabError(f"class folder {folder} has no images: add images or remove the "
                                  f"folder from both splits")
            files[split].extend((p, label if _inside(p, real_root) else -1) for p in found)
    return train_c, files


def decode_one(path, size: int):
    """(uint8 array (3, size, size), resized?) or (None, reason) for a file that is no image."""
    try:
        with warnings.catch_warnings():
            # Over Pillow's pixel limit Pillow only warns (up to twice the limit): refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(path, size)
    except Exception as e:  # noqa: BLE001 - any failure to decode one file is reported, not fatal
        return None, f"{type(e).__name__}: {e}"


def _decode(path, size: int):
    with Image.open(path) as im:
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits
            arr = np.asarray(im).astype(np.int64) >> 8
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
        if im.mode in ("P", "LA", "PA", "RGBA"):
            im = im.convert("RGBA").convert("RGB")  # palette transparency, alpha dropped
        rgb = im.convert("RGB")
        resized = rgb.size != (size, size)
        if resized:
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1), resized


def _decode_chunk(args):
    paths, size = args
    return [decode_one(p, size) for p in paths]


def decode(paths: list[Path], size: int = 32, workers: int | None = None, min_parallel: int = 2000):
    """Decode many files; returns the per-file results of decode_one, in order.

    Below min_parallel files, starting worker processes costs more than it saves.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < min_parallel:
        return [decode_one(p, size) for p in paths]
    chunk = max(256, len(paths) // (workers * 8))
    jobs = [(paths[i:i + chunk], size) for i in range(0, len(paths), chunk)]
    # spawn, not fork: the parent may hold torch's thread pools, which do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return [r for part in pool.map(_decode_chunk, jobs) for r in part]


def read_image_folder(root: Path, size: int = 32):
    """(train_x, train_y, test_x, test_y, classes, notes) with images as uint8 (N, 3, size, size).

    notes = {"skipped": [[path relative to root, reason], ...], "resized": count}; report()
    turns them into the warning (or, with strict, the error) each time the data are loaded.
    """
    classes, files = scan(root)
    out = []
    bad, resized = [], 0
    for split in SPLITS:
        outside = [p for p, y in files[split] if y < 0]
        bad += [(p, "a link outside the dataset") for p in outside]
        paths = [p for p, y in files[split] if y >= 0]
        labels = np.array([y for _, y in files[split] if y >= 0], dtype=np.int64)
        results = decode(paths, size)
        keep = []
        for i, (arr, info) in enumerate(results):
            if arr is None:
                bad.append((paths[i], info))
            else:
                keep.append(i)
                resized += bool(info)
        x = np.stack([results[i][0] for i in keep]) if keep else np.zeros((0, 3, size, size), np.uint8)
        out += [x, labels[keep]]
    for split, y in zip(SPLITS, (out[1], out[3])):
        empty = [classes[c] for c in range(len(classes)) if not (y == c).any()]
        if empty:
            raise CnnlabError(f"class folder(s) {empty} in {Path(root) / split} have no readable "
                              f"images: add images or remove the folder from both splits")
    notes = {"skipped": [[os.path.relpath(p, root), why] for p, why in bad], "resized": resized}
    return (*out, classes, notes)


def report(root, notes: dict, size: int, strict: bool) -> None:
    """Warn about (or, when strict, refuse) the files that decoding skipped or resized."""
    bad = notes.get("skipped", [])
    if bad and strict:
        raise CnnlabError(f"{len(bad)} file(s) are not readable images, first: {bad[0][0]} "
                          f"({bad[0][1]}): remove them, or drop --strict to skip them")
    if bad:
        shown = ", ".join(f"{path} ({why.split(':')[0]})" for path, why in bad[:MAX_LISTED])
        more = f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        warnings.warn(f"skipped {len(bad)} file(s) in {root} that are not readable images: {shown}{more}",
                      CnnlabWarning)
    if notes.get("resized"):
        warnings.warn(f"resized {notes['resized']} image(s) that were not {size}x{size} to {size}x{size}",
                      CnnlabWarning)
