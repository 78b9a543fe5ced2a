"""The training loop: a plain function of a config, a model and the data tensors.

    cfg = TrainConfig(epochs=20)
    d = prepare(cnnlab.data.dataset.load(), cfg, torch.device("cpu"))
    state, s = train(cfg, model, d)       # prints the report's two lines per epoch
    state.history[-1]  # {"epoch", "iters", "avg_loss", "elapsed_s", "val_acc", "val_loss", "lr"}

The whole training split lives on the training device as one uint8 tensor; a batch is an
index into it, drawn from a permutation that is a pure function of (seed, epoch), so any
epoch can be replayed exactly. Nothing per-image happens in Python during an epoch.
The recipe's pieces (optimizer, schedule, augmentation, averaging) are composed in train_epoch,
with no branch per recipe.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm  # a widget in a notebook, text on a terminal

from . import arithmetic, augment, averaging, distributed, optim, selection
from ..data.dataset import ImageData, channel_stats, normalize, parse_val_size, split_indices
from ..errors import CnnlabError
from .losswatch import LossWatch, NonFiniteLoss
from ..recipes.schema import Recipe, build, check
from .optim import load_optimizer_state  # noqa: F401 - also imported from here
from .schedules import lr_factor
from .seeds import check_seed


@dataclass
class TrainConfig(Recipe):
    """A run's settings: the recipe's fields (cnnlab.recipes.schema.Recipe) and where and how it runs."""
    seed: int = 0  # model init, train/validation split, batch order, augmentation, dropout
    device: str = "auto"  # auto | cpu | cuda
    data: str | None = None  # dataset path; None searches the defaults (cnnlab.data.dataset.resolve)
    out: str | None = None  # run folder; None -> runs/<date-time>-<model>
    max_steps: int | None = None  # stop after this many optimizer steps (quick checks, sprints)
    eval_batch_size: int = 1000
    channels_last: bool | None = None  # None: on (see uses_channels_last)
    compile: bool = False  # torch.compile the model (CUDA: faster after warm-up)
    precision: str = "auto"  # auto | fp32 | bf16: auto is bf16 where native (CUDA, AMX, AVX512-BF16)
    strict: bool = False  # unreadable image files: error (True) or skip with a warning (False)
    tensorboard: bool = False  # also log history's scalars to <run>/tensorboard (optional extra)
    threads: int | None = field(default=None, metadata={"min": 1})  # CPU threads; None: cnnlab.training.threads
    precision_settings: dict | None = None  # by_precision settings taken (runs.settings.for_precision)

    def validate(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be a positive integer, "
                                  f"got {getattr(self, name)}")
        if not self.optimizer.lr > 0 or not math.isfinite(self.optimizer.lr):
            raise CnnlabError(f"--lr must be a positive number, got {self.optimizer.lr}")
        check_seed(self.seed)
        if self.max_steps is not None and self.max_steps < 1:
            raise CnnlabError(f"--max-steps must be a positive integer, got {self.max_steps}")
        parse_val_size(self.val_size)
        if selection.active(self.select) and distributed.world() > 1:
            raise CnnlabError(selection.ONE_PROCESS)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise CnnlabError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        check(self, f"recipe {self.recipe}")  # every other field's type and range
        return self

    @property
    def lr(self) -> float:
        """The peak learning rate (the recipe's optimizer.lr)."""
        return self.optimizer.lr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config saved in a run's config.json. Keys from other versions are ignored; a
        config from before recipes (flat, with lr) is the report's recipe with its values."""
        d = {"resize": "squash", **d}  # a run from before the rule was recorded squashed its images
        if "optimizer" not in d and "lr" in d:
            d["optimizer"] = {"lr": d["lr"]}
        return build(cls, d, "config.json", lenient=True)


def pick_device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise CnnlabError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    return torch.device(name)


def epoch_permutation(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """The batch order of one epoch: a pure function of (seed, epoch), so resuming replays it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


def uses_channels_last(cfg: TrainConfig) -> bool:
    """channels_last unless turned off: measured 1.6x faster here on the CPU; the usual choice on CUDA."""
    return cfg.channels_last if cfg.channels_last is not None else True


@dataclass
class Prepared:
    """The data of one run, on the training device."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: list[float]
    std: list[float]
    mean_t: torch.Tensor  # the same, as (1, C, 1, 1) tensors on the device
    std_t: torch.Tensor


def prepare(data: ImageData, cfg: TrainConfig, device: torch.device) -> Prepared:
    """Split the training images, compute normalization on the training part, move to device."""
    train_idx, val_idx = split_indices(len(data.train_y), cfg.val_size, cfg.seed)
    train_x = data.train_x.index_select(0, train_idx)  # the same as [train_idx], in whole rows: 2x faster
    mean, std = channel_stats(train_x)
    # Stored NCHW: normalizing an NCHW batch, then converting it, measured faster than NHWC storage.
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    stat = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
    return Prepared(to(train_x), to(data.train_y[train_idx]), to(data.train_x[val_idx]),
                    to(data.train_y[val_idx]), to(data.test_x), to(data.test_y), mean, std,
                    stat(mean), stat(std))


@dataclass
class TrainState:
    """Where a run stands: enough, with the model and optimizer, to continue it exactly."""
    epoch: int = 1  # the epoch in progress, counted from 1
    step: int = 0  # steps of that epoch already taken
    loss_sum: float = 0.0  # their summed loss
    steps: int = 0  # optimizer steps in all
    elapsed: float = 0.0  # seconds of training so far, earlier processes included
    history: list[dict] = field(default_factory=list)  # one row per finished epoch
    stopped: bool = False  # True when should_stop() ended training early

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    return arithmetic.resolve(cfg.precision, uses_channels_last(cfg), device)["precision"]


@dataclass
class Setup:
    """What stays fixed across the steps of a run: the model, its optimizer, the step's form."""
    model: torch.nn.Module
    step_model: Callable  # model, or its torch.compile'd form
    opt: torch.optim.Optimizer
    autocast: Callable  # () -> context manager for the forward pass
    memory_format: torch.memory_format
    averager: averaging.WeightAverage | None = None  # the recipe's weight averaging, if any
    eval_precision: str = "fp32"  # validation's and test's arithmetic (arithmetic.eval_precision)
    selector: selection.Selector | None = None  # the recipe's choice of hard images, if any (train())

    @property
    def eval_model(self) -> torch.nn.Module:
        """The network to validate, test and save: the averaged weights when averaging is on."""
        return self.averager.model if self.averager is not None else self.model


def setup(cfg: TrainConfig, model: torch.nn.Module, device: torch.device, arith: dict | None = None) -> Setup:
    """arith: the run's arithmetic (arithmetic.resolve), saved with it; None resolves it here."""
    cuda = device.type == "cuda"
    arith = arith or arithmetic.resolve(cfg.precision, uses_channels_last(cfg), device)
    arithmetic.apply(arith, device)  # CUDA: TF32 off, cuDNN autotuner on (fixed shapes)
    # glibc's malloc is tuned by the cnnlab command's own process (cnnlab.cli), never here: a
    # library call must leave the user's process as it found it (see training/allocator.py).
    memory_format = torch.channels_last if arith["memory_format"] == "channels_last" else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    opt = optim.build(model, cfg.optimizer, device, compiling=cfg.compile, epochs=cfg.epochs)
    bf16 = arith["precision"] == "bf16"
    autocast = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16
                else contextlib.nullcontext)
    step_model = distributed.wrap(model, cfg.sync_bn, device)  # DDP in a run of several processes
    averager = averaging.create(cfg.averaging, model)
    # On CUDA, reduce-overhead replays the forward and backward as CUDA graphs: at batch 128
    # this network is bound by kernel launches, not arithmetic. (Not yet measured on a GPU.)
    step_model = (torch.compile(step_model, mode="reduce-overhead" if cuda else "default")
                  if cfg.compile else step_model)
    return Setup(model, step_model, opt, autocast, memory_format, averager,
                 arithmetic.eval_precision(cfg.eval_precision, arith))


def epoch_steps(cfg: TrainConfig, n: int, epoch: int) -> int:
    """Optimizer steps in epoch (fewer where the recipe trains on the hard images only)."""
    return selection.epoch_steps(cfg.select, n, epoch, cfg.batch_size)


def total_steps(cfg: TrainConfig, n: int) -> int:
    """Optimizer steps in the whole run (the schedule's length): all epochs, or the step cap."""
    # In closed form, not a sum over the epochs (--epochs 10000000 --max-steps 5 must not wait):
    # the epochs before [select]'s from_epoch train on every image, the others on the same part.
    full = min(cfg.epochs, cfg.select.from_epoch - 1) if selection.active(cfg.select) else cfg.epochs
    steps = full * epoch_steps(cfg, n, 1) + (cfg.epochs - full) * epoch_steps(cfg, n, cfg.epochs)
    return steps if cfg.max_steps is None else min(steps, cfg.max_steps)


def train_epoch(s: Setup, d: Prepared, cfg: TrainConfig, state: TrainState,
                max_steps: int | None = None, progress: bool = False,
                should_stop: Callable[[], bool] = lambda: False) -> float:
    """Continue epoch state.epoch from step state.step; returns the epoch's average loss.

    Updates state.step, state.loss_sum and state.steps as it goes. Stops early, with the
    state pointing at the next step, when max_steps are taken or should_stop() says so.
    Raises NonFiniteLoss when a step's loss is nan or inf (on CUDA, within a few steps:
    checking every step would make the host wait for the device).

    Each step composes the recipe's pieces: the schedule's learning rate (cnnlab.training.schedules),
    the batch's augmentation (cnnlab.training.augment), label smoothing, the optimizer's step with
    decoupled weight decay (cnnlab.training.optim), weight averaging (cnnlab.training.averaging). Every random
    draw, the model's own (dropout) included, is a pure function of (seed, epoch, step).
    In a run of several processes each takes its part of every step's batch (see
    cnnlab.training.distributed) and the loss is scaled so that DDP's average of the gradients is the
    gradient of the mean loss over the whole batch, as one process computes it.
    """
    device = d.train_x.device
    n = len(d.train_y)
    steps_per_epoch = epoch_steps(cfg, n, state.epoch)
    end = steps_per_epoch if max_steps is None else min(steps_per_epoch, state.step + max_steps)
    total = total_steps(cfg, n)
    s.model.train()
    perm = epoch_permutation(n, cfg.seed, state.epoch, device)
    if s.selector is None and selection.active(cfg.select):
        s.selector = selection.create(cfg.select, n, device)
    if s.selector is not None:
        perm = s.selector.order(perm, state.epoch, state.step)  # the epoch's hard images
    augmenting = augment.active(cfg.augment)
    bits = augment.flip_bits(n, cfg.seed).to(device) if cfg.augment.flip == "alternating" else None
    rank, world = distributed.rank(), distributed.world()
    optim.set_epoch(s.opt, cfg.optimizer, state.epoch, skip_backward=world == 1)
    # Summed over the ranks at the end: rank 0 carries what earlier steps of the epoch added.
    loss_sum = torch.tensor(state.loss_sum if rank == 0 else 0.0, device=device)
    watch = LossWatch(device, state.epoch)
    bar = tqdm(total=end, initial=state.step, desc=f"epoch {state.epoch}/{cfg.epochs}",
               file=sys.stderr, leave=False, disable=not progress or rank > 0, dynamic_ncols=True)
    for step in range(state.step, end):
        optim.set_lr(s.opt, lr_factor(cfg.schedule, state.steps, total))
        # dropout's draws; each rank draws its own
        torch.manual_seed(augment.step_seed(cfg.seed, state.epoch, step, "model" if rank == 0 else f"model:{rank}"))
        idx = perm[step * cfg.batch_size: (step + 1) * cfg.batch_size]
        n_batch, rows = len(idx), distributed.rank_slice(len(idx), rank, world)
        idx = idx[rows]  # this rank's part of the step's batch (all of it for one process)
        x = normalize(d.train_x[idx], d.mean_t, d.std_t)
        if augmenting:
            x = augment.augment_batch(x, idx, cfg.augment, cfg.seed, state.epoch, step, bits, (rows.start, n_batch))
        x = x.contiguous(memory_format=s.memory_format)
        y = d.train_y[idx]
        with s.autocast():
            if s.selector is not None:  # one process (TrainConfig.validate): keep each image's loss
                losses = F.cross_entropy(s.step_model(x), y, label_smoothing=cfg.label_smoothing, reduction="none")
                s.selector.record(idx, losses)
                loss = losses.mean()
            elif world == 1:
                loss = F.cross_entropy(s.step_model(x), y, label_smoothing=cfg.label_smoothing)
            else:  # this rank's share of the batch's mean loss
                loss = F.cross_entropy(s.step_model(x), y, label_smoothing=cfg.label_smoothing,
                                       reduction="sum") / n_batch
        watch.check(loss, step + 1)
        s.opt.zero_grad(set_to_none=True)
        (loss if world == 1 else loss * world).backward()  # DDP averages the ranks' gradients
        optim.step(s.opt)
        loss_sum += loss.detach()
        bar.update()
        state.step, state.steps = step + 1, state.steps + 1
        if s.averager is not None:
            s.averager.update(s.model, state.steps, total)
        if should_stop():
            break
    bar.close()
    watch.finish()
    state.loss_sum = distributed.sum_ranks(loss_sum).item()  # the one host sync of the epoch
    if not math.isfinite(state.loss_sum):
        raise NonFiniteLoss(state.epoch, state.step, state.loss_sum)
    return state.loss_sum / max(state.step, 1)


def train(cfg: TrainConfig, model: torch.nn.Module, d: Prepared, log: Callable[[str], None] = print,
          on_epoch_end: Callable[[dict, TrainState, Setup], bool | None] | None = None,
          state: TrainState | None = None, optimizer_state: dict | None = None,
          should_stop: Callable[[], bool] = lambda: False,
          averaging_state: dict | None = None, arith: dict | None = None,
          selection_state: dict | None = None, progress: bool | None = None) -> tuple[TrainState, Setup]:
    """Train model on d.train_* as the recipe in cfg says, validating after every epoch.

    on_epoch_end(row, state, s) gets the finished epoch's history row and the state, already at
    the next epoch (what a checkpoint saves); returning False ends training there, as a step cap
    does. progress: a bar per epoch (tqdm.auto); None: when stderr is a terminal.

    Starts afresh, or continues from state (with optimizer_state, averaging_state and
    selection_state) exactly where it stood. Returns the final state and the Setup (its opt, its averager,
    and eval_model: the network to test and save); state.stopped is True when should_stop()
    interrupted it (the state then points at the next step).
    """
    s = setup(cfg, model, d.train_x.device, arith)
    if optimizer_state is not None:
        load_optimizer_state(s.opt, optimizer_state)
    if averaging_state is not None and s.averager is not None:
        s.averager.load_state_dict(averaging_state)
    s.selector = selection.create(cfg.select, len(d.train_y), d.train_x.device)
    if selection_state is not None and s.selector is not None:
        s.selector.load_state_dict(selection_state)
    state = state or TrainState()
    state.stopped = False
    channels_last = s.memory_format == torch.channels_last
    start = time.perf_counter() - state.elapsed
    progress = sys.stderr.isatty() if progress is None else progress
    while state.epoch <= cfg.epochs:
        budget = None if cfg.max_steps is None else cfg.max_steps - state.steps
        avg_loss = train_epoch(s, d, cfg, state, budget, progress, should_stop)
        state.elapsed = time.perf_counter() - start
        capped = cfg.max_steps is not None and state.steps >= cfg.max_steps
        if should_stop() and not capped and state.step < epoch_steps(cfg, len(d.train_y), state.epoch):
            state.stopped = True
            return state, s
        val = distributed.evaluate(s.eval_model, d.val_x, d.val_y, d.mean_t, d.std_t, cfg.eval_batch_size,
                                   channels_last, precision=s.eval_precision)
        # lr: the schedule's peak-relative rate at the epoch's last step (the recipe's optimizer.lr
        # times the schedule's factor; parameter kinds with an lr_scale differ by that scale).
        lr = cfg.lr * s.opt.param_groups[0].get("factor", 1.0) if s.opt.param_groups else float("nan")
        row = {"epoch": state.epoch, "iters": state.step, "avg_loss": avg_loss,
               "elapsed_s": state.elapsed, "val_acc": val["acc"], "val_loss": val["loss"], "lr": lr}
        state.history.append(row)
        log(f"Epoch: {state.epoch} | Iter: {state.step} | Average Loss: {avg_loss:.3f} | "
            f"Elapsed Time: {state.elapsed:.1f} s")
        log(f"Epoch: {state.epoch} | Validation Accuracy: "
            + (f"{val['acc']:.3f} %" if val["total"] else "n/a (--val-size 0)"))
        state.epoch, state.step, state.loss_sum = state.epoch + 1, 0, 0.0
        if capped:
            state.epoch = cfg.epochs + 1  # a step cap ends the run
        if on_epoch_end is not None and on_epoch_end(row, state, s) is False:
            return state, s  # asked to end here: a finished run of fewer epochs, resumable
        if should_stop() and state.epoch <= cfg.epochs:
            state.stopped = True
            return state, s
    return state, s
