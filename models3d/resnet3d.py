"""3D-ResNet-34 as in kenshohara/3D-ResNets-PyTorch (Kinetics model ``resnet-34-kinetics.pth``).

Layout (state-dict names equal upstream's once the ``module.`` prefix is stripped):
``conv1`` Conv3d(3, 64, 7, stride (1, 2, 2), pad 3, no bias), ``bn1``, ReLU, ``maxpool`` (3, stride 2, pad 1),
``layer1..layer4`` of BasicBlocks [3, 4, 6, 3] (3x3x3 convs ``conv1``/``bn1``/``conv2``/``bn2``; the first block
of layers 2-4 strides 2 in time and space), global average pool, ``fc`` Linear(512, num_classes).

Shortcut type A: where a block changes width or stride the identity is subsampled (stride, no parameters) and
zero channels are appended, so there are no ``downsample`` keys. Upstream detached this shortcut from the graph
(``out.data``); here gradients flow through it, which does not change any forward value.

Upstream pooled with a fixed ``AvgPool3d`` sized for its training clip (16 x 112 x 112 -> a 1 x 4 x 4 map, i.e. a
global average); here the pool is adaptive, which is identical at that size and works at any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import presets
from .base import ClipClassifier, check_input
from .registry import register_model

__all__ = ["ResNet3D", "BasicBlock3D", "r3d34"]


class BasicBlock3D(nn.Module):
    """Two 3x3x3 conv-BN layers with a parameter-free (type A) shortcut.

    ``(B, C_in, T, H, W)`` -> ``(B, planes, ceil(T/s), ceil(H/s), ceil(W/s))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        if planes < in_planes:
            raise ValueError("shortcut A can only widen")
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.stride = stride
        self.extra_channels = planes - in_planes

    def shortcut(self, x: Tensor) -> Tensor:
        """Type A: subsample by ``stride`` and append zero channels up to ``planes``."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride, :: self.stride]
        if self.extra_channels:
            # F.pad on the channel axis (pad spec runs from the last dim backwards).
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class ResNet3D(ClipClassifier):
    """kenshohara-style 3D ResNet with BasicBlocks and shortcut A.

    Input ``(B, 3, T, H, W)`` (0..255 minus the Kinetics mean, see ``preset``); output ``(B, num_classes)``;
    ``forward_features`` gives ``(B, 512)``. Downsamples time by 16 and space by 32.
    """

    classifier_name = "fc"

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), *, num_classes: int = 2,
                 dropout: float = 0.0, arch: str = "r3d34") -> None:
        super().__init__(arch=arch, preset=presets.R3D34, num_features=512, num_classes=num_classes)
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        widths = (64, 128, 256, 512)
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock3D(in_planes, planes, stride)]
            stage += [BasicBlock3D(planes, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            in_planes = planes
        self.dropout = nn.Dropout(dropout)
        self.fc = self._new_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, 512)``."""
        check_input(x, 5, self.arch)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.mean(x, dim=(2, 3, 4))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 512)`` -> ``(B, num_classes)``."""
        return self.fc(self.dropout(features))


@register_model("r3d34", preset=presets.R3D34,
                description="3D-ResNet-34, shortcut A (kenshohara resnet-34-kinetics.pth)")
def r3d34(*, num_classes: int = 2, dropout: float = 0.0) -> ResNet3D:
    """3D-ResNet-34; 63,340,738 parameters with 2 classes."""
    return ResNet3D((3, 4, 6, 3), num_classes=num_classes, dropout=dropout, arch="r3d34")
