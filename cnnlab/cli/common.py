"""What every command module shares: argument types, the data flag's help, printing."""
from __future__ import annotations

import argparse
import os
import sys

DATA_DEFAULT = "$CNNLAB_DATA, ./data, ../shared/datasets/cifar10-jpeg, else download CIFAR-10"


def data_help(default: str = DATA_DEFAULT) -> str:
    """The --data help, with one default (evaluate's is the run's own data)."""
    return ("dataset: an image folder with train/<class>/ and test/<class>/, the CIFAR-10 "
            f"python archive, or its cifar-10-batches-py/ folder (default: {default})")


DATA_HELP = data_help()


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


def val_size(text: str) -> int | str:
    """--val-size: a count of images (5000) or a percentage of the training split (10%)."""
    from ..data.dataset import parse_val_size  # noqa: PLC0415 - the CLI imports the library lazily
    from ..errors import CnnlabError
    try:
        value = parse_val_size(text)
    except CnnlabError:
        raise argparse.ArgumentTypeError(f"expected a count of images (e.g. 5000) or a percentage "
                                         f"below 100 (e.g. 10%), got {text!r}") from None
    return value if isinstance(value, int) else text.strip().replace(" ", "")


THREADS_HELP = ("CPU threads (default: OMP_NUM_THREADS when set, else one per core; they sleep while they wait "
                "for each other, so they hold up beside other programs)")


def add_threads(parser) -> None:
    """--threads N for a command that runs a model (evaluate, predict, ...)."""
    parser.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP)


def threads_for(args):
    """The context a command runs its model in: --threads N, else the default count."""
    from ..training.threads import choose, using  # noqa: PLC0415 - the CLI imports the library lazily
    return using(choose(getattr(args, "threads", None))["threads"])


TTA_MODES = ("none", "flip", "flip-shift")  # as cnnlab.analysis.evaluate.TTA_MODES, without importing torch
TTA_HELP = ("test-time augmentation: none, flip (average with the mirror image) or flip-shift "
            "(also the images shifted by one pixel); --tta alone means flip (default: the run's recipe's, "
            "none for most, so the number is the one training printed)")


def tta_mode(text: str) -> str:
    """--tta MODE, the same for evaluate and predict."""
    if text not in TTA_MODES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(TTA_MODES)}, got {text!r} (write "
                                         f"'--tta flip', or --tta alone at the end of the line)")
    return text


def add_tta(parser) -> None:
    """--tta [MODE]: a mode, or flip when given alone."""
    parser.add_argument("--tta", nargs="?", const="flip", default=None, type=tta_mode,
                        metavar="MODE", help=TTA_HELP)


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
