"""Extraction speed and memory against the decode floor, measured in the same run.

For each synthetic 1920x1080, 300-frame, 30 fps video with two faces:
- decode floor: PyAV decodes every frame (threaded), no conversion;
- decode+convert: the pipeline's detection pass with a detector that finds nothing (decode + downscaled RGB);
- full extraction (``extract_tubes``, default config) with its own timing split;
and, in separate processes, the peak RSS of extraction for a 10 s and a 60 s video.

``--batch 1,2`` also measures the batch job (``extract_batch``, as ``facetubes extract -j W`` runs it) per video,
for each number of worker processes W, over the videos repeated ``--batch-copies`` times: the time for all of them
minus the time for the first half, divided by the number in the second half, so process start-up and model loading (paid once per job) cancel out. Its floor is
the faster of two ways to decode the same files with PyAV: one after another with FFmpeg's threads, or W
processes in parallel, one file each.

    .venv/bin/python benchmarks/extract.py                      # CPU, 3 videos
    .venv/bin/python benchmarks/extract.py --device cuda --videos 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facetubes import ExtractConfig  # noqa: E402
from facetubes.pipeline import detect_video, extract_tubes  # noqa: E402
from facetubes.video import probe  # noqa: E402


class NullDetector:
    """Finds nothing: isolates decoding and frame conversion from detection."""

    name = "null"
    min_face_size = 20.0

    def detect(self, frames: np.ndarray):
        return [(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)) for _ in frames]


def decode_floor(path: Path) -> float:
    import av

    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0


def _decode_one(path: str) -> None:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            pass


def batch_floor(paths: list[Path], workers: int) -> float:
    """Seconds per video to decode ``paths`` (no conversion): the faster of serial threaded decoding and
    ``workers`` parallel processes (pool started and warmed before the clock starts)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    t0 = time.perf_counter()
    for p in paths:
        _decode_one(str(p))
    serial = (time.perf_counter() - t0) / len(paths)
    if workers <= 1:
        return serial
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_decode_one, [str(paths[0])] * workers))  # start-up and imports off the clock
        t0 = time.perf_counter()
        list(pool.map(_decode_one, [str(p) for p in paths]))
        parallel = (time.perf_counter() - t0) / len(paths)
    return min(serial, parallel)


def batch_per_video(paths: list[Path], work: Path, cfg: ExtractConfig, workers: int, copies: int = 1) -> float:
    """Steady-state seconds per video of ``extract_batch``: (T(all) - T(first half)) / (second half).
    ``copies`` > 1 repeats the inputs under other names (file copies) for a longer, less noisy batch."""
    import shutil

    from facetubes.batch import extract_batch

    links = work / "batch_inputs"
    links.mkdir(exist_ok=True)
    repeated = []
    for c in range(copies):
        for p in paths:
            link = links / f"{p.stem}_copy{c}{p.suffix}"
            if not link.exists():
                shutil.copyfile(p, link)
            repeated.append(link)
    paths = repeated
    half = len(paths) // 2

    def run(subset: list[Path]) -> float:
        out = work / f"batch_out_{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        extract_batch(subset, out, cfg, workers=workers, progress=False)
        return time.perf_counter() - t0

    return (run(paths) - run(paths[:half])) / (len(paths) - half)


def ab_test(videos: list[Path], work: Path, cfg: ExtractConfig, detector, rounds: int, attr: str,
            modes: dict) -> dict[str, list[float]]:
    """Extract every video ``rounds`` times per mode, alternating modes video by video (so drifting load hits both
    alike), with ``facetubes.pipeline.<attr>`` set to each mode's value; restores the attribute."""
    import facetubes.pipeline as pipeline

    original = getattr(pipeline, attr)
    times: dict[str, list[float]] = {k: [] for k in modes}
    try:
        for _ in range(rounds):
            for v in videos:
                for label, value in modes.items():
                    setattr(pipeline, attr, value)
                    t0 = time.perf_counter()
                    extract_tubes(v, work / "out", cfg, detector=detector)
                    times[label].append(time.perf_counter() - t0)
    finally:
        setattr(pipeline, attr, original)
    return times


def make_inputs(folder: Path, n: int, n_frames: int, width: int, height: int, grain: float = 0.0) -> list[Path]:
    """Synthetic two-face videos. ``grain`` adds per-frame Gaussian sensor noise (sigma in grey levels), which
    brings the bitrate from ~0.8 Mbit/s (clean synthetic) towards camera footage such as DFDC (~3 Mbit/s)."""
    from facetubes.synthetic import make_video, render
    from facetubes.video import VideoWriter

    paths = []
    for i in range(n):
        tag = f"_grain{grain:g}" if grain else ""
        p = folder / f"bench_{width}x{height}_{n_frames}{tag}_{i}.mp4"
        if not p.exists():
            if not grain:
                make_video(p, "two", width=width, height=height, n_frames=n_frames, fps=30, seed=i, crf=23)
            else:
                frames, _ = render("two", width=width, height=height, n_frames=n_frames, fps=30, seed=i)
                rng = np.random.default_rng(i)
                noise = rng.normal(0, grain, (8, height, width, 3)).astype(np.float32)
                with VideoWriter(p, fps=30, width=width, height=height, crf=23) as w:
                    for t, f in enumerate(frames):
                        w.write(np.clip(f + noise[t % 8], 0, 255).astype(np.uint8))
        paths.append(p)
    return paths


def peak_rss_mb(video: Path, out: Path, device: str) -> float:
    """Peak RSS of a fresh process extracting one video (MiB), from /proc VmHWM (ru_maxrss would include the
    high-water mark inherited from this parent process through fork)."""
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from facetubes import ExtractConfig\nfrom facetubes.pipeline import extract_tubes\n"
        "extract_tubes(%r, %r, ExtractConfig(device=%r))\n"
        "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    ) % (str(ROOT), str(video), str(out), device)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None, help="folder for the generated inputs (kept between runs)")
    ap.add_argument("--grain", type=float, default=0.0, help="sensor noise sigma for DFDC-like bitrates (e.g. 4)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 10 s vs 60 s RSS measurement")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--batch", default="", metavar="W,W",
                    help="also time the batch job per video with these worker counts (use >= 4 videos)")
    ap.add_argument("--batch-copies", type=int, default=2, metavar="C",
                    help="with --batch: repeat the videos C times (default 2) for a longer batch")
    ap.add_argument("--skip-single", action="store_true", help="skip the per-video table (floor, extraction, timing split)")
    ap.add_argument("--compare-prefetch", type=int, default=0, metavar="ROUNDS",
                    help="A/B: extract every video ROUNDS times with and without the decode thread, alternating")
    ap.add_argument("--compare-sparse", type=int, default=0, metavar="ROUNDS",
                    help="A/B: the same, with and without sparse decoding in pass 1")
    a = ap.parse_args()

    work = Path(a.work or tempfile.gettempdir()) / "facetubes-bench"
    work.mkdir(parents=True, exist_ok=True)
    videos = make_inputs(work, a.videos, 300, 1920, 1080, a.grain)
    cfg = ExtractConfig(device=a.device)
    from facetubes.detect import make_detector

    detector = make_detector(a.device)
    rows = []
    result: dict = {"device": a.device}
    for w in [int(x) for x in a.batch.split(",") if x]:
        per_video = batch_per_video(videos, work, cfg, w, a.batch_copies)
        floor = batch_floor(videos, w)
        print(f"batch, {w} worker(s): {per_video:.2f} s per video, floor {floor:.2f} s per video "
              f"= {per_video / floor:.2f}x")
        result.setdefault("batch", {})[w] = {"per_video": per_video, "floor": floor}
    for v in ([] if a.skip_single else videos):
        info = probe(v)
        floor = decode_floor(v)
        t0 = time.perf_counter()
        detect_video(v, info, cfg, NullDetector())
        conv = time.perf_counter() - t0
        out = work / "out"
        t0 = time.perf_counter()
        m = extract_tubes(v, out, cfg, detector=detector)
        total = time.perf_counter() - t0
        t = m["timings"]
        rows.append(dict(video=v.name, floor=floor, decode_convert=conv, total=total,
                         # single decode (default): detection and crop+encode run inside one decoding pass
                         decode_detect=t.get("decode_detect_s", t.get("detect_s", 0.0)),
                         crop_encode=t["crop_encode_s"],
                         tubes=len(m["tubes"]), scale=m["detector"]["scale"]))
    if rows:
        med = {k: float(np.median([r[k] for r in rows])) for k in ("floor", "decode_convert", "total", "decode_detect",
                                                                   "crop_encode")}
        detect_only = med["decode_detect"] - med["decode_convert"]
        mbps = np.median([v.stat().st_size * 8 / 10 / 1e6 for v in videos])
        print(f"device={a.device}  videos={len(rows)} (1920x1080, 300 frames, 30 fps, 2 faces, {mbps:.1f} Mbit/s)")
        print("| video | tubes | decode floor s | extract s | ratio | pass 1 (decode+detect) s | pass 2 (decode+crop+encode) s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['video']} | {r['tubes']} | {r['floor']:.2f} | {r['total']:.2f} | {r['total'] / r['floor']:.2f}x "
                  f"| {r['decode_detect']:.2f} | {r['crop_encode']:.2f} |")
        print(f"\nmedian: floor {med['floor']:.2f} s, extract {med['total']:.2f} s = "
              f"{med['total'] / med['floor']:.2f}x the decode floor")
        print(f"where the time goes (median): decode+downscale pass {med['decode_convert']:.2f} s, "
              f"detection {detect_only:.2f} s, second decode+crop+encode {med['crop_encode']:.2f} s")
        result.update(rows=rows, median=med, detect_only=detect_only)
    import facetubes.pipeline as pipeline

    no_thread = lambda it, depth=8: iter(it)  # noqa: E731
    comparisons = [  # (flag value, title, pipeline attribute, {label: value})
        (a.compare_prefetch, "decode thread", "prefetch", {"with": pipeline.prefetch, "without": no_thread}),
        (a.compare_sparse, "sparse pass-1 decoding", "SPARSE_DECODE", {"sparse": True, "full": False}),
    ]
    for runs, title, attr, modes in comparisons:
        if runs:
            times = ab_test(videos, work, cfg, detector, runs, attr, modes)
            print(f"{title} A/B over {len(videos)} video(s) x {runs} rounds (median s): " + ", ".join(
                f"{k} {statistics.median(v):.2f}" for k, v in times.items()))
            result[f"ab_{attr}"] = times
    if not a.no_memory:
        short = videos[0]
        long_v = make_inputs(work, 1, 1800, 1920, 1080)[0]
        rss = {"10s": peak_rss_mb(short, work / "rss", a.device), "60s": peak_rss_mb(long_v, work / "rss", a.device)}
        print(f"peak RSS: 10 s video {rss['10s']:.0f} MiB, 60 s video {rss['60s']:.0f} MiB")
        result["peak_rss_mib"] = rss
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
