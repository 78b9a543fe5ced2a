"""cnnlab evaluate: reload a run's weights and test them again."""
from __future__ import annotations

import warnings

from ..errors import CnnlabWarning
from .common import data_help


def cmd_evaluate(args) -> int:
    from ..runs import evaluate_run
    result = evaluate_run(args.run_dir, args.data, args.device)
    if not result["same_data"]:
        warnings.warn("this data differs from the data the run was trained on (fingerprint)", CnnlabWarning)
    print(f"Test Accuracy: {result['acc']:.3f} %")
    return 0


def register(sub, parents) -> None:
    e = sub.add_parser("evaluate", parents=parents, help="test accuracy of a saved run",
                       description="Reload a run's weights and print its test accuracy.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    e.add_argument("--data", metavar="PATH",
                   help=data_help("the data the run was trained on, as saved in its config.json"))
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    e.set_defaults(func=cmd_evaluate)
