"""cnnlab evaluate: reload a run's weights, test them again, and say what the model learned."""
from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import CnnlabWarning
from .common import add_threads, add_tta, data_help, threads_for


def cmd_evaluate(args) -> int:
    from ..report.evaluation import FIGURES, draw, summarize, write_eval
    from ..runs import evaluate_run
    with threads_for(args):
        out = evaluate_run(args.run_dir, args.data, args.device, args.tta)
    if not out["same_data"]:
        warnings.warn("this data differs from the data the run was trained on (fingerprint)", CnnlabWarning)
    if not (Path(args.run_dir) / "model.safetensors").is_file():  # an unfinished run: say which weights
        print(f"Weights: {out['config']['weights']}")
    print(f"Test Accuracy: {out['acc']:.3f} %")
    summary = summarize(out)
    width = max(len("class"), *(len(c) for c in summary["classes"]))
    print(f"Mean loss: {summary['mean_loss']:.4f} | Expected calibration error: {100 * summary['ece']:.2f} %"
          + (f" | test-time augmentation: {out['tta']}" if out["tta"] != "none" else ""))
    print(f"{'class':<{width}}  {'accuracy':>8}  {'precision':>9}  {'recall':>7}  {'images':>6}")
    for row in summary["per_class"]:
        print(f"{row['class']:<{width}}  {_pct(row['accuracy']):>8}  {_pct(row['precision']):>9}  "
              f"{_pct(row['recall']):>7}  {row['support']:>6}")
    if summary["most_confused"]:
        pairs = ", ".join(f"{p['true']} -> {p['predicted']} ({p['count']})" for p in summary["most_confused"][:5])
        print(f"Most confused (true -> predicted): {pairs}")
    if args.no_save:
        return 0
    write_eval(args.run_dir, summary, draw(out, summary))
    print(f"Saved eval.json, {', '.join(FIGURES)} in {args.run_dir}")
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f} %"


def register(sub, parents) -> None:
    e = sub.add_parser("evaluate", parents=parents, help="test a saved run: accuracy, per class, confusion, calibration",
                       description="Reload a run's weights and print its test accuracy (the number "
                       "training printed), then per-class accuracy, precision and recall, the most "
                       "confused pairs, mean loss and expected calibration error. Writes eval.json, "
                       "confusion.png, mistakes.png and calibration.png into the run folder (replacing "
                       "only earlier files of cnnlab's own).")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    e.add_argument("--data", metavar="PATH",
                   help=data_help("the data the run was trained on, as saved in its config.json"))
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_tta(e)
    add_threads(e)
    e.add_argument("--no-save", action="store_true", help="print only; write no files into the run folder")
    e.set_defaults(func=cmd_evaluate)
