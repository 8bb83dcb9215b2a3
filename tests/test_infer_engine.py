"""The ensemble forward pass with hand-made models: flip TTA really flips, windows, 2D median, aggregation,
per-member preprocessing. Models here are tiny deterministic functions, so every expected value is computed
independently of the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from infer.engine import EnsemblePredictor, Member, check_member
from infer.preprocess import (frame_indices, prepare_tube, reflect_indices, window_indices, window_starts)


class LeftEdge(nn.Module):
    """Fake logit = 6 * (mean of the 4 left-most columns in [0, 1]) - 3: depends on left/right asymmetry.

    Input ``(B, 3, T, H, W)`` (3D) or ``(B, 3, H, W)`` (2D); ``num_classes`` 1 (sigmoid) or 2 (softmax)."""

    def __init__(self, is_3d: bool = True, num_classes: int = 2) -> None:
        super().__init__()
        self.is_3d, self.num_classes = is_3d, num_classes
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == (5 if self.is_3d else 4) and x.shape[1] == 3
        self.shapes.append(tuple(x.shape))
        z = 6.0 * x[..., :4].flatten(1).mean(1) - 3.0
        return z[:, None] if self.num_classes == 1 else torch.stack([torch.zeros_like(z), z], 1)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def f_ref(view: np.ndarray) -> float:
    """The LeftEdge probability of one view given as (..., H, W) floats in 0..255, computed in numpy."""
    return sig(6.0 * (view[..., :4] / 255.0).mean() - 3.0)


def member(name: str = "m", *, is_3d: bool = True, clip_len: int = 8, crop: int = 32, num_classes: int = 2,
           **kw) -> Member:
    return Member(name=name, model=LeftEdge(is_3d, num_classes), normalize=unit, is_3d=is_3d, clip_len=clip_len,
                  crop_size=crop, crop_fraction=1.0, **kw)


@pytest.fixture
def tube() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    t[:, :, :6] = 230  # bright left edge, so f(x) and f(hflip x) differ clearly
    t[:, :, -6:] = 20
    return t


def views_3d(tube: np.ndarray, clip_len: int) -> list[np.ndarray]:
    x = tube.transpose(3, 0, 1, 2).astype(np.float64)  # (3, T, H, W)
    return [x[:, s:s + clip_len] for s in window_starts(tube.shape[0], clip_len)]


def test_tta_averages_x_and_its_horizontal_flip(tube):
    p = EnsemblePredictor([member()], tta=True, clip=None)
    got = p.predict([tube]).probability
    expected = np.mean([np.mean([f_ref(v), f_ref(v[..., ::-1])]) for v in views_3d(tube, 8)])
    no_tta = np.mean([f_ref(v) for v in views_3d(tube, 8)])
    vflip = np.mean([np.mean([f_ref(v), f_ref(v[..., ::-1, :])]) for v in views_3d(tube, 8)])
    assert got == pytest.approx(expected, abs=1e-6)
    assert abs(got - no_tta) > 0.1 and abs(got - vflip) > 0.1  # a missing or wrong flip would be caught
    assert EnsemblePredictor([member()], tta=False, clip=None).predict([tube]).probability == \
        pytest.approx(no_tta, abs=1e-6)


def test_tta_runs_x_and_flip_in_one_batch(tube):
    m = member(batch_size=8)
    EnsemblePredictor([m], tta=True).predict([tube])
    # 20 frames, clip 8 -> 3 windows, all in one forward pass of 2 x 3 clips
    assert m.model.shapes == [(6, 3, 8, 32, 32)]


def test_windows_cover_the_tube_and_batching_is_exact(tube):
    m = member(batch_size=2)
    p = EnsemblePredictor([m], tta=False, clip=None).predict([tube])
    assert [s[0] for s in m.model.shapes] == [2, 1]  # 3 windows in batches of 2
    assert p.tube_probs["m"][0] == pytest.approx(np.mean([f_ref(v) for v in views_3d(tube, 8)]), abs=1e-6)


def test_window_helpers():
    assert window_starts(100, 32) == [0, 23, 45, 68]
    assert window_starts(100, 64) == [0, 36]
    assert window_starts(32, 32) == [0] and window_starts(5, 32) == [0]
    assert [list(w) for w in window_indices(3, 7)] == [[0, 1, 2, 1, 0, 1, 2]]
    assert list(reflect_indices(1, 3)) == [0, 0, 0]
    whole = window_indices(50, 32, "whole")
    assert len(whole) == 1 and list(whole[0]) == list(range(50))
    assert list(frame_indices(100, 5)) == [0, 25, 50, 74, 99]
    assert list(frame_indices(3, 32)) == [0, 1, 2]
    for starts in (window_starts(n, L) for n in (33, 64, 99, 100, 301) for L in (8, 32, 64)):
        assert starts[0] == 0
    for n, L in ((33, 8), (99, 32), (301, 64)):
        covered = set().union(*(set(range(s, s + L)) for s in window_starts(n, L)))
        assert covered == set(range(n))


def test_short_tube_is_reflection_padded():
    t = np.zeros((3, 32, 32, 3), np.uint8)
    t[1, :, :4] = 255  # only frame 1 has a bright left edge
    m = member(clip_len=7)
    got = EnsemblePredictor([m], tta=False, clip=None).predict([t]).probability
    # indices 0 1 2 1 0 1 2: frame 1 three times out of 7
    assert got == pytest.approx(sig(6 * 3 / 7 - 3), abs=1e-6)
    assert m.model.shapes == [(1, 3, 7, 32, 32)]


def test_2d_member_median_over_frames_of_tta_mean():
    t = np.zeros((5, 32, 32, 3), np.uint8)
    levels = [0, 50, 200, 250, 100]
    for i, v in enumerate(levels):
        t[i, :, :4] = v  # flipped view sees zeros on its left
    m = member(is_3d=False, num_classes=1, frames=32)
    got = EnsemblePredictor([m], tta=True, clip=None).predict([t]).probability
    per_frame = [(sig(6 * v / 255 - 3) + sig(-3)) / 2 for v in levels]
    assert got == pytest.approx(float(np.median(per_frame)), abs=1e-6)
    assert got != pytest.approx(float(np.mean(per_frame)), abs=1e-3)
    assert m.model.shapes[0] == (10, 3, 32, 32)


def test_2d_member_alternate_tta_mirrors_every_other_frame_once():
    """``tta: alternate`` (the published 5th-place 2D model): frames 1, 3, ... are mirrored, each frame is scored
    once, and the median is taken over those single scores."""
    t = np.zeros((5, 32, 32, 3), np.uint8)
    levels = [0, 50, 200, 250, 100]
    for i, v in enumerate(levels):
        t[i, :, :4] = v  # a mirrored view sees zeros on its left
    m = member(is_3d=False, num_classes=1, frames=32, tta="alternate")
    got = EnsemblePredictor([m], tta=True, clip=None).predict([t]).probability
    per_frame = [sig(-3) if i % 2 else sig(6 * v / 255 - 3) for i, v in enumerate(levels)]
    assert got == pytest.approx(float(np.median(per_frame)), abs=1e-6)
    assert m.model.shapes[0] == (5, 3, 32, 32)  # no [x, hflip x] doubling
    both = EnsemblePredictor([member(is_3d=False, num_classes=1, frames=32)], tta=True, clip=None)
    assert abs(both.predict([t]).probability - got) > 0.05  # the two rules differ on this tube


def test_video_and_member_aggregation(tube):
    dark = np.zeros_like(tube)
    m1, m2 = member("a", weight=1.0), member("b", weight=3.0, clip_len=4)
    ref = {}
    for name, L in (("a", 8), ("b", 4)):
        ref[name] = [np.mean([(f_ref(v) + f_ref(v[..., ::-1])) / 2 for v in views_3d(x, L)]) for x in (tube, dark)]
    p = EnsemblePredictor([m1, m2], clip=None).predict([tube, dark])
    assert p.n_tubes == 2
    for name in ("a", "b"):
        np.testing.assert_allclose(p.tube_probs[name], ref[name], atol=1e-6)
        assert p.member_probs[name] == pytest.approx(np.mean(ref[name]), abs=1e-6)
    assert p.probability == pytest.approx(0.25 * np.mean(ref["a"]) + 0.75 * np.mean(ref["b"]), abs=1e-6)

    p = EnsemblePredictor([m1, m2], clip=None, video_agg="max", member_agg="logit").predict([tube, dark])
    za, zb = (math.log(max(ref[n]) / (1 - max(ref[n]))) for n in ("a", "b"))
    assert p.probability == pytest.approx(sig(0.25 * za + 0.75 * zb), abs=1e-6)


def test_final_clipping():
    bright = np.full((8, 32, 32, 3), 255, np.uint8)  # f = sigmoid(3) = .953 both ways
    assert EnsemblePredictor([member()], clip=(0.01, 0.9)).predict([bright]).probability == 0.9
    p = EnsemblePredictor([member()], clip=None).predict([bright])
    assert p.probability == pytest.approx(sig(3), abs=1e-6) and p.raw_probability == p.probability


def test_each_member_gets_its_own_crop_and_size(tube):
    big = member("big", crop=32)
    small = member("small", crop=16)
    small.crop_fraction = 0.5
    EnsemblePredictor([big, small], tta=False).predict([tube])
    assert big.model.shapes[0][-2:] == (32, 32) and small.model.shapes[0][-2:] == (16, 16)


def test_prepare_tube_centre_crop_and_resize():
    t = np.zeros((2, 256, 256, 3), np.uint8)
    t[:, 16:240, 16:240] = 200  # exactly the centre 224 crop
    x = prepare_tube(t, crop_fraction=224 / 256, crop_size=224)
    assert x.shape == (3, 2, 224, 224) and torch.all(x == 200)
    y = prepare_tube(t, crop_fraction=224 / 256, crop_size=112)
    assert y.shape == (3, 2, 112, 112) and torch.allclose(y, torch.full_like(y, 200.0))
    with pytest.raises(ValueError):
        prepare_tube(np.zeros((4, 8, 8)), crop_fraction=1.0, crop_size=8)


def test_no_tubes_and_nan_output_raise(tube):
    p = EnsemblePredictor([member()])
    with pytest.raises(ValueError, match="no tubes"):
        p.predict([])

    class NaNModel(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    bad = Member("nan", NaNModel(), unit, True, 8, 32, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        EnsemblePredictor([bad]).predict([tube])


def test_check_member_rejects_wrong_head_and_shape():
    class ThreeWay(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 3)

    with pytest.raises(ValueError, match="1 or 2 outputs"):
        check_member(Member("three", ThreeWay(), unit, True, 8, 32, 1.0))

    class Needs64(nn.Module):
        def forward(self, x):
            if x.shape[-1] != 64:
                raise RuntimeError("input too small for the pooling kernel")
            return torch.zeros(x.shape[0], 2)

    with pytest.raises(ValueError, match="fails on an input of shape"):
        check_member(Member("n64", Needs64(), unit, True, 8, 32, 1.0))
    check_member(Member("ok", LeftEdge(), unit, True, 8, 32, 1.0))
