"""Per-epoch sampling: rebalanced (as published) or shuffled, sharded over DDP ranks, exactly resumable.

Everything an epoch draws comes from ``numpy.random.SeedSequence([seed, epoch])``: which fakes join the reals,
their order, and one augmentation seed per sample. A resumed run therefore sees exactly the clips (and the crops,
flips, noise...) it would have seen, whatever the number of data-loading workers.
"""

from __future__ import annotations

from typing import Iterator, Literal, Sequence

import numpy as np
from torch.utils.data import Sampler

SamplingMode = Literal["balanced", "shuffle"]


def epoch_order(labels: Sequence[int], *, mode: SamplingMode, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's dataset indices and one 63-bit augmentation seed per position.

    ``balanced``: every tube of the rarer class once, plus as many tubes of the other class drawn afresh without
    replacement (DFDC: every real + an equal number of fakes), shuffled. ``shuffle``: a permutation of all.
    Returns ``(indices (N,), seeds (N,))``, both int64.
    """
    labels_arr = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0xE90C]))
    if mode == "balanced":
        real = np.flatnonzero(labels_arr == 0)
        fake = np.flatnonzero(labels_arr == 1)
        few, many = (real, fake) if len(real) <= len(fake) else (fake, real)
        drawn = rng.choice(many, size=len(few), replace=False) if len(few) else many[:0]
        idx = np.concatenate([few, drawn])
        idx = idx[rng.permutation(len(idx))]
    elif mode == "shuffle":
        idx = rng.permutation(len(labels_arr))
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    seeds = rng.integers(0, 2**63 - 1, size=len(idx), dtype=np.int64)
    return idx.astype(np.int64), seeds


def epoch_size(labels: Sequence[int], mode: SamplingMode) -> int:
    """Number of samples in every epoch (the same for all epochs)."""
    labels_arr = np.asarray(labels)
    if mode == "balanced":
        return 2 * int(min((labels_arr == 0).sum(), (labels_arr == 1).sum()))
    return len(labels_arr)


def optimizer_steps(samples_per_rank: int, batch_size: int, accum_steps: int) -> tuple[int, int]:
    """``(batches, optimizer steps)`` per epoch for one rank: full batches only (drop_last), and one step per
    ``accum_steps`` batches plus one for a shorter final group. Every rank gets the same numbers, so
    ``epochs * steps`` is exactly the number of ``scheduler.step()`` calls of a run."""
    batches = samples_per_rank // batch_size
    return batches, -(-batches // accum_steps)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset_index, augmentation_seed)`` pairs for one rank's shard of the current epoch.

    The epoch list is padded (cycling from its start) to a multiple of ``world_size`` and rank ``r`` takes
    positions ``r, r + world, ...``: shards are disjoint apart from that padding and equally long, so every rank
    takes the same number of optimizer steps. ``set_epoch(e, start=k)`` skips the first ``k`` samples of this
    rank's shard (resuming inside an epoch).
    """

    def __init__(self, labels: Sequence[int], *, mode: SamplingMode = "balanced", seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.labels = [int(v) for v in labels]
        self.mode: SamplingMode = mode
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch (the draw) and how many of this rank's samples to skip."""
        self.epoch = int(epoch)
        self.start = int(start)

    @property
    def shard_size(self) -> int:
        """Samples per rank per epoch, padding included."""
        n = epoch_size(self.labels, self.mode)
        return -(-n // self.world_size)

    def shard(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's ``(indices, seeds)`` for ``epoch``, before skipping."""
        idx, seeds = epoch_order(self.labels, mode=self.mode, seed=self.seed, epoch=epoch)
        total = self.shard_size * self.world_size
        if len(idx) and total > len(idx):
            reps = np.arange(total) % len(idx)
            idx, seeds = idx[reps], seeds[reps]
        return idx[self.rank::self.world_size], seeds[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        idx, seeds = self.shard(self.epoch)
        for i in range(self.start, len(idx)):
            yield int(idx[i]), int(seeds[i])

    def __len__(self) -> int:
        return max(self.shard_size - self.start, 0)

    def state_dict(self) -> dict[str, int | str]:
        """Everything needed to recreate the sampler's stream (it holds no hidden random state)."""
        return {"mode": self.mode, "seed": self.seed, "epoch": self.epoch, "start": self.start,
                "world_size": self.world_size}


class ShardSampler(Sampler[int]):
    """Validation: rank ``r`` takes indices ``r, r + world, ...`` in order, without padding."""

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
