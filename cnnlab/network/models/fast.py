"""The speed-record family: small, fast CIFAR-10 networks in the style of airbench / hlb-CIFAR10.

    fast-q-s2 widths  16/ 64/ 64, two convs per block,  fast-q with the whitening at stride 2: the
              whitening at stride 2                     CPU sprint (73 % in 3 epochs, AMX or AVX2)
    fast-q    widths  16/ 64/ 64, two convs per block   fast-94 at a quarter of its widths
    fast-s    widths  32/ 64/128, one conv per block    the first sprint (73 % in two epochs)
    fast-h    widths  32/128/128, two convs per block   fast-94 at half its widths: 85 % on a CPU
    fast-c    widths  32/128/160, convs 2/1/2           fast-h without the middle block's second
                                                        conv (its costliest layer), a wider last
                                                        block: 85 % in fp32 (0.8x a fast-h step)
    fast-m    widths  64/128/256, one conv per block    one conv per block, wider
    fast-94   widths  64/256/256, two convs per block   the airbench94 size (about 2 M parameters)
    fast-l    widths 128/384/384, two convs per block   the airbench95 size (about 4.6 M parameters)

For short CPU runs the narrow two-conv widths buy more accuracy per FLOP than the one-conv ones
or fast-94: in two epochs fast-q beats fast-s by about 2.5 points with 0.7x its work, and five
epochs of fast-h match three of fast-94 (86 %) with 0.47x the work.

Every width has the same layout:

    whiten   a 2x2 conv (no padding) to 2*C*2*2 channels whose weights are frozen: the
             eigenvectors of the training images' 2x2 patch covariance, each scaled by
             1/sqrt(eigenvalue + eps), once with each sign (data_init sets them), then GELU.
             At stride 2 (fast-q-s2) the patches lie side by side: every pixel still reaches
             the first block, but each map is half as wide and tall, so the network does
             0.3x the work (3.0 M MACs against fast-q's 10.1 M)
    block x3 conv3x3 -> maxpool 2 -> BN -> GELU (-> conv3x3 -> BN -> GELU); each GELU the exact
             (erf) form, compiled in fp32 on the CPU with its derivative (network.kernels.GELU);
             in fp32 on the CPU conv -> maxpool is one compiled pass, and a second conv of 32
             channels or more runs by Winograd's F(4x4, 3x3) (network.kernels.conv3x3)
    head     max pooling over the whole final map, whatever its size -> linear (no bias) ->
             times a fixed scale

The ideas (after K. Jordan's airbench and T. Balsam's hlb-CIFAR10; our own code): the frozen
whitening conv gives the first block decorrelated inputs from step one; convs start as the
identity (dirac) where their shapes allow, so each block starts close to passing its input on;
BatchNorm scales are frozen at 1 and only their biases learn, with a larger learning rate
(param_groups() puts them in the "norm" group); the head's fixed scale (1/9) keeps early
logits small. The whitening needs training images: the training loop calls data_init once
on a fresh run, before the first step.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import kernels
from ..shapes import conv2d_out, layer_out, pool2d_out

WHITEN_EPS = 5e-4  # added to each eigenvalue: keeps the noise-only directions from exploding


def patch_covariance(images: torch.Tensor, k: int, chunk: int = 100) -> torch.Tensor:
    """S = P^T P / rows over every k x k patch of images (N, C, H, W): the rows of P are the
    patches, each ordered like a conv weight's (C, k, k).

    P is never built: its column for the patch element (c, i, j) is channel c's map shifted by
    (i, j), so P^T as a (C*k*k, rows) matrix is those k*k*C shifted views side by side, and S is
    one long, thin product per chunk of images. Summed in float64 (the smallest eigenvalues of
    JPEG images are ~1e-4 of the largest: float32 sums blur them), chunk images at a time.
    5000 images at 32x32 take 0.12 s (AMD EPYC Zen 3, AVX2), against 0.36 s gathering P's rows."""
    n, c, h, w = images.shape
    d, (hk, wk) = c * k * k, (h - k + 1, w - k + 1)
    cov, rows = torch.zeros(d, d, dtype=torch.float64, device=images.device), 0
    for part in images.split(chunk):
        part = part.double()
        pt = torch.stack([part[:, ch, i:i + hk, j:j + wk]
                          for ch in range(c) for i in range(k) for j in range(k)]).reshape(d, -1)
        cov += pt @ pt.T
        rows += pt.shape[1]
    return cov / rows


def whitening_weights(images: torch.Tensor, k: int, eps: float = WHITEN_EPS) -> torch.Tensor:
    """Conv weights (2*C*k*k, C, k, k) that whiten the k x k patches of images.

    With S the patch covariance (patch_covariance: the images are normalized, so their mean
    is about 0) and S = V diag(lam) V^T, the filters are the rows of V^T / sqrt(lam + eps),
    largest eigenvalue first, followed by the same filters negated: the GELU after the conv
    then sees each direction with both signs.
    """
    c = images.shape[1]
    lam, vec = torch.linalg.eigh(patch_covariance(images, k))  # ascending; eigenvectors in columns
    lam, vec = lam.flip(0), vec.flip(1)
    filters = (vec.T / torch.sqrt(lam.clamp(min=0) + eps)[:, None]).float().reshape(-1, c, k, k)
    return torch.cat([filters, -filters])


class Block(nn.Module):
    """conv3x3 -> maxpool 2 -> BN -> GELU, then optionally conv3x3 -> BN -> GELU at the pooled size."""

    def __init__(self, c_in: int, c_out: int, convs: int):
        super().__init__()
        self.conv1 = identity_conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = frozen_scale_bn(c_out)
        self.act1 = kernels.GELU()
        self.second = convs == 2
        if self.second:
            self.conv2 = identity_conv(c_out, c_out)
            self.norm2 = frozen_scale_bn(c_out)
            self.act2 = kernels.GELU()

    def forward(self, x):                          # (B, c_in, H, W)
        # conv -> pool as one compiled pass in fp32 on the CPU where it builds (network.kernels), its
        # products by Winograd's F(2x2, 3x3): ATen's outputs to fp32 rounding in 0.4-0.6x the time
        fused = kernels.usable(x, self.conv1, self.pool)
        x = kernels.pooled_conv(x, self.conv1.weight, winograd=True) if fused else self.pool(self.conv1(x))
        x = self.act1(self.norm1(x))               # (B, c_out, H/2, W/2)
        if self.second:
            # by Winograd's F(4x4, 3x3) in fp32 on the CPU from 32 channels on (network.kernels)
            wino = kernels.conv_usable(x, self.conv2)
            x = kernels.conv3x3(x, self.conv2.weight) if wino else self.conv2(x)
            x = self.act2(self.norm2(x))           # (B, c_out, H/2, W/2)
        return x


def identity_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 'same' conv without bias whose first min(c_in, c_out) filters start as the identity."""
    conv = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(c_in, c_out)])
    return conv


def frozen_scale_bn(c: int) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1 (not trained) and whose bias trains; running statistics
    follow recent batches quickly (momentum 0.4), as short runs need."""
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


class FastNet(nn.Module):
    """whiten (frozen 2x2 conv) -> GELU -> three Blocks -> global max pool -> linear * scale."""

    summary_note = ("note: whiten's weights are frozen (set from the training images' patch covariance); "
                    "the BN scales are frozen at 1; the logits are the linear layer's output times {scale:.4g}")

    def __init__(self, widths=(64, 256, 256), convs: int | tuple[int, int, int] = 2, num_classes: int = 10,
                 in_channels: int = 3, image_size=32, whiten_kernel: int = 2, scale: float = 1 / 9,
                 whiten_stride: int = 1):
        super().__init__()
        self.widths, self.convs, self.scale = tuple(widths), convs, scale
        self.summary_note = self.summary_note.format(scale=scale)
        c_white = 2 * in_channels * whiten_kernel ** 2
        self.whiten = nn.Conv2d(in_channels, c_white, whiten_kernel, stride=whiten_stride,
                                padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        with torch.no_grad():
            self.whiten.bias.zero_()
        self.act0 = kernels.GELU()
        chans = (c_white, *self.widths)
        per_block = tuple(convs) if isinstance(convs, (tuple, list)) else (convs,) * len(self.widths)
        if len(per_block) != len(self.widths) or any(c not in (1, 2) for c in per_block):
            raise ValueError(f"convs must be 1 or 2, or one of them per block ({len(self.widths)}), not {convs!r}")
        self.blocks = nn.Sequential(*(Block(a, b, c) for a, b, c in zip(chans[:-1], chans[1:], per_block)))
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        hw = layer_out("whiten", conv2d_out, hw, whiten_kernel, whiten_stride)
        for i, _ in enumerate(self.blocks):
            hw = layer_out(f"blocks.{i}.pool", pool2d_out, hw, 2)
        self.final_hw = hw  # the final map at image_size: (3, 3) at 32 pixels
        # One window over the whole final map, whatever the image size (smaller crops train the
        # first epochs in some recipes): at image_size, nn.MaxPool2d(final_hw).
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(chans[-1], num_classes, bias=False)

    @torch.no_grad()
    def data_init(self, images: torch.Tensor) -> None:
        """Set the whitening conv from a float32 normalized (N, C, H, W) batch of training images.

        The covariance counts every 2x2 patch whatever the conv's stride: at stride 2 the patches
        the conv sees are a quarter of them, drawn from the same statistics."""
        w = whitening_weights(images.to(self.whiten.weight.device), self.whiten.kernel_size[0])
        self.whiten.weight.copy_(w)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by kind: BN biases ("norm") usually get a larger learning rate."""
        norm = [m.bias for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        weight = [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                  and m.weight.requires_grad]
        return {"weight": weight, "bias": [self.whiten.bias], "norm": norm}

    def forward(self, x):              # (B, 3, 32, 32)
        x = self.act0(self.whiten(x))  # (B, 24, 31, 31); at whiten_stride 2 (B, 24, 16, 16)
        x = self.blocks(x)             # (B, w3, 3, 3): three halvings of 31 (of 16: 2 x 2)
        x = self.pool(x)               # (B, w3, 1, 1)
        x = self.flatten(x)            # (B, w3)
        return self.fc(x) * self.scale  # (B, classes): logits


def fast_q_s2(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """The CPU sprint: fast-q with the whitening conv at stride 2 (0.3x fast-q's work)."""
    return FastNet((16, 64, 64), 2, num_classes, in_channels, image_size, whiten_stride=2)


def fast_s(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """The first CPU sprint: widths 32/64/128, one conv per block."""
    return FastNet((32, 64, 128), 1, num_classes, in_channels, image_size)


def fast_q(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """fast-94's layout at a quarter of its widths, 16/64/64, two convs per block."""
    return FastNet((16, 64, 64), 2, num_classes, in_channels, image_size)


def fast_h(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """85 % on a CPU: fast-94's layout at half its widths, 32/128/128, two convs per block."""
    return FastNet((32, 128, 128), 2, num_classes, in_channels, image_size)


def fast_c(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """fast-85's model in fp32: widths 32/128/160, two convs in the first and last blocks and one in
    the middle (fast-h's 128->128 conv at 7x7 takes more than a quarter of its fp32 step)."""
    return FastNet((32, 128, 160), (2, 1, 2), num_classes, in_channels, image_size)


def fast_m(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """Widths 64/128/256, one conv per block (a third of fast-94's work)."""
    return FastNet((64, 128, 256), 1, num_classes, in_channels, image_size)


def fast_94(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """The airbench94 size: widths 64/256/256, two convs per block, about 2 M parameters."""
    return FastNet((64, 256, 256), 2, num_classes, in_channels, image_size)


def fast_l(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """The airbench95 size: widths 128/384/384, two convs per block, about 4.6 M parameters."""
    return FastNet((128, 384, 384), 2, num_classes, in_channels, image_size)
