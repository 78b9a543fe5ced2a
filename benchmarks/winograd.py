"""Can a cheaper convolution algorithm make fp32 training faster on a CPU without AMX?

In fp32 on AVX2, oneDNN's direct 3x3 convolutions already run near the nominal peak, so the only
way to train the same network in fewer seconds is fewer multiplies. Winograd's minimal filtering
F(m x m, 3 x 3) computes an m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2
multiplies instead of 9 m^2 (Lavin and Gray, 2016):

    Y = A^T [ (G g G^T) * (B^T d B) ] A      per tile, * elementwise; summed over input channels

so that, over channels, the multiplies become (m+2)^2 matrix products of (tiles x C_in) by
(C_in x C_out): 2.25x fewer than direct convolution for F(2x2), 4x for F(4x4), less the tiles
that overhang the map (a 7x7 map takes 2x2 tiles of 4). The transforms by B, G and A are sums of
a few scaled terms, but they move every value through memory several times.

This script times forward + backward of each 3x3 conv of a model at its own shapes (found by
running it, not written down), direct (torch's conv2d) against winograd_conv written in PyTorch,
eagerly and, with --compile, fused by torch.compile, and checks the Winograd outputs against
conv2d. The column "kernel" is cnnlab's own F(4x4, 3x3) (cnnlab.network.kernels.conv3x3: compiled
transforms and their adjoints around torch.bmm, which the fast models' second convs of 32 channels
or more run in fp32). To see the AVX2 figures on an AMX machine:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/winograd.py --compile
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import machine  # noqa: E402  (names the CPU and any instruction-set cap)
from train_speed import timed  # noqa: E402

from cnnlab.network import kernels  # noqa: E402
from cnnlab.network.models import create  # noqa: E402
from cnnlab.training.allocator import reuse_step_buffers  # noqa: E402

# F(2x2, 3x3) and F(4x4, 3x3): Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"
TRANSFORMS = {
    2: dict(BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
            G=[[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
            AT=[[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: dict(BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
            G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
            AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


def combine(matrix, terms):
    """[sum_j matrix[i][j] * terms[j] for each row i], skipping zero coefficients."""
    out = []
    for row in matrix:
        acc = None
        for c, t in zip(row, terms):
            if c:
                t = t if c == 1 else -t if c == -1 else c * t
                acc = t if acc is None else acc + t
        out.append(acc)
    return out


def winograd_conv(x: torch.Tensor, w: torch.Tensor, m: int = 4) -> torch.Tensor:
    """conv2d(x, w, padding=1) for a 3x3 w, by Winograd F(m x m, 3 x 3); x (N, C, H, W), w (K, C, 3, 3)."""
    t = TRANSFORMS[m]
    a = m + 2
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = -(-h // m), -(-wd // m)  # tiles down and across; the last ones overhang the map
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, tw * m + 1 - wd, 1, th * m + 1 - h))  # (N, H', W', C)
    # d[p][q]: the value at (p, q) of every tile, (N, th, tw, C); V = B^T d B, one (a, a) grid of them
    d = [[xp[:, p:p + m * th:m, q:q + m * tw:m] for q in range(a)] for p in range(a)]
    rows = [combine(t["BT"], [d[p][q] for p in range(a)]) for q in range(a)]  # rows[q][i]
    v = [combine(t["BT"], [rows[q][i] for q in range(a)]) for i in range(a)]  # v[i][j]
    v = torch.stack([vij for vi in v for vij in vi]).reshape(a * a, n * th * tw, c)
    g = combine(t["G"], [w[:, :, r, :] for r in range(3)])  # G g: a rows of (K, C, 3)
    u = [combine(t["G"], [gi[:, :, s] for s in range(3)]) for gi in g]  # (G g G^T)[i][j]: (K, C)
    u = torch.stack([uij for ui in u for uij in ui]).transpose(1, 2)  # (a*a, C, K)
    prod = torch.bmm(v, u).view(a, a, n, th, tw, k)  # the (a*a) matrix products
    y = combine(t["AT"], [prod[i] for i in range(a)])  # A^T M: m rows of (a, N, th, tw, K)
    y = [torch.stack(combine(t["AT"], [yi[j] for j in range(a)]), dim=3) for yi in y]  # M A
    y = torch.stack(y, dim=2).reshape(n, th * m, tw * m, k)[:, :h, :wd]  # (N, H, W, K)
    return y.permute(0, 3, 1, 2)


def conv_shapes(model: nn.Module, image_size: int = 32) -> list[tuple[int, int, int, int]]:
    """(C_in, C_out, H, W) of each 3x3 stride-1 conv of model, from one forward pass."""
    shapes = []

    def hook(conv, inputs, output):
        if conv.kernel_size == (3, 3) and conv.stride == (1, 1):
            shapes.append((conv.in_channels, conv.out_channels, *inputs[0].shape[2:]))

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    for handle in handles:
        handle.remove()
    return shapes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="fast-94")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--tile", type=int, choices=sorted(TRANSFORMS), default=4, help="m of F(m x m, 3 x 3)")
    ap.add_argument("--compile", action="store_true", help="also time winograd_conv fused by torch.compile")
    args = ap.parse_args(argv)
    reuse_step_buffers()  # freed memory reused, as in a training process (no fresh pages per call)
    cpu = torch.device("cpu")
    ways = {"direct": lambda x, w: F.conv2d(x, w, padding=1),
            "winograd": lambda x, w: winograd_conv(x, w, args.tile)}
    if args.compile:
        fused = torch.compile(winograd_conv, dynamic=False)
        ways["compiled"] = lambda x, w: fused(x, w, args.tile)
    if args.tile == 4 and kernels.library("winograd.c") is not None:
        ways["kernel"] = kernels.conv3x3
    print(f"{machine(cpu)}; {torch.get_num_threads()} threads, fp32, batch {args.batch}, "
          f"{args.model}'s 3x3 convs, F({args.tile}x{args.tile}, 3x3)")
    print("conv (C_in->C_out @ HxW) | GFLOP | " + " | ".join(f"{name} ms" for name in ways) + " | best/direct")
    totals = dict.fromkeys(ways, 0.0)
    best = 0.0  # each conv by its fastest way
    for c_in, c_out, h, w in conv_shapes(create(args.model)):
        x = torch.randn(args.batch, c_in, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
        weight = (torch.randn(c_out, c_in, 3, 3) / (3 * c_in ** 0.5)).requires_grad_()
        grad = torch.randn(args.batch, c_out, h, w).contiguous(memory_format=torch.channels_last)
        reference = F.conv2d(x, weight, padding=1).detach()
        times = {}
        for name, conv in ways.items():
            if name == "kernel" and (c_in % 8 or c_out % 8):  # it takes channels in vectors of 8
                times[name] = float("nan")
                continue
            err = (conv(x, weight) - reference).abs().max().item() / reference.abs().max().item()
            assert err < 1e-3, f"{name} differs from conv2d by {err:.1e} of its largest output"
            times[name] = min(timed(lambda: conv(x, weight).backward(grad), cpu, warmup=1, repeats=3))
            totals[name] += times[name]
        fastest = min(t for t in times.values() if t == t)
        best += fastest
        gflop = 3 * 2 * args.batch * h * w * c_in * c_out * 9 / 1e9  # forward + two backward products
        print(f"{c_in:4d}->{c_out:4d} @ {h:2d}x{w:<2d} | {gflop:6.1f} | "
              + " | ".join(f"{t * 1e3:8.1f}" for t in times.values())
              + f" | {fastest / times['direct']:.2f}", flush=True)
    print("all convs                |        | " + " | ".join(f"{t * 1e3:8.1f}" for t in totals.values())
          + f" | {best / totals['direct']:.2f} (each conv its fastest way)")


if __name__ == "__main__":
    main()
