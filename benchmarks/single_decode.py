"""Single-decode (chunked) extraction against the two-pass path and the decode floor, on real videos, in one run.

    .venv/bin/python benchmarks/single_decode.py                         # the four DFDC videos of ../shared
    .venv/bin/python benchmarks/single_decode.py --source DIR --rounds 2 --no-batch

Per video (in-process, ``extract_tubes``, default settings, model loaded before the clock starts):
- decode floor: PyAV decodes every frame (FFmpeg's threads), no conversion;
- single pass (default settings: ``chunk_frames=150``, ``chunk_memory_mb=256``, i.e. 80-frame chunks at 1080p) and two passes (``chunk_frames=None``), alternating per video so
  that drifting load from other jobs hits both alike; wall and CPU seconds (this process, all threads);
- whether both give the same tracks, the same tube frame ranges, and how many crop boxes differ.

CLI batch (``facetubes extract`` in a subprocess, both paths): a cold batch of the videos with start-up counted,
and the steady state, ``(T(2N videos) - T(N videos)) / N`` (the N inputs repeated under other names), so
start-up and model loading cancel out. Floor: serial threaded decoding of the same files.

Memory: peak RSS (``VmHWM``) of a fresh process extracting a 1080p 10 s video and the same video repeated to
60 s (packets copied, no re-encoding), for both paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facetubes import ExtractConfig  # noqa: E402
from facetubes.pipeline import extract_tubes  # noqa: E402
from facetubes.video import probe  # noqa: E402

DEFAULT_SOURCE = next((p / "shared" / "data" / "real" / "dfdc" for p in (ROOT.parent, ROOT.parent.parent)
                       if (p / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data" / "real" / "dfdc")


def decode_floor(path: Path) -> tuple[float, float]:
    """(wall s, CPU s) of decoding every frame with FFmpeg's threads."""
    import av

    c0, t0 = time.process_time(), time.perf_counter()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            pass
    return time.perf_counter() - t0, time.process_time() - c0


def repeat_video(src: Path, times: int, out: Path) -> Path:
    """``src``'s video stream ``times`` times in a row (packets copied, timestamps shifted; every repeat starts
    on a keyframe, so it decodes like the original)."""
    import av

    if out.exists():
        return out
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        s = inp.streams.video[0]
        o = dst.add_stream_from_template(s)
        packets = [p for p in inp.demux(s) if p.size]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        for k in range(times):
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts = p.pts + k * span, p.dts + k * span
                q.duration, q.time_base, q.is_keyframe = p.duration, p.time_base, p.is_keyframe
                q.stream = o
                dst.mux(q)
    return out


def summary(m: dict) -> dict:
    return {
        "tracks": [(t["start_frame"], t["stop_frame"], t["n_detections"]) for t in m["tracks"]],
        "tubes": [(t["tube"], t["start_frame"], t["stop_frame"]) for t in m["tubes"]],
    }


def crop_box_list(m: dict) -> dict:
    out = {}
    for t in m["tubes"]:
        boxes = []
        for n, *b in t["crop_boxes"]:
            boxes.extend([tuple(b)] * n)
        out[t["tube"]] = boxes
    return out


def in_process(videos: list[Path], work: Path, detector, rounds: int, device: str = "cpu") -> list[dict]:
    rows = []
    modes = {"single": ExtractConfig(device=device), "two-pass": ExtractConfig(device=device, chunk_frames=None)}
    for v in videos:
        info = probe(v)
        row: dict = {"video": v.name, "size": f"{info.width}x{info.height}", "frames": info.n_frames,
                     "floor": [], "floor_cpu": []}
        manifests = {}
        for _ in range(rounds):
            for label, cfg in modes.items():
                w, c = decode_floor(v)
                row["floor"].append(w)
                row["floor_cpu"].append(c)
                c0, t0 = time.process_time(), time.perf_counter()
                manifests[label] = extract_tubes(v, work / label, cfg, detector=detector)
                row.setdefault(label, []).append(time.perf_counter() - t0)
                row.setdefault(label + "_cpu", []).append(time.process_time() - c0)
        s, t = manifests["single"], manifests["two-pass"]
        row["same_tracks"] = summary(s)["tracks"] == summary(t)["tracks"]
        row["same_tube_ranges"] = summary(s)["tubes"] == summary(t)["tubes"]
        bs, bt = crop_box_list(s), crop_box_list(t)
        row["tubes"] = len(s["tubes"])
        row["crop_frames"] = sum(len(b) for b in bs.values())
        row["crop_boxes_differing"] = sum(sum(x != y for x, y in zip(bs[k], bt.get(k, []))) for k in bs)
        row["held"] = s.get("chunks", {}).get("max_frames_held")
        rows.append(row)
    return rows


def cli_batch(videos: list[Path], work: Path, extra: list[str]) -> dict:
    exe = Path(sys.executable).parent / "facetubes"
    cmd0 = [str(exe)] if exe.exists() else [sys.executable, "-m", "facetubes"]
    copies = work / "copies"
    copies.mkdir(exist_ok=True)
    doubled = list(videos)
    for v in videos:
        c = copies / f"{v.stem}_copy{v.suffix}"
        if not c.exists():
            shutil.copyfile(v, c)
        doubled.append(c)

    def run(inputs: list[Path]) -> float:
        out = work / "batch_out"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run(cmd0 + ["extract", *map(str, inputs), "--out", str(out), "-q", *extra], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0

    cold = run(videos)
    full = run(doubled)
    n = len(videos)
    return {"cold_per_video": cold / n, "steady_per_video": (full - cold) / n}


def peak_rss_mb(video: Path, out: Path, chunk: str) -> float:
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from facetubes import ExtractConfig\nfrom facetubes.pipeline import extract_tubes\n"
        "extract_tubes(%r, %r, ExtractConfig(%s))\n"
        "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    ) % (str(ROOT), str(video), str(out), chunk)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder searched for *.mp4")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--device", default="cpu", help="detector device (cpu, cuda)")
    ap.add_argument("--json")
    a = ap.parse_args()
    import torch

    from facetubes.detect import make_detector

    videos = sorted(a.source.rglob("*.mp4"))
    if not videos:
        sys.exit(f"error: {a.source}: no .mp4 files")
    work = Path(tempfile.mkdtemp(prefix="facetubes-single-"))
    result: dict = {"source": str(a.source), "cores": len(os.sched_getaffinity(0)),
                    "load_before": os.getloadavg()[0]}
    try:
        detector = make_detector(a.device)
        rows = in_process(videos, work, detector, a.rounds, a.device)
        torch.set_num_threads(1)
        result["rows"] = rows
        print(f"in-process, detector on {a.device}, {result['cores']} cores, load average "
              f"{result['load_before']:.1f} at the start\n")
        print("| video | size | tubes | floor s | single s | two-pass s | single / floor | two-pass / floor | "
              "floor CPU s | single CPU s | two-pass CPU s | same tracks | same tube ranges | crop boxes differing |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
        ratios = {"single": [], "two-pass": []}
        for r in rows:
            f = statistics.median(r["floor"])
            med = {k: statistics.median(r[k]) for k in ("single", "two-pass", "single_cpu", "two-pass_cpu")}
            ratios["single"].append(med["single"] / f)
            ratios["two-pass"].append(med["two-pass"] / f)
            print(f"| {r['video']} | {r['size']} | {r['tubes']} | {f:.2f} | {med['single']:.2f} | "
                  f"{med['two-pass']:.2f} | {med['single'] / f:.2f}x | {med['two-pass'] / f:.2f}x | "
                  f"{statistics.median(r['floor_cpu']):.2f} | {med['single_cpu']:.2f} | {med['two-pass_cpu']:.2f} | "
                  f"{r['same_tracks']} | "
                  f"{r['same_tube_ranges']} | {r['crop_boxes_differing']} of {r['crop_frames']} |")
        print(f"\nmedian ratio: single {statistics.median(ratios['single']):.2f}x, two-pass "
              f"{statistics.median(ratios['two-pass']):.2f}x the decode floor")
        if not a.no_batch:
            floor = statistics.mean(decode_floor(v)[0] for v in videos)
            result["batch_floor"] = floor
            print(f"\nCLI batch of {len(videos)} videos (subprocess), floor {floor:.2f} s per video:\n")
            print("| path | cold, start-up counted, s/video | ratio | steady state s/video | ratio |")
            print("|---|---:|---:|---:|---:|")
            for label, extra in (("single", []), ("two-pass", ["--chunk-frames", "0"])):
                b = cli_batch(videos, work, extra)
                result[f"batch_{label}"] = b
                print(f"| {label} | {b['cold_per_video']:.2f} | {b['cold_per_video'] / floor:.2f}x | "
                      f"{b['steady_per_video']:.2f} | {b['steady_per_video'] / floor:.2f}x |")
        if not a.no_memory:
            ten = max(videos, key=lambda v: probe(v).width * probe(v).height)
            sixty = repeat_video(ten, 6, work / f"{ten.stem}_x6.mp4")
            print(f"\npeak RSS, fresh process ({ten.name}: {probe(ten).n_frames} frames; x6: "
                  f"{probe(sixty).n_frames} frames):\n")
            print("| path | 10 s MiB | 60 s MiB |\n|---|---:|---:|")
            for label, chunk in (("single", ""), ("two-pass", "chunk_frames=None")):
                rss = [peak_rss_mb(v, work / "rss", chunk) for v in (ten, sixty)]
                result[f"rss_{label}"] = rss
                print(f"| {label} | {rss[0]:.0f} | {rss[1]:.0f} |")
        result["load_after"] = os.getloadavg()[0]
        print(f"\nload average at the end: {result['load_after']:.1f}")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from facetubes.errors import FacetubesError

    try:
        main()
    except FacetubesError as e:
        sys.exit(f"error: {e}")
