"""Seconds of one training step of the fast models, by widths and image size, on this machine.

    python benchmarks/step_seconds.py [--widths 64/256/256,32/256/256] [--sizes 32,24] [--batch 512]
                                      [--frozen none,whiten+blocks.0] [--precision auto|fp32|bf16] [--threads N]

A recipe's training seconds are about its steps times these figures (fast-90's 9 epochs in fp32
on the AMD EPYC Zen 4 under the cap below: 800 s by them, 763.9 s measured), so a change of model
widths or crop sizes can be priced before it is trained. docs/speed-records.md's "Without native bf16"
section prices its variants in fp32 with it, under an instruction-set cap:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/step_seconds.py

--frozen prices freezing layers (by the names `cnnlab summary` prints: whiten, blocks.0,
blocks.1.conv1, ...): a frozen layer's parameters take no gradient, so autograd skips its
backward work, and all of the backward below the last frozen layers when nothing under them
trains (the whitening conv's weights are always frozen; "whiten" freezes its bias too, as
fast-90 does after its third epoch). One row per widths and set of frozen layers:

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/step_seconds.py --widths 64/256/256 \
        --sizes 32 --frozen whiten,whiten+blocks.0,whiten+blocks.0+blocks.1

Each step is a forward and backward pass of FastNet (the fast-* models' class, two convs per
block) on a random channels-last batch, in bf16 autocast where the precision is bf16, and an
SGD/Nesterov update: the arithmetic of a recipe's step without Muon's small matrix products.
Each figure is the median of --repeats steps after two warm-up steps; run it on an idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_to_accuracy import machine  # noqa: E402  (names the CPU and any instruction-set cap)
from train_speed import timed  # noqa: E402

from cnnlab.training import arithmetic  # noqa: E402
from cnnlab.network.models import FastNet  # noqa: E402


def step_seconds(widths: tuple[int, ...], size: int, batch: int, precision: str, repeats: int,
                 frozen: tuple[str, ...] = ()) -> float:
    """Median seconds of a training step of FastNet(widths) on batch size x size images, the
    layers named in frozen taking no gradients (freeze)."""
    torch.manual_seed(0)
    model = FastNet(widths, 2).to(memory_format=torch.channels_last)
    freeze(model, frozen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                          nesterov=True)
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return statistics.median(timed(step, torch.device("cpu"), warmup=2, repeats=repeats))


def freeze(model: torch.nn.Module, names) -> None:
    """Stop the gradients of every parameter of each named layer (a module name, as `cnnlab
    summary` prints it: 'blocks.0' is the whole first block, 'blocks.0.conv1' one conv of it)."""
    params = dict(model.named_parameters())
    for name in names:
        hit = [p for key, p in params.items() if key.startswith(name + ".")]
        if not hit:
            raise ValueError(f"no layer {name!r} with parameters")
        for p in hit:
            p.requires_grad_(False)


def frozen_list(text: str) -> list[tuple[str, ...]]:
    """'none,whiten+blocks.0' -> [(), ('whiten', 'blocks.0')], each name checked on FastNet's layout."""
    out = [() if item == "none" else tuple(item.split("+")) for item in text.split(",")]
    probe = FastNet((4, 4, 4), 2)  # every width has the same layer names
    try:
        for names in out:
            freeze(probe, names)
    except ValueError as e:
        layers = sorted({k.rsplit(".", 1)[0] for k, _ in probe.named_parameters()})
        blocks = ", ".join(f"blocks.{i}" for i in range(len(probe.blocks)))
        raise argparse.ArgumentTypeError(f"{text!r}: {e}; layers: {', '.join(layers)} (or a block: "
                                         f"{blocks}; 'none' for no layer)") from None
    return out


def positive_int(text: str) -> int:
    """'512' -> 512; argparse's one-line error for anything else."""
    return int_list(text, sep=None)[0]


def int_list(text: str, sep: str | None = ",") -> list[int]:
    """'32,24' -> [32, 24]; argparse's one-line error for anything else."""
    try:
        values = [int(v) for v in (text.split(sep) if sep else [text])]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give " + (f"positive integers separated by {sep!r}" if sep
                                                               else "a positive integer"))
    return values


def widths_list(text: str) -> list[tuple[int, ...]]:
    """'64/256/256,32/256/256' -> [(64, 256, 256), (32, 256, 256)]."""
    out = [tuple(int_list(w, "/")) for w in text.split(",")]
    if any(len(w) != 3 for w in out):
        raise argparse.ArgumentTypeError(f"{text!r}: each widths is three numbers, e.g. 64/256/256")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=widths_list, default="64/256/256,32/256/256,32/224/256,32/192/256",
                    help="comma-separated widths of the three blocks, e.g. 64/256/256 (fast-94's)")
    ap.add_argument("--sizes", type=int_list, default="32,28,24,20",
                    help="comma-separated image sizes (crops below 32)")
    ap.add_argument("--frozen", type=frozen_list, default=[()],
                    help="comma-separated sets of frozen layers, each joined by '+', e.g. none,whiten+blocks.0")
    ap.add_argument("--batch", type=positive_int, default=512)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="auto: bf16 where this CPU computes it natively (AMX, AVX512-BF16), else fp32")
    ap.add_argument("--threads", type=positive_int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=positive_int, default=5)
    args = ap.parse_args(argv)
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if arithmetic.native_bf16_cpu() else "fp32"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        table(args.widths, args.sizes, args.batch, precision, args.repeats, args.threads, args.frozen)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (the tests)


def table(widths, sizes, batch: int, precision: str, repeats: int, threads: int, frozen=((),)) -> None:
    """Print the machine and a row of step seconds (and ratios) per widths and frozen layers,
    a column per size (the frozen column only where --frozen names any)."""
    print(f"machine: {machine(torch.device('cpu'))}; threads {threads}, {precision}, batch {batch}")
    print("seconds per training step (ratio to the first row at the first size)")
    label = max((len("+".join(f)) for f in frozen), default=0)
    label = label and max(label, len("frozen"))  # no frozen column where no set names a layer
    head = f"  {'frozen':<{label}}" if label else ""
    print(f"{'widths':>12}{head}  " + "  ".join(f"{f'{s} px':>14}" for s in sizes), flush=True)
    base = None
    for w in widths:
        for names in frozen:
            cells = []
            for s in sizes:
                t = step_seconds(w, s, batch, precision, repeats, names)
                base = base or t
                cells.append(f"{t:7.3f} ({t / base:.2f})")
            name = f"  {'+'.join(names) or 'none':<{label}}" if label else ""
            print(f"{'/'.join(map(str, w)):>12}{name}  " + "  ".join(f"{c:>14}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
