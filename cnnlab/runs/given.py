"""Models and images given from Python (cnnlab.train(model=..., data=...)), not by name or path.

    model = build_model(cfg, data, MyNet)    # MyNet() after torch.manual_seed(cfg.seed)
    config["custom_model"] = custom_record(MyNet)   # {"class": "mymodule.MyNet"}

A run folder of such a run keeps the weights (model.safetensors, checkpoint.pt) but not the
code: loading it again needs the model from Python (cnnlab.load_run(path, model=MyNet())), and
the command line says so in one line (needs_model). Images given from Python have no path:
the run records their fingerprint, and continuing or evaluating it needs them again (needs_data).
"""
from __future__ import annotations

from typing import Callable, Union

import torch

from ..network import models
from ..training.loop import TrainConfig

# A model given from Python: an nn.Module, or a callable that builds one (called after
# torch.manual_seed(cfg.seed), so its initial weights follow the run's seed).
ModelArg = Union[torch.nn.Module, Callable[[], torch.nn.Module], None]


def build_model(cfg: TrainConfig, data, model=None) -> torch.nn.Module:
    """The registered model cfg.model for data, or the one given, initialized from cfg.seed."""
    torch.manual_seed(cfg.seed)
    if model is None:
        return models.create(cfg.model, len(data.classes), data.train_x.shape[1], data.train_x.shape[-1])
    return model if isinstance(model, torch.nn.Module) else model()


def custom_record(model) -> dict | None:
    """config.json's note that the model came from Python (None for a registered one)."""
    if model is None:
        return None
    cls = model if isinstance(model, type) else type(model)
    return {"class": f"{cls.__module__}.{cls.__qualname__}"}


def needs_model(run_dir, config: dict, verb: str) -> str:
    """The one line for a run whose model was defined in Python, asked for without it."""
    cls = config["custom_model"].get("class", "the model")
    name = cls.rsplit(".", 1)[-1]
    return (f"{run_dir} was trained with a model defined in Python ({cls}): {verb} it from Python, "
            f"e.g. cnnlab.load_run({str(run_dir)!r}, model={name}())")


def needs_data(run_dir, verb: str) -> str:
    """The one line for a run trained on images given from Python, asked for without them."""
    return (f"{run_dir} was trained on images given from Python (no path was recorded): {verb} it "
            f"from Python with data= the same images")
