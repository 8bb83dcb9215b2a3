"""Proof that training learns: a registry 3D model (mc3) trained from scratch on CPU on synthetic face tubes.

Fakes come from ``facetubes.synthetic``: another identity's face blended into the face region through a soft mask
whose size and opacity flicker from frame to frame, at half resolution and with a colour mismatch. Tubes are cut
directly around the ground-truth face box (a square following the face, 1.15x its side: extraction crops
the face box with no margin, the slack of a static union box aside), so no detector is needed.
Trained at 32 px (a step costs 0.42x one at 48 px): seeds 0 and 1 both ended at validation AUC 1.0 (196 and 193
CPU-s of training). Every real video has its own identity and each fake shares its original's group, so the group split holds out
identities: validation faces are never seen in training.

The same data and command are used for the figures in benchmarks/RESULTS.md::

    python tests/test_train_learns.py /tmp/synth_tubes          # writes /tmp/synth_tubes/index.csv + tubes
    train3d --data /tmp/synth_tubes --out /tmp/synth_run --arch mc3 --clip-len 8 --crop-size 32 --batch-size 8 \
            --epochs 16 --lr 3e-4 --val-fraction 0.25 --num-workers 1 --device cpu --seed 0      # = LEARN_FLAGS
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import pytest

from facetubes.crops import crop_frame
from facetubes.manifest import TubeRecord, write_index
from facetubes.synthetic import FakeSpec, render
from facetubes.video import VideoWriter

# The configuration of the proof (also the documented command line).
LEARN_FLAGS = ["--arch", "mc3", "--clip-len", "8", "--crop-size", "32", "--batch-size", "8", "--epochs", "16",
               "--lr", "3e-4", "--val-fraction", "0.25", "--num-workers", "1", "--device", "cpu", "--seed", "0"]


def _face_square(box: np.ndarray, scale: float = 1.15) -> np.ndarray:
    x1, y1, x2, y2 = box
    side = scale * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.round([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]).astype(int)


def face_tube(path: Path, *, seed: int, fake: bool, fake_seed: int, n_frames: int, size: int) -> int:
    """Render one synthetic video in memory and write the tube of its face; returns the number of frames."""
    frames, truth = render("one", width=256, height=192, n_frames=n_frames, seed=seed,
                           fake=FakeSpec(seed=fake_seed) if fake else None)
    boxes = truth.boxes["p0"]
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with VideoWriter(path, fps=30, width=size, height=size, threads=1) as w:  # x264 CRF 23, as extraction
        for t, frame in enumerate(frames):
            if np.isnan(boxes[t]).any():
                continue
            w.write(crop_frame(frame, _face_square(boxes[t]), size))
            written += 1
    return written


def make_face_tubes(root: Path, *, n_groups: int = 32, n_frames: int = 24, size: int = 72, seed: int = 0) -> Path:
    """``n_groups`` real face tubes (one identity each) and one fake of each; ``root/index.csv``."""
    recs = []
    for g in range(n_groups):
        video_seed = seed * 1000 + g
        for kind in ("real", "fake"):
            name = f"{kind}_{g:03d}"
            path = root / name / f"{name}_t0.mp4"
            n = face_tube(path, seed=video_seed, fake=kind == "fake", fake_seed=g, n_frames=n_frames, size=size)
            recs.append(TubeRecord(tube=f"{name}_t0", path=path, video=name, source=f"synthetic/{name}.mp4",
                                   track=0, part=0, start_frame=0, stop_frame=n, n_frames=n, fps=30.0, size=size,
                                   mean_prob=1.0, label=int(kind == "fake"), group=f"real_{g:03d}",
                                   folder="synthetic"))
    return write_index(root / "index.csv", recs)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mc3_learns_synthetic_fakes_on_held_out_identities(tmp_path: Path) -> None:
    from train.cli import main

    make_face_tubes(tmp_path / "tubes")
    run = tmp_path / "run"
    t0 = time.monotonic()
    assert main(LEARN_FLAGS + ["--data", str(tmp_path / "tubes"), "--out", str(run), "--no-progress"],
                task="3d") == 0
    minutes = (time.monotonic() - t0) / 60
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    best = max(float(r["val_auc"]) for r in rows)
    last = float(rows[-1]["val_auc"])
    split = list(csv.DictReader((run / "split.csv").open()))
    val_groups = {r["group"] for r in split if r["split"] == "val"}
    assert val_groups and val_groups.isdisjoint({r["group"] for r in split if r["split"] == "train"})
    print(f"\nval AUC per epoch: {[r['val_auc'] for r in rows]}; {minutes:.1f} min")
    assert last >= 0.75, f"final validation AUC {last:.3f} (best {best:.3f}) is not clearly above chance"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write the synthetic face tubes of the learning test")
    ap.add_argument("out", type=Path)
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=72)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = time.monotonic()
    index = make_face_tubes(a.out, n_groups=a.groups, n_frames=a.frames, size=a.size, seed=a.seed)
    print(f"{index}: {2 * a.groups} tubes in {time.monotonic() - t:.1f} s")
