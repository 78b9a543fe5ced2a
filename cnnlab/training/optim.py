"""Optimizers from a recipe: Adam, SGD (Nesterov) or Muon, decoupled weight decay, a learning rate per kind of parameter.

    opt = build(model, Optimizer(name="sgd", lr=0.05, nesterov=True, weight_decay=5e-4))
    set_lr(opt, factor)      # the schedule's factor for the coming step
    step(opt)                # decoupled weight decay, then the optimizer's own step

Parameters are grouped by kind: "weight" (conv and linear weights), "bias" (their biases) and
"norm" (batch-norm scales and shifts); a model may say which is which with a method
param_groups() -> {"weight": [...], "bias": [...], "norm": [...]}. Each kind gets
lr * lr_scale[kind]; kinds with the same settings share one torch param group, in the model's
parameter order (so the report's recipe is one group, exactly as torch.optim.Adam(model.parameters())).
A kind with lr_scale 0 is frozen: its parameters stop requiring gradients, so autograd skips
their backward work (for the fast-* models, the whitening bias: its GELU's backward at full resolution).

train_epochs[kind] = N > 0 trains the kind in epochs 1..N only (airbench trains its whitening
bias for 3 epochs): set_epoch() freezes it from epoch N + 1, a pure function of the epoch, so a
resumed run freezes the same. Frozen parameters take no step and no decay; the optimizer keeps
their momentum untouched.

name = "muon": the conv filters (trainable 4-D weights) form one more group that cnnlab.training.muon steps
with the recipe's [optimizer.muon] settings (its own lr, momentum; no decay: it normalizes the
filters); every other parameter is in the SGD groups above, with lr_scale and decay as for sgd.

Decoupled weight decay (AdamW's, for SGD too): before each step every weight is multiplied
by 1 - lr * factor * weight_decay * decay_scale[kind]; the peak lr here is the recipe's,
not scaled per kind, so a kind with a large lr_scale (BN biases) is not decayed faster.
"""
from __future__ import annotations

import sys

import torch
import torch.nn as nn
from torch.optim import optimizer as torch_optimizer

from ..errors import CnnlabError
from .muon import step_filters
from ..recipes.schema import MuonSettings, Optimizer

KINDS = ("weight", "bias", "norm")
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's trainable parameters by kind, each list in the model's parameter order."""
    kind_of = {}
    if hasattr(model, "param_groups"):
        for kind, params in model.param_groups().items():
            if kind not in KINDS:
                raise ValueError(f"{type(model).__name__}.param_groups() returned kind {kind!r}; "
                                 f"the kinds are {', '.join(KINDS)}")
            kind_of.update({id(p): kind for p in params})
    else:
        for module in model.modules():
            for p in module.parameters(recurse=False):
                kind_of[id(p)] = "norm" if isinstance(module, NORMS) else "weight" if p.ndim > 1 else "bias"
    groups = {k: [] for k in KINDS}
    for p in model.parameters():
        if p.requires_grad and id(p) in kind_of:
            groups[kind_of[id(p)]].append(p)
    return groups


DYNAMO_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")
# skip_dynamo_import writes into torch's own cache, for the whole process: only the cnnlab
# command's process (cnnlab.cli), or a caller that asks with allow_skipping_dynamo_import(), has it.
_skip_dynamo: list[bool] = [False]


def allow_skipping_dynamo_import(allow: bool = True) -> None:
    """Opt in (the cnnlab command does) to skip_dynamo_import in every later build().

    It marks torch.optim's wrapped methods as already cleared for torch.compile, for the rest of
    the process: right for a process that compiles nothing, wrong for one that may later call
    torch.compile. A library call (cnnlab.train in a notebook) therefore never does it unasked.
    """
    _skip_dynamo[0] = allow


def skip_dynamo_import() -> None:
    """Spare a run that compiles nothing torch.optim's import of torch._dynamo (0.84 s measured
    on the 2-core Xeon, a fifth of a short run's start-up).

    torch.optim wraps these Optimizer methods in torch._disable_dynamo, whose first call imports
    torch._dynamo only to keep torch.compile from tracing them, then caches the result on the
    method as __dynamo_disable. Where nothing is compiled that result would be the method itself,
    so it is cached here directly. Best effort (torch's private protocol): a torch without it
    just pays the import. See step() for the optimizer's step.
    """
    if "torch._dynamo" in sys.modules:
        return
    for name in DYNAMO_WRAPPED:
        fn = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if callable(fn) and getattr(fn, "__dynamo_disable", None) is None:
            setattr(fn, "__dynamo_disable", fn)


def _plain_step(opt: torch.optim.Optimizer):
    """The optimizer class's own step method without torch.optim's two wrappers, or None.

    The outer wrapper runs optimizer hooks and names the step for the profiler; the inner one
    (_use_grad) turns gradients off, which step() does itself, and imports torch._dynamo to mark
    graph breaks for torch.compile. step() uses it only where nothing is compiled and no hook is
    registered; None where torch's wrappers are not the two expected (opt.step() is used then).
    """
    fn, depth = type(opt).step, 0
    while hasattr(fn, "__wrapped__") and depth < 3:
        fn, depth = fn.__wrapped__, depth + 1
    return fn if depth == 2 else None


def _hooked(opt: torch.optim.Optimizer) -> bool:
    """Whether any optimizer step hook is registered, on opt or globally (torch.optim's wrapper
    must then run)."""
    return bool(getattr(opt, "_optimizer_step_pre_hooks", None) or getattr(opt, "_optimizer_step_post_hooks", None)
                or getattr(torch_optimizer, "_global_optimizer_pre_hooks", None)
                or getattr(torch_optimizer, "_global_optimizer_post_hooks", None))


def build(model: nn.Module, cfg: Optimizer, device: torch.device | None = None,
          compiling: bool = False, epochs: int | None = None) -> torch.optim.Optimizer:
    """The torch optimizer for model's parameters as the recipe's [optimizer] table says.

    compiling: the run uses torch.compile, so torch._dynamo is wanted (see skip_dynamo_import,
    done only after allow_skipping_dynamo_import()).
    epochs: the run's, to refuse train_epochs that leave nothing to train (see check)."""
    if not compiling and _skip_dynamo[0]:
        skip_dynamo_import()
    check(model, cfg, epochs)
    kinds = param_groups(model)
    for kind in KINDS:
        if getattr(cfg.lr_scale, kind) == 0:  # frozen: no step, no decay, and no gradient computed
            for p in kinds[kind]:
                p.requires_grad_(False)
            kinds[kind] = []
    settings = {k: (cfg.lr * getattr(cfg.lr_scale, k), cfg.lr * cfg.weight_decay * getattr(cfg.decay_scale, k))
                for k in KINDS}
    by_setting: dict[tuple, list] = {}
    for kind in KINDS:
        for p in kinds[kind]:
            by_setting.setdefault(settings[kind], []).append(p)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    groups = [{"params": sorted(ps, key=lambda p: order[id(p)]), "lr": lr, "peak_lr": lr, "decay_rate": rate,
               "factor": 1.0} for (lr, rate), ps in by_setting.items()]
    cuda = device is not None and device.type == "cuda"
    if cfg.name == "adam":
        # fused Adam is one kernel per step on CUDA; on this CPU foreach measured faster.
        opt = torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                               fused=True if cuda else None)
    elif cfg.name in ("sgd", "muon"):
        if cfg.name == "muon":
            groups = _muon_groups(groups, cfg.muon)
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}")
    opt.plain_step = None if compiling else _plain_step(opt)  # see step()
    opt.kinds = kinds  # the trainable parameters by kind, for set_epoch
    opt.frozen = []  # parameters set_epoch froze: step() drops their gradients
    return opt


def _muon_groups(groups: list[dict], cfg: MuonSettings) -> list[dict]:
    """groups with the conv filters (4-D weights) moved into one group that cnnlab.training.muon steps:
    its own lr, momentum and iterations, no decoupled decay (Muon normalizes the filters)."""
    filters = [p for g in groups for p in g["params"] if p.ndim == 4]
    rest = [{**g, "params": [p for p in g["params"] if p.ndim != 4]} for g in groups]
    muon = {"params": filters, "lr": cfg.lr, "peak_lr": cfg.lr, "decay_rate": 0.0, "factor": 1.0,
            "muon": True, "momentum": cfg.momentum, "nesterov": cfg.nesterov, "ns_steps": cfg.ns_steps}
    return [g for g in rest if g["params"]] + ([muon] if filters else [])


def check(model: nn.Module, cfg: Optimizer, epochs: int | None = None) -> None:
    """A CnnlabError if the recipe would leave this model nothing to train: every kind frozen by
    lr_scale 0, or (given the run's epochs) by train_epochs before its last epoch."""
    kinds = [k for k, params in param_groups(model).items() if params and getattr(cfg.lr_scale, k) != 0]
    if not kinds:
        raise CnnlabError("optimizer.lr_scale is 0 for every kind of parameter this model has: "
                          "nothing would train; give at least one kind a positive scale")
    if epochs is not None and all(0 < getattr(cfg.train_epochs, k) < epochs for k in kinds):
        last = max(getattr(cfg.train_epochs, k) for k in kinds)
        raise CnnlabError(f"optimizer.train_epochs freezes every kind of parameter after epoch {last} of "
                          f"{epochs}: nothing would train; set one kind's train_epochs to 0 (every epoch) "
                          f"or pass --epochs {last}")


def set_epoch(opt: torch.optim.Optimizer, cfg: Optimizer, epoch: int, skip_backward: bool = True) -> None:
    """Freeze each kind whose train_epochs (N > 0) are over by epoch (counted from 1), unfreeze
    the others. skip_backward: the frozen parameters stop requiring gradients, so autograd skips
    their work; False where the model is wrapped in DDP, which expects every gradient it was
    built with: step() then drops them."""
    opt.frozen = []
    for kind, params in getattr(opt, "kinds", {}).items():
        limit = getattr(cfg.train_epochs, kind)
        frozen = 0 < limit < epoch
        if limit:
            for p in params:
                p.requires_grad_(not (frozen and skip_backward))
        if frozen:
            opt.frozen += params


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's learning rate to its peak times the schedule's factor."""
    for g in opt.param_groups:
        g.setdefault("peak_lr", g["lr"])  # an optimizer state saved before schedules existed
        g["lr"] = g["peak_lr"] * factor
        g["factor"] = factor


@torch.no_grad()
def step(opt: torch.optim.Optimizer) -> None:
    """Decoupled weight decay (where the recipe asks for it), then the optimizer's step."""
    for p in getattr(opt, "frozen", ()):
        p.grad = None  # a kind past its train_epochs: no decay, no step
    step_filters(opt)  # the groups marked "muon" (none unless the recipe says muon); their grads are dropped
    for g in opt.param_groups:
        if g.get("decay_rate", 0.0) > 0:
            keep = 1.0 - g["decay_rate"] * g["factor"]
            for p in g["params"]:
                if p.grad is not None:
                    p.mul_(keep)
    plain = getattr(opt, "plain_step", None)
    if plain is not None and not _hooked(opt):  # the same update, without torch._dynamo (_plain_step)
        plain(opt)
    else:
        opt.step()


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load saved optimizer state, keeping this device's implementation choices (fused on
    CUDA): a checkpoint from the CPU must not turn fused Adam off on the GPU."""
    keep = ("fused", "foreach", "capturable")
    mine = opt.param_groups
    groups = [{**g, **{k: m[k] for k in keep if k in m}} for g, m in zip(saved["param_groups"], mine)]
    opt.load_state_dict({**saved, "param_groups": groups})
