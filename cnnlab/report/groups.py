"""The report's section on groups of runs (from 'cnnlab train --seeds'): what 'cnnlab compare' says.

    section = groups_section(["runs/seed-seeds", "runs/seed-bn-seeds"])   # HTML

The same comparison as 'cnnlab compare' (compare.compare: mean, spread, 95 % interval, Welch's
test, verdicts and flags), the groups' overlaid curves (a mean line and a min-max band per
group) and, per group, one row per run. Nothing is evaluated here: only the groups' files
are read.
"""
from __future__ import annotations

import io

from ..runs.compare import compare, load_groups
from ..analysis.compare_plot import plot_groups
from .page import esc, figure, fmt, table


def _interval(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _acc(g: dict) -> str:
    if g["mean"] is None:
        return "-"
    return f"{g['mean']:.2f}" + ("" if g["std"] is None else f" ± {g['std']:.2f}") + " %"


def groups_section(folders) -> str:
    """HTML for the groups in folders (the first is the baseline), with its own heading."""
    groups = [g for f in folders for g in load_groups(f)]
    result = compare(groups)
    rows = [[g["name"], g["recipe"], ", ".join(g["data"]) or "-", f"{g['n']} of {g['planned']}", _acc(g),
             _interval(g["ci95"]), fmt(g["train_seconds_mean"], 1, " s"), "; ".join(g["flags"]) or "-"]
            for g in result["groups"]]
    out = ['<section id="groups"><h2>Groups compared</h2>',
           "<p>Test accuracy over the finished runs of each group, its 95 % confidence interval "
           "(t distribution), and each group against the first (Welch's t-test), as "
           "<code>cnnlab compare</code> prints them.</p>",
           table(["group", "recipe/model", "tested on", "runs", "test accuracy (mean ± std)", "95 % CI",
                  "training time (mean)", "flags"], rows, {3, 4, 5, 6})]
    if result["pairs"]:
        pairs = [[f"{p['b']} vs {p['a']}", "-" if p["diff"] is None else f"{p['diff']:+.2f}",
                  _interval(p["ci95"]), "-" if p["p_value"] is None else f"{p['p_value']:.3g}", p["verdict"]]
                 for p in result["pairs"]]
        out.append(table(["pair", "difference (points)", "95 % CI", "p-value", "verdict"], pairs, {1, 2, 3}))
    png = io.BytesIO()
    plot_groups([(g["name"], [r.history for r in group.finished]) for g, group in zip(result["groups"], groups)], png,
                test_accs=[g["mean"] for g in result["groups"]])
    out.append(figure(png.getvalue(), "validation accuracy and training loss of every group",
                      "Validation accuracy and training loss per epoch: each group's mean line and its "
                      "band from lowest to highest run."))
    for g, group in zip(result["groups"], groups):
        runs = [[r.path.name, str(r.config["config"].get("seed", "-")),
                 fmt(r.metrics["test_acc"], 2, " %") if r.finished else "unfinished",
                 fmt(r.history[-1].get("val_acc") if r.history else None, 2, " %"),
                 str(len(r.history)), fmt(r.metrics.get("train_seconds") if r.finished else None, 1, " s")]
                for r in group.runs]
        out += [f"<h3>{esc(g['name'])}</h3>",
                table(["run", "seed", "test accuracy", "last validation accuracy", "epochs", "training time"],
                      runs, {1, 2, 3, 4, 5})]
    out.append("</section>")
    return "\n".join(out)
