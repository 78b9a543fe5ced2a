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
from typing import Callable

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


def stop_early(history: list[dict], patience: int | None) -> bool:
    """Whether patience epochs have passed since the best validation accuracy."""
    best = best_row(history)
    return patience is not None and best is not None and history[-1]["epoch"] - best["epoch"] >= patience


def end_early(cfg, state, log: Callable[[str], None]) -> None:
    """At an epoch's end: with --patience, and no better validation accuracy for that many
    epochs, move the state past the last epoch, so the run is tested and saved as usual."""
    if stop_early(state.history, cfg.patience) and state.epoch <= cfg.epochs:
        state.epoch = cfg.epochs + 1
        best = best_row(state.history)
        log(f"Early stop: no better validation accuracy for {cfg.patience} epochs "
            f"(best {best['val_acc']:.3f} % at epoch {best['epoch']})")


def keep_best(cfg, history: list[dict], out: Path, model) -> None:
    """With --keep best, an epoch better than every earlier one writes its weights."""
    if cfg.keep != "best" or not improved(history):
        return
    row = history[-1]
    checkpoints.save_weights(Path(out) / BEST_WEIGHTS, model,
                             {"model": cfg.model, "epoch": str(int(row["epoch"])), "val_acc": f"{row['val_acc']:.3f}"})


def epochs_done(history: list[dict], last_epoch_steps: int) -> int | float:
    """Epochs trained: a whole number, or, when --max-steps cut the last one short, the fraction
    of it that ran added (60 of 352 steps in epoch 1: 0.17)."""
    if not history or history[-1]["iters"] >= last_epoch_steps:
        return len(history)
    return round(len(history) - 1 + history[-1]["iters"] / last_epoch_steps, 3)


def summary(history: list[dict], cfg, last_epoch_steps: int) -> dict:
    """metrics.json's epochs, and how the run ended: last_epoch (cut by --max-steps), best
    (--keep best), early_stop (--patience)."""
    best, last = best_row(history), history[-1]
    out = {"epochs": epochs_done(history, last_epoch_steps)}
    if last["iters"] < last_epoch_steps:
        out["last_epoch"] = {"epoch": last["epoch"], "steps": last["iters"], "of": last_epoch_steps}
    if cfg.keep == "best" and best is not None:
        out["best"] = {"epoch": int(best["epoch"]), "val_acc": float(best["val_acc"]), "weights": BEST_WEIGHTS}
    if cfg.patience is not None and best is not None and len(history) < cfg.epochs and stop_early(history, cfg.patience):
        out["early_stop"] = {"patience": cfg.patience, "best_epoch": int(best["epoch"]), "epochs": len(history)}
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


def extend(run_dir: Path, config: dict, epochs: int, state, log: Callable[[str], None], write: bool) -> dict:
    """Extend a run to epochs from where its checkpoint stands: the state goes on after its last
    epoch (one that --patience ended too), and config.json records it (write: this process writes)."""
    if state.step == 0:
        state.epoch = len(state.history) + 1
    was = config["config"]["epochs"]
    log(f"Extending {run_dir} from {was} to {epochs} epochs")
    step = {"from": was, "to": epochs, "epoch": state.epoch, "step": state.step}
    config = {**config, "config": {**config["config"], "epochs": epochs},
              "extensions": [*config.get("extensions", []), step]}
    if write:
        from .folder import write_json
        write_json(Path(run_dir) / "config.json", config)
    return config


def lengths(config: dict) -> set[int]:
    """Every number of epochs the run has had: its config's, and those it was extended from."""
    return {config["config"]["epochs"], *(e["from"] for e in config.get("extensions", []))}
