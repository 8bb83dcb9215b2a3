"""Helpers shared by the training tests: tiny tube MP4s + index.csv, written directly (no detector).

Other ``test_train_*`` modules import these functions (``from test_train_fixtures import ...``). The tests at the
bottom check the helpers themselves, so a broken helper fails loudly instead of making other tests vacuous.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from facetubes.manifest import TubeRecord, read_index, write_index
from facetubes.video import VideoWriter, read_frames

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
