"""Optimizers from a recipe: Adam or SGD (Nesterov), decoupled weight decay, a learning rate per kind of parameter.

    opt = build(model, Optimizer(name="sgd", lr=0.05, nesterov=True, weight_decay=5e-4))
    set_lr(opt, factor)      # the schedule's factor for the coming step
    step(opt)                # decoupled weight decay, then the optimizer's own step

Parameters are grouped by kind: "weight" (conv and linear weights), "bias" (their biases) and
"norm" (batch-norm scales and shifts); a model may say which is which with a method
param_groups() -> {"weight": [...], "bias": [...], "norm": [...]}. Each kind gets
lr * lr_scale[kind]; kinds with the same settings share one torch param group, in the model's
parameter order (so the report's recipe is one group, exactly as torch.optim.Adam(model.parameters())).
A kind with lr_scale 0 is frozen: its parameters stop requiring gradients, so autograd skips
their backward work (for fast-s, the whitening bias: its GELU's backward at full resolution).

Decoupled weight decay (AdamW's, for SGD too): before each step every weight is multiplied
by 1 - lr * factor * weight_decay * decay_scale[kind]; the peak lr here is the recipe's,
not scaled per kind, so a kind with a large lr_scale (BN biases) is not decayed faster.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .errors import CnnlabError
from .recipes.schema import Optimizer

KINDS = ("weight", "bias", "norm")
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's trainable parameters by kind, each list in the model's parameter order."""
    kind_of = {}
    if hasattr(model, "param_groups"):
        for kind, params in model.param_groups().items():
            if kind not in KINDS:
                raise ValueError(f"{type(model).__name__}.param_groups() returned kind {kind!r}; "
                                 f"the kinds are {', '.join(KINDS)}")
            kind_of.update({id(p): kind for p in params})
    else:
        for module in model.modules():
            for p in module.parameters(recurse=False):
                kind_of[id(p)] = "norm" if isinstance(module, NORMS) else "weight" if p.ndim > 1 else "bias"
    groups = {k: [] for k in KINDS}
    for p in model.parameters():
        if p.requires_grad and id(p) in kind_of:
            groups[kind_of[id(p)]].append(p)
    return groups


def build(model: nn.Module, cfg: Optimizer, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The torch optimizer for model's parameters as the recipe's [optimizer] table says."""
    kinds = param_groups(model)
    for kind in KINDS:
        if getattr(cfg.lr_scale, kind) == 0:  # frozen: no step, no decay, and no gradient computed
            for p in kinds[kind]:
                p.requires_grad_(False)
            kinds[kind] = []
    if not any(kinds.values()):
        raise CnnlabError("optimizer.lr_scale is 0 for every kind of parameter this model has: "
                          "nothing would train; give at least one kind a positive scale")
    settings = {k: (cfg.lr * getattr(cfg.lr_scale, k), cfg.lr * cfg.weight_decay * getattr(cfg.decay_scale, k))
                for k in KINDS}
    by_setting: dict[tuple, list] = {}
    for kind in KINDS:
        for p in kinds[kind]:
            by_setting.setdefault(settings[kind], []).append(p)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    groups = [{"params": sorted(ps, key=lambda p: order[id(p)]), "lr": lr, "peak_lr": lr, "decay_rate": rate,
               "factor": 1.0} for (lr, rate), ps in by_setting.items()]
    cuda = device is not None and device.type == "cuda"
    if cfg.name == "adam":
        # fused Adam is one kernel per step on CUDA; on this CPU foreach measured faster.
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                fused=True if cuda else None)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's learning rate to its peak times the schedule's factor."""
    for g in opt.param_groups:
        g.setdefault("peak_lr", g["lr"])  # an optimizer state saved before schedules existed
        g["lr"] = g["peak_lr"] * factor
        g["factor"] = factor


@torch.no_grad()
def step(opt: torch.optim.Optimizer) -> None:
    """Decoupled weight decay (where the recipe asks for it), then the optimizer's step."""
    for g in opt.param_groups:
        if g.get("decay_rate", 0.0) > 0:
            keep = 1.0 - g["decay_rate"] * g["factor"]
            for p in g["params"]:
                if p.grad is not None:
                    p.mul_(keep)
    opt.step()
