"""Compiles the package's C kernels with the machine's C compiler on first use and loads them.

    lib = library("gelu.c")  # a ctypes.CDLL, or None: no compiler, a failed build, or CNNLAB_KERNELS=0
    prebuild()               # every source's build ahead of time (the train command's helper process runs it)

The shared library is built once per source, compiler and CPU (`-O3 -march=native`, OpenMP where
the compiler has it) into the cache folder (CNNLAB_CACHE, else ~/.cache/cnnlab) and reused after.
Nothing is compiled at install time and nothing fails without a compiler: every caller falls back
to ATen's operators where library() is None. The OpenMP runtime is torch's own (same soname), so
the kernels share torch's threads and their wait policy. A build that fails is remembered (a
`.failed` file beside it) and not tried again with the same compiler.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

BUILD_JOB = "kernels"  # the helper job (cnnlab/helper.py) the train command submits: prebuild
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=c11")
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """False where the environment turns the compiled kernels off (CNNLAB_KERNELS=0)."""
    return os.environ.get("CNNLAB_KERNELS", "1").strip().lower() not in ("0", "off", "false", "no")


@lru_cache(maxsize=None)
def _cpu() -> str:
    """What -march=native compiles for: the CPU's model and flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc)


@lru_cache(maxsize=None)
def _version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _build(src: Path, cc: str, target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for extra in (["-fopenmp"], []):  # one thread per call where the compiler has no OpenMP
            cmd = [cc, *FLAGS, *extra, "-o", tmp, str(src)]
            try:
                done = subprocess.run(cmd, capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError):
                break
            if done.returncode == 0:
                os.replace(tmp, target)  # whole or not at all, also with two processes building
                return True
        target.with_suffix(".failed").write_bytes(b"")
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _target(name: str) -> Path | None:
    """Where the library of source `name` is built for this compiler and CPU; None: no compiler."""
    from ...data.sources import cache_dir
    cc = _compiler()
    if cc is None:
        return None
    src = Path(__file__).with_name(name)
    key = hashlib.sha256(b"\0".join(x.encode() if isinstance(x, str) else x for x in (
        src.read_bytes(), cc, _version(cc), _cpu(), " ".join(FLAGS)))).hexdigest()[:16]
    return cache_dir() / "kernels" / f"{src.stem}-{key}.so"


SOURCES = ("pooled_conv.c", "gelu.c", "winograd.c")  # the package's kernels, each its own library


def prebuild(name: str | None = None) -> str | None:
    """Builds the library of source `name` (None: of every source) where it is not built yet, with
    no loading; its path (the last one's), None where it does not build."""
    if not enabled():
        return None
    paths = [_ensure(n, _target(n)) for n in ((name,) if name else SOURCES)]
    return paths[-1] if all(paths) else None


def _ensure(name: str, target: Path | None) -> str | None:
    if target is None or target.with_suffix(".failed").exists():
        return None
    try:
        ok = target.exists() or _build(Path(__file__).with_name(name), _compiler(), target)
    except OSError:
        return None
    return str(target) if ok else None


def library(name: str = "pooled_conv.c") -> ctypes.CDLL | None:
    """The compiled kernels of one source file of this package, built on first use; None where
    they are turned off or do not build here (the caller then uses ATen)."""
    if not enabled():
        return None
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load(name)
        return _loaded[name]


def _load(name: str) -> ctypes.CDLL | None:
    target = _target(name)
    if target is None:
        return None
    if not target.exists():
        from ... import helper
        job = helper.take(BUILD_JOB)
        if job is not None:
            job.result()  # the helper's build, begun while this process imported torch
    path = _ensure(name, target)
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None
