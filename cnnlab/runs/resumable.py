"""What a checkpoint must hold for a run to resume from it, checked before any of it is used.

    check_checkpoint(ckpt, path)   # a one-line CnnlabError naming the file, or nothing

A checkpoint's digest proves that its bytes are the ones written; this proves they have the
structure this cnnlab writes (the right entries, of the right types and sizes), so that a file
edited by hand, or written by another version, is refused in one line instead of failing deep
inside torch. A checkpoint from a newer cnnlab, with entries this one does not know, says so.
"""
from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import CnnlabError
from ..training.loop import TrainState

FORMAT = 1  # the checkpoint format this cnnlab writes and reads
TOP = {"format", "model", "model_state", "optimizer_state", "state", "config", "schedule", "permutation",
       "data", "arithmetic", "versions", "rng"}
OPTIONAL = {"averaging_state", "selection_state"}
STATE_TYPES = {"epoch": int, "step": int, "loss_sum": float, "steps": int, "elapsed": float, "history": list,
               "stopped": bool}
assert set(STATE_TYPES) == {f.name for f in dataclasses.fields(TrainState)}  # kept in step with TrainState


def _release(text) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", str(text))
    return tuple(map(int, m.groups())) if m else None


def _newer(ckpt: dict) -> str | None:
    """The cnnlab version that wrote ckpt when it is newer than this one, else None."""
    versions = ckpt.get("versions")
    theirs = _release(versions.get("cnnlab")) if isinstance(versions, dict) else None
    mine = _release(__version__)
    newer_format = isinstance(ckpt.get("format"), int) and ckpt["format"] > FORMAT
    if theirs is not None and mine is not None and theirs > mine:
        return versions["cnnlab"]
    return "a newer one" if newer_format else None


def _is(value, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _tensor_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in value.items())


def _rng_problem(rng) -> str | None:
    if not isinstance(rng, dict) or not {"torch", "python", "numpy"} <= set(rng):
        return "rng is not a table of the torch, python and numpy generators' states"
    want = torch.get_rng_state()
    t = rng["torch"]
    if not isinstance(t, torch.Tensor) or t.dtype != want.dtype or t.shape != want.shape:
        return f"rng.torch is not a generator state ({want.numel()} bytes)"
    py = rng["python"]
    n_py = len(random.getstate()[1])
    if not (isinstance(py, (tuple, list)) and len(py) == 3 and isinstance(py[1], (tuple, list))
            and len(py[1]) == n_py and all(_is(v, int) for v in py[1])):
        return f"rng.python is not a generator state ({n_py} numbers)"
    n = rng["numpy"]
    n_np = len(np.random.get_state()[1])
    if not (isinstance(n, dict) and {"key", "keys", "pos", "has_gauss", "cached"} <= set(n)
            and isinstance(n["keys"], torch.Tensor) and n["keys"].shape == (n_np,)
            and _is(n["pos"], int) and 0 <= n["pos"] <= n_np and _is(n["has_gauss"], int) and _is(n["cached"], float)):
        return f"rng.numpy is not a generator state ({n_np} numbers)"
    return None


def _problem(ckpt: dict) -> str | None:
    """What is wrong with the checkpoint's structure, in a few words, or None."""
    missing = sorted(TOP - set(ckpt))
    if missing:
        return f"it lacks {', '.join(missing)}"
    if not _is(ckpt["format"], int) or ckpt["format"] != FORMAT:
        return f"its format is {ckpt['format']!r}, not {FORMAT}"
    if not _tensor_dict(ckpt["model_state"]):
        return "model_state is not a table of tensors"
    opt = ckpt["optimizer_state"]
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)):
        return "optimizer_state is not an optimizer's state"
    state = ckpt["state"]
    if not isinstance(state, dict):
        return f"state is {type(state).__name__}, not a table"
    if set(state) != set(STATE_TYPES):
        extra, lacks = sorted(set(state) - set(STATE_TYPES)), sorted(set(STATE_TYPES) - set(state))
        return "state " + (f"has unknown entries {', '.join(extra)}" if extra else f"lacks {', '.join(lacks)}")
    for key, kind in STATE_TYPES.items():
        if not _is(state[key], kind):
            return f"state.{key} is {state[key]!r}, not {'a number' if kind is float else kind.__name__}"
    if state["epoch"] < 1 or state["step"] < 0 or state["steps"] < 0 or not all(isinstance(r, dict) for r in state["history"]):
        return "state holds impossible values (epoch, step or history)"
    if not isinstance(ckpt["config"], dict):
        return "config is not a table"
    if (problem := _rng_problem(ckpt["rng"])) is not None:
        return problem
    avg = ckpt.get("averaging_state")
    if avg is not None and not (isinstance(avg, dict) and _is(avg.get("updates"), int) and _tensor_dict(avg.get("weights"))):
        return "averaging_state is not an average's state"
    sel = ckpt.get("selection_state")
    if sel is not None and not (isinstance(sel, dict) and isinstance(sel.get("losses"), torch.Tensor)
                                and isinstance(sel.get("ranked"), torch.Tensor)):
        return "selection_state is not a selection's state"
    unknown = sorted(set(ckpt) - TOP - OPTIONAL)
    if unknown:
        return f"it has unknown entries {', '.join(map(str, unknown))}"
    return None


def check_checkpoint(ckpt: dict, path: Path) -> None:
    """Refuse, in one line naming path, a checkpoint without the structure this cnnlab writes."""
    problem = _problem(ckpt)
    if problem is None:
        return
    newer = _newer(ckpt)
    if newer is not None:
        raise CnnlabError(f"{path} was written by cnnlab {newer}, newer than this cnnlab {__version__} "
                          f"({problem}): resume it with that version (pip install -U cnnlab)")
    raise CnnlabError(f"{path} does not have the structure of a cnnlab checkpoint ({problem}): it "
                      f"cannot be resumed; use an earlier copy or train again")


def load_into(what: str, path: Path, load) -> None:
    """load() (a load_state_dict of the model, optimizer, ...), its failure in one line naming path."""
    try:
        load()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"{path}: its {what} does not fit this run ({first[:160]}): it cannot be "
                          f"resumed; use an earlier copy or train again") from None
