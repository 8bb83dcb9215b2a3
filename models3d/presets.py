"""Preprocessing presets: what each network expects as input.

A :class:`Preset` travels with every model (``model.preset``) and with every facetubes checkpoint, so
training and inference never hard-code clip length, crop size or normalisation. ``Preset.normalize`` maps
uint8-range pixels (0..255) to the tensor the network was pretrained on:

    x01 = x / 255                            # [0, 1]
    y   = lo + (hi - lo) * x01               # value_range (lo, hi)
    out = (y - mean[c]) / std[c]             # mean/std in the units of value_range

The values below are those of the public pretrained checkpoints (shared/REFERENCE.md, section 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = ["Preset", "I3D", "R3D34", "KINETICS_112", "SERESNEXT50", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class Preset:
    """Input contract of one network.

    Attributes:
        clip_len: frames per clip at training/inference time (1 for the 2D model).
        crop_size: square spatial input size in pixels.
        value_range: ``(lo, hi)`` that pixel values 0..255 are mapped to linearly before mean/std.
        mean: per-channel (RGB) mean, in the units of ``value_range``.
        std: per-channel (RGB) standard deviation, in the units of ``value_range``.
        is_3d: True for video models taking ``(B, 3, T, H, W)``, False for image models ``(B, 3, H, W)``.
    """

    clip_len: int
    crop_size: int
    value_range: tuple[float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    is_3d: bool

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.crop_size < 1:
            raise ValueError(f"clip_len and crop_size must be >= 1, got {self.clip_len}, {self.crop_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or len(self.value_range) != 2:
            raise ValueError("mean and std need 3 values (RGB), value_range needs 2 (lo, hi)")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if not self.value_range[1] > self.value_range[0]:
            raise ValueError(f"value_range must be increasing, got {self.value_range}")
        # Normalise sequences (e.g. lists from YAML or a checkpoint) to tuples so presets stay hashable.
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input without batch: ``(3, T, S, S)`` for 3D, ``(3, S, S)`` for 2D."""
        s = self.crop_size
        return (3, self.clip_len, s, s) if self.is_3d else (3, s, s)

    def scale_shift(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel ``(scale, shift)`` such that ``normalize(x) == x * scale + shift`` for x in 0..255."""
        lo, hi = self.value_range
        step = (hi - lo) / 255.0
        scale = tuple(step / s for s in self.std)
        shift = tuple((lo - m) / s for m, s in zip(self.mean, self.std))
        return scale, shift

    def normalize(self, x: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Map pixels in 0..255 to the network's input.

        Args:
            x: ``(B, 3, T, H, W)`` or ``(B, 3, H, W)`` tensor of values in 0..255, any dtype
                (uint8 from a decoder, or float already holding 0..255 values). Channels are RGB.
            dtype: floating dtype of the result.

        Returns:
            Tensor of the same shape and device, dtype ``dtype``.
        """
        if x.ndim not in (4, 5) or x.shape[1] != 3:
            raise ValueError(f"normalize expects (B, 3, T, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating point, got {dtype}")
        scale, shift = self.scale_shift()
        view = (1, 3) + (1,) * (x.ndim - 2)
        s = torch.tensor(scale, dtype=torch.float32, device=x.device).view(view)
        b = torch.tensor(shift, dtype=torch.float32, device=x.device).view(view)
        return torch.addcmul(b, x.to(torch.float32), s).to(dtype)

    def to_dict(self) -> dict[str, Any]:
        """Plain-types form (lists, numbers, bools), safe for ``torch.load(weights_only=True)`` and YAML."""
        return {
            "clip_len": self.clip_len,
            "crop_size": self.crop_size,
            "value_range": list(self.value_range),
            "mean": list(self.mean),
            "std": list(self.std),
            "is_3d": self.is_3d,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preset":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown preset fields: {sorted(unknown)}")
        return cls(**{k: d[k] for k in names if k in d})

    def replace(self, **changes: Any) -> "Preset":
        """Copy with some fields changed, e.g. ``preset.replace(clip_len=16)``."""
        return dataclasses.replace(self, **changes)


# piergiaj/pytorch-i3d: RGB in [-1, 1], 224 px; the published method used 64-frame windows.
I3D = Preset(clip_len=64, crop_size=224, value_range=(-1.0, 1.0), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
             is_3d=True)
# kenshohara 3D-ResNets: 0..255 minus the Kinetics mean, std 1, 112 px.
R3D34 = Preset(clip_len=32, crop_size=112, value_range=(0.0, 255.0), mean=(114.7748, 107.7354, 99.4750),
               std=(1.0, 1.0, 1.0), is_3d=True)
# torchvision video ResNets (mc3_18, r2plus1d_18): [0, 1], Kinetics mean/std, 112 px.
KINETICS_112 = Preset(clip_len=32, crop_size=112, value_range=(0.0, 1.0), mean=KINETICS_MEAN, std=KINETICS_STD,
                      is_3d=True)
# Cadene / timm SE-ResNeXt50_32x4d: [0, 1], ImageNet mean/std, 224 px, one frame.
SERESNEXT50 = Preset(clip_len=1, crop_size=224, value_range=(0.0, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     is_3d=False)
