"""Stopping a run cleanly: SIGINT and SIGTERM become a request to stop after the current step.

    with StopSignals() as stop:
        train(..., should_stop=stop.requested)   # checkpoint, then raise Interrupted
"""
from __future__ import annotations

import signal
import threading

from ..errors import CnnlabError


class Interrupted(CnnlabError):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; exit 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """Turns SIGINT and SIGTERM into a request to stop after the current step.

    A second signal stops at once, except in a run of several processes: there torchrun's agent
    sends its own signal after the terminal's Ctrl-C, and the agreed stop (see fit._fit) must not
    be cut short. Only the main thread can take signals; elsewhere this does nothing.
    """

    def __init__(self, repeat_stops: bool = True):
        self.signum, self._old, self.repeat_stops = None, {}, repeat_stops

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            if self.repeat_stops:
                raise KeyboardInterrupt
            return
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
