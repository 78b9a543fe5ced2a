"""Seconds per epoch of the report's recipe by CPU thread count, on an idle machine and beside another program.

    python benchmarks/busy_machine.py [--data PATH] [--max-steps 150] [--epochs 1]
                                      [--cases threads-1,threads-2,threads-2-spin,default,nproc-2]
                                      [--competitor python|torch] [--loads idle,busy] [--repeats 1]

Each case is a whole `cnnlab train --epochs 1 --max-steps S` process of the seed recipe (fp32 on a
CPU without native bf16), run once on the machine as it is (idle) and once beside a competitor
that keeps one core busy for the whole measurement (busy): a pure-Python loop (--competitor
python, a student's other notebook cell) or a one-thread torch matrix product loop (--competitor
torch, another training). The figure is the run's own training time (history.csv's elapsed_s,
validation left out) scaled from its S steps to the whole epoch; the table puts idle and busy
side by side with their ratio, and the thread count each run recorded in config.json and why
(flag, OMP_NUM_THREADS, default). The cases:

    threads-1           --threads 1
    threads-N           --threads N (any N; threads-2 on a 2-core machine is every core)
    default             no flag: the count cnnlab chooses
    ...-spin            with GOMP_SPINCOUNT=300000: GNU OpenMP's own wait (spin, then sleep), which
                        the cnnlab command replaces by OMP_WAIT_POLICY=PASSIVE (sleep at once)
    ...-spinK           with GOMP_SPINCOUNT=K: K spins before a waiting thread sleeps
    ...-passive, ...-active   with OMP_WAIT_POLICY=PASSIVE or ACTIVE (spin until work comes)
    nproc-2             --nproc 2: two processes, each with its default count

OMP_NUM_THREADS, OMP_WAIT_POLICY and GOMP_SPINCOUNT are taken out of the cases' environment, so
each case is what it says. Nothing else should run meanwhile; the figures move with the host.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("threads-1", "threads-2", "threads-2-spin", "default", "nproc-2")
# How OpenMP's threads wait at a barrier: the cnnlab command's own choice (PASSIVE, unless the
# user set one), PASSIVE or ACTIVE (spin until work comes), or spin: GNU OpenMP's own default,
# 300,000 spins before sleeping (what the command did before it chose).
WAITS = {None: {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"},
         "spin": {"GOMP_SPINCOUNT": "300000"}}
COMPETITORS = {
    "python": ("a pure-Python busy loop", "while True:\n    pass\n"),
    "torch": ("a one-thread torch loop of 512 x 512 matrix products",
              "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"),
}
LOADS = ("idle", "busy")
CLEAN_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CNNLAB_THREADS_CHOSEN")


def case_command(case: str) -> tuple[list[str], dict[str, str]]:
    """The flags and environment variables of a case (see the module's docstring)."""
    if case == "nproc-2":
        return ["--nproc", "2"], {}
    m = re.fullmatch(r"(?:threads-([1-9]\d*)|default)(?:-(passive|active|spin)(\d+)?)?", case)
    if m is None or (m.group(3) and m.group(2) != "spin"):
        raise ValueError(f"unknown case {case!r}: threads-N or default, either with -passive, -active, -spin "
                         f"or -spinK (K spins before sleeping); or nproc-2")
    env = {"GOMP_SPINCOUNT": m.group(3)} if m.group(3) else WAITS[m.group(2)]
    return (["--threads", m.group(1)] if m.group(1) else []), env


def parse_list(text: str, allowed=None, what: str = "item") -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}s, got {text!r}")
    for item in items:
        if allowed is None:
            try:
                case_command(item)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        elif item not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {item!r}: one of {', '.join(allowed)}")
    return items


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--data", default=None, help="dataset path (default: as cnnlab train finds it)")
    ap.add_argument("--max-steps", type=int, default=150, help="training steps per case (default 150)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per case, cut by --max-steps (default 1)")
    ap.add_argument("--cases", type=parse_list, default=list(CASES), help=f"default: {','.join(CASES)}")
    ap.add_argument("--competitor", choices=sorted(COMPETITORS), default="python",
                    help="what keeps one core busy in the busy runs (default: python)")
    ap.add_argument("--loads", type=lambda t: parse_list(t, LOADS, "load"), default=list(LOADS),
                    help="idle, busy or both (default: idle,busy)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each case and load, interleaved; the "
                    "table shows medians (default 1)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds the competitor runs before a case starts")
    args = ap.parse_args(argv)
    if args.max_steps < 1 or args.epochs < 1 or args.repeats < 1:
        ap.error("--max-steps, --epochs and --repeats must be positive")
    return args


def seconds_per_epoch(config: dict, history: list[dict]) -> float:
    """Training seconds of one whole epoch from a run that may have stopped within it (--max-steps):
    its training time per step (history.csv's last elapsed_s over the steps taken) times the steps
    of an epoch."""
    steps = sum(int(row["iters"]) for row in history)
    epoch_steps = math.ceil(config["data"]["train"] / config["config"]["batch_size"])
    return float(history[-1]["elapsed_s"]) / steps * epoch_steps


def read_run(run_dir: Path) -> dict:
    import csv
    config = json.loads((run_dir / "config.json").read_text())
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    return {"s_per_epoch": seconds_per_epoch(config, history), "threads": config.get("threads"),
            "threads_from": config.get("threads_from", "-")}


def run_case(case: str, load: str, args, work: Path) -> dict:
    flags, extra_env = case_command(case)
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV} | extra_env
    out = work / f"{case}-{load}"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cnnlab", "train", "--epochs", str(args.epochs), "--max-steps", str(args.max_steps),
           "--device", "cpu", "--out", str(out), *flags] + (["--data", args.data] if args.data else [])
    competitor = None
    if load == "busy":
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITORS[args.competitor][1]], env=env)
        time.sleep(args.settle)  # busy before the run starts: the default count is chosen at its start
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        if competitor is not None:
            competitor.terminate()
            competitor.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{case} ({load}) failed with status {proc.returncode}:\n{proc.stderr[-2000:]}")
    return read_run(out)


def threads_cell(results: dict) -> str:
    """'2 (flag)' or, where the loads gave different counts, '2 / 1 (default)'."""
    counts = [str(r["threads"]) for r in results.values()]
    froms = {r["threads_from"] for r in results.values()}
    return f"{' / '.join(dict.fromkeys(counts))} ({', '.join(sorted(froms))})"


def median_runs(runs: list[dict]) -> dict:
    """read_run's dicts of one case and load as one: the median seconds, every run's seconds, and
    the thread counts in the order they came (the default's may differ between runs)."""
    seconds = [r["s_per_epoch"] for r in runs]
    return {"s_per_epoch": statistics.median(seconds), "runs": seconds,
            "threads": "/".join(dict.fromkeys(str(r["threads"]) for r in runs)),
            "threads_from": runs[0]["threads_from"]}


def format_table(rows: dict[str, dict[str, dict]], loads: list[str]) -> str:
    """rows: case -> load -> read_run's (or median_runs') dict. One line per case: threads, s/epoch
    per load, busy/idle."""
    head = f"{'case':<20} {'threads (from)':<22}" + "".join(f" {load + ' s/epoch':>14}" for load in loads)
    both = "idle" in loads and "busy" in loads
    lines = [head + (f" {'busy/idle':>10}" if both else "")]
    for case, results in rows.items():
        line = f"{case:<20} {threads_cell(results):<22}"
        line += "".join(f" {results[load]['s_per_epoch']:>14.2f}" for load in loads)
        if both:
            line += f" {results['busy']['s_per_epoch'] / results['idle']['s_per_epoch']:>9.2f}x"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    from cnnlab.runs.folder import machine
    m = machine()
    print(f"machine: {m['cpu']} ({m['cpu_capability']}), {m['cpu_count']} cores; {time.strftime('%Y-%m-%d')}; "
          f"seed recipe, {args.max_steps} steps per case scaled to an epoch; busy: beside "
          f"{COMPETITORS[args.competitor][0]}", flush=True)
    runs: dict[str, dict[str, list]] = {case: {load: [] for load in args.loads} for case in args.cases}
    with tempfile.TemporaryDirectory(prefix="cnnlab-busy-") as tmp:
        for k in range(args.repeats):
            for case in args.cases:
                for load in args.loads:
                    r = run_case(case, load, args, Path(tmp) / str(k))
                    runs[case][load].append(r)
                    print(f"  {case} {load}: {r['s_per_epoch']:.2f} s/epoch, {r['threads']} threads "
                          f"({r['threads_from']})", flush=True)
    rows = {case: {load: median_runs(r) for load, r in by_load.items()} for case, by_load in runs.items()}
    print(format_table(rows, args.loads) + (f"\n(medians of {args.repeats} runs each)" if args.repeats > 1 else ""))


if __name__ == "__main__":
    main()
