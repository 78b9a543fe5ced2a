"""cnnlab recipes: the shipped recipes, what each targets and what it measured."""
from __future__ import annotations

import json


def _measured(m: dict | None) -> str:
    if m is None:
        return "not measured yet"
    text = f"{m['mean']:.2f} %"
    if m.get("std") is not None:
        text += f" +- {m['std']:.2f}"
    if m.get("n"):
        text += f" (n={m['n']})"
    if m.get("seconds") is not None:
        text += f", {m['seconds']:.0f} s"
    if m.get("machine"):
        text += f", {m['machine']}"
    return text


def cmd_recipes(args) -> int:
    from ..recipes import shipped
    entries = shipped()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    width = max(len("recipe"), *(len(e["name"]) for e in entries)) + 2
    mwidth = max(len("model"), *(len(e["model"]) for e in entries)) + 2
    print(f"{'recipe':<{width}}{'model':<{mwidth}}{'epochs':>6}  {'target':>7}  measured test accuracy")
    for e in entries:
        target = f"{e['target_acc']:.1f} %" if e["target_acc"] is not None else "-"
        print(f"{e['name']:<{width}}{e['model']:<{mwidth}}{e['epochs']:>6}  {target:>7}  {_measured(e['measured'])}")
        if args.verbose and e["description"]:
            print(f"{'':<{width}}{e['description']}")
    print("train one with: cnnlab train --recipe NAME (flags and --set KEY=VALUE override its values)")
    return 0


def register(sub, parents) -> None:
    r = sub.add_parser("recipes", parents=parents, help="list the shipped training recipes",
                       description="List the shipped recipes: model, epochs, the test accuracy each "
                       "targets and its measured result (mean +- std over seeds, seconds, machine).")
    r.add_argument("--json", action="store_true", help="machine-readable output (a list of objects)")
    r.add_argument("-v", "--verbose", action="store_true", help="also say what each recipe adds")
    r.set_defaults(func=cmd_recipes)
