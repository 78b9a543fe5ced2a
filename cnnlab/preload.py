"""Imports a run needs later, done in a background thread while the data load.

    preload.start("torch._dynamo", "cnnlab.plots")

torch.optim imports torch._dynamo at the optimizer's first step (about a second), and the end
of a run imports matplotlib to draw the curves (about half a second). Both are Python work
that can overlap the cache load, the statistics and the model's data init, which spend their
time in C++ with the GIL released. Python's import lock keeps this safe: the main thread,
reaching the same import, waits for the thread's instead of importing twice. A failure is
ignored here; the main thread's own import raises it where it belongs.
"""
from __future__ import annotations

import importlib
import threading


def _load(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the main thread's import will say what is wrong
            pass


def start(*names: str) -> threading.Thread:
    """Import names, in order, in a daemon thread; returns the thread (join() waits for it)."""
    thread = threading.Thread(target=_load, args=(names,), name="cnnlab-preload", daemon=True)
    thread.start()
    return thread
