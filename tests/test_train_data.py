"""Training data: windows over tubes, the dataset, clip-consistent augmentation, sampling, splits."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_fixtures import make_tube_set, record, write_tube

from facetubes.manifest import read_index, write_index
from train.augment import apply_clip, train_transform, val_transform
from train.config import TrainConfig
from train.data import TubeDataset, collate, collate_frames, spaced_indices, window_indices
from train.errors import TrainError
from train.sampling import EpochSampler, epoch_order, optimizer_steps
from train.splits import load_records, make_split, read_split, write_split

NO_AUG = TrainConfig(blur_p=0, noise_p=0, bc_p=0, hflip_p=0, rrc=False)


# ----------------------------------------------------------------------------------------------------------------
# windows


def test_window_indices_long_short_loop_and_pad() -> None:
    assert window_indices(100, 8, 5).tolist() == list(range(5, 13))
    assert window_indices(5, 8, 0, "loop").tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert window_indices(5, 8, 0, "pad").tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert window_indices(1, 3, 0).tolist() == [0, 0, 0]
    assert spaced_indices(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert spaced_indices(3, 32).tolist() == [0, 1, 2]


def _counting_tube(path: Path, n: int, size: int = 24) -> Path:
    """Frame t is a flat grey of value 10 * t + 20 (readable back after encoding)."""
    frames = np.stack([np.full((size, size, 3), 10 * t + 20, np.uint8) for t in range(n)])
    return write_tube(path, frames)


@pytest.mark.parametrize("short, expected", [("loop", [0, 1, 2, 3, 4, 0, 1, 2]), ("pad", [0, 1, 2, 3, 4, 4, 4, 4])])
def test_short_tube_is_looped_or_padded_not_crashed(tmp_path: Path, short: str, expected: list[int]) -> None:
    p = _counting_tube(tmp_path / "t.mp4", 5)
    rec = record(p, tube="t", video="t", label=1, group="t", n_frames=5, size=24)
    for train in (False, True):
        ds = TubeDataset([rec], mode="clip", clip_len=8, transform=val_transform(NO_AUG, 16), train=train,
                         short_tubes=short)
        x = ds[(0, 7) if train else 0].x
        assert x.shape == (3, 8, 16, 16) and x.dtype == torch.uint8
        means = x.float().mean(dim=(0, 2, 3))
        assert torch.allclose(means, torch.tensor([10.0 * t + 20 for t in expected]), atol=3)


def test_index_longer_than_file_uses_the_real_length(tmp_path: Path) -> None:
    p = _counting_tube(tmp_path / "t.mp4", 6)
    rec = record(p, tube="t", video="t", label=0, group="t", n_frames=40, size=24)  # index overstates
    ds = TubeDataset([rec], mode="clip", clip_len=8, transform=val_transform(NO_AUG, 24), train=False)
    s = ds[0]
    assert s.bad == [] and s.x is not None
    assert torch.allclose(s.x.float().mean(dim=(0, 2, 3))[6:], torch.tensor([20.0, 30.0]), atol=3)


def test_training_window_is_random_contiguous_and_seeded(tmp_path: Path) -> None:
    p = _counting_tube(tmp_path / "t.mp4", 20)
    rec = record(p, tube="t", video="t", label=0, group="t", n_frames=20, size=24)
    ds = TubeDataset([rec], mode="clip", clip_len=4, transform=val_transform(NO_AUG, 24), train=True)
    starts = set()
    for seed in range(12):
        m = ds[(0, seed)].x.float().mean(dim=(0, 2, 3))
        t = ((m - 20) / 10).round()
        assert torch.equal(t, t[0] + torch.arange(4.0))  # contiguous
        assert 0 <= t[0] <= 16
        starts.add(int(t[0]))
        assert torch.equal(ds[(0, seed)].x, ds[(0, seed)].x)  # reproducible from the seed
    assert len(starts) >= 4
    val = TubeDataset([rec], mode="clip", clip_len=4, transform=val_transform(NO_AUG, 24), train=False)
    assert torch.equal(val[0].x, val[0].x)
    assert round(float(val[0].x.float()[:, 0].mean())) == 20  # first window


# ----------------------------------------------------------------------------------------------------------------
# augmentation


def test_augmentation_is_identical_across_the_frames_of_a_clip() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    frames = np.repeat(frame[None], 6, axis=0)
    cfg = TrainConfig(blur_p=1.0, bc_p=1.0, noise_p=0.0, hflip_p=0.5, vflip_p=0.5, channel_perm_p=1.0)
    tf = train_transform(cfg, 32)
    outs = []
    for seed in range(6):
        x = apply_clip(tf, frames, seed)  # (C, T, H, W)
        assert x.shape == (3, 6, 32, 32) and x.dtype == torch.uint8
        assert all(torch.equal(x[:, 0], x[:, t]) for t in range(1, 6))
        outs.append(x)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # but clips differ from each other


def test_noise_differs_per_pixel_but_not_in_strength() -> None:
    frames = np.full((4, 32, 32, 3), 128, np.uint8)
    cfg = dataclasses.replace(NO_AUG, noise_p=1.0, noise_std=0.05)
    x = apply_clip(train_transform(cfg, 32), frames, 3).float()
    assert not torch.equal(x[:, 0], x[:, 1])
    stds = x.sub(128).std(dim=(0, 2, 3))
    assert torch.allclose(stds, torch.full_like(stds, 0.05 * 255), rtol=0.2)


def test_validation_crop_is_central() -> None:
    frame = np.zeros((256, 256, 3), np.uint8)
    frame[16:240, 16:240] = 200  # the centre 224 square
    x = apply_clip(val_transform(TrainConfig(), 224), frame[None])
    assert x.shape == (3, 1, 224, 224) and bool((x == 200).all())
    x112 = apply_clip(val_transform(TrainConfig(), 112), frame[None])
    assert x112.shape == (3, 1, 112, 112) and float(x112.float().mean()) > 195  # 224 crop resized to 112


# ----------------------------------------------------------------------------------------------------------------
# failures and collate


def test_corrupt_tube_gets_a_substitute_in_training_and_is_dropped_in_validation(tmp_path: Path) -> None:
    index = make_tube_set(tmp_path, n_groups=2, fakes_per_group=2, size=24, n_frames=6)
    recs = read_index(index)
    broken = recs[1].path
    broken.write_bytes(b"not a video at all" * 10)
    tf = val_transform(NO_AUG, 16)
    train = TubeDataset(recs, mode="clip", clip_len=4, transform=tf, train=True)
    s = train[(1, 123)]
    assert s.x is not None and s.label == 1 and s.index != 1 and recs[s.index].label == 1
    assert len(s.bad) == 1 and str(broken) in s.bad[0]
    val = TubeDataset(recs, mode="clip", clip_len=4, transform=tf, train=False)
    batch = collate([val[i] for i in range(len(recs))])
    assert len(batch) == len(recs) - 1 and 1 not in batch.index.tolist()
    assert batch.x.shape == (len(recs) - 1, 3, 4, 16, 16) and len(batch.bad) == 1


def test_frames_mode_and_collate_frames(tmp_path: Path) -> None:
    index = make_tube_set(tmp_path, n_groups=1, fakes_per_group=1, size=24, n_frames=5)
    recs = read_index(index)
    ds = TubeDataset(recs, mode="frames", transform=val_transform(NO_AUG, 16), train=False, frames_per_tube=3)
    b = collate_frames([ds[0], ds[1]])
    assert b.x.shape == (6, 3, 16, 16) and b.counts.tolist() == [3, 3] and b.labels.tolist() == [0, 1]
    one = TubeDataset(recs, mode="frame", transform=val_transform(NO_AUG, 16), train=True)
    assert one[(0, 5)].x.shape == (3, 16, 16)


# ----------------------------------------------------------------------------------------------------------------
# sampling


def test_balanced_epoch_takes_every_real_and_fresh_fakes() -> None:
    labels = [0] * 5 + [1] * 20
    seen_fakes = set()
    for epoch in range(4):
        idx, seeds = epoch_order(labels, mode="balanced", seed=1, epoch=epoch)
        assert sorted(i for i in idx if labels[i] == 0) == list(range(5))
        fakes = [i for i in idx if labels[i] == 1]
        assert len(fakes) == 5 and len(set(fakes)) == 5
        seen_fakes.update(fakes)
        again, again_seeds = epoch_order(labels, mode="balanced", seed=1, epoch=epoch)
        assert np.array_equal(idx, again) and np.array_equal(seeds, again_seeds)
    assert len(seen_fakes) > 5  # the fakes change between epochs
    shuffled, _ = epoch_order(labels, mode="shuffle", seed=1, epoch=0)
    assert sorted(shuffled.tolist()) == list(range(25))


def test_ranks_get_disjoint_equal_shards_and_resume_skips() -> None:
    labels = [0] * 7 + [1] * 9  # 14 per epoch, 3 ranks -> padded to 15
    shards = [EpochSampler(labels, seed=3, rank=r, world_size=3) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    got = [list(s) for s in shards]
    assert [len(g) for g in got] == [5, 5, 5] and all(len(s) == 5 for s in shards)
    whole, _ = epoch_order(labels, mode="balanced", seed=3, epoch=2)
    flat = [pair[0] for g in got for pair in g]
    assert sorted(flat[:14]) != [] and set(flat) == set(whole.tolist())
    positions = [pair for g in got for pair in g]
    assert len({p[1] for p in positions}) == 14  # one sample repeated as padding, the rest distinct
    shards[1].set_epoch(2, start=3)
    assert list(shards[1]) == got[1][3:] and len(shards[1]) == 2


def test_optimizer_steps_count_accumulation_and_drop_last() -> None:
    assert optimizer_steps(25, 4, 1) == (6, 6)
    assert optimizer_steps(25, 4, 4) == (6, 2)
    assert optimizer_steps(3, 4, 1) == (0, 0)


# ----------------------------------------------------------------------------------------------------------------
# splits and labels


def _records(tmp_path: Path, n_groups: int = 10, **kw):
    return load_records(make_tube_set(tmp_path, n_groups=n_groups, size=16, n_frames=2, **kw))


def test_random_split_keeps_groups_together_and_is_order_independent(tmp_path: Path) -> None:
    recs = _records(tmp_path, fakes_per_group=2)
    a = make_split(recs, mode="random", val_fraction=0.3, seed=7)
    assert {r.group for r in a.train}.isdisjoint({r.group for r in a.val})
    assert len(a.train) + len(a.val) == len(recs) and 0 < len(a.val) < len(recs)
    shuffled = list(recs)
    random.Random(0).shuffle(shuffled)
    b = make_split(shuffled, mode="random", val_fraction=0.3, seed=7)
    assert sorted(r.tube for r in a.val) == sorted(r.tube for r in b.val)
    c = make_split(recs, mode="random", val_fraction=0.3, seed=8)
    assert sorted(r.tube for r in a.val) != sorted(r.tube for r in c.val)


def test_split_file_round_trip(tmp_path: Path) -> None:
    recs = _records(tmp_path)
    a = make_split(recs, mode="random", val_fraction=0.3, seed=0)
    write_split(tmp_path / "split.csv", a)
    b = read_split(tmp_path / "split.csv", list(reversed(recs)))
    assert sorted(r.tube for r in b.val) == sorted(r.tube for r in a.val)
    with pytest.raises(TrainError, match="missing from the index"):
        read_split(tmp_path / "split.csv", recs[1:])


def test_split_column_and_folders(tmp_path: Path) -> None:
    recs = _records(tmp_path, folders=3)
    marked = [dataclasses.replace(r, split="val" if r.group in ("real00", "real01") else "train") for r in recs]
    # a leak: one fake of group real00 marked train must be dropped from training
    marked[1] = dataclasses.replace(marked[1], split="train")
    s = make_split(marked, mode="auto", val_fraction=0.2, seed=0)
    assert s.how == "index split column" and s.dropped_for_leakage == 1
    assert {r.group for r in s.val} == {"real00", "real01"}
    assert {r.group for r in s.train}.isdisjoint({"real00", "real01"})
    f = make_split(recs, mode="auto", val_fraction=0.2, seed=0, val_folders=["part_1"])
    assert {r.folder for r in f.val} == {"part_1"} and "part_1" not in {r.folder for r in f.train}
    with pytest.raises(TrainError, match="no tube comes from such a folder"):
        make_split(recs, mode="folders", val_fraction=0.2, seed=0, val_folders=["dfdc_train_part_9"])


def test_bad_datasets_fail_at_start_with_clear_messages(tmp_path: Path) -> None:
    recs = _records(tmp_path / "a", n_groups=4)
    reals = [r for r in recs if r.label == 0]
    with pytest.raises(TrainError, match="only real tubes"):
        make_split(reals, mode="random", val_fraction=0.3, seed=0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "unl").mkdir()
    write_index(tmp_path / "empty" / "index.csv", [])
    with pytest.raises(TrainError, match="lists no tubes"):
        load_records(tmp_path / "empty")
    unl = [dataclasses.replace(r, label=None) for r in recs]
    write_index(tmp_path / "unl" / "index.csv", unl)
    with pytest.raises(TrainError, match="no tube has a label"):
        load_records(tmp_path / "unl")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\nsomething_else.mp4,FAKE\n")
    with pytest.raises(TrainError, match="match no tube"):
        load_records(tmp_path / "a", [str(labels)])
    labels.write_text("filename,label,original\nreal00.mp4,REAL,\nfake000.mp4,FAKE,real00.mp4\n")
    got = load_records(tmp_path / "a", [str(labels)])
    assert sorted((r.video, r.label) for r in got) == [("fake000", 1), ("real00", 0)]
