"""cnnlab train: train a model into a run folder (or continue one), then test it."""
from __future__ import annotations

import argparse

from ..errors import CnnlabError
from .common import DATA_HELP, positive_float, positive_int, say, val_size

RECIPE_FLAGS = ["model", "epochs", "batch_size", "lr", "seed", "val_size", "device", "data", "max_steps",
                "eval_batch_size", "channels_last", "compile", "precision", "strict"]


def cmd_train(args) -> int:
    from ..runs import resume_train, run_train
    from ..train import TrainConfig
    given = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    log = say
    if args.resume:
        if args.out is not None:
            raise CnnlabError("--resume continues a run in its own folder: drop --out")
        resume_train(args.resume, given, log=log)
    else:
        run_train(TrainConfig(**given, out=args.out), log=log)
    return 0


def register(sub, parents) -> None:
    t = sub.add_parser("train", parents=parents, help="train a model, test it, and save a run folder",
                       description="Train a model with Adam and cross-entropy, print the loss and "
                       "validation accuracy after every epoch and the test accuracy at the end, "
                       "and save config, history, curves, metrics and weights in a run folder.")
    # Recipe flags default to None so that --resume can tell which were given again.
    t.add_argument("--data", metavar="PATH", help=DATA_HELP)
    t.add_argument("--model", help="model name, see 'cnnlab models' (default: seed)")
    t.add_argument("--epochs", type=positive_int, help="passes over the training split (default: 20)")
    t.add_argument("--batch-size", type=positive_int, help="images per optimizer step (default: 128)")
    t.add_argument("--lr", type=positive_float, help="Adam learning rate (default: 1e-3)")
    t.add_argument("--seed", type=int, help="seed for initialization, split and batch order (default: 0)")
    t.add_argument("--val-size", type=val_size, metavar="N|P%",
                   help="training images held out for validation: a count (5000) or a percentage of the "
                   "training split (10%%); 0 validates nothing (default: 10%%, which is 5000 on CIFAR-10)")
    t.add_argument("--device", help="auto (CUDA when present), cpu or cuda (default: auto)")
    t.add_argument("--out", metavar="DIR", help="run folder, must be new or empty (default: runs/<date-time>-<model>)")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint, exactly as if it had "
                   "not stopped; --device and --data may be given, --precision switches the run's arithmetic "
                   "(recorded), other settings must match the run's")
    t.add_argument("--max-steps", type=positive_int,
                   help="end the run after this many optimizer steps in all, then test and save as usual: "
                   "a quick check that a setup works end to end (default: no limit)")
    t.add_argument("--eval-batch-size", type=positive_int,
                   help="images per batch when evaluating (default: 1000)")
    t.add_argument("--strict", action="store_true", default=None,
                   help="fail on unreadable image files instead of skipping them with a warning")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout for the model and batches (default: on)")
    t.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (pays off on CUDA)")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="arithmetic of the training step: auto is bf16 autocast where the hardware "
                   "does bf16 natively (CUDA, CPUs with AMX) and fp32 elsewhere; evaluation is always "
                   "fp32 (default: auto)")
    t.set_defaults(func=cmd_train)
