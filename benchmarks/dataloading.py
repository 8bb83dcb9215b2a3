"""Training input pipeline speed: clips per second per data-loading worker, set against the model's step time.

    .venv/bin/python benchmarks/dataloading.py                       # I3D: 64 x 224 clips from 256-px tubes
    .venv/bin/python benchmarks/dataloading.py --arch mc3            # 32 x 112 clips
    .venv/bin/python benchmarks/dataloading.py --workers 1 2 4 --device cuda

Tubes are written as ``facetubes extract`` writes them (256 px, x264 CRF 23, yuv444p, veryfast, 30 fps) from
synthetic face videos, ``--frames`` long. Part 1 times ``TubeDataset`` items in this process (one worker's work):
decode of the random window only (``read_frames`` seeks), then the training augmentation (torchvision v2 on a
``Video``: random resized crop + flip + the published photometric ops at their probabilities), reported separately.
Part 2 runs a ``DataLoader`` with N worker processes over the same data. Part 3 times the model's training step
(forward + backward + AdamW, batch ``--batch``) at the same clip shape on ``--device``, as ``train3d`` runs it
(``benchmarks/train_step.py``'s step: precision of ``--amp auto``, GradScaler for fp16, channels_last_3d and
``cudnn.benchmark`` on CUDA, TF32 off), so the table says how many workers keep the model busy. Prints Markdown
rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetubes.crops import crop_frame  # noqa: E402
from facetubes.manifest import TubeRecord  # noqa: E402
from facetubes.synthetic import render  # noqa: E402
from facetubes.video import VideoWriter, read_frames  # noqa: E402
from train.augment import apply_clip, train_transform  # noqa: E402
from train.config import resolve_config  # noqa: E402
from train.data import TubeDataset, collate  # noqa: E402


def write_tubes(root: Path, n_tubes: int, n_frames: int, size: int = 256) -> list[TubeRecord]:
    """Face tubes cut from synthetic videos, encoded with the extraction defaults."""
    recs = []
    for k in range(n_tubes):
        frames, truth = render("one", width=480, height=360, n_frames=n_frames, seed=100 + k)
        boxes = truth.boxes["p0"]
        path = root / f"tube{k}.mp4"
        with VideoWriter(path, fps=30, width=size, height=size, crf=23, pix_fmt="yuv444p", preset="veryfast") as w:
            last = None
            for t, frame in enumerate(frames):
                if not np.isnan(boxes[t]).any():
                    x1, y1, x2, y2 = boxes[t]
                    side = 1.3 * max(x2 - x1, y2 - y1)
                    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                    last = np.round([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]).astype(int)
                w.write(crop_frame(frame, last if last is not None else np.array([0, 0, size, size]), size))
        recs.append(TubeRecord(tube=path.stem, path=path, video=path.stem, source="", track=0, part=0,
                               start_frame=0, stop_frame=n_frames, n_frames=n_frames, fps=30.0, size=size,
                               mean_prob=1.0, label=k % 2, group=path.stem))
    return recs


def per_worker(ds: TubeDataset, cfg, crop: int, n: int) -> dict[str, float]:
    """Clips/s of one process: whole item, and decode / augment separately."""
    rng = np.random.default_rng(0)
    ds[(0, 1)]  # warm-up (codec, kernels)
    keys = [(int(rng.integers(len(ds))), int(rng.integers(2**62))) for _ in range(n)]
    t0 = time.perf_counter()
    for key in keys:
        ds[key]
    whole = (time.perf_counter() - t0) / n
    dec, aug = [], []
    tf = train_transform(cfg, crop)
    for i, seed in keys:
        rec = ds.records[i]
        idx = ds.frame_indices(rec, np.random.default_rng(seed))
        t0 = time.perf_counter()
        frames = read_frames(rec.path, np.unique(idx), threads=1)
        dec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        apply_clip(tf, frames, seed)
        aug.append(time.perf_counter() - t0)
    return {"item_s": whole, "decode_s": statistics.mean(dec), "augment_s": statistics.mean(aug)}


def loader_rate(ds: TubeDataset, workers: int, batch: int, n_batches: int) -> float:
    """Clips/s delivered by a DataLoader with ``workers`` processes (after the first batch)."""
    rng = np.random.default_rng(1)
    keys = [(int(rng.integers(len(ds))), int(rng.integers(2**62))) for _ in range(batch * (n_batches + 1))]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=keys, collate_fn=collate,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = sum(len(b) for b in it)
    return n / (time.perf_counter() - t0)


def model_step(arch: str, clip: int, crop: int, batch: int, device: str, repeat: int) -> tuple[float, str]:
    """(seconds per training step, precision) at ``(batch, 3, clip, crop, crop)``, the step ``train3d`` runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step import Step, auto_mode, train3d_settings

    dev = torch.device(device)
    train3d_settings(dev)
    mode = auto_mode(dev)
    step = Step(arch, batch, clip, crop, mode, dev, compile_=False)
    step()
    step()  # warm-up: cuDNN autotuning (cudnn.benchmark), optimizer state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="i3d")
    ap.add_argument("--frames", type=int, default=150, help="frames per tube (DFDC tubes: 64..300)")
    ap.add_argument("--tubes", type=int, default=4)
    ap.add_argument("--items", type=int, default=12, help="items timed in part 1")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="DataLoader worker counts of part 2")
    ap.add_argument("--batch", type=int, default=2, help="model batch of part 3 (small: CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-model", action="store_true")
    a = ap.parse_args()

    cfg = resolve_config(task="3d", arch=a.arch)
    import models3d

    preset = models3d.get_preset(a.arch)
    clip, crop = preset.clip_len, preset.crop_size
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}; {a.arch}: {clip} x {crop} px clips from 256-px tubes "
          f"of {a.frames} frames")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recs = write_tubes(Path(tmp), a.tubes, a.frames)
        print(f"# wrote {a.tubes} tubes in {time.perf_counter() - t0:.1f} s")
        ds = TubeDataset(recs, mode="clip", clip_len=clip, transform=train_transform(cfg, crop), train=True)
        r = per_worker(ds, cfg, crop, a.items)
        print("| measurement | value |\n|---|---|")
        print(f"| one worker: decode {clip}-frame window (256 px) | {1000 * r['decode_s']:.0f} ms |")
        print(f"| one worker: augment (RRC {crop} + flip + photometric) | {1000 * r['augment_s']:.0f} ms |")
        print(f"| one worker: whole item | {1000 * r['item_s']:.0f} ms = **{1 / r['item_s']:.1f} clips/s** |")
        for w in a.workers:
            rate = loader_rate(ds, w, batch=max(a.batch, 2), n_batches=max(2, 2 * w))
            print(f"| DataLoader, {w} worker(s) | {rate:.1f} clips/s |")
        if not a.skip_model:
            s, mode = model_step(a.arch, clip, crop, a.batch, a.device, a.repeat)
            need = (a.batch / s) * r["item_s"]
            print(f"| {a.arch} train step on {a.device} ({mode}), batch {a.batch} ({clip}x{crop}x{crop}) | "
                  f"{s:.2f} s = {a.batch / s:.2f} clips/s |")
            print(f"| workers needed to keep it busy | {need:.2f} |")


if __name__ == "__main__":
    main()
