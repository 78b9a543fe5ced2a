"""What a network computes inside: its conv and pool layers, their feature maps, its filters.

    layers = conv_pool_layers(model, (3, 32, 32))   # [LayerInfo(name, kind, out_shape), ...] in run order
    maps = feature_maps(model, x)                   # {layer name: (N, C, H, W) outputs}
    w = filters(model, first_conv(model, (3, 32, 32)).name)   # (out, in, kH, kW) weights
    top = top_classes(model(x), classes, k=3)       # [[(class, probability), ...] per image]

Pure functions on a torch model and normalized input tensors: nothing is drawn or written
here (inspect_figures.py draws, cnnlab.runs.inspect runs it on a saved run). Layer names are
the module names 'cnnlab summary' prints (conv1, layer4.1.conv2, blocks.0.pool, ...); output
shapes come from the shape arithmetic of cnnlab.network.summary, so a figure's title says
the same shape as the summary table.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import CnnlabError
from .evaluate import ranked
from ..network.summary import record_leaves, summarize

CONV = (nn.Conv2d,)
POOL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)


@dataclass
class LayerInfo:
    name: str  # as 'cnnlab summary' prints it
    kind: str  # conv or pool
    out_shape: list[int]  # (1, C, H, W) on one image, from the shape arithmetic


def conv_pool_layers(model: nn.Module, chw) -> list[LayerInfo]:
    """Every conv and pool layer of model in the order they run on a (C, H, W) input."""
    was_training = model.training
    rows = {r.name: r for r in summarize(model, tuple(chw))}
    model.train(was_training)
    out = []
    for name, module, _, _ in record_leaves(model, [1, *chw]):
        if isinstance(module, CONV + POOL) and name in rows:
            out.append(LayerInfo(name, "conv" if isinstance(module, CONV) else "pool", list(rows[name].out_shape)))
    return out


def pick_layers(model: nn.Module, chw, names=None) -> list[LayerInfo]:
    """The conv and pool layers named (all of them for None), in run order; an unknown name is
    an error that lists the names there are."""
    layers = conv_pool_layers(model, chw)
    if not names:
        return layers
    known = {layer.name: layer for layer in layers}
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CnnlabError(f"no conv or pool layer {name!r} in this model: {hint}choose from "
                              f"{', '.join(known) or 'none'} (names as 'cnnlab summary' prints them)")
    return [layer for layer in layers if layer.name in set(names)]


def first_conv(model: nn.Module, chw) -> LayerInfo:
    """The first conv layer that runs: the one that looks at the pixels."""
    convs = [layer for layer in conv_pool_layers(model, chw) if layer.kind == "conv"]
    if not convs:
        raise CnnlabError("this model has no conv layer (nn.Conv2d): it has no filters to show")
    return convs[0]


def last_conv(model: nn.Module, chw) -> LayerInfo:
    """The last conv layer that runs: where Grad-CAM looks."""
    convs = [layer for layer in conv_pool_layers(model, chw) if layer.kind == "conv"]
    if not convs:
        raise CnnlabError("this model has no conv layer (nn.Conv2d): Grad-CAM needs one")
    return convs[-1]


def module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called name (as named_modules spells it)."""
    found = dict(model.named_modules()).get(name)
    if found is None:
        raise CnnlabError(f"no layer {name!r} in this model: see 'cnnlab summary' for its layer names")
    return found


def filters(model: nn.Module, name: str) -> torch.Tensor:
    """The weights (out, in, kH, kW) of the conv layer called name, detached, float32, on the CPU."""
    conv = module(model, name)
    if not isinstance(conv, CONV):
        raise CnnlabError(f"{name} is a {type(conv).__name__}, not a conv layer: only conv layers have filters")
    return conv.weight.detach().float().cpu().clone()


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
    """{layer name: its output on x} for the conv and pool layers named (all for None), in run
    order, caught by forward hooks during one forward pass in eval mode; float32, on the CPU."""
    chw = tuple(x.shape[1:])
    wanted = [layer.name for layer in pick_layers(model, chw, names)]
    caught: dict[str, torch.Tensor] = {}
    hooks = [module(model, name).register_forward_hook(
        lambda mod, inp, out, name=name: caught.setdefault(name, out.detach().float().cpu().clone()))
        for name in wanted]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {name: caught[name] for name in wanted if name in caught}


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """float32 logits of normalized input x in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    try:
        return model(x).float().cpu()
    finally:
        model.train(was_training)


def top_classes(scores: torch.Tensor, classes: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The k most probable classes of each row of logits, best first, with their softmax probability."""
    probs = torch.softmax(scores.float(), dim=1)
    p, idx = ranked(probs, max(1, min(k, len(classes))))
    return [[(classes[int(c)], float(q)) for q, c in zip(pr, ir)] for pr, ir in zip(p, idx)]
