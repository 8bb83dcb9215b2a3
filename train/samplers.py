"""Frame-level sampling of the DFDC frame recipes: frames per tube per epoch, one tube per video, and real/fake pairs.

:func:`epoch_plan` decides one epoch as three aligned arrays: dataset index, augmentation seed and frame position
in the tube (``-1``: the dataset draws a random frame from the seed). It is a pure function of the tube table,
the settings, the seed and the epoch, so a resumed run sees exactly the same samples. :class:`RecipeSampler`
shards it over DDP ranks like :class:`train.sampling.EpochSampler` (which it extends) and yields
``(index, seed, frame)`` keys that :class:`train.data.TubeDataset` understands.

Settings (``TrainConfig``):

- ``frames_per_tube`` k: every chosen tube gives k samples per epoch, each a random frame of its own.
- ``frame_every`` N > 0: every N-th frame of every chosen tube is a sample (frames 0, N, 2N, ... of the tube);
  the 1st place trained on every 10th frame of each video as separate samples.
- ``sample_unit`` ``video``: each epoch one random tube of each video (the 67th place: one random frame per video).
- ``sampling``: ``balanced`` (the rarer class whole + as many fresh draws of the other, per sample: the 1st
  place's "fakes subsampled to the number of reals"), ``shuffle``, or ``paired``: every real tube that has a fake
  (a tube whose ``original``, else ``group``, is the real's video name, preferring the same track number) is
  paired each epoch with one of them; the two samples are adjacent, show the same source frame (positions shifted
  when the two tubes start at different frames; only frames both cover), share the augmentation seed (so, with
  the same tube geometry, the same crop, flip, colour and part dropout), and stay in the same batch (even batch
  size). Tubes cut with ``facetubes extract --boxes-from-original`` have the same geometry: pixel-aligned pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

from facetubes.manifest import TubeRecord

from .sampling import EpochSampler


@dataclass(frozen=True)
class TubeTable:
    """What the sampler needs to know about the training tubes (arrays aligned with the dataset indices)."""

    labels: np.ndarray    # (N,) int64, 0 real / 1 fake
    n_frames: np.ndarray  # (N,) int64
    video: tuple[str, ...]
    group: tuple[str, ...]
    track: np.ndarray     # (N,) int64
    start: Optional[np.ndarray] = None  # (N,) int64 source frame of each tube's first frame (None: all 0)
    original: Optional[tuple[str, ...]] = None  # a fake's original video ("" unknown; None: use ``group``)

    @classmethod
    def from_records(cls, records: Sequence[TubeRecord]) -> "TubeTable":
        return cls(labels=np.array([int(r.label or 0) for r in records], np.int64),
                   n_frames=np.array([max(int(r.n_frames), 1) for r in records], np.int64),
                   video=tuple(r.video for r in records), group=tuple(r.group for r in records),
                   track=np.array([int(r.track) for r in records], np.int64),
                   start=np.array([int(r.start_frame) for r in records], np.int64),
                   original=tuple(getattr(r, "original", "") or "" for r in records))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PlanSettings:
    """The sampling settings of a run (see the module docstring)."""

    mode: str = "balanced"
    frames_per_tube: int = 1
    frame_every: int = 0
    unit: str = "tube"


def fake_partners(table: TubeTable) -> dict[int, list[int]]:
    """For every real tube with at least one fake, the fake tubes that may be its partner.

    A fake belongs to a real video when its ``original`` names that video (DFDC, FF++ and CSV labels, and
    ``--boxes-from-original``), else when its ``group`` is that video's name (a DFDC fake's group is its
    original). Fakes with the real tube's track number are preferred; if none has it, any fake of that video.
    Pairs that share no source frame are left out. Returns ``{real index: [fake indices]}`` in index order.
    """
    fakes_by_group: dict[str, list[int]] = {}
    for j in np.flatnonzero(table.labels == 1):
        owner = (table.original[j] if table.original is not None else "") or table.group[j]
        fakes_by_group.setdefault(owner, []).append(int(j))
    out: dict[int, list[int]] = {}
    for i in np.flatnonzero(table.labels == 0):
        cands = [j for j in fakes_by_group.get(table.video[i], []) if _overlap(table, int(i), j)[1] > 0]
        same_track = [j for j in cands if table.track[j] == table.track[i]]
        if same_track or cands:
            out[int(i)] = same_track or cands
    return out


def _overlap(table: TubeTable, r: int, f: int) -> tuple[int, int]:
    """``(shift, n)``: real position ``p`` shows the source frame of fake position ``p + shift``; ``n`` real
    positions, from the first the fake covers, are shared."""
    if table.start is None:
        return 0, int(min(table.n_frames[r], table.n_frames[f]))
    shift = int(table.start[r] - table.start[f])
    lo = max(0, -shift)
    hi = min(int(table.n_frames[r]), int(table.n_frames[f]) - shift)
    return shift, max(0, hi - lo)


def _chosen_tubes(table: TubeTable, unit: str, rng: np.random.Generator) -> np.ndarray:
    if unit == "tube":
        return np.arange(len(table), dtype=np.int64)
    by_video: dict[str, list[int]] = {}
    for i, v in enumerate(table.video):
        by_video.setdefault(v, []).append(i)
    return np.array([int(rng.choice(by_video[v])) for v in sorted(by_video)], np.int64)


def _expand(tubes: np.ndarray, table: TubeTable, s: PlanSettings) -> tuple[np.ndarray, np.ndarray]:
    """(tube index, frame position) samples of the chosen tubes."""
    if s.frame_every > 0:
        idx = [np.full(-(-int(table.n_frames[t]) // s.frame_every), t) for t in tubes]
        pos = [np.arange(0, int(table.n_frames[t]), s.frame_every) for t in tubes]
        if not idx:
            return tubes[:0], tubes[:0]
        return np.concatenate(idx).astype(np.int64), np.concatenate(pos).astype(np.int64)
    return np.repeat(tubes, s.frames_per_tube), np.full(len(tubes) * s.frames_per_tube, -1, np.int64)


def _paired(table: TubeTable, s: PlanSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    partners = fake_partners(table)
    reals = sorted(partners)
    pairs = []  # (real, fake, real position, fake position - real position)
    for r in reals:
        f = int(rng.choice(partners[r]))
        shift, n = _overlap(table, r, f)
        lo = max(0, -shift)  # the first real position the fake covers
        if s.frame_every > 0:
            pairs += [(r, f, lo + p, shift) for p in range(0, n, s.frame_every)]
        else:
            pairs += [(r, f, lo + int(rng.integers(n)), shift) for _ in range(s.frames_per_tube)]
    order = rng.permutation(len(pairs))
    seeds = rng.integers(0, 2**63 - 1, size=len(pairs), dtype=np.int64)
    idx = np.empty(2 * len(pairs), np.int64)
    frames = np.empty(2 * len(pairs), np.int64)
    both_seeds = np.empty(2 * len(pairs), np.int64)
    for k, o in enumerate(order):
        r, f, p, shift = pairs[o]
        idx[2 * k], idx[2 * k + 1] = r, f
        frames[2 * k], frames[2 * k + 1] = p, p + shift
        both_seeds[2 * k] = both_seeds[2 * k + 1] = seeds[k]
    return idx, both_seeds, frames


def epoch_plan(table: TubeTable, s: PlanSettings, *, seed: int, epoch: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epoch: ``(indices (M,), augmentation seeds (M,), frame positions (M,))``, all int64.

    ``frame == -1`` lets the dataset draw the frame from the seed. In ``paired`` mode positions ``2k`` and
    ``2k + 1`` are a real tube and one of its fakes with the same seed and frame.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x5A3]))
    if s.mode == "paired":
        return _paired(table, s, rng)
    idx, frames = _expand(_chosen_tubes(table, s.unit, rng), table, s)
    labels = table.labels[idx]
    if s.mode == "balanced":
        real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        few, many = (real, fake) if len(real) <= len(fake) else (fake, real)
        drawn = rng.choice(many, size=len(few), replace=False) if len(few) else many[:0]
        keep = np.concatenate([few, drawn])
        keep = keep[rng.permutation(len(keep))]
    elif s.mode == "shuffle":
        keep = rng.permutation(len(idx))
    else:
        raise ValueError(f"unknown sampling mode {s.mode!r}")
    seeds = rng.integers(0, 2**63 - 1, size=len(keep), dtype=np.int64)
    return idx[keep], seeds, frames[keep]


def plan_size(table: TubeTable, s: PlanSettings) -> int:
    """Samples per epoch (the same for every epoch: the schedule is planned on it)."""
    idx, _, _ = epoch_plan(table, s, seed=0, epoch=0)
    return len(idx)


class RecipeSampler(EpochSampler):
    """:class:`EpochSampler` over :func:`epoch_plan`: yields ``(index, seed, frame)`` for one rank's shard.

    The plan is padded (cycling from its start) to a multiple of ``world_size``; in ``paired`` mode whole pairs
    are dealt to the ranks, so a pair never straddles two ranks.
    """

    def __init__(self, table: TubeTable, settings: PlanSettings, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__(table.labels.tolist(), mode="shuffle", seed=seed, rank=rank, world_size=world_size)
        self.table = table
        self.settings = settings
        self.mode = settings.mode  # type: ignore[assignment]
        self._size = plan_size(table, settings)

    @property
    def unit(self) -> int:
        return 2 if self.settings.mode == "paired" else 1

    @property
    def shard_size(self) -> int:
        groups = self._size // self.unit
        return -(-groups // self.world_size) * self.unit

    def shard(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        idx, seeds, _ = self.shard3(epoch)
        return idx, seeds

    def shard3(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's ``(indices, seeds, frames)`` for ``epoch``, before skipping."""
        idx, seeds, frames = epoch_plan(self.table, self.settings, seed=self.seed, epoch=epoch)
        u = self.unit
        groups = len(idx) // u
        total = -(-groups // self.world_size) * self.world_size
        pick = (np.arange(total) % max(groups, 1))[self.rank::self.world_size] if groups else np.arange(0)
        pos = (pick[:, None] * u + np.arange(u)[None, :]).reshape(-1)
        return idx[pos], seeds[pos], frames[pos]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:  # type: ignore[override]
        idx, seeds, frames = self.shard3(self.epoch)
        for i in range(self.start, len(idx)):
            yield int(idx[i]), int(seeds[i]), int(frames[i])

    def state_dict(self) -> dict[str, int | str]:
        out = super().state_dict()
        out.update(frames_per_tube=self.settings.frames_per_tube, frame_every=self.settings.frame_every,
                   unit=self.settings.unit)
        return out
