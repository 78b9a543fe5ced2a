"""A run folder on disk: its creation, its config.json, versions, and reading it back.

    runs/<date-time>-<model>/
        config.json        resolved config, data description and fingerprint, library versions
        history.csv        epoch,iters,avg_loss,elapsed_s,val_acc,val_loss,lr (older runs: the first five)
        curves.png         validation accuracy and training loss per epoch
        metrics.json       test_acc, val_acc, epochs, train_seconds, model, params, ...
        checkpoint.pt      model + optimizer state and the run's description (weights_only-safe)
        model.safetensors  the weights alone
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import __version__, checkpoints, files
from ..network import models
from ..errors import CnnlabError
from . import lock
from ..training import arithmetic
from ..training.loop import TrainConfig, uses_channels_last

# val_loss and lr come after the first five columns, so scripts that read those keep working.
HISTORY_FIELDS = ["epoch", "iters", "avg_loss", "elapsed_s", "val_acc", "val_loss", "lr"]


def versions() -> dict:
    import PIL
    import safetensors
    return {"cnnlab": __version__, "torch": str(torch.__version__), "numpy": np.__version__,
            "pillow": PIL.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def machine() -> dict:
    """What the run ran on, for reports: OS, CPU model, count and instruction set, GPU name when
    CUDA is there."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    # The vector instruction set torch's CPU kernels run with (AVX2, AVX512, ...), and AMX or
    # AVX512-BF16, either of which makes precision auto pick bf16: CPU results are bitwise
    # repeatable only on the same kind.
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "amx": arithmetic.has_amx(),
            "avx512_bf16": arithmetic.has_avx512_bf16()}


def _refuse_used(path: Path) -> None:
    raise CnnlabError(f"--out {path} already exists and is not empty: choose a new folder "
                      f"so no earlier run is overwritten")


def unstarted(path: Path) -> bool:
    """Whether folder path holds nothing but what a run stopped before it began leaves behind
    (its lock file, partial writes): no config.json, nothing else a run or the user wrote."""
    return all(p.name == lock.LOCK_NAME or (p.name.startswith(".") and p.name.endswith(".tmp"))
               for p in Path(path).iterdir())


def _default_path(model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = Path("runs") / f"{stamp}-{model}", 1
    while path.exists():
        k += 1
        path = Path("runs") / f"{stamp}-{model}-{k}"
    return path


def plan_run_dir(out: str | None, model: str) -> Path:
    """The run folder to train into, checked but not yet created: a new or empty folder whose
    disk we may write to. An existing non-empty folder is never written into."""
    path = _default_path(model) if out is None else Path(out)
    if path.exists() and (not path.is_dir() or not unstarted(path)):
        _refuse_used(path)
    files.check_writable_folder(path, "the run folder")
    return path


@dataclass(frozen=True)
class Claim:
    """A run folder claimed by claim_run_dir: created (or found empty) and locked by us."""
    path: Path
    fd: int  # the lock's open file (lock.hold(path, fd) holds it on and releases it)
    created: bool  # we made the folder (a refused run removes it again)
    parents: tuple[Path, ...] = ()  # the folders above it that we made, deepest first


def claim_run_dir(out: str | None, model: str) -> Claim:
    """Create and lock the run folder in one step, before anything else is done for the run.

    Two runs given the same --out cannot both have it: os.mkdir creates a folder once, and an
    existing folder (empty, or left by a run stopped before it began: a lock file, partial
    writes) is taken only under its lock, then checked again. The loser gets one line.
    """
    path = plan_run_dir(out, model)
    parents = [a for a in path.parents if not a.exists()]  # made here, so removed again on a refusal
    files.make_folder(path.parent)
    while True:
        try:
            os.mkdir(path)
            created = True
        except FileExistsError:
            if out is None:  # another run took this date-time name meanwhile: take the next one
                path = _default_path(model)
                continue
            if not path.is_dir():
                _refuse_used(path)
            created = False
        except OSError as e:
            raise files.write_error(e, path, f"the folder {path}") from None
        break
    try:
        fd = lock.acquire(path)
    except CnnlabError:
        raise CnnlabError(f"--out {path} is being written by another cnnlab process (PID "
                          f"{lock.holder(path)}): choose a new folder") from None
    claim = Claim(path, fd, created, tuple(parents))
    try:
        if not unstarted(path):  # a run finished into it while we waited for its lock
            _refuse_used(path)
        checkpoints.remove_partial_writes(path)
    except BaseException:
        lock.release(path, fd)
        raise
    return claim


def unclaim(claim: Claim) -> None:
    """Undo claim_run_dir for a refused run: the lock goes, and the folder if we made it."""
    lock.release(claim.path, claim.fd)
    if claim.created:
        for folder in (claim.path, *claim.parents):
            files.remove_if_empty(folder)


def make_run_dir(path: Path) -> Path:
    """Create the folder planned by plan_run_dir (call it once everything else was checked)."""
    return files.make_folder(path)


def new_run_dir(out: str | None, model: str) -> Path:
    """The run folder, created empty; an existing non-empty folder is never written into."""
    return make_run_dir(plan_run_dir(out, model))


def write_json(path: Path, obj) -> None:
    checkpoints.atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def describe(cfg: TrainConfig, data, d, device, model, threads: dict | None = None) -> dict:
    """config.json: the resolved configuration and what the run was trained on. threads: the
    run's CPU threads and how they were chosen (cnnlab.training.threads.choose)."""
    info = {"source": data.source, "kind": data.kind, "fingerprint": data.fingerprint, "classes": data.classes,
            "image_size": data.train_x.shape[-1], "resize": cfg.resize, "mean": d.mean, "std": d.std,
            "train": len(d.train_y), "val": len(d.val_y), "test": len(d.test_y)}
    arith = arithmetic.resolve(cfg.precision, uses_channels_last(cfg), device)
    return {"config": cfg.to_dict(), "data": info, "device": str(device),
            "precision": arith["precision"], "arithmetic": arith,
            **(threads or {"threads": torch.get_num_threads()}), "params": models.count_params(model),
            "versions": versions(), "machine": machine(), "command": " ".join(sys.argv)}


def _number(x: float) -> float | None:
    """JSON has no NaN: an undefined value (no validation split) is written as null."""
    return None if math.isnan(x) else x


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).exists():
        raise CnnlabError(f"{run_dir} does not exist: pass a run folder made by 'cnnlab train' "
                          f"(by default under runs/)")
    if not path.is_file():
        if Path(run_dir).is_dir() and any(Path(run_dir).iterdir()) and unstarted(run_dir):  # killed while it read its data
            raise CnnlabError(f"{run_dir} holds no run: the run started into it was stopped before it began "
                              f"training; start it again into the same folder with: cnnlab train --out "
                              f"{run_dir} (and the settings it was started with)")
        raise CnnlabError(f"{run_dir} is not a run folder (no config.json): pass a folder made by "
                          f"'cnnlab train'")
    try:
        config = json.loads(path.read_text())
        config["data"]["classes"], config["config"]["model"]  # noqa: B018 - the keys must be there
    except (ValueError, KeyError, TypeError) as e:
        raise CnnlabError(f"{path} is damaged ({type(e).__name__}: {e}): the run cannot be reloaded") from None
    return config
