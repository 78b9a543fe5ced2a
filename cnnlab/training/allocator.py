"""glibc's malloc, tuned once per training process so that each step reuses its buffers.

    reuse_step_buffers()   # in train.setup() and before a run loads its data; False (and
                           # nothing done) where libc is not glibc
    reuse_step_buffers(large=False)   # the thresholds only: glibc as a torchvision script has it

PyTorch's CPU tensors come from malloc. glibc serves a block above its mmap threshold (128 KiB
when a process starts) with a fresh mmap() and unmaps it on free, so every training step would
fault in new zeroed pages for its batch and activations (1-10 MB each for the seed recipe):
measured on the 2-core machine, 200,000-400,000 page faults and about 20 % more CPU time per
150 steps. glibc raises the threshold by itself once the program frees an mmapped block (up to
32 MiB), and earlier cnnlab versions got that by accident, from a 30 MB temporary made while
hashing the test images; the speed of training then depended on the dataset's size. Set here
explicitly: the threshold at 32 MiB, the largest glibc accepts, and the trim threshold at twice
that, as glibc's own adjustment does.

Blocks above 32 MiB are still mapped afresh at that threshold, and the speed-record family has
them: fast-94's first activations at batch 512 are 63 MB in bf16, and evaluation batches of
1,000 images pass 60 MB. For cnnlab's own runs mmap is therefore turned off altogether
(M_MMAP_MAX 0) and the heap keeps up to 1 GiB of freed memory (M_TRIM_THRESHOLD): measured on
the 2-core machine (Intel Xeon, 1 thread), fast-94 went from about 90,000-110,000 page faults
per step to 22,000, its system time from 1.6-2.0 s to 0.5-0.6 s per 11 steps, and each step
got 8-12 % faster. The tutorial baselines in benchmarks/ keep glibc's behaviour as torchvision
leaves it (large=False). Where memory comes from does not enter the arithmetic: results are
bitwise the same.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024
KEEP_FREED = 1024 * 1024 * 1024  # with mmap off: freed heap memory kept for the next step

_applied: dict[bool, bool] = {}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # glibc, not musl


def reuse_step_buffers(large: bool = True) -> bool:
    """Tune glibc's malloc for training (once per process); whether it is tuned.

    large: also serve blocks above 32 MiB from the heap (mmap off), as cnnlab's runs do.
    """
    if large not in _applied:
        libc, ok = _glibc(), False
        if libc is not None:
            try:
                ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
                if large:
                    ok = ok and bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED))
                elif not _applied.get(True):  # never undo the larger setting
                    ok = ok and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
            except AttributeError:
                ok = False
        _applied[large] = ok
    return _applied[large]
