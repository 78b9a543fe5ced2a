"""Seconds per training epoch of the report recipe, three ways, measured side by side; then
whole processes, start to exit: `cnnlab train --epochs 2` against the tutorial's whole script.

    python benchmarks/train_speed.py [--data PATH] [--repeats 5] [--device auto] [--skip-full]
                                     [--rounds 2] [--skip-whole | --whole-only]

Per epoch, in this process:
(a) the usual tutorial pipeline (benchmarks/tutorial.py): a per-image Dataset (uint8 HWC array
    -> PIL image -> float tensor / 255 -> normalize, as ToTensor + Normalize do), a DataLoader
    with 2 workers, and the report's network written as tutorials write it (conv -> ReLU ->
    pool, fp32, NCHW);
(b) the same network on in-memory float32 NCHW tensors, normalized once, gathered per batch;
(c) cnnlab's path (cnnlab.training.loop.train_epoch): uint8 data on the device, index gathers,
    whole-batch normalization, channels_last, bf16 autocast where native, and the seed
    model, which pools before its ReLUs (bitwise the same network as (a) and (b)).
All three start from the same weights and train with Adam at batch 128 on the same 45k
images. Each is warmed up, then timed over --repeats whole epochs; the median is reported,
with GFLOP/s against the nominal peak of the CPU's instruction set (benchmarks/cpu_peak.py:
AVX2, AVX-512, AMX read from /proc/cpuinfo's flags).
Whole processes (unless --skip-whole): `cnnlab train --epochs 2` (a fresh process, its own
temporary --out) and `python benchmarks/tutorial.py --epochs 2` (the tutorial pipeline (a) as a
whole script: load, 2 epochs with validation, test), alternated A B A B for --rounds rounds,
both on data already in cnnlab's decode cache; medians and their ratio are printed. Then
`cnnlab train --epochs 1`, --rounds times: its wall time minus its epoch's, the time a run
spends outside training (start-up, cache, statistics, validation, test, files).
Then, unless --skip-full, cnnlab trains the full 20-epoch recipe with validation and reports
its time (the one-time decode is not counted: the data come from cnnlab's cache).
Runs on CUDA when a GPU is present (--device auto).
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cnnlab.data import dataset as data_mod
from cnnlab.network import models
from cnnlab.training.allocator import reuse_step_buffers
from cnnlab.training.optim import allow_skipping_dynamo_import
from cnnlab.network.layers import totals
from cnnlab.runs.folder import machine as run_machine
from cnnlab.network.summary import summarize
from cnnlab.training.loop import (TrainConfig, TrainState, pick_device, prepare, resolve_precision,
                                  setup, train, train_epoch)

# benchmarks/ is on sys.path when this file runs as a script
from cpu_peak import describe_peak, detect_isa, peak_gflops, read_cpu_flags, read_cpu_ghz
from tutorial import TutorialDataset, tutorial_model

TUTORIAL_SCRIPT = Path(__file__).with_name("tutorial.py")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def fresh_model(device, seed=0):
    torch.manual_seed(seed)
    return models.create("seed").to(device)


def tutorial_epoch(d, device, loader_args):
    model = tutorial_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_hwc = d.train_x.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    ds = TutorialDataset(x_hwc, d.train_y.cpu().numpy(), d.mean, d.std)

    def epoch():
        loader = DataLoader(ds, batch_size=128, shuffle=True, **loader_args)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()
    return epoch


def tensor_epoch(d, device):
    model = tutorial_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (d.train_x.float() / 255 - d.mean_t) / d.std_t  # float32 NCHW, normalized once
    y = d.train_y
    g = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()
    return epoch


def cnnlab_epoch(d, device, cfg):
    s = setup(cfg, fresh_model(device), device)
    counter = iter(range(1, 10**6))
    return lambda: train_epoch(s, d, cfg, TrainState(epoch=next(counter)))


def nominal_peak(device) -> tuple[float, str]:
    """(peak GFLOP/s the percentages refer to, a description of the peaks)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peaks = {"H100": 989, "H200": 989, "A100": 312, "L4": 121, "A10": 125, "4090": 165}
        for key, tflops in peaks.items():
            if key in name:
                return tflops * 1000, f"{tflops} TFLOP/s dense bf16 ({name})"
        return float("nan"), f"unknown ({name})"
    isa, ghz, cores = detect_isa(read_cpu_flags()), read_cpu_ghz(), os.cpu_count() or 1
    return peak_gflops(isa, cores, ghz), describe_peak(isa, cores, ghz)


def run_process(command: list[str]) -> tuple[float, str]:
    """(wall seconds from start to exit, the test accuracy it printed) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(command)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    found = re.findall(r"Test Accuracy: ([0-9.]+) %", proc.stdout)
    return seconds, (found[-1] + " %") if found else "?"


def whole_processes(source: str, device, rounds: int, epochs: int = 2) -> dict[str, float]:
    """Median wall seconds of `cnnlab train --epochs 2` and of the tutorial's whole script,
    alternated A B A B ... so that drift in the machine's speed hits both alike."""
    print(f"whole processes, start to exit, {epochs} epochs with validation and test, data in the "
          f"decode cache; alternated, {rounds} rounds:")
    times: dict[str, list[float]] = {"cnnlab": [], "tutorial": []}
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        for r in range(1, rounds + 1):
            commands = {
                "cnnlab": [sys.executable, "-m", "cnnlab", "train", "--epochs", str(epochs), "--data", source,
                           "--device", str(device), "--out", str(Path(tmp) / f"run-{r}")],
                "tutorial": [sys.executable, str(TUTORIAL_SCRIPT), "--epochs", str(epochs), "--data", source,
                             "--device", str(device)]}
            for name, command in commands.items():
                seconds, test = run_process(command)
                times[name].append(seconds)
                print(f"  round {r}: {name:<8} {seconds:7.2f} s  (test {test})", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"cnnlab train --epochs {epochs}: {medians['cnnlab']:.2f} s; tutorial script: "
          f"{medians['tutorial']:.2f} s (medians); tutorial/cnnlab = "
          f"{medians['tutorial'] / medians['cnnlab']:.2f}x (target >= 3x)")
    return medians


def outside_the_epoch(source: str, device, rounds: int) -> float:
    """Median seconds of `cnnlab train --epochs 1` outside its training epoch: the process's wall
    time minus the epoch's own time (history.csv's elapsed_s). What is left is start-up, the
    cache load, statistics, one validation, the test and the run folder's files."""
    outside = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as tmp:
        for r in range(1, rounds + 1):
            out = Path(tmp) / f"run-{r}"
            seconds, _ = run_process([sys.executable, "-m", "cnnlab", "train", "--epochs", "1", "--data", source,
                                      "--device", str(device), "--out", str(out)])
            with open(out / "history.csv", newline="") as f:
                epoch = float(next(csv.DictReader(f))["elapsed_s"])
            outside.append(seconds - epoch)
            print(f"  cnnlab train --epochs 1, round {r}: {seconds:6.2f} s wall, {epoch:5.2f} s in the epoch, "
                  f"{seconds - epoch:5.2f} s outside it", flush=True)
    median = statistics.median(outside)
    print(f"outside the epoch: {median:.2f} s (median of {rounds}; target <= 3 s)")
    return median


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset path (default: cnnlab's default search)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--val-size", type=int, default=5000, help="training images held out (default 5000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per pipeline (median)")
    ap.add_argument("--skip-full", action="store_true", help="skip the full 20-epoch cnnlab run")
    ap.add_argument("--compile", action="store_true",
                    help="cnnlab with torch.compile (CUDA: CUDA graphs); compile time is in the warm-up")
    ap.add_argument("--rounds", type=int, default=2,
                    help="whole-process rounds, each one `cnnlab train --epochs 2` and one tutorial script (median)")
    whole = ap.add_mutually_exclusive_group()
    whole.add_argument("--skip-whole", action="store_true", help="skip the whole-process comparison")
    whole.add_argument("--whole-only", action="store_true",
                       help="only the whole-process comparison (no per-epoch pipelines, no full run)")
    args = ap.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        ap.error("--rounds and --repeats must be at least 1")

    device = pick_device(args.device)
    cfg = TrainConfig(device=str(device), compile=args.compile, val_size=args.val_size)
    data = data_mod.load(args.data)  # decoded into the cache now if it is not there yet
    # As the cnnlab command does in its own process, for every pipeline here (see cnnlab/training/allocator.py):
    # the tutorial pipelines get cnnlab's malloc too, which can only make them faster than as scripts.
    reuse_step_buffers()
    allow_skipping_dynamo_import()  # the command's start-up shortcut too (cnnlab/training/optim.py)
    d = prepare(data, cfg, device)
    n = len(d.train_y)
    macs = totals(summarize(models.create("seed"), (3, 32, 32)))["macs"]
    flops_per_epoch = 3 * 2 * macs * n  # forward + backward (about twice the forward)
    print(f"machine: {run_machine()['cpu']}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"data: {n} training images from {data.source}; model seed, batch 128, Adam")
    peak, peak_text = nominal_peak(device)
    peak_kind = "bf16" if device.type == "cuda" else "fp32"
    print(f"work: {flops_per_epoch / 1e9:.1f} GFLOP per epoch; nominal peak {peak_text}")
    print(f"cnnlab precision: {resolve_precision(cfg, device)}, channels_last"
          f"{', torch.compile' if cfg.compile else ''}\n")
    if args.whole_only:
        whole_processes(data.source, device, args.rounds)
        outside_the_epoch(data.source, device, args.rounds)
        return 0

    loader_args = {"num_workers": 2, "pin_memory": device.type == "cuda"}
    pipelines = [("a", "tutorial Dataset + DataLoader(2 workers)", tutorial_epoch(d, device, loader_args)),
                 ("b", "tutorial model on in-memory float NCHW", tensor_epoch(d, device)),
                 ("c", "cnnlab (train_epoch)", cnnlab_epoch(d, device, cfg))]
    medians = {}
    for key, label, fn in pipelines:
        times = timed(fn, device, warmup=1, repeats=args.repeats)
        medians[key] = statistics.median(times)
        print(f"({key}) {label:<42} {medians[key]:7.2f} s/epoch  {n / medians[key]:9.0f} img/s  "
              f"{flops_per_epoch / medians[key] / 1e9:8.1f} GFLOP/s = "
              f"{100 * flops_per_epoch / medians[key] / 1e9 / peak:4.1f} % of {peak_kind} peak  (runs: "
              f"{', '.join(f'{t:.2f}' for t in times)})", flush=True)
    print(f"\nspeed-up of cnnlab: a/c = {medians['a'] / medians['c']:.2f}x, b/c = {medians['b'] / medians['c']:.2f}x\n")
    if not args.skip_whole:
        whole_processes(data.source, device, args.rounds)
        outside_the_epoch(data.source, device, args.rounds)
        print()

    if not args.skip_full:
        torch.manual_seed(cfg.seed)
        model = models.create("seed")
        if cfg.compile:  # compile once, outside the timed run
            warm = replace(cfg, epochs=1, max_steps=3)
            train(warm, models.create("seed"), d, log=lambda line: None)
        result, _ = train(cfg, model, d, log=lambda line: None)
        from cnnlab.analysis.evaluate import evaluate
        test = evaluate(model, d.test_x, d.test_y, d.mean_t, d.std_t, cfg.eval_batch_size, True)
        print(f"full recipe with cnnlab: {len(result.history)} epochs, validation included: "
              f"{result.elapsed:.1f} s training time; val {result.history[-1]['val_acc']:.3f} %, "
              f"test {test['acc']:.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
