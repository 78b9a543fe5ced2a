"""Seconds per rung of the course's ladder, on this machine as it is now (run it idle).

    python benchmarks/ladder_seconds.py [--data PATH] [--recipes seed,seed-bn,...] [--json FILE]

The ladder's accuracies take 3-5 seeds of 20-30 epochs per rung (hours of CPU); its seconds
only need the speed of one epoch. Each rung runs as a whole `cnnlab train --recipe R --epochs 2`
process, and the second epoch's share of the reported training time (elapsed after epoch 2
minus after epoch 1: one epoch and one validation, kernels warm) times the recipe's epochs is
the training time a full run reports as its last Elapsed Time, up to noise.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import machine  # noqa: E402
from train_speed import run_process  # noqa: E402

from cnnlab import recipes  # noqa: E402
from cnnlab.training.loop import pick_device  # noqa: E402

RUNGS = "seed,seed-bn,seed-bn-dropout,seed-avgpool,seed-aug,seed-sgd,seed-wide"


def epoch_seconds(recipe: str, data: str | None, folder: Path) -> float:
    """Seconds of the second epoch (plus one validation) of a 2-epoch run of recipe."""
    out = folder / recipe
    cmd = [sys.executable, "-m", "cnnlab", "train", "--recipe", recipe, "--epochs", "2", "--out", str(out)]
    cmd += ["--data", data] if data else []
    run_process(cmd)  # exits with the process's output if it fails
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[1]["elapsed_s"]) - float(rows[0]["elapsed_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset path (default: cnnlab's default search)")
    ap.add_argument("--recipes", default=RUNGS, help="comma-separated recipe names")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    print(f"machine: {machine(pick_device('auto'))}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            epochs = recipes.load_recipe(name).epochs
            sec = epoch_seconds(name, args.data, Path(tmp))
            rows.append({"recipe": name, "epoch_s": sec, "epochs": epochs, "train_s": sec * epochs})
            print(f"{name:16s} {sec:6.1f} s/epoch x {epochs:2d} epochs = {sec * epochs:6.0f} s of training", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
