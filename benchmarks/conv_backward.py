"""Each 3x3 conv of fast-94 alone: forward against backward time, by memory layout and arithmetic.

    python benchmarks/conv_backward.py [--batch 512] [--precision bf16|fp32] [--repeats 5] [--split]

A conv without bias (fast-94's), forward, then backward of a ones gradient to its weight and its
input, timed apart: means of --repeats after 2 warm-ups, in channels_last and in NCHW. A backward
does twice a forward's multiplies, so a ratio far above 2 says where a step loses time (on an AMX
Xeon in bf16: the convs without a pooling after them, on small maps). The machine's malloc is
tuned as training tunes it (cnnlab.training.allocator), so buffers are reused as in a step.
--split times the backward's two halves apart in channels_last (oneDNN's weight gradient and
input gradient, aten.convolution_backward with one output each) beside the weight gradient as
one matrix product of the unfolded input (the nine shifted copies of each pixel's channels side
by side: (N*H*W, 9*C_in)), with its largest difference from oneDNN's, relative to its largest value.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import timed  # noqa: E402
from winograd import conv_shapes  # noqa: E402  (each 3x3 conv's shape, from a forward pass)

from cnnlab.network.models import create  # noqa: E402
from cnnlab.training.allocator import reuse_step_buffers  # noqa: E402


def fast_94_shapes() -> list[tuple[int, int, int]]:
    """(C_in, C_out, H=W) of fast-94's 3x3 convs, each once, in the order they run."""
    return list(dict.fromkeys((cin, cout, h) for cin, cout, h, _ in conv_shapes(create("fast-94"))))


def forward_backward_ms(cin: int, cout: int, size: int, batch: int, layout, dtype, repeats: int) -> tuple[float, float]:
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


def mean_ms(fn, repeats: int) -> float:
    """fn's mean time in ms over repeats calls after 2 warm-ups (train_speed.timed's)."""
    return 1000 * statistics.mean(timed(fn, torch.device("cpu"), warmup=2, repeats=repeats))


def unfolded_weight_gradient(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A 3x3 'same' conv's weight gradient (C_out, C_in, 3, 3) as one matrix product: the output
    gradient (N*H*W, C_out) transposed times the unfolded input (N*H*W, 9*C_in)."""
    n, cin, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (N, H+2, W+2, C_in)
    cols = torch.cat([padded[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], dim=3)
    g = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1])
    return (g.t() @ cols.reshape(-1, 9 * cin)).view(-1, 3, 3, cin).permute(0, 3, 1, 2)


def split(cin: int, cout: int, size: int, batch: int, dtype, repeats: int) -> str:
    layout = torch.channels_last
    x = torch.randn(batch, cin, size, size).to(dtype).contiguous(memory_format=layout)
    weight = torch.randn(cout, cin, 3, 3).to(dtype).contiguous(memory_format=layout)
    grad = torch.randn(batch, cout, size, size).to(dtype).contiguous(memory_format=layout)

    def onednn(mask):
        return lambda: torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [1, 1], [1, 1],
                                                           False, [0, 0], 1, mask)
    reference = onednn([False, False, True])()[1].float()
    error = (unfolded_weight_gradient(x, grad).float() - reference).abs().max() / reference.abs().max()
    return (f"| {cin} -> {cout} at {size}x{size} | {mean_ms(onednn([False, False, True]), repeats):.1f} | "
            f"{mean_ms(onednn([True, False, False]), repeats):.1f} | "
            f"{mean_ms(lambda: unfolded_weight_gradient(x, grad), repeats):.1f} | {float(error):.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--split", action="store_true", help="the backward's halves apart, and the weight "
                    "gradient as one matrix product")
    args = ap.parse_args()
    reuse_step_buffers()
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    print(f"batch {args.batch}, {args.precision}, {torch.get_num_threads()} threads; ms, means of {args.repeats}")
    if args.split:
        print("| conv | oneDNN weight gradient | oneDNN input gradient | unfolded weight gradient | difference |")
        print("|---|---|---|---|---|")
        for shape in fast_94_shapes():
            print(split(*shape, args.batch, dtype, args.repeats), flush=True)
        return
    print("| conv | channels_last forward / backward | NCHW forward / backward |")
    print("|---|---|---|")
    for cin, cout, size in fast_94_shapes():
        cells = []
        for layout in (torch.channels_last, torch.contiguous_format):
            f, b = forward_backward_ms(cin, cout, size, args.batch, layout, dtype, args.repeats)
            cells.append(f"{f:.1f} / {b:.1f} ({b / f:.1f}x)")
        print(f"| {cin} -> {cout} at {size}x{size} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
