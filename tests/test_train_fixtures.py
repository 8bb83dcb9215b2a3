"""Helpers shared by the training tests: tiny tube MP4s + index.csv, written directly (no detector).

Other ``test_train_*`` modules import these functions (``from test_train_fixtures import ...``). The tests at the
bottom check the helpers themselves, so a broken helper fails loudly instead of making other tests vacuous.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

import models3d
from facetubes.manifest import TubeRecord, read_index, write_index
from facetubes.video import VideoWriter, read_frames
from models3d.base import ClipClassifier, check_input

TESTS_DIR = Path(__file__).resolve().parent

PATCH = (0.35, 0.65)  # fraction of the frame covered by the "manipulated" patch of a fake tube


def tube_frames(n_frames: int, size: int, *, fake: bool, seed: int) -> np.ndarray:
    """``(n_frames, size, size, 3)`` uint8: a smooth random texture drifting over time; fakes carry a flickering,
    colour-shifted square in the middle (an easy signal that a small 3D CNN learns in a few steps)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, size=(4, 4, 3))
    yy, xx = np.mgrid[0:size, 0:size] / size * 3
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for t in range(n_frames):
        shift = t * 0.05
        img = np.zeros((size, size, 3))
        for c in range(3):
            img[..., c] = base[0, 0, c] + 40 * np.sin(xx + shift + c) + 40 * np.cos(yy * 1.3 - shift + c)
        if fake:
            a, b = (int(v * size) for v in PATCH)
            flicker = 60 + 50 * (t % 2)
            img[a:b, a:b] += [flicker, -flicker / 2, 0]
        frames[t] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return frames


def write_tube(path: Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Encode ``(T, H, W, 3)`` uint8 frames as an H.264 MP4 (near-lossless, one thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, width=frames.shape[2], height=frames.shape[1], crf=12,
                     pix_fmt="yuv444p", threads=1) as w:
        for f in frames:
            w.write(f)
    return path


def record(path: Path, *, tube: str, video: str, label: Optional[int], group: str, n_frames: int, size: int,
           split: str = "", folder: str = "part_0") -> TubeRecord:
    return TubeRecord(tube=tube, path=path, video=video, source=f"/videos/{folder}/{video}.mp4", track=0, part=0,
                      start_frame=0, stop_frame=n_frames, n_frames=n_frames, fps=25.0, size=size, mean_prob=0.99,
                      label=label, group=group, split=split, folder=folder)


def make_tube_set(root: Path, *, n_groups: int = 6, fakes_per_group: int = 1, size: int = 32, n_frames: int = 12,
                  seed: int = 0, folders: int = 1) -> Path:
    """``root/index.csv`` + one real and ``fakes_per_group`` fake tubes per group (a fake shares its original's
    group, as ``facetubes extract --labels`` writes). Group ``g`` comes from folder ``part_{g % folders}``.
    Returns the index path."""
    recs = []
    for g in range(n_groups):
        folder = f"part_{g % folders}"
        real = f"real{g:02d}"
        p = write_tube(root / real / f"{real}_t0.mp4", tube_frames(n_frames, size, fake=False, seed=seed * 100 + g))
        recs.append(record(p, tube=f"{real}_t0", video=real, label=0, group=real, n_frames=n_frames, size=size,
                           folder=folder))
        for k in range(fakes_per_group):
            fake = f"fake{g:02d}{k}"
            p = write_tube(root / fake / f"{fake}_t0.mp4",
                           tube_frames(n_frames, size, fake=True, seed=seed * 100 + g))
            recs.append(record(p, tube=f"{fake}_t0", video=fake, label=1, group=real, n_frames=n_frames, size=size,
                               folder=folder))
    return write_index(root / "index.csv", recs)


# ----------------------------------------------------------------------------------------------------------------
# a tiny stand-in network, registered in the models3d registry under "tiny3d" / "tiny2d"
#
# The loop tests need many short runs; a registry model at its smallest (mc3: 11.5 M parameters, ~140 MB of
# last.pt with optimizer state) makes each run seconds long on 2 cores. This stand-in follows the same
# ClipClassifier contract (forward_features / forward_head / reset_classifier / preset) and goes through
# models3d.create_model and models3d.save_checkpoint like any registered model. Real registry models are
# trained too: mc3 in test_train_loop.py and the learning test, seresnext50 in the slow 2D test.


class TinyNet(ClipClassifier):
    """Two conv-BN-ReLU layers, global average pool, dropout, linear head: ``(B, 3, [T,] H, W) -> (B, K)``."""

    classifier_name = "fc"

    def __init__(self, *, is_3d: bool, num_classes: int = 2, dropout: float = 0.2) -> None:
        preset = models3d.Preset(clip_len=4 if is_3d else 1, crop_size=16, value_range=(0.0, 1.0),
                                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), is_3d=is_3d)
        super().__init__(arch="tiny3d" if is_3d else "tiny2d", preset=preset, num_features=8,
                         num_classes=num_classes)
        conv, bn = (nn.Conv3d, nn.BatchNorm3d) if is_3d else (nn.Conv2d, nn.BatchNorm2d)
        self.features = nn.Sequential(conv(3, 8, 3, padding=1), bn(8), nn.ReLU(),
                                      conv(8, 8, 3, stride=2, padding=1), bn(8), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.fc = self._new_classifier(num_classes)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        check_input(x, 5 if self.preset.is_3d else 4, self.arch)
        return self.features(x).flatten(2).mean(dim=2)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features))


def register_tiny_models() -> None:
    """Register ``tiny3d`` and ``tiny2d`` once per process."""
    if "tiny3d" in models3d.list_models():
        return
    for is_3d, name in ((True, "tiny3d"), (False, "tiny2d")):
        def build(*, num_classes: int = 2, dropout: float = 0.2, _3d: bool = is_3d) -> TinyNet:
            return TinyNet(is_3d=_3d, num_classes=num_classes, dropout=dropout)

        models3d.register_model(name, preset=build().preset, description="test stand-in")(build)


register_tiny_models()


def launcher_script(path: Path) -> Path:
    """A script that registers the stand-ins and runs ``train.cli.main`` (for subprocesses and torchrun)."""
    path.write_text(f"import sys\nsys.path[:0] = [{str(TESTS_DIR.parent)!r}, {str(TESTS_DIR)!r}]\n"
                    "from test_train_fixtures import register_tiny_models\nregister_tiny_models()\n"
                    "from train.cli import main\nsys.exit(main())\n")
    return path


# ----------------------------------------------------------------------------------------------------------------
# the helpers work


def test_make_tube_set_writes_a_readable_index(tmp_path: Path) -> None:
    index = make_tube_set(tmp_path, n_groups=2, fakes_per_group=2, size=32, n_frames=8)
    recs = read_index(index)
    assert [r.label for r in recs] == [0, 1, 1, 0, 1, 1]
    assert {r.group for r in recs} == {"real00", "real01"}
    frames = read_frames(recs[1].path, [0, 7])
    assert frames.shape == (2, 32, 32, 3)
    a, b = (int(v * 32) for v in PATCH)
    real = read_frames(recs[0].path, [0])[0].astype(int)
    fake = frames[0].astype(int)
    # the fake differs from its original inside the patch (red up) and hardly outside it
    assert (fake[a:b, a:b, 0] - real[a:b, a:b, 0]).mean() > 30
    assert np.abs(fake[:a, :, :] - real[:a, :, :]).mean() < 6


def test_tiny_stand_in_follows_the_models3d_contract(tmp_path: Path) -> None:
    for name, shape in (("tiny3d", (2, 3, 4, 16, 16)), ("tiny2d", (2, 3, 16, 16))):
        model = models3d.create_model(name, num_classes=1).eval()
        x = torch.rand(*shape)
        assert model(x).shape == (2, 1) and model.forward_features(x).shape == (2, 8)
        models3d.save_checkpoint(tmp_path / f"{name}.pt", model)
        again = models3d.create_model(name, weights=tmp_path / f"{name}.pt").eval()
        assert again.num_classes == 1 and torch.equal(again(x), model(x))
