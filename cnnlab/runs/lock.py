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


def acquire(run_dir: Path) -> int:
    """Lock run_dir (its lock file is created if need be) and write our PID in it: the open,
    locked file descriptor, for hold() or release(). A held lock: a one-line CnnlabError."""
    if fcntl is None:
        return -1
    path = Path(run_dir) / LOCK_NAME
    fd = _lock(path, Path(run_dir))
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(run_dir: Path, fd: int) -> None:
    """Remove the lock file acquire() locked, then unlock it."""
    if fd < 0:
        return
    try:
        os.unlink(Path(run_dir) / LOCK_NAME)  # still locked: nobody else can be holding this file
    except OSError:
        pass
    os.close(fd)  # releases the lock


@contextlib.contextmanager
def hold(run_dir: Path, fd: int | None = None):
    """Hold run_dir's lock for the block, or raise a one-line CnnlabError naming the holder.
    fd: a lock already taken with acquire() (a new run folder is claimed that way), released here."""
    fd = acquire(run_dir) if fd is None else fd
    try:
        yield
    finally:
        release(run_dir, fd)
