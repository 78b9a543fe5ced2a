"""The model registry: name -> constructor(num_classes, in_channels, image_size).

One module per family; each registers its constructors in MODELS below. The CLI lists and
validates names from MODELS ('cnnlab models').
"""
from __future__ import annotations

import torch.nn as nn

from ...errors import CnnlabError
from .fast import FastNet, fast_94, fast_c, fast_h, fast_l, fast_m, fast_q, fast_q_s2, fast_s
from .resnet import resnet18
from .seed import SeedNet, seed, seed_avgpool, seed_bn, seed_bn_dropout, seed_p1, seed_wide

__all__ = ["MODELS", "FastNet", "SeedNet", "count_params", "create"]

MODELS = {
    "seed": seed,
    "seed-p1": seed_p1,
    "seed-bn": seed_bn,
    "seed-bn-dropout": seed_bn_dropout,
    "seed-avgpool": seed_avgpool,
    "seed-wide": seed_wide,
    "resnet18": resnet18,
    "fast-q-s2": fast_q_s2,
    "fast-q": fast_q,
    "fast-s": fast_s,
    "fast-h": fast_h,
    "fast-c": fast_c,
    "fast-m": fast_m,
    "fast-94": fast_94,
    "fast-l": fast_l,
}


def create(name: str, num_classes: int = 10, in_channels: int = 3, image_size=32) -> nn.Module:
    if name not in MODELS:
        raise CnnlabError(f"unknown model {name!r}: choose one of {', '.join(MODELS)} "
                          f"(see 'cnnlab models')")
    try:
        return MODELS[name](num_classes, in_channels, image_size)
    except ValueError as e:  # the shape arithmetic refused this input size
        shown = "x".join(map(str, image_size)) if isinstance(image_size, (tuple, list)) else f"{image_size}x{image_size}"
        raise CnnlabError(f"model {name} cannot take {shown} inputs: {e}; use a larger --image-size "
                          f"or a model that pools less") from None


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
