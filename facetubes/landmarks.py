"""Facial landmarks of a track, in source pixels and in tube pixels, and their ``tubes.json`` fields.

Detectors that give landmarks (MTCNN, RetinaFace) give five points per face: left eye, right eye, nose, left and
right mouth corner (as seen in the image), ``x, y`` in the frame's pixels. A :class:`~facetubes.tracks.Track`
carries them for its detections (``Track.landmarks``, ``(n_detections, 5, 2)``).

In a tube, frame ``t`` is the crop box ``plan.boxes[t]`` of source frame ``plan.start + t`` (a square, possibly
partly outside the frame and zero-padded there) resized to ``size x size``. A source point ``(x, y)`` maps to
``((x - x1) * size / (x2 - x1), (y - y1) * size / (y2 - y1))`` in that tube frame. Between detections the points
are linearly interpolated, before the first and after the last they are held, exactly as the face boxes are
(:func:`facetubes.crops.face_boxes`). Accurate to about one source pixel: the YUV crop path rounds the crop to even
source coordinates.

``tubes.json`` fields (absent when the detector gave no landmarks; manifests without them still read):

- per track (``tracks[i]``): ``"landmarks": [[frame, [[x, y] x 5]], ...]``: source pixels, detection frames;
- per tube (``tubes[i]``): ``"tube_landmarks": [[frame, [[x, y] x 5]], ...]``: tube pixels, every tube frame.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import ConfigError
from .tracks import Track

__all__ = ["interpolate_landmarks", "to_tube_coords", "tube_landmarks", "landmarks_json", "track_landmark_fields",
           "tube_landmark_fields", "read_landmarks", "LANDMARK_NAMES"]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The five points, in order (left/right as seen in the image)."""
DECIMALS = 1
"""Landmark coordinates in ``tubes.json`` are rounded to this many decimals (0.1 px)."""


def interpolate_landmarks(frames: np.ndarray, points: np.ndarray, at: np.ndarray) -> Optional[np.ndarray]:
    """Points ``(n, 5, 2)`` known at sorted ``frames`` ``(n,)`` -> ``(len(at), 5, 2)`` float64 at frames ``at``:
    linear between known frames, held outside them. Detections with non-finite points are skipped; None when no
    detection has finite points."""
    frames = np.asarray(frames, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    ok = np.isfinite(points).all(axis=(1, 2))
    if not ok.any():
        return None
    known, pts = frames[ok], points[ok].reshape(-1, 10)
    at = np.asarray(at, dtype=np.float64)
    out = np.stack([np.interp(at, known, pts[:, k]) for k in range(10)], axis=1)
    return out.reshape(-1, 5, 2)


def to_tube_coords(points: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Source points ``(T, 5, 2)`` -> tube pixels ``(T, 5, 2)``, through per-frame crop boxes ``(T, 4)``
    ``x1, y1, x2, y2`` resized to ``size x size``."""
    points = np.asarray(points, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(points) != len(boxes):
        raise ValueError(f"{len(points)} landmark frames but {len(boxes)} crop boxes")
    origin = boxes[:, None, :2]
    side = (boxes[:, None, 2:] - boxes[:, None, :2])
    if (side <= 0).any():
        raise ValueError("crop boxes must have positive width and height")
    return (points - origin) * (size / side)


def tube_landmarks(track: Track, start: int, boxes: np.ndarray, size: int) -> Optional[np.ndarray]:
    """Landmarks of every frame of a tube ``(T, 5, 2)`` float64 in tube pixels, or None without landmarks.

    ``start``: the tube's first source frame; ``boxes``: its per-frame crop boxes ``(T, 4)`` (a
    :class:`~facetubes.crops.CropPlan`'s ``start`` and ``boxes``); ``size``: the tube side."""
    if track.landmarks is None or len(track.frames) == 0:
        return None
    at = np.arange(start, start + len(boxes))
    src = interpolate_landmarks(track.frames, track.landmarks, at)
    return None if src is None else to_tube_coords(src, boxes, size)


def landmarks_json(frames: np.ndarray, points: np.ndarray) -> list:
    """``[[frame, [[x, y] x 5]], ...]`` for the frames whose points are all finite (coordinates rounded)."""
    out = []
    for f, p in zip(np.asarray(frames), np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)):
        if np.isfinite(p).all():
            out.append([int(f), [[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in p]])
    return out


def track_landmark_fields(track: Track) -> dict:
    """``{"landmarks": ...}`` for a track's ``tubes.json`` entry, or ``{}`` when it has none."""
    if track.landmarks is None:
        return {}
    return {"landmarks": landmarks_json(track.frames, track.landmarks)}


def tube_landmark_fields(track: Track, start: int, boxes: np.ndarray, size: int) -> dict:
    """``{"tube_landmarks": ...}`` for a tube's ``tubes.json`` entry (frames ``start .. start + len(boxes) - 1``),
    or ``{}`` when the track has no landmarks."""
    pts = tube_landmarks(track, start, boxes, size)
    if pts is None:
        return {}
    return {"tube_landmarks": landmarks_json(np.arange(start, start + len(boxes)), pts)}


def read_landmarks(entry: dict, key: str = "tube_landmarks") -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(frames (n,) int64, points (n, 5, 2) float32)`` from a ``tubes.json`` track or tube entry (``key``
    ``"landmarks"`` or ``"tube_landmarks"``), or None when the entry has no such field (older manifests, detectors
    without landmarks). Raises ConfigError with a one-line reason for a malformed field."""
    value = entry.get(key)
    if value is None:
        return None
    try:
        frames = np.array([int(row[0]) for row in value], dtype=np.int64)
        points = np.array([row[1] for row in value], dtype=np.float32).reshape(len(value), 5, 2)
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"malformed {key!r} field in a manifest: expected [[frame, [[x, y] x 5]], ...]") from None
    return frames, points
