"""cnnlab compare: groups of runs side by side, with spread, intervals and Welch's t-test."""
from __future__ import annotations

import json

from ..errors import CnnlabError
from .common import say


def cmd_compare(args) -> int:
    from pathlib import Path

    from ..runs.compare import compare, format_table, load_groups
    if args.out is not None and Path(args.out).exists():
        raise CnnlabError(f"--out {args.out} already exists: choose a new file name so nothing is overwritten")
    if args.out is not None:
        from ..analysis.plots import image_format
        image_format(args.out)  # before any run is read
    groups = [g for path in args.folders for g in load_groups(path)]
    result = compare(groups)
    if args.out is not None:
        from ..analysis.compare_plot import plot_groups
        try:
            plot_groups([(g["name"], [r.history for r in group.finished])
                         for g, group in zip(result["groups"], groups)], args.out,
                        title="Compared: " + " vs ".join(g["name"] for g in result["groups"]),
                        test_accs=[g["mean"] for g in result["groups"]])
        except OSError as e:
            raise CnnlabError(f"cannot write {args.out} ({e.strerror}): choose another --out") from None
    if args.json:
        say(json.dumps(result, indent=2))
    else:
        say(format_table(result))
        if args.out is not None:
            say(f"Curves saved in {args.out}")
    return 0


def register(sub, parents) -> None:
    c = sub.add_parser("compare", parents=parents, help="compare runs or groups of seeds (mean, CI, t-test)",
                       description="Compare run folders and group folders (from 'cnnlab train --seeds'): "
                       "test accuracy mean +- std, 95 % t-interval, best validation epoch and training "
                       "time per group, then each group against the first: the difference with its 95 % "
                       "interval, Welch's t-test and a verdict in plain words. Unfinished runs, runs on "
                       "other data and mixed groups are flagged; a folder of runs of different recipes or "
                       "data (runs/) is compared as one group per recipe and data, never pooled. Intervals, "
                       "t-tests and verdicts need scipy (pip install 'cnnlab[stats]'); without it the table "
                       "is printed without them. "
                       "Exit status 0 when the comparison is printed (flags included), 2 when a folder "
                       "cannot be read as a run or a group.")
    c.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="a run folder, a group folder, or a folder of run folders; the first is the baseline")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    c.add_argument("--out", metavar="FILE", help="also draw the groups' curves (validation accuracy, "
                   "training loss: mean and min-max band) into this new file, in the format its name "
                   "ends with: .png, .jpg, .svg or .pdf")
    c.set_defaults(func=cmd_compare)
