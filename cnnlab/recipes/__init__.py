"""Recipes: readable TOML files of everything that defines a training run.

    r = load_recipe("seed-bn")                  # a shipped recipe, by name
    r = load_recipe("my-recipe.toml")           # a file of your own
    cfg = apply_overrides(TrainConfig.from_dict(to_dict(r)), {"optimizer.lr": 0.01}, "--set")
    for entry in shipped(): entry["name"], entry["target_acc"], entry["measured"]

From the top-level package, cnnlab.recipes() (this package is callable) gives shipped():

    >>> [r["name"] for r in cnnlab.recipes()][:2]
    ['seed', 'seed-bn']

A recipe file sets only what differs from the defaults (the report's recipe, cnnlab.recipes.schema),
or from the recipe it names as `base`:

    base = "seed-bn"                 # start from a shipped recipe (or a path relative to this file)
    description = "seed-bn + flips and 2-pixel shifts"
    target_acc = 72.0
    epochs = 30
    [augment]
    flip = "random"
    translate = 2

The shipped recipes live next to this file; each has `target_acc` and a `[measured]` table
(mean, std, n, seconds, machine) filled in when the recipe has been measured.
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
import types
from pathlib import Path

from ..errors import CnnlabError
from .schema import Measured, Recipe, build, flatten, keys, set_dotted, to_dict, unknown_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

__all__ = ["LADDER", "Recipe", "apply_overrides", "load_recipe", "names", "parse_value", "read_recipe",
           "shipped", "to_dict"]

HERE = Path(__file__).resolve().parent
# The course's ladder, in the order a student climbs it; other shipped recipes follow by name.
LADDER = ["seed", "seed-bn", "seed-bn-dropout", "seed-avgpool", "seed-aug", "seed-sgd", "seed-wide",
          "resnet18"]
FILE_ONLY = {"base", "measured"}  # keys of a recipe file that are not recipe fields


def names() -> list[str]:
    """The shipped recipes' names: the ladder first, then the others by name."""
    found = {p.stem for p in HERE.glob("*.toml")}
    return [n for n in LADDER if n in found] + sorted(found - set(LADDER))


def _path_of(name_or_path: str, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    if text in names():
        return HERE / f"{text}.toml"
    path = Path(text)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise CnnlabError(f"recipe file {path} does not exist: pass a shipped recipe name "
                              f"({', '.join(names())}) or an existing .toml file")
        return path
    close = difflib.get_close_matches(text, names(), 1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise CnnlabError(f"unknown recipe {text!r}: {hint}choose one of {', '.join(names())} "
                      f"(see 'cnnlab recipes') or pass a .toml file")


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CnnlabError(f"{path}: not valid TOML ({e})") from None
    except OSError as e:
        raise CnnlabError(f"cannot read recipe file {path}: {e.strerror}") from None


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_recipe(name_or_path: str, _seen: tuple = (), _dir: Path | None = None) -> tuple[Recipe, Measured | None]:
    """(the recipe, its [measured] table or None) from a shipped name or a TOML file."""
    # Resolved first (.., symlinks): a base that names its own file by another spelling
    # ("../rx/a.toml" inside rx/a.toml) is the same file, so the loop check below sees it.
    given = _path_of(name_or_path, _dir)  # a relative base is relative to the file that names it
    path = given.resolve()
    shown = path.name if path.parent == HERE else str(given)
    if str(path) in _seen:
        raise CnnlabError(f"{shown}: base recipes form a loop ({' -> '.join(map(str, _seen + (path,)))})")
    table = _read_toml(path)
    allowed = [f.name for f in dataclasses.fields(Recipe) if f.name != "recipe"] + sorted(FILE_ONLY)
    for key in table:
        if key not in allowed:
            raise unknown_key(key, [k for k in keys(Recipe) if k != "recipe"] + sorted(FILE_ONLY), shown)
    base = {}
    if "base" in table:
        if not isinstance(table["base"], str):
            raise CnnlabError(f"{shown}: base must be a recipe name or a path, got {table['base']!r}")
        base = to_dict(read_recipe(table["base"], _seen + (str(path),), given.parent)[0])
    fields = {k: v for k, v in table.items() if k not in FILE_ONLY}
    if base.get("by_precision"):  # this file's own keys override the base's choices by arithmetic too
        own = set(flatten({k: v for k, v in fields.items() if k != "by_precision"}, Recipe))
        base["by_precision"] = {p: left for p, chosen in base["by_precision"].items()
                                if (left := {k: v for k, v in chosen.items() if k not in own})}
    name = path.stem if path.parent == HERE else str(name_or_path)
    recipe = build(Recipe, {**_merge(base, fields), "recipe": name}, shown)
    measured = build(Measured, table["measured"], shown, "measured.") if "measured" in table else None
    return recipe, measured


def load_recipe(name_or_path: str) -> Recipe:
    return read_recipe(name_or_path)[0]


def shipped() -> list[dict]:
    """One entry per shipped recipe: name, model, epochs, target_acc, description, measured."""
    out = []
    for name in names():
        r, m = read_recipe(name)
        out.append({"name": name, "model": r.model, "epochs": r.epochs, "target_acc": r.target_acc,
                    "description": r.description,
                    "measured": to_dict(m) if m is not None and m.mean is not None else None})
    return out


class _CallableModule(types.ModuleType):
    """cnnlab.recipes is both this package and the public function cnnlab.recipes(): once the
    package is imported, Python binds the name cnnlab.recipes to it, so calling it gives what
    the function gives (the shipped recipes, see shipped)."""

    def __call__(self) -> list[dict]:
        return shipped()


sys.modules[__name__].__class__ = _CallableModule


def parse_value(text: str):
    """A --set value: a TOML value when it reads as one (0.1, true, [0.9, 0.99], "x"), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(cfg, overrides: dict, where: str):
    """A copy of the dataclass cfg with dotted keys set ({'optimizer.lr': 0.01}), all checked."""
    data = to_dict(cfg)
    known = keys(type(cfg))
    for key, value in overrides.items():
        if key not in known:
            raise unknown_key(key, known, where)
        set_dotted(data, key, value)
    return build(type(cfg), data, where)
