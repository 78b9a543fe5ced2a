"""Layer-by-layer shape arithmetic for a chain of layers written as text (cnnlab shape).

    rows = trace([1, 1, 32, 32], [parse_layer("conv(1,k=7,p=same)")])  # shapes, formulae, params, MACs
    print(render(rows, [1, 1, 32, 32], explain=True))

Layer text: name or name(args), args positional or key=value:
    conv(OUT, k=K, s=1, p=0|same|valid, d=1)     maxpool(K, s=K, p=0, d=1, ceil=false)
    avgpool(K, s=K, p=0, ceil=false)             linear(OUT)   flatten   dropout(P)
    batchnorm   relu gelu silu elu leakyrelu sigmoid tanh softmax identity
Kernels, strides, paddings and dilations take one number or HxW (e.g. k=3x5).
Every output size comes from cnnlab.network.shapes. cnnlab.network.summary applies the same arithmetic to
the layers of a model.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass

from ..errors import CnnlabError
from .shapes import conv2d_out, effective_kernel, pool2d_out, same_padding

ACTIVATIONS = ["relu", "gelu", "silu", "elu", "leakyrelu", "sigmoid", "tanh", "softmax", "identity"]
# kind -> (positional argument names, all argument names with defaults)
KINDS = {
    "conv": (["out", "k"], {"out": None, "k": None, "s": 1, "p": 0, "d": 1, "bias": True}),
    "maxpool": (["k"], {"k": None, "s": None, "p": 0, "d": 1, "ceil": False}),
    "avgpool": (["k"], {"k": None, "s": None, "p": 0, "ceil": False}),
    "linear": (["out"], {"out": None, "bias": True}),
    "flatten": ([], {}),
    "dropout": (["p"], {"p": 0.5}),
    "batchnorm": ([], {}),
    **{a: ([], {}) for a in ACTIVATIONS},
}
ALIASES = {"conv2d": "conv", "maxpool2d": "maxpool", "avgpool2d": "avgpool", "fc": "linear",
           "dense": "linear", "bn": "batchnorm", "batchnorm2d": "batchnorm", "leaky_relu": "leakyrelu"}
KEY_ALIASES = {"kernel": "k", "kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d",
               "out_channels": "out", "out_features": "out", "ceil_mode": "ceil"}


@dataclass
class Layer:
    kind: str
    args: dict
    text: str = ""  # how the layer was written (or the model's module name)


@dataclass
class Row:
    name: str
    kind: str
    in_shape: list[int]
    out_shape: list[int]
    params: int
    macs: int
    receptive_field: int | None  # input pixels (per side) one output pixel sees; None after flatten
    formula: str = ""  # the size arithmetic, for conv and pool layers
    padding_note: str = ""  # the solved padding, for padding='same'
    explain: str = ""  # the worked solution for P, for padding='same'

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ parsing

def parse_shape(text: str) -> list[int]:
    """An input shape N,C,H,W: exactly four positive integers (never guessed from three)."""
    try:
        dims = [int(t) for t in text.replace("x", ",").split(",") if t.strip()]
    except ValueError:
        raise CnnlabError(f"input shape {text!r} is not a list of integers: write it as N,C,H,W "
                          f"(e.g. 1,3,32,32)") from None
    if len(dims) == 3 and min(dims) >= 1:
        c, h, w = dims
        raise CnnlabError(f"input shape {text!r} has three numbers: write all four, N,C,H,W; for one "
                          f"{c}-channel {h}x{w} image that is 1,{c},{h},{w}")
    if len(dims) != 4 or min(dims) < 1:
        raise CnnlabError(f"input shape {text!r} must be four positive integers N,C,H,W (e.g. 1,3,32,32)")
    return dims


def parse_image_shape(text: str) -> list[int]:
    """One image's shape C,H,W (or 1,C,H,W), as cnnlab summary takes it: [C, H, W]."""
    try:
        dims = [int(t) for t in text.replace("x", ",").split(",") if t.strip()]
    except ValueError:
        dims = []
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) < 1:
        raise CnnlabError(f"input shape {text!r} must be three positive integers C,H,W, one image "
                          f"(e.g. 3,32,32)")
    return dims


def _value(text: str):
    t = text.strip().lower()
    if t in ("true", "false"):
        return t == "true"
    if t in ("same", "valid"):
        return t
    if re.fullmatch(r"\d+x\d+", t):
        return tuple(int(v) for v in t.split("x"))
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise CnnlabError(f"cannot read the value {text.strip()!r}: use a number, HxW, same, valid, "
                          f"true or false") from None


def parse_layer(text: str) -> Layer:
    m = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", text)
    if not m:
        raise CnnlabError(f"cannot read the layer {text!r}: write name or name(args), "
                          f"e.g. conv(16,k=3,p=same) (see 'cnnlab shape --help')")
    name = m.group(1).lower()
    kind = ALIASES.get(name, name)
    if kind not in KINDS:
        close = difflib.get_close_matches(name, list(KINDS) + list(ALIASES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CnnlabError(f"unknown layer {name!r} in {text!r}: {hint}known layers: {', '.join(KINDS)}")
    positional, defaults = KINDS[kind]
    args = dict(defaults)
    given = [a for a in (m.group(2) or "").split(",") if a.strip()]
    for i, item in enumerate(given):
        if "=" in item:
            key, value = item.split("=", 1)
            key = KEY_ALIASES.get(key.strip().lower(), key.strip().lower())
            if key not in defaults:
                raise CnnlabError(f"{kind} has no argument {key!r} in {text!r}: it takes "
                                  f"{', '.join(defaults) or 'no arguments'}")
            args[key] = _value(value)
        elif i < len(positional) and "=" not in "".join(given[:i]):
            args[positional[i]] = _value(item)
        else:
            raise CnnlabError(f"too many or misplaced positional arguments in {text!r}: "
                              f"{kind} takes {', '.join(positional) or 'none'} by position")
    missing = [k for k, v in args.items() if v is None and k != "s"]
    if missing:
        raise CnnlabError(f"{text!r} needs {', '.join(missing)}, e.g. "
                          f"{'conv(16,k=3)' if kind == 'conv' else kind + '(2)'}")
    return Layer(kind, args, text.strip())


# ------------------------------------------------------------------ arithmetic

def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _size_formula(n, k, s, p, d, ceil=False) -> str:
    """The size arithmetic as it is computed, e.g. floor((32 + 2*0 - (2*(3-1)+1))/1) + 1 = 28.

    With ceil=True, PyTorch drops the last window when it would start in the right padding
    (at or past n + p); the text then subtracts it and says why. What stands before ' = '
    evaluates to the size (tests hold it against PyTorch).
    """
    span = f"{k}" if d == 1 else f"({d}*({k}-1)+1)"
    numerator = n + 2 * p - effective_kernel(k, d)
    if not ceil:
        return f"floor(({n} + 2*{p} - {span})/{s}) + 1 = {numerator // s + 1}"
    raw = -(-numerator // s) + 1
    text = f"ceil(({n} + 2*{p} - {span})/{s}) + 1"
    if (raw - 1) * s >= n + p:
        return (f"{text} - 1 = {raw - 1}  (window {raw} would start at ({raw}-1)*{s} = {(raw - 1) * s} "
                f">= {n} + {p}, in the right padding: dropped)")
    return f"{text} = {raw}"


def _formula(hw, k, s, p, d, ceil, out):
    parts = [_size_formula(hw[i], k[i], s[i], p[i], d[i], ceil) for i in range(2)]
    if parts[0] == parts[1]:
        return f"H, W: {parts[0]}"
    return f"H: {parts[0]};  W: {parts[1]}"


def _same_note(solved) -> str:
    """The padding that 'same' solves to: P = 3, or left 1, right 2 where no whole P exists."""
    def one(p, before, after):
        return f"P = {p}" if isinstance(p, int) else f"{before} {p[0]}, {after} {p[1]}"
    h, w = solved
    if h == w:
        return one(w, "left", "right") + ("" if isinstance(w, int) else " (and top/bottom the same)")
    return f"H: {one(h, 'top', 'bottom')}; W: {one(w, 'left', 'right')}"


def explain_same(n: int, k: int, d: int = 1) -> str:
    """The worked solution for P, the way the course report writes it."""
    kk = effective_kernel(k, d)
    pad = same_padding(k, 1, d)
    lines = [f"({n} + 2P - {kk})/1 + 1 = {n}",
             f"2P = {n} - 1 - {n} + {kk} = {kk - 1}"]
    if isinstance(pad, int):
        lines.append(f"so P = {pad}")
    else:
        lines.append(f"so P = {(kk - 1) / 2:g}: no whole P keeps the size; PyTorch's padding='same' "
                     f"pads {pad[0]} before and {pad[1]} after")
    return "\n".join(lines)


def apply(layer: Layer, shape: list[int], rf: tuple[int, int] | None):
    """(Row, receptive-field state) for one layer on an input of the given shape."""
    a, kind = layer.args, layer.kind
    if "out" in a and (isinstance(a["out"], bool) or not isinstance(a["out"], int) or a["out"] < 1):
        raise CnnlabError(f"{layer.text}: the output size must be a positive integer, got {a['out']!r}")
    if kind == "dropout" and not (isinstance(a["p"], (int, float)) and 0 <= a["p"] <= 1):
        raise CnnlabError(f"{layer.text}: the dropout probability must be between 0 and 1, got {a['p']!r}")
    try:
        if kind == "conv":
            n, c, h, w = _need4(shape, layer)
            k, s, d = _pair(a["k"]), _pair(a["s"]), _pair(a["d"])
            out_hw = conv2d_out((h, w), k, s, a["p"], d)
            pad, note, explain = _pair(a["p"]), "", ""
            if a["p"] == "same":
                solved = same_padding(k, s, d)
                pad = tuple(x if isinstance(x, int) else x[0] for x in solved)
                note = _same_note(solved)
                explain = explain_same(h, k[0], d[0])
            elif a["p"] == "valid":
                pad = (0, 0)
            out = [n, a["out"], *out_hw]
            params = a["out"] * c * k[0] * k[1] + (a["out"] if a["bias"] else 0)
            macs = n * a["out"] * out_hw[0] * out_hw[1] * c * k[0] * k[1]
            rf = _grow(rf, k, s, d)
            formula = _formula((h, w), k, s, pad, d, False, out_hw)
            if a["p"] == "same" and any(not isinstance(x, int) for x in same_padding(k, s, d)):
                formula = f"H, W: padding='same' keeps {h}x{w}"
            return Row(layer.text, kind, shape, out, params, macs, _rf(rf), formula, note, explain), rf
        if kind in ("maxpool", "avgpool"):
            n, c, h, w = _need4(shape, layer)
            k = _pair(a["k"])
            s = _pair(a["s"] if a["s"] is not None else a["k"])
            p, d = _pair(a["p"]), _pair(a.get("d", 1))
            out_hw = pool2d_out((h, w), k, s, p, d, a["ceil"])
            rf = _grow(rf, k, s, d)
            return Row(layer.text, kind, shape, [n, c, *out_hw], 0, 0, _rf(rf),
                       _formula((h, w), k, s, p, d, a["ceil"], out_hw)), rf
    except ValueError as e:
        raise CnnlabError(f"{layer.text} cannot take input {shape}: {e}") from None
    if kind == "flatten":
        return Row(layer.text, kind, shape, [shape[0], math.prod(shape[1:])], 0, 0, None), None
    if kind == "linear":
        if len(shape) != 2:
            raise CnnlabError(f"{layer.text} needs a flat input (N, features) but gets {shape}: "
                              f"put flatten before it")
        out = a["out"]
        return Row(layer.text, kind, shape, [shape[0], out], shape[1] * out + (out if a["bias"] else 0),
                   shape[0] * shape[1] * out, None), None
    params = 2 * shape[1] if kind == "batchnorm" else 0
    return Row(layer.text, kind, shape, list(shape), params, 0, _rf(rf)), rf


def _need4(shape, layer):
    if len(shape) != 4:
        raise CnnlabError(f"{layer.text} needs an image input (N, C, H, W) but gets {shape}")
    return shape


def _grow(rf, k, s, d):
    """Receptive field and jump per axis after a window of kernel k, stride s, dilation d."""
    (r, j) = rf if rf is not None else (1, 1)
    kk = effective_kernel(k[0], d[0])
    return (r + (kk - 1) * j, j * s[0])


def _rf(rf):
    return rf[0] if rf is not None else None


def trace(shape: list[int], layers: list[Layer]) -> list[Row]:
    rows, rf = [], (1, 1)
    for layer in layers:
        row, rf = apply(layer, shape, rf)
        rows.append(row)
        shape = row.out_shape
    return rows


def totals(rows: list[Row]) -> dict:
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows),
            "output": rows[-1].out_shape if rows else None}


def render(rows: list[Row], input_shape, explain: bool = False) -> str:
    """A table: one line per layer with its output shape, parameters, MACs, receptive field,
    then the arithmetic under conv and pool layers, and totals."""
    name_w = max([len("layer"), *(len(r.name) for r in rows)]) + 2
    head = f"{'layer':<{name_w}}{'output shape':<20}{'params':>10}{'MACs':>14}{'RF':>6}"
    lines = [head, "-" * len(head), f"{'input':<{name_w}}{str(list(input_shape)):<20}"]
    for r in rows:
        rf = "" if r.receptive_field is None else str(r.receptive_field)
        lines.append(f"{r.name:<{name_w}}{str(r.out_shape):<20}{r.params:>10,}{r.macs:>14,}{rf:>6}")
        if r.padding_note:
            lines.append(f"{'':<{name_w}}  padding='same': {r.padding_note}")
        if r.formula:
            lines.append(f"{'':<{name_w}}  {r.formula}")
        if explain and r.explain:
            lines += [f"{'':<{name_w}}    {x}" for x in r.explain.splitlines()]
    t = totals(rows)
    lines += ["-" * len(head), f"total params: {t['params']:,}    total MACs: {t['macs']:,}    "
              f"output: {t['output']}"]
    return "\n".join(lines)
