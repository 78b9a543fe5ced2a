"""Fault injection: kill training runs at seeded random moments, resume them, check nothing is lost.

    python benchmarks/fault_injection.py --kills 50 --seed 0 > fault.txt   # ~15 min on 2 cores
    python benchmarks/fault_injection.py --kills 2 --scenarios single       # a quick check

Three scenarios on a tiny synthetic image folder, each first trained once without interruption
(the reference): a single run, a group of three seeds (--seeds 0-2), and a run of two processes
(--nproc 2). Then trials: a run is started, killed at a kill point drawn from a seeded RNG,
resumed with 'cnnlab train --resume', killed again (1-3 kills per trial), and finally let finish.
Kill points: a random moment of training, the inside of a checkpoint write (the writes are
slowed by CNNLAB_TEST_SLOW_WRITES to open a window), the final evaluation (after the last
epoch's history line), and in groups the boundary between two seeds' runs. Signals: SIGKILL
(nothing saved; the whole process group, as an OOM killer or a power cut) and SIGINT (Ctrl-C:
a checkpoint is saved). A run killed before its config.json existed is started again with --out,
as cnnlab says to. Each finished trial must hold weights bitwise those of its reference, and
no file of any other run folder (the references, earlier trials) may have changed.

Prints the counts: kills by signal and kill point, resumes, restarts, bitwise matches, files
touched, and the CPU it ran on. Exit status 1 if any trial does not match or touched a file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

EPOCHS = 5
RECIPE = ["--epochs", str(EPOCHS), "--batch-size", "8", "--val-size", "8", "--model", "seed", "--precision", "fp32"]
SCENARIOS = {"single": [], "group": ["--seeds", "0-2"], "nproc": ["--nproc", "2"]}
POINTS = {"single": ["training", "checkpoint", "evaluation"], "group": ["training", "checkpoint", "evaluation", "boundary"],
          "nproc": ["training", "checkpoint"]}
SLOW_WRITES = "0.05"  # seconds each atomic write waits before its rename: a window to kill in


def make_data(root: Path, classes=("a", "b", "c"), n_train=40, n_test=8, size=16) -> Path:
    """A tiny image folder whose colours say the class (as the tests' fixtures make)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            base = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 151 + 40) % 256])
            for i in range(n):
                img = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{i:03d}.png")
    return root


def cnnlab(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def snapshot(base: Path, skip: Path | None) -> dict[str, str]:
    """sha256 and mtime of every file under base outside skip (the trial's own folder)."""
    out = {}
    for p in sorted(base.rglob("*")):
        if p.is_file() and (skip is None or skip not in p.parents):
            out[str(p.relative_to(base))] = f"{p.stat().st_mtime_ns}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


def touched(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def weights(run: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(run / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    import torch
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def runs_of(out: Path, scenario: str) -> list[Path]:
    return [out / f"seed-{s}" for s in range(3)] if scenario == "group" else [out]


def history_rows(run: Path) -> int:
    try:
        return max(0, len((run / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def wait(predicate, proc: subprocess.Popen, timeout: float) -> bool:
    """True once predicate() holds while proc still runs; False if proc ended or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if predicate():
            return True
        time.sleep(0.003)
    return False


def reach(point: str, out: Path, scenario: str, proc: subprocess.Popen, rng: random.Random) -> bool:
    """Wait for the kill point; False when the process ended first."""
    runs = runs_of(out, scenario)
    if point == "training":
        return wait(lambda: False, proc, rng.uniform(0.5, 6.0)) or proc.poll() is None
    if point == "checkpoint":
        skip = rng.randint(0, 2)  # not always the first write seen
        for _ in range(skip + 1):
            if not wait(lambda: any(r.is_dir() and any(r.glob(".checkpoint.pt.*.tmp")) for r in runs), proc, 60):
                return False
            if _ < skip:
                wait(lambda: not any(r.is_dir() and any(r.glob(".checkpoint.pt.*.tmp")) for r in runs), proc, 60)
        return True
    if point == "evaluation":  # the last epoch's line is written: its checkpoint, then the final test
        pending = [r for r in runs if not (r / "metrics.json").exists()]
        if not pending or not wait(lambda: history_rows(pending[0]) >= EPOCHS, proc, 60):
            return False
        return wait(lambda: False, proc, rng.uniform(0.0, 0.3)) or proc.poll() is None
    if point == "boundary":  # a seed's run has just finished: between it and the next
        done = sum((r / "metrics.json").exists() for r in runs)
        if done >= len(runs) - 1 or not wait(lambda: sum((r / "metrics.json").exists() for r in runs) > done, proc, 60):
            return False
        return wait(lambda: False, proc, rng.uniform(0.0, 0.4)) or proc.poll() is None
    raise ValueError(point)


def kill(proc: subprocess.Popen, sig: int) -> None:
    """The signal to the whole process group (the agent and its workers, under --nproc)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def finished(out: Path, scenario: str) -> bool:
    return all((r / "metrics.json").is_file() for r in runs_of(out, scenario))


def trial(scenario: str, data: Path, out: Path, env: dict, rng: random.Random, counts: Counter, log) -> None:
    """Start, kill 1-3 times (each followed by --resume), let finish."""
    start = ["train", "--data", str(data), *RECIPE, *SCENARIOS[scenario], "--out", str(out)]
    resume = ["train", "--resume", str(out)] + (["--nproc", "2"] if scenario == "nproc" else [])
    proc = cnnlab(start, env)
    for _ in range(rng.randint(1, 3)):
        point, sig = rng.choice(POINTS[scenario]), rng.choice([signal.SIGKILL, signal.SIGINT])
        if not reach(point, out, scenario, proc, rng):
            break
        kill(proc, sig)
        counts["kills"] += 1
        counts[f"kills {signal.Signals(sig).name}"] += 1
        counts[f"kills at {point}"] += 1
        proc = next_process(start, resume, out, scenario, env, counts, log)
        if proc is None:
            return
    _, err = proc.communicate()
    if proc.returncode != 0 and not finished(out, scenario):
        log(f"  exit {proc.returncode} without a kill: {err.strip()[-400:]}")
        proc = next_process(start, resume, out, scenario, env, counts, log)
        if proc is not None:
            _, err = proc.communicate()
            if proc.returncode != 0:
                log(f"  exit {proc.returncode}: {err.strip()[-400:]}")


def next_process(start, resume, out: Path, scenario: str, env, counts: Counter, log) -> subprocess.Popen | None:
    """--resume, or the first command again where the run had not begun; None when finished."""
    if finished(out, scenario):
        return None
    has_run = (out / ("group.json" if scenario == "group" else "config.json")).is_file()
    if has_run:
        counts["resumes"] += 1
        return cnnlab(resume, env)
    counts["restarts (killed before the run began)"] += 1
    return cnnlab(start, env)


def cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
        family = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("cpu family")), "?")
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model\t")), "?")
    except OSError:
        name, family, model = platform.processor(), "?", "?"
    import torch
    return (f"{name} (family {family} model {model}), {os.cpu_count()} cores, torch "
            f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=50, help="keep going until this many kills (default 50)")
    p.add_argument("--seed", type=int, default=0, help="the RNG of kill points and signals (default 0)")
    p.add_argument("--scenarios", default="single,group,nproc", help="which, comma-separated")
    p.add_argument("--workdir", help="keep everything here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    scenarios = args.scenarios.split(",")
    rng = random.Random(args.seed)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cnnlab-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CNNLAB_CACHE": str(work / "cache"), "CNNLAB_TEST_SLOW_WRITES": SLOW_WRITES,
           "PYTHONWARNINGS": "ignore"}
    log = lambda line: print(line, flush=True)  # noqa: E731
    started = time.monotonic()
    log(f"fault injection: seed {args.seed}, at least {args.kills} kills, scenarios {', '.join(scenarios)}")
    log(f"cpu: {cpu()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    data = make_data(work / "data")
    runs = work / "runs"
    references = {}
    for s in scenarios:
        ref = runs / f"reference-{s}"
        proc = cnnlab(["train", "--data", str(data), *RECIPE, *SCENARIOS[s], "--out", str(ref)],
                      {k: v for k, v in env.items() if k != "CNNLAB_TEST_SLOW_WRITES"})
        _, err = proc.communicate()
        if proc.returncode != 0:
            log(f"reference {s} failed: {err.strip()}")
            return 1
        references[s] = ref
    counts, mismatches, touched_files, n = Counter(), [], [], 0
    while counts["kills"] < args.kills:
        s = scenarios[n % len(scenarios)]
        out = runs / f"trial-{n:03d}-{s}"
        before = snapshot(runs, out)
        trial(s, data, out, env, rng, counts, log)
        after = snapshot(runs, out)
        changed = touched(before, after)
        touched_files += changed
        counts["trials"] += 1
        ok = finished(out, s) and all(same_weights(r, ref) for r, ref in zip(runs_of(out, s), runs_of(references[s], s)))
        counts["bitwise matches"] += ok
        if not ok:
            mismatches.append(out.name)
        log(f"trial {n:3d} {s:<6}: kills so far {counts['kills']:3d}, {'bitwise the reference' if ok else 'DIFFERS'}"
            f"{', files touched: ' + ', '.join(changed) if changed else ''}")
        n += 1
    log(f"kills: {counts['kills']} (SIGKILL {counts['kills SIGKILL']}, SIGINT {counts['kills SIGINT']}); "
        + ", ".join(f"at {p}: {counts['kills at ' + p]}" for p in ["training", "checkpoint", "evaluation", "boundary"]))
    log(f"resumes: {counts['resumes']}; restarts of runs killed before they began: "
        f"{counts['restarts (killed before the run began)']}")
    log(f"bitwise matches: {counts['bitwise matches']}/{counts['trials']} trials"
        + (f" (differ: {', '.join(mismatches)})" if mismatches else ""))
    log(f"files touched in other run folders: {len(touched_files)}")
    log(f"wall time: {time.monotonic() - started:.0f} s")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not mismatches and not touched_files else 1


if __name__ == "__main__":
    sys.exit(main())
