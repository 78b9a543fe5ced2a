"""cnnlab and the speed record's own code, side by side, in one process on one CUDA GPU.

    python benchmarks/gpu_side_by_side.py --data PATH [--seeds 1] [--airbench-runs 1] [--json FILE]

Three entries train on the same images (the dataset at --data, decoded by cnnlab once):
  - airbench94 from the `airbench` package on PyPI (`train94`, the published speed-record code,
    94.01 % on the original CIFAR-10 in 3.83 s on an A100), timed as it times itself: training
    plus its test-time-augmented evaluation, after one warm-up run that compiles its kernels;
  - cnnlab's fast-94 recipe, a whole `cnnlab train --recipe fast-94` in this process (start-up,
    statistics, training, test with TTA, the run folder), after a short warm-up run;
  - the report's recipe (`cnnlab train`, 20 epochs), whose goal on a GPU is under 3 s of training.
The table prints each entry's seconds and test accuracy and whether cnnlab's goals hold: at
least airbench's accuracy in at most its time, and the report's recipe under 3 s.

Setup on a GPU machine without network: on a machine with one, `pip download --no-deps
airbench==0.1.8 -d wheelhouse`, carry the wheelhouse and the data, then
`pip install --no-index wheelhouse/airbench-0.1.8.tar.gz`. airbench imports torchvision only for
`transforms.Normalize` (and for a download cnnlab never asks it for): where torchvision is not
installed, a stand-in with that one transform is put in its place.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPORT_GOAL_S = 3.0  # the report's 20 epochs on a GPU


@contextlib.contextmanager
def working_dir(path: Path):
    """contextlib.chdir, which Python 3.10 lacks."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def normalize_stand_in():
    """torchvision.transforms.Normalize for NCHW float batches: (x - mean) / std per channel."""
    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = tuple(mean), tuple(std)

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            return (x - mean) / std
    return Normalize


def install_torchvision_stand_in() -> bool:
    """Put a minimal torchvision in sys.modules where none is installed; True if it did."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return False
    tv = types.ModuleType("torchvision")
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.Normalize = normalize_stand_in()
    tv.datasets = types.ModuleType("torchvision.datasets")  # airbench reaches it only to download
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tv.transforms,
                        "torchvision.datasets": tv.datasets})
    return True


def write_airbench_data(data, folder: Path) -> Path:
    """The decoded images as airbench's CifarLoader reads them: FOLDER/{train,test}.pt, each a dict
    of 'images' (N x H x W x 3 uint8, as torchvision's CIFAR10.data), 'labels' and 'classes'."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y.long().clone(),
                    "classes": list(data.classes)}, folder / f"{split}.pt")
    return folder


def run_airbench(data_root: Path, device: torch.device, runs: int) -> list[dict]:
    """train94 as published (its hyperparameters, its loader), timed as airbench times itself."""
    install_torchvision_stand_in()
    import airbench
    from airbench import lib_airbench94

    hyp = lib_airbench94.hyp
    out = []
    with working_dir(data_root):  # train94 reads its test set from ./cifar10
        loader = airbench.CifarLoader("cifar10", train=True, batch_size=hyp["opt"]["batch_size"],
                                      aug=hyp["aug"], altflip=True, gpu=device.index or 0)
        test = airbench.CifarLoader("cifar10", train=False, batch_size=2000, gpu=device.index or 0)
        with contextlib.redirect_stdout(io.StringIO()):
            airbench.warmup94(train_loader=loader, verbose=False)
        for run in range(runs):
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            model = airbench.train94(train_loader=loader, verbose=False, run=run)
            acc = airbench.evaluate(model, test, tta_level=hyp["net"]["tta_level"])
            torch.cuda.synchronize(device)
            out.append({"entry": "airbench94", "run": run, "seconds": time.perf_counter() - start,
                        "test_acc": 100 * acc})
    return out


def run_cnnlab(args: list[str], out: Path) -> dict:
    """One `cnnlab train ...` in this process: its wall time and its metrics.json."""
    from cnnlab.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", *args, "--out", str(out)])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"cnnlab train {' '.join(args)} exited with {code}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"seconds": wall, "train_s": metrics["train_seconds"], "test_acc": metrics["test_acc"]}


def verdict(airbench_runs: list[dict], fast94_runs: list[dict], report_run: dict | None) -> list[str]:
    """The goals, one line each: cnnlab's accuracy and time against airbench's; the report's 3 s."""
    lines = []
    if airbench_runs and fast94_runs:
        a_acc = statistics.fmean(r["test_acc"] for r in airbench_runs)
        a_s = statistics.fmean(r["seconds"] for r in airbench_runs)
        c_acc = statistics.fmean(r["test_acc"] for r in fast94_runs)
        c_s = statistics.fmean(r["seconds"] for r in fast94_runs)
        ok = c_acc >= a_acc and c_s <= a_s
        lines.append(f"fast-94 against airbench94: {c_acc:.2f} % in {c_s:.2f} s against {a_acc:.2f} % in "
                     f"{a_s:.2f} s ({c_s / a_s:.2f}x the time): goal {'met' if ok else 'not met'}")
    if report_run:
        ok = report_run["train_s"] < REPORT_GOAL_S
        lines.append(f"the report's recipe: {report_run['train_s']:.2f} s of training for 20 epochs "
                     f"(goal < {REPORT_GOAL_S:g} s): {'met' if ok else 'not met'}")
    return lines


def table(rows: list[dict]) -> str:
    lines = ["| entry | run | seconds | test accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['entry']} | {r['run']} | {r['seconds']:.2f} | {r['test_acc']:.2f} % |" for r in rows]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the dataset (CIFAR-10 as an image folder or cnnlab's other sources)")
    ap.add_argument("--device", default="cuda", help="a CUDA device: cuda or cuda:N")
    ap.add_argument("--seeds", type=int, default=1, help="fast-94 runs (seeds 0..N-1)")
    ap.add_argument("--airbench-runs", type=int, default=1, help="timed train94 runs")
    ap.add_argument("--skip-report", action="store_true", help="leave out the report's recipe")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    if not args.device.startswith("cuda"):
        ap.error(f"--device {args.device}: this benchmark compares CUDA code; give --device cuda")
    if min(args.seeds, args.airbench_runs) < 1:
        ap.error("--seeds and --airbench-runs take a positive number")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_side_by_side: error: no CUDA GPU is visible to torch: run it on a GPU machine", file=sys.stderr)
        return 2
    from cnnlab.data import dataset as data_mod

    device = torch.device(args.device)
    data = data_mod.load(args.data)  # decoded and cached once; every entry reads the same tensors
    print(f"machine: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"{len(data.train_y)} training and {len(data.test_y)} test images from {args.data}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        tmp = Path(tmp)
        airbench_runs = run_airbench(write_airbench_data(data, tmp / "cifar10").parent, device, args.airbench_runs)
        rows += airbench_runs
        common = ["--device", args.device, "--data", args.data]
        run_cnnlab(["--recipe", "fast-94", "--max-steps", "30", *common], tmp / "warmup")  # kernels, caches
        fast94 = []
        for seed in range(args.seeds):
            r = run_cnnlab(["--recipe", "fast-94", "--seed", str(seed), *common], tmp / f"fast-94-{seed}")
            fast94.append({"entry": "cnnlab fast-94", "run": seed, **r})
        rows += fast94
        report = None
        if not args.skip_report:
            report = run_cnnlab(["--recipe", "seed", *common], tmp / "seed")
            rows.append({"entry": "cnnlab seed (the report's recipe)", "run": 0, **report})
    print()
    print(table(rows))
    print()
    for line in verdict(airbench_runs, fast94, report):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(device), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
