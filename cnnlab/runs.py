"""A run folder: train a model from a config and write everything it produced; evaluate it again.

    runs/<date-time>-<model>/
        config.json        resolved config, data description and fingerprint, library versions
        history.csv        epoch,iters,avg_loss,elapsed_s,val_acc
        curves.png         validation accuracy and training loss per epoch
        metrics.json       test_acc, val_acc, epochs, train_seconds, model, params, ...
        checkpoint.pt      model + optimizer state and the run's description (weights_only-safe)
        model.safetensors  the weights alone
"""
from __future__ import annotations

import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__, checkpoints, data as data_mod, models
from .errors import CnnlabError
from .evaluate import evaluate
from .train import TrainConfig, pick_device, prepare, resolve_precision, train, uses_channels_last

HISTORY_FIELDS = ["epoch", "iters", "avg_loss", "elapsed_s", "val_acc"]


def versions() -> dict:
    import PIL
    import safetensors
    return {"cnnlab": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "pillow": PIL.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def new_run_dir(out: str | None, model: str) -> Path:
    """The run folder, created empty; an existing non-empty folder is never written into."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, k = Path("runs") / f"{stamp}-{model}", 1
        while path.exists():
            k += 1
            path = Path("runs") / f"{stamp}-{model}-{k}"
    else:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CnnlabError(f"--out {path} already exists and is not empty: choose a new folder "
                              f"so no earlier run is overwritten")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, obj) -> None:
    checkpoints.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def run_train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Load data, build the model, train, test, and write the run folder. Returns metrics."""
    cfg.validate()
    models.create(cfg.model)  # an unknown name fails before any data is read
    device = pick_device(cfg.device)
    data = data_mod.load(cfg.data)
    size = data.train_x.shape[-1]
    out = new_run_dir(cfg.out, cfg.model)
    torch.manual_seed(cfg.seed)
    model = models.create(cfg.model, len(data.classes), data.train_x.shape[1], size)
    d = prepare(data, cfg, device)
    data_info = {"source": data.source, "fingerprint": data.fingerprint, "classes": data.classes,
                 "image_size": size, "mean": d.mean, "std": d.std, "train": len(d.train_y),
                 "val": len(d.val_y), "test": len(d.test_y)}
    config = {"config": {**cfg.to_dict(), "out": str(out)}, "data": data_info,
              "device": str(device), "precision": resolve_precision(cfg, device), "params": models.count_params(model), "versions": versions(),
              "command": " ".join(sys.argv)}
    write_json(out / "config.json", config)
    with open(out / "history.csv", "w", newline="") as f:
        csv.writer(f).writerow(HISTORY_FIELDS)

    def describe(epoch: int) -> dict:
        return {"model": cfg.model, "epoch": epoch, "config": config["config"], "data": data_info,
                "versions": config["versions"]}

    def on_epoch_end(epoch: int, row: dict, opt: torch.optim.Optimizer) -> None:
        with open(out / "history.csv", "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in HISTORY_FIELDS])
        checkpoints.save_checkpoint(out / "checkpoint.pt", {
            **describe(epoch), "model_state": model.state_dict(), "optimizer_state": opt.state_dict()})

    result = train(cfg, model, d, log=log, on_epoch_end=on_epoch_end)
    test = evaluate(model, d.test_x, d.test_y, d.mean_t, d.std_t, cfg.eval_batch_size,
                    uses_channels_last(cfg, device))
    log(f"Test Accuracy: {test['acc']:.3f} %")
    checkpoints.save_weights(out / "model.safetensors", model, {"model": cfg.model})
    metrics = {"model": cfg.model, "test_acc": test["acc"], "test_loss": test["loss"],
               "val_acc": result.history[-1]["val_acc"], "epochs": len(result.history),
               "steps": result.steps, "train_seconds": result.train_seconds,
               "params": models.count_params(model), "device": str(device)}
    write_json(out / "metrics.json", metrics)
    from .plots import plot_curves  # matplotlib is imported only when a figure is drawn
    plot_curves(out / "history.csv", out / "curves.png", title=f"{cfg.model} on {Path(data.source).name}")
    log(f"Run saved in {out}")
    return {**metrics, "out": str(out)}


def load_run(run_dir: Path) -> tuple[dict, torch.nn.Module]:
    """(config.json contents, model with the run's final weights) from a run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise CnnlabError(f"{run_dir} is not a run folder (no config.json): pass a folder made by "
                          f"'cnnlab train'")
    try:
        config = json.loads((run_dir / "config.json").read_text())
        info = config["data"]
        name = config["config"]["model"]
    except (ValueError, KeyError) as e:
        raise CnnlabError(f"{run_dir}/config.json is damaged ({e}): the run cannot be reloaded") from None
    model = models.create(name, len(info["classes"]), 3, info["image_size"])
    if (run_dir / "model.safetensors").is_file():
        state = checkpoints.load_weights(run_dir / "model.safetensors")
    else:
        state = checkpoints.load_checkpoint(run_dir / "checkpoint.pt")["model_state"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CnnlabError(f"the weights in {run_dir} do not fit model {name} "
                          f"({str(e).splitlines()[0]})") from None
    return config, model


def evaluate_run(run_dir: Path, data_path=None, device: str = "auto") -> dict:
    """Test accuracy of a saved run, computed the way training computed it."""
    config, model = load_run(run_dir)
    cfg, info = config["config"], config["data"]
    dev = pick_device(device)
    data = data_mod.load(data_path if data_path is not None else cfg.get("data"))
    if data.classes != info["classes"]:
        raise CnnlabError(f"the data's classes {data.classes} differ from the run's "
                          f"{info['classes']}: pass the dataset the run was trained on with --data")
    channels_last = cfg.get("channels_last")
    channels_last = True if channels_last is None else channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    result = evaluate(model, data.test_x.to(dev), data.test_y.to(dev), info["mean"], info["std"],
                      cfg.get("eval_batch_size", 1000), channels_last)
    return {**result, "same_data": data.fingerprint == info["fingerprint"], "model": cfg["model"]}
