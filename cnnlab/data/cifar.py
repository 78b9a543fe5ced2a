"""The official CIFAR-10 (python version): download, verify, extract safely, read into arrays.

Every file is read once and its bytes checked against their md5 before those very bytes
are unpickled, so pickle only ever reads the bytes the dataset's authors published. The
checks take a CifarSpec so the tests can exercise the same code on small fake archives
with their own md5s. Extraction is safe to run in several processes at once.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import files
from ..errors import CnnlabError

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"


@dataclass(frozen=True)
class CifarSpec:
    url: str = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    archive_md5: str = "c58f30108f718f92721af3b95e74349a"
    # Per-file md5s inside cifar-10-batches-py/ (the values torchvision also checks).
    train_md5: tuple = (("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"))
    test_md5: tuple = (("test_batch", "40351d587109b95175f43aff81a1287e"),)
    meta_md5: tuple = (("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),)
    extra_members: tuple = field(default=("readme.html",))  # shipped, allowed, never read

    @property
    def checked(self) -> dict[str, str]:
        return dict(self.train_md5 + self.test_md5 + self.meta_md5)


OFFICIAL = CifarSpec()


def md5_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(dest_dir: Path, spec: CifarSpec = OFFICIAL) -> Path:
    """Fetch the archive into dest_dir, verifying its md5; only a verified file gets its name."""
    dest_dir = Path(dest_dir)
    created = [p for p in [dest_dir, *dest_dir.parents] if not p.exists()]  # removed again on failure
    target = dest_dir / ARCHIVE
    h = hashlib.md5()
    tmp = None
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=ARCHIVE + ".", suffix=".part", dir=dest_dir)
        # urlopen verifies TLS certificates with the system's default context; never disabled.
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as resp:
            while block := resp.read(1 << 20):
                h.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != spec.archive_md5:
            raise CnnlabError(f"downloaded {spec.url} has md5 {h.hexdigest()}, expected "
                              f"{spec.archive_md5}: the download is corrupt, try again")
        files.chmod_like_new(tmp)
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as e:
        if getattr(e, "errno", None) in files.USER_FIXABLE:  # full or read-only disk, not the network
            raise CnnlabError(f"could not download CIFAR-10: {files.describe_write_error(e, target)}") from None
        raise CnnlabError(f"could not download CIFAR-10 from {spec.url} ({e}): put {ARCHIVE} "
                          f"or an image folder in {dest_dir}, or pass --data PATH") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if not target.exists():
            for folder in created:  # innermost first; only folders this call made, if still empty
                files.remove_if_empty(folder)
    return target


def _folder_ok(folder: Path, spec: CifarSpec) -> bool:
    """Whether folder holds every checked file with its md5 (an earlier extraction's result)."""
    try:
        return all(md5_file(folder / name) == md5 for name, md5 in spec.checked.items())
    except OSError:
        return False


def extract(archive: Path, dest_dir: Path, spec: CifarSpec = OFFICIAL) -> Path:
    """Verify the archive's md5, then extract only the expected regular files into dest_dir.

    Extraction goes to a temporary folder of its own in dest_dir (created if missing) and is
    moved into place with one atomic rename, only after every member passed: a refused
    archive leaves nothing behind, and when several processes extract at once, the first
    rename wins and the others use its result. A damaged earlier extraction is replaced.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    actual = md5_file(archive)
    if actual != spec.archive_md5:
        raise CnnlabError(f"{archive} has md5 {actual}, expected {spec.archive_md5}: the file is "
                          f"truncated or altered; delete it and download it again")
    allowed = {f"{FOLDER}/{name}" for name in (*spec.checked, *spec.extra_members)}
    target = dest_dir / FOLDER
    if _folder_ok(target, spec):
        return target
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cifar-extract-", dir=dest_dir))
    except OSError as e:
        raise CnnlabError(f"cannot extract {archive} into {dest_dir} ({e.strerror}): make that folder "
                          f"writable, or set CNNLAB_CACHE to a writable folder") from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                if m.name.rstrip("/") == FOLDER and m.isdir():
                    continue
                if m.name not in allowed or not m.isfile():
                    raise CnnlabError(f"{archive} holds an unexpected member {m.name!r}: refusing "
                                      f"to extract it; use the official {ARCHIVE}")
            tar.extractall(tmp, members=[m for m in members if m.isfile()], filter="data")
        _move_into_place(tmp / FOLDER, target, spec)
    except (tarfile.TarError, EOFError) as e:
        raise CnnlabError(f"could not extract {archive} ({e}): delete it and download it again") from None
    except OSError as e:
        if e.errno in files.USER_FIXABLE:  # full or read-only disk, not the archive
            raise CnnlabError(f"could not extract {archive}: {files.describe_write_error(e, target)}") from None
        raise CnnlabError(f"could not extract {archive} into {dest_dir} ({e}): check that the folder "
                          f"is writable and the disk has room, then try again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _move_into_place(new: Path, target: Path, spec: CifarSpec, attempts: int = 5) -> None:
    """Rename new to target atomically. If another process got there first and its folder is
    whole, keep it; if the folder there is damaged, move it aside (atomically) and retry."""
    for _ in range(attempts):
        try:
            os.rename(new, target)  # fails on an existing non-empty folder: never merges
            return
        except OSError as e:
            if not target.exists():
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # it was moved aside meanwhile: try again
                raise
        if _folder_ok(target, spec):
            return  # a concurrent extraction won: use its result
        aside = Path(tempfile.mkdtemp(prefix=".cifar-damaged-", dir=target.parent))
        try:
            os.rename(target, aside / FOLDER)
        except FileNotFoundError:
            pass  # someone else moved it
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    raise OSError(errno.EBUSY, f"{target} kept changing while extracting")


def _unpickle_verified(path: Path, md5: str) -> dict:
    """Read the file's bytes once, check their md5, unpickle those very bytes: a file swapped
    after the check is never what pickle reads."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CnnlabError(f"{path} is missing: the {FOLDER} folder is incomplete; extract the "
                          f"official {ARCHIVE} again") from None
    except OSError as e:
        raise CnnlabError(f"cannot read {path} ({e.strerror}): make it readable") from None
    actual = hashlib.md5(blob).hexdigest()
    if actual != md5:
        raise CnnlabError(f"{path} has md5 {actual}, expected {md5}: refusing to unpickle an "
                          f"altered file; extract the official {ARCHIVE} again")
    return pickle.loads(blob, encoding="bytes")


def read_batches(folder: Path, spec: CifarSpec = OFFICIAL):
    """(train_x, train_y, test_x, test_y, classes) from a verified cifar-10-batches-py folder.

    Images come back as uint8 arrays of shape (N, 3, 32, 32), labels as int64.
    """
    folder = Path(folder)
    meta = _unpickle_verified(folder / spec.meta_md5[0][0], spec.meta_md5[0][1])
    classes = [c.decode() for c in meta[b"label_names"]]

    def read(entries):
        parts = [_unpickle_verified(folder / name, md5) for name, md5 in entries]
        x = np.concatenate([np.asarray(p[b"data"], dtype=np.uint8) for p in parts])
        y = np.concatenate([np.asarray(p[b"labels"], dtype=np.int64) for p in parts])
        return x.reshape(-1, 3, 32, 32), y

    train_x, train_y = read(spec.train_md5)
    test_x, test_y = read(spec.test_md5)
    return train_x, train_y, test_x, test_y, classes
