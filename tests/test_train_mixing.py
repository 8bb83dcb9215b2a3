"""CutMix / MixUp / soft targets, validation metrics, and the configuration layers."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facetubes.errors import ConfigError
from train.config import TrainConfig, load_run_config, resolve_config
from train.metrics import class_accuracy, log_loss, roc_auc
from train.mixing import (apply_mix, cutmix_box, cutmix_cuboid, fake_probability, mixup, one_hot_targets,
                          smooth_targets, soft_target_loss)


def _labelled_clips(b: int = 6, t: int = 8, s: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i is the constant i+1, so every pixel tells which sample it came from."""
    x = torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 3, t, s, s).contiguous()
    labels = torch.tensor([0, 1] * (b // 2))
    return x, one_hot_targets(labels, 2)


def test_cuboid_cutmix_matches_the_published_recipe() -> None:
    rng = np.random.default_rng(0)
    for _ in range(8):
        x, y = _labelled_clips()
        out, ty = cutmix_cuboid(x, y, rng=rng)
        assert torch.allclose(ty.sum(1), torch.ones(6))
        for i in range(6):
            own = (out[i] == i + 1).float().mean().item()
            assert own >= 0.5 - 1e-6  # lam folded to max(lam, 1 - lam), clipping only raises it
            if own < 1:
                partner = int(out[i][out[i] != i + 1][0].item()) - 1
                foreign = out[i] != i + 1
                # one cuboid: the pasted region spans a box in T, H and W
                idx = foreign.nonzero()
                lo, hi = idx.min(0).values, idx.max(0).values
                box = foreign[:, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1, lo[3]:hi[3] + 1]
                assert bool(box.all())
                lam = own
                expect = lam * y[i] + (1 - lam) * y[partner]
                assert torch.allclose(ty[i], expect, atol=1e-5)
            else:
                assert torch.allclose(ty[i], y[i])
    assert x.equal(_labelled_clips()[0])  # the input batch is not modified


def test_box_cutmix_is_one_spatial_box_through_all_frames() -> None:
    rng = np.random.default_rng(1)
    mixed = 0
    for _ in range(10):
        x, _ = _labelled_clips()
        out, ty = cutmix_box(x, torch.eye(6), alpha=1.0, rng=rng)
        for i in range(6):
            foreign = out[i] != i + 1  # (C, T, H, W)
            assert all(torch.equal(foreign[:, 0], foreign[:, t]) for t in range(1, 8))
            if bool(foreign.any()):
                mixed += 1
                partner = int(out[i][foreign][0].item()) - 1
                own = 1 - foreign.float().mean().item()
                assert ty[i, i].item() == pytest.approx(own, abs=1e-5)
                assert ty[i, partner].item() == pytest.approx(1 - own, abs=1e-5)
        assert torch.allclose(ty.sum(1), torch.ones(6))
    assert mixed > 0


def test_mixup_and_apply_mix_modes() -> None:
    rng = np.random.default_rng(2)
    x, _ = _labelled_clips()
    eye = torch.eye(6)  # one "class" per sample: the mixed targets name the partner and the weight
    for _ in range(5):
        out, ty = mixup(x, eye, alpha=0.4, rng=rng)
        for i in range(6):
            lam = ty[i, i].item()
            partner = i if lam > 1 - 1e-6 else int(torch.cat([ty[i, :i], torch.tensor([-1.0]), ty[i, i + 1:]]).argmax())
            expect = lam * (i + 1) + (1 - lam) * (partner + 1) if partner != i else i + 1
            assert torch.allclose(out[i], torch.full_like(out[i], expect), atol=1e-5)
    with pytest.raises(ValueError, match="floating"):
        mixup(x.to(torch.uint8), eye, rng=rng)
    same, same_y = apply_mix(x, eye, mode="none", prob=1.0, cutmix_alpha=1, mixup_alpha=0.4, rng=rng)
    assert same is x and same_y is eye
    skipped, _ = apply_mix(x, eye, mode="cutmix3d", prob=0.0, cutmix_alpha=1, mixup_alpha=0.4, rng=rng)
    assert skipped is x
    kinds = set()
    for _ in range(20):
        o, _t = apply_mix(x, eye, mode="mixup_or_cutmix", prob=1.0, cutmix_alpha=1, mixup_alpha=0.4, rng=rng)
        blended = ~torch.isin(o, torch.arange(1.0, 7.0))
        kinds.add("mixup" if bool(blended.any()) else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_soft_target_loss_reads_soft_targets() -> None:
    logits = torch.randn(5, 2)
    labels = torch.tensor([0, 1, 1, 0, 1])
    hard = one_hot_targets(labels, 2)
    assert torch.allclose(soft_target_loss(logits, hard), F.cross_entropy(logits, labels))
    smooth = smooth_targets(hard, 0.1)
    assert torch.allclose(soft_target_loss(logits, smooth), F.cross_entropy(logits, labels, label_smoothing=0.1))
    soft = torch.tensor([[0.3, 0.7]] * 5)
    assert not torch.allclose(soft_target_loss(logits, soft), soft_target_loss(logits, hard))
    one = torch.randn(5, 1)
    t1 = one_hot_targets(labels, 1)
    assert t1.shape == (5, 1)
    assert torch.allclose(soft_target_loss(one, t1), F.binary_cross_entropy_with_logits(one[:, 0], labels.float()))
    assert torch.allclose(fake_probability(logits), logits.softmax(1)[:, 1])
    assert torch.allclose(fake_probability(one), one[:, 0].sigmoid())


# ----------------------------------------------------------------------------------------------------------------
# metrics


def test_auc_against_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 40)
        s = rng.integers(0, 6, 40) / 5.0  # many ties
        pos, neg = s[y == 1], s[y == 0]
        pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
        assert roc_auc(y, s) == pytest.approx(np.mean(pairs))
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_log_loss_and_class_accuracy() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert log_loss([1], [0.0]) == pytest.approx(-np.log(1e-15))
    acc, real, fake = class_accuracy([0, 0, 1, 1], [0.1, 0.7, 0.9, 0.6])
    assert (acc, real, fake) == (0.75, 0.5, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# configuration layers


def test_config_layers_arch_yaml_file_then_flags(tmp_path: Path) -> None:
    base = resolve_config(task="3d", arch="i3d")
    assert base.batch_size == 12 and base.lr == 1e-4 and base.clip_len is None  # from configs/i3d.yaml
    assert resolve_config(task="3d", arch="mc3").batch_size == 24
    two = resolve_config(task="2d", arch=None)
    assert two.arch == "seresnext50" and two.mix == "mixup_or_cutmix" and two.num_classes == 1
    f = tmp_path / "exp.yaml"
    f.write_text("batch_size: 7\nlr: 3e-4\nrrc_scale: [0.6, 1.0]\nval_folders: dfdc_train_part_0\n")
    cfg = resolve_config(task="3d", arch="i3d", config_file=str(f), overrides={"batch_size": "5"})
    assert cfg.batch_size == 5 and cfg.lr == 3e-4 and cfg.rrc_scale == (0.6, 1.0)
    assert cfg.val_folders == ["dfdc_train_part_0"] and cfg.num_classes == 2
    cfg.out = str(tmp_path)
    cfg.save(tmp_path / "config.yaml")
    assert load_run_config(tmp_path) == cfg


@pytest.mark.parametrize("text, match", [
    ("batch_sise: 4\n", "unknown setting 'batch_sise'"),
    ("batch_size: four\n", "batch_size has a bad value"),
    ("mix: cutmix4d\n", "mix must be one of"),
    ("hflip_p: 1.5\n", "--hflip-p: must lie in"),
    ("- just a list\n", "expected a mapping"),
])
def test_bad_config_files_are_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        resolve_config(task="3d", arch="i3d", config_file=str(f))
    assert "\n" not in str(e.value)


def test_cutmix3d_is_refused_for_2d() -> None:
    with pytest.raises(ConfigError, match="cutmix3d needs clips"):
        TrainConfig(task="2d", mix="cutmix3d").validate()
