"""The decode cache's key: a hash of what decoding would read, by content, made cheap by an index.

    key = source_key("folder", Path("data/pets"), extra=decode.identity(64, "crop"))

The key covers everything that decides the decoded tensors:
  - an image folder: per split, the class names in label order, where each class folder really
    is inside the dataset (a class folder may be a link: swapping two links changes the key),
    and every visible file's name and a hash of its bytes;
  - a cifar-10-batches-py folder: the bytes of each file that is read;
  - an archive: its bytes;
  - and extra: for an image folder the decoder's identity (cnnlab.data.decode.identity: the
    resize rule, the size, Pillow's version), so a change of any of them decodes again.
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
from stat import S_ISLNK, S_ISREG

INDEX_FORMAT = 1
RACY_NS = 2_000_000_000  # timestamps may be this coarse (FAT: 2 s); younger files are rehashed
SPLITS = ("train", "test")  # as in imagefolder


def hash_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _visible(folder: str) -> list[str]:
    """Sorted names of the entries scan sees (hidden ones are ignored); none if no folder."""
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return []


class Index:
    """Content hashes by (real path, device, inode, size, mtime_ns, ctime_ns), kept on disk.

    add() lists a file with its stat; key() returns the source's key. When every stat is as
    the last time (a hash of them all is kept beside the index) the last key is reused, and
    the index itself is not even read; else the index supplies the hashes it has for
    unchanged stats and the rest are hashed (threads overlap the reads).
    On disk, <name>.json: {"format", "dirs": {real folder: {name: "dev:ino:size:mtime:ctime hash"}}}
    and <name>.last: "<hash of all stats> <key>".
    """

    def __init__(self, path: Path):
        self.path = path
        self.lines = []  # the key's lines; a file's line gets "|<hash>" in key()
        self.files = []  # (line number, real folder, name, ident)
        self.young = False  # a file changed too recently to trust its stat next time
        self.recent = time.time_ns() - RACY_NS

    def add(self, line: str, folder: str, name: str, st=None) -> None:
        """List the file folder/name (a real path) under line; st is its stat when known."""
        try:
            st = st or os.stat(folder + os.sep + name)
        except OSError as e:
            self.lines.append(f"{line}|unreadable:{e.errno}")
            return
        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
        if ctime > self.recent or mtime > self.recent:
            self.young = True
        self.files.append((len(self.lines), folder, name, f"{st.st_dev}:{st.st_ino}:{st.st_size}:{mtime}:{ctime} "))
        self.lines.append(line)

    def key(self) -> str:
        stats = hashlib.sha256("\n".join(self.lines).encode())
        stats.update("\n".join(ident for *_, ident in self.files).encode())
        stats = stats.hexdigest()
        last = self.path.with_suffix(".last")
        try:
            known, key = last.read_text().split()
            if known == stats and not self.young:
                return key
        except (OSError, ValueError):
            pass
        dirs = self._load()
        todo = []
        for i, folder, name, ident in self.files:
            entry = dirs.get(folder, {}).get(name)
            if isinstance(entry, str) and entry.startswith(ident):
                self.lines[i] += f"|{entry[len(ident):]}"
            else:
                todo.append((i, folder, name, ident))
        with ThreadPoolExecutor(min(8, 1 + len(todo) // 256)) as pool:
            digests = pool.map(lambda job: _try_hash(job[1] + os.sep + job[2]), todo)
            for (i, folder, name, ident), digest in zip(todo, digests):
                self.lines[i] += f"|{digest}"
                mtime, ctime = map(int, ident.split(":")[3:5])
                if not digest.startswith("unreadable:") and max(mtime, ctime) <= self.recent:
                    dirs.setdefault(folder, {})[name] = ident + digest  # young files: hashed again
        key = hashlib.sha256("\n".join(self.lines).encode()).hexdigest()
        if todo:
            _write(self.path, json.dumps({"format": INDEX_FORMAT, "dirs": dirs}, separators=(",", ":")))
        _write(last, "" if self.young else f"{stats} {key}")
        return key

    def _load(self) -> dict:
        try:
            stored = json.loads(self.path.read_text())
            if stored.get("format") == INDEX_FORMAT:
                return {k: v for k, v in stored["dirs"].items() if isinstance(v, dict)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return {}  # absent, of another format or damaged: every file is hashed again


def _write(path: Path, text: str) -> None:
    """Replace path's content atomically; a cache folder that cannot be written only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
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


def _add_folder(root: Path, index: Index) -> None:
    """The key lines of an image folder: what imagefolder.scan reads, listed the same way.

    Visible entries, links followed. A layout that scan refuses still gets a key: decoding
    then raises scan's error, so it is never cached. A file whose link leads outside the
    dataset, a FIFO, socket or device, a broken link or a link loop is named but not read
    (scan skips it and the warning names it). One lstat per plain file: this loop is what a
    cached run pays.
    """
    real_root = os.path.realpath(root)
    classes = None
    for split in SPLITS:
        split_dir = os.path.join(root, split)
        names = [n for n in _visible(split_dir) if os.path.isdir(os.path.join(split_dir, n))]
        classes = names if classes is None else classes
        index.lines.append(f"{split}:{json.dumps(names)}")
        for name in names:
            label = classes.index(name) if name in classes else -1
            real_dir = os.path.realpath(os.path.join(split_dir, name))
            index.lines.append(f"{split}/{name}|{label}|{os.path.relpath(real_dir, real_root)}")
            for file in _visible(real_dir):
                line, path = f"{split}/{name}/{file}", real_dir + os.sep + file
                try:
                    st = os.lstat(path)
                except OSError as e:
                    index.lines.append(f"{line}|unreadable:{e.errno}")
                    continue
                if S_ISREG(st.st_mode):
                    index.add(line, real_dir, file, st)
                elif S_ISLNK(st.st_mode) and os.path.isfile(path):
                    real = os.path.realpath(path)
                    if real.startswith(real_root + os.sep):
                        index.add(f"{line}->{os.path.relpath(real, real_root)}", *os.path.split(real))
                    else:
                        index.lines.append(f"{line}->{real}|not read")
                elif not os.path.isdir(path):  # a FIFO, a link loop, a broken link: named, not read
                    index.lines.append(f"{line}|not read:{st.st_mode:o}")


def source_key(kind: str, path: Path, cache: Path, extra: str = "", files: tuple[str, ...] = ()) -> str:
    """sha256 key of a source: kind 'folder', 'batches' (reads the named files) or 'archive'."""
    real_root = os.path.realpath(path)
    index = Index(cache / f"index-{hashlib.sha256(real_root.encode()).hexdigest()[:24]}.json")
    index.lines.append(f"{kind}|{extra}")
    if kind == "folder":
        _add_folder(path, index)
    elif kind == "batches":
        for name in files:
            index.add(name, real_root, name)
    else:
        index.add("archive", *os.path.split(real_root))
    return index.key()
