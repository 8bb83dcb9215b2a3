"""Datasets over face tubes: clips for 3D models, frames for the 2D model, and the collate that batches them.

Only the frames a sample needs are decoded (``facetubes.video.read_frames`` seeks). A tube that cannot be decoded
never stops a run: in training the sample is replaced by another tube of the same class (chosen from the sample's
seed, so resumes stay exact) and the bad tube is reported; in validation the tube is dropped and reported. The
collate gathers those reports so the loop can count and log them per epoch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from facetubes.manifest import TubeRecord

from .augment import ClipTransform, apply_clip
from .errors import TrainError

log = logging.getLogger("train")

SampleMode = Literal["clip", "frame", "frames"]
Key = Union[int, tuple[int, int], tuple[int, int, int]]


# ----------------------------------------------------------------------------------------------------------------
# which frames (pure functions)


def window_indices(n_frames: int, clip_len: int, start: int, short_tubes: str = "loop") -> np.ndarray:
    """Frame indices of a contiguous window ``[start, start + clip_len)`` of a tube with ``n_frames`` frames.

    A tube shorter than the window is looped (``0, 1, .., n-1, 0, 1, ..``) or padded by repeating its last
    frame (``short_tubes='pad'``). Returns ``(clip_len,)`` int64, every value in ``[0, n_frames)``.
    """
    if n_frames < 1:
        raise ValueError("a tube needs at least one frame")
    idx = np.arange(start, start + clip_len, dtype=np.int64)
    if n_frames >= start + clip_len:
        return idx
    if short_tubes == "pad":
        return np.minimum(idx, n_frames - 1)
    return idx % n_frames


def random_start(n_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """Uniform start of a window that fits in the tube (0 when the tube is shorter than the window)."""
    return int(rng.integers(0, max(n_frames - clip_len, 0) + 1))


def fixed_start(n_frames: int, clip_len: int, where: str = "first") -> int:
    """Validation window start: the first window (as published) or the centre one."""
    if where == "center":
        return max(n_frames - clip_len, 0) // 2
    return 0


def spaced_indices(n_frames: int, count: int) -> np.ndarray:
    """Up to ``count`` distinct, evenly spaced frame indices over the whole tube ``(min(count, n),)``."""
    k = min(count, n_frames)
    return np.unique(np.linspace(0, n_frames - 1, k).round().astype(np.int64))


# ----------------------------------------------------------------------------------------------------------------
# samples and batches


@dataclass
class Sample:
    """One dataset item. ``x`` is ``(C, T, H, W)`` (clip), ``(C, H, W)`` (frame) or ``(K, C, H, W)`` (frames),
    uint8; None when the tube could not be read and no substitute was taken (validation)."""

    x: Optional[Tensor]
    label: int
    index: int
    bad: list[str] = field(default_factory=list)
    no_landmarks: int = 0  # 1 when part dropout was drawn but the tube has no landmarks (skipped, counted)


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        x: ``(B, C, T, H, W)`` clips, ``(B, C, H, W)`` frames, or ``(sum K, C, H, W)`` frames of B tubes, uint8.
        labels: ``(B,)`` int64, 1 fake / 0 real.
        index: ``(B,)`` int64 dataset indices of the tubes actually in the batch.
        counts: ``(B,)`` frames per tube when ``x`` holds several frames per tube, else None.
        bad: ``"tube: reason"`` of every tube that failed to decode while making this batch.
        no_landmarks: samples whose part dropout was skipped because their tube has no landmarks.
    """

    x: Tensor
    labels: Tensor
    index: Tensor
    counts: Optional[Tensor] = None
    bad: list[str] = field(default_factory=list)
    no_landmarks: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def pin_memory(self) -> "Batch":
        """Page-locked copy (called by DataLoader(pin_memory=True))."""
        return Batch(self.x.pin_memory(), self.labels.pin_memory(), self.index.pin_memory(),
                     None if self.counts is None else self.counts.pin_memory(), self.bad, self.no_landmarks)


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack good samples; drop failed ones (their reasons stay in ``bad``). ``frames`` samples are concatenated
    along the first axis with per-tube ``counts``."""
    bad = [b for s in samples for b in s.bad]
    good = [s for s in samples if s.x is not None]
    labels = torch.tensor([s.label for s in good], dtype=torch.int64)
    index = torch.tensor([s.index for s in good], dtype=torch.int64)
    skipped = sum(s.no_landmarks for s in samples)
    if not good:
        return Batch(torch.zeros(0, dtype=torch.uint8), labels, index, None, bad, skipped)
    return Batch(torch.stack([s.x for s in good]), labels, index, None, bad, skipped)


def collate_frames(samples: Sequence[Sample]) -> Batch:
    """Collate for ``frames`` samples ``(K_i, C, H, W)`` -> ``x (sum K_i, C, H, W)``, ``counts (B,)``."""
    bad = [b for s in samples for b in s.bad]
    good = [s for s in samples if s.x is not None]
    labels = torch.tensor([s.label for s in good], dtype=torch.int64)
    index = torch.tensor([s.index for s in good], dtype=torch.int64)
    counts = torch.tensor([int(s.x.shape[0]) for s in good], dtype=torch.int64)
    x = torch.cat([s.x for s in good]) if good else torch.zeros(0, dtype=torch.uint8)
    return Batch(x, labels, index, counts, bad)


# ----------------------------------------------------------------------------------------------------------------
# the dataset


def _reason(exc: BaseException) -> str:
    from facetubes.errors import one_line

    return one_line(exc)


class TubeDataset(Dataset):
    """Clips or frames from tube MP4s listed in index records.

    Args:
        records: labelled tubes (``label`` 0/1).
        mode: ``clip`` -> ``(C, clip_len, S, S)``; ``frame`` -> ``(C, S, S)`` (one frame); ``frames`` ->
            ``(K, C, S, S)`` with K = up to ``frames_per_tube`` evenly spaced frames (2D validation).
        clip_len: window length for ``clip`` mode.
        transform: maps a ``Video (T, C, H, W) uint8`` to the same layout at the model's size.
        train: random window / random frame and substitutes for failed tubes; else fixed window and drop.
        short_tubes: ``loop`` or ``pad`` for tubes shorter than the window.
        val_window: ``first`` or ``center`` (non-training clip windows).
        frames_per_tube: K for ``frames`` mode.
        max_substitutes: training: tubes tried in place of a failed one before giving up on the sample.
        part_dropout: ``(part_p, half_p)`` of the landmark part dropout (training only; ``train.parts``), drawn
            from the sample's seed and applied to the raw tube frames before ``transform``. Landmarks come from
            the tube's ``tube_landmarks`` in ``tubes.json`` (see :func:`tube_landmark_entries`); a tube without
            them is left as it is and counted in ``Sample.no_landmarks``.

    Items are looked up by ``index``, ``(index, seed)`` (see ``train.sampling.EpochSampler``) or
    ``(index, seed, frame)`` (``train.samplers.RecipeSampler``; ``frame`` >= 0 fixes the frame of a ``frame``
    sample); with a seed, the window, the augmentation and any substitute are a function of the seed alone.
    """

    def __init__(self, records: Sequence[TubeRecord], *, mode: SampleMode, transform: ClipTransform,
                 train: bool, clip_len: int = 1, short_tubes: str = "loop", val_window: str = "first",
                 frames_per_tube: int = 32, max_substitutes: int = 3,
                 part_dropout: tuple[float, float] = (0.0, 0.0)) -> None:
        if not records:
            raise TrainError("a dataset needs at least one tube")
        self.records = list(records)
        self.mode = mode
        self.transform = transform
        self.train = train
        self.clip_len = int(clip_len)
        self.short_tubes = short_tubes
        self.val_window = val_window
        self.frames_per_tube = int(frames_per_tube)
        self.max_substitutes = int(max_substitutes)
        self.part_dropout = (float(part_dropout[0]), float(part_dropout[1]))
        self._landmarks: dict[int, list] = {}
        self.labels = [int(r.label or 0) for r in self.records]
        self._true_length: dict[int, int] = {}
        self._by_label: dict[int, np.ndarray] = {
            c: np.flatnonzero(np.asarray(self.labels) == c) for c in (0, 1)}

    def __len__(self) -> int:
        return len(self.records)

    def frame_indices(self, rec: TubeRecord, rng: Optional[np.random.Generator], frame: int = -1) -> np.ndarray:
        """The frames this sample decodes (before de-duplication); ``frame`` >= 0 fixes a ``frame`` sample's."""
        n = max(int(rec.n_frames), 1)
        if self.mode == "clip":
            start = random_start(n, self.clip_len, rng) if rng is not None else fixed_start(n, self.clip_len,
                                                                                             self.val_window)
            return window_indices(n, self.clip_len, start, self.short_tubes)
        if self.mode == "frame":
            drawn = int(rng.integers(n)) if rng is not None else n // 2  # drawn always: the seed stream stays
            return np.array([min(frame, n - 1) if frame >= 0 else drawn], dtype=np.int64)
        return spaced_indices(n, self.frames_per_tube)

    def landmarks(self, i: int, positions: np.ndarray) -> list:
        """``(5, 2)`` landmarks (or None) of tube ``i`` at tube frame ``positions`` (cached per tube)."""
        from .parts import tube_landmarks

        rec = self.records[i]
        if i not in self._landmarks:
            self._landmarks[i] = tube_landmark_entries(rec)
        return tube_landmarks(self._landmarks[i], [int(rec.start_frame) + int(p) for p in positions])

    def _part_dropout(self, i: int, frames: np.ndarray, idx: np.ndarray, seed: Optional[int]) -> tuple[np.ndarray,
                                                                                                      int]:
        from .parts import apply_part_dropout, draw_part_dropout

        part_p, half_p = self.part_dropout
        if not self.train or (part_p <= 0 and half_p <= 0):
            return frames, 0
        choice = draw_part_dropout(np.random.default_rng(None if seed is None else [int(seed), 0xD20]),
                                   part_p=part_p, half_p=half_p)
        if choice is None:
            return frames, 0
        lms = self.landmarks(i, idx)
        if all(lm is None for lm in lms):
            return frames, 1
        return apply_part_dropout(frames, lms, choice), 0

    def load(self, i: int, seed: Optional[int], frame: int = -1) -> Tensor:
        """Decode and transform tube ``i``; raises whatever decoding raises."""
        return self._load(i, seed, frame)[0]

    def _load(self, i: int, seed: Optional[int], frame: int = -1) -> tuple[Tensor, int]:
        from facetubes.errors import VideoError
        from facetubes.video import probe, read_frames

        rec = self.records[i]
        if i in self._true_length:
            rec = dataclasses.replace(rec, n_frames=self._true_length[i])
        rng = np.random.default_rng(seed) if self.train else None  # seed None: fresh entropy
        idx = self.frame_indices(rec, rng, frame)
        uniq, inverse = np.unique(idx, return_inverse=True)
        if rec.path.is_dir():  # a frame folder imported in place (facetubes index --import)
            from facetubes.datasets.imported import read_frame_folder

            frames = read_frame_folder(rec.path, uniq)
        else:
            try:
                frames = read_frames(rec.path, uniq, threads=1)
            except VideoError:
                # the file may hold fewer frames than the index says (re-encoded, cut): retry once with its real length
                n = probe(rec.path).n_frames
                if not 0 < n < rec.n_frames:
                    raise
                self._true_length[i] = n
                return self._load(i, seed, frame)
        frames = frames[inverse]
        aug_seed = int(rng.integers(2**62)) if (rng is not None and seed is not None) else None
        frames, skipped = self._part_dropout(i, frames, idx, seed)
        if self.mode == "clip":
            return apply_clip(self.transform, frames, aug_seed), skipped  # (C, T, H, W)
        clip = apply_clip(self.transform, frames, aug_seed)      # (C, K, H, W)
        if self.mode == "frame":
            return clip[:, 0], skipped                           # (C, H, W)
        return clip.permute(1, 0, 2, 3).contiguous(), skipped    # (K, C, H, W)

    def __getitem__(self, key: Key) -> Sample:
        i, seed, frame = (tuple(key) + (-1,) * (3 - len(key))) if isinstance(key, tuple) else (key, None, -1)
        i, frame = int(i), int(frame)
        label = self.labels[i]
        bad: list[str] = []
        candidates = [i]
        if self.train and self.max_substitutes > 0:
            pool = self._by_label[label]
            pool = pool[pool != i]
            pick = np.random.default_rng(None if seed is None else [int(seed), 0x5B])
            size = min(self.max_substitutes, len(pool))
            candidates += [int(j) for j in pick.choice(pool, size=size, replace=False)]
        for j in candidates:
            try:
                x, skipped = self._load(j, None if seed is None else int(seed) + (j != i), frame)
                return Sample(x, label, j, bad, skipped)
            except Exception as e:  # noqa: BLE001 - a corrupt tube must never stop a long run; it is reported
                path = str(self.records[j].path)
                reason = _reason(e)
                reason = reason[len(path):].lstrip(": ") if reason.startswith(path) else reason
                bad.append(f"{path}: {reason}")
        return Sample(None, label, i, bad)


def tube_landmark_entries(rec: TubeRecord) -> list:
    """The landmarks ``[[frame, [[x, y] x 5]], ...]`` of a tube, from the ``tubes.json`` next to it.

    Read from the tube's entry in ``tubes``, field ``tube_landmarks`` (source frame numbers, tube pixels, as
    ``facetubes extract`` writes them with a landmark detector: ``facetubes.landmarks``). The track's
    ``landmarks`` field is in source pixels and is not used. Returns [] when the manifest, the entry or the field
    is missing or malformed (part dropout then skips the tube and counts it).
    """
    import json

    from facetubes.errors import ConfigError
    from facetubes.landmarks import read_landmarks

    path = rec.path.parent / "tubes.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(manifest, dict):
        return []
    for entry in manifest.get("tubes") or []:
        if isinstance(entry, dict) and entry.get("tube") == rec.tube:
            try:
                got = read_landmarks(entry, "tube_landmarks")
            except ConfigError:
                return []
            if got is None:
                return []
            frames, points = got
            return [[int(f), p.tolist()] for f, p in zip(frames, points)]
    return []
