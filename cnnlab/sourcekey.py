"""The decode cache's key: a hash of what decoding would read, by content, made cheap by an index.

    key = source_key("folder", Path("data/pets"), extra="size=32")

The key covers everything that decides the decoded tensors:
  - an image folder: per split, the class names in label order, where each class folder really
    is inside the dataset (a class folder may be a link: swapping two links changes the key),
    and every visible file's name and a hash of its bytes;
  - a cifar-10-batches-py folder: the bytes of each file that is read;
  - an archive: its bytes.
Paths enter relative to the dataset, so a moved copy keeps its key and its cache.

Hashing 60,000 files on every run would cost seconds, so each file's hash (blake2b) is kept
in an index in the cache folder, keyed on the file's real path, device, inode, size, mtime_ns
and ctime_ns; a later run stats the files and rehashes only those whose stat changed. A
rewrite that keeps the size and puts the mtime back (cp -p, rsync -a, tar, unzip) still
changes ctime, which no user call can set. A file changed within RACY_NS of its hashing is
not indexed (its ctime might not show a second change), so it is hashed again next time.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

INDEX_FORMAT = 1
RACY_NS = 2_000_000_000  # timestamps may be this coarse (FAT: 2 s); younger files are rehashed
SPLITS = ("train", "test")  # as in imagefolder


def hash_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _visible(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _folder_listing(root: Path) -> tuple[list[str], list[tuple[str, str | None]]]:
    """(lines naming the layout, [(line prefix, real path to hash or None)]) of an image folder.

    Lists what imagefolder.scan reads, the same way (visible entries, links followed); a layout
    scan refuses still gets a key: decoding it then raises scan's error, so it is never cached.
    """
    real_root = os.path.realpath(root)
    layout, files = [], []
    classes = None
    for split in SPLITS:
        split_dir = os.path.join(root, split)
        names = [e.name for e in _visible(split_dir) if e.is_dir()] if os.path.isdir(split_dir) else []
        classes = names if classes is None else classes
        layout.append(f"{split}:{json.dumps(names)}")
        for name in names:
            label = classes.index(name) if name in classes else -1
            real_dir = os.path.realpath(os.path.join(split_dir, name))
            layout.append(f"{split}/{name}|{label}|{os.path.relpath(real_dir, real_root)}")
            for e in _visible(real_dir):
                if not e.is_file():
                    continue
                prefix = f"{split}/{name}/{e.name}"
                real = os.path.realpath(e.path) if e.is_symlink() else os.path.join(real_dir, e.name)
                if real != real_root and not real.startswith(real_root + os.sep):
                    files.append((f"{prefix}|outside:{real}", None))  # never read: scan skips it
                else:
                    files.append((f"{prefix}|{os.path.relpath(real, real_root)}", real))
    return layout, files


class Index:
    """Content hashes by (real path, device, inode, size, mtime_ns, ctime_ns), kept on disk."""

    def __init__(self, path: Path):
        self.path, self.changed = path, False
        try:
            stored = json.loads(path.read_text())
            self.dirs = stored["dirs"] if stored.get("format") == INDEX_FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.dirs = {}  # absent or damaged: every file is hashed again

    def hashes(self, reals: list[str]) -> list[str]:
        """The content hash of each file (or a note that it could not be read), in order."""
        now = time.time_ns()
        out, todo = [None] * len(reals), []
        for i, real in enumerate(reals):
            folder, name = os.path.split(real)
            try:
                st = os.stat(real)
            except OSError as e:
                out[i] = f"unreadable:{e.errno}"
                continue
            stat = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            known = self.dirs.get(folder, {}).get(name)
            if known is not None and known[:5] == stat:
                out[i] = known[5]
            else:
                todo.append((i, real, folder, name, stat))
        if not todo:
            return out
        with ThreadPoolExecutor(min(8, 1 + len(todo) // 256)) as pool:  # file reads overlap
            results = pool.map(lambda job: _try_hash(job[1]), todo)
            for (i, real, folder, name, stat), digest in zip(todo, results):
                out[i] = digest
                fresh = now - max(stat[3], stat[4]) < RACY_NS
                if not digest.startswith("unreadable:") and not fresh:
                    self.dirs.setdefault(folder, {})[name] = [*stat, digest]
                    self.changed = True
        return out

    def save(self) -> None:
        """Write the index if it changed; a cache folder that cannot be written only costs time."""
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"format": INDEX_FORMAT, "dirs": self.dirs}, f, separators=(",", ":"))
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        except OSError:
            pass


def _try_hash(real: str) -> str:
    try:
        return hash_file(real)
    except OSError as e:
        return f"unreadable:{e.errno}"


def source_key(kind: str, path: Path, cache: Path, extra: str = "", files: tuple[str, ...] = ()) -> str:
    """sha256 key of a source: kind 'folder', 'batches' (reads the named files) or 'archive'."""
    path = Path(path)
    real_root = os.path.realpath(path)
    index = Index(cache / f"index-{hashlib.sha256(real_root.encode()).hexdigest()[:24]}.json")
    if kind == "folder":
        layout, listed = _folder_listing(path)
    elif kind == "batches":
        layout, listed = [], [(name, os.path.join(real_root, name)) for name in files]
    else:
        layout, listed = [], [("archive", real_root)]
    reals = [real for _, real in listed if real is not None]
    digests = iter(index.hashes(reals))
    index.save()
    h = hashlib.sha256(f"{kind}|{extra}\n".encode())
    for line in layout:
        h.update(line.encode() + b"\n")
    for prefix, real in listed:
        h.update(f"{prefix}|{next(digests) if real is not None else '-'}\n".encode())
    return h.hexdigest()
