"""Compare groups of runs honestly: mean, spread, 95 % interval, Welch's t-test, plain words.

    groups = [*load_groups("runs/a-seeds"), *load_groups("runs/b-seeds")]
    result = compare(groups)        # {"groups": [...], "pairs": [...]}, as 'cnnlab compare --json'
    print(format_table(result))

An argument is a run folder (config.json: a group of one), a group folder from
'cnnlab train --seeds' (group.json), or any folder whose subfolders are run folders. A folder of
runs of different recipes or data (runs/) is split into one group per recipe and data
fingerprint: runs are never pooled across them. Without scipy (the 'stats' extra) the table is
printed without intervals and t-tests, and a note says what the extra adds.
Only finished runs (with metrics.json) enter the statistics. Unfinished runs, runs on other
data (fingerprint) and groups that mix data or recipes are flagged in the table and the
JSON; a pair that is not like for like gets no verdict.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis import stats
from ..errors import CnnlabError
from ..recipes.schema import Recipe, build
from .folder import read_config
from .group import GROUP_FILE, best_val_epoch, read_group, run_dir


@dataclass
class Run:
    path: Path
    config: dict
    metrics: dict | None  # None: the run has not finished (no metrics.json)
    history: list[dict]  # history.csv rows as floats

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def recipe(self) -> str:
        """The recipe's name over the model's, or the model alone (runs from before recipes)."""
        c = self.config["config"]
        recipe = c.get("recipe")
        name = recipe.get("name") if isinstance(recipe, dict) else recipe
        return f"{name}/{c['model']}" if name and name != c["model"] else c["model"]

    @property
    def fingerprint(self) -> str:
        return self.config["data"].get("fingerprint", "")


@dataclass
class Group:
    name: str
    path: Path
    kind: str  # "run", "group" (group.json) or "folder" (subfolders that are runs)
    runs: list[Run]
    planned: int  # runs the group meant to have (group.json's seeds), not started ones included
    declared: str = ""  # the model group.json names, shown while no run has finished
    flags: list[str] = field(default_factory=list)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]


def read_history(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError, TypeError):
        return []


def load_run(path: Path) -> Run:
    config = read_config(path)
    try:
        metrics = json.loads((path / "metrics.json").read_text())
        float(metrics["test_acc"])
    except OSError:
        metrics = None
    except (ValueError, KeyError, TypeError):
        raise CnnlabError(f"{path}/metrics.json is damaged: run 'cnnlab evaluate {path}' to test "
                          f"the run again, or leave it out of the comparison") from None
    return Run(path, config, metrics, read_history(path / "history.csv"))


def load_group(path) -> Group:
    """A run, a group made by --seeds, or a folder of run folders, with its flags."""
    path = Path(path)
    if not path.is_dir():
        raise CnnlabError(f"{path} is not a folder: pass run folders or group folders made by 'cnnlab train'")
    name = path.resolve().name
    if (path / GROUP_FILE).is_file():
        group = read_group(path)
        folders = [run_dir(path, s) for s in group["seeds"]]
        runs = [load_run(f) for f in folders if (f / "config.json").is_file()]
        g = Group(name, path, "group", runs, len(folders), str(group["config"].get("model", "")))
    elif (path / "config.json").is_file():
        g = Group(name, path, "run", [load_run(path)], 1)
    else:
        folders = sorted(f for f in path.iterdir() if (f / "config.json").is_file())
        if not folders:
            raise CnnlabError(f"{path} is neither a run folder (config.json) nor a group folder "
                              f"({GROUP_FILE}, or subfolders that are runs): pass folders made by "
                              f"'cnnlab train' or 'cnnlab train --seeds'")
        g = Group(name, path, "folder", [load_run(f) for f in folders], len(folders))
    return _flagged(g)


def _flagged(g: Group) -> Group:
    missing = g.planned - len(g.finished)
    if missing:
        g.flags.append(f"{missing} of {g.planned} runs unfinished, left out")
    if len({r.fingerprint for r in g.finished}) > 1:
        g.flags.append("mixed data (fingerprints differ)")
    differ = _recipe_differences(g.finished)
    if differ:
        g.flags.append(f"mixed recipes ({', '.join(differ)} {'differs' if len(differ) == 1 else 'differ'})")
    return g


def load_groups(path) -> list[Group]:
    """load_group, but a folder of runs of different recipes or data is split into one group per
    recipe (all its settings but the seed and where it ran) and data fingerprint, first seen first."""
    g = load_group(path)
    if g.kind != "folder":
        return [g]
    by_kind: dict[tuple[str, str], list[Run]] = {}
    for r in g.runs:
        by_kind.setdefault((_recipe_key(r), r.fingerprint), []).append(r)
    if len(by_kind) == 1:
        return [g]
    labels = [f"{runs[0].recipe} on data {fp[:8] or '?'}" for (_, fp), runs in by_kind.items()]
    base = list(labels)
    for i, runs in enumerate(by_kind.values()):
        twins = [j for j, label in enumerate(base) if label == base[i]]
        if len(twins) > 1:  # the same recipe name with other settings: name the settings
            flat = [_flat(_resolved(rs[0].config["config"])) for j, rs in enumerate(by_kind.values()) if j in twins]
            keys = [k for k in sorted(set().union(*flat)) if k.split(".")[0] not in NOT_RECIPE
                    and len({json.dumps(f.get(k)) for f in flat}) > 1][:3]
            values = _flat(_resolved(runs[0].config["config"]))
            labels[i] += " (" + ", ".join(f"{k}={json.dumps(values.get(k))}" for k in keys) + ")"
    return [_flagged(Group(f"{g.name}: {label}", g.path, "folder", runs, len(runs)))
            for label, runs in zip(labels, by_kind.values())]


def _flat(settings: dict, prefix: str = "") -> dict:
    """{"optimizer": {"lr": 0.1}} as {"optimizer.lr": 0.1}: the keys --set takes."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _recipe_key(r: Run) -> str:
    c = _resolved(r.config["config"])
    return json.dumps({k: v for k, v in c.items() if k not in NOT_RECIPE}, sort_keys=True, default=str)


def have_scipy() -> bool:
    """Whether the 'stats' extra (scipy) is installed: intervals and t-tests need it."""
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return False
    return True


STATS_NOTE = ("without scipy, no 95 % intervals, t-tests or verdicts: install them with "
              "pip install 'cnnlab[stats]'")


# Settings that may differ between the runs of one group: where and how fast they ran.
NOT_RECIPE = {"seed", "out", "data", "device", "strict", "eval_batch_size", "compile"}


def _resolved(config: dict) -> dict:
    """A run's settings with every recipe field, those its cnnlab version did not yet record at
    their defaults (a run from before sync_bn existed trained as sync_bn's default says)."""
    try:
        recipe = dataclasses.asdict(build(Recipe, config, "config.json", lenient=True))
    except CnnlabError:  # a config this version cannot read: compare it as it is
        recipe = {}
    return {**config, **recipe}


def _recipe_differences(runs: list[Run]) -> list[str]:
    """The settings (other than the seed and where it ran) in which runs of one group differ."""
    configs = [_resolved(r.config["config"]) for r in runs]
    keys = sorted({k for c in configs for k in c} - NOT_RECIPE)
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def group_result(g: Group, with_ci: bool = True) -> dict:
    done = g.finished
    accs = [float(r.metrics["test_acc"]) for r in done]
    s = stats.summarize(accs, with_ci)
    recipes = sorted({r.recipe for r in done}) or sorted({r.recipe for r in g.runs}) or [g.declared]
    prints = sorted({r.fingerprint for r in done})
    return {"name": g.name, "path": str(g.path), "kind": g.kind, "recipe": ", ".join(recipes),
            "n": s["n"], "planned": g.planned, "mean": s["mean"], "std": s["std"], "ci95": s["ci95"],
            "min": s["min"], "max": s["max"], "accs": accs,
            "seeds": [r.config["config"].get("seed") for r in done],
            "best_val_epochs": [best_val_epoch(r.path / "history.csv") for r in done],
            "train_seconds_mean": _mean([r.metrics.get("train_seconds") for r in done]),
            "fingerprint": prints[0] if len(prints) == 1 else None, "flags": list(g.flags),
            "data": sorted({Path(str(r.config["data"].get("source") or "-")).name for r in (done or g.runs)})}


def compare(groups: list[Group]) -> dict:
    """The comparison as a JSON-ready object: every group, then every group against the first.

    Without scipy: the groups' numbers without intervals, the differences without tests, and
    "scipy": false.
    """
    scipy = have_scipy()
    results = [group_result(g, scipy) for g in groups]
    names = [r["name"] for r in results]
    for r, g in zip(results, groups):  # two folders of the same name: tell them apart by path
        if names.count(r["name"]) > 1:
            r["name"] = str(g.path)
    first = results[0]
    for r in results[1:]:
        if first["fingerprint"] and r["fingerprint"] and r["fingerprint"] != first["fingerprint"]:
            r["flags"].append(f"other data than {first['name']}")
    pairs = []
    for a, b in [(first, r) for r in results[1:]]:
        if scipy:
            test = stats.welch(a["accs"], b["accs"])
        else:  # the difference of the means needs no distribution; its test does
            test = stats.welch([], [])
            test.update(n_a=len(a["accs"]), n_b=len(b["accs"]), diff=_diff(a["accs"], b["accs"]))
        clash = _clash(a, b)
        untested = not scipy and min(test["n_a"], test["n_b"]) >= stats.MIN_N
        pairs.append({"a": a["name"], "b": b["name"], "diff": test["diff"], "ci95": test["ci95"],
                      "p_value": test["p_value"], "t": test["t"], "df": test["df"],
                      "n_a": test["n_a"], "n_b": test["n_b"], "comparable": clash is None,
                      "verdict": clash or ("not tested: " + STATS_NOTE if untested
                                           else stats.verdict(a["name"], b["name"], test))})
    return {"groups": results, "pairs": pairs, "confidence": stats.CONFIDENCE, "alpha": stats.ALPHA,
            "scipy": scipy}


def _diff(a: list[float], b: list[float]) -> float | None:
    return sum(b) / len(b) - sum(a) / len(a) if a and b else None


def _clash(a: dict, b: dict) -> str | None:
    """Why a and b are not like for like (and get no verdict), or None."""
    for r in (a, b):
        if any(f.startswith("mixed data") for f in r["flags"]):
            return f"not compared: {r['name']} mixes runs on different data"
        if any(f.startswith("mixed recipes") for f in r["flags"]):
            return f"not compared: {r['name']} mixes runs of different recipes"
    if a["fingerprint"] and b["fingerprint"] and a["fingerprint"] != b["fingerprint"]:
        return f"not compared: {b['name']} was trained on other data than {a['name']}"
    return None


# ---------------------------------------------------------------- text

def _num(x, fmt=".2f", none="-") -> str:
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _epochs(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if min(values) == max(values):
        return str(values[0])
    return f"{sum(values) / len(values):.1f} ({min(values)}-{max(values)})"


def format_table(result: dict) -> str:
    """The comparison as the text 'cnnlab compare' prints."""
    head = ["group", "recipe/model", "n", "test acc % (mean +- std)", "95 % CI",
            "best val epoch", "train s (mean)", "flags"]
    rows = [head]
    for g in result["groups"]:
        acc = "-" if g["mean"] is None else _num(g["mean"]) + ("" if g["std"] is None else f" +- {_num(g['std'])}")
        ci = "-" if g["ci95"] is None else f"[{_num(g['ci95'][0])}, {_num(g['ci95'][1])}]"
        rows.append([g["name"], g["recipe"], str(g["n"]), acc, ci, _epochs(g["best_val_epochs"]),
                     _num(g["train_seconds_mean"], ".1f"), "; ".join(g["flags"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for p in result["pairs"]:
        diff = "-" if p["diff"] is None else f"{p['diff']:+.2f} points"
        ci = "" if p["ci95"] is None else f", 95 % CI [{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]"
        pv = "" if p["p_value"] is None else f", Welch's t-test p = {p['p_value']:.3g}"
        lines.append(f"{p['b']} vs {p['a']}: {diff}{ci}{pv}: {p['verdict']}")
    if not result.get("scipy", True):
        lines.append(f"note: {STATS_NOTE}")
    small = [g["name"] for g in result["groups"] if g["n"] < stats.MIN_N]
    if small:
        lines.append(f"note: {', '.join(small)} {'has' if len(small) == 1 else 'have'} fewer than "
                     f"{stats.MIN_N} finished runs: nothing can be concluded from "
                     f"{'it' if len(small) == 1 else 'them'}; train more seeds with --seeds")
    return "\n".join(lines)
