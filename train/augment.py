"""Clip-consistent augmentation built from ``torchvision.transforms.v2``.

The frames of a clip are wrapped as one ``tv_tensors.Video`` ``(T, C, H, W)``: v2 draws each random parameter
(crop box, flip, blur sigma, brightness factor...) once per call and applies it to every frame, so a clip keeps
one geometry and one colour throughout (only the Gaussian noise differs pixel by pixel). Everything runs on
``uint8``; geometric operations come first so the photometric ones work on the smaller crop.

Defaults are the published ones (REFERENCE.md): blur p=0.1, noise p=0.1, brightness/contrast p=0.25 (+-0.2),
random resized crop scale (0.5, 1) ratio (0.9, 1.1), horizontal flip 0.5; validation: centre crop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from .config import TrainConfig

ClipTransform = Callable[[Tensor], Tensor]


def _photometric(cfg: TrainConfig) -> list[v2.Transform]:
    ops: list[v2.Transform] = []
    if cfg.bc_p > 0 and cfg.bc_limit > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(brightness=cfg.bc_limit, contrast=cfg.bc_limit)], p=cfg.bc_p))
    if cfg.blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel_size=7, sigma=cfg.blur_sigma)], p=cfg.blur_p))
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        ops.append(v2.RandomApply([v2.GaussianNoise(sigma=cfg.noise_std)], p=cfg.noise_p))
    if cfg.channel_perm_p > 0:
        ops.append(v2.RandomApply([v2.RandomChannelPermutation()], p=cfg.channel_perm_p))
    return ops


def train_transform(cfg: TrainConfig, crop_size: int) -> v2.Compose:
    """Training augmentation for a ``Video (T, C, H, W) uint8`` -> ``(T, C, crop, crop) uint8``."""
    ops: list[v2.Transform] = []
    if cfg.rrc:
        ops.append(v2.RandomResizedCrop(crop_size, scale=cfg.rrc_scale, ratio=cfg.rrc_ratio, antialias=True))
    else:
        ops.append(v2.Resize(crop_size, antialias=True))
        ops.append(v2.CenterCrop(crop_size))
    if cfg.hflip_p > 0:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip_p))
    if cfg.vflip_p > 0:
        ops.append(v2.RandomVerticalFlip(cfg.vflip_p))
    ops.extend(_photometric(cfg))
    return v2.Compose(ops)


class CentreCrop:
    """Validation: centre crop a ``fraction`` of the short side, then resize to ``size`` (a no-op when equal).

    With the defaults a 256-px tube gives the published centre 224 crop, and 112-px models see that crop
    resized to 112, as at inference.
    """

    def __init__(self, size: int, fraction: float = 0.875) -> None:
        self.size = int(size)
        self.fraction = float(fraction)

    def __call__(self, video: Tensor) -> Tensor:
        h, w = video.shape[-2:]
        side = min(max(int(round(min(h, w) * self.fraction)), 1), h, w)
        if side < self.size and min(h, w) >= self.size:
            side = self.size  # never upsample a crop when the tube itself is large enough
        out = v2.functional.center_crop(video, [side, side])
        if side != self.size:
            out = v2.functional.resize(out, [self.size, self.size], antialias=True)
        return out


def val_transform(cfg: TrainConfig, crop_size: int) -> CentreCrop:
    """Validation transform (deterministic)."""
    return CentreCrop(crop_size, cfg.val_crop_fraction)


def frames_to_video(frames: np.ndarray) -> tv_tensors.Video:
    """``(T, H, W, 3) uint8`` numpy frames -> ``tv_tensors.Video (T, 3, H, W) uint8`` (no copy when possible)."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    return tv_tensors.Video(t)


def apply_clip(transform: ClipTransform, frames: np.ndarray, seed: int | None = None) -> Tensor:
    """Augment ``frames (T, H, W, 3) uint8`` as one clip; returns a plain ``(C, T, H', W') uint8`` tensor.

    With ``seed`` the draw is reproducible and the caller's global torch RNG is left untouched. Only the CPU
    generator is seeded (the transforms draw on CPU): ``torch.manual_seed`` would also re-seed every CUDA generator,
    once per sample, in the training process itself when ``--num-workers 0``.
    """
    video = frames_to_video(frames)
    if seed is None:
        out = transform(video)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            out = transform(video)
    return out.as_subclass(Tensor).permute(1, 0, 2, 3).contiguous()
