"""A finished run read back: its model with the final weights, its test predictions again.

    config, model = load_run("runs/x")          # weights from model.safetensors, never unpickled
    config, model = load_run("runs/y", MyNet())  # a run of a model defined in Python
    out = evaluate_run("runs/x", tta="flip")     # test accuracy, logits, labels and test images
    unfinished_notice("runs/x")                  # None, or one line: where it stopped, how to resume

A run without metrics.json has not finished: load_run still reads its last weights (those of its
checkpoint), and says so in one warning, so that evaluate, predict, export and report never pass
partial weights off as a finished run's.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from ..training import arithmetic
from .. import checkpoints
from ..data import dataset as data_mod, decode
from ..network import models
from ..errors import CnnlabError, CnnlabWarning
from ..analysis.evaluate import TTA_MODES, predict_logits
from ..training.loop import TrainConfig, pick_device, uses_channels_last
from .fit import saved_arithmetic
from .folder import read_config
from .given import needs_data, needs_model


def _checkpoint_weights(path: Path) -> tuple[dict, str]:
    """An unfinished run's weights from its checkpoint: the ones its validation used (the
    averaged weights, with EMA or lookahead), and which they are, in words."""
    ckpt = checkpoints.load_checkpoint(path)
    done = len(ckpt.get("state", {}).get("history", []))
    averaged = ckpt.get("averaging_state")
    if isinstance(averaged, dict) and isinstance(averaged.get("weights"), dict):
        kind = averaged.get("kind", "averaged")
        return averaged["weights"], (f"the {kind} averaged weights of the unfinished run's checkpoint "
                                     f"({done} epochs done), the ones its validation used")
    return ckpt["model_state"], f"the weights of the unfinished run's checkpoint ({done} epochs done)"


def unfinished_state(run_dir: Path) -> dict | None:
    """None for a finished run (it has metrics.json); else where its last checkpoint stands:
    {"epoch", "step", "elapsed"} (empty when there is no readable checkpoint)."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return None
    try:
        state = checkpoints.load_checkpoint(run_dir / "checkpoint.pt")["state"]
        return {"epoch": int(state["epoch"]), "step": int(state["step"]), "elapsed": float(state.get("elapsed", 0.0))}
    except (CnnlabError, OSError, KeyError, TypeError, ValueError):
        return {}


def unfinished_notice(run_dir: Path) -> str | None:
    """One line for a run that has not finished: where it stopped and how to finish it; else None."""
    state = unfinished_state(run_dir)
    if state is None:
        return None
    where = f" (stopped at epoch {state['epoch']}, step {state['step']})" if state else ""
    return (f"{run_dir} is an unfinished run{where}: its weights are the partial ones of its last checkpoint; "
            f"finish it with: cnnlab train --resume {run_dir}")


def load_run(run_dir: Path, model: torch.nn.Module | None = None) -> tuple[dict, torch.nn.Module]:
    """(config.json contents, model with the run's final weights) from a run folder.

    A finished run's weights are its model.safetensors; an unfinished one's come from its
    checkpoint, the averaged ones where the recipe averages weights (as validation used them).
    config["weights"] says which, in words. model: the network to load the weights into, for a
    run of a model defined in Python (its folder keeps the weights, not the code); None builds
    the run's registered model.
    An unfinished run is said so in a warning (unfinished_notice).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    notice = unfinished_notice(run_dir)
    if notice is not None:
        warnings.warn(notice, CnnlabWarning, stacklevel=2)
    info, name = config["data"], config["config"]["model"]
    if model is None:
        if config.get("custom_model"):
            raise CnnlabError(needs_model(run_dir, config, "load"))
        model = models.create(name, len(info["classes"]), 3, info["image_size"])
    if (run_dir / "model.safetensors").is_file():
        state = checkpoints.load_weights(run_dir / "model.safetensors")
        config["weights"] = "the finished run's weights (model.safetensors)"
    else:
        state, config["weights"] = _checkpoint_weights(run_dir / "checkpoint.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CnnlabError(f"the weights in {run_dir} do not fit model {name} "
                          f"({str(e).splitlines()[0]})") from None
    return config, model


def place(model: torch.nn.Module, config: dict, device: str) -> tuple[torch.device, bool]:
    """Move a loaded model to the device and memory layout it was trained with: (device, channels_last)."""
    dev = pick_device(device)
    channels_last = uses_channels_last(TrainConfig.from_dict(config["config"]))
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return dev, channels_last


def eval_precision(config: dict) -> str:
    """The arithmetic the run validated and tested in (its recipe's eval_precision): fp32 or bf16."""
    if TrainConfig.from_dict(config["config"]).eval_precision != "train":
        return "fp32"  # also every run from before eval_precision (some predate saved arithmetic)
    return arithmetic.eval_precision("train", saved_arithmetic(config))


def default_data(config: dict):
    """Where a run's data are: the absolute source it recorded when that is still there, else
    the --data it was given (None: the default search)."""
    source = config["data"].get("source")
    if source and Path(source).exists():
        return source
    return config["config"].get("data")


def evaluate_run(run_dir: Path, data_path=None, device: str = "auto", tta: str | None = None,
                 model: torch.nn.Module | None = None) -> dict:
    """A saved run's test predictions, computed the way training computed its test accuracy.

    tta None is the run's own recipe's test-time augmentation, so acc is the number training
    printed. data_path may also be ImageData (images given from Python, cnnlab.data.memory);
    model: the network of a run of a model defined in Python (see load_run). Returns acc (percent), correct, total,
    logits (float32 (N, classes), on the CPU), labels, test_x (uint8 images, CPU), classes,
    same_data (the data's fingerprint is the run's), model, tta, seconds and config.
    """
    config, model = load_run(run_dir, model)
    cfg, info = TrainConfig.from_dict(config["config"]), config["data"]
    tta = cfg.tta if tta is None else tta
    if tta not in TTA_MODES:
        raise CnnlabError(f"--tta {tta!r} is unknown: choose one of {', '.join(TTA_MODES)}")
    dev, channels_last = place(model, config, device)
    size, rule = decode.recorded(config)  # the size and resize rule the run was trained with
    if isinstance(data_path, data_mod.ImageData):
        data = data_path
    elif data_path is None and info.get("kind") == data_mod.MEMORY:
        raise CnnlabError(needs_data(run_dir, "evaluate"))
    else:
        data = data_mod.load(data_path if data_path is not None else default_data(config), size=size, resize=rule)
    if data.classes != info["classes"]:
        raise CnnlabError(f"the data's classes {data.classes} differ from the run's "
                          f"{info['classes']}: pass the dataset the run was trained on with --data")
    start = time.perf_counter()
    test_x, test_y = data.test_x.to(dev), data.test_y.to(dev)
    # Batches of eval_batch_size, as training evaluated: the same logits, the same accuracy.
    logits = predict_logits(model, test_x, info["mean"], info["std"], cfg.eval_batch_size,
                            channels_last, tta, eval_precision(config))
    correct = int((logits.argmax(1) == test_y).sum()) if len(test_y) else 0
    total = len(test_y)
    seconds = time.perf_counter() - start
    return {"acc": 100.0 * correct / total if total else float("nan"), "correct": correct,
            "total": total, "logits": logits.cpu().numpy(), "labels": data.test_y.numpy(),
            "test_x": data.test_x, "classes": data.classes, "same_data": data.fingerprint == info["fingerprint"],
            "model": cfg.model, "tta": tta, "seconds": seconds, "config": config,
            "data_source": data.source, "data_fingerprint": data.fingerprint}
