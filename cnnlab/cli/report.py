"""cnnlab report: one self-contained HTML page about one run, or comparing several."""
from __future__ import annotations

from .common import add_threads, threads_for


def cmd_report(args) -> int:
    from ..report import build_report
    with threads_for(args):
        out = build_report(args.run_dirs, args.out, args.data, args.device)
    print(f"Report written to {out}")
    return 0


def register(sub, parents) -> None:
    r = sub.add_parser("report", parents=parents, help="one self-contained HTML page about runs",
                       description="Write one HTML file about a run: recipe and configuration, "
                       "versions, machine, data and fingerprint, times, the model table, training "
                       "curves, sample images, per-class results, confusion matrix, mistakes and "
                       "calibration (computed when the run has no eval.json). Several runs give a "
                       "comparison page; group folders (cnnlab train --seeds) are compared as 'cnnlab compare' does. Images are inline; the file needs no network and runs no scripts.")
    r.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run folders or group folders written by 'cnnlab train'")
    r.add_argument("--out", default="report.html",
                   help="the HTML file to write; an existing file is replaced only if it is a cnnlab "
                   "report (default: report.html)")
    r.add_argument("--data", metavar="PATH", help="the runs' dataset, when it has moved (default: where "
                   "each run found it)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda, for evaluations computed here (default: auto)")
    add_threads(r)
    r.set_defaults(func=cmd_report)
