"""When a compiled kernel may stand in for ATen's operators: the checks every kernel shares.

    if not recorded() and not watched((conv, pool)) and parallel(lib): ...
"""
from __future__ import annotations

import torch
import torch.nn as nn


def recorded() -> bool:
    """Whether ATen's operators must run: an exported or compiled graph records them (tracing,
    scripting, torch.compile), and autocast asks for bf16."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.is_autocast_enabled("cpu"))


def watched(modules) -> bool:
    """Whether a hook would see these modules' forward or backward (inspection, summaries, Captum)."""
    g = nn.modules.module
    if g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks \
            or g._global_backward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules)


def parallel(lib) -> bool:
    """Whether a loaded kernel library runs on torch's threads: built without OpenMP it runs one
    thread, no faster than ATen's several, so it stands in only where torch runs one."""
    return lib is not None and (lib._threaded or torch.get_num_threads() == 1)
