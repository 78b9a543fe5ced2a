"""cnnlab models, cnnlab shape and cnnlab summary: the networks and their shape arithmetic."""
from __future__ import annotations

import argparse
import json

def cmd_models(args) -> int:
    from ..network.models import MODELS, count_params, create
    rows = [(name, count_params(create(name)), (MODELS[name].__doc__ or "").strip()) for name in MODELS]
    if args.json:
        print(json.dumps([{"name": n, "params": p, "description": d} for n, p, d in rows], indent=2))
        return 0
    width = max(len("model"), *(len(name) for name, _, _ in rows)) + 2
    print(f"{'model':<{width}}{'params':>10}  description (params for CIFAR-10: 3x32x32 in, 10 classes)")
    for name, params, description in rows:
        print(f"{name:<{width}}{params:>10,}  {description}")
    return 0

SHAPE_EPILOG = """layers (name or name(args); args by position or key=value):
  conv(OUT, k=K, s=1, p=0|same|valid, d=1)   convolution; K, s, p, d take N or HxW
  maxpool(K, s=K, p=0, d=1, ceil=false)      max pooling (stride defaults to the kernel)
  avgpool(K, s=K, p=0, ceil=false)           average pooling
  linear(OUT)                                fully connected (needs flatten before it)
  flatten   dropout(P)   batchnorm
  relu gelu silu elu leakyrelu sigmoid tanh softmax identity
aliases: conv2d, maxpool2d, avgpool2d, fc, dense, bn; keys may be spelled out
(kernel=, stride=, padding=, dilation=, out_channels=).

examples:
  cnnlab shape 1,1,32,32 "conv(out=1,k=7,s=1,p=same)" --explain
  cnnlab shape 128,3,32,32 "conv(16,k=3,p=same)" relu "maxpool(2)" "conv(32,k=3,p=1)" relu \\
      "maxpool(2)" flatten "linear(10)"
output size of conv and pool: floor((N + 2P - d(K-1) - 1)/S) + 1 (pool with ceil=true: ceil)"""


def cmd_shape(args) -> int:
    from ..network.layers import parse_layer, parse_shape, render, totals, trace
    shape = parse_shape(args.input)
    rows = trace(shape, [parse_layer(t) for t in args.layers])
    if args.json:
        print(json.dumps({"input": shape, "layers": [r.to_dict() for r in rows], **totals(rows)}, indent=2))
    else:
        print(render(rows, shape, explain=args.explain))
    return 0


def cmd_summary(args) -> int:
    from ..network import models
    from ..network.layers import parse_image_shape, render, totals
    from ..network.summary import compare, create_for, summarize
    chw = parse_image_shape(args.input)
    if args.compare:
        a, b = args.compare
        models.create(a), models.create(b)  # clear errors for unknown names
        result = compare(a, b, chw)
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        for name in (a, b):
            print(f"{name}:")
            model = create_for(name, chw)
            print(render(summarize(model, chw), [1, *chw]))
            print()
        same = result["same_shapes"] and result["same_params"] and result["max_abs_diff"] == 0
        print(f"layer shapes identical: {result['same_shapes']}; parameter counts identical: "
              f"{result['same_params']} ({result['params'][0]:,} vs {result['params'][1]:,})")
        if result["max_abs_diff"] is not None:
            print(f"same initial weights, random input: max |output difference| = {result['max_abs_diff']:g}")
        print(f"verdict: {a} and {b} are {'the same network' if same else 'different networks'}")
        return 0
    models.create(args.model)  # an unknown name first
    model = create_for(args.model, chw)
    rows = summarize(model, chw)
    if args.json:
        print(json.dumps({"model": args.model, "input": [1, *chw], "layers": [r.to_dict() for r in rows],
                          **totals(rows)}, indent=2))
    else:
        print(f"{args.model} on input {[1, *chw]}")
        print(render(rows, [1, *chw]))
        if getattr(model, "summary_note", ""):
            print(model.summary_note)
    return 0


# ---------------------------------------------------------------- parser

class Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the flags is one line that points to --help."""


def register(sub, parents) -> None:
    m = sub.add_parser("models", parents=parents, help="list registered models with parameter counts",
                       description="List the registered models with their parameter counts on CIFAR-10.")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=cmd_models)

    sh = sub.add_parser("shape", parents=parents, help="output shapes of a chain of layers, with the arithmetic",
                        description="Compute the output shape of each layer from the input shape, "
                        "with the size formula filled in and the padding solved for p=same.",
                        epilog=SHAPE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sh.add_argument("input", metavar="INPUT", help="input shape N,C,H,W, all four numbers (e.g. 1,3,32,32: one RGB 32x32 image)")
    sh.add_argument("layers", metavar="LAYER", nargs="+", help="layers in order (see below)")
    sh.add_argument("--explain", action="store_true", help="show the worked solution for P where p=same")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    sh.set_defaults(func=cmd_shape)

    su = sub.add_parser("summary", parents=parents, help="per-layer shapes, parameters, MACs and receptive field of a model",
                        description="Show, for each layer of a registered model, its output shape, "
                        "parameters, multiply-adds, receptive field and the size arithmetic.")
    su.add_argument("--model", default="seed", help="model name, see 'cnnlab models' (default: seed)")
    su.add_argument("--input", default="3,32,32", help="one image's shape C,H,W (default: 3,32,32)")
    su.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="show whether two models are the same network (e.g. seed seed-p1)")
    su.add_argument("--json", action="store_true", help="machine-readable output")
    su.set_defaults(func=cmd_summary)
