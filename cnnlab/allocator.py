"""glibc's malloc, tuned once per training process so that each step reuses its buffers.

    reuse_step_buffers()   # in train.setup(); False (and nothing done) where libc is not glibc

PyTorch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (128 KiB
when a process starts) with a fresh mmap() and unmaps it on free, so every training step would
fault in new zeroed pages for its batch and activations (1-10 MB each for the seed recipe):
measured on the 2-core machine, 200,000-400,000 page faults and about 20 % more CPU time per
150 steps. glibc raises the threshold by itself once the program frees an mmapped block (up to
32 MiB), and earlier cnnlab versions got that by accident, from a 30 MB temporary made while
hashing the test images; the speed of training then depended on the dataset's size. Set here
explicitly: the threshold at 32 MiB, the largest glibc accepts, and the trim threshold at twice
that, as glibc's own adjustment does. Where memory comes from does not enter the arithmetic:
results are bitwise the same.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024

_applied: bool | None = None


def reuse_step_buffers() -> bool:
    """Tune glibc's malloc for training (once per process); whether it is tuned."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None)
                if hasattr(libc, "gnu_get_libc_version"):  # glibc, not musl
                    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
                        bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
            except (OSError, AttributeError):
                pass
    return _applied
