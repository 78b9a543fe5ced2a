"""Augmentation of whole training batches, as tensor functions; randomness from (seed, epoch, step).

    g = step_generator(seed, epoch, step)         # the same arguments, the same draws
    x = random_flip(x, g)                         # mirror each image with probability 1/2
    x = alternating_flip(x, flip_bits(n, seed)[idx], epoch)  # a fixed half in odd epochs, the rest in even
    x = random_translate(x, 2, g)                 # shift each image by -2..2 pixels, reflect padding
    x = cutout(x, 8, g)                           # zero an 8x8 square in each image
    x = random_crop(x, 24, g)                     # a 24x24 window of each image, at random
    x = augment_batch(x, idx, Augment(flip="random", translate=2), seed, epoch, step)

x is a float (B, C, H, W) batch, normalized, so cutout's zeros are the mean colour. Draws are
made on the CPU from a torch.Generator and moved to x's device, so a batch is the same on every
device and a resumed run replays it exactly. span=(start, n) says that x is rows start.. of a
batch of n (one process's part, in a run of several): the draws are made for all n images and
x takes its rows of them, so each image is augmented as in one process.

Crops (progressive resolution) train the first epochs on smaller images: a 24x24 step costs
0.5-0.6x a 32x32 one, and the network, whose head takes the maximum over whatever map it
gets, then sees whole images to the end. A recipe without crops draws exactly as before.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from ..errors import CnnlabError
from ..recipes.schema import Augment


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


def random_crop(x: torch.Tensor, size: int, g: torch.Generator,
                span: tuple[int, int] | None = None) -> torch.Tensor:
    """A size x size window of each image, placed at random inside it: (B, C, size, size)."""
    b, c, h, w = x.shape
    if size == 0 or (size >= h and size >= w):
        return x
    size_h, size_w = min(size, h), min(size, w)
    dev = x.device
    top = _rows(lambda n: torch.randint(0, h - size_h + 1, (n,), generator=g), x, span).to(dev)
    left = _rows(lambda n: torch.randint(0, w - size_w + 1, (n,), generator=g), x, span).to(dev)
    rows = top.view(-1, 1) + torch.arange(size_h, device=dev)  # (B, size_h)
    cols = left.view(-1, 1) + torch.arange(size_w, device=dev)  # (B, size_w)
    return x[torch.arange(b, device=dev).view(b, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1),
             rows.view(b, 1, size_h, 1), cols.view(b, 1, 1, size_w)]


def crops_in(cfg: Augment, epoch: int) -> bool:
    """Whether epoch (1-based) trains on crops."""
    return cfg.crop > 0 and (cfg.crop_epochs == 0 or epoch <= cfg.crop_epochs)


def check_sizes(cfg: Augment, image_shape: tuple[int, int, int]) -> None:
    """Refuse, in one line, a shift the (C, H, W) images cannot take: reflect padding by p pixels
    needs p < H and p < W."""
    _, h, w = image_shape
    if cfg.translate >= min(h, w):
        raise CnnlabError(f"augment.translate={cfg.translate} is not smaller than the {h}x{w} images "
                          f"(reflect padding needs it to be): use at most {min(h, w) - 1}, e.g. 2 or 4")


def check_crop(model: torch.nn.Module, cfg: Augment, image_shape: tuple[int, int, int]) -> None:
    """Refuse, in one line, a crop that is not smaller than the (C, H, W) images or that the model
    cannot take (a head fixed to the whole image's size): tried on one blank crop."""
    if cfg.crop == 0:
        return
    c, h, w = image_shape
    if cfg.crop >= min(h, w):
        raise CnnlabError(f"augment.crop={cfg.crop} is not smaller than the {h}x{w} images: use a "
                          f"smaller crop, or 0 to train on whole images")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, c, cfg.crop, cfg.crop))
    except RuntimeError:
        raise CnnlabError(f"augment.crop={cfg.crop}: this model takes only whole {h}x{w} images; crops "
                          f"need a head that pools the whole final map, as the fast-* models' does, or "
                          f"set augment.crop=0") from None
    finally:
        model.train(was_training)


def active(cfg: Augment) -> bool:
    return cfg.flip != "none" or cfg.translate > 0 or cfg.cutout > 0 or cfg.crop > 0


def augment_batch(x: torch.Tensor, idx: torch.Tensor, cfg: Augment, seed: int, epoch: int, step: int,
                  bits: torch.Tensor | None = None, span: tuple[int, int] | None = None) -> torch.Tensor:
    """The recipe's augmentation of the batch of training images idx (flip, translate, crop in
    the epochs that crop, cutout); span: x is rows span[0].. of the step's batch of span[1] (see
    the module's docstring)."""
    if not active(cfg):
        return x
    g = step_generator(seed, epoch, step)
    if cfg.flip == "random":
        x = random_flip(x, g, span)
    elif cfg.flip == "alternating":  # bits: flip_bits(number of training images, seed)
        x = alternating_flip(x, bits.to(idx.device)[idx], epoch)
    x = random_translate(x, cfg.translate, g, span)
    if crops_in(cfg, epoch):
        x = random_crop(x, cfg.crop, g, span)
    return cutout(x, cfg.cutout, g, span)
