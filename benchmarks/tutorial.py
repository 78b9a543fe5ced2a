"""The report's recipe as the usual tutorial writes it, as one whole script: the baseline that
benchmarks/train_speed.py times against `cnnlab train`.

    python benchmarks/tutorial.py [--data PATH] [--epochs 2] [--device cpu]

What most CIFAR-10 tutorials do: keep the images in memory as uint8 HWC arrays (torchvision's
CIFAR10 holds them so after unpickling its batches; here they come from cnnlab's decode cache,
which costs about as much), hold out 5,000 of the 50,000 with random_split, feed a per-image
Dataset (array -> PIL image -> ToTensor -> Normalize with the published CIFAR-10 constants)
through DataLoaders with 2 workers, and train the report's network, conv -> ReLU -> pool in
fp32 NCHW, with Adam 1e-3 at batch 128; validate after every epoch, test at the end.
(Evaluation batches of 1000, where tutorials often keep 128: the kinder choice for the baseline.)
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, random_split

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # as tutorials print them


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


def tutorial_model(device, seed: int = 0) -> nn.Module:
    """The report's network as a tutorial writes it. Made in the same order as cnnlab's seed
    model (conv1, conv2, fc), so the same seed gives the same initial weights."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 8 * 8, 10)).to(device)


def accuracy(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    model.train()
    return 100.0 * correct / total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="dataset path (default: cnnlab's default search)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    from cnnlab.training.allocator import reuse_step_buffers
    from cnnlab.data.dataset import load  # the decoded images, as torchvision's CIFAR10 would hold them

    device = torch.device(args.device)
    data = load(args.data)
    # torchvision's CIFAR10 frees its five 30 MB batch arrays once it has stacked them, which
    # raises glibc's mmap threshold about as far as this does (see cnnlab/training/allocator.py): without
    # it, every step here would map its buffers afresh and the baseline would look slower than it is.
    reuse_step_buffers(large=False)
    hwc = lambda x: x.permute(0, 2, 3, 1).contiguous().numpy()  # noqa: E731
    full = TutorialDataset(hwc(data.train_x), data.train_y.numpy(), CIFAR_MEAN, CIFAR_STD)
    trainset, valset = random_split(full, [len(full) - 5000, 5000], generator=torch.Generator().manual_seed(0))
    testset = TutorialDataset(hwc(data.test_x), data.test_y.numpy(), CIFAR_MEAN, CIFAR_STD)
    loader = lambda ds, bs, shuffle: DataLoader(ds, batch_size=bs, shuffle=shuffle, num_workers=2,  # noqa: E731
                                                pin_memory=device.type == "cuda")
    trainloader, valloader, testloader = loader(trainset, 128, True), loader(valset, 1000, False), \
        loader(testset, 1000, False)

    model = tutorial_model(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total_loss, iters = 0.0, 0
        for x, y in trainloader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            iters += 1
        print(f"Epoch: {epoch} | Iter: {iters} | Average Loss: {total_loss / iters:.3f} | "
              f"Elapsed Time: {time.perf_counter() - start:.1f} s")
        print(f"Epoch: {epoch} | Validation Accuracy: {accuracy(model, valloader, device):.3f} %", flush=True)
    print(f"Test Accuracy: {accuracy(model, testloader, device):.3f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
