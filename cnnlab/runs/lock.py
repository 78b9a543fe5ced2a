"""One writer per run folder: an OS lock on RUN/.lock, held while a run trains or resumes.

    with hold(run_dir):
        ...   # train into run_dir; a second 'cnnlab train --resume run_dir' is refused

The lock is flock(2) on an open file, so the kernel drops it when the process ends in any
way, SIGKILL included: there is never a stale lock to clean up. The file keeps the holder's
PID only to name it in the refusal; it is left in place (removing it would let a third
process lock a new file while the second still waits on the old one).
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


@contextlib.contextmanager
def hold(run_dir: Path):
    """Hold run_dir's lock for the block, or raise a one-line CnnlabError naming the holder."""
    if fcntl is None:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CnnlabError(f"cannot lock the run folder {run_dir} ({e.strerror}): make it writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = holder(run_dir)
            raise CnnlabError(f"{run_dir} is in use by another cnnlab process (PID {pid}): wait for it "
                              f"to finish, or stop it (kill -INT {pid} saves a checkpoint) and resume "
                              f"then") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
