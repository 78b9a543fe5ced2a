"""ResNet-18 for CIFAR-sized images, in the layout of kuangliu/pytorch-cifar (11,173,962 parameters).

    resnet18    3x3 stem conv (64) -> BN -> ReLU, four stages of two basic blocks (64, 128, 256,
                512 channels; stages 2-4 halve the size), average pooling over what is left
                (4x4 for 32x32 inputs), linear.

The literature's comparison point for the course's small networks (about 95 % on CIFAR-10 with
augmentation and a schedule); it is a GPU network: about 0.56 GMAC per 32x32 image, 340 times
seed's. Sizes come from cnnlab.network.shapes, so any input size the strides allow works.
"""
from __future__ import annotations

import torch.nn as nn

from ..shapes import conv2d_out, layer_out


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the input (a 1x1 conv + BN when the shape changes), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3, image_size=32):
        super().__init__()
        self.conv1 = conv3x3(in_channels, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        hw = layer_out("conv1", conv2d_out, hw, 3, 1, 1)
        stages, cin = [], 64
        for i, (n, cout) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
            hw = layer_out(f"layer{i + 1}", conv2d_out, hw, 3, stride, 1)
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AvgPool2d(hw)  # kuangliu: avg_pool2d(out, 4) on 32x32 inputs
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))


def resnet18(num_classes=10, in_channels=3, image_size=32) -> nn.Module:
    """ResNet-18, CIFAR layout (kuangliu): 3x3 stem, 4 stages of 2 basic blocks, avg pool, linear."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, image_size)
