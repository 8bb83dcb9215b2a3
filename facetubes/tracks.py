"""Per-person face tracks from per-frame face boxes: pure numpy / scikit-image / scipy, no video involved.

The published DFDC 5th-place rule paints every box into a space-time occupancy grid (sampled frame x H/cell x
W/cell) and calls each connected component (``skimage.measure.label``, full connectivity) one face. We keep the
grid for what it is good at, grouping, and fix its defects:

1. Boxes are clamped to the frame (published: negative coordinates wrapped around in slicing and the box vanished).
2. Inside every component the boxes are linked over time by an assignment (Hungarian, on the distance between a
   box and a constant-velocity prediction of each live track, plus a size term). Two faces seen in the same
   sampled frame, or two people crossing paths, become separate tracks, and identities survive a crossing.
   A track holds at most one box per sampled frame.
3. Missed detections are bridged per person: the pieces of one face separated by up to ``max_gap`` sampled frames
   without a box are joined when the later piece starts where the earlier one was heading (published: an empty
   sampled frame got the AND of its neighbours, and only when *no* face at all was found in it).
4. ``Track.stop`` is ``last detection frame + detect_every`` (capped at the video length), not ``last + 9``.

See the README for the full description and the statistics on real MTCNN output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.measure import label

__all__ = ["Detections", "Track", "TrackReport", "build_tracks", "build_tracks_report"]

MAX_CENTRE_DISTANCE = 1.0
"""Link gate: distance between a box centre and the track's predicted centre, in face sides (mean of both)."""
MAX_SIZE_RATIO = 2.0
"""Link gate: a box may be at most this many times larger or smaller (sqrt of area) than the track's last box."""
DUPLICATE_IOU = 0.4
"""Two boxes of one sampled frame that overlap more than this are one face detected twice (MTCNN's own
non-maximum suppression keeps pairs up to IoU 0.7); the one that fits no track, or the less probable one, is
ignored. Two people crossing keep both boxes when both tracks are live."""
VELOCITY_SPAN = 3
"""The velocity of a track is measured over its last ``VELOCITY_SPAN`` links (robust to box jitter)."""
_FORBIDDEN = 1e6  # cost of a pair that fails the gate; larger than any sum of allowed costs


@dataclass
class Detections:
    """The faces found in one sampled frame.

    ``boxes`` are ``(k, 4)`` float32 ``x1, y1, x2, y2`` in pixels of the full-resolution upright frame and may lie
    partly outside it; ``probs`` are the detector's ``(k,)`` probabilities (all ones when not given);
    ``landmarks`` are ``(k, 5, 2)`` float32 ``x, y`` facial landmarks (eyes, nose, mouth corners) in the same
    pixels, or None when the detector gives none.
    """

    frame: int
    boxes: np.ndarray
    probs: Optional[np.ndarray] = None
    landmarks: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.frame = int(self.frame)
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"frame {self.frame}: boxes must have shape (k, 4), got {boxes.shape}")
        if self.probs is None:
            probs = np.ones(len(boxes), dtype=np.float32)
        else:
            probs = np.asarray(self.probs, dtype=np.float32).reshape(-1)
        if len(probs) != len(boxes):
            raise ValueError(f"frame {self.frame}: {len(boxes)} boxes but {len(probs)} probabilities")
        if self.landmarks is not None:
            points = np.asarray(self.landmarks, dtype=np.float32)
            if points.size == 0:
                points = points.reshape(0, 5, 2)
            if points.shape != (len(boxes), 5, 2):
                raise ValueError(f"frame {self.frame}: landmarks must have shape ({len(boxes)}, 5, 2), "
                                 f"got {points.shape}")
            self.landmarks = points
        self.boxes, self.probs = boxes, probs


@dataclass
class Track:
    """One person's face through a video: at most one detection per sampled frame.

    ``frames`` (sorted) and ``boxes`` (clamped to the frame) are the detections; ``[start, stop)`` is the range of
    video frames the tube covers: from the first detection to ``last detection + detect_every`` (capped at the
    video length). ``landmarks``: ``(n_detections, 5, 2)`` float32 points of each detection in source pixels (not
    clamped; NaN for a detection without landmarks), or None when no detection of the track had any.
    """

    id: int
    frames: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    start: int
    stop: int
    landmarks: Optional[np.ndarray] = None

    @property
    def n_frames(self) -> int:
        """Video frames covered by the track, ``stop - start``."""
        return self.stop - self.start

    @property
    def n_detections(self) -> int:
        """Number of sampled frames in which the face was detected."""
        return len(self.frames)

    @property
    def mean_prob(self) -> float:
        """Mean detector probability over the track's detections."""
        return float(np.mean(self.probs)) if len(self.probs) else 0.0


@dataclass
class TrackReport:
    """``build_tracks_report`` result: the tracks plus counts that explain how they were built."""

    tracks: list[Track]
    n_boxes: int = 0
    """Boxes given."""
    n_clamped: int = 0
    """Boxes with a coordinate outside the frame, clamped."""
    n_negative: int = 0
    """Boxes with a negative ``x1`` or ``y1``: the published slicing wrapped these around and lost them."""
    n_dropped: int = 0
    """Boxes with no area inside the frame (or non-finite coordinates), ignored."""
    n_components: int = 0
    """Connected components of the occupancy grid."""
    n_split: int = 0
    """Components that held more than one face and were split into several tracks."""
    n_duplicates: int = 0
    """Second detections of an already tracked face in the same sampled frame, ignored."""
    n_bridged: int = 0
    """Joins between pieces of one face separated by missed detections (or non-touching boxes)."""
    n_short: int = 0
    """Tracks removed because they span fewer than ``min_frames`` frames."""


def build_tracks(
    detections: Sequence[Detections],
    *,
    frame_size: tuple[int, int],
    n_frames: int,
    detect_every: int = 10,
    max_gap: int = 1,
    cell: int = 8,
    min_frames: int = 1,
) -> list[Track]:
    """Turn per-frame face boxes into per-person tracks.

    Args:
        detections: one entry per sampled frame (frames ``detect_every`` apart; a sampled frame with no face may
            be given with zero boxes or left out).
        frame_size: ``(width, height)`` of the full-resolution upright frame the boxes refer to.
        n_frames: number of frames in the video; caps ``Track.stop``.
        detect_every: distance in frames between sampled frames.
        max_gap: bridge up to this many consecutive sampled frames in which one person was missed (0: never).
        cell: side of an occupancy-grid cell in pixels (the published rule used 8).
        min_frames: drop tracks spanning fewer frames (``stop - start``).

    Returns:
        Tracks sorted by ``start`` (then by position), with ids ``0..n-1`` in that order.
    """
    return build_tracks_report(
        detections,
        frame_size=frame_size,
        n_frames=n_frames,
        detect_every=detect_every,
        max_gap=max_gap,
        cell=cell,
        min_frames=min_frames,
    ).tracks


def build_tracks_report(
    detections: Sequence[Detections],
    *,
    frame_size: tuple[int, int],
    n_frames: int,
    detect_every: int = 10,
    max_gap: int = 1,
    cell: int = 8,
    min_frames: int = 1,
) -> TrackReport:
    """``build_tracks`` plus the counts of a ``TrackReport`` (clamped boxes, split components, bridges...)."""
    width, height = (int(v) for v in frame_size)
    if width < 1 or height < 1:
        raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
    for name, value, low in (("n_frames", n_frames, 1), ("detect_every", detect_every, 1),
                             ("max_gap", max_gap, 0), ("cell", cell, 1), ("min_frames", min_frames, 1)):
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")

    frames, slots, raw, probs, points = _gather(detections, detect_every)
    report = TrackReport(tracks=[], n_boxes=len(raw))
    boxes, keep, report.n_clamped, report.n_negative = _clamp(raw, width, height)
    report.n_dropped = int((~keep).sum())
    frames, slots, boxes, probs = frames[keep], slots[keep], boxes[keep], probs[keep]
    points = points[keep] if points is not None else None
    if len(boxes) == 0:
        return report

    geometry = _Geometry(slots, boxes, probs, _cells(boxes, cell, width, height))
    components = _components(geometry, width, height, cell)
    report.n_components = len(components)
    tracklets: list[list[int]] = []
    duplicates: list[int] = []
    for members in components:
        pieces = _link(members, geometry, max_gap, duplicates)
        report.n_split += len(pieces) > 1
        tracklets.extend(pieces)
    report.n_duplicates = len(duplicates)
    chains, report.n_bridged = _bridge(tracklets, geometry, max_gap)

    tracks: list[Track] = []
    for chain in chains:
        idx = np.asarray(chain, dtype=np.int64)
        idx = idx[np.argsort(slots[idx], kind="stable")]
        first, last = int(frames[idx[0]]), int(frames[idx[-1]])
        stop = max(min(last + detect_every, int(n_frames)), last + 1)
        track = Track(id=-1, frames=frames[idx].copy(), boxes=boxes[idx].copy(), probs=probs[idx].copy(),
                      start=first, stop=stop, landmarks=_track_points(points, idx))
        if track.n_frames < min_frames:
            report.n_short += 1
        else:
            tracks.append(track)
    tracks.sort(key=lambda t: (t.start, float(t.boxes[0, 0]), float(t.boxes[0, 1])))
    for k, track in enumerate(tracks):
        track.id = k
    report.tracks = tracks
    return report


# --------------------------------------------------------------------------------------------------------------
# input handling


def _gather(detections: Sequence[Detections], detect_every: int) -> tuple:
    """Flatten the detections: frame, sampled-frame slot, box, probability and landmarks per box (landmarks None
    when no detection has any; NaN rows for the boxes of detections without them)."""
    seen: dict[int, int] = {}
    frames, slots, boxes, probs, points = [], [], [], [], []
    for det in detections:
        if det.frame < 0:
            raise ValueError(f"detection frame must be >= 0, got {det.frame}")
        slot = det.frame // detect_every
        if slot in seen:
            raise ValueError(
                f"frames {seen[slot]} and {det.frame} fall in the same sampled slot with detect_every="
                f"{detect_every}; give each sampled frame once, detect_every frames apart")
        seen[slot] = det.frame
        k = len(det.boxes)
        frames.append(np.full(k, det.frame, dtype=np.int64))
        slots.append(np.full(k, slot, dtype=np.int64))
        boxes.append(det.boxes)
        probs.append(np.asarray(det.probs, dtype=np.float32))
        points.append(det.landmarks if det.landmarks is not None else np.full((k, 5, 2), np.nan, np.float32))
    if not frames:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None
    has_points = any(det.landmarks is not None for det in detections)
    return (np.concatenate(frames), np.concatenate(slots), np.concatenate(boxes).astype(np.float32),
            np.concatenate(probs).astype(np.float32),
            np.concatenate(points).astype(np.float32) if has_points else None)


def _track_points(points: Optional[np.ndarray], idx: np.ndarray) -> Optional[np.ndarray]:
    """A track's landmarks ``(n, 5, 2)``, or None when none of its detections has any."""
    if points is None:
        return None
    sel = points[idx]
    return sel.copy() if np.isfinite(sel).any() else None


def _clamp(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Clamp boxes to the frame; returns clamped boxes, the mask of usable boxes and two counts."""
    finite = np.isfinite(boxes).all(axis=1)
    limits = np.array([width, height, width, height], dtype=np.float32)
    outside = ((boxes < 0) | (boxes > limits)).any(axis=1) & finite
    negative = ((boxes[:, 0] < 0) | (boxes[:, 1] < 0)) & finite
    clamped = np.clip(np.nan_to_num(boxes), 0, limits).astype(np.float32)
    usable = finite & (clamped[:, 2] > clamped[:, 0]) & (clamped[:, 3] > clamped[:, 1])
    return clamped, usable, int(outside.sum()), int(negative.sum())


def _cells(boxes: np.ndarray, cell: int, width: int, height: int) -> np.ndarray:
    """Grid cells covered by each box: ``cx1, cy1, cx2, cy2`` (ends exclusive, at least one cell)."""
    grid_w, grid_h = math.ceil(width / cell), math.ceil(height / cell)
    lo = np.floor(boxes[:, :2] / cell).astype(np.int64)
    hi = np.ceil(boxes[:, 2:] / cell).astype(np.int64)
    lo = np.minimum(lo, [grid_w - 1, grid_h - 1])
    hi = np.maximum(np.minimum(hi, [grid_w, grid_h]), lo + 1)
    return np.concatenate([lo, hi], axis=1)


@dataclass
class _Geometry:
    """Per-box arrays shared by the linking steps."""

    slots: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    cells: np.ndarray
    centres: np.ndarray = field(init=False)
    sides: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        b = self.boxes.astype(np.float64)
        self.centres = (b[:, :2] + b[:, 2:]) / 2
        self.sides = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))

    def iou(self, i: int, j: int) -> float:
        """Intersection over union of boxes ``i`` and ``j``."""
        a, b = self.boxes[i].astype(np.float64), self.boxes[j].astype(np.float64)
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        if w <= 0 or h <= 0:
            return 0.0
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def touch(self, i: int, j: int) -> bool:
        """True when the grid cells of boxes ``i`` and ``j`` overlap or are neighbours (26-connectivity)."""
        a, b = self.cells[i], self.cells[j]
        return bool(a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3])

    def link_cost(self, track: list[int], j: int) -> Optional[float]:
        """Cost of appending box ``j`` to ``track`` (box indices), or None when the pair fails the gate.

        The track's centre is extrapolated at constant velocity to ``j``'s sampled frame. Cost: centre distance
        in face sides plus ``|log(size ratio)|``. Gate: size ratio within ``MAX_SIZE_RATIO`` and either the
        centre within ``MAX_CENTRE_DISTANCE`` face sides or, for consecutive sampled frames, touching grid cells.
        """
        last = track[-1]
        dt = int(self.slots[j] - self.slots[last])
        if dt < 1:
            return None
        ref = track[max(0, len(track) - 1 - VELOCITY_SPAN)]
        span = int(self.slots[last] - self.slots[ref])
        velocity = (self.centres[last] - self.centres[ref]) / span if span else np.zeros(2)
        predicted = self.centres[last] + velocity * dt
        size = abs(math.log(self.sides[j] / self.sides[last]))
        if size > math.log(MAX_SIZE_RATIO):
            return None
        distance = float(np.hypot(*(predicted - self.centres[j]))) / ((self.sides[j] + self.sides[last]) / 2)
        if distance > MAX_CENTRE_DISTANCE and not (dt == 1 and self.touch(last, j)):
            return None
        return distance + size


# --------------------------------------------------------------------------------------------------------------
# grouping, linking, bridging


def _components(geo: _Geometry, width: int, height: int, cell: int) -> list[np.ndarray]:
    """Connected components of the space-time occupancy grid (full connectivity), as lists of box indices."""
    first = int(geo.slots.min())
    grid = np.zeros((int(geo.slots.max()) - first + 1, math.ceil(height / cell), math.ceil(width / cell)), bool)
    for s, (x1, y1, x2, y2) in zip(geo.slots - first, geo.cells):
        grid[s, y1:y2, x1:x2] = True
    labels = label(grid, connectivity=3)
    of_box = labels[geo.slots - first, geo.cells[:, 1], geo.cells[:, 0]]
    return [np.flatnonzero(of_box == c) for c in np.unique(of_box)]


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost matching that keeps as many allowed pairs as possible; forbidden pairs are discarded."""
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < _FORBIDDEN]


def _link(members: np.ndarray, geo: _Geometry, max_gap: int, duplicates: list[int]) -> list[list[int]]:
    """Split one component into tracklets: sampled frame by sampled frame, assign its boxes to live tracklets.

    A box left over by the assignment starts a new tracklet, unless it overlaps (IoU > ``DUPLICATE_IOU``) a box
    already taken in the same sampled frame: then it is a second detection of the same face, appended to
    ``duplicates`` and not used."""
    order = members[np.argsort(geo.slots[members], kind="stable")]
    if len(np.unique(geo.slots[order])) == len(order) and all(
        geo.link_cost([int(a)], int(b)) is not None for a, b in zip(order[:-1], order[1:])
    ):
        return [[int(i) for i in order]]  # one box per sampled frame, every step passes the gate: one face
    tracklets: list[list[int]] = []
    live: list[int] = []
    for slot in np.unique(geo.slots[order]):
        boxes = [int(i) for i in order[geo.slots[order] == slot]]
        live = [k for k in live if slot - geo.slots[tracklets[k][-1]] <= max_gap + 1]
        matched: set[int] = set()
        if live:
            cost = np.full((len(live), len(boxes)), _FORBIDDEN)
            for r, k in enumerate(live):
                for c, j in enumerate(boxes):
                    value = geo.link_cost(tracklets[k], j)
                    if value is not None:
                        cost[r, c] = value
            for r, c in _assign(cost):
                tracklets[live[r]].append(boxes[c])
                matched.add(c)
        claimed = [boxes[c] for c in matched]
        for c in sorted(set(range(len(boxes))) - matched, key=lambda c: -geo.probs[boxes[c]]):
            j = boxes[c]
            if claimed and max(geo.iou(j, i) for i in claimed) > DUPLICATE_IOU:
                duplicates.append(j)
                continue
            claimed.append(j)
            live.append(len(tracklets))
            tracklets.append([j])
    return tracklets


def _bridge(tracklets: list[list[int]], geo: _Geometry, max_gap: int) -> tuple[list[list[int]], int]:
    """Join tracklets of one face separated by missed detections: the end of one tracklet to the start of another
    that begins 1 to ``max_gap + 1`` sampled frames later where the first was heading (same gate as linking)."""
    n = len(tracklets)
    if n < 2:
        return tracklets, 0
    cost = np.full((n, n), _FORBIDDEN)
    for a, earlier in enumerate(tracklets):
        for b, later in enumerate(tracklets):
            gap = geo.slots[later[0]] - geo.slots[earlier[-1]] - 1
            if a != b and 0 <= gap <= max_gap:
                value = geo.link_cost(earlier, later[0])
                if value is not None:
                    cost[a, b] = value
    successor: dict[int, int] = dict(_assign(cost))
    has_predecessor = set(successor.values())
    chains = []
    for a in range(n):
        if a in has_predecessor:
            continue
        chain, k = list(tracklets[a]), a
        while k in successor:
            k = successor[k]
            chain.extend(tracklets[k])
        chains.append(chain)
    return chains, len(successor)
