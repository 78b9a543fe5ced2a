"""Image-folder datasets: PATH/train/<class>/* and PATH/test/<class>/*, decoded to uint8 arrays.

Classes are the sorted names of the non-hidden class folders and must match between the
splits. Hidden files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints) are ignored. Every
image goes through cnnlab.data.decode, the decoder predict uses too: RGB, EXIF orientation
applied, transparency on white, then fitted to size x size by the resize rule (crop or squash;
one warning counts the images that were resampled). Files that are not readable images
(empty, truncated, not an image, over Pillow's pixel limit, a link that leads outside the
dataset or nowhere or in a loop, a FIFO, socket or device) are skipped with one warning that
names them, or refused with strict=True. Before decoding, the decoded size is estimated and a
set that would not fit in memory is refused. Decoding runs in worker processes, once: data.py
caches the result.
"""
from __future__ import annotations

import difflib
import errno
import os
import stat
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from . import decode as decoder
from ..errors import CnnlabError, CnnlabWarning

SPLITS = ("train", "test")
MAX_LISTED = 20  # bad files named in the warning
# scan()'s label for a file that is listed but not read, and why (the warning names them).
NOT_READ = {-1: "a link outside the dataset", -2: "a link loop", -3: "a broken link",
            -4: "not a regular file (a FIFO, socket or device)"}
MEMORY_FACTOR = 2  # peak memory per decoded byte: the arrays and one copy (stacking, the split)


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

    An entry that is not read is listed with a negative label, a key of NOT_READ: a link
    leading outside root, a link loop or a broken link, a FIFO, socket or device (opening a
    FIFO would wait forever). Folders inside a class folder are ignored.
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
            found = [(p, _label(p, label, real_root)) for p in _visible(folder.iterdir())]
            found = [(p, y) for p, y in found if y is not None]
            if not any(y >= 0 for _, y in found):
                raise CnnlabError(f"class folder {folder} has no images: add images or remove the "
                                  f"folder from both splits")
            files[split].extend(found)
    return train_c, files


def _label(path: Path, label: int, real_root: str) -> int | None:
    """label for a file to read, a NOT_READ key for one to skip, None for a folder (ignored)."""
    try:
        st = path.stat()  # follows links
    except OSError as e:
        if not path.is_symlink():
            return -4
        return -2 if e.errno == errno.ELOOP else -3
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return -4
    return label if _inside(path, real_root) else -1


def _decode_chunk(args):
    paths, size, rule = args
    return [decoder.decode_one(p, size, rule) for p in paths]


def decode(paths: list[Path], size: int = 32, rule: str = decoder.DEFAULT_RULE, workers: int | None = None,
           min_parallel: int = 2000):
    """Decode many files; returns the per-file results of decode.decode_one, in order.

    Below min_parallel files, starting worker processes costs more than it saves.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(paths) < min_parallel:
        return [decoder.decode_one(p, size, rule) for p in paths]
    chunk = max(256, len(paths) // (workers * 8))
    jobs = [(paths[i:i + chunk], size, rule) for i in range(0, len(paths), chunk)]
    # spawn, not fork: the parent may hold torch's thread pools, which do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return [r for part in pool.map(_decode_chunk, jobs) for r in part]


def available_memory() -> int:
    """Bytes this machine can still give a process: MemAvailable from /proc/meminfo (Linux),
    else the free physical pages (os.sysconf); 0 when neither says (then nothing is refused)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_memory(n: int, size: int) -> None:
    """Refuse, before decoding, a set of n images at size x size that would not fit in memory.

    The decoded set is n * 3 * size * size bytes of uint8; loading holds it and one copy at
    its peak (MEMORY_FACTOR). The message names the largest --image-size that would fit.
    """
    need = n * 3 * size * size
    available = available_memory()
    if not available or need * MEMORY_FACTOR <= available:
        return
    fits = int((available / (MEMORY_FACTOR * 3 * max(n, 1))) ** 0.5)
    hint = f"pass --image-size {fits} or smaller" if fits >= 8 else "use a machine with more memory"
    raise CnnlabError(f"{n:,} images at {size}x{size} are {gigabytes(need)} decoded and need about "
                      f"{gigabytes(need * MEMORY_FACTOR)} of memory to load, but {gigabytes(available)} "
                      f"are available: {hint}, or use fewer images")


def read_image_folder(root: Path, size: int = 32, rule: str = decoder.DEFAULT_RULE):
    """(train_x, train_y, test_x, test_y, classes, notes) with images as uint8 (N, 3, size, size).

    notes = {"skipped": [[path relative to root, reason], ...], "resized": count}; report()
    turns them into the warning (or, with strict, the error) each time the data are loaded.
    """
    classes, files = scan(root)
    check_memory(sum(y >= 0 for split in SPLITS for _, y in files[split]), size)
    out = []
    bad, resized = [], 0
    for split in SPLITS:
        bad += [(p, NOT_READ[y]) for p, y in files[split] if y < 0]
        paths = [p for p, y in files[split] if y >= 0]
        labels = np.array([y for _, y in files[split] if y >= 0], dtype=np.int64)
        results = decode(paths, size, rule)
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


def report(root, notes: dict, size: int, strict: bool, rule: str = decoder.DEFAULT_RULE) -> None:
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
        how = "shorter side resized, centre cut out" if rule == "crop" else "squashed"
        warnings.warn(f"resized {notes['resized']} image(s) that were not {size}x{size} to {size}x{size} "
                      f"({how}; --resize chooses)", CnnlabWarning)
