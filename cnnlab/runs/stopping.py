"""When a run ends and what it keeps: early stopping, the best weights, more epochs later.

    cnnlab train --patience 3       end when validation accuracy has not improved for 3 epochs
    cnnlab train --keep best        also keep the best-validation weights in best.safetensors
    cnnlab train --resume RUN --epochs 30   extend a run (finished or not) to 30 epochs

Each decision is a pure function of the run's history (validation accuracy per epoch), which
its checkpoint carries, so a run stopped and resumed decides exactly as one that never
stopped. best.safetensors is written at the end of an epoch that improved on every earlier
one, before that epoch's checkpoint: a run killed in between redoes the epoch and writes the
same file again.
"""
from __future__ import annotations

import math
from pathlib import Path

from .. import checkpoints
from ..errors import CnnlabError

BEST_WEIGHTS = "best.safetensors"


def best_row(history: list[dict]) -> dict | None:
    """The epoch with the highest validation accuracy (the first, on a tie); None without one."""
    rows = [r for r in history if not math.isnan(float(r["val_acc"]))]
    return max(rows, key=lambda r: float(r["val_acc"]), default=None)


def improved(history: list[dict]) -> bool:
    """Whether the last epoch is the best so far (strictly better than every earlier one)."""
    best = best_row(history)
    return best is not None and best is history[-1]


def check_needs_validation(keep: str, patience: int | None, n_val: int) -> None:
    """--keep best and --patience judge epochs by validation accuracy: refuse them without any."""
    if n_val == 0 and (keep == "best" or patience is not None):
        flag = "--keep best" if keep == "best" else "--patience"
        raise CnnlabError(f"{flag} picks epochs by validation accuracy, and --val-size 0 validates "
                          f"nothing: hold out images, e.g. --val-size 10%")


def stop_early(history: list[dict], patience: int | None) -> bool:
    """Whether patience epochs have passed since the best validation accuracy."""
    best = best_row(history)
    return patience is not None and best is not None and history[-1]["epoch"] - best["epoch"] >= patience


def save_best(out: Path, model, name: str, history: list[dict]) -> None:
    row = history[-1]
    checkpoints.save_weights(Path(out) / BEST_WEIGHTS, model,
                             {"model": name, "epoch": str(int(row["epoch"])), "val_acc": f"{row['val_acc']:.3f}"})


def epochs_done(history: list[dict], last_epoch_steps: int) -> int | float:
    """Epochs trained: a whole number, or, when --max-steps cut the last one short, the fraction
    of it that ran added (60 of 352 steps in epoch 1: 0.17)."""
    if not history or history[-1]["iters"] >= last_epoch_steps:
        return len(history)
    return round(len(history) - 1 + history[-1]["iters"] / last_epoch_steps, 3)


def summary(history: list[dict], keep: str, patience: int | None, epochs: int) -> dict:
    """metrics.json's entries for --keep best and --patience."""
    best = best_row(history)
    out = {}
    if keep == "best" and best is not None:
        out["best"] = {"epoch": int(best["epoch"]), "val_acc": float(best["val_acc"]), "weights": BEST_WEIGHTS}
    if patience is not None and best is not None and len(history) < epochs and stop_early(history, patience):
        out["early_stop"] = {"patience": patience, "best_epoch": int(best["epoch"]), "epochs": len(history)}
    return out


def extension(config: dict, epochs: int | None) -> int | None:
    """--resume RUN --epochs N: N when it extends the run (more epochs than config.json's), else
    None; fewer epochs, or a run capped by --max-steps, are refused."""
    saved = config["config"]["epochs"]
    if epochs is None or epochs == saved:
        return None
    if epochs < saved:
        raise CnnlabError(f"--epochs {epochs} is fewer than the run's {saved}: a run is extended, never "
                          f"shortened; start a new run with --out to train for fewer epochs")
    if config["config"].get("max_steps") is not None:
        raise CnnlabError(f"the run was capped by --max-steps {config['config']['max_steps']}: it cannot be "
                          f"extended; start a new run with --out")
    return epochs


def extended(config: dict, epochs: int, state) -> dict:
    """config.json of a run extended to epochs, from where its checkpoint stands (recorded)."""
    was = config["config"]["epochs"]
    step = {"from": was, "to": epochs, "epoch": state.epoch, "step": state.step}
    return {**config, "config": {**config["config"], "epochs": epochs},
            "extensions": [*config.get("extensions", []), step]}


def lengths(config: dict) -> set[int]:
    """Every number of epochs the run has had: its config's, and those it was extended from."""
    return {config["config"]["epochs"], *(e["from"] for e in config.get("extensions", []))}
