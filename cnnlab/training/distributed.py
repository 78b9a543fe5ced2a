"""Training in several processes (DDP): torchrun's environment, the process group, rank 0's role.

    torchrun --nproc-per-node 2 -m cnnlab train ...   # each process runs cnnlab train
    with session("cpu"):                              # gloo on the CPU, nccl on CUDA
        rows = rank_slice(len(batch), rank(), world())

torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without
them (a plain `cnnlab train`) everything here is a no-op for one process, rank 0 of 1.

The recipe's batch size is the global batch: every process draws the same (seed, epoch)
permutation and takes its own contiguous part of each step's batch (rank_slice), so a run's
arithmetic does not depend on how many processes share it (up to float rounding). Rank 0 alone
prints, writes the run folder and its checkpoints; evaluation splits the images by whole
evaluation batches and sums the counts (evaluate), so its numbers are one process's.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import threading
import warnings

import torch

from ..errors import CnnlabError, CnnlabWarning
from ..analysis.evaluate import evaluate as evaluate_all


def timeout_s() -> int:
    """Seconds a collective waits for the other processes before it fails and the run ends
    (CNNLAB_DIST_TIMEOUT, default 300): the bound when a machine goes away without closing its
    connections. A process that dies on this machine is usually noticed at once (its sockets
    close), and torchrun's agent stops the others anyway: SIGTERM, then SIGKILL after 30 s."""
    text = os.environ.get("CNNLAB_DIST_TIMEOUT", "300")
    if not text.strip().isdigit() or int(text) < 1:
        raise CnnlabError(f"CNNLAB_DIST_TIMEOUT must be a positive number of seconds, got {text!r}")
    return int(text)


BACKENDS = ("auto", "gloo", "nccl")


def launched() -> bool:
    """Whether torchrun (or torch.distributed.run) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world() -> int:
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that prints and writes."""
    return rank() == 0


def pick_backend(name: str, device: torch.device) -> str:
    if name not in BACKENDS:
        raise CnnlabError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise CnnlabError("--dist-backend nccl needs CUDA GPUs (one per process) and this run trains on the "
                          "CPU: use --dist-backend gloo (the default on the CPU)")
    return name


def local_world() -> int:
    """How many processes of the run share this machine (1 outside torchrun)."""
    return _env_int("LOCAL_WORLD_SIZE", 1) if launched() else 1


def local_device(device: torch.device) -> torch.device:
    """CUDA: this process's own GPU (LOCAL_RANK); the CPU stays the CPU."""
    if device.type != "cuda" or not launched():
        return device
    local = _env_int("LOCAL_RANK", 0)
    if local >= torch.cuda.device_count():
        raise CnnlabError(f"process {local} of this machine has no GPU of its own ({torch.cuda.device_count()} "
                          f"visible): start at most one process per GPU (--nproc-per-node)")
    return torch.device("cuda", local)


@contextlib.contextmanager
def session(device: torch.device, backend: str = "auto"):
    """Join torchrun's process group for the duration (no-op outside torchrun); always leave it.

    On ranks other than 0 it silences warnings: rank 0 says them once. (Each process's CPU
    threads are the run's own: cnnlab.training.threads.)
    """
    backend = pick_backend(backend, device)
    if not launched():
        yield
        return
    kwargs = {}
    if backend == "nccl":
        dev = local_device(device)
        torch.cuda.set_device(dev)
        kwargs["device_id"] = dev
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()), **kwargs)
    with warnings.catch_warnings():
        if not is_main():
            warnings.simplefilter("ignore")
        try:
            yield
        except PeerLost as e:
            # Leaving a group whose peers are gone, even the interpreter's own exit, waits on them
            # (about a second, measured): say the line and end now.
            print(f"cnnlab: error: {e}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(e.exit_code)
        except BaseException:
            _leave()
            raise
    _leave()


def _leave() -> None:
    with contextlib.suppress(Exception):
        torch.distributed.destroy_process_group()


def rank_slice(n: int, rank: int, world: int) -> slice:
    """Rank's contiguous part of a batch of n: in rank order the parts make the batch; sizes differ
    by at most one (the first n % world ranks take one more), so a short last batch is split too."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def wrap(model: torch.nn.Module, sync_bn: bool, device: torch.device) -> torch.nn.Module:
    """The model to train with: model itself for one process, else DDP(model), which averages
    the gradients over the ranks. sync_bn (the recipe's): BatchNorm normalizes over the global
    batch (SyncBatchNorm, in place), as one process does; torch runs it only on GPUs, so on the
    CPU each process normalizes its own part, said in a warning."""
    if world() == 1:
        return model
    if sync_bn and _has_batchnorm(model):
        if device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorm layers in place
        elif is_main():
            warnings.warn("sync_bn: torch's SyncBatchNorm runs on GPUs only, so on the CPU each process's "
                          "BatchNorm normalizes its own part of the batch (results differ slightly from "
                          "one process; --set sync_bn=false silences this)", CnnlabWarning, stacklevel=2)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def main_only(fn, *args, **kwargs):
    """fn(...) on rank 0; its result (a picklable value) on every rank. Rank 0's CnnlabError is
    raised on rank 0 and, as a silent Follow of the same exit status, on the others."""
    if world() == 1:
        return fn(*args, **kwargs)
    box = [None]
    if is_main():
        try:
            box = [("ok", fn(*args, **kwargs))]
        except BaseException as e:  # the others must not wait for a result that never comes
            torch.distributed.broadcast_object_list([("error", getattr(e, "exit_code", 2))], src=0)
            raise
    torch.distributed.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise Follow(value)
    return value


def same_as_main(value, what: str) -> None:
    """Raise on a rank whose value differs from rank 0's (the data on another machine, say)."""
    if world() == 1:
        return
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    if box[0] != value:
        raise CnnlabError(f"process {rank()} of {world()}: {what} differ from process 0's: every "
                          f"process must train on the same data (the same path and content on every machine)")


class Follow(CnnlabError):
    """Another rank failed and said why; this one ends with the same status, saying nothing."""

    def __init__(self, exit_code: int = 2):
        super().__init__("")
        self.exit_code = exit_code


def any_rank(flag: bool) -> bool:
    """True on every rank when flag is True on any (a collective: every rank must call it)."""
    if world() == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int32, device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def sum_ranks(t: torch.Tensor) -> torch.Tensor:
    """t summed over the ranks (t itself for one process)."""
    if world() == 1:
        return t
    t = t.clone()
    torch.distributed.all_reduce(t)
    return t


def _collective_device() -> torch.device:
    backend = torch.distributed.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


@torch.no_grad()
def broadcast_state(module: torch.nn.Module) -> None:
    """Every rank takes rank 0's weights and buffers (BatchNorm's running statistics differ
    between ranks when each normalizes its own slice)."""
    if world() == 1:
        return
    for t in module.state_dict().values():
        torch.distributed.broadcast(t, src=0)


def evaluate(model, x, y, mean, std, batch_size: int = 1000, channels_last: bool = False, tta: str = "none",
             precision: str = "fp32") -> dict:
    """cnnlab.analysis.evaluate.evaluate over all ranks: each takes a run of whole evaluation batches (the
    very batches one process would use, so the same logits), and the counts are summed."""
    if world() == 1:
        return evaluate_all(model, x, y, mean, std, batch_size, channels_last, tta, precision)
    broadcast_state(model)
    total = len(x)
    batches = -(-total // batch_size)
    mine = rank_slice(batches, rank(), world())
    lo, hi = min(mine.start * batch_size, total), min(mine.stop * batch_size, total)
    part = evaluate_all(model, x[lo:hi], y[lo:hi], mean, std, batch_size, channels_last, tta, precision)
    local = torch.tensor([part["correct"], part["loss"] * part["total"] if part["total"] else 0.0],
                         dtype=torch.float64, device=_collective_device())
    correct, loss_sum = sum_ranks(local).tolist()
    if total == 0:
        return {"acc": float("nan"), "loss": float("nan"), "correct": 0, "total": 0}
    return {"acc": 100.0 * int(correct) / total, "loss": loss_sum / total, "correct": int(correct), "total": total}


def record() -> dict:
    """How many processes train the run: config.json's "distributed"."""
    return {"world_size": world(), "backend": torch.distributed.get_backend() if active() else None}


def record_change(config: dict, epoch: int, step: int) -> dict | None:
    """config with this resume's change of world size appended to "distributed", or None when it
    is the same. The arithmetic does not depend on the number of processes (up to float rounding
    and dropout's draws), so a run resumes with any; the change is recorded, as one of precision is."""
    was, now = config.get("distributed", {"world_size": 1}), record()
    if was.get("world_size") == now["world_size"]:
        return None
    changes = [*was.get("changes", []), {"epoch": epoch, "step": step, "from": was.get("world_size"),
                                         "to": now["world_size"]}]
    return {**config, "distributed": {**now, "changes": changes}}


def resume_hint(out) -> str:
    return f"cnnlab train --resume {out}" + (f" --nproc {world()}" if world() > 1 else "")


class PeerLost(CnnlabError):
    """Another process of the run stopped (killed, crashed, or its node went away)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.exit_code = 1


def peer_lost(e: BaseException, out) -> PeerLost | None:
    """The one-line error for a collective that failed because another process is gone; None
    when e is something else (or this is not a distributed run)."""
    if world() == 1 or not isinstance(e, RuntimeError):
        return None
    if threading.current_thread() is threading.main_thread():
        # torchrun's agent now sends SIGTERM to the processes left: this one ends anyway, after
        # its one line, with status 1.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    text = str(e).lower()
    why = (f"no answer within {timeout_s()} s" if "timed out" in text or "timeout" in text else
           "its connection closed" if "closed" in text or "reset" in text else type(e).__name__)
    return PeerLost(f"process {rank()} of {world()}: another process of this run stopped ({why}); "
                    f"the last checkpoint in {out} is kept; continue with: {resume_hint(out)}")
