"""Building blocks of the DFDC frame recipes: part dropout on a real face, RandMerge, isotropic resize, clip-consistent
recipe augmentation, samplers (frames per tube, every N-th frame, one tube per video, real/fake pairs), losses,
schedules and the validation reduction. All on tiny arrays; the recipe runs are in test_train_recipes.py."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_train_fixtures import record, tube_frames, write_tube

from train.augment import apply_clip
from train.augment2d import isotropic_resize, recipe_train_transform
from train.config import TrainConfig, resolve_config
from train.data import TubeDataset, collate, tube_landmark_entries
from train.losses import clip_targets, recipe_loss
from train.loop import tube_scores
from train.parts import apply_part_dropout, draw_part_dropout, half_mask, part_mask, rand_merge, tube_landmarks
from train.samplers import PlanSettings, RecipeSampler, TubeTable, epoch_plan, fake_partners
from train.schedules import Schedule

DATA = Path(__file__).resolve().parent / "data"


# ----------------------------------------------------------------------------------------------------------------
# part dropout on a real face photo (landmarks: facenet-pytorch MTCNN run once on it, stored next to it)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(DATA / "face00.png").convert("RGB"))
    lm = np.asarray(json.loads((DATA / "face00_landmarks.json").read_text())["landmarks"], np.float32)
    return img, lm


def _at(mask: np.ndarray, p: np.ndarray) -> bool:
    return bool(mask[int(round(p[1])), int(round(p[0]))])


def test_part_masks_cover_their_part_and_spare_the_others(face) -> None:
    img, lm = face
    eyes, mouth, nose = (part_mask(img.shape[:2], lm, p) for p in ("eyes", "mouth", "nose"))
    assert _at(eyes, lm[0]) and _at(eyes, lm[1]) and not _at(eyes, lm[3]) and not _at(eyes, lm[4])
    assert _at(mouth, lm[3]) and _at(mouth, lm[4]) and not _at(mouth, lm[0]) and not _at(mouth, lm[1])
    assert _at(nose, lm[2]) and not _at(nose, lm[3])
    # the eye band is a quarter of the eye distance (+1) thick on each side of the line through the eyes
    eye_dist = float(np.linalg.norm(lm[1] - lm[0]))
    mid = ((lm[0] + lm[1]) / 2).round().astype(int)
    column = np.flatnonzero(eyes[:, mid[0]])
    assert column.size == pytest.approx(2 * (1 + eye_dist // 4) + 1, abs=2)
    assert not eyes[: column.min()].any() or column.min() > 0  # a single band, not scattered pixels
    assert 0.01 < eyes.mean() < 0.2 and 0.01 < mouth.mean() < 0.2


def test_part_dropout_blacks_out_exactly_the_mask_on_the_photo(face) -> None:
    img, lm = face
    frames = np.stack([img, img])
    out = apply_part_dropout(frames, [lm, None], "eyes")
    mask = part_mask(img.shape[:2], lm, "eyes")
    assert (out[0][mask] == 0).all() and (out[0][~mask] == img[~mask]).all()
    assert (out[1] == img).all()  # a frame without landmarks is left alone
    assert (frames[0] == img).all()  # the input is not modified
    half = apply_part_dropout(frames[:1], [lm], "half:left")[0]
    cx = lm[:, 0].mean()
    assert (half[:, : int(cx)] == 0).all() and (half[:, int(cx) + 1:] == img[:, int(cx) + 1:]).all()
    assert half_mask(img.shape[:2], lm, "bottom")[int(lm[3, 1]) + 1].all()


def test_part_dropout_draw_follows_the_published_probabilities() -> None:
    rng = np.random.default_rng(0)
    draws = [draw_part_dropout(rng) for _ in range(20000)]
    share = {k: sum(d == k for d in draws) / len(draws) for k in ("eyes", "mouth", "nose")}
    assert share["eyes"] == pytest.approx(0.35, abs=0.015)
    assert share["mouth"] == pytest.approx(0.175, abs=0.015)
    assert share["nose"] == pytest.approx(0.0875, abs=0.01)
    halves = sum(str(d).startswith("half:") for d in draws) / len(draws)
    assert halves == pytest.approx(0.3 * 0.2, abs=0.01)


def test_tube_landmarks_interpolate_between_detections() -> None:
    a = np.zeros((5, 2)).tolist()
    b = np.full((5, 2), 10.0).tolist()
    got = tube_landmarks([[100, a], [110, b]], [100, 105, 110, 115, 125])
    assert np.allclose(got[1], 5.0) and np.allclose(got[2], 10.0) and np.allclose(got[3], 10.0)
    assert got[4] is None  # more than max_gap frames from any detection
    assert tube_landmarks([], [1, 2]) == [None, None]


def test_dataset_reads_landmarks_from_tubes_json_and_counts_tubes_without(tmp_path: Path, face) -> None:
    img, lm = face
    frames = np.stack([img] * 3)
    with_lm = write_tube(tmp_path / "v1" / "v1_t0.mp4", frames)
    without = write_tube(tmp_path / "v2" / "v2_t0.mp4", frames)
    (tmp_path / "v1" / "tubes.json").write_text(json.dumps({"video": "v1", "tubes": [
        {"tube": "v1_t0", "track": 0, "tube_landmarks": [[f, lm.tolist()] for f in range(3)]}]}))
    recs = [record(p, tube=f"{v}_t0", video=v, label=1, group=v, n_frames=3, size=256)
            for p, v in ((with_lm, "v1"), (without, "v2"))]
    assert len(tube_landmark_entries(recs[0])) == 3 and tube_landmark_entries(recs[1]) == []
    cfg = TrainConfig(rrc=False, hflip_p=0, blur_p=0, noise_p=0, bc_p=0)
    ds = TubeDataset(recs, mode="frame", train=True, transform=recipe_train_transform(cfg, 256),
                     part_dropout=(1.0, 0.0), max_substitutes=0)
    seed = next(s for s in range(100) if draw_part_dropout(np.random.default_rng([s, 0xD20]), part_p=1.0) == "eyes")
    s1, s2 = ds[(0, seed, 1)], ds[(1, seed, 1)]
    eyes = torch.from_numpy(part_mask(img.shape[:2], lm, "eyes"))
    assert s1.no_landmarks == 0 and s2.no_landmarks == 1
    assert s1.x[:, eyes].float().mean() < 3 and s2.x[:, eyes].float().mean() > 40  # blacked out / untouched
    assert collate([s1, s2]).no_landmarks == 1


# ----------------------------------------------------------------------------------------------------------------
# RandMerge, isotropic resize, clip-consistent recipe augmentation


def test_rand_merge_takes_the_right_half_from_the_same_class() -> None:
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 4, 4).clone()
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    out, partner = rand_merge(x, labels, p=1.0, rng=np.random.default_rng(0))
    for i in range(6):
        j = int(partner[i])
        assert j != i and labels[j] == labels[i]
        assert (out[i, :, :, :2] == i).all() and (out[i, :, :, 2:] == j).all()
    same, partner = rand_merge(x, labels, p=0.0, rng=np.random.default_rng(0))
    assert torch.equal(same, x) and partner.tolist() == list(range(6))


def test_isotropic_resize_keeps_the_aspect_and_centres_on_black() -> None:
    img = torch.full((1, 3, 20, 40), 200, dtype=torch.uint8)
    out = isotropic_resize(img, 16)
    assert out.shape == (1, 3, 16, 16)
    assert (out[..., 4:12, :] == 200).all() and (out[..., :4, :] == 0).all() and (out[..., 12:, :] == 0).all()
    up = isotropic_resize(torch.full((3, 8, 4), 50, dtype=torch.uint8), 16, up="cubic")
    assert (up[:, :, 4:12] == 50).all() and (up[:, :, :4] == 0).all()


@pytest.mark.parametrize("recipe", ["dfdc-1st", "dfdc-bronze", "dfdc-79th", "dfdc-67th"])
def test_recipe_augmentation_is_identical_for_every_frame_of_a_clip(recipe: str) -> None:
    cfg = dataclasses.replace(resolve_config(task="2d", arch=None, config_file=recipe), noise_p=0.0)
    tf = recipe_train_transform(cfg, 24)
    frame = tube_frames(1, 40, fake=True, seed=3)[0]
    clip = np.stack([frame] * 4)
    outs = [apply_clip(tf, clip, seed) for seed in range(12)]  # (C, T, H, W)
    for o in outs:
        assert o.shape == (3, 4, 24, 24) and o.dtype == torch.uint8
        assert all(torch.equal(o[:, 0], o[:, t]) for t in range(1, 4))
    assert len({o.numpy().tobytes() for o in outs}) > 6  # and the draws do differ between samples
    assert torch.equal(outs[0], apply_clip(tf, clip, 0))  # a function of the seed


# ----------------------------------------------------------------------------------------------------------------
# samplers


def _table(n_frames=(30, 30, 25, 12, 12, 40), labels=(0, 1, 1, 0, 1, 0), video=("r0", "f0", "g0", "r1", "f1", "r2"),
           group=("r0", "r0", "r0", "r1", "r1", "r2"), track=(0, 0, 0, 0, 0, 0)) -> TubeTable:
    return TubeTable(np.array(labels), np.array(n_frames), tuple(video), tuple(group), np.array(track))


def test_frame_every_gives_every_nth_frame_of_every_tube() -> None:
    t = _table()
    idx, seeds, frames = epoch_plan(t, PlanSettings(mode="shuffle", frame_every=10), seed=0, epoch=0)
    got = sorted(zip(idx.tolist(), frames.tolist()))
    want = sorted((i, f) for i, n in enumerate(t.n_frames) for f in range(0, int(n), 10))
    assert got == want and len(set(seeds.tolist())) == len(seeds)


def test_balanced_subsamples_the_larger_class_per_sample_and_frames_per_tube_repeats() -> None:
    t = _table()
    idx, _, frames = epoch_plan(t, PlanSettings(mode="balanced", frames_per_tube=3), seed=1, epoch=0)
    labels = t.labels[idx]
    assert (labels == 0).sum() == (labels == 1).sum() == 9 and (frames == -1).all()
    assert sorted(idx[labels == 0].tolist()) == sorted([0, 3, 5] * 3)
    other, _, _ = epoch_plan(t, PlanSettings(mode="balanced", frames_per_tube=3), seed=1, epoch=1)
    assert not np.array_equal(idx, other)


def test_video_unit_takes_one_tube_per_video_per_epoch() -> None:
    t = _table(video=("a", "a", "a", "b", "b", "c"), labels=(1, 1, 1, 0, 0, 0))
    seen = set()
    for epoch in range(20):
        idx, _, _ = epoch_plan(t, PlanSettings(mode="shuffle", unit="video"), seed=0, epoch=epoch)
        videos = [t.video[i] for i in idx]
        assert sorted(videos) == ["a", "b", "c"]
        seen.update(idx.tolist())
    assert seen == set(range(6))  # every tube gets its turn


def test_pairs_share_frame_and_seed_and_never_straddle_ranks_or_batches() -> None:
    t = _table(track=(0, 1, 0, 0, 0, 0))
    assert fake_partners(t) == {0: [2], 3: [4]}  # r0's same-track fake is g0 (f0 is track 1); r2 has no fake
    idx, seeds, frames = epoch_plan(t, PlanSettings(mode="paired", frame_every=10), seed=0, epoch=0)
    assert len(idx) == 2 * (3 + 2)  # r0/g0: min(30, 25) frames -> 0, 10, 20; r1/f1: 0, 10
    for k in range(0, len(idx), 2):
        assert t.labels[idx[k]] == 0 and t.labels[idx[k + 1]] == 1
        assert seeds[k] == seeds[k + 1] and frames[k] == frames[k + 1] >= 0
    shards = [list(RecipeSampler(t, PlanSettings(mode="paired", frame_every=10), rank=r, world_size=2))
              for r in range(2)]
    for shard in shards:
        assert len(shard) == 6  # 5 pairs padded to 6, 3 per rank
        for k in range(0, len(shard), 2):
            assert shard[k][1:] == shard[k + 1][1:] and t.labels[shard[k][0]] == 0


def test_pairs_follow_the_original_and_show_the_same_source_frame() -> None:
    # group is a dataset component (FF++ style), so only ``original`` says which real each fake belongs to
    t = TubeTable(np.array([0, 1, 1, 0]), np.array([30, 30, 20, 30]), ("r0", "f0", "f1", "r1"),
                  ("ffpp:0",) * 4, np.zeros(4, np.int64), start=np.array([0, 10, 0, 50]),
                  original=("", "r0", "r1", ""))
    assert fake_partners(t) == {0: [1]}  # f1 (frames 0-19) shares no frame with r1 (frames 50-79)
    idx, _, frames = epoch_plan(t, PlanSettings(mode="paired", frame_every=5), seed=0, epoch=0)
    got = sorted((int(frames[k]), int(frames[k + 1])) for k in range(0, len(idx), 2))
    # r0 position p is source frame p; f0 position q is source frame 10 + q: shared frames 10-29
    assert got == [(10 + p, p) for p in range(0, 20, 5)]
    assert all(t.start[idx[k]] + frames[k] == t.start[idx[k + 1]] + frames[k + 1] for k in range(0, len(idx), 2))


def test_paired_samples_get_the_same_frame_and_augmentation(tmp_path: Path) -> None:
    frames = tube_frames(12, 40, fake=False, seed=5)
    recs = []
    for name, label in (("real", 0), ("fake", 1)):  # a fake pixel-aligned with its original (same content here)
        p = write_tube(tmp_path / name / f"{name}_t0.mp4", frames)
        recs.append(record(p, tube=f"{name}_t0", video=name, label=label, group="real", n_frames=12, size=40))
    cfg = resolve_config(task="2d", arch=None, config_file="dfdc-1st")
    ds = TubeDataset(recs, mode="frame", train=True, transform=recipe_train_transform(cfg, 32),
                     max_substitutes=0)
    sampler = RecipeSampler(TubeTable.from_records(recs), PlanSettings(mode="paired", frames_per_tube=4), seed=3)
    keys = list(sampler)
    assert len(keys) == 8
    outs = [ds[k].x for k in keys]
    for k in range(0, 8, 2):
        assert torch.equal(outs[k], outs[k + 1])
    assert len({o.numpy().tobytes() for o in outs[::2]}) == 4


# ----------------------------------------------------------------------------------------------------------------
# losses, schedules, validation reduction


def test_bce_classes_is_the_mean_of_the_two_class_means() -> None:
    logits = torch.tensor([[2.0], [-1.0], [0.5], [0.3], [-2.0]])
    labels = torch.tensor([1, 0, 0, 0, 1])
    t = labels.float().unsqueeze(1)
    per = F.binary_cross_entropy_with_logits(logits, t, reduction="none")[:, 0]
    want = (per[labels == 1].mean() + per[labels == 0].mean()) / 2
    assert recipe_loss(logits, t, labels, kind="bce_classes") == pytest.approx(float(want))
    assert recipe_loss(logits, t, labels, kind="bce") == pytest.approx(float(per.mean()))
    assert float(want) != pytest.approx(float(per.mean()))


def test_focal_loss_down_weights_easy_samples_and_is_bce_at_gamma_zero() -> None:
    logits = torch.tensor([[4.0], [0.0]])
    t = torch.tensor([[1.0], [1.0]])
    labels = torch.tensor([1, 1])
    bce = recipe_loss(logits, t, labels, kind="bce")
    assert recipe_loss(logits, t, labels, kind="focal", gamma=0.0) == pytest.approx(float(bce))
    p = torch.sigmoid(torch.tensor(4.0))
    per = F.binary_cross_entropy_with_logits(logits, t, reduction="none")[:, 0]
    want = ((1 - p) ** 2 * per[0] + 0.5 ** 2 * per[1]) / 2
    assert recipe_loss(logits, t, labels, kind="focal", gamma=2.0) == pytest.approx(float(want))


def test_label_clipping() -> None:
    t = torch.tensor([[0.0], [1.0], [0.5]])
    assert clip_targets(t, (0.01, 0.99)).flatten().tolist() == pytest.approx([0.01, 0.99, 0.5])
    two = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert clip_targets(two, (0.01, 0.99)).flatten().tolist() == pytest.approx([0.99, 0.01, 0.01, 0.99])
    assert clip_targets(t, None) is t


def test_poly_and_plateau_schedules() -> None:
    w = torch.nn.Parameter(torch.zeros(2, 2))
    cfg = TrainConfig(task="2d", schedule="poly", lr=0.01, optimizer="sgd", poly_power=0.9).validate()
    opt = torch.optim.SGD([w], lr=cfg.lr)
    sched = Schedule(cfg, opt, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.after_step()
    assert lrs == pytest.approx([0.01 * (1 - k / 10) ** 0.9 for k in range(10)])
    cfg = dataclasses.replace(cfg, schedule="plateau", plateau_patience=2, plateau_factor=0.5)
    opt = torch.optim.SGD([w], lr=cfg.lr)
    sched = Schedule(cfg, opt, total_steps=10)
    for loss in (0.5, 0.4, 0.45, 0.41, 0.42, math.nan):
        sched.after_step()  # per-step calls never change a plateau schedule
        sched.after_epoch(loss)
    # 0.4 is the best; three epochs without improvement after it (> patience 2) halve the lr once
    assert sched.get_last_lr()[0] == pytest.approx(0.005)
    state = sched.state_dict()
    again = Schedule(cfg, torch.optim.SGD([w], lr=cfg.lr), total_steps=10)
    again.load_state_dict(state)
    assert again.inner.best == pytest.approx(0.4)


def test_validation_reduction_per_tube() -> None:
    p = torch.tensor([0.9, 0.1, 0.2, 0.7, 0.8, 0.9])
    counts = [3, 3]
    assert tube_scores(p, counts, "median").tolist() == pytest.approx([0.2, 0.8])
    assert tube_scores(p, counts, "mean").tolist() == pytest.approx([0.4, 0.8])
    assert tube_scores(p, counts, "max").tolist() == pytest.approx([0.9, 0.9])
    assert math.isnan(tube_scores(torch.tensor([math.nan, 0.5]), [2], "mean")[0])


def test_recipe_settings_are_checked() -> None:
    from facetubes.errors import ConfigError

    with pytest.raises(ConfigError, match="--batch-size: must be even with paired sampling"):
        TrainConfig(task="2d", sampling="paired", batch_size=5).validate()
    with pytest.raises(ConfigError, match="--frames-per-tube: is a 2D"):
        TrainConfig(task="3d", frames_per_tube=2).validate()
    with pytest.raises(ConfigError, match="--label-clip: needs 0 <= min < max <= 1"):
        TrainConfig(task="2d", label_clip=(0.9, 0.1)).validate()
    with pytest.raises(ConfigError, match="--focal-epochs: must be <= --epochs"):
        TrainConfig(task="2d", epochs=2, focal_epochs=3).validate()
    with pytest.raises(ConfigError, match="--head: must be linear or hidden512"):
        TrainConfig(task="2d", head="mlp").validate()


def test_model_options_reach_the_registry_and_unknown_ones_are_one_line_errors() -> None:
    from train.errors import TrainError
    from train.loop import build_model

    from test_train_fixtures import register_tiny_models

    register_tiny_models()  # tiny2d: a 2D builder without a norm option (every registered 2D model now has one)
    with pytest.raises(TrainError, match=r"--arch tiny2d does not take --norm"):
        build_model(TrainConfig(task="2d", arch="tiny2d", norm="group").validate())
    with torch.device("meta"):
        model = build_model(TrainConfig(task="2d", arch="efficientnet_b0", norm="group", head="hidden512",
                                        dropout=0.4, crop_size=64).validate())
    encoder = list(model.encoder.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in encoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder)
    assert model.num_classes == 1 and model.preset.crop_size == 64
    assert any(isinstance(m, torch.nn.Linear) and m.out_features == 512 for m in model.modules())
