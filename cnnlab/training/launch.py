"""cnnlab train --nproc N: start N training processes on this machine with torch's own launcher.

    code = launch(2, ["train", "--epochs", "20"])   # the same as:
    # torchrun --standalone --nproc-per-node 2 -m cnnlab train --epochs 20

This process becomes torchrun's agent (torch.distributed.run, in process): it starts the
workers, watches them, stops the others when one fails, and returns an exit status. Its own
log lines are kept to errors; when a worker dies without a word (SIGKILL, out of memory) the
agent says so in one line, since the others' lines only say that a process is gone.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

from . import threads


def strip_flag(argv: list[str], flag: str) -> list[str]:
    """argv without `flag VALUE` or `flag=VALUE` (the flag given once, as argparse saw it)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


@contextlib.contextmanager
def _workers_threads(nproc: int):
    """The workers' thread count in the environment they inherit, for the duration: torchrun sets
    OMP_NUM_THREADS=1 when it is unset, and cnnlab shares the cores out instead (a --threads in
    ARGV still sets each worker's count). The caller's environment is as it was afterwards, so
    that a later run in the same process (a test, a notebook) chooses its own count."""
    names = ("OMP_NUM_THREADS", threads.CHOSEN_ENV)
    saved = {name: os.environ.get(name) for name in names}
    if not os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        os.environ["OMP_NUM_THREADS"] = str(threads.default(nproc))
        os.environ[threads.CHOSEN_ENV] = "default"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def launch(nproc: int, argv: list[str], resume_dir: str | None = None) -> int:
    """Run `cnnlab ARGV` in nproc processes (torchrun --standalone); the exit status of the run:
    0, the first failed worker's status, or 128 + the signal that killed it. resume_dir: the
    run folder the workers train into, named in what the agent says."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for name in list(logging.root.manager.loggerDict):  # each sets its own level (LOGLEVEL)
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)  # a failure is said below, in one line
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc),
                                         "-m", "cnnlab", *argv])
    try:
        with _workers_threads(nproc):
            run(args)
    except SignalException as e:  # Ctrl-C or SIGTERM: the workers got it too, and rank 0 said what it saved
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        # The root cause: a process killed by a signal other than the agent's own SIGTERM, if any
        # (its peers, ending at once with their line, may carry the same timestamp).
        killed = [(r, f) for r, f in sorted(e.failures.items(), key=lambda rf: rf[1].timestamp)
                  if f.exitcode < 0 and -f.exitcode != signal.SIGTERM]
        rank, failure = killed[0] if killed else e.get_first_failure()
        code = failure.exitcode
        if code >= 0:
            return code or 1  # the worker said why in its own line
        if any(f.exitcode > 0 for f in e.failures.values()):
            return 128 - code  # another worker said what happened (see distributed.peer_lost)
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        if resume_dir is not None and os.path.isfile(os.path.join(resume_dir, "metrics.json")):
            # Process 0 had tested and saved the run (metrics.json is written last): nothing was lost.
            print(f"cnnlab: error: process {rank} of {nproc} was killed by {name} after the run had "
                  f"finished: its results are complete in {resume_dir}; there is nothing to resume",
                  file=sys.stderr)
            return 128 - code
        where = resume_dir or "RUN_DIR"
        print(f"cnnlab: error: process {rank} of {nproc} was killed by {name}; the others were stopped; "
              f"the last checkpoint is kept: continue with cnnlab train --resume {where} --nproc {nproc}",
              file=sys.stderr)
        return 128 - code
    return 0
