"""The cnnlab command line: parses flags, builds configs, calls library functions, prints.

    cnnlab train [--data PATH] [--model seed] [--epochs 20] ...   train and test, write a run folder
    cnnlab evaluate RUN_DIR                                        test accuracy of a saved run
    cnnlab data info | data show                                   what the dataset holds, a sample grid
    cnnlab models                                                  registered models
    cnnlab shape 1,1,32,32 "conv(1,k=7,p=same)"                    conv/pool output-size arithmetic
    cnnlab summary --model seed                                    per-layer shapes, params, formulae

User mistakes end with one 'cnnlab: error: ...' line and exit status 2; --debug shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import CnnlabError, CnnlabWarning

DATA_HELP = ("dataset: an image folder with train/<class>/ and test/<class>/, the CIFAR-10 "
             "python archive, or its cifar-10-batches-py/ folder (default: $CNNLAB_DATA, ./data, "
             "../shared/datasets/cifar10-jpeg, else download CIFAR-10)")


def int_at_least(minimum: int):
    """An argparse type for integers >= minimum, with a message that says so."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value
    return parse


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ---------------------------------------------------------------- commands

def say(line: str) -> None:
    """Print a line now; if the reader has gone (cnnlab train | head), keep training quietly."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


RECIPE_FLAGS = ["model", "epochs", "batch_size", "lr", "seed", "val_size", "device", "data", "max_steps",
                "eval_batch_size", "channels_last", "compile", "precision", "strict"]


def cmd_train(args) -> int:
    from .runs import resume_train, run_train
    from .train import TrainConfig
    given = {k: getattr(args, k) for k in RECIPE_FLAGS if getattr(args, k) is not None}
    log = say
    if args.resume:
        if args.out is not None:
            raise CnnlabError("--resume continues a run in its own folder: drop --out")
        resume_train(args.resume, given, log=log)
    else:
        run_train(TrainConfig(**given, out=args.out), log=log)
    return 0


def cmd_evaluate(args) -> int:
    from .runs import evaluate_run
    result = evaluate_run(args.run_dir, args.data, args.device)
    if not result["same_data"]:
        warnings.warn("this data differs from the data the run was trained on (fingerprint)", CnnlabWarning)
    print(f"Test Accuracy: {result['acc']:.3f} %")
    return 0


def cmd_models(args) -> int:
    from .models import MODELS, count_params, create
    rows = [(name, count_params(create(name)), (MODELS[name].__doc__ or "").strip()) for name in MODELS]
    if args.json:
        print(json.dumps([{"name": n, "params": p, "description": d} for n, p, d in rows], indent=2))
        return 0
    print(f"{'model':<10}{'params':>9}  description (params for CIFAR-10: 3x32x32 in, 10 classes)")
    for name, params, description in rows:
        print(f"{name:<10}{params:>9,}  {description}")
    return 0


def cmd_data_info(args) -> int:
    from . import data as data_mod
    d = data_mod.load(args.data, strict=args.strict)
    counts = {split: [int((y == c).sum()) for c in range(len(d.classes))]
              for split, y in (("train", d.train_y), ("test", d.test_y))}
    if args.json:
        print(json.dumps({"source": d.source, "cache": d.cache_path, "fingerprint": d.fingerprint,
                          "image_shape": list(d.train_x.shape[1:]), "classes": d.classes,
                          "counts": counts}, indent=2))
        return 0
    print(f"source:      {d.source}")
    print(f"cache:       {d.cache_path}")
    print(f"fingerprint: {d.fingerprint[:16]}")
    print(f"images:      {len(d.train_y)} train, {len(d.test_y)} test, "
          f"{'x'.join(map(str, d.train_x.shape[1:]))} uint8")
    print(f"{'class':<14}{'train':>8}{'test':>8}")
    for c, name in enumerate(d.classes):
        print(f"{name:<14}{counts['train'][c]:>8}{counts['test'][c]:>8}")
    return 0


def cmd_data_show(args) -> int:
    from . import data as data_mod
    from .plots import sample_grid
    if Path(args.out).exists():
        raise CnnlabError(f"{args.out} already exists: choose another --out or delete it first")
    d = data_mod.load(args.data, strict=args.strict)
    x, y = (d.train_x, d.train_y) if args.split == "train" else (d.test_x, d.test_y)
    out = sample_grid(x.numpy(), y.numpy(), d.classes, args.out, args.per_class, args.seed)
    print(f"Wrote {out} ({args.per_class} {args.split} images per class, {len(d.classes)} classes)")
    return 0


SHAPE_EPILOG = """layers (name or name(args); args by position or key=value):
  conv(OUT, k=K, s=1, p=0|same|valid, d=1)   convolution; K, s, p, d take N or HxW
  maxpool(K, s=K, p=0, d=1, ceil=false)      max pooling (stride defaults to the kernel)
  avgpool(K, s=K, p=0, ceil=false)           average pooling
  linear(OUT)                                fully connected (needs flatten before it)
  flatten   dropout(P)   batchnorm
  relu gelu silu elu leakyrelu sigmoid tanh softmax identity
aliases: conv2d, maxpool2d, avgpool2d, fc, dense, bn; keys may be spelled out
(kernel=, stride=, padding=, dilation=, out_channels=).

examples:
  cnnlab shape 1,1,32,32 "conv(out=1,k=7,s=1,p=same)" --explain
  cnnlab shape 128,3,32,32 "conv(16,k=3,p=same)" relu "maxpool(2)" "conv(32,k=3,p=1)" relu \\
      "maxpool(2)" flatten "linear(10)"
output size of conv and pool: floor((N + 2P - d(K-1) - 1)/S) + 1 (pool with ceil=true: ceil)"""


def cmd_shape(args) -> int:
    from .layers import parse_layer, parse_shape, render, totals, trace
    shape = parse_shape(args.input)
    rows = trace(shape, [parse_layer(t) for t in args.layers])
    if args.json:
        print(json.dumps({"input": shape, "layers": [r.to_dict() for r in rows], **totals(rows)}, indent=2))
    else:
        print(render(rows, shape, explain=args.explain))
    return 0


def cmd_summary(args) -> int:
    from . import models
    from .layers import parse_shape, render, totals
    from .summary import compare, summarize
    chw = parse_shape(args.input)[1:]
    if args.compare:
        a, b = args.compare
        models.create(a), models.create(b)  # clear errors for unknown names
        result = compare(a, b, chw)
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        for name in (a, b):
            print(f"{name}:")
            model = models.create(name, image_size=tuple(chw[1:]), in_channels=chw[0])
            print(render(summarize(model, chw), [1, *chw]))
            print()
        same = result["same_shapes"] and result["same_params"] and result["max_abs_diff"] == 0
        print(f"layer shapes identical: {result['same_shapes']}; parameter counts identical: "
              f"{result['same_params']} ({result['params'][0]:,} vs {result['params'][1]:,})")
        if result["max_abs_diff"] is not None:
            print(f"same initial weights, random input: max |output difference| = {result['max_abs_diff']:g}")
        print(f"verdict: {a} and {b} are {'the same network' if same else 'different networks'}")
        return 0
    model = models.create(args.model, image_size=tuple(chw[1:]), in_channels=chw[0])
    rows = summarize(model, chw)
    if args.json:
        print(json.dumps({"model": args.model, "input": [1, *chw], "layers": [r.to_dict() for r in rows],
                          **totals(rows)}, indent=2))
    else:
        print(f"{args.model} on input {[1, *chw]}")
        print(render(rows, [1, *chw]))
        if getattr(model, "summary_note", ""):
            print(model.summary_note)
    return 0


# ---------------------------------------------------------------- parser

class Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the flags is one line that points to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cnnlab", description="Teach and train convolutional neural "
                                "networks on CIFAR-10 and image-folder datasets.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    # --debug also after the command; SUPPRESS keeps a subcommand from resetting it to False.
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", parents=[debug], help="train a model, test it, and save a run folder",
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
    t.add_argument("--val-size", type=non_negative_int,
                   help="training images held out for validation (default: 5000)")
    t.add_argument("--device", help="auto (CUDA when present), cpu or cuda (default: auto)")
    t.add_argument("--out", metavar="DIR", help="run folder, must be new or empty (default: runs/<date-time>-<model>)")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint, exactly as if it had "
                   "not stopped; --device and --data may be given, other settings must match the run's")
    t.add_argument("--max-steps", type=positive_int, help="stop after this many optimizer steps (quick checks)")
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

    e = sub.add_parser("evaluate", parents=[debug], help="test accuracy of a saved run",
                       description="Reload a run's weights and print its test accuracy.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'cnnlab train'")
    e.add_argument("--data", metavar="PATH", help=DATA_HELP + "; default: the run's own data")
    e.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("data", parents=[debug], help="inspect the dataset (info, show)",
                       description="Inspect the dataset: counts per class, source and cache, sample images.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    di = dsub.add_parser("info", parents=[debug], help="images per split and class, source, cache",
                         description="Print images per split and class, where they came from and where the cache is.")
    di.add_argument("--data", metavar="PATH", help=DATA_HELP)
    di.add_argument("--json", action="store_true", help="machine-readable output")
    di.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    di.set_defaults(func=cmd_data_info)
    ds = dsub.add_parser("show", parents=[debug], help="save a grid of sample images per class",
                         description="Save a PNG grid with one labelled row of sample images per class.")
    ds.add_argument("--data", metavar="PATH", help=DATA_HELP)
    ds.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    ds.add_argument("--per-class", type=positive_int, default=10, help="images per class (default: 10)")
    ds.add_argument("--split", choices=["train", "test"], default="train", help="which split (default: train)")
    ds.add_argument("--seed", type=int, default=0, help="which random images (default: 0)")
    ds.add_argument("--out", metavar="FILE", default="samples.png", help="PNG file to write (default: samples.png)")
    ds.set_defaults(func=cmd_data_show)

    m = sub.add_parser("models", parents=[debug], help="list registered models with parameter counts",
                       description="List the registered models with their parameter counts on CIFAR-10.")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_models)

    sh = sub.add_parser("shape", parents=[debug], help="output shapes of a chain of layers, with the arithmetic",
                        description="Compute the output shape of each layer from the input shape, "
                        "with the size formula filled in and the padding solved for p=same.",
                        epilog=SHAPE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sh.add_argument("input", metavar="INPUT", help="input shape N,C,H,W (e.g. 1,3,32,32)")
    sh.add_argument("layers", metavar="LAYER", nargs="+", help="layers in order (see below)")
    sh.add_argument("--explain", action="store_true", help="show the worked solution for P where p=same")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.set_defaults(func=cmd_shape)

    su = sub.add_parser("summary", parents=[debug], help="per-layer shapes, parameters, MACs and receptive field of a model",
                        description="Show, for each layer of a registered model, its output shape, "
                        "parameters, multiply-adds, receptive field and the size arithmetic.")
    su.add_argument("--model", default="seed", help="model name, see 'cnnlab models' (default: seed)")
    su.add_argument("--input", default="3,32,32", help="input shape C,H,W (default: 3,32,32)")
    su.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="show whether two models are the same network (e.g. seed seed-p1)")
    su.add_argument("--json", action="store_true", help="machine-readable output")
    su.set_defaults(func=cmd_summary)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message) if issubclass(category, CnnlabWarning) else f"{category.__name__}: {message}"
    print(f"cnnlab: warning: {text}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except CnnlabError as e:
        if args.debug:
            raise
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
