"""One writer per run folder: an OS lock on RUN/.lock, held while a run trains or resumes.

    with hold(run_dir):
        ...   # train into run_dir; a second 'cnnlab train --resume run_dir' is refused

The lock is flock(2) on an open file, so the kernel drops it when the process ends in any
way, SIGKILL included: there is never a stale lock to clean up. The file holds the holder's
PID, to name it in the refusal, and is removed when the holder is done (a killed holder
leaves the file, unlocked). Removing it safely: the holder unlinks it while still locked,
and whoever locks a file checks that it is still the one at RUN/.lock, else tries again.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import CnnlabError

try:
    import fcntl
except ImportError:  # not POSIX: no lock (cnnlab's run folders assume one writer there)
    fcntl = None

LOCK_NAME = ".lock"


def holder(run_dir: Path) -> str:
    """The PID written in run_dir's lock file, or 'unknown'."""
    try:
        return (Path(run_dir) / LOCK_NAME).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file fd is the file now at path (not one removed meanwhile)."""
    try:
        at = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (at.st_dev, at.st_ino)


def _lock(path: Path, run_dir: Path, attempts: int = 20) -> int:
    """An open file descriptor of path, exclusively locked, or a one-line CnnlabError."""
    for _ in range(attempts):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CnnlabError(f"cannot lock the run folder {run_dir} ({e.strerror}): make it writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(run_dir)
            raise CnnlabError(f"{run_dir} is in use by another cnnlab process (PID {pid}): wait for it "
                              f"to finish, or stop it (kill -INT {pid} saves a checkpoint) and resume "
                              f"then") from None
        if _is_at(fd, path):
            return fd
        os.close(fd)  # its holder removed it as we opened it: lock the file there now
    raise CnnlabError(f"cannot lock the run folder {run_dir}: its lock file keeps changing; try again")


@contextlib.contextmanager
def hold(run_dir: Path):
    """Hold run_dir's lock for the block, or raise a one-line CnnlabError naming the holder."""
    if fcntl is None:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    fd = _lock(path, Path(run_dir))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(path)  # still locked: nobody else can be holding this file
        except OSError:
            pass
        os.close(fd)  # releases the lock
