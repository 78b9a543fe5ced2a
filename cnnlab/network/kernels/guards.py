"""When a compiled kernel may stand in for ATen's operators: the checks every kernel shares.

    if not recorded() and not watched((conv, pool)) and parallel(lib): ...
    if same_conv3x3(conv): ...     # the conv the compiled passes compute
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


def same_conv3x3(conv: nn.Module) -> bool:
    """Whether conv is a plain 3x3 'same' conv at stride 1 (zero padding, one group, no dilation)
    with fp32 weights on the CPU: the conv every compiled pass computes."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding in ((1, 1), "same")
            and conv.padding_mode == "zeros"
            and conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu")


def parallel(lib) -> bool:
    """Whether a loaded kernel library runs on torch's threads: built without OpenMP it runs one
    thread, no faster than ATen's several, so it stands in only where torch runs one."""
    return lib is not None and (lib._threaded or torch.get_num_threads() == 1)
