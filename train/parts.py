"""Landmark-driven part dropout (1st place DFDC) and RandMerge (bronze DFDC): pure functions.

Landmarks are the five MTCNN points of a face, ``(5, 2)`` float ``x, y`` in the pixels of the frame they belong
to, in MTCNN's order: left eye, right eye, nose, left mouth corner, right mouth corner (left/right as seen in the
image). Tubes carry them in ``tubes.json`` (see :func:`tube_landmarks`).

Part dropout as published (REFERENCE.md section 4), applied to the raw tube frames before any other augmentation:
with probability ``part_p`` (0.7) black out the eyes (p 0.5), else the mouth (p 0.5), else the nose (p 0.5) -- so
a draw may black out nothing; otherwise, with probability ``half_p`` (0.2), black out one half of the face.
A part is "a 2-px line through its points dilated by a quarter of the eye distance (mouth: a third of its
width)"; here that is every pixel within ``1 + dilation`` pixels (Euclidean) of the segment (published: a
binary dilation with the 3x3 cross, which grows a diamond; the choice of a round pen is ours). The nose line runs
from the nose tip to the midpoint of the eyes. The published half-face split uses the centroid of a 68-point
outline; with five points the split here is at the centroid of the five landmarks, and the half (left, right,
top, bottom) is drawn uniformly. The published third branch (half/quarter masks gated by the difference mask)
needs difference masks, which facetubes does not make yet: it is left out.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

PARTS = ("eyes", "mouth", "nose")
HALVES = ("left", "right", "top", "bottom")


# ----------------------------------------------------------------------------------------------------------------
# masks (pure numpy)


def segment_mask(shape: tuple[int, int], p: Sequence[float], q: Sequence[float], radius: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels whose centres lie within ``radius`` of the segment ``p``-``q``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    p_ = np.asarray(p, np.float32)
    d = np.asarray(q, np.float32) - p_
    length2 = float(d @ d)
    if length2 == 0.0:
        t = np.zeros_like(xx)
    else:
        t = np.clip(((xx - p_[0]) * d[0] + (yy - p_[1]) * d[1]) / length2, 0.0, 1.0)
    dx = xx - (p_[0] + t * d[0])
    dy = yy - (p_[1] + t * d[1])
    return dx * dx + dy * dy <= radius * radius


def part_mask(shape: tuple[int, int], landmarks: np.ndarray, part: str) -> np.ndarray:
    """Boolean ``(H, W)`` mask of one facial ``part`` (``eyes``, ``mouth``, ``nose``) of ``landmarks (5, 2)``."""
    lm = np.asarray(landmarks, np.float32).reshape(5, 2)
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    if part == "eyes":
        return segment_mask(shape, lm[0], lm[1], 1.0 + int(eye_dist // 4))
    if part == "mouth":
        width = float(np.linalg.norm(lm[4] - lm[3]))
        return segment_mask(shape, lm[3], lm[4], 1.0 + int(width // 3))
    if part == "nose":
        return segment_mask(shape, lm[2], (lm[0] + lm[1]) / 2, 1.0 + int(eye_dist // 4))
    raise ValueError(f"unknown face part {part!r} (known: {', '.join(PARTS)})")


def half_mask(shape: tuple[int, int], landmarks: np.ndarray, half: str) -> np.ndarray:
    """Boolean ``(H, W)`` mask of one ``half`` of the face, split at the centroid of the landmarks."""
    h, w = shape
    cx, cy = np.asarray(landmarks, np.float32).reshape(5, 2).mean(axis=0)
    yy, xx = np.mgrid[0:h, 0:w]
    if half == "left":
        return xx < cx
    if half == "right":
        return xx >= cx
    if half == "top":
        return yy < cy
    if half == "bottom":
        return yy >= cy
    raise ValueError(f"unknown half {half!r} (known: {', '.join(HALVES)})")


def draw_part_dropout(rng: np.random.Generator, *, part_p: float = 0.7, half_p: float = 0.2) -> Optional[str]:
    """The published draw: ``eyes`` | ``mouth`` | ``nose`` | ``half:<side>`` | None (nothing blacked out)."""
    if rng.random() < part_p:
        for part in PARTS:
            if rng.random() < 0.5:
                return part
        return None
    if rng.random() < half_p:
        return "half:" + HALVES[int(rng.integers(len(HALVES)))]
    return None


def apply_part_dropout(frames: np.ndarray, landmarks: Sequence[Optional[np.ndarray]], choice: Optional[str]
                       ) -> np.ndarray:
    """Black out ``choice`` in every frame of ``frames (T, H, W, 3) uint8`` using that frame's ``(5, 2)``
    landmarks (a frame whose landmarks are None is left as it is). Returns a new array."""
    out = np.array(frames, copy=True)
    if choice is None:
        return out
    shape = out.shape[1:3]
    for t, lm in enumerate(landmarks):
        if lm is None:
            continue
        if choice.startswith("half:"):
            mask = half_mask(shape, lm, choice[5:])
        else:
            mask = part_mask(shape, lm, choice)
        out[t][mask] = 0
    return out


# ----------------------------------------------------------------------------------------------------------------
# landmarks of a tube


def tube_landmarks(entries: Sequence, frames: Sequence[int], *, max_gap: int = 10) -> list[Optional[np.ndarray]]:
    """Landmarks of tube frames ``frames`` (source frame numbers) from manifest ``entries``.

    ``entries`` is the ``landmarks`` list of a tube or track in ``tubes.json``: ``[[frame, [[x, y] x 5]], ...]``
    with source frame numbers and tube pixels. A frame between two entries at most ``max_gap`` frames apart gets
    the linear interpolation; one within ``max_gap`` of a single entry gets that entry; others get None.
    """
    if not entries:
        return [None] * len(frames)
    table = sorted((int(f), np.asarray(p, np.float32).reshape(5, 2)) for f, p in entries)
    keys = np.array([f for f, _ in table])
    out: list[Optional[np.ndarray]] = []
    for f in frames:
        j = int(np.searchsorted(keys, f))
        if j < len(keys) and keys[j] == f:
            out.append(table[j][1].copy())
            continue
        lo = table[j - 1] if j > 0 else None
        hi = table[j] if j < len(keys) else None
        if lo is not None and hi is not None and hi[0] - lo[0] <= max_gap:
            a = (f - lo[0]) / float(hi[0] - lo[0])
            out.append((1 - a) * lo[1] + a * hi[1])
        elif lo is not None and f - lo[0] <= max_gap:
            out.append(lo[1].copy())
        elif hi is not None and hi[0] - f <= max_gap:
            out.append(hi[1].copy())
        else:
            out.append(None)
    return out


# ----------------------------------------------------------------------------------------------------------------
# RandMerge (batch level)


def rand_merge(x: Tensor, labels: Tensor, *, p: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """RandMerge: with probability ``p`` per sample, replace the right half of image ``i`` by the right half of
    another image of the same class in the batch (the left half of one face joined to the right half of another).

    ``x`` is ``(B, C, H, W)`` or ``(B, C, T, H, W)``; labels ``(B,)`` are unchanged (both halves share the class).
    A sample with no same-class partner in the batch stays as it is. Returns ``(x', partner (B,) int64)`` where
    ``partner[i] == i`` for untouched samples.
    """
    b, w = x.shape[0], x.shape[-1]
    partner = torch.arange(b)
    labs = labels.detach().cpu().long().numpy()
    for i in range(b):
        if rng.random() >= p:
            continue
        same = np.flatnonzero((labs == labs[i]) & (np.arange(b) != i))
        if len(same):
            partner[i] = int(rng.choice(same))
    if bool((partner == torch.arange(b)).all()):
        return x, partner
    out = x.clone()
    half = w // 2
    moved = partner != torch.arange(b)
    src = partner.to(x.device)
    out[moved.to(x.device), ..., half:] = x[src][moved.to(x.device), ..., half:]
    return out, partner
