"""The course report's network and the course's ladder on top of it, one visible change at a time.

    seed             the course report's CNN: two 3x3 'same' convs (16, 32 channels), each followed
                     by ReLU and 2x2 max pooling, then one linear layer. 25,578 parameters on CIFAR-10.
    seed-p1          the same network written with padding=1 (the report's Discussion: identical).
    seed-bn          seed with batch normalization after each conv (conv -> BN -> ReLU -> pool; the
                     convs lose their bias, which BN's own shift replaces).
    seed-bn-dropout  seed-bn with dropout before the classifier.
    seed-avgpool     seed with 2x2 average (mean) pooling instead of max pooling.
    seed-wide        seed-bn with twice the channels (32, 64).

Flatten sizes come from cnnlab.network.shapes, so every model works at any input size its layers allow.
"""
from __future__ import annotations

import torch.nn as nn

from .. import kernels
from ..shapes import conv2d_out, layer_out, pool2d_out


class SeedNet(nn.Module):
    """Conv(3->16, 3x3) -> ReLU -> MaxPool(2) -> Conv(16->32, 3x3) -> ReLU -> MaxPool(2) -> Linear.

    The ladder's options: widths, batch norm after each conv, dropout before the classifier,
    and average instead of max pooling. With none of them it is the report's network.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size=32,
                 padding: int | str = "same", widths: tuple[int, int] = (16, 32), bn: bool = False,
                 dropout: float = 0.0, pool: str = "max"):
        super().__init__()
        c1, c2 = widths
        pool_cls = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pool]
        # Module creation order fixes the random initialization: conv1, conv2, fc as in the report.
        self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=1, padding=padding, bias=not bn)
        self.bn1 = nn.BatchNorm2d(c1) if bn else None
        self.relu1 = nn.ReLU()
        self.pool1 = pool_cls(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=1, padding=padding, bias=not bn)
        self.bn2 = nn.BatchNorm2d(c2) if bn else None
        self.relu2 = nn.ReLU()
        self.pool2 = pool_cls(2)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        for i, conv, p in ((1, self.conv1, self.pool1), (2, self.conv2, self.pool2)):
            h, w = layer_out(f"conv{i}", conv2d_out, (h, w), conv.kernel_size, conv.stride, padding, conv.dilation)
            h, w = layer_out(f"pool{i}", pool2d_out, (h, w), p.kernel_size, p.stride)
        self.fc = nn.Linear(c2 * h * w, num_classes)
        # Max pooling commutes with ReLU (see forward); after BN or with mean pooling it still
        # would for max, but the report's order conv -> ReLU -> pool is kept where it differs.
        self.pool_first = pool == "max" and not bn
        if self.pool_first:
            self.summary_note = ("note: each ReLU runs after its pooling; max pooling commutes with "
                                 "ReLU, so this is bitwise the report's conv -> ReLU -> pool, with the "
                                 "ReLU on 4x fewer pixels")

    def _block(self, x, conv, bn, relu, pool):
        x = conv(x)
        if bn is not None:
            x = bn(x)
        # The report applies ReLU, then max pooling. Pooling first and ReLU after gives bitwise the
        # same outputs and gradients (max commutes with any non-decreasing function; the test
        # suite checks it) with the ReLU on 4x fewer pixels: about 30 % faster per step on the CPU.
        # In fp32 on the CPU the three run as one compiled pass where it builds (network.kernels).
        return relu(pool(x)) if self.pool_first else pool(relu(x))

    def _fused(self, x, conv, relu, pool):
        """conv -> pool -> ReLU compiled, or None where it cannot run (network.kernels.usable)."""
        if self.pool_first and kernels.usable(x, conv, pool, (relu,)):
            return kernels.pooled_conv_relu(x, conv.weight, conv.bias)
        return None

    def forward(self, x):                                            # (B, 3, H, W), e.g. 32x32
        for conv, bn, relu, pool in ((self.conv1, self.bn1, self.relu1, self.pool1),  # (B, 16, H/2, W/2)
                                     (self.conv2, self.bn2, self.relu2, self.pool2)):  # (B, 32, H/4, W/4)
            y = self._fused(x, conv, relu, pool)
            x = y if y is not None else self._block(x, conv, bn, relu, pool)
        x = self.flatten(x)                                          # (B, 32*H/4*W/4): 2048 at 32
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x)                                            # (B, classes): logits


def seed(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """The course report's CNN: two 3x3 'same' convs (16, 32), ReLU, 2x2 max pooling, linear."""
    return SeedNet(num_classes, in_channels, image_size, padding="same")


def seed_p1(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """seed written with padding=1 instead of 'same' (the report's Discussion: the same network)."""
    return SeedNet(num_classes, in_channels, image_size, padding=1)


def seed_bn(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """seed + batch normalization after each conv (conv -> BN -> ReLU -> max pool)."""
    return SeedNet(num_classes, in_channels, image_size, bn=True)


def seed_bn_dropout(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """seed-bn + dropout (p = 0.3) before the classifier."""
    return SeedNet(num_classes, in_channels, image_size, bn=True, dropout=0.3)


def seed_avgpool(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """seed with 2x2 average (mean) pooling instead of max pooling."""
    return SeedNet(num_classes, in_channels, image_size, pool="avg")


def seed_wide(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """seed-bn with twice the channels: convs of 32 and 64."""
    return SeedNet(num_classes, in_channels, image_size, widths=(32, 64), bn=True)
