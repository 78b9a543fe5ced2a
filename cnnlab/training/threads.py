"""CPU threads of a run: how many (--threads, OMP_NUM_THREADS, or this machine's free cores), and why.

    record = choose(None)             # {"threads": 2, "threads_from": "default", "threads_load": {...}}
    with using(record["threads"]):    # torch's threads for the run, the caller's count again after
        ...

The default counts the cores that other programs leave free: while this process sleeps for
WINDOW_S, /proc/stat says how much CPU time the machine's other processes used (niced ones
too), and the run takes the cores left, at least one. A thread that shares its core with another
program stalls the run's other threads at every parallel step's barrier, so on a busy machine
fewer threads train faster, niced neighbours or not (docs/speed.md, "Threads and a busy machine").
The count is recorded in config.json: `--threads N` repeats a run exactly (results are bitwise
repeatable for one thread count).
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from dataclasses import dataclass

from ..errors import CnnlabError, CnnlabWarning
from ..text import plural

# Whether a run's weights depend on its thread count: on the CPU, the linear layer's weight
# gradient (a matrix product summing over the batch) and long sums split their work by thread,
# so their last bits differ (docs/speed.md says which operations).
COUNTS_CHANGE_RESULTS = True
WINDOW_S = 0.1  # 10 clock ticks per core: enough to tell a busy core from a free one
# Set by `cnnlab train --nproc` beside the OMP_NUM_THREADS it chose: the workers' count is the default.
CHOSEN_ENV = "CNNLAB_THREADS_CHOSEN"


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class Sample:
    """One reading of the machine's CPU time: (busy, total) clock ticks, this process's seconds."""
    ticks: tuple[int, int] | None
    own_s: float
    at: float


def _ticks(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs from /proc/stat; busy is all but idle and iowait
    (user nice system idle iowait irq softirq steal). None where there is no /proc/stat."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def sample() -> Sample:
    t = os.times()
    return Sample(_ticks(), t.user + t.system, time.monotonic())


def busy_elsewhere(window_s: float = WINDOW_S) -> float | None:
    """Cores kept busy by other processes over window_s seconds, while this one sleeps (what it
    uses meanwhile, its other threads, is taken out); None where the machine does not say."""
    since = sample()
    time.sleep(window_s)
    now = sample()
    if since.ticks is None or now.ticks is None or now.ticks[1] <= since.ticks[1]:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy_s = (now.ticks[0] - since.ticks[0]) / hz - (now.own_s - since.own_s)  # this process's own time out
    wall_s = (now.ticks[1] - since.ticks[1]) / hz / (os.cpu_count() or 1)
    return max(0.0, busy_s / wall_s)


def default(local_world: int = 1) -> tuple[int, dict]:
    """The default count per process and the load it was chosen from: the cores that other
    programs leave free (at least one), shared out between this machine's local_world processes."""
    total = cores()
    busy = busy_elsewhere()
    free = total if busy is None else max(1, min(total, round(total - busy)))
    load = {"cores": total, "busy_elsewhere": None if busy is None else round(busy, 2)}
    return max(1, free // max(1, local_world)), load


def _env_count() -> int | None:
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, int(text)) if text.isdigit() else None


def choose(given: int | None, local_world: int = 1) -> dict:
    """This run's count and where it came from, as config.json records it: given (--threads or
    threads=), else OMP_NUM_THREADS, else default(). A count above the cores is said in a warning."""
    if given is not None:
        record = {"threads": check(given), "threads_from": "flag"}
    elif _env_count() is not None and os.environ.get(CHOSEN_ENV) != "default":
        record = {"threads": _env_count(), "threads_from": "OMP_NUM_THREADS"}
    elif _env_count() is not None:  # --nproc's launcher chose it for every process
        record = {"threads": _env_count(), "threads_from": "default"}
    else:
        count, load = default(local_world)
        record = {"threads": count, "threads_from": "default", "threads_load": load}
    if record["threads_from"] != "default":
        warn_if_oversubscribed(record["threads"], local_world, record["threads_from"])
    return record


def check(n) -> int:
    """A thread count: a positive integer, else one line that says so."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CnnlabError(f"--threads must be a positive integer (CPU threads per process), got {n!r}")
    return n


def warn_if_oversubscribed(n: int, local_world: int = 1, source: str = "flag") -> None:
    """A warning when n threads in each of local_world processes are more than the cores."""
    total, procs = cores(), max(1, local_world)
    if n * procs > total:
        setting = f"--threads {n}" if source == "flag" else f"{source}={n}"
        who = f"{n} threads" if procs == 1 else f"{n} threads in each of {procs} processes"
        warnings.warn(f"{setting} runs {who} on this machine's {plural(total, 'CPU core')}: they share the "
                      f"cores and train slower than --threads {max(1, total // procs)} would", CnnlabWarning,
                      stacklevel=3)


@contextlib.contextmanager
def using(n: int | None):
    """torch's CPU threads set to n for the duration (None: as they are), the caller's count after."""
    import torch
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def take(given: int | None, local_world: int = 1) -> dict:
    """choose(), and torch's CPU threads set to that count (for the run: see restored)."""
    import torch
    record = choose(given, local_world)
    torch.set_num_threads(record["threads"])
    return record


def take_recorded(config: dict, given: int | None, at: dict | None, log) -> tuple[dict, str | None]:
    """A resumed run's count: the one config.json recorded, or given (--threads) when there is one.
    Sets torch's threads to it; returns config with the count (a change appended to
    "threads_changes" at `at`, the checkpoint's epoch and step) and the line said about a change."""
    import torch
    was = config.get("threads")
    if was is None or (given is not None and given != was):
        record = choose(given)
    else:
        record = {"threads": was, "threads_from": config.get("threads_from", "default")}
    torch.set_num_threads(record["threads"])
    if was is None or record["threads"] == was:
        return {**config, **record}, None
    at = at or {"epoch": 1, "step": 0}
    changes = [*config.get("threads_changes", []), {"epoch": at["epoch"], "step": at["step"], "from": was,
                                                      "to": record["threads"]}]
    note = (f"--threads {record['threads']}: this run trained with {plural(was, 'thread')} so far; "
            + ("its results may differ from an uninterrupted run's (fp32 sums are split by thread)"
               if COUNTS_CHANGE_RESULTS else "the results are the same"))
    log(note)
    return {**config, **record, "threads_changes": changes}, note


def restored(fn):
    """fn, after which torch's CPU thread count is the caller's again (a run sets its own)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with using(None):
            return fn(*args, **kwargs)
    return wrapper
