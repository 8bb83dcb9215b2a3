"""Decode and random-access speed of facetubes.video, and what the tube GOP length costs and buys.

    .venv/bin/python benchmarks/decode.py                 # 1080p source, 90 frames; 256 px tubes, 300 frames
    .venv/bin/python benchmarks/decode.py --frames 300    # the DFDC length (slower to generate)
    .venv/bin/python benchmarks/decode.py --source /tmp/facetubes-bench/bench_1920x1080_300_grain4_0.mp4

Part 1, a synthetic 1920x1080 H.264 source: decode only, decode + full-size RGB, decode + RGB downscaled inside
swscale (what the detector pass uses), every 10th frame only. Part 2, a 256x256 tube written with different GOP
lengths (keyframe intervals): file size, and the time ``read_frames`` needs for a random 64-frame training
window (it seeks to the keyframe before the window). Prints a Markdown table for benchmarks/RESULTS.md.
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
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetubes import synthetic, video  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time in seconds over ``repeat`` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def consume(it) -> int:
    n = 0
    for _ in it:
        n += 1
    return n


def source_rows(path: Path, n: int, repeat: int, threads: int) -> list[tuple[str, float]]:
    small = (480, 270)
    cases = [
        ("decode only (no conversion)", lambda: consume(video.iter_av_frames(path, threads=threads))),
        ("decode + RGB 1920x1080, every frame", lambda: consume(video.iter_frames(path, threads=threads))),
        ("decode + RGB 480x270 (swscale), every frame",
         lambda: consume(video.iter_frames(path, size=small, threads=threads))),
        ("decode + RGB 1920x1080, every 10th frame",
         lambda: consume(video.iter_frames(path, step=10, threads=threads))),
        ("decode + RGB 480x270, every 10th frame (detector pass)",
         lambda: consume(video.iter_frames(path, step=10, size=small, threads=threads))),
        ("decode + RGB 480x270, every 10th frame, 1 thread",
         lambda: consume(video.iter_frames(path, step=10, size=small, threads=1))),
        ("decode only, 1 thread", lambda: consume(video.iter_av_frames(path, threads=1))),
        ("sparse decode + RGB 480x270, every 10th frame (extraction's pass 1)",
         lambda: consume(video.iter_frames(path, step=10, size=small, threads=threads, sparse=True))),
        ("sparse decode + RGB 480x270, every 10th frame, 1 thread",
         lambda: consume(video.iter_frames(path, step=10, size=small, threads=1, sparse=True))),
    ]
    return [(name, timed(fn, repeat) / n * 1000) for name, fn in cases]


def tube_rows(folder: Path, frames: list[np.ndarray], repeat: int) -> list[tuple[str, float, float, float]]:
    rng = np.random.default_rng(0)
    n = len(frames)
    starts = rng.integers(0, n - 64, size=12)
    rows = []
    for gop in (None, 64, 32, 16):
        path = folder / f"tube_gop{gop}.mp4"
        video.write_video(path, frames, fps=30, crf=23, pix_fmt="yuv444p", gop=gop)
        size_kb = path.stat().st_size / 1024
        window = timed(lambda: [video.read_frames(path, range(s, s + 64), threads=1) for s in starts], repeat)
        single = timed(lambda: [video.read_frames(path, [int(s) + 32], threads=1) for s in starts], repeat)
        rows.append((f"gop {gop or 'x264 default (250)'}", size_kb, window / len(starts) * 1000,
                     single / len(starts) * 1000))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=90, help="frames in the 1080p source (default 90)")
    ap.add_argument("--tube-frames", type=int, default=300, help="frames in the 256 px tube (default 300)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case; the median is reported")
    ap.add_argument("--threads", type=int, default=0, help="decoder threads (0 = FFmpeg's choice)")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the generated videos in")
    ap.add_argument("--source", type=Path, default=None,
                    help="measure part 1 on this video instead (e.g. a benchmarks/extract.py input)")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="facetubes-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = args.source or folder / f"source_1080p_{args.frames}.mp4"
    if args.source:
        args.frames = video.probe(source).n_frames
    elif not source.exists():
        print(f"generating {source} ...", file=sys.stderr)
        synthetic.make_video(source, "two", width=1920, height=1080, n_frames=args.frames, crf=23, seed=1)
    tube_frames = list(synthetic.render("one", width=256, height=256, n_frames=args.tube_frames, seed=2)[0])

    print(f"## facetubes.video decode ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"PyAV {video.av.__version__})\n")
    mbps = source.stat().st_size * 8 / (args.frames / 30) / 1e6
    print(f"Source: {source.name}, {args.frames} frames, {mbps:.1f} Mbit/s at 30 fps, threads={args.threads}.\n")
    print("| case | ms per source frame |\n|---|---:|")
    for name, ms in source_rows(source, args.frames, args.repeat, args.threads):
        print(f"| {name} | {ms:.2f} |")
    print(f"\nTube: 256x256 yuv444p CRF 23, {args.tube_frames} frames; random 64-frame windows, 1 thread.\n")
    print("| keyframe interval | size KiB | ms per 64-frame window | ms per single frame |\n|---|---:|---:|---:|")
    for name, kb, window_ms, single_ms in tube_rows(folder, tube_frames, args.repeat):
        print(f"| {name} | {kb:.0f} | {window_ms:.1f} | {single_ms:.1f} |")


if __name__ == "__main__":
    from facetubes.errors import FacetubesError

    try:
        main()
    except FacetubesError as e:  # a missing or unreadable video: one line, no traceback
        sys.exit(f"error: {e}")
