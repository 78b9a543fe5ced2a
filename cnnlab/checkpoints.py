"""Checkpoints and weights on disk: written atomically, read without ever running code.

A checkpoint is a plain dict of tensors and primitives saved with torch.save and read back
only with torch.load(weights_only=True); weights alone go to safetensors. Writes go to a
temporary file in the same folder, are flushed and fsynced, then renamed over the target,
so a crash at any moment leaves the previous file intact.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CnnlabError


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), fsync it, then rename it over path (and fsync the folder)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


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
    if not isinstance(state, dict) or "model_state" not in state:
        raise CnnlabError(f"{path} is not a cnnlab checkpoint (no model_state): pass a run folder "
                          f"made by 'cnnlab train'")
    return state


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"weights file {path} does not exist: pass a run folder made by 'cnnlab train'")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnlabError(f"weights file {path} is damaged ({e}): use the run's checkpoint.pt "
                          f"or train again") from None
