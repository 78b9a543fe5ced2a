"""cnnlab.shape, cnnlab.summary and cnnlab.recipes: the command line's look-ups, as values.

    print(cnnlab.shape((1, 3, 32, 32), "conv(16,k=3,p=same)", "maxpool(2)"))
    print(cnnlab.summary("seed"))                     # or any nn.Module, input_size=(3, 32, 32)
    [r["name"] for r in cnnlab.recipes()]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class Table:
    """Rows of a shape trace or a model summary: print() it, or read .rows / .totals."""
    rows: list  # cnnlab.network.layers.Row, one per layer (.out_shape, .params, .macs, ...)
    totals: dict  # params, macs
    text: str  # the table `cnnlab shape` / `cnnlab summary` prints

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(self.text)}</pre>"

    def to_dict(self) -> dict:
        """What --json prints: {"layers": [...], "params", "macs"}."""
        return {"layers": [r.to_dict() for r in self.rows], **self.totals}


def shape(input_shape: Sequence[int] | str, *layers: str, explain: bool = False) -> Table:
    """Output shape of each layer of a chain, with the size formula filled in (`cnnlab shape`).

    input_shape: N, C, H, W (a sequence, or "1,3,32,32"); layers as the command line writes them:
    "conv(16,k=3,p=same)", "maxpool(2)", "relu", "flatten", "linear(10)".

    >>> print(cnnlab.shape((1, 1, 32, 32), "conv(1,k=7,p=same)", explain=True))   # doctest: +SKIP
    >>> cnnlab.shape("1,3,32,32", "conv(8,k=5)").rows[-1].out_shape
    [1, 8, 28, 28]
    """
    from ..network.layers import parse_layer, parse_shape, render, totals, trace
    dims = parse_shape(input_shape if isinstance(input_shape, str) else ",".join(map(str, input_shape)))
    rows = trace(dims, [parse_layer(t) for t in layers])
    return Table(rows, totals(rows), render(rows, dims, explain=explain))


def summary(model: Any = "seed", input_size: Sequence[int] = (3, 32, 32)) -> Table:
    """Per-layer output shapes, parameters, multiply-adds and receptive field (`cnnlab summary`).

    model: a registered name (cnnlab.models) or any nn.Module; input_size: C, H, W.

    >>> cnnlab.summary("seed").totals["params"]
    62006
    """
    from ..network import models
    from ..network.layers import render, totals
    from ..network.summary import summarize
    chw = list(input_size)
    if isinstance(model, str):
        model = models.create(model, image_size=tuple(chw[1:]), in_channels=chw[0])
    rows = summarize(model, chw)
    return Table(rows, totals(rows), render(rows, [1, *chw]))


def recipes() -> list[dict]:
    """The shipped recipes (as `cnnlab recipes --json`): name, model, epochs, target_acc,
    description, measured (mean, std, n, ... where measured).

    >>> names = [r["name"] for r in cnnlab.recipes()]
    >>> names[0]
    'seed'
    """
    from ..recipes import shipped
    return shipped()


def models() -> list[str]:
    """The registered model names (as `cnnlab models`).

    >>> "seed" in cnnlab.models()
    True
    """
    from ..network.models import MODELS
    return list(MODELS)
