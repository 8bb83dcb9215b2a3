"""Crop plans: which square of every frame becomes a face tube, and the per-frame crop itself.

Pure numpy (+ scipy's 1-D Gaussian filter, Pillow for the resize): no video I/O here.

A crop is a square around the face with ``margin`` (fraction of the face box side) added on each side. It is
centred on the face; when it fits in the frame it is shifted to lie fully inside it; in a dimension where it is
larger than the frame it is centred on the frame and the outside is zero-padded by ``crop_frame``. Sides are
even integers, boxes integer pixels ``x1, y1, x2, y2`` (ends exclusive).

``static`` (the published rule): one square over the union of the face boxes, for every frame.
``follow``: a square of fixed side (largest face side over the part, times ``1 + 2*margin``) whose centre follows
the face (linearly interpolated between sampled frames) smoothed by a Gaussian of ``follow_sigma`` frames, and
pushed back wherever the smoothing would leave part of the face outside.
``auto`` (the default): ``static`` while the static square stays tight around the face (its side at most
``TIGHT_RATIO`` times the follow square's side), else ``follow``. A person who stands still gets the published
static box; a person who walks gets a square that moves with them instead of a union box over the whole path
(which showed the whole scene and other people; benchmarks/RESULTS.md, "Default crop").

Every guarantee ("the crop contains the face") refers to the per-frame face box: detections linearly
interpolated between the track's sampled frames and held after the last one (``face_boxes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter1d

from .tracks import Track

__all__ = ["CropPlan", "plan_crops", "plan_boxes", "face_boxes", "crop_frame", "crop_frames", "part_ranges",
           "CROP_MODES", "TIGHT_RATIO"]

CROP_MODES = ("auto", "static", "follow")
TIGHT_RATIO = 1.25
"""``auto`` mode: the static square is "tight" while its side is at most this many times the side of the follow
square (the largest face side times ``1 + 2*margin``), i.e. the face moved by at most a quarter of its size over
the part. Measured on the street video, synthetic walkers and DFDC boxes in benchmarks/RESULTS.md."""

FOLLOW_ITERATIONS = 5
"""``follow`` mode alternates Gaussian smoothing and pushing the centre back to where the face fits, this often."""
REDUCING_GAP = 2.0
"""Pillow ``reducing_gap``: crops >= 4x the output size are first shrunk by an integer factor (faster, and
identical to plain bilinear below that factor; see benchmarks/RESULTS.md)."""


@dataclass
class CropPlan:
    """Square crop boxes for frames ``[start, stop)`` of one track (``part > 0`` for later parts of a split)."""

    track_id: int
    part: int
    start: int
    stop: int
    boxes: np.ndarray
    """``(stop - start, 4)`` int32 ``x1, y1, x2, y2``, square, even side; may extend beyond the frame."""

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    def box_at(self, frame: int) -> np.ndarray:
        """Crop box of video frame ``frame`` (``start <= frame < stop``)."""
        if not self.start <= frame < self.stop:
            raise IndexError(f"frame {frame} outside [{self.start}, {self.stop})")
        return self.boxes[frame - self.start]


def face_boxes(track: Track) -> np.ndarray:
    """Per-frame face boxes ``(track.n_frames, 4)`` float64 for frames ``[start, stop)``: the detections,
    linearly interpolated between sampled frames, held constant before the first and after the last one."""
    if len(track.frames) == 0:
        raise ValueError(f"track {track.id} has no detections")
    frames = np.arange(track.start, track.stop)
    known = np.asarray(track.frames, dtype=np.float64)
    boxes = np.asarray(track.boxes, dtype=np.float64)
    return np.stack([np.interp(frames, known, boxes[:, k]) for k in range(4)], axis=1)


def part_ranges(start: int, stop: int, max_frames: Optional[int], long_tracks: str = "split") -> list[tuple[int, int]]:
    """Frame ranges of the parts of a track ``[start, stop)``.

    ``max_frames=None``: one part. ``cap``: the first ``max_frames`` frames. ``split``: consecutive parts of
    ``max_frames`` frames; the remainder at the end is its own, shorter part (the caller's ``min_frames`` decides
    whether it is kept), so no frame is dropped here and parts never overlap.
    """
    if max_frames is None or stop - start <= max_frames:
        return [(start, stop)]
    if long_tracks == "cap":
        return [(start, start + max_frames)]
    return [(a, min(a + max_frames, stop)) for a in range(start, stop, max_frames)]


def plan_crops(
    track: Track,
    *,
    frame_size: tuple[int, int],
    mode: Literal["auto", "static", "follow"] = "static",
    margin: float = 0.0,
    follow_sigma: float = 15.0,
    max_frames: Optional[int] = None,
    long_tracks: Literal["split", "cap"] = "split",
    min_frames: int = 1,
) -> list[CropPlan]:
    """Crop boxes for every frame of a track, one ``CropPlan`` per part.

    Args:
        track: from ``build_tracks`` (boxes in pixels of the full-resolution upright frame).
        frame_size: ``(width, height)`` of that frame.
        mode: ``static`` (one square over the union of the face boxes), ``follow`` (moving square) or ``auto``
            (static while it is tight around the face, else follow; decided per part; the default of
            ``ExtractConfig.crop``, while this function keeps ``static``, its original default).
        margin: fraction of the face side added on each side (0.3 = the DFDC 1st place's +30%).
        follow_sigma: ``follow`` mode: Gaussian smoothing of the crop centre, in frames (0: none).
        max_frames: parts are at most this long (None: no limit).
        long_tracks: ``split`` a longer track into consecutive parts, or ``cap`` it to its first part.
        min_frames: parts shorter than this are left out (default 1 keeps the short trailing part of a split).

    Each part gets its own crop (static box or follow side) from the face boxes of its own frames.
    """
    width, height = (int(v) for v in frame_size)
    if width < 1 or height < 1:
        raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
    if mode not in CROP_MODES:
        raise ValueError(f"mode must be one of {', '.join(CROP_MODES)}, got {mode!r}")
    if long_tracks not in ("split", "cap"):
        raise ValueError(f"long_tracks must be 'split' or 'cap', got {long_tracks!r}")
    if margin < 0 or follow_sigma < 0:
        raise ValueError(f"margin and follow_sigma must be >= 0, got {margin} and {follow_sigma}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if track.stop <= track.start:
        raise ValueError(f"track {track.id} is empty: start {track.start}, stop {track.stop}")

    faces = _integer_boxes(face_boxes(track), width, height)
    plans = []
    for part, (a, b) in enumerate(part_ranges(track.start, track.stop, max_frames, long_tracks)):
        if b - a < min_frames:
            continue
        f = faces[a - track.start:b - track.start]
        boxes = plan_boxes(f, frame_size=(width, height), mode=mode, margin=margin, follow_sigma=follow_sigma)
        plans.append(CropPlan(track_id=track.id, part=part, start=a, stop=b, boxes=boxes))
    return plans


def plan_boxes(faces: np.ndarray, *, frame_size: tuple[int, int], mode: str = "auto", margin: float = 0.0,
               follow_sigma: float = 15.0, context: Optional[np.ndarray] = None) -> np.ndarray:
    """Crop boxes ``(T, 4)`` int32 for the per-frame integer face boxes ``faces`` ``(T, 4)`` of one stretch of a
    track (a part, or the frames of one decoding chunk).

    ``context`` ``(K, 2)``: follow mode's crop centres of the ``K`` frames just before the stretch (the previous
    chunk); the smoothing then continues from them instead of starting afresh, so the crop does not jump at a
    chunk boundary. Ignored by ``static``.
    """
    width, height = frame_size
    if mode == "auto":
        mode = "static" if is_tight(faces, margin) else "follow"
    if mode == "static":
        return _static(faces, margin, width, height)
    return _follow(faces, margin, follow_sigma, width, height, context)


def is_tight(faces: np.ndarray, margin: float = 0.0) -> bool:
    """True when the static square over ``faces`` ``(T, 4)`` is at most ``TIGHT_RATIO`` times the follow
    square's side: ``auto`` mode then keeps the static (published) crop."""
    return static_side(faces, margin) <= TIGHT_RATIO * follow_side(faces, margin)


def static_side(faces: np.ndarray, margin: float = 0.0) -> int:
    """Side of the static square over the union of ``faces`` ``(T, 4)``."""
    faces = np.asarray(faces)
    return _side(int(max(faces[:, 2].max() - faces[:, 0].min(), faces[:, 3].max() - faces[:, 1].min())), margin)


def follow_side(faces: np.ndarray, margin: float = 0.0) -> int:
    """Side of the follow square for ``faces`` ``(T, 4)``: the largest face side plus the margins."""
    faces = np.asarray(faces)
    return _side(int((faces[:, 2:] - faces[:, :2]).max()), margin)


# --------------------------------------------------------------------------------------------------------------
# geometry


def _integer_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Smallest integer boxes containing ``boxes``, clamped to the frame, at least one pixel wide and high."""
    lo = np.floor(boxes[:, :2] + 1e-6).astype(np.int64)
    hi = np.ceil(boxes[:, 2:] - 1e-6).astype(np.int64)
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(np.maximum(hi, lo + 1), 0, [width, height])
    return np.concatenate([lo, hi], axis=1)


def _side(face_side: int, margin: float) -> int:
    """Crop side for a face of ``face_side`` pixels: ``face_side * (1 + 2*margin)`` rounded up to even."""
    side = max(2, math.ceil(face_side * (1 + 2 * margin) - 1e-9))
    return side + side % 2


def _place(low: np.ndarray, high: np.ndarray, side: int, limit: int,
           centre: Optional[np.ndarray] = None) -> np.ndarray:
    """Start coordinate of a ``side``-long crop in one dimension, per frame.

    ``low``/``high``: the face's integer extent. ``centre``: the wanted crop centre (default: the face's centre);
    it is moved as little as needed for the crop to contain ``[low, high)``, then the crop is shifted inside
    ``[0, limit)``; a crop longer than ``limit`` is centred on the frame instead (padding on both sides).
    """
    half = side // 2
    if centre is None:
        centre = (low + high) / 2
    start = np.floor(np.asarray(centre, dtype=np.float64) - half + 0.5).astype(np.int64)
    start = np.clip(start, high - side, low)  # face inside: start <= low and start + side >= high
    if side > limit:
        return np.full_like(start, -((side - limit + 1) // 2))
    return np.clip(start, 0, limit - side)


def _boxes(x: np.ndarray, y: np.ndarray, side: int) -> np.ndarray:
    return np.stack([x, y, x + side, y + side], axis=1).astype(np.int32)


def _static(faces: np.ndarray, margin: float, width: int, height: int) -> np.ndarray:
    """One square over the union of ``faces`` (integer ``(T, 4)``), repeated for every frame."""
    union = np.array([faces[:, 0].min(), faces[:, 1].min(), faces[:, 2].max(), faces[:, 3].max()])
    side = _side(int(max(union[2] - union[0], union[3] - union[1])), margin)
    x = _place(union[[0]], union[[2]], side, width)
    y = _place(union[[1]], union[[3]], side, height)
    return np.repeat(_boxes(x, y, side), len(faces), axis=0)


def _follow(faces: np.ndarray, margin: float, sigma: float, width: int, height: int,
            context: Optional[np.ndarray] = None) -> np.ndarray:
    """A square of fixed side whose smoothed centre follows ``faces`` (integer ``(T, 4)``); ``context``: the crop
    centres ``(K, 2)`` of the frames just before (kept fixed, they are already cut)."""
    side = follow_side(faces, margin)
    centre = (faces[:, :2] + faces[:, 2:]) / 2.0
    # the face (x1, y1, x2, y2) is inside the crop while  x2 - side/2 <= centre_x <= x1 + side/2  (same for y)
    lowest, highest = faces[:, 2:] - side / 2, faces[:, :2] + side / 2
    k = 0 if context is None else len(context)
    if k:
        centre = np.concatenate([np.asarray(context, np.float64), centre])
    if sigma > 0 and len(centre) > 1:
        for _ in range(FOLLOW_ITERATIONS):
            smoothed = _smooth(centre, sigma)
            centre = np.concatenate([centre[:k], np.clip(smoothed[k:], lowest, highest)])
    centre = centre[k:]
    x = _place(faces[:, 0], faces[:, 2], side, width, centre[:, 0])
    y = _place(faces[:, 1], faces[:, 3], side, height, centre[:, 1])
    return _boxes(x, y, side)


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0. The ends are extended by point reflection, so a face that walks at
    constant speed keeps a centred crop up to the first and last frame (plain edge padding would lag there)."""
    pad = min(len(values) - 1, int(4 * sigma + 0.5))
    padded = np.pad(values, ((pad, pad), (0, 0)), mode="reflect", reflect_type="odd")
    return gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad:pad + len(values)]


# --------------------------------------------------------------------------------------------------------------
# pixels


def crop_frame(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Cut ``box`` (``x1, y1, x2, y2`` integer pixels, may extend beyond the frame) out of ``frame``
    ``(H, W, 3)`` uint8, zero-padding outside the frame, and resize it to ``(size, size, 3)`` uint8.

    Resize: Pillow bilinear (antialiased when shrinking) with ``reducing_gap=2``; about 1-3 ms per 1080p face
    crop on one CPU core (see benchmarks/RESULTS.md for the comparison with torch).
    """
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty crop box {[x1, y1, x2, y2]}")
    height, width = frame.shape[:2]
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if (ix1, iy1, ix2, iy2) == (x1, y1, x2, y2):
        region = frame[y1:y2, x1:x2]
    else:
        region = np.zeros((y2 - y1, x2 - x1) + frame.shape[2:], dtype=frame.dtype)
        if ix2 > ix1 and iy2 > iy1:
            region[iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = frame[iy1:iy2, ix1:ix2]
    if region.shape[:2] == (size, size):
        return np.array(region)  # a copy, never a view of the caller's frame
    image = Image.fromarray(np.ascontiguousarray(region))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP))


def crop_frames(frames: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``crop_frame`` over a batch: ``frames`` ``(T, H, W, 3)``, ``boxes`` ``(T, 4)`` (or one ``(4,)`` box for
    all) -> ``(T, size, size, 3)`` uint8. A convenience: it is no faster than calling ``crop_frame`` per frame."""
    boxes = np.asarray(boxes)
    if boxes.ndim == 1:
        boxes = np.broadcast_to(boxes, (len(frames), 4))
    if len(boxes) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(boxes)} boxes")
    out = np.empty((len(frames), size, size) + frames.shape[3:], dtype=np.uint8)
    for k, (frame, box) in enumerate(zip(frames, boxes)):
        out[k] = crop_frame(frame, box, size)
    return out
