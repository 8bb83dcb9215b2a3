"""Per-member preprocessing of face tubes: centre crop + resize, temporal windows, frame choice, flip TTA.

A tube is ``(T, S, S, 3)`` uint8 RGB (``S`` = 256 from the extraction library). For each member it becomes a list
of *views*: for 3D models, windows ``(3, L, H, W)`` of ``L = clip_len`` consecutive frames; for 2D models, single
frames ``(3, H, W)``. Values stay in 0..255 here; the member's ``preset.normalize`` maps them to the network's
range just before the forward pass.

Windows (choice documented in the README): the published method fed the whole clip (<= 99 frames) to every 3D
model at once. Here the default ``cover`` mode instead uses the window length the model was trained on: ``ceil(T/L)``
windows of ``L`` frames, evenly spaced from the first frame to the last so that every frame is seen and overlaps are
spread evenly; ``whole`` reproduces the published behaviour. A tube shorter than ``L`` is padded by reflection
(``0 1 2 3 2 1 0 1 ...``): no frame is invented and there is no jump cut, unlike looping.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "window_starts", "reflect_indices", "window_indices", "frame_indices", "prepare_tube", "flip_tta",
    "PUBLISHED_CROP_FRACTION",
]

#: The published method centre-cropped 224 px from the 256 px tubes (then resized to 112 for 112-px models).
PUBLISHED_CROP_FRACTION = 224 / 256


def window_starts(n_frames: int, clip_len: int) -> list[int]:
    """Start frames of the ``cover`` windows: ``ceil(n / L)`` windows of ``L`` frames, evenly spaced so that the
    first starts at 0 and the last ends at ``n``. A tube with ``n <= L`` has one window starting at 0."""
    if n_frames < 1 or clip_len < 1:
        raise ValueError(f"need n_frames >= 1 and clip_len >= 1, got {n_frames}, {clip_len}")
    if n_frames <= clip_len:
        return [0]
    k = math.ceil(n_frames / clip_len)
    return [int(round(s)) for s in np.linspace(0, n_frames - clip_len, k)]


def reflect_indices(n_frames: int, length: int) -> np.ndarray:
    """``length`` frame indices that run through ``0 .. n-1`` and back (``0 1 2 1 0 1 2 ...`` for n = 3).

    Used to pad a tube shorter than a model's window. ``(length,)`` int64."""
    if n_frames < 1:
        raise ValueError("cannot pad an empty tube")
    if n_frames == 1:
        return np.zeros(length, dtype=np.int64)
    period = 2 * (n_frames - 1)
    i = np.arange(length) % period
    return np.where(i < n_frames, i, period - i).astype(np.int64)


def window_indices(n_frames: int, clip_len: int, mode: str = "cover") -> list[np.ndarray]:
    """Frame indices of every window of a tube of ``n_frames`` frames.

    Args:
        mode: ``cover``: windows of exactly ``clip_len`` frames from :func:`window_starts`. ``whole``: one window
            with every frame (at least ``clip_len`` long, reflection-padded when shorter).
    Returns:
        A list of ``(L,)`` int64 arrays (``L = clip_len``, or ``max(n_frames, clip_len)`` in ``whole`` mode).
    """
    if mode == "whole":
        return [reflect_indices(n_frames, max(n_frames, clip_len))]
    if mode != "cover":
        raise ValueError(f"window mode must be 'cover' or 'whole', got {mode!r}")
    if n_frames < clip_len:
        return [reflect_indices(n_frames, clip_len)]
    return [np.arange(s, s + clip_len, dtype=np.int64) for s in window_starts(n_frames, clip_len)]


def frame_indices(n_frames: int, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` frame indices evenly spaced over the tube, first and last included (2D members;
    the published 2D model used 32). ``(min(n, max_frames),)`` int64, sorted, unique."""
    if n_frames < 1 or max_frames < 1:
        raise ValueError(f"need n_frames >= 1 and max_frames >= 1, got {n_frames}, {max_frames}")
    if n_frames <= max_frames:
        return np.arange(n_frames, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n_frames - 1, max_frames)).astype(np.int64))


def prepare_tube(frames: np.ndarray | torch.Tensor, *, crop_fraction: float, crop_size: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Centre-crop and resize a tube for one input size.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB (H = W = 256 for extracted tubes; non-square tubes are cropped to a
            centred square of side ``crop_fraction * min(H, W)``).
        crop_fraction: side of the centre crop as a fraction of the tube side (published: 224/256).
        crop_size: output side; the crop is resized to it (bilinear, antialiased) unless it already has it.
        device: where the work happens (the uint8 frames are moved there first: 4x less traffic than floats).
    Returns:
        ``(3, T, crop_size, crop_size)`` float32 with values in 0..255.
    """
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
        raise ValueError(f"expected tube frames (T, H, W, 3), got shape {tuple(x.shape)}")
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    x = x.to(device, non_blocking=True)
    t, h, w, _ = x.shape
    side = max(1, int(round(min(h, w) * crop_fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, top:top + side, left:left + side].permute(0, 3, 1, 2).float()  # (T, 3, side, side)
    if side != crop_size:
        x = F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", align_corners=False,
                          antialias=side > crop_size)
        x = x.clamp_(0.0, 255.0)
    return x.permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)


def flip_tta(x: torch.Tensor) -> torch.Tensor:
    """``[x, hflip(x)]`` as one batch: ``(B, C, ..., W)`` -> ``(2B, C, ..., W)``; rows ``B + i`` mirror row ``i``."""
    return torch.cat([x, x.flip(-1)], dim=0)


def gather_views(tube: torch.Tensor, indices: Sequence[np.ndarray] | np.ndarray, *, is_3d: bool
                 ) -> list[torch.Tensor]:
    """Cut views out of a prepared tube ``(3, T, H, W)``.

    3D: ``indices`` is a list of window index arrays -> ``(3, L, H, W)`` each. 2D: a 1-D array of frame
    indices -> ``(3, H, W)`` each."""
    if is_3d:
        return [tube[:, torch.as_tensor(ix, device=tube.device)] for ix in indices]
    return [tube[:, int(i)] for i in np.asarray(indices).reshape(-1)]
