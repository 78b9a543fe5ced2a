"""Seconds per training epoch of the report recipe, three ways, measured side by side.

    python benchmarks/train_speed.py [--data PATH] [--repeats 5] [--device auto] [--skip-full]

(a) the usual tutorial pipeline: a per-image Dataset (uint8 HWC array -> PIL image -> float
    tensor / 255 -> normalize, as ToTensor + Normalize do), a DataLoader with 2 workers, and
    the report's network written as tutorials write it (conv -> ReLU -> pool, fp32, NCHW);
(b) the same network on in-memory float32 NCHW tensors, normalized once, gathered per batch;
(c) cnnlab's path (cnnlab.train.train_epoch): uint8 data on the device, index gathers,
    whole-batch normalization, channels_last, bf16 autocast where native, and the seed
    model, which pools before its ReLUs (bitwise the same network as (a) and (b)).
All three start from the same weights and train with Adam at batch 128 on the same 45k
images. Each is warmed up, then timed over --repeats whole epochs; the median is reported.
Then, unless
--skip-full, cnnlab trains the full 20-epoch recipe with validation and reports its time
(the one-time decode is not counted: the data come from cnnlab's cache).
Runs on CUDA when a GPU is present (--device auto).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnlab import data as data_mod, models
from cnnlab.layers import totals
from cnnlab.summary import summarize
from cnnlab.train import (TrainConfig, TrainState, pick_device, prepare, resolve_precision, setup, train,
                          train_epoch)


class TutorialDataset(Dataset):
    """One image at a time, the way most CIFAR-10 tutorials feed a model."""

    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, mean, std):
        self.x, self.y = x_hwc, y
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = Image.fromarray(self.x[i])
        t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)  # ToTensor
        return t.sub_(self.mean).div_(self.std), int(self.y[i])  # Normalize


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def fresh_model(device, seed=0):
    torch.manual_seed(seed)
    return models.create("seed").to(device)


def tutorial_model(device, seed=0):
    """The report's network as a tutorial writes it, with the same initial weights as seed."""
    m = fresh_model("cpu", seed)
    return torch.nn.Sequential(m.conv1, torch.nn.ReLU(), torch.nn.MaxPool2d(2), m.conv2, torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), m.fc).to(device)


def tutorial_epoch(d, device, loader_args):
    model = tutorial_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_hwc = d.train_x.cpu().permute(0, 2, 3, 1).contiguous().numpy()
    ds = TutorialDataset(x_hwc, d.train_y.cpu().numpy(), d.mean, d.std)

    def epoch():
        loader = DataLoader(ds, batch_size=128, shuffle=True, **loader_args)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()
    return epoch


def tensor_epoch(d, device):
    model = tutorial_model(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = (d.train_x.float() / 255 - d.mean_t) / d.std_t  # float32 NCHW, normalized once
    y = d.train_y
    g = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()
    return epoch


def cnnlab_epoch(d, device, cfg):
    s = setup(cfg, fresh_model(device), device)
    counter = iter(range(1, 10**6))
    return lambda: train_epoch(s, d, cfg, TrainState(epoch=next(counter)))


def nominal_peak(device) -> tuple[float, str]:
    """(peak GFLOP/s the percentages refer to, a description of the peaks)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peaks = {"H100": 989, "H200": 989, "A100": 312, "L4": 121, "A10": 125, "4090": 165}
        for key, tflops in peaks.items():
            if key in name:
                return tflops * 1000, f"{tflops} TFLOP/s dense bf16 ({name})"
        return float("nan"), f"unknown ({name})"
    ghz = 0.0
    try:
        with open("/proc/cpuinfo") as f:
            ghz = max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")) / 1000
    except (OSError, ValueError):
        pass
    cores = os.cpu_count() or 1
    fp32 = cores * ghz * 64  # AVX-512: 2 FMA units x 16 lanes x 2 FLOP per cycle
    text = f"{fp32:.0f} GFLOP/s fp32 ({cores} cores x {ghz:.2f} GHz x 64 FLOP/cycle, AVX-512 FMA)"
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        text += f"; {cores * ghz * 1024:.0f} GFLOP/s bf16 with AMX (1024 FLOP/cycle)"
    return fp32, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset path (default: cnnlab's default search)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--val-size", type=int, default=5000, help="training images held out (default 5000)")
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per pipeline (median)")
    ap.add_argument("--skip-full", action="store_true", help="skip the full 20-epoch cnnlab run")
    ap.add_argument("--compile", action="store_true",
                    help="cnnlab with torch.compile (CUDA: CUDA graphs); compile time is in the warm-up")
    args = ap.parse_args()

    device = pick_device(args.device)
    cfg = TrainConfig(device=str(device), compile=args.compile, val_size=args.val_size)
    data = data_mod.load(args.data)
    d = prepare(data, cfg, device)
    n = len(d.train_y)
    macs = totals(summarize(models.create("seed"), (3, 32, 32)))["macs"]
    flops_per_epoch = 3 * 2 * macs * n  # forward + backward (about twice the forward)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"data: {n} training images from {data.source}; model seed, batch 128, Adam")
    peak, peak_text = nominal_peak(device)
    peak_kind = "bf16" if device.type == "cuda" else "fp32"
    print(f"work: {flops_per_epoch / 1e9:.1f} GFLOP per epoch; nominal peak {peak_text}")
    print(f"cnnlab precision: {resolve_precision(cfg, device)}, channels_last"
          f"{', torch.compile' if cfg.compile else ''}\n")

    loader_args = {"num_workers": 2, "pin_memory": device.type == "cuda"}
    pipelines = [("a", "tutorial Dataset + DataLoader(2 workers)", tutorial_epoch(d, device, loader_args)),
                 ("b", "tutorial model on in-memory float NCHW", tensor_epoch(d, device)),
                 ("c", "cnnlab (train_epoch)", cnnlab_epoch(d, device, cfg))]
    medians = {}
    for key, label, fn in pipelines:
        times = timed(fn, device, warmup=1, repeats=args.repeats)
        medians[key] = statistics.median(times)
        print(f"({key}) {label:<42} {medians[key]:7.2f} s/epoch  {n / medians[key]:9.0f} img/s  "
              f"{flops_per_epoch / medians[key] / 1e9:8.1f} GFLOP/s = "
              f"{100 * flops_per_epoch / medians[key] / 1e9 / peak:4.1f} % of {peak_kind} peak  (runs: "
              f"{', '.join(f'{t:.2f}' for t in times)})", flush=True)
    print(f"\nspeed-up of cnnlab: a/c = {medians['a'] / medians['c']:.2f}x, b/c = {medians['b'] / medians['c']:.2f}x")

    if not args.skip_full:
        torch.manual_seed(cfg.seed)
        model = models.create("seed")
        if cfg.compile:  # compile once, outside the timed run
            warm = replace(cfg, epochs=1, max_steps=3)
            train(warm, models.create("seed"), d, log=lambda line: None)
        result, _ = train(cfg, model, d, log=lambda line: None)
        from cnnlab.evaluate import evaluate
        test = evaluate(model, d.test_x, d.test_y, d.mean_t, d.std_t, cfg.eval_batch_size, True)
        print(f"full recipe with cnnlab: {len(result.history)} epochs, validation included: "
              f"{result.elapsed:.1f} s training time; val {result.history[-1]['val_acc']:.3f} %, "
              f"test {test['acc']:.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
