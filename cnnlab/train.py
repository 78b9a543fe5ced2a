"""The training loop: a plain function of a config, a model and the data tensors.

    cfg = TrainConfig(epochs=20)
    result = train(cfg, model, data)     # prints the report's two lines per epoch

The whole training split lives on the training device as one uint8 tensor; a batch is an
index into it, drawn from a permutation that is a pure function of (seed, epoch), so any
epoch can be replayed exactly. Nothing per-image happens in Python during an epoch.
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
from tqdm import tqdm

from .data import ImageData, channel_stats, normalize, split_indices
from .errors import CnnlabError
from .evaluate import evaluate


@dataclass
class TrainConfig:
    model: str = "seed"
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    seed: int = 0  # model init, train/validation split and batch order
    val_size: int = 5000  # held out of the 50k training images
    device: str = "auto"  # auto | cpu | cuda
    data: str | None = None  # dataset path; None searches the defaults (cnnlab.data.resolve)
    out: str | None = None  # run folder; None -> runs/<date-time>-<model>
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests)
    eval_batch_size: int = 1000
    channels_last: bool | None = None  # None: on where measured faster (CUDA and CPU)
    compile: bool = False  # torch.compile the model (CUDA: faster after warm-up)

    def validate(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be a positive integer, "
                                  f"got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise CnnlabError(f"--lr must be a positive number, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise CnnlabError(f"--max-steps must be a positive integer, got {self.max_steps}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise CnnlabError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    return torch.device(name)


def epoch_permutation(n: int, seed: int, epoch: int, device) -> torch.Tensor:
    """The batch order of one epoch: a pure function of (seed, epoch), so resuming replays it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).to(device)


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


def prepare(data: ImageData, cfg: TrainConfig, device: torch.device) -> Prepared:
    """Split the training images, compute normalization on the training part, move to device."""
    train_idx, val_idx = split_indices(len(data.train_y), cfg.val_size, cfg.seed)
    train_x = data.train_x[train_idx]
    mean, std = channel_stats(train_x)
    to = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    return Prepared(to(train_x), to(data.train_y[train_idx]), to(data.train_x[val_idx]),
                    to(data.train_y[val_idx]), to(data.test_x), to(data.test_y), mean, std)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    train_seconds: float = 0.0
    steps: int = 0


def uses_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.channels_last if cfg.channels_last is not None else True


def train(cfg: TrainConfig, model: torch.nn.Module, d: Prepared, log: Callable[[str], None] = print,
          on_epoch_end: Callable[[int, dict, torch.optim.Optimizer], None] | None = None) -> TrainResult:
    """Train model on d.train_* with Adam and cross-entropy, validating after every epoch."""
    device = d.train_x.device
    cuda = device.type == "cuda"
    channels_last = uses_channels_last(cfg, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    step_model = torch.compile(model) if cfg.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext())
    n = len(d.train_y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = epoch_permutation(n, cfg.seed, epoch, device)
        loss_sum = torch.zeros((), device=device)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr,
                   leave=False, disable=not sys.stderr.isatty(), dynamic_ncols=True)
        steps = 0
        for steps in range(1, steps_per_epoch + 1):
            idx = perm[(steps - 1) * cfg.batch_size: steps * cfg.batch_size]
            x = normalize(d.train_x[idx], d.mean, d.std).contiguous(memory_format=memory_format)
            y = d.train_y[idx]
            with autocast:
                loss = F.cross_entropy(step_model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            bar.update()
            result.steps += 1
            if cfg.max_steps is not None and result.steps >= cfg.max_steps:
                break
        bar.close()
        avg_loss = loss_sum.item() / steps  # the one host sync of the epoch
        elapsed = time.perf_counter() - start
        val = evaluate(model, d.val_x, d.val_y, d.mean, d.std, cfg.eval_batch_size, channels_last)
        row = {"epoch": epoch, "iters": steps, "avg_loss": avg_loss,
               "elapsed_s": elapsed, "val_acc": val["acc"]}
        result.history.append(row)
        log(f"Epoch: {epoch} | Iter: {steps} | Average Loss: {avg_loss:.3f} | Elapsed Time: {elapsed:.1f} s")
        log(f"Epoch: {epoch} | Validation Accuracy: {val['acc']:.3f} %")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, opt)
        if cfg.max_steps is not None and result.steps >= cfg.max_steps:
            break
    result.train_seconds = time.perf_counter() - start
    return result
