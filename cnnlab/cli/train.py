"""cnnlab train: train a model into a run folder (or continue one), then test it."""
from __future__ import annotations

import argparse
import os
import warnings

from ..errors import CnnlabError, CnnlabWarning
from ..text import plural
from .common import DATA_HELP, THREADS_HELP, positive_float, positive_int, say, val_size

# Flags that set one recipe field (dotted key) and flags of the run itself.
RECIPE_FLAGS = {"model": "model", "epochs": "epochs", "batch_size": "batch_size", "lr": "optimizer.lr",
                "val_size": "val_size", "image_size": "image_size", "resize": "resize", "keep": "keep",
                "patience": "patience"}
RUN_FLAGS = ["seed", "device", "data", "max_steps", "eval_batch_size", "channels_last", "compile", "precision",
             "strict", "tensorboard", "threads"]


def overrides(args) -> dict:
    """The settings given on the command line, by dotted key: flags, then --set KEY=VALUE."""
    from ..recipes import parse_value
    given = {key: getattr(args, flag) for flag, key in RECIPE_FLAGS.items() if getattr(args, flag) is not None}
    given.update({k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None})
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CnnlabError(f"--set {item!r}: write it as KEY=VALUE, e.g. --set optimizer.momentum=0.8")
        given[key.strip()] = parse_value(value.strip())
    return given


def tune_this_process() -> None:
    """What only the cnnlab command's own process may change, for its speed: glibc's malloc
    (training/allocator.py) and torch.optim's dynamo shortcut (training/optim.py). A library
    call (cnnlab.train in a notebook) never does either."""
    from ..training import allocator, optim
    allocator.reuse_step_buffers()  # before the data: their copies, the whitening and tests too
    optim.allow_skipping_dynamo_import()


def cmd_train(args) -> int:
    given = overrides(args)
    start_helper(args, given)  # before torch is imported
    from ..training import distributed
    from ..runs import resume_train, run_train
    tune_this_process()
    log = say
    group = args.seeds is not None or (args.resume and _is_group(args.resume))
    if args.nproc is not None or distributed.launched():
        if distributed.launched() and args.nproc is not None:
            raise CnnlabError("--nproc starts its own processes: under torchrun drop it "
                              "(torchrun's --nproc-per-node says how many)")
        if group:
            raise CnnlabError("--seeds trains one run after another in one process: drop --nproc (or run "
                              "'cnnlab train --seed N --nproc ...' once per seed)")
    if args.nproc is not None and args.nproc > 1:
        return _launch(args, given)
    if group:
        return _train_group(args, given, log)
    if args.resume:
        if args.out is not None:
            raise CnnlabError("--resume continues a run in its own folder: drop --out")
        if args.recipe is not None:
            raise CnnlabError("--resume continues a run with the recipe in its config.json: drop --recipe")
    device = _device_name(args, given)
    with distributed.session(pick_device(device), args.dist_backend or "auto"):
        try:
            if args.resume:
                resume_train(args.resume, given, log=log)
            else:
                run_train(new_config(args, given), log=log)
        except RuntimeError as e:  # a collective failed outside training: another process is gone
            lost = distributed.peer_lost(e, args.resume or "RUN_DIR")
            if lost is None:
                raise
            raise lost from None
    return 0


def start_helper(args, given: dict) -> None:
    """The command's helper process (cnnlab/helper.py), forked before torch is imported: it
    computes a new run's data key while this process imports torch, builds the compiled kernels
    where this machine has none yet, then imports matplotlib, so the run's curves are drawn there
    without waiting for it. Not under --nproc or torchrun:
    there each process would start one for a chore only the first does."""
    if args.nproc is not None or ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return
    from .. import helper
    if not helper.start(warm=["cnnlab.analysis.plots"]):
        return
    if not args.resume and args.seeds is None:
        _submit_key(args, given)
    # the compiled kernels (network/kernels), where this machine has no build of them yet: after the
    # key, which the command waits for first
    helper.submit_as("kernels", "cnnlab.network.kernels.build:prebuild")


def _submit_key(args, given: dict) -> None:
    from .. import helper
    from ..recipes import load_recipe
    try:  # the key is only a head start: a mistake in the recipe is reported later, as without it
        recipe = load_recipe(args.recipe or "seed")
    except CnnlabError:
        return
    data, size, resize = given.get("data"), given.get("image_size", recipe.image_size), given.get("resize", recipe.resize)
    if (data is None or isinstance(data, str)) and isinstance(size, int) and isinstance(resize, str):
        helper.submit_as("data-key", "cnnlab.data.sources:key_request", data, size, resize)


def _device_name(args, given: dict) -> str:
    """The device the run trains on, as given, or as the run being resumed says."""
    if "device" in given:
        return given["device"]
    if args.resume:
        from ..runs import read_config
        return read_config(args.resume)["config"].get("device", "auto")
    return "auto"


def pick_device(name: str):
    from ..training.loop import pick_device as pick
    return pick(name)


def _launch(args, given: dict) -> int:
    """--nproc N: check what can be checked here (one line, once), then start N processes."""
    from ..training.launch import launch, strip_flag
    from ..training.distributed import pick_backend
    from ..training import selection
    argv, run_dir = strip_flag(args.argv, "--nproc"), args.resume
    if args.resume:
        from ..runs import read_config
        from ..runs.fit import refuse_changes
        from ..runs.stopping import extension
        from ..training.loop import TrainConfig
        config = read_config(args.resume)
        extension(config, given.get("epochs"))  # more epochs extend the run; fewer are refused
        cfg = TrainConfig.from_dict(config["config"])
        refuse_changes(cfg, {k: v for k, v in given.items() if k not in ("precision", "epochs")}, "run")
    else:
        cfg = new_config(args, given).validate()
        from ..network import models
        models.create(cfg.model, image_size=cfg.image_size)  # an input too small for it: refused here
        if cfg.out is None:  # the workers train into the folder named here, so every hint can name it
            from ..runs.folder import plan_run_dir
            argv += ["--out", str(plan_run_dir(None, cfg.model))]
        run_dir = argv[-1] if cfg.out is None else cfg.out
    if selection.active(cfg.select):  # said once, here, not once per process
        raise CnnlabError(selection.ONE_PROCESS)
    device = pick_device(_device_name(args, given))
    pick_backend(args.dist_backend or "auto", device)
    if device.type == "cpu":
        check_cores(args.nproc, usable_cores())
    return launch(args.nproc, argv, run_dir)


# More CPU processes than this many per core only wait on each other (and on the machine's other users).
MAX_PROCS_PER_CORE = 4


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_cores(nproc: int, cores: int) -> None:
    """--nproc on the CPU: a warning above the core count, a refusal far above it."""
    if nproc > MAX_PROCS_PER_CORE * cores:
        raise CnnlabError(f"--nproc {nproc} starts {nproc} training processes on {plural(cores, 'CPU core')}: "
                          f"use at most --nproc {cores} (one process per core)")
    if nproc > cores:
        warnings.warn(f"--nproc {nproc} is more processes than this machine's {plural(cores, 'CPU core')}: "
                      f"they share the cores and train slower than --nproc {cores} would", CnnlabWarning)


def new_config(args, given: dict):
    """The recipe (--recipe, default seed) with the command line's settings over it, checked as
    cnnlab.train checks its settings (cnnlab.runs.settings), its description marked as the
    shipped recipe's where the command line changed the recipe."""
    from ..runs.settings import resolve
    return resolve(args.recipe, given, out=args.out)


def _is_group(path) -> bool:
    from ..runs.group import is_group
    return is_group(path)


def _train_group(args, given: dict, log) -> int:
    """--seeds: one run per seed in a group folder; --resume GROUP continues one."""
    from ..runs.group import parse_seeds, resume_group, run_group
    if "seed" in given:
        raise CnnlabError("--seed and --seeds name the seeds twice: a group takes its seeds from --seeds")
    if args.resume:
        if args.out is not None or args.seeds is not None or getattr(args, "recipe", None) is not None:
            raise CnnlabError("--resume continues a group with its own folder, seeds and recipe: "
                              "drop --out, --seeds and --recipe")
        if args.recipe is not None:
            raise CnnlabError("--resume continues a group with the recipe it started with: drop --recipe")
        resume_group(args.resume, given, log=log)
    else:
        run_group(new_config(args, given), parse_seeds(args.seeds), log=log)
    return 0


def register(sub, parents) -> None:
    t = sub.add_parser("train", parents=parents, help="train a model, test it, and save a run folder",
                       description="Train a model as a recipe says (default: the course report's, "
                       "Adam and cross-entropy), print the loss and validation accuracy after every "
                       "epoch and the test accuracy at the end, and save config, history, curves, "
                       "metrics and weights in a run folder.")
    # Recipe flags default to None so that --resume can tell which were given again.
    t.add_argument("--recipe", metavar="NAME|FILE.toml",
                   help="a shipped recipe (see 'cnnlab recipes') or a recipe file; the flags below "
                   "override single values (default: seed, the course report's recipe)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any recipe setting by its dotted key, e.g. --set optimizer.momentum=0.8 "
                   "--set augment.flip=random (repeatable; keys as in the recipe files)")
    t.add_argument("--data", metavar="PATH", help=DATA_HELP)
    t.add_argument("--image-size", type=positive_int, metavar="N",
                   help="image folders: train on N x N images, e.g. 64, 96, 128 or 224; the run records it and "
                   "evaluate, predict, report and export use it (default: the recipe's, 32; CIFAR-10 is 32)")
    t.add_argument("--resize", choices=["crop", "squash"],
                   help="image folders: how images of another size become N x N: crop resizes the shorter "
                   "side and cuts out the centre (the aspect is kept), squash stretches the whole image; "
                   "recorded, and predict uses the same (default: the recipe's, crop)")
    t.add_argument("--model", help="model name, see 'cnnlab models' (default: the recipe's; seed: seed)")
    t.add_argument("--epochs", type=positive_int, help="passes over the training split (default: the recipe's; seed: 20)")
    t.add_argument("--batch-size", type=positive_int, help="images per optimizer step (default: the recipe's; seed: 128)")
    t.add_argument("--lr", type=positive_float, help="peak learning rate (default: the recipe's; seed: Adam 1e-3)")
    t.add_argument("--seed", type=int, help="seed for initialization, split, batch order and augmentation: 0 to 4294967295 (default: 0)")
    t.add_argument("--val-size", type=val_size, metavar="N|P%",
                   help="training images held out for validation: a count (5000) or a percentage of the "
                   "training split (10%%); 0 validates nothing (default: the recipe's; seed: 10%%, which is "
                   "5000 on CIFAR-10)")
    t.add_argument("--device", help="auto (CUDA when present), cpu or cuda (default: auto)")
    t.add_argument("--out", metavar="DIR", help="run folder, must be new or empty (default: runs/<date-time>-<model>, "
                   "with --seeds runs/<date-time>-<model>-seeds)")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run (or group of runs, see --seeds) from its last checkpoint, "
                   "exactly as if it had not stopped; --device and --data may be given, --precision switches the "
                   "run's arithmetic (recorded), --epochs N above the run's extends it, finished or not (recorded "
                   "in config.json; its metrics.json and weights are replaced when the extension finishes), "
                   "other settings must match the run's")
    t.add_argument("--seeds", metavar="SEEDS",
                   help="train once per seed, one after another, into a group folder with one run folder "
                   "per seed and group.json: a range 0-4, a list 0,3,7, or both; see 'cnnlab compare'")
    t.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train in N processes on this machine (DDP: gloo on the CPU, nccl with one GPU each), "
                   "started by torch's launcher, the same as 'torchrun --standalone --nproc-per-node N -m "
                   "cnnlab train ...'; the batch size stays the whole step's (default: 1 process)")
    t.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP + "; with --nproc, per process; "
                   "recorded in config.json, and --resume keeps the run's count unless --threads is given")
    t.add_argument("--dist-backend", choices=["auto", "gloo", "nccl"],
                   help="several processes: how they exchange gradients; auto is nccl on CUDA, gloo on the CPU")
    t.add_argument("--max-steps", type=positive_int,
                   help="end the run after this many optimizer steps in all, then test and save as usual: "
                   "a quick check that a setup works end to end (default: no limit)")
    t.add_argument("--keep", choices=["last", "best"],
                   help="weights to keep: last (model.safetensors, tested) or best: also the weights of the epoch "
                   "with the best validation accuracy, in best.safetensors (metrics.json names the epoch) "
                   "(default: last)")
    t.add_argument("--patience", type=positive_int, metavar="N",
                   help="end the run early when validation accuracy has not improved for N epochs, then test "
                   "and save as usual (metrics.json says where it stopped) (default: train every epoch)")
    t.add_argument("--eval-batch-size", type=positive_int,
                   help="images per batch when evaluating (default: 1000)")
    t.add_argument("--strict", action="store_true", default=None,
                   help="fail on unreadable image files instead of skipping them with a warning")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout for the model and batches (default: on)")
    t.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log loss, validation loss and accuracy and learning rate per epoch to "
                   "RUN_DIR/tensorboard for 'tensorboard --logdir runs' (pip install 'cnnlab[tensorboard]')")
    t.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (pays off on CUDA)")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="arithmetic of the training step: auto is bf16 autocast where the hardware "
                   "does bf16 natively (CUDA, CPUs with AMX or AVX512-BF16) and fp32 elsewhere; "
                   "evaluation is always fp32 (default: auto)")
    t.set_defaults(func=cmd_train)
