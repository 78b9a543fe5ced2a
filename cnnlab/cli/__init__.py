"""The cnnlab command line: parses flags, builds configs, calls library functions, prints.

    cnnlab train [--recipe NAME] [--data PATH] [--epochs 20] ...  train and test, write a run folder
    cnnlab train --seeds 0-4                                       the same, once per seed, into a group folder
    cnnlab recipes [--json]                                        the shipped training recipes
    cnnlab evaluate RUN_DIR                                        test accuracy, per class, confusion, calibration
    cnnlab predict RUN_DIR IMAGE_OR_FOLDER...                      top classes of your own images
    cnnlab inspect RUN_DIR [IMAGE...]                              filters, feature maps, Grad-CAM
    cnnlab report RUN_DIR [RUN_DIR...]                             one self-contained HTML page
    cnnlab export RUN_DIR [--out FILE]                             ONNX file for onnxruntime, checked
    cnnlab compare GROUP_A GROUP_B                                 mean, 95 % CI, Welch's t-test per group
    cnnlab data info | data show                                   what the dataset holds, a sample grid
    cnnlab models                                                  registered models
    cnnlab shape 1,1,32,32 "conv(1,k=7,p=same)"                    conv/pool output-size arithmetic
    cnnlab summary --model seed                                    per-layer shapes, params, formulae

One module per group of commands; each has register(sub, parents), which adds its parsers,
and cmd_* functions that call the library. Nothing here imports torch until a command runs.
User mistakes end with one 'cnnlab: error: ...' line and exit status 2; --debug adds the traceback
(the status stays 2). A flag a command does not know names that command's --help and the
closest flag it has. 'cnnlab' alone prints the help.
A reader that goes away (cnnlab summary --json | head) ends any command quietly, with status 0.
"""
from __future__ import annotations

import argparse
import atexit
import difflib
import gc
import os
import sys
import threading
import traceback
import warnings

from .. import __version__, files
from ..errors import CnnlabError, CnnlabWarning
from . import compare, data, evaluate, export, inspect, network, predict, recipes, report, train

COMMANDS = [train, recipes, evaluate, predict, inspect, report, compare, export, data, network]  # each module's register() adds its subcommands, in this order


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the flags is one line that points to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="cnnlab", description="Teach and train convolutional neural "
                                "networks on CIFAR-10 and image-folder datasets.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    p.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    # --debug also after the command; SUPPRESS keeps a subcommand from resetting it to False.
    debug = Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks for errors")
    # Not required: 'cnnlab' alone prints this help (see _main).
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        module.register(sub, [debug])
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message) if issubclass(category, CnnlabWarning) else f"{category.__name__}: {message}"
    print(f"cnnlab: warning: {text}", file=sys.stderr)


def _reader_gone() -> int:
    """stdout's reader went away (cnnlab shape ... | head -2): end quietly, like cat or ls.

    Further writes, including the interpreter's last flush, go to /dev/null.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def tune_openmp() -> None:
    """OpenMP's threads in this process (and the ones it starts) sleep at a barrier at once instead
    of spinning first, unless the user chose: a spinning thread takes the core from the one it waits
    for whenever another program shares the machine, and two threads beside a busy program trained
    several times slower than one (docs/speed.md, "Threads and a busy machine"). The runtime reads
    it once, when torch loads it: a process that imported torch keeps its own."""
    from ..training.threads import WAIT_SETTINGS  # the user's own choice of how they wait, left as it is
    if "torch" not in sys.modules and not any(k in os.environ for k in WAIT_SETTINGS):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def run() -> None:
    """The `cnnlab` command and `python -m cnnlab`: main() in a process of its own, then exit.
    Only here may `cnnlab train` fork its helper process (cnnlab/helper.py)."""
    from .. import helper
    helper.allow()
    code = main()
    # Nothing is used again: the last garbage collection of the interpreter's exit can skip
    # every object (torch's thousands of modules among them). It took 0.3 of its 0.4 s.
    gc.freeze()
    leave(code)


def leave(code: int) -> None:
    """End the process with code. Where no other thread would keep it alive (daemon threads, such
    as tqdm's monitor, end with it either way): the atexit functions run and the standard streams
    are flushed, as at any exit, and then the process ends without tearing down the interpreter's
    modules and objects one by one (after `cnnlab train`, 0.19 s of a normal exit; 0.09 s this
    way). Otherwise, or where a stream cannot be flushed, a normal exit."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if isinstance(code, int) and not others:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the normal exit reports it as it would have
            raise SystemExit(code) from None
        os._exit(code)
    raise SystemExit(code)


def main(argv=None) -> int:
    tune_openmp()
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a reader that left shows up here, not at the interpreter's exit
    except BrokenPipeError:
        return _reader_gone()


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub)command that was given: cnnlab train, cnnlab data show, ..."""
    current = parser
    for dest in ("command", "data_command"):
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, dest, None)
        if not subs or name not in subs[0].choices:
            break
        current = subs[0].choices[name]
    return current


def unknown_flags(parser: argparse.ArgumentParser, args, extra: list[str]) -> str:
    """One line for arguments no parser took: the subcommand's help to read, a flag it may have meant."""
    command = _command_parser(parser, args)
    known = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for token in extra:
        if token.startswith("--"):
            close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                hints.append(f"did you mean {close[0]} instead of {token.split('=', 1)[0]}?")
    hint = f"; {' '.join(hints)}" if hints else ""
    return (f"{command.prog}: error: unrecognized arguments: {' '.join(extra)}{hint} "
            f"(see '{command.prog} --help')\n")


def _main(argv) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # --help and --version print here
    if extra:
        parser.exit(2, unknown_flags(parser, args, extra))
    if args.command is None:  # 'cnnlab' alone (or 'cnnlab --debug'): what it can do
        parser.print_help()
        return 0
    args.argv = list(sys.argv[1:] if argv is None else argv)  # cnnlab train --nproc starts it again
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except CnnlabError as e:
        if args.debug:  # the traceback, and still the status of a user's mistake
            traceback.print_exc()
        elif str(e):  # an empty one follows another process's line (cnnlab.training.distributed.Follow)
            print(f"cnnlab: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)
    except OSError as e:
        # Any command's file that could not be written (full or read-only disk, no permission,
        # a missing folder): one line that names the disk and folder, never a traceback.
        if isinstance(e, BrokenPipeError) or e.errno not in files.USER_FIXABLE or not e.filename:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"cnnlab: error: {files.describe_write_error(e, e.filename)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
