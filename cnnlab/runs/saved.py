"""A finished run read back: its model with the final weights, and its test accuracy again."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import checkpoints, data as data_mod, models
from ..errors import CnnlabError
from ..evaluate import evaluate
from ..train import TrainConfig, pick_device, uses_channels_last
from .folder import read_config

def load_run(run_dir: Path) -> tuple[dict, torch.nn.Module]:
    """(config.json contents, model with the run's final weights) from a run folder."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    info, name = config["data"], config["config"]["model"]
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
    cfg, info = TrainConfig.from_dict(config["config"]), config["data"]
    dev = pick_device(device)
    data = data_mod.load(data_path if data_path is not None else cfg.data)
    if data.classes != info["classes"]:
        raise CnnlabError(f"the data's classes {data.classes} differ from the run's "
                          f"{info['classes']}: pass the dataset the run was trained on with --data")
    channels_last = uses_channels_last(cfg)
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    result = evaluate(model, data.test_x.to(dev), data.test_y.to(dev), info["mean"], info["std"],
                      cfg.eval_batch_size, channels_last, cfg.tta)  # the recipe's test-time augmentation
    return {**result, "same_data": data.fingerprint == info["fingerprint"], "model": cfg.model}
