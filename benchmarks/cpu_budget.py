"""Where extraction's CPU time goes: each part of ``extract_tubes`` alone, CPU seconds and wall seconds.

    .venv/bin/python benchmarks/cpu_budget.py /tmp/facetubes-bench/bench_1920x1080_300_grain4_0.mp4

Parts (one video, default ExtractConfig): a full decode on one thread and threaded; pass 1's sparse decode with
every 10th frame downscaled to the detector size; MTCNN on those frames (one torch thread, per stage); cropping
and scaling every tube frame (pass 2 without encoding); x264 encoding of the tubes at three presets. CPU time is
``time.process_time`` (all threads of this process), so it adds up across cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import facetubes.mtcnn as mtcnn  # noqa: E402
from facetubes import ExtractConfig  # noqa: E402
from facetubes.detect import detector_scale, make_detector, scaled_size  # noqa: E402
from facetubes.pipeline import analyse, crop_pass  # noqa: E402
from facetubes.video import VideoWriter, iter_av_frames, iter_frames  # noqa: E402


def measure(fn) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = ExtractConfig()
    v = str(a.video)
    det = make_detector("cpu")
    analysis = analyse(v, cfg, det)
    info = analysis.info
    size = scaled_size(info.width, info.height, detector_scale(info.width, info.height, min_face=cfg.min_face,
                                                               detector_min_face=det.min_face_size))
    rows: list[tuple[str, float, float]] = []

    def row(name: str, fn) -> None:
        rows.append((name, *measure(fn)))

    row("full decode, 1 thread", lambda: [0 for _ in iter_av_frames(v, threads=1)])
    row("full decode, threaded", lambda: [0 for _ in iter_av_frames(v)])
    small: list = []
    row(f"pass 1: sparse decode + every 10th frame to {size[0]}x{size[1]} RGB, threaded",
        lambda: small.extend(f for _, f in iter_frames(v, step=10, size=size, sparse=True)))

    stages: dict[str, float] = {}

    def timed_stage(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.process_time() - t0
        return wrapper

    nets = det.nets
    originals = (nets.pnet, nets.rnet, nets.onet, mtcnn.area_resize, mtcnn.area_crops)
    nets.pnet, nets.rnet, nets.onet = (timed_stage(n, f) for n, f in zip(("P-Net", "R-Net", "O-Net"), originals))
    mtcnn.area_resize = timed_stage("resampling", mtcnn.area_resize)
    mtcnn.area_crops = timed_stage("resampling", mtcnn.area_crops)
    try:
        row(f"MTCNN on {len(small)} frames, 1 torch thread", lambda: [det.detect(f[None]) for f in small])
    finally:
        nets.pnet, nets.rnet, nets.onet, mtcnn.area_resize, mtcnn.area_crops = originals

    plans = [p for _, p in analysis.plans]
    crops: list[list] = [[] for _ in plans]
    row(f"pass 2 without encoding: decode + crop + scale {len(plans)} tubes, threaded",
        lambda: crop_pass(v, info, plans, cfg.size, lambda k, i, f: crops[k].append(f), pix_fmt=cfg.pix_fmt))
    crops_only = measure(lambda: crop_pass(v, info, plans, cfg.size, lambda k, i, f: None, pix_fmt=cfg.pix_fmt))
    work = Path(tempfile.mkdtemp())
    for preset in ("veryfast", "superfast", "ultrafast"):
        def encode() -> None:
            for k, frames in enumerate(crops):
                with VideoWriter(work / f"t{k}.mp4", fps=info.fps_fraction, width=cfg.size, height=cfg.size,
                                 crf=cfg.crf, pix_fmt=cfg.pix_fmt, preset=preset, threads=1) as w:
                    for f in frames:
                        w.write_frame(av.VideoFrame.from_ndarray(f.to_ndarray(), format=cfg.pix_fmt))
        row(f"x264 {preset}: {sum(map(len, crops))} frames {cfg.size}px {cfg.pix_fmt}, 1 thread per tube", encode)

    print(f"{a.video.name}: {info.width}x{info.height}, {info.n_frames} frames\n")
    print("| part | CPU s | wall s |\n|---|---:|---:|")
    for name, cpu, wall in rows:
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")
    print(f"| (pass 2 again, crops discarded: decode + crop + scale) | {crops_only[0]:.2f} | {crops_only[1]:.2f} |")
    print("\nMTCNN by stage, CPU s: " + ", ".join(f"{k} {t:.2f}" for k, t in stages.items()))


if __name__ == "__main__":
    from facetubes.errors import FacetubesError

    try:
        main()
    except FacetubesError as e:  # a missing or unreadable video: one line, no traceback
        sys.exit(f"error: {e}")
