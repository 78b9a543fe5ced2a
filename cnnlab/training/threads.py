"""CPU threads of a run: how many (--threads, OMP_NUM_THREADS, or this machine's cores), and why.

    record = choose(None)             # {"threads": 2, "threads_from": "default"}
    with using(record["threads"]):    # torch's threads for the run, the caller's count again after
        ...

The default is the cores this process may use, shared out between the machine's processes of
the run: never the machine's load, since the count changes a run's last bits and the same
command should give the same weights on a machine however busy it is. What makes that default
hold up beside other programs is how the threads wait: the cnnlab command lets them sleep at a
barrier (OMP_WAIT_POLICY=PASSIVE, cnnlab.cli.tune_openmp). A process that loaded torch before,
a notebook, keeps OpenMP's spinning; there, when other programs keep cores busy, cnnlab.train says
in a warning that one thread would train faster (docs/speed.md, "Threads and a busy machine").
The count is recorded in config.json: `--threads N` repeats a run exactly.
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
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # how OpenMP's threads wait, read when torch loads it
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


def default(local_world: int = 1) -> int:
    """The default count per process: the cores, shared out between this machine's local_world processes."""
    return max(1, cores() // max(1, local_world))


def spinning() -> bool:
    """Whether this process's OpenMP threads spin while they wait (GNU OpenMP's default), as far
    as the environment says: no OMP_WAIT_POLICY=PASSIVE and no GOMP_SPINCOUNT=0."""
    return (os.environ.get("OMP_WAIT_POLICY", "").strip().lower() != "passive"
            and os.environ.get("GOMP_SPINCOUNT", "").strip() != "0")


def warn_if_spinning_beside_others(given: int | None) -> None:
    """For a run started from Python (a notebook, where torch was loaded with OpenMP's spinning
    wait): a warning when its count (given, else as choose() would take it) is more than one and
    other programs keep cores busy, since there one thread trains several times faster. The
    command line's own process waits passively (cnnlab.cli.tune_openmp) and never asks."""
    n = given if given is not None else _env_count() or default()
    if not isinstance(n, int) or n < 2 or not spinning():
        return
    busy = busy_elsewhere()
    if busy is not None and busy >= 0.5:
        warnings.warn(f"other programs keep {busy:.1f} of this machine's {plural(cores(), 'CPU core')} busy, and "
                      f"this process's {n} threads spin while they wait for each other (torch was loaded without "
                      f"OMP_WAIT_POLICY=PASSIVE): threads=1 (--threads 1) trains several times faster here, or "
                      f"start Python with OMP_WAIT_POLICY=PASSIVE", CnnlabWarning, stacklevel=3)


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
        record = {"threads": default(local_world), "threads_from": "default"}
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
