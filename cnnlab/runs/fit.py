"""Training into a run folder: a new run, a resumed one, checkpoints, the final test.

    run_train(TrainConfig(epochs=20))          # a new run folder under runs/
    resume_train("runs/20260101-120000-seed")  # continue it exactly where it stopped
"""
from __future__ import annotations

import contextlib
import csv
import math
import signal
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ..training import arithmetic, distributed, threads
from .. import checkpoints, files, helper
from ..data import dataset as data_mod, decode
from ..network import models
from ..errors import CnnlabError
from ..data.dataset import normalize
from ..training.losswatch import NonFiniteLoss
from ..recipes import to_dict
from ..text import plural
from ..training.loop import (TrainConfig, TrainState, epoch_steps, pick_device, prepare, resolve_precision,
                             total_steps, train, uses_channels_last)
from .folder import HISTORY_FIELDS, _number, claim_run_dir, describe, read_config, unclaim, versions, write_json
from .lock import hold
from .resumable import check_checkpoint, load_into
from . import tensorboard
from .given import build_model, custom_record, needs_data, needs_model
from .settings import RESUME_MAY_CHANGE, refuse_changes  # noqa: F401 - also imported from here
from . import checks, stopping
from .checks import check_data_bounds
from .signals import Interrupted, StopSignals


DATA_INIT_IMAGES = 5000


def _data_init(model, d) -> None:
    """A model that initializes itself from data (model.data_init) sees the first training images."""
    if hasattr(model, "data_init"):
        images = normalize(d.train_x[:DATA_INIT_IMAGES], d.mean_t, d.std_t).float()
        model.to(images.device)
        model.data_init(images)


# What makes a loss or the weights non-finite, most likely first; said with the error.
NON_FINITE_CAUSES = ("likely a learning rate too high for this recipe (lower --lr, or add warmup: "
                     "--set schedule.warmup=0.1), else a setting at an extreme (weight decay, momentum, "
                     "optimizer.eps), else bf16 arithmetic overflowing (try --precision fp32)")


def say(line: str) -> None:
    print(line, flush=True)  # a log file shows each line at once


def quiet(line: str) -> None:
    """The log of ranks other than 0 in a run of several processes: rank 0 says it once."""


@threads.restored  # the run sets its own CPU threads; the caller's count comes back after
def run_train(cfg: TrainConfig, log: Callable[[str], None] = say, *, data: data_mod.ImageData | None = None,
              model=None, progress: bool | None = None,
              epoch_end: Callable[[Path, dict], bool | None] | None = None) -> dict:
    """Load data, build the model, train, test, and write a new run folder. Returns metrics.

    Everything that can be refused (settings, data, --val-size, the folder and its disk) is
    checked before the run folder is made, so a refused run leaves nothing behind.
    data: images already in memory (cnnlab.data.memory) instead of cfg.data's path; model: an
    nn.Module (or a callable building one) instead of the registered cfg.model, whose weights
    the run folder keeps. progress: a bar per epoch (None: when stderr is a terminal).
    epoch_end(run_dir, row) after every epoch's checkpoint; returning False ends the run there
    (tested and saved as a step cap ends it; the checkpoint lets it be resumed).
    """
    cfg.validate()
    if model is None:
        # An unknown name, or a size too small for the model's layers, fails before any data is read.
        models.create(cfg.model, image_size=cfg.image_size)
    device = distributed.local_device(pick_device(cfg.device))
    main = distributed.is_main()  # several processes: rank 0 alone prints and writes
    log = log if main else quiet
    # The folder is created and locked first: a second run given the same --out is refused at
    # once, before either reads any data (rank 0 claims it; the others learn its name).
    claim = distributed.main_only(claim_run_dir, cfg.out, cfg.model)
    out = claim.path
    given_model = model
    try:
        if data is None:
            data = data_mod.load(cfg.data, size=cfg.image_size, strict=cfg.strict, resize=cfg.resize)
        distributed.same_as_main(data.fingerprint, f"the data at {data_mod.shown(data)}")
        n_val = data_mod.val_count(cfg.val_size, len(data.train_y))
        n_train = len(data.train_y) - n_val
        checks.learnable(data.classes, n_train, n_val, data_mod.shown(data), cfg)
        # The absolute path, so that evaluate and --resume find the data from any folder.
        where = str(Path(cfg.data).expanduser().resolve()) if cfg.data is not None else data.source
        model = build_model(cfg, data, model)
        check_data_bounds(cfg, data, model)
        cpu = threads.take(cfg.threads, distributed.local_world())
        cfg = replace(cfg, out=str(out), data=where)
        # Said before the data statistics and the first epoch, so a log shows life at once.
        recipe = "" if cfg.recipe == "seed" else f"recipe {cfg.recipe}: "
        if cfg.precision_settings:  # the recipe's own choice for this arithmetic, said at once
            chosen = ", ".join(f"{k}={v}" for k, v in cfg.precision_settings["settings"].items())
            recipe = f"recipe {cfg.recipe} (its {cfg.precision_settings['precision']} settings: {chosen}): "
        log(f"{recipe}Training {cfg.model} ({models.count_params(model):,} parameters) on {plural(n_train, 'image')} "
            f"{'from ' + data.source if data.source else 'given from Python'} ({n_val} to validate, "
            f"{len(data.test_y)} to test), {device}, "
            f"{resolve_precision(cfg, device)}, {plural(cpu['threads'], 'thread')}; run folder {out}")
        d = prepare(data, cfg, device)
        _data_init(model, d)
        config = {**describe(cfg, data, d, device, model, cpu), "distributed": distributed.record()}
        if (custom := custom_record(given_model)) is not None:
            config["custom_model"] = custom
        if main:
            write_json(out / "config.json", config)
    except BaseException:
        if main:  # a refused run leaves nothing behind: no lock, no folder we made
            unclaim(claim)
        raise
    with hold(out, claim.fd) if main else contextlib.nullcontext():
        with _disk_errors(out):
            return _fit(out, cfg, config, model, d, TrainState(), None, log, progress=progress, epoch_end=epoch_end)


@threads.restored
def resume_train(run_dir, overrides: dict | None = None, log: Callable[[str], None] = say, *,
                 data: data_mod.ImageData | None = None, model=None, progress: bool | None = None,
                 epoch_end: Callable[[Path, dict], bool | None] | None = None) -> dict:
    """Continue an interrupted run from its last checkpoint, exactly where it stood.

    overrides are settings given again on the command line, by dotted key ({"epochs": 12,
    "optimizer.lr": 0.01}): device and data may differ; --precision switches the run's
    arithmetic (recorded); any other that differs from the run's own is refused, since the run
    would no longer be the one it started as. The run's recipe comes from its config.json (one
    from before recipes is the report's recipe). The run folder is locked meanwhile: a second
    process resuming it is refused. data, model, progress, epoch_end: as for run_train (a run
    trained on images or a model from Python needs them given again).
    """
    run_dir = Path(run_dir)
    read_config(run_dir)  # a run folder, before a lock file is put in it
    main = distributed.is_main()  # several processes: rank 0 alone prints and writes
    with hold(run_dir) if main else contextlib.nullcontext():
        return _resume(run_dir, read_config(run_dir), dict(overrides or {}), log if main else quiet,
                       data=data, model=model, progress=progress, epoch_end=epoch_end)


def saved_arithmetic(config: dict) -> dict:
    """The run's arithmetic from config.json (runs from before it was saved: rebuilt)."""
    if "arithmetic" in config:
        return config["arithmetic"]
    channels_last = uses_channels_last(TrainConfig.from_dict(config["config"]))
    return {"precision": config["precision"], "memory_format": "channels_last" if channels_last else "contiguous"}


def _resume(run_dir: Path, config: dict, overrides: dict, log: Callable[[str], None], *, data=None, model=None,
            progress: bool | None = None, epoch_end=None) -> dict:
    precision, threads_given = overrides.pop("precision", None), overrides.pop("threads", None)
    if model is None and config.get("custom_model"):
        raise CnnlabError(needs_model(run_dir, config, "resume"))
    extend = stopping.extension(config, overrides.pop("epochs", None))
    saved = TrainConfig.from_dict(config["config"])
    refuse_changes(saved, overrides, "run")
    overrides = {k: v for k, v in overrides.items() if k in RESUME_MAY_CHANGE and v is not None}
    if overrides.get("data") is not None:
        overrides["data"] = str(Path(overrides["data"]).expanduser().resolve())
    cfg = replace(saved, **overrides, out=str(run_dir), epochs=extend or saved.epochs)
    cfg.validate()
    if distributed.is_main():
        checkpoints.remove_partial_writes(run_dir)
    ckpt = None
    if (run_dir / "checkpoint.pt").exists():
        ckpt = checkpoints.load_checkpoint(run_dir / "checkpoint.pt")
        check_checkpoint(ckpt, run_dir / "checkpoint.pt")  # its structure, before any of it is used
        if ckpt.get("model") != cfg.model or ckpt.get("config", {}).get("epochs") not in stopping.lengths(config):
            raise CnnlabError(f"{run_dir}/checkpoint.pt belongs to another run (model "
                              f"{ckpt.get('model')}, {ckpt.get('config', {}).get('epochs')} epochs): "
                              f"it cannot be resumed with this config.json")
        if ckpt["state"]["epoch"] > cfg.epochs and (run_dir / "metrics.json").exists():
            raise CnnlabError(f"{run_dir} has finished all {cfg.epochs} epochs: nothing to resume; "
                              f"see its metrics.json or run 'cnnlab evaluate {run_dir}', or give "
                              f"--epochs N (more than {cfg.epochs}) to extend it")
    device = distributed.local_device(pick_device(cfg.device))
    arith, change = arithmetic.for_resume(saved_arithmetic(config), device, precision)
    cfg = replace(cfg, channels_last=arith["memory_format"] == "channels_last")
    if data is None:
        if config["data"].get("kind") == data_mod.MEMORY:
            raise CnnlabError(needs_data(run_dir, "resume"))
        size, rule = decode.recorded(config)  # runs from before the rule was recorded: their own
        data = data_mod.load(cfg.data, size=size, strict=cfg.strict, resize=rule)
    if data.fingerprint != config["data"]["fingerprint"]:
        raise CnnlabError(f"the data at {data_mod.shown(data)} differ from the data {run_dir} was trained on "
                          f"(fingerprint {data.fingerprint[:12]} vs {config['data']['fingerprint'][:12]}): "
                          f"pass the original dataset with --data")
    distributed.same_as_main(data.fingerprint, f"the data at {data_mod.shown(data)}")
    if cfg.data != saved.data:  # the same data found elsewhere now: evaluate must look there too
        config = {**config, "config": {**config["config"], "data": cfg.data},
                  "data": {**config["data"], "source": data.source}}
        if distributed.is_main():
            write_json(run_dir / "config.json", config)
    config, note = threads.take_recorded(config, threads_given, ckpt["state"] if ckpt else None, log)
    model, d = build_model(cfg, data, model), prepare(data, cfg, device)  # the model initialized from its seed
    state, opt_state, avg_state, sel_state = TrainState(), None, None, None
    if ckpt is not None:
        load_into("model_state", run_dir / "checkpoint.pt", lambda: model.load_state_dict(ckpt["model_state"]))
        state = TrainState(**ckpt["state"])
        opt_state = ckpt["optimizer_state"]
        avg_state, sel_state = ckpt.get("averaging_state"), ckpt.get("selection_state")
        checkpoints.set_rng_state(ckpt["rng"], device)
    else:
        _data_init(model, d)  # killed before its first checkpoint: start as a fresh run does
    if extend is not None:  # recorded in config.json
        config = stopping.extend(run_dir, config, extend, state, log, distributed.is_main())
    if change is not None or arith != config.get("arithmetic"):
        changes = config.get("arithmetic_changes", [])
        if change is not None:
            changes = [*changes, {"epoch": state.epoch, "step": state.step, **change}]
        config = {**config, "arithmetic": arith, "precision": arith["precision"], "arithmetic_changes": changes}
        if distributed.is_main():
            write_json(run_dir / "config.json", config)
    if (changed := distributed.record_change(config, state.epoch, state.step)) is not None or note is not None:
        config = changed or config
        if distributed.is_main():
            write_json(run_dir / "config.json", config)
    procs = f", {distributed.world()} processes" if distributed.world() > 1 else ""
    log(f"Resuming {run_dir} at epoch {state.epoch}, step {state.step}, {device}{procs}, {arith['precision']}")
    with _disk_errors(run_dir):
        return _fit(run_dir, cfg, config, model, d, state, opt_state, log, avg_state, sel_state,
                    progress=progress, epoch_end=epoch_end)


@contextlib.contextmanager
def _disk_errors(out: Path):
    """A file of the run that cannot be written (full disk, ...) ends the run with one line that
    says what is kept and how to continue; atomic writes leave every earlier file whole."""
    try:
        yield
    except files.WriteError as e:
        kept = "no checkpoint was written yet"
        if (out / "checkpoint.pt").exists():
            done = len(checkpoints.load_checkpoint(out / "checkpoint.pt")["state"]["history"])
            kept = f"the last complete checkpoint ({plural(done, 'epoch')} done) is kept in {out}/checkpoint.pt"
        raise CnnlabError(f"{e}; {kept}; once it can be written, continue with: {distributed.resume_hint(out)}") from None
    except RuntimeError as e:  # a collective failed: another process of the run is gone
        lost = distributed.peer_lost(e, out)
        if lost is None:
            raise
        raise lost from None


def _fit(out: Path, cfg: TrainConfig, config: dict, model, d, state: TrainState, opt_state,
         log: Callable[[str], None], avg_state: dict | None = None, sel_state: dict | None = None, *,
         progress: bool | None = None, epoch_end=None) -> dict:
    """Train from state, checkpointing every epoch and on SIGINT/SIGTERM; then test and save.

    Several processes: every rank trains and evaluates its part; rank 0 alone writes.
    """
    device = d.train_x.device
    main = distributed.is_main()

    def write_history(rows):
        def write(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")  # plain \n: no stray \r in shell tools
                w.writerow(HISTORY_FIELDS)
                # A row from before val_loss and lr were logged (a resumed older run): nan there.
                w.writerows([row.get(k, math.nan) for k in HISTORY_FIELDS] for row in rows)
        checkpoints.atomic_write(out / "history.csv", write)

    def save(state: TrainState, s) -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise CnnlabError(f"the weights became non-finite at epoch {state.epoch}: not saving them "
                              f"over the last good checkpoint in {out}; {NON_FINITE_CAUSES}")
        extra = {} if s.averager is None else {"averaging_state": s.averager.state_dict()}
        if s.selector is not None:  # each image's last loss: the hard images of the epochs to come
            extra["selection_state"] = s.selector.state_dict()
        checkpoints.save_checkpoint(out / "checkpoint.pt", {
            "format": 1, "model": cfg.model, "model_state": model.state_dict(),
            "optimizer_state": s.opt.state_dict(), "state": state.to_dict(), "config": cfg.to_dict(),
            # The learning rate is a pure function of the step (cnnlab.training.schedules), the batch
            # order of (seed, epoch), augmentation and dropout of (seed, epoch, step).
            "schedule": {**to_dict(cfg.schedule), "lr": cfg.lr, "epochs": cfg.epochs,
                         "total_steps": total_steps(cfg, len(d.train_y))},
            "permutation": {"seed": cfg.seed, "epoch": state.epoch},
            "data": config["data"], "arithmetic": config["arithmetic"], "versions": versions(),
            "rng": checkpoints.rng_state(device), **extra})

    board = tensorboard.open_writer(out) if main and cfg.tensorboard else None

    def on_epoch_end(row: dict, state: TrainState, s) -> bool | None:
        stopping.end_early(cfg, state, log)  # --patience
        if main:
            write_history(state.history)
            stopping.keep_best(cfg, state.history, out, s.eval_model)  # before the checkpoint
            save(state, s)
            if board is not None:
                tensorboard.add_row(board, row)
        return None if epoch_end is None else epoch_end(out, row)

    if main:
        write_history(state.history)
    with StopSignals(repeat_stops=distributed.world() == 1) as stop:
        # Every rank stops at the same step: a signal to any of them stops them all.
        should_stop = lambda: distributed.any_rank(stop.requested())  # noqa: E731
        try:
            state, s = train(cfg, model, d, log, on_epoch_end, state, opt_state, should_stop, avg_state,
                             config["arithmetic"], sel_state, progress)
        except NonFiniteLoss as e:
            kept = (f"the last good checkpoint (epoch {state.epoch - 1}) is kept in {out}/checkpoint.pt"
                    if (out / "checkpoint.pt").exists() else "no checkpoint was written")
            raise CnnlabError(f"{e}: {NON_FINITE_CAUSES} (--lr is {cfg.lr:g}); {kept}") from None
        finally:
            if board is not None:
                board.close()
    if state.stopped:
        signum = stop.signum or signal.SIGTERM  # another rank's signal stopped this one
        if not main:
            raise distributed.Follow(128 + signum)
        save(state, s)
        name = signal.Signals(signum).name
        raise Interrupted(f"stopped by {name} at epoch {state.epoch}, step {state.step}; checkpoint "
                          f"saved; resume with: {distributed.resume_hint(out)}", signum)

    channels_last = uses_channels_last(cfg)
    # With weight averaging, the averaged weights are the run's result: tested and saved.
    test = distributed.evaluate(s.eval_model, d.test_x, d.test_y, d.mean_t, d.std_t, cfg.eval_batch_size, channels_last,
                                cfg.tta, s.eval_precision)
    log(f"Test Accuracy: {test['acc']:.3f} %" + ("" if cfg.tta == "none" else f" (test-time augmentation: {cfg.tta})"))
    last_steps = epoch_steps(cfg, len(d.train_y), state.history[-1]["epoch"])  # the last epoch's full length
    metrics = {"model": cfg.model, "recipe": cfg.recipe, "tta": cfg.tta, "test_acc": test["acc"], "test_loss": test["loss"],
               "val_acc": _number(state.history[-1]["val_acc"]),
               "steps": state.steps, "train_seconds": state.elapsed,
               "params": models.count_params(model), "device": str(device),
               **stopping.summary(state.history, cfg, last_steps)}  # epochs, and how the run ended
    if not main:
        return {**metrics, "out": str(out)}
    checkpoints.save_weights(out / "model.safetensors", s.eval_model, {"model": cfg.model})
    source = config["data"]["source"]
    # In the command's helper process where it has one (matplotlib is imported there), else here.
    where = out.resolve()
    helper.run("cnnlab.analysis.plots:plot_curves", str(where / "history.csv"), str(where / "curves.png"),
               title=f"{out.name}: {cfg.model} on {Path(source).name if source else 'images from Python'}",
               test_acc=test["acc"], last_epoch_steps=last_steps)
    write_json(out / "metrics.json", metrics)  # last: its presence marks a finished run
    log(f"Run saved in {out}")
    return {**metrics, "out": str(out)}

