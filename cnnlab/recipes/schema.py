"""What a recipe holds, as typed dataclasses, and the one checker that maps TOML tables onto them.

    r = build(Recipe, {"model": "seed-bn", "optimizer": {"lr": 2e-3}}, where="my.toml")
    r.optimizer.lr          # 0.002; every other field keeps its default (the report's recipe)

A recipe is every setting that defines training: model, epochs, batch size, optimizer,
schedule, augmentation, weight averaging, test-time augmentation. The defaults are the course
report's recipe (Adam 1e-3, batch 128, 20 epochs, 10 % held out: 45k/5k on CIFAR-10, model seed).
build() checks each key and value against the field's type (Literal choices, ranges in the
field's metadata) and raises a CnnlabError that names the place and the dotted key, with a
"did you mean" for a misspelt key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Literal

from ..errors import CnnlabError


def _f(default, doc: str = "", **limits):
    """A field with a default, a one-line description and limits (min, max, gt, lt)."""
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return field(default_factory=default, metadata={"doc": doc, **limits})
    return field(default=default, metadata={"doc": doc, **limits})


@dataclass
class GroupScales:
    """A multiplier per kind of parameter (see cnnlab.training.optim.param_groups)."""
    weight: float = _f(1.0, "conv and linear weights", min=0)
    bias: float = _f(1.0, "conv and linear biases", min=0)
    norm: float = _f(1.0, "batch-norm scales and shifts", min=0)


@dataclass
class GroupEpochs:
    """An epoch count per kind of parameter (see cnnlab.training.optim.param_groups); 0: no limit."""
    weight: int = _f(0, "conv and linear weights", min=0)
    bias: int = _f(0, "conv and linear biases", min=0)
    norm: int = _f(0, "batch-norm scales and shifts", min=0)


@dataclass
class MuonSettings:
    """The conv filters' settings where the optimizer is muon (cnnlab.training.muon)."""
    lr: float = _f(0.1, "peak learning rate of the filters (the schedule multiplies it)", gt=0)
    momentum: float = _f(0.6, "momentum of the filters' updates", min=0, lt=1)
    nesterov: bool = _f(True, "Nesterov momentum")
    ns_steps: int = _f(3, "Newton-Schulz iterations that orthogonalize each update", min=1)


@dataclass
class Optimizer:
    name: Literal["adam", "sgd", "muon"] = _f(
        "adam", "adam, or sgd with momentum, or muon: the conv filters by Muon ([optimizer.muon]), the rest by sgd")
    lr: float = _f(1e-3, "peak learning rate (the schedule multiplies it)", gt=0)
    momentum: float = _f(0.9, "sgd: momentum", min=0, lt=1)
    nesterov: bool = _f(False, "sgd: Nesterov momentum")
    betas: tuple[float, float] = _f((0.9, 0.999), "adam: moment decay rates", min=0, lt=1)
    eps: float = _f(1e-8, "adam: added to the denominator", gt=0)
    weight_decay: float = _f(0.0, "decoupled: each step w -= lr * schedule * weight_decay * w", min=0)
    lr_scale: GroupScales = _f(GroupScales, "learning-rate multiplier per kind of parameter; 0 freezes the kind "
                               "(no gradient, no step, no decay)")
    decay_scale: GroupScales = _f(GroupScales, "weight-decay multiplier per kind of parameter")
    train_epochs: GroupEpochs = _f(GroupEpochs, "train the kind in the first N epochs only, then freeze it "
                                   "(0: every epoch)")
    muon: MuonSettings = _f(MuonSettings, "muon: the conv filters' learning rate, momentum and iterations")


@dataclass
class Schedule:
    """The learning rate's factor as a function of the step: see cnnlab.training.schedules.lr_factor."""
    kind: Literal["constant", "linear", "cosine", "triangle"] = _f("constant", "shape of the factor")
    warmup: float = _f(0.0, "fraction of the steps rising linearly from 0 to 1 (constant, linear, cosine)",
                       min=0, max=1)
    peak: float = _f(0.25, "triangle: fraction of the steps at which the factor peaks at 1", min=0, max=1)
    start: float = _f(0.0, "triangle: factor at the first step", min=0)
    final: float = _f(0.0, "linear, cosine, triangle: factor at the end", min=0)


@dataclass
class Augment:
    """Batch augmentation of the training images (cnnlab.training.augment); validation and test see none."""
    flip: Literal["none", "random", "alternating"] = _f(
        "none", "mirror left-right: at random, or a fixed half of the images in every other epoch")
    translate: int = _f(0, "shift by up to this many pixels each way, reflect padding", min=0)
    cutout: int = _f(0, "blank a square of this side at a random place (0: off)", min=0)
    crop: int = _f(0, "train on a random crop x crop window of each image (0: off); the model must take "
                   "smaller images (a global-pool head, as the fast-* models have)", min=0)
    crop_epochs: int = _f(0, "crop in the first N epochs only, whole images after (0: every epoch)", min=0)


@dataclass
class Averaging:
    """Weight averaging (cnnlab.training.averaging): evaluation and the saved weights use the average."""
    kind: Literal["none", "ema", "lookahead"] = _f("none", "none, ema, or lookahead")
    decay: float = _f(0.99, "weight of the old average at each update", min=0, lt=1)
    every: int = _f(1, "steps between updates (lookahead: its k)", min=1)
    ramp: float = _f(0.0, "the decay grows over the run as decay * (step / steps) ** ramp (0: constant)", min=0)


@dataclass
class Select:
    """Training on the hard images (cnnlab.training.selection): from an epoch on, each epoch trains on the
    part of the training images whose loss was highest when they were last trained on."""
    keep: float = _f(1.0, "part of the training images each selecting epoch trains on (1: every image)",
                     gt=0, max=1)
    from_epoch: int = _f(2, "the first epoch that selects; the ones before train on every image", min=1)


@dataclass
class Recipe:
    recipe: str = _f("seed", "the recipe's name (a shipped name or a file's path)")
    description: str = _f("the course report's recipe", "one line: what this rung adds")
    target_acc: float | None = _f(None, "the test accuracy (percent) this recipe aims at", min=0, max=100)
    model: str = _f("seed", "model name (cnnlab models)")
    epochs: int = _f(20, "passes over the training split", min=1)
    patience: int | None = _f(None, "end the run when validation accuracy has not improved for this many epochs",
                              min=1)
    keep: Literal["last", "best"] = _f("last", "weights kept: last, or best: also the best-validation epoch's "
                                       "(best.safetensors)")
    batch_size: int = _f(128, "images per optimizer step", min=1)
    val_size: int | str = _f("10%", "held out for validation: a count, or a percentage of the training split",
                             min=0)
    image_size: int = _f(32, "image folders: the side of the square images the model sees (CIFAR-10: 32)",
                         min=1)
    resize: Literal["crop", "squash"] = _f(
        "crop", "image folders: how other sizes become image_size squares: crop (shorter side resized, "
        "centre cut out, the aspect kept) or squash (the whole image stretched)")
    label_smoothing: float = _f(0.0, "cross-entropy label smoothing", min=0, lt=1)
    tta: Literal["none", "flip", "flip-shift"] = _f("none", "test-time augmentation of the final test")
    eval_precision: Literal["fp32", "train"] = _f(
        "fp32", "arithmetic of validation and test: IEEE fp32, or the training's own (bf16 where the run "
        "trains in bf16: several times faster on AMX; the accuracy moves by a few hundredths)")
    optimizer: Optimizer = _f(Optimizer)
    schedule: Schedule = _f(Schedule)
    augment: Augment = _f(Augment)
    averaging: Averaging = _f(Averaging)
    select: Select = _f(Select)
    sync_bn: bool = _f(True, "several processes: BatchNorm over the whole batch (SyncBatchNorm; GPUs only), "
                       "as one process computes it; one process: no effect")
    by_precision: dict = field(default_factory=dict, metadata={"doc": (
        "settings that replace the recipe's where the run's arithmetic is this precision: a table "
        "[by_precision.fp32] (a CPU without native bf16, or --precision fp32) or [by_precision.bf16], "
        "of recipe keys; the command line's own settings win, and config.json records the table used")})


@dataclass
class Measured:
    """A shipped recipe's measured result: test accuracy over n seeds, seconds per run, machine."""
    mean: float | None = _f(None, "mean test accuracy, percent", min=0, max=100)
    std: float | None = _f(None, "its standard deviation over the seeds", min=0)
    n: int | None = _f(None, "seeds", min=1)
    seconds: float | None = _f(None, "training seconds per run", min=0)
    machine: str | None = _f(None, "where it was measured")


# ------------------------------------------------------------------ checking

def keys(cls) -> list[str]:
    """Every dotted key of a dataclass, nested tables included (e.g. 'optimizer.lr_scale.norm')."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += [f"{f.name}.{k}" for k in keys(hints[f.name])]
        else:
            out.append(f.name)
    return out


def unknown_key(key: str, known, where: str) -> CnnlabError:
    """The error for a key that is not in known (dotted keys), with the closest known one."""
    known = list(known)
    close = difflib.get_close_matches(key, known, 1, 0.6)
    if not close:  # the right name in the wrong table ('lr' for 'optimizer.lr'), or a typo in it
        by_last = {}
        for k in sorted(known, key=lambda k: k.count(".")):  # the shallowest: 'optimizer.lr' before 'optimizer.muon.lr'
            by_last.setdefault(k.rsplit(".", 1)[-1], k)
        close = [by_last[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], by_last, 1, 0.6)]
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return CnnlabError(f"{where}: unknown key {key!r}{hint}")


def build(cls, data: dict, where: str, prefix: str = "", lenient: bool = False):
    """An instance of dataclass cls from a (TOML) mapping, every key and value checked.

    Missing keys keep their defaults. lenient ignores unknown keys (config.json files written
    by other versions of cnnlab).
    """
    if not isinstance(data, dict):
        raise CnnlabError(f"{where}: {prefix.rstrip('.') or 'the recipe'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in fields:
            if lenient:
                continue
            raise unknown_key(prefix + key, [prefix + k for k in fields], where)
        values[key] = convert(value, hints[key], fields[key].metadata, where, prefix + key, lenient)
    return cls(**values)


def _describe(hint) -> str:
    if hint is dict:
        return "a table per precision"
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(typing.get_args(hint))} numbers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def convert(value, hint, limits, where: str, key: str, lenient: bool = False):
    """value checked against the type hint and limits; a CnnlabError naming where and key if not."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where, key + ".", lenient)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(value, a, limits, where, key)
            except CnnlabError:
                continue
        raise CnnlabError(f"{where}: {key} must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise CnnlabError(f"{where}: {key} must be {_describe(hint)}, got {value!r}")
        return value
    if origin is tuple:
        n = len(typing.get_args(hint))
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise CnnlabError(f"{where}: {key} must be {_describe(hint)}, got {value!r}")
        return tuple(convert(v, a, limits, where, f"{key}[{i}]") for i, (v, a) in
                     enumerate(zip(value, typing.get_args(hint))))
    if hint is dict:
        if key.rsplit(".", 1)[-1] == "by_precision":
            return by_precision(value, where, key)
        if not isinstance(value, dict):
            raise CnnlabError(f"{where}: {key} must be a table, got {value!r}")
        return value
    if hint is str and isinstance(value, os.PathLike):  # a path given in code, not in a file
        value = os.fspath(value)
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}.get(hint)
    if not ok:
        raise CnnlabError(f"{where}: {key} must be {_describe(hint)}, got {value!r}")
    if hint is float:
        value = float(value)
        if not math.isfinite(value):
            raise CnnlabError(f"{where}: {key} must be a finite number, got {value!r}")
    if hint in (int, float):
        for name, test, words in (("min", lambda v, b: v >= b, "at least"), ("max", lambda v, b: v <= b, "at most"),
                                  ("gt", lambda v, b: v > b, "greater than"), ("lt", lambda v, b: v < b, "less than")):
            if name in limits and not test(value, limits[name]):
                raise CnnlabError(f"{where}: {key} must be {words} {limits[name]:g}, got {value!r}")
    return value


def set_dotted(data: dict, key: str, value) -> None:
    """data[a][b][c] = value for the dotted key "a.b.c" (the tables exist already)."""
    *path, last = key.split(".")
    for part in path:
        data = data[part]
    data[last] = value


def get_dotted(obj, key: str):
    """obj.a.b.c for the dotted key "a.b.c"."""
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


PRECISIONS = ("fp32", "bf16")
NOT_BY_PRECISION = ("recipe", "description", "target_acc", "by_precision")


def flatten(table: dict, cls, prefix: str = "") -> dict:
    """A TOML table of cls's keys by dotted key: {"optimizer": {"lr": 1}} -> {"optimizer.lr": 1}."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in table.items():
        name = prefix + str(key)
        head, _, rest = str(key).partition(".")
        hint = hints.get(head)
        if isinstance(value, dict) and hint is not None and dataclasses.is_dataclass(hint) and not rest:
            out.update(flatten(value, hint, name + "."))
        else:
            out[name] = value
    return out


def by_precision(value, where: str, key: str) -> dict:
    """A recipe's by_precision: {precision: {dotted recipe key: value}}, every value checked as
    the key itself is checked (nested tables are flattened to dotted keys)."""
    if not isinstance(value, dict):
        raise CnnlabError(f"{where}: {key} must be a table per precision ([{key}.fp32], [{key}.bf16]), "
                          f"got {value!r}")
    allowed = [k for k in keys(Recipe) if k not in NOT_BY_PRECISION]
    out = {}
    for precision, table in value.items():
        if precision not in PRECISIONS:
            raise CnnlabError(f"{where}: {key}.{precision}: the precision must be one of "
                              f"{', '.join(PRECISIONS)}")
        if not isinstance(table, dict):
            raise CnnlabError(f"{where}: {key}.{precision} must be a table of recipe keys, got {table!r}")
        settings = flatten(table, Recipe)
        for name, v in settings.items():
            if name not in allowed:
                raise unknown_key(f"{key}.{precision}.{name}", [f"{key}.{precision}.{k}" for k in allowed], where)
            data = to_dict(Recipe())
            set_dotted(data, name, v)
            value = get_dotted(build(Recipe, data, f"{where} [{key}.{precision}]"), name)
            settings[name] = list(value) if isinstance(value, tuple) else value
        out[precision] = settings
    return out


def check(obj, where: str):
    """Check an already built dataclass (made in code, not from a file) the way build() would."""
    return build(type(obj), to_dict(obj), where)


def to_dict(obj) -> dict:
    """The dataclass as nested plain dicts and lists (JSON- and TOML-friendly)."""
    def plain(v):
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(obj))
