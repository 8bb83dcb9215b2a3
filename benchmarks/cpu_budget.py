"""Where extraction's CPU time goes: each part of ``extract_tubes`` alone, CPU seconds and wall seconds.

    .venv/bin/python benchmarks/cpu_budget.py /tmp/facetubes-bench/bench_1920x1080_300_grain4_0.mp4

Parts (one video, default ExtractConfig): a full decode on one thread and threaded; pass 1's sparse decode with
every 10th frame downscaled to the detector size; MTCNN on those frames (one torch thread, per stage); cropping
and scaling every tube frame (pass 2 without encoding); x264 encoding of the tubes at three presets. CPU time is
``time.process_time`` (all threads of this process), so it adds up across cores.

It ends with lower bounds: the CPU work of the two-pass pipeline, and of a hypothetical single pass that decodes
every frame once, spread perfectly over the machine's cores, as ratios to the two decode floors (threaded serial
decoding, and one single-threaded decode per core in parallel), next to ``extract_tubes`` itself measured in the
same run. A schedule cannot beat its bound, so a bound above a target means that target needs less work, not
better overlap.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
from facetubes.pipeline import analyse, crop_pass, extract_tubes  # noqa: E402
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
    parts: dict[str, tuple[str, float, float]] = {}  # key -> (description, CPU s, wall s), in measuring order

    def row(key: str, name: str, fn) -> None:
        parts[key] = (name, *measure(fn))

    extract_walls = []
    for _ in range(3):
        out = Path(tempfile.mkdtemp())
        extract_walls.append(measure(lambda: extract_tubes(v, out, cfg, detector=det))[1])
        shutil.rmtree(out, ignore_errors=True)
    torch.set_num_threads(1)  # extract_tubes restores the thread count it found
    row("decode_1t", "full decode, 1 thread", lambda: [0 for _ in iter_av_frames(v, threads=1)])
    row("decode", "full decode, threaded", lambda: [0 for _ in iter_av_frames(v)])
    sampled = [f for _, f in iter_av_frames(v, step=10)]
    row("convert", f"every 10th frame to {size[0]}x{size[1]} RGB, already decoded (a single pass's conversion)",
        lambda: [f.to_ndarray(width=size[0], height=size[1], format="rgb24") for f in sampled])
    small: list = []
    row("pass1", f"pass 1: sparse decode + every 10th frame to {size[0]}x{size[1]} RGB, threaded",
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
        row("mtcnn", f"MTCNN on {len(small)} frames, 1 torch thread", lambda: [det.detect(f[None]) for f in small])
    finally:
        nets.pnet, nets.rnet, nets.onet, mtcnn.area_resize, mtcnn.area_crops = originals

    plans = [p for _, p in analysis.plans]
    crops: list[list] = [[] for _ in plans]
    row("pass2_kept", f"pass 2 without encoding: decode + crop + scale {len(plans)} tubes, threaded",
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
        row(f"x264_{preset}", f"x264 {preset}: {sum(map(len, crops))} frames {cfg.size}px {cfg.pix_fmt}, 1 thread per tube", encode)

    print(f"{a.video.name}: {info.width}x{info.height}, {info.n_frames} frames\n")
    print("| part | CPU s | wall s |\n|---|---:|---:|")
    for name, cpu, wall in parts.values():
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")
    print(f"| (pass 2 again, crops discarded: decode + crop + scale) | {crops_only[0]:.2f} | {crops_only[1]:.2f} |")
    print("\nMTCNN by stage, CPU s: " + ", ".join(f"{k} {t:.2f}" for k, t in stages.items()))
    print_bounds(parts, crops_only[0], statistics.median(extract_walls))


def print_bounds(parts: dict[str, tuple[str, float, float]], pass2_cpu: float, extract_wall: float) -> None:
    """The lower bounds described in the module docstring, from the parts measured above."""
    cpu = {key: c for key, (_, c, _) in parts.items()}
    decode_1t, convert, pass1, mtcnn_cpu, encode = (cpu[k] for k in ("decode_1t", "convert", "pass1", "mtcnn",
                                                                      "x264_veryfast"))
    crop_scale = max(0.0, pass2_cpu - cpu["decode"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    floor_serial, floor_parallel = parts["decode"][2], decode_1t / cores
    two_pass = pass1 + mtcnn_cpu + pass2_cpu + encode
    one_pass = decode_1t + convert + mtcnn_cpu + crop_scale + encode
    print(f"\nLower bounds on {cores} cores (CPU work / cores). Floors: serial threaded decode {floor_serial:.2f} s, "
          f"{cores} single-threaded decodes in parallel {floor_parallel:.2f} s per video.\n")
    print("| schedule | CPU s | wall s | / serial floor | / parallel floor |\n|---|---:|---:|---:|---:|")
    for name, work in (("two passes (this pipeline), perfect overlap", two_pass),
                       ("one pass, every frame decoded once, perfect overlap (hypothetical)", one_pass)):
        wall = work / cores
        print(f"| {name} | {work:.2f} | {wall:.2f} | {wall / floor_serial:.2f}x | {wall / floor_parallel:.2f}x |")
    print(f"| `extract_tubes` measured (median of 3) | | {extract_wall:.2f} | {extract_wall / floor_serial:.2f}x | "
          f"{extract_wall / floor_parallel:.2f}x |")


if __name__ == "__main__":
    from facetubes.errors import FacetubesError

    try:
        main()
    except FacetubesError as e:  # a missing or unreadable video: one line, no traceback
        sys.exit(f"error: {e}")
