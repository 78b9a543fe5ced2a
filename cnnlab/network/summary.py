"""Model summaries: per-layer shapes, parameters, MACs and receptive field of a torch model.

    from cnnlab.network import models
    from cnnlab.network.layers import render
    from cnnlab.network.summary import compare, summarize
    rows = summarize(models.create("seed"), (3, 32, 32))
    print(render(rows, [1, 3, 32, 32]))
    compare("seed", "seed-p1")     # the report's Discussion: the same network?

(cnnlab.summary("seed") gives the same table from the top-level package.)

Every output size, parameter count and MAC comes from the arithmetic in cnnlab.network.layers; a
forward pass only tells which layer ran, in what order, on which input shape (the tests
hold the arithmetic against the shapes the real modules produce).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import CnnlabError
from . import models
from .layers import Layer, Row, apply, totals

LARGEST_TRIED = 1024  # the smallest input that works is searched up to this size


def module_layer(name: str, module, in_shape: list[int] | None = None):
    """The Layer that describes a torch module (that ran on in_shape), or None for a kind the
    arithmetic does not know."""
    m = module
    if isinstance(m, nn.AdaptiveMaxPool2d) and m.output_size in (1, (1, 1)) and in_shape is not None:
        # a global max pool: on this input, a max pool whose one window is the whole map
        return Layer("maxpool", {"k": tuple(in_shape[-2:]), "s": None, "p": 0, "d": 1, "ceil": False}, name)
    if isinstance(m, nn.Conv2d) and m.groups == 1:
        p = m.padding if isinstance(m.padding, str) else tuple(m.padding)
        return Layer("conv", {"out": m.out_channels, "k": tuple(m.kernel_size), "s": tuple(m.stride),
                              "p": p, "d": tuple(m.dilation), "bias": m.bias is not None}, name)
    if isinstance(m, nn.MaxPool2d):
        return Layer("maxpool", {"k": m.kernel_size, "s": m.stride, "p": m.padding, "d": m.dilation,
                                 "ceil": m.ceil_mode}, name)
    if isinstance(m, nn.AvgPool2d):
        return Layer("avgpool", {"k": m.kernel_size, "s": m.stride, "p": m.padding, "ceil": m.ceil_mode}, name)
    if isinstance(m, nn.Linear):
        return Layer("linear", {"out": m.out_features, "bias": m.bias is not None}, name)
    if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
        return Layer("flatten", {}, name)
    if isinstance(m, nn.BatchNorm2d) and m.affine:
        return Layer("batchnorm", {}, name)
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return Layer("dropout", {"p": m.p}, name)
    for cls, kind in ((nn.ReLU, "relu"), (nn.GELU, "gelu"), (nn.SiLU, "silu"), (nn.ELU, "elu"),
                      (nn.LeakyReLU, "leakyrelu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"),
                      (nn.Softmax, "softmax"), (nn.Identity, "identity")):
        if isinstance(m, cls):
            return Layer(kind, {}, name)
    return None


def record_leaves(model, input_shape) -> list[tuple[str, object, list[int], list[int]]]:
    """(name, module, input shape, output shape) of every leaf module, in the order they ran."""
    calls, hooks = [], []
    for name, m in model.named_modules():
        if not list(m.children()):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: calls.append(
                    (name, mod, list(inp[0].shape), list(out.shape)))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(*input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def summarize(model, input_shape) -> list[Row]:
    """Rows for each layer of model on an input of input_shape (N, C, H, W; or C, H, W).

    Shapes, parameters and MACs come from the arithmetic; the forward pass only tells which
    layer ran on which input. Layers of kinds the arithmetic does not know are reported with
    their measured shape and counted parameters.
    """
    shape = list(input_shape) if len(input_shape) == 4 else [1, *input_shape]
    rows, rf = [], (1, 1)
    for name, module, in_shape, out_shape in record_leaves(model, shape):
        layer = module_layer(name, module, in_shape)
        if layer is None:
            params = sum(p.numel() for p in module.parameters(recurse=False))
            rows.append(Row(name, type(module).__name__, in_shape, out_shape, params, 0, None))
            rf = None
            continue
        row, rf = apply(layer, in_shape, rf)
        rows.append(row)
    return rows


def create_for(name: str, chw) -> nn.Module:
    """models.create for one C,H,W input; an input too small is refused in one line that names
    the layer that runs out of pixels and the smallest square input that works."""
    c, h, w = chw
    try:
        return models.create(name, image_size=(h, w), in_channels=c)
    except CnnlabError:
        smallest = next((s for s in range(1, LARGEST_TRIED + 1) if _builds(name, c, s)), None)
        if smallest is None:
            raise
    layer = _layer_that_fails(models.create(name, image_size=smallest, in_channels=c), [1, c, h, w])
    where = (f": layer {layer[0]} ({layer[1]}) gets {layer[2][-2]}x{layer[2][-1]} pixels, too few for it"
             if layer else "")
    raise CnnlabError(f"model {name} cannot take {h}x{w} inputs{where}; the smallest input that works "
                      f"is {smallest}x{smallest} (--input {c},{smallest},{smallest})")


def _builds(name: str, c: int, size: int) -> bool:
    try:
        models.create(name, image_size=size, in_channels=c)
    except CnnlabError:
        return False
    return True


def _layer_that_fails(model, input_shape) -> tuple[str, str, list[int]] | None:
    """(name, module, input shape) of the layer whose forward pass fails on input_shape."""
    entered, hooks = [], []
    for name, m in model.named_modules():
        if not list(m.children()):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, inp, name=name: entered.append((name, type(mod).__name__, list(inp[0].shape)))))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(*input_shape))
    except (RuntimeError, ValueError):
        return entered[-1] if entered else None
    finally:
        for hook in hooks:
            hook.remove()
    return None


def compare(name_a: str, name_b: str, input_chw=(3, 32, 32), seed: int = 0) -> dict:
    """Whether two registered models are the same network: layer shapes, parameter counts,
    and outputs on random input when b is given a's initial weights."""
    torch.manual_seed(seed)
    a = create_for(name_a, input_chw)
    b = create_for(name_b, input_chw)
    rows_a, rows_b = summarize(a, input_chw), summarize(b, input_chw)
    same_shapes = [r.out_shape for r in rows_a] == [r.out_shape for r in rows_b]
    same_params = [r.params for r in rows_a] == [r.params for r in rows_b]
    result = {"a": name_a, "b": name_b, "same_shapes": same_shapes, "same_params": same_params,
              "params": [totals(rows_a)["params"], totals(rows_b)["params"]], "max_abs_diff": None}
    try:
        b.load_state_dict(a.state_dict())
    except RuntimeError:
        return result  # different parameters: outputs cannot be compared weight for weight
    x = torch.randn(8, *input_chw, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        result["max_abs_diff"] = (a.eval()(x) - b.eval()(x)).abs().max().item()
    return result
