"""The command's helper: a process forked before torch is imported, which runs some of the
command's pure-Python chores on a second core while this process imports torch or tests.

    helper.allow()                                 # the cnnlab command's own process only
    helper.start(warm=["cnnlab.analysis.plots"])   # first thing in `cnnlab train`
    helper.submit_as("data-key", "cnnlab.data.sources:key_request", "data/", 32, "crop")
    ...                                            # this process imports torch meanwhile
    helper.take("data-key").result()               # its value (waits); None where it failed
    helper.run("cnnlab.analysis.plots:plot_curves", "/abs/h.csv", "/abs/c.png")   # there, else here

Why a process: importing torch takes over a second of one core, and Python's lock keeps a
thread from doing Python work beside it. Why a fork made first: a process with one thread forks
safely (locks held by another thread stay locked in a child) and shares what is already
imported; once no job is waiting, the helper imports the warm modules, so a chore that needs
them (matplotlib: 0.35 s or more) does not wait for them at the end of a run.

Only the console command starts a helper (cnnlab.cli.run calls allow()); main() called from
Python and every library call do their work in their own process. A job's function is a
function or its "module:name"; arguments and values travel as JSON (a tuple comes back as a
list, anything else JSON has no type for as its str()), one job at a time, in order. Warnings a
job raises are raised again here. The helper prints nothing (its output goes to /dev/null), runs
none of this process's exit handlers, and ends when this process closes its pipe or ends (on
Linux at once, even mid-job). Where it cannot start (no fork, torch already imported, threads
running) or a job fails, run() does the work here, as without a helper. Paths should be
absolute: the helper keeps the working folder it was forked in.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import sys
import threading
import warnings

_allowed = False  # set by allow(): only the command's own process forks
_helper = None  # this process's helper, set only by start()
_tagged: dict = {}  # jobs by the name submit_as gave them, until take()


def allow() -> None:
    global _allowed
    _allowed = True


def one_thread() -> bool:
    """Whether this process runs a single thread, Python's and any other (where /proc shows them)."""
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return True


def can_fork() -> bool:
    return _allowed and hasattr(os, "fork") and "torch" not in sys.modules and one_thread()


def start(warm=()) -> bool:
    """Fork the helper (once); warm: modules it imports when it has no job. Whether one runs."""
    global _helper
    if _helper is None and can_fork():
        _helper = _start(list(warm))
    return _helper is not None


def submit(fn, *args, **kwargs) -> Job | None:
    """fn(*args, **kwargs) in the helper, from now on; None where no helper runs."""
    return _helper.submit(name_of(fn), args, kwargs) if _helper is not None else None


def submit_as(tag: str, fn, *args, **kwargs) -> None:
    """submit(), the job kept under tag for whoever takes it later (another module)."""
    job = submit(fn, *args, **kwargs)
    if job is not None:
        _tagged[tag] = job


def take(tag: str) -> Job | None:
    """The job submitted under tag, once; None where there is none."""
    return _tagged.pop(tag, None)


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
        self.sent, self.done, self.buffer, self.gone = 0, {}, b"", False

    def submit(self, name: str, args, kwargs) -> Job | None:
        try:
            data = (json.dumps([self.sent, name, args, kwargs]) + "\n").encode()
        except (TypeError, ValueError):  # arguments JSON cannot carry: the caller does the work
            return None
        while data and not self.gone:
            # Reading the replies while writing: the helper may be blocked writing one.
            readable, writable, _ = select.select([self.replies], [self.requests], [])
            if readable:
                self._read()
            if writable:
                try:
                    data = data[os.write(self.requests, data):]  # what fits: the pipe does not block
                except BlockingIOError:
                    pass
                except OSError:  # the helper is gone
                    self._end()
        if data:
            return None
        self.sent += 1
        return Job(self, self.sent - 1)

    def outcome(self, number: int) -> tuple[bool, object]:
        """(succeeded, value) of a job, waiting for it; the helper's warnings raised here, once."""
        while number not in self.done and not self.gone:
            self._read()
        ok, value, caught = self.done.get(number, (False, None, []))
        if caught:
            self.done[number] = (ok, value, [])
            for message, category in caught:
                warnings.warn(message, _category(category), stacklevel=3)
        return ok, value

    def _read(self) -> None:
        """Take what the helper has written; file each whole reply."""
        try:
            chunk = os.read(self.replies, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._end()
            return
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            number, ok, value, caught = json.loads(line)
            self.done[number] = (ok, value, caught)

    def _end(self) -> None:
        """The helper ended: every job not answered failed; reap it."""
        self.gone = True
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except OSError:
            pass


def _category(name: str) -> type:
    import builtins
    found = getattr(builtins, name, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning


def _start(warm: list[str]) -> _Helper | None:
    fds = [_above_stdio(fd) for fd in (*os.pipe(), *os.pipe())]
    req_r, req_w, rep_r, rep_w = fds
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        for fd in fds:
            os.close(fd)
        return None
    if pid == 0:
        try:
            os.close(req_w), os.close(rep_r)
            _die_with(parent)
            _serve(req_r, rep_w, warm)
        finally:
            os._exit(0)
    os.close(req_r), os.close(rep_w)
    os.set_blocking(req_w, False)
    return _Helper(pid, req_w, rep_r)


def _above_stdio(fd: int) -> int:
    """fd moved to 3 or above (where 0-2 were closed, a pipe lands there; the helper reuses them)."""
    if fd > 2:
        return fd
    import fcntl
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return high


def _die_with(parent: int) -> None:
    """On Linux, end the helper when its parent ends, even in the middle of a job."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it ended before that took hold
        os._exit(0)


def _serve(requests: int, replies: int, warm: list[str]) -> None:
    """The helper's life: jobs as they come; warm imports once none waits; EOF ends it."""
    quiet = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(quiet, fd)
    os.close(quiet)
    buffer = b""
    while True:
        if b"\n" not in buffer:
            # A job submitted just after the fork goes before the warm imports.
            if warm and not select.select([requests], [], [], 0.05)[0]:
                _import(warm.pop(0))
                continue
            chunk = os.read(requests, 65536)
            if not chunk:
                return
            buffer += chunk
            continue
        line, _, buffer = buffer.partition(b"\n")
        number, name, args, kwargs = json.loads(line)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                ok, value = True, json.loads(json.dumps(find(name)(*args, **kwargs), default=str))
            except Exception:
                ok, value = False, None
        shown = [[str(w.message), w.category.__name__] for w in caught]
        data = (json.dumps([number, ok, value, shown]) + "\n").encode()
        while data:
            data = data[os.write(replies, data):]


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:
        pass
