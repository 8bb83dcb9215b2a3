"""The augmentations of the DFDC frame recipes, clip-consistent, on ``tv_tensors.Video (T, C, H, W) uint8``.

Built from ``torchvision.transforms.v2`` where it has the operation (JPEG, blur, noise, flips, ColorJitter,
grayscale, affine); the rest are small callables here (isotropic resize with a random filter and zero padding,
downscale, FancyPCA). Every random parameter is drawn once per call from torch's RNG, so all frames of a clip get
the same JPEG quality, filter, flip, colour change and affine transform (only Gaussian noise differs per pixel),
and :func:`train.augment.apply_clip` makes the draw a function of the sample's seed. No albumentations: every
published operation has an equivalent here (a choice recorded in ``docs/recipes.md``).

The 1st place's pipeline in its published order (REFERENCE.md section 4), when ``resize: isotropic``: JPEG
(q 60-100, p 0.5), Gaussian noise (p 0.1), blur (p 0.05), horizontal flip, isotropic resize to the model size with
one of three (down, up) filter pairs, zero padding, one of brightness/contrast, FancyPCA, hue/saturation
(p 0.7), grey (p 0.2), shift/scale/rotate (p 0.5).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

from .augment import train_transform
from .config import TrainConfig

# (shrinking, enlarging) filters of the 1st place's three isotropic resizes: (area, cubic), (area, linear),
# (linear, linear). "area" is bilinear with antialiasing here.
RESIZE_FILTERS: tuple[tuple[str, str], ...] = (("area", "cubic"), ("area", "linear"), ("linear", "linear"))
_MODES = {"area": (InterpolationMode.BILINEAR, True), "linear": (InterpolationMode.BILINEAR, False),
          "cubic": (InterpolationMode.BICUBIC, False)}


def _wrap_like(out: Tensor, like: Tensor) -> Tensor:
    return tv_tensors.wrap(out, like=like) if isinstance(like, tv_tensors.TVTensor) else out


def isotropic_resize(video: Tensor, size: int, *, down: str = "area", up: str = "cubic") -> Tensor:
    """Resize ``(..., C, H, W)`` so that its long side is ``size`` (aspect kept; short side ``int(side * scale)``)
    and place it in the centre of a black ``size x size`` canvas (start ``(size - side) // 2``)."""
    h, w = video.shape[-2:]
    scale = size / max(h, w)
    nh, nw = (size, int(w * scale)) if h >= w else (int(h * scale), size)
    nh, nw = max(nh, 1), max(nw, 1)
    if (nh, nw) != (h, w):
        mode, antialias = _MODES[down if scale < 1 else up]
        out = v2.functional.resize(video.as_subclass(Tensor), [nh, nw], interpolation=mode, antialias=antialias)
        if out.is_floating_point() and not video.is_floating_point():
            out = out.round().clamp(0, 255).to(video.dtype)
    else:
        out = video.as_subclass(Tensor)
    if (nh, nw) != (size, size):
        canvas = out.new_zeros((*out.shape[:-2], size, size))
        y0, x0 = (size - nh) // 2, (size - nw) // 2
        canvas[..., y0:y0 + nh, x0:x0 + nw] = out
        out = canvas
    return _wrap_like(out, video)


class IsotropicResize:
    """:func:`isotropic_resize` to ``size`` with one (down, up) filter pair drawn uniformly from ``filters``."""

    def __init__(self, size: int, filters: Sequence[tuple[str, str]] = RESIZE_FILTERS) -> None:
        self.size = int(size)
        self.filters = tuple(filters)

    def __call__(self, video: Tensor) -> Tensor:
        down, up = self.filters[int(torch.randint(len(self.filters), ()))] if len(self.filters) > 1 else \
            self.filters[0]
        return isotropic_resize(video, self.size, down=down, up=up)


class Downscale:
    """Shrink by a factor drawn from ``scale`` (one per clip), then resize back (bilinear): lost detail, as
    albumentations' Downscale and the bronze solution's "crappify"."""

    def __init__(self, scale: tuple[float, float]) -> None:
        self.lo, self.hi = float(scale[0]), float(scale[1])

    def __call__(self, video: Tensor) -> Tensor:
        h, w = video.shape[-2:]
        s = self.lo + (self.hi - self.lo) * float(torch.rand(()))
        small = [max(int(round(h * s)), 1), max(int(round(w * s)), 1)]
        x = video.as_subclass(Tensor)
        out = v2.functional.resize(x, small, interpolation=InterpolationMode.NEAREST)
        out = v2.functional.resize(out, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=False)
        return _wrap_like(out, video)


class FancyPCA:
    """AlexNet-style PCA colour noise: the clip's RGB covariance (over all its pixels, in [0, 1]) gives
    eigenvectors ``v_i`` and eigenvalues ``l_i``; every pixel gets ``sum_i a_i l_i v_i`` with ``a_i ~ N(0, alpha)``
    (one draw per clip; albumentations' default alpha 0.1)."""

    def __init__(self, alpha: float = 0.1) -> None:
        self.alpha = float(alpha)

    def __call__(self, video: Tensor) -> Tensor:
        x = video.as_subclass(Tensor)
        f = x.float() / 255.0 if not x.is_floating_point() else x.float()
        pix = f.movedim(-3, -1).reshape(-1, 3)
        cov = torch.cov(pix.T) if pix.shape[0] > 1 else torch.zeros(3, 3)
        evals, evecs = torch.linalg.eigh(cov)
        a = torch.randn(3) * self.alpha
        shift = evecs @ (a * evals.clamp_min(0))
        out = f + shift.view(3, 1, 1)
        if not x.is_floating_point():
            out = (out * 255.0).round().clamp(0, 255).to(x.dtype)
        return _wrap_like(out, video)


def _colour_choice(cfg: TrainConfig) -> list[Callable]:
    if cfg.color_p <= 0:
        return []
    one_of = v2.RandomChoice([
        v2.ColorJitter(brightness=0.2, contrast=0.2),   # albumentations RandomBrightnessContrast defaults
        FancyPCA(0.1),
        v2.ColorJitter(saturation=0.3, hue=0.11),        # HueSaturationValue: hue 20 of OpenCV's 180, sat 30/255
    ])
    return [v2.RandomApply([one_of], p=cfg.color_p)]


def _after_geometry(cfg: TrainConfig) -> list[Callable]:
    ops: list[Callable] = _colour_choice(cfg)
    if cfg.gray_p > 0:
        ops.append(v2.RandomGrayscale(p=cfg.gray_p))
    if cfg.affine_p > 0:  # albumentations ShiftScaleRotate(shift 0.1, scale 0.2, rotate 10, constant border)
        ops.append(v2.RandomApply([v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.8, 1.2), fill=0)],
                                  p=cfg.affine_p))
    return ops


def _quality_ops(cfg: TrainConfig) -> list[Callable]:
    ops: list[Callable] = []
    if cfg.jpeg_p > 0:
        lo, hi = (int(round(q)) for q in cfg.jpeg_quality)
        ops.append(v2.RandomApply([v2.JPEG(quality=(lo, hi))], p=cfg.jpeg_p))
    if cfg.downscale_p > 0:
        ops.append(v2.RandomApply([Downscale(cfg.downscale_range)], p=cfg.downscale_p))
    return ops


def uses_recipe_augmentation(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` asks for anything beyond :func:`train.augment.train_transform`."""
    return (cfg.resize == "isotropic" or cfg.jpeg_p > 0 or cfg.downscale_p > 0 or cfg.color_p > 0
            or cfg.gray_p > 0 or cfg.affine_p > 0)


def recipe_train_transform(cfg: TrainConfig, size: int) -> Callable[[Tensor], Tensor]:
    """Training augmentation ``Video (T, C, H, W) uint8 -> (T, C, size, size) uint8`` of a recipe.

    ``resize: isotropic``: the 1st place's order (module docstring), with the noise/blur/flip settings of the
    config. ``resize: crop``: the clip pipeline of :func:`train.augment.train_transform` (random resized crop or
    resize + centre crop, flips, brightness/contrast, blur, noise, channel permutation), then JPEG/downscale,
    colour choice, grey and affine. Settings all off: exactly ``train_transform``.
    """
    if not uses_recipe_augmentation(cfg):
        return train_transform(cfg, size)
    if cfg.resize == "crop":
        return v2.Compose([train_transform(cfg, size), *_quality_ops(cfg), *_after_geometry(cfg)])
    ops: list[Callable] = list(_quality_ops(cfg))
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        ops.append(v2.RandomApply([v2.GaussianNoise(sigma=cfg.noise_std)], p=cfg.noise_p))
    if cfg.blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel_size=3, sigma=cfg.blur_sigma)], p=cfg.blur_p))
    if cfg.hflip_p > 0:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip_p))
    if cfg.vflip_p > 0:
        ops.append(v2.RandomVerticalFlip(cfg.vflip_p))
    ops.append(IsotropicResize(size))
    if cfg.bc_p > 0 and cfg.bc_limit > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(brightness=cfg.bc_limit, contrast=cfg.bc_limit)], p=cfg.bc_p))
    ops.extend(_after_geometry(cfg))
    if cfg.channel_perm_p > 0:
        ops.append(v2.RandomApply([v2.RandomChannelPermutation()], p=cfg.channel_perm_p))
    return v2.Compose(ops)


class IsotropicVal:
    """Validation for ``resize: isotropic``: the 1st place's inference resize (area down, cubic up) and padding."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, video: Tensor) -> Tensor:
        return isotropic_resize(video, self.size, down="area", up="cubic")


__all__ = ["Downscale", "FancyPCA", "IsotropicResize", "IsotropicVal", "RESIZE_FILTERS", "isotropic_resize",
           "recipe_train_transform", "uses_recipe_augmentation"]
