"""Each 3x3 conv of fast-94 alone: forward against backward time, by memory layout and arithmetic.

    python benchmarks/conv_backward.py [--batch 512] [--precision bf16|fp32] [--repeats 5]

A conv without bias (fast-94's), forward, then backward of a ones gradient to its weight and its
input, timed apart: means of --repeats after 2 warm-ups, in channels_last and in NCHW. A backward
does twice a forward's multiplies, so a ratio far above 2 says where a step loses time (on an AMX
Xeon in bf16: the convs without a pooling after them, on small maps). The machine's malloc is
tuned as training tunes it (cnnlab.training.allocator), so buffers are reused as in a step.
"""
from __future__ import annotations

import argparse
import time

import torch

from cnnlab.training.allocator import reuse_step_buffers

SHAPES = [(24, 64, 32), (64, 64, 16), (64, 256, 16), (256, 256, 8), (256, 256, 4)]  # (C_in, C_out, H=W)


def timed(cin: int, cout: int, size: int, batch: int, layout, dtype, repeats: int) -> tuple[float, float]:
    """(forward ms, backward ms) of one conv, autocast to dtype where it is not fp32."""
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False).to(memory_format=layout)
    x = torch.randn(batch, cin, size, size).to(memory_format=layout).requires_grad_(True)
    forward = backward = 0.0
    for i in range(2 + repeats):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype, enabled=dtype != torch.float32):
            y = conv(x)
        middle = time.perf_counter()
        y.backward(torch.ones_like(y))
        end = time.perf_counter()
        if i >= 2:
            forward, backward = forward + middle - start, backward + end - middle
        conv.weight.grad = x.grad = None
    return 1000 * forward / repeats, 1000 * backward / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    reuse_step_buffers()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    print(f"batch {args.batch}, {args.precision}, {torch.get_num_threads()} threads; ms, means of {args.repeats}")
    print("| conv | channels_last forward / backward | NCHW forward / backward |")
    print("|---|---|---|")
    for cin, cout, size in SHAPES:
        cells = []
        for layout in (torch.channels_last, torch.contiguous_format):
            f, b = timed(cin, cout, size, args.batch, layout, dtype, args.repeats)
            cells.append(f"{f:.1f} / {b:.1f} ({b / f:.1f}x)")
        print(f"| {cin} -> {cout} at {size}x{size} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
