"""The DFDC 1st place's (selimsef) inference input: every face of 32 frames, padded, resized to 380 px.

Published recipe (REFERENCE.md section 4), each step a pure function here:

1. :func:`sample_frames`: 32 frame indices evenly spaced over the whole video, first and last included;
2. MTCNN with thresholds (0.7, 0.8, 0.8) on each frame halved in size; every box of every frame is kept, its
   coordinates doubled and truncated to int (:func:`scale_boxes`);
3. :func:`pad_crop`: each crop padded by a third of the box width/height on every side, clipped to the frame;
4. :func:`isotropic_resize` of the long side to 380 (area filter when shrinking, bicubic when enlarging) and
   :func:`put_to_center` on a black 380x380 canvas;
5. ImageNet mean/std (the member's preset), one sigmoid per face, per model the confident strategy over all faces
   (:func:`infer.reduce.confident_strategy`), plain mean over models, no clipping, 0.5 for a faceless video.

cv2 is not a dependency: the area filter is Pillow's box filter and the bicubic one Pillow's bicubic, which agree
with cv2's INTER_AREA / INTER_CUBIC to a few grey levels (not bit for bit).

For the per-person details, :func:`link_tracks` groups the faces into persons by IoU across the sampled frames;
the video score stays the published rule over all faces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

__all__ = ["FaceRecipe", "FaceSet", "recipe_for", "sample_frames", "scale_boxes", "pad_crop", "isotropic_resize",
           "put_to_center", "link_tracks", "extract_faces"]


@dataclass(frozen=True)
class FaceRecipe:
    """Settings of the 1st-place extraction (defaults: as published)."""

    frames: int = 32
    thresholds: tuple[float, float, float] = (0.7, 0.8, 0.8)
    detect_scale: float = 0.5
    size: int = 380
    max_faces: int = 127
    link_iou: float = 0.3

    def key(self) -> tuple[Any, ...]:
        """Members with equal keys share one extraction."""
        return (self.frames, self.thresholds, self.detect_scale, self.size, self.max_faces)


@dataclass
class FaceSet:
    """Every face of a video under a :class:`FaceRecipe`.

    Attributes:
        crops: ``(N, S, S, 3)`` uint8 RGB, ``S = recipe.size``.
        frames: ``(N,)`` int64 frame index of each face.
        boxes: ``(N, 4)`` int64 detector box ``x1, y1, x2, y2`` in source pixels (before padding).
        tracks: ``(N,)`` int64 person id from :func:`link_tracks`.
        n_frames: frames in the video.
        timings: seconds spent decoding, detecting, cropping.
    """

    crops: np.ndarray
    frames: np.ndarray
    boxes: np.ndarray
    tracks: np.ndarray
    n_frames: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.crops))


def recipe_for(members: Sequence[Any]) -> FaceRecipe:
    """The one :class:`FaceRecipe` the ``dfdc1st`` members share: the published settings, with the members'
    ``crop_size`` (published 380) and ``frames`` (published 32) when set. Members that disagree are refused
    (ConfigError): they would need two extractions."""
    from facetubes.errors import ConfigError

    sizes = {int(m.crop_size) for m in members}
    counts = {int(m.frames) for m in members}
    if len(sizes) > 1 or len(counts) > 1:
        raise ConfigError(f"members of recipe dfdc1st must share crop_size and frames (one extraction), got "
                          f"crop sizes {sorted(sizes)} and frame counts {sorted(counts)}")
    return FaceRecipe(frames=counts.pop(), size=sizes.pop())


def sample_frames(n_frames: int, count: int = 32) -> np.ndarray:
    """``np.linspace(0, n - 1, count, dtype=int)``: ``(count,)`` indices, first and last frame included (repeats
    when the video has fewer frames than ``count``, as the published ``linspace`` gives)."""
    if n_frames < 1 or count < 1:
        raise ValueError(f"need n_frames >= 1 and count >= 1, got {n_frames}, {count}")
    return np.linspace(0, n_frames - 1, count, dtype=np.int64)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Detector boxes on the scaled frame -> source pixels: divided by ``scale`` and truncated to int (published:
    ``int(b * 2)``). ``(N, 4)`` float -> ``(N, 4)`` int64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale
    return np.trunc(b).astype(np.int64)


def pad_crop(frame: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``frame[max(y1 - h // 3, 0) : y2 + h // 3, max(x1 - w // 3, 0) : x2 + w // 3]`` (clipped at every edge).

    Args:
        frame: ``(H, W, 3)`` uint8.
        box: ``x1, y1, x2, y2`` ints in frame pixels.
    Returns:
        A view of ``frame``; may be empty for a box entirely outside the frame.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    pw, ph = (x2 - x1) // 3, (y2 - y1) // 3
    h, w = frame.shape[:2]
    top, left = max(y1 - ph, 0), max(x1 - pw, 0)
    bottom, right = min(max(y2 + ph, 0), h), min(max(x2 + pw, 0), w)
    return frame[top:bottom, left:right]


def isotropic_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Long side to ``size``, short side ``int(side * scale)``; OpenCV's area filter down, bicubic up (as published);
    unchanged when the long side already is ``size``. ``(h, w, 3)`` uint8 -> ``(h', w', 3)`` uint8."""
    h, w = img.shape[:2]
    if max(w, h) == size:
        return img
    if w > h:
        scale = size / w
        new_w, new_h = size, int(h * scale)
    else:
        scale = size / h
        new_w, new_h = int(w * scale), size
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    import cv2  # the published code's resize (cv2.INTER_AREA down, INTER_CUBIC up): the filters are part of the recipe

    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    return cv2.resize(np.ascontiguousarray(img), (new_w, new_h), interpolation=interpolation)


def put_to_center(img: np.ndarray, size: int) -> np.ndarray:
    """``img[:size, :size]`` on a black ``(size, size, 3)`` canvas, starting at ``(size - side) // 2``."""
    img = img[:size, :size]
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - img.shape[0]) // 2, (size - img.shape[1]) // 2
    out[top:top + img.shape[0], left:left + img.shape[1]] = img
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def link_tracks(frames: np.ndarray, boxes: np.ndarray, min_iou: float = 0.3) -> np.ndarray:
    """Person ids for faces: in frame order, each face joins the track whose latest box overlaps it most (IoU >=
    ``min_iou``, one face per track per frame), else starts a new track. ``(N,)`` int64, ids 0, 1, ... in order of
    first appearance."""
    frames = np.asarray(frames).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ids = np.full(len(frames), -1, dtype=np.int64)
    last: list[np.ndarray] = []  # latest box of each track
    for f in sorted(set(frames.tolist())):
        idx = np.flatnonzero(frames == f)
        pairs = sorted(((_iou(boxes[i], last[t]), i, t) for i in idx for t in range(len(last))), reverse=True)
        used_t: set[int] = set()
        for iou, i, t in pairs:
            if iou < min_iou or ids[i] >= 0 or t in used_t:
                continue
            ids[i] = t
            used_t.add(t)
        for i in idx:
            if ids[i] < 0:
                ids[i] = len(last)
                last.append(boxes[i])
            else:
                last[ids[i]] = boxes[i]
    return ids


def crops_from_frames(frames: np.ndarray, indices: np.ndarray, detections: Sequence[tuple[np.ndarray, np.ndarray]],
                      recipe: FaceRecipe) -> FaceSet:
    """Steps 2-4 on decoded frames: ``frames`` ``(F, H, W, 3)`` at the sampled ``indices``, ``detections`` the
    detector's ``(boxes, probs)`` per frame on the scaled frames. Pure (no I/O)."""
    crops, face_frames, face_boxes = [], [], []
    for frame, idx, (boxes, _probs) in zip(frames, indices, detections):
        for box in scale_boxes(boxes, recipe.detect_scale):
            if len(crops) >= recipe.max_faces:
                break
            crop = pad_crop(frame, box)
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                continue
            crops.append(put_to_center(isotropic_resize(crop, recipe.size), recipe.size))
            face_frames.append(int(idx))
            face_boxes.append(box)
    s = recipe.size
    arr = np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8)
    fr = np.asarray(face_frames, dtype=np.int64)
    bx = np.asarray(face_boxes, dtype=np.int64).reshape(-1, 4)
    return FaceSet(crops=arr, frames=fr, boxes=bx, tracks=link_tracks(fr, bx, recipe.link_iou))


def extract_faces(path: str | Path, recipe: FaceRecipe, detector: Any) -> FaceSet:
    """Decode the sampled frames of ``path``, detect on the scaled frames, crop every face.

    ``detector.detect((F, h, w, 3) uint8)`` returns per frame ``(boxes (n, 4), probs (n,))`` (facetubes'
    MTCNN, built with ``recipe.thresholds``). Raises on an unreadable video (the caller records the error).
    """
    from facetubes.video import probe, read_frames

    t0 = time.perf_counter()
    info = probe(path)
    indices = sample_frames(info.n_frames, recipe.frames)
    uniq = np.unique(indices)
    try:
        frames = read_frames(path, uniq)
    except Exception:
        if not info.n_frames_estimated:
            raise
        # an estimated frame count can overshoot: keep the frames that exist
        from facetubes.video import iter_frames

        got = {i: f for i, f in iter_frames(path) if i in set(uniq.tolist())}
        uniq = np.asarray(sorted(got), dtype=np.int64)
        frames = np.stack([got[i] for i in uniq.tolist()])
    t1 = time.perf_counter()
    h, w = frames.shape[1:3]
    sw, sh = max(1, int(w * recipe.detect_scale)), max(1, int(h * recipe.detect_scale))
    small = np.stack([np.asarray(Image.fromarray(f).resize((sw, sh), resample=Image.Resampling.BICUBIC))
                      for f in frames])
    detections = detector.detect(small)
    t2 = time.perf_counter()
    # the published loop runs over every sampled index (repeats included, for videos shorter than 32 frames)
    pos = {int(i): k for k, i in enumerate(uniq.tolist())}
    keep = [int(i) for i in indices if int(i) in pos]
    faces = crops_from_frames(frames[[pos[i] for i in keep]], np.asarray(keep),
                              [detections[pos[i]] for i in keep], recipe)
    faces.n_frames = int(info.n_frames)
    faces.timings = {"decode_s": t1 - t0, "detect_s": t2 - t1, "crop_s": time.perf_counter() - t2}
    return faces
