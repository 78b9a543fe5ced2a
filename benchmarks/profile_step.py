"""Where a training step's time goes: torch.profiler's per-operator table for a recipe's steps.

    python benchmarks/profile_step.py [--recipe seed] [--steps 100] [--data PATH] [--rows 15]
                                      [--precision auto|fp32|bf16] [--threads N] [--epoch 1]

It loads the data as `cnnlab train` does (cnnlab's decode cache, glibc's malloc tuned as the
command tunes it: cnnlab/training/allocator.py), builds the recipe's model and
training pieces with cnnlab.training.loop.setup, runs --steps steps of train_epoch (after a
warm-up of 20 steps, so one-time allocations and kernel selection are not counted) under
torch.profiler, and prints the operators by their own (self) CPU time: per step in milliseconds
and as a share of the step. The first line names the CPU, its instruction set and the arithmetic,
so a table can be quoted as it is. --epoch picks the epoch whose steps are profiled: a recipe
that freezes some parameters after its first epochs (optimizer.train_epochs) skips their part of
the backward pass there. Nothing is written.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.data import dataset as data_mod
from cnnlab.network import models
from cnnlab.runs.folder import machine as run_machine
from cnnlab.runs.settings import resolve
from cnnlab.training.allocator import reuse_step_buffers
from cnnlab.training.loop import TrainState, prepare, resolve_precision, setup, train_epoch

sys.path.insert(0, str(Path(__file__).parent))
from cpu_peak import detect_isa, read_cpu_flags  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cifar10-jpeg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="seed", help="a recipe name (cnnlab recipes)")
    p.add_argument("--steps", type=int, default=100, help="profiled steps (after 20 warm-up steps)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="an image folder or CIFAR-10 copy")
    p.add_argument("--rows", type=int, default=15, help="operators shown")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--epoch", type=int, default=1, help="the epoch whose steps are profiled")
    return p.parse_args(argv)


def op_table(events, steps: int, step_ms: float, rows: int) -> list[str]:
    """Lines of the table: operator, self CPU ms per step, share of the step, calls per step."""
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    lines = [f"{'operator':<44} {'ms/step':>8} {'share':>7} {'calls/step':>10}"]
    for e in ops:
        ms = e.self_cpu_time_total / 1000 / steps
        lines.append(f"{e.key[:44]:<44} {ms:8.3f} {100 * ms / step_ms:6.1f}% {e.count / steps:10.1f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_step_buffers()  # as the cnnlab command does in its training process
    cfg = resolve(args.recipe, {"precision": args.precision, "device": "cpu"})
    device = torch.device("cpu")
    data = data_mod.load(args.data)
    d = prepare(data, cfg, device)
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model, num_classes=len(data.classes)).to(device)
    s = setup(cfg, model, device)
    precision = resolve_precision(cfg, device)

    def run(steps: int) -> float:
        start = time.perf_counter()
        train_epoch(s, d, cfg, TrainState(epoch=args.epoch), max_steps=steps)
        return time.perf_counter() - start

    run(20)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = run(args.steps)
    plain = run(args.steps)  # the profiler's own overhead inflates `seconds`: the share uses this
    step_ms = 1000 * plain / args.steps
    isa = detect_isa(read_cpu_flags())
    print(f"machine: {run_machine()}, {isa}, threads {torch.get_num_threads()}, precision {precision}")
    print(f"recipe {args.recipe}: model {cfg.model}, batch {cfg.batch_size}; {args.steps} steps: "
          f"{step_ms:.2f} ms per step of epoch {args.epoch} unprofiled ({1000 * seconds / args.steps:.2f} ms profiled)")
    print("\n".join(op_table(prof.key_averages(), args.steps, step_ms, args.rows)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
