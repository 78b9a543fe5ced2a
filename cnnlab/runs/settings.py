"""One path from settings to a run's TrainConfig, shared by `cnnlab train` and cnnlab.train().

    cfg = resolve("seed", {"epochs": 5, "lr": 0.01, "augment.flip": "random"})
    cfg = resolve("seed-bn", {"optimizer": {"lr": 0.05}}, out="runs/x")
    dotted({"lr": 0.01, "optimizer": {"momentum": 0.8}})   # {"optimizer.lr": 0.01, "optimizer.momentum": 0.8}

A resumed run keeps its recipe: refuse_changes says in one line which setting given again
differs (only RESUME_MAY_CHANGE may).

Settings are the command line's flag names (epochs, batch_size, lr, val_size, model, seed,
device, data, max_steps, eval_batch_size, channels_last, compile, precision, strict, tensorboard,
threads) and every recipe key, dotted ("augment.flip") or as nested dicts (augment={"flip": "random"}).
They go onto the recipe (a shipped name or a .toml file) and are checked as one: a wrong one
raises SettingsError (a CnnlabError and a ValueError) with the command line's own one line.
"""
from __future__ import annotations

from typing import Any

from ..errors import CnnlabError, SettingsError
from ..recipes.schema import get_dotted
from ..training.loop import TrainConfig

# Flags whose name is not their recipe key.
FLAG_KEYS = {"lr": "optimizer.lr"}


def dotted(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings by dotted key: flag names mapped (lr -> optimizer.lr), nested tables flattened."""
    from ..recipes.schema import keys
    known = set(keys(TrainConfig))
    out: dict[str, Any] = {}

    def add(key: str, value) -> None:
        key = FLAG_KEYS.get(key, key)
        if isinstance(value, dict) and any(k.startswith(f"{key}.") for k in known):
            for sub, v in value.items():
                add(f"{key}.{sub}", v)
        else:
            out[key] = value
    for key, value in settings.items():
        add(str(key), value)
    return out


def resolve(recipe: str | None, settings: dict[str, Any], out: str | None = None,
            where: str = "the command line", check_model: bool = True) -> TrainConfig:
    """The recipe (default seed) with settings over it, every value checked.

    check_model: also refuse an unknown model name (off where the model comes from Python).
    Raises SettingsError.
    """
    from ..recipes import apply_overrides, load_recipe, to_dict
    try:
        base = TrainConfig.from_dict({**to_dict(load_recipe(recipe or "seed")), "out": out})
        given = dotted(settings)
        if "precision_settings" in given:
            raise CnnlabError(f"{where}: precision_settings is recorded by cnnlab, not set: set the recipe's "
                              f"by_precision table instead")
        cfg = mark_description(base, apply_overrides(base, given, where).validate(), given)
        cfg = for_precision(cfg, given, where)
        if check_model:
            from ..network import models
            models.create(cfg.model)  # an unknown name, before any data is read
        if cfg.tensorboard:
            from .tensorboard import require
            require()
    except SettingsError:
        raise
    except CnnlabError as e:
        raise SettingsError(str(e)) from None
    return cfg


def for_precision(cfg: TrainConfig, given: dict[str, Any], where: str) -> TrainConfig:
    """cfg with its recipe's by_precision settings for the arithmetic it will train in (bf16 where
    native, else fp32; see cnnlab.training.arithmetic), except those given: a recipe may train
    other epochs, or another model, where the CPU has no fast bf16. The settings taken are
    recorded in cfg.precision_settings (config.json)."""
    if not cfg.by_precision:
        return cfg
    from dataclasses import replace
    from ..recipes import apply_overrides
    from ..training.loop import pick_device, resolve_precision
    precision = resolve_precision(cfg, pick_device(cfg.device))
    chosen = {k: v for k, v in cfg.by_precision.get(precision, {}).items() if k not in given}
    if not chosen:
        return cfg
    cfg = apply_overrides(cfg, chosen, f"{where}: recipe {cfg.recipe} [by_precision.{precision}]").validate()
    return replace(cfg, precision_settings={"precision": precision, "settings": chosen})


def mark_description(base: TrainConfig, cfg: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """cfg, its description (the recipe's own) marked as the shipped recipe's where settings
    changed the recipe: config.json and the report show the run's settings from their values."""
    from dataclasses import replace
    changed = [k for k in given if k not in RUN_KEYS and get_dotted(cfg, k) != get_dotted(base, k)]
    if not changed or not cfg.description:
        return cfg
    return replace(cfg, description=f"{cfg.description} (the recipe as shipped; this run sets "
                   + ", ".join(f"{k}={_text(get_dotted(cfg, k))}" for k in changed) + ")")


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


# Settings of the run itself, not of its recipe: they leave the recipe's description as it is.
RUN_KEYS = {"seed", "device", "data", "max_steps", "eval_batch_size", "channels_last", "compile", "precision",
            "strict", "tensorboard", "threads", "out", "precision_settings"}

# Flags that a resumed run may change: where it runs and where its (identical) data lives, where it
# logs, and its CPU threads (recorded). --precision may be given too: it switches the run's
# arithmetic, and config.json records it.
RESUME_MAY_CHANGE = {"device", "data", "out", "strict", "tensorboard", "threads"}


def flag_name(key: str) -> str:
    """How the command line spells a setting: --lr, --batch-size, or --set optimizer.momentum=."""
    if key == "optimizer.lr":
        return "--lr"
    return f"--{key.replace('_', '-')}" if "." not in key else f"--set {key}="


def refuse_changes(saved: TrainConfig, overrides: dict, what: str) -> None:
    """A resumed run (or group) keeps its recipe: a setting given again with another value is
    refused in one line; only RESUME_MAY_CHANGE may differ."""
    for key, value in overrides.items():
        if key in RESUME_MAY_CHANGE:
            continue
        name = flag_name(key)
        try:
            was = get_dotted(saved, key)
        except AttributeError:
            raise CnnlabError(f"{name}: the {what}'s recipe has no setting {key!r}") from None
        if was != value and not (isinstance(was, tuple) and list(was) == value):
            flag = f"{name}{value}" if name.endswith("=") else f"{name} {value}"  # --set k=v, --lr 0.1
            setting = f"the {what}'s {was}" if was is not None else f"the {what}, where {name} was not set"
            raise CnnlabError(f"{flag} differs from {setting}: a resumed {what} keeps its recipe; "
                              f"start a new {what} with --out to train with other settings")
