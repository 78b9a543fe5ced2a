"""Checkpoints and weights on disk: written atomically, read without ever running code.

A checkpoint is a plain dict of tensors and primitives saved with torch.save and read back
only with torch.load(weights_only=True); weights alone go to safetensors. Writes go to a
temporary file in the same folder, are flushed and fsynced, then renamed over the target,
so a crash at any moment leaves the previous file intact.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .files import atomic_write, atomic_write_bytes  # noqa: F401  (torch-free, in files.py)
from .errors import CnnlabError


def digest(obj, h=None) -> str:
    """sha256 over a checkpoint's whole content: tensors' bytes, dtypes and shapes, and values.

    torch.load notices a damaged archive structure but not flipped bits inside tensor data;
    this digest, stored in the checkpoint and checked on load, does.
    """
    top = h is None
    h = h or hashlib.sha256()
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=str):
            h.update(repr(key).encode())
            digest(obj[key], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for item in obj:
            digest(item, h)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    return h.hexdigest() if top else ""


def save_checkpoint(path: Path, state: dict) -> None:
    state = {**state, "digest": digest(state)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """The checkpoint dict; a file that would need arbitrary unpickling is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"checkpoint {path} does not exist: pass a run folder made by 'cnnlab train'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"refusing to load {path}: it holds objects other than tensors and plain "
                          f"values ({first[:120]}); only load checkpoints made by cnnlab") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise CnnlabError(f"checkpoint {path} is damaged or truncated ({type(e).__name__}): "
                          f"use an earlier copy or train again") from None
    if not isinstance(state, dict) or "model_state" not in state or "digest" not in state:
        raise CnnlabError(f"{path} is not a cnnlab checkpoint (no model_state or digest): pass a run "
                          f"folder made by 'cnnlab train'")
    stored = state.pop("digest")
    if digest(state) != stored:
        raise CnnlabError(f"checkpoint {path} is damaged (its content does not match its digest): "
                          f"use an earlier copy or train again")
    return state


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    """The weights alone, as safetensors, with a sha256 of them in the metadata."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {**(metadata or {}), "sha256": digest(tensors)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file {path} does not exist: pass a run folder made by 'cnnlab train'")
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            stored = (f.metadata() or {}).get("sha256")
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnlabError(f"weights file {path} is damaged ({e}): use the run's checkpoint.pt "
                          f"or train again") from None
    if stored is not None and digest(tensors) != stored:
        raise CnnlabError(f"weights file {path} is damaged (its tensors do not match their sha256): "
                          f"use the run's checkpoint.pt or train again")
    return tensors


def remove_partial_writes(folder: Path) -> int:
    """Delete temp files that a crash left behind in folder; returns how many."""
    leftovers = list(Path(folder).glob(".*.tmp"))
    for p in leftovers:
        p.unlink(missing_ok=True)
    return len(leftovers)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def rng_state(device: torch.device | None = None) -> dict:
    """The random generators' states, as tensors and plain values (weights_only-safe).

    The CPU's always; a GPU's only when device is one: a CPU run never touches the GPUs.
    """
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"key": key, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)}}
    if device is not None and device.type == "cuda":
        index = _cuda_index(device)
        state["cuda"] = {"index": index, "state": torch.cuda.get_rng_state(index)}
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore what rng_state saved; a GPU's state goes to the GPU in use now, if any."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    saved = state.get("cuda")
    if device is None or device.type != "cuda" or not saved:
        return
    index = _cuda_index(device)
    if isinstance(saved, dict):
        torch.cuda.set_rng_state(saved["state"], index)
    else:  # older checkpoints kept every GPU's state: take the one of the same number, or the first
        torch.cuda.set_rng_state(saved[index] if index < len(saved) else saved[0], index)
