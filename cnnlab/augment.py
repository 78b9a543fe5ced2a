"""Augmentation of whole training batches, as tensor functions; randomness from (seed, epoch, step).

    g = step_generator(seed, epoch, step)         # the same arguments, the same draws
    x = random_flip(x, g)                         # mirror each image with probability 1/2
    x = alternating_flip(x, flip_bits(n, seed)[idx], epoch)  # a fixed half in odd epochs, the rest in even
    x = random_translate(x, 2, g)                 # shift each image by -2..2 pixels, reflect padding
    x = cutout(x, 8, g)                           # zero an 8x8 square in each image
    x = augment_batch(x, idx, Augment(flip="random", translate=2), seed, epoch, step)

x is a float (B, C, H, W) batch, normalized, so cutout's zeros are the mean colour. Draws are
made on the CPU from a torch.Generator and moved to x's device, so a batch is the same on every
device and a resumed run replays it exactly. span=(start, n) says that x is rows start.. of a
batch of n (one process's part, in a run of several): the draws are made for all n images and
x takes its rows of them, so each image is augmented as in one process.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from .recipes.schema import Augment


def step_seed(seed: int, epoch: int, step: int, purpose: str = "augment") -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, step, purpose)."""
    h = hashlib.blake2b(f"{purpose}:{seed}:{epoch}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


def step_generator(seed: int, epoch: int, step: int, purpose: str = "augment") -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, epoch, step, purpose))


def flip_bits(n: int, seed: int) -> torch.Tensor:
    """For alternating flips: which of n images are mirrored in odd epochs (about half)."""
    return torch.rand(n, generator=torch.Generator().manual_seed(step_seed(seed, 0, 0, "flip-bits"))) < 0.5


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.to(a.device).view(-1, *([1] * (a.dim() - 1))), a, b)


def _rows(draw, x: torch.Tensor, span: tuple[int, int] | None) -> torch.Tensor:
    """draw(n) for the whole batch, then x's rows of it (span: see the module's docstring)."""
    if span is None:
        return draw(len(x))
    return draw(span[1])[span[0]: span[0] + len(x)]


def random_flip(x: torch.Tensor, g: torch.Generator, span: tuple[int, int] | None = None) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    return _where(_rows(lambda n: torch.rand(n, generator=g), x, span) < 0.5, x.flip(-1), x)


def alternating_flip(x: torch.Tensor, bits: torch.Tensor, epoch: int) -> torch.Tensor:
    """Images whose bit is set are mirrored in odd epochs, the others in even epochs: every image
    is seen both ways, in turn (the airbench speed records' alternating flip)."""
    return _where(bits.to(x.device) ^ (epoch % 2 == 0), x.flip(-1), x)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Image i moved down by dy[i] and right by dx[i] pixels (|shift| <= pad; negative: up, left),
    the uncovered border filled by reflection: out[i, :, r, c] = x[i, :, r - dy[i], c - dx[i]]."""
    if pad == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dev = x.device
    rows = torch.arange(h, device=dev) + pad - dy.to(dev).view(-1, 1)  # (B, H)
    cols = torch.arange(w, device=dev) + pad - dx.to(dev).view(-1, 1)  # (B, W)
    return padded[torch.arange(b, device=dev).view(b, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1),
                  rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def random_translate(x: torch.Tensor, pixels: int, g: torch.Generator,
                     span: tuple[int, int] | None = None) -> torch.Tensor:
    """Each image shifted by a random whole number of pixels in -pixels..pixels, each way
    (the same as a random crop of the image reflect-padded by pixels)."""
    if pixels == 0:
        return x
    dy = _rows(lambda n: torch.randint(-pixels, pixels + 1, (n,), generator=g), x, span)
    dx = _rows(lambda n: torch.randint(-pixels, pixels + 1, (n,), generator=g), x, span)
    return shift(x, dy, dx, pixels)


def cutout(x: torch.Tensor, size: int, g: torch.Generator, span: tuple[int, int] | None = None) -> torch.Tensor:
    """Each image with a size x size square, placed at random inside it, set to 0."""
    if size == 0:
        return x
    _, _, h, w = x.shape
    size_h, size_w = min(size, h), min(size, w)
    top = _rows(lambda n: torch.randint(0, h - size_h + 1, (n, 1, 1, 1), generator=g), x, span).to(x.device)
    left = _rows(lambda n: torch.randint(0, w - size_w + 1, (n, 1, 1, 1), generator=g), x, span).to(x.device)
    r = torch.arange(h, device=x.device).view(1, 1, h, 1)
    c = torch.arange(w, device=x.device).view(1, 1, 1, w)
    inside = (r >= top) & (r < top + size_h) & (c >= left) & (c < left + size_w)
    return x.masked_fill(inside, 0)


def active(cfg: Augment) -> bool:
    return cfg.flip != "none" or cfg.translate > 0 or cfg.cutout > 0


def augment_batch(x: torch.Tensor, idx: torch.Tensor, cfg: Augment, seed: int, epoch: int, step: int,
                  bits: torch.Tensor | None = None, span: tuple[int, int] | None = None) -> torch.Tensor:
    """The recipe's augmentation of the batch of training images idx (flip, translate, cutout);
    span: x is rows span[0].. of the step's batch of span[1] (see the module's docstring)."""
    if not active(cfg):
        return x
    g = step_generator(seed, epoch, step)
    if cfg.flip == "random":
        x = random_flip(x, g, span)
    elif cfg.flip == "alternating":  # bits: flip_bits(number of training images, seed)
        x = alternating_flip(x, bits.to(idx.device)[idx], epoch)
    x = random_translate(x, cfg.translate, g, span)
    return cutout(x, cfg.cutout, g, span)
