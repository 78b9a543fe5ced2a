"""The file system as the user sees it: file modes from the umask, and write failures in words.

    check_writable_folder(Path("runs/x"), "the run folder")   # CnnlabError before any work
    describe_write_error(err, path)   # "the disk holding /mnt/x (mounted at /mnt) is full ..."
    chmod_like_new(tmp)               # a temporary file gets the mode a plain open() would give it
    atomic_write_bytes(path, blob)    # the whole new file or the old one, never a half-written one

Files that cnnlab writes through a temporary file (tempfile.mkstemp makes them 0600) are
given the mode that the user's umask gives any new file, like curves.png or a shell's `>`.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import CnnlabError

FULL = {errno.ENOSPC, errno.EDQUOT}
READ_ONLY = {errno.EROFS}
DENIED = {errno.EACCES, errno.EPERM}
USER_FIXABLE = FULL | READ_ONLY  # never a reading problem: safe to word as a write


class WriteError(CnnlabError):
    """A file could not be written: the disk is full, read-only, or the folder is not ours."""

    def __init__(self, message: str, path: Path, errno_: int | None):
        super().__init__(message)
        self.path, self.errno = Path(path), errno_

    @property
    def disk_full(self) -> bool:
        return self.errno in FULL


def umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def chmod_like_new(path) -> None:
    """Give path the mode a newly created file gets: 0666 less the umask."""
    os.chmod(path, 0o666 & ~umask())


def mount_point(path) -> Path:
    """The mount point of the file system that holds path (or would hold it)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} TB"


def describe_write_error(err: OSError, path, what: str | None = None) -> str:
    """One line that says why path could not be written, naming the disk and the folder.

    what names the thing written (default: "<file name> in <folder>").
    """
    path = Path(path)
    folder = path.parent
    what = what or f"{path.name} in {folder}"
    disk = mount_point(folder)
    code = getattr(err, "errno", None)
    if code in FULL:
        try:
            free = f", {_size(shutil.disk_usage(disk).free)} free"
        except OSError:
            free = ""
        return f"the disk mounted at {disk} is full{free}: could not write {what}; free some space there"
    if code in READ_ONLY:
        return (f"could not write {what}: the disk mounted at {disk} is read-only; choose a folder "
                f"on a writable disk")
    if code in DENIED:
        return f"no permission to write {what}: choose a folder you may write to"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"could not write {what}: the folder {folder} does not exist; create it first"
    reason = os.strerror(code) if code else str(err)
    return f"could not write {what} ({reason}): check the disk mounted at {disk}"


def write_error(err: OSError, path, what: str | None = None) -> WriteError:
    return WriteError(describe_write_error(err, path, what), path, getattr(err, "errno", None))


def check_writable_folder(folder, what: str) -> None:
    """Refuse early, in one line, when folder cannot be created or written.

    The nearest existing ancestor must be a folder we may write into; nothing is created.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CnnlabError(f"cannot create {what} {folder}: {existing} is a file, not a folder; "
                          f"choose another place")
    if not os.access(existing, os.W_OK | os.X_OK):
        existing = Path(os.path.abspath(existing))  # '.' says little in a message
        code = errno.EROFS if _read_only(existing) else errno.EACCES
        reason = ("is on a read-only file system (mounted at " + str(mount_point(existing)) + ")"
                  if code == errno.EROFS else "is not writable for you")
        raise WriteError(f"cannot create {what} {folder}: {existing} {reason}; choose a folder "
                         f"on a writable disk", folder, code)


def _read_only(path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def make_folder(folder) -> Path:
    """mkdir -p, with a failure in one line (files.WriteError)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, folder, f"the folder {folder}") from None
    return folder


def remove_if_empty(folder) -> None:
    """Remove a folder we created when nothing was written into it (a refused run)."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync it, then rename it over path (and fsync the folder).

    The file gets the mode the user's umask gives new files. A write that fails (full or
    read-only disk) leaves the previous file as it was and raises files.WriteError.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(e, path) from None
    os.close(fd)
    try:
        write(tmp)
        if os.environ.get("CNNLAB_TEST_SLOW_WRITES"):  # crash tests: widen the window to kill in
            time.sleep(float(os.environ["CNNLAB_TEST_SLOW_WRITES"]))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        chmod_like_new(tmp)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise write_error(e, path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: Path, blob: bytes) -> None:
    """atomic_write of bytes made in memory: a full disk then fails as an OSError we can explain
    (torch.save and safetensors writing to a file fail with their own opaque errors)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
