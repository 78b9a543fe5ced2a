"""The command's helper: a process forked before torch is imported, which runs some of the
command's pure-Python chores on a second core while this process imports torch or tests.

    helper.start(warm=["cnnlab.analysis.plots"])   # the cnnlab command, first thing
    job = helper.submit(count_files, "data/")      # starts at once, there
    ...                                            # this process imports torch meanwhile
    job.result()                                   # its value (waits); None where it failed
    helper.run("cnnlab.analysis.plots:plot_curves", "h.csv", "c.png")   # there when one runs, else here

A job's function is a function or its "module:name" (imported here only when the job is done
here: matplotlib stays out of this process when the helper draws).
Why a process: importing torch takes over a second of one core, and Python's lock keeps a
thread from doing Python work beside it. Why a fork made first: a process without threads forks
safely (locks held by another thread stay locked in a child) and shares what is already
imported; after forking, the helper imports the warm modules, so a chore that needs them
(matplotlib: 0.35 s) does not wait for them at the end of a run.

Only the command starts a helper; a library call never forks. Functions travel by their module
and name, arguments and values as JSON through pipes, one job at a time, in order. The helper
ignores SIGINT and SIGTERM (the command handles those: it may save a checkpoint first), prints
nothing (its output goes to /dev/null), runs none of this process's exit handlers, and ends
when this process closes its pipe or exits. Where it cannot start (no fork, torch already
imported, threads running) or a job fails, run() does the work here, as without a helper.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
import threading

_helper = None  # this process's helper, set only by start()


def can_fork() -> bool:
    return hasattr(os, "fork") and "torch" not in sys.modules and threading.active_count() == 1


def start(warm=()) -> bool:
    """Fork the helper (once); warm: modules it imports when it has no job. Whether one runs."""
    global _helper
    if _helper is None and can_fork():
        _helper = _start(list(warm))
    return _helper is not None


def submit(fn, *args, **kwargs) -> Job | None:
    """fn(*args, **kwargs) in the helper, from now on; None where no helper runs."""
    return _helper.submit(name_of(fn), args, kwargs) if _helper is not None else None


def run(fn, *args, **kwargs):
    """fn(*args, **kwargs)'s value: from the helper where one runs and the job succeeds (the
    value as JSON gives it back), else computed here."""
    job = submit(fn, *args, **kwargs)
    if job is not None and job.ok():
        return job.result()
    return find(name_of(fn))(*args, **kwargs)


def name_of(fn) -> str:
    return fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__qualname__}"


def find(name: str):
    """The function "module:qualname" names."""
    module, _, qualname = name.partition(":")
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    return fn


class Job:
    def __init__(self, helper: _Helper, number: int):
        self.helper, self.number = helper, number

    def ok(self) -> bool:
        """Whether the job succeeded (waits for it)."""
        return self.helper.outcome(self.number)[0]

    def result(self):
        """The job's value (waits for it); None where it failed."""
        ok, value = self.helper.outcome(self.number)
        return value if ok else None


class _Helper:
    def __init__(self, pid: int, requests: int, replies: int):
        self.pid, self.requests, self.replies = pid, requests, replies
        self.sent, self.done, self.buffer = 0, {}, b""

    def submit(self, name: str, args, kwargs) -> Job | None:
        try:
            line = json.dumps([self.sent, name, args, kwargs]) + "\n"
        except (TypeError, ValueError):  # arguments JSON cannot carry: the caller does the work
            return None
        data = line.encode()
        try:
            while data:
                data = data[os.write(self.requests, data):]
        except OSError:  # the helper is gone
            return None
        self.sent += 1
        return Job(self, self.sent - 1)

    def outcome(self, number: int) -> tuple[bool, object]:
        while number not in self.done:
            line = self._line()
            if line is None:  # the helper ended without an answer
                return False, None
            got, ok, value = json.loads(line)
            self.done[got] = (ok, value)
        return self.done[number]

    def _line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            try:
                chunk = os.read(self.replies, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _start(warm: list[str]) -> _Helper | None:
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (req_r, req_w, rep_r, rep_w):
            os.close(fd)
        return None
    if pid == 0:
        try:
            os.close(req_w), os.close(rep_r)
            _serve(req_r, rep_w, warm)
        finally:
            os._exit(0)
    os.close(req_r), os.close(rep_w)
    return _Helper(pid, req_w, rep_r)


def _serve(requests: int, replies: int, warm: list[str]) -> None:
    """The helper's life: jobs as they come; warm imports while there are none; EOF ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    buffer = b""
    while True:
        if b"\n" not in buffer:
            idle = warm and not select.select([requests], [], [], 0)[0]
            if idle:
                _import(warm.pop(0))
                continue
            chunk = os.read(requests, 65536)
            if not chunk:
                return
            buffer += chunk
            continue
        line, _, buffer = buffer.partition(b"\n")
        number, name, args, kwargs = json.loads(line)
        try:
            out = json.dumps([number, True, find(name)(*args, **kwargs)], default=str)
        except Exception:
            out = json.dumps([number, False, None])
        data = (out + "\n").encode()
        while data:
            data = data[os.write(replies, data):]


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:
        pass
