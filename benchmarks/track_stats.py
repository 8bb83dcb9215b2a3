"""Tracks on real MTCNN output: the published connected-components rule against ``facetubes.tracks``.

Data: ``dfdc_mtcnn_boxes_part1.npz`` (1,699 DFDC videos, MTCNN every 10th frame on half-size frames; see
``shared/data/README.md``). Boxes are scaled back to full resolution (x2) and both rules see the same boxes, the
same frame size and the same grid cell, so the differences below come from the rules alone.

    .venv/bin/python benchmarks/track_stats.py --data ../shared/data/dfdc_mtcnn_boxes_part1.npz

Prints Markdown tables (tracks per video, what changed, run time, crop_frame speed) for
``benchmarks/RESULTS.md``. ``--no-crops`` skips the crop timing, ``--crops-only`` runs only that.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.measure import label

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facetubes.crops import crop_frame  # noqa: E402
from facetubes.tracks import Detections, build_tracks_report  # noqa: E402

SCALE = 2.0  # the detector saw half-size frames
DETECT_EVERY = 10


@dataclass
class Video:
    name: str
    frame_size: tuple[int, int]  # full-resolution (width, height)
    n_frames: int
    detections: list[Detections]  # full-resolution boxes, one entry per sampled frame


def infer_frame_size(half_boxes: np.ndarray) -> tuple[int, int]:
    """Full-resolution frame size of a DFDC video from its half-size boxes.

    Landscape (960x540 at half size) unless the boxes reach clearly below y = 540 while staying left of x = 540,
    which only a portrait frame (540x960) allows. MTCNN boxes overshoot the frame edge by up to ~20 px, hence the
    60 px tolerance. No video of part 1 qualifies as portrait; the 922 videos whose boxes stay inside 540x540
    have their faces centred at x ~ 450 (median), as in a 960-wide frame (centre 480), not a 540-wide one (270).
    """
    max_x, max_y = float(half_boxes[:, 4].max()), float(half_boxes[:, 5].max())
    portrait = max_y > 540 + 60 and max_x <= 540 + 20
    return (1080, 1920) if portrait else (1920, 1080)


def load_videos(path: Path) -> list[Video]:
    """Read the detections file into per-video full-resolution ``Detections``."""
    data = np.load(path)
    boxes, names, n_slots = data["boxes"], data["videos"], data["n_detections"]
    order = np.argsort(boxes[:, 0], kind="stable")
    boxes = boxes[order]
    bounds = np.searchsorted(boxes[:, 0], np.arange(len(names) + 1))
    videos = []
    for v, name in enumerate(names):
        rows = boxes[bounds[v]:bounds[v + 1]]
        slot = rows[:, 1].astype(int)
        dets = [Detections(DETECT_EVERY * s, rows[slot == s, 2:6] * SCALE) for s in range(int(n_slots[v]))]
        size = infer_frame_size(rows) if len(rows) else (1920, 1080)
        videos.append(Video(str(name), size, DETECT_EVERY * int(n_slots[v]), dets))
    return videos


def published_components(
    detections: list[Detections], *, frame_size: tuple[int, int], detect_every: int = DETECT_EVERY,
    cell: int = 8, clamp: bool = False,
) -> tuple[list[tuple[int, int, np.ndarray]], int]:
    """The published rule, reimplemented from its description (REFERENCE.md section 1).

    Boxes are painted into a boolean grid (sampled frame x H/cell x W/cell) with plain slicing; a sampled frame
    with no face at all gets the AND of its two neighbours (in order, so a filled frame feeds the next); connected
    components with full connectivity; each component covers frames ``[first*N, last*N + N)`` (the published
    "last + 9" inclusive). With ``clamp=False`` the published defect is kept: a negative start index wraps around
    in slicing and the box paints nothing.

    Returns per component ``(start, stop, union box)`` (frame range; crop region before squaring, in pixels at
    cell resolution) and the number of boxes that painted nothing.
    """
    width, height = frame_size
    n_slots = max(d.frame // detect_every for d in detections) + 1 if detections else 0
    grid = np.zeros((n_slots, math.ceil(height / cell), math.ceil(width / cell)), dtype=bool)
    lost = 0
    for det in detections:
        plane = grid[det.frame // detect_every]
        for x1, y1, x2, y2 in det.boxes.astype(float):
            if clamp:
                x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            rows = slice(math.floor(y1 / cell), math.ceil(y2 / cell))
            cols = slice(math.floor(x1 / cell), math.ceil(x2 / cell))
            if plane[rows, cols].size == 0:
                lost += 1
            plane[rows, cols] = True
    for s in range(1, n_slots - 1):
        if not grid[s].any():
            grid[s] = grid[s - 1] & grid[s + 1]
    labels, n = label(grid, connectivity=3, return_num=True)
    ranges = []
    for c in range(1, n + 1):
        s, y, x = np.nonzero(labels == c)
        union = np.array([x.min(), y.min(), x.max() + 1, y.max() + 1]) * cell
        ranges.append((int(s.min()) * detect_every, (int(s.max()) + 1) * detect_every, union))
    return ranges, lost


def area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))


def count_inflated(components: list[tuple[int, int, np.ndarray]], tracks: list, long: int) -> int:
    """Published long components whose union box is more than twice the area of the union box of the facetubes
    track that overlaps it most in time (another face or a spurious box was merged into the crop)."""
    count = 0
    for start, stop, union in components:
        overlaps = [min(stop, t.stop) - max(start, t.start) for t in tracks]
        if stop - start < long or not tracks or max(overlaps) <= 0:
            continue
        t = tracks[int(np.argmax(overlaps))]
        ours = np.array([*t.boxes[:, :2].min(axis=0), *t.boxes[:, 2:].max(axis=0)])
        count += area(union) > 2 * area(ours)
    return count


def histogram_row(name: str, counts: list[int]) -> str:
    """One Markdown row: number of videos with 0, 1, 2 and 3+ tracks."""
    h = Counter(min(c, 3) for c in counts)
    return f"| {name} | " + " | ".join(str(h.get(k, 0)) for k in range(4)) + f" | {sum(counts)} |"


def time_per_call(fn: Callable[[], object], repeat: int = 7, number: int = 30) -> float:
    """Best of ``repeat`` batches of ``number`` calls, in milliseconds per call (robust on a busy machine)."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return 1e3 * best


def crop_speed(size: int = 256) -> list[str]:
    """Median time of ``crop_frame`` and two alternatives per crop side, on a real photo in a 1080p frame."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from skimage import data, transform

    torch.set_num_threads(1)
    frame = np.zeros((1080, 1920, 3), dtype=np.uint8)
    frame[:, 420:1500] = (transform.resize(data.astronaut(), (1080, 1080)) * 255).astype(np.uint8)
    lines = ["| crop side | crop_frame (PIL bilinear, reducing_gap=2) | PIL bilinear, no reducing_gap "
             "| torch bilinear, antialias | torch bilinear, no antialias |", "|---|---|---|---|---|"]
    for side in (128, 256, 400, 700, 1000):
        box = np.array([500, 40, 500 + side, 40 + side])
        region = np.ascontiguousarray(frame[40:40 + side, 500:500 + side])

        def pil_plain(region: np.ndarray = region) -> np.ndarray:
            return np.asarray(Image.fromarray(region).resize((size, size), Image.BILINEAR))

        def torch_resize(antialias: bool, side: int = side) -> np.ndarray:
            x = torch.from_numpy(frame[40:40 + side, 500:500 + side]).permute(2, 0, 1)[None].float()
            y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
            return y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()

        ms = [time_per_call(lambda box=box: crop_frame(frame, box, size)), time_per_call(pil_plain),
              time_per_call(lambda: torch_resize(True)), time_per_call(lambda: torch_resize(False))]
        lines.append(f"| {side} | " + " | ".join(f"{m:.2f} ms" for m in ms) + " |")
    padded = np.array([-200, 40, 200, 440])  # half outside the frame: zero padding, then resize
    lines.append(f"| 400, half outside (padded) | {time_per_call(lambda: crop_frame(frame, padded, size)):.2f} ms"
                 " | | | |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2]
                        / "shared/data/dfdc_mtcnn_boxes_part1.npz")
    parser.add_argument("--long", type=int, default=64, help="frames a 'long' track must span (default 64)")
    parser.add_argument("--no-crops", action="store_true", help="skip the crop_frame timing")
    parser.add_argument("--crops-only", action="store_true", help="only the crop_frame timing")
    args = parser.parse_args(argv)
    if args.crops_only:
        print("\n".join(crop_speed()))
        return

    videos = load_videos(args.data)
    rows: dict[str, list[int]] = {k: [] for k in ("pub_all", "pub_long", "pubc_all", "pubc_long", "our_all",
                                                  "our_long")}
    totals: Counter[str] = Counter()
    t_pub = t_our = 0.0
    changed_long = inflated = 0
    for video in videos:
        t0 = time.process_time()
        ranges, lost = published_components(video.detections, frame_size=video.frame_size)
        t_pub += time.process_time() - t0
        ranges_c, _ = published_components(video.detections, frame_size=video.frame_size, clamp=True)
        t0 = time.process_time()
        report = build_tracks_report(video.detections, frame_size=video.frame_size, n_frames=video.n_frames)
        t_our += time.process_time() - t0
        spans = [b - a for a, b, _ in ranges]
        spans_c = [b - a for a, b, _ in ranges_c]
        inflated += count_inflated(ranges, report.tracks, args.long)
        ours = [t.n_frames for t in report.tracks]
        for key, values in (("pub", spans), ("pubc", spans_c), ("our", ours)):
            rows[f"{key}_all"].append(len(values))
            rows[f"{key}_long"].append(sum(v >= args.long for v in values))
        changed_long += rows["our_long"][-1] != rows["pub_long"][-1]
        totals.update(boxes=report.n_boxes, lost=lost, negative=report.n_negative, clamped=report.n_clamped,
                      dropped=report.n_dropped, components=report.n_components, split=report.n_split,
                      split_videos=report.n_split > 0, bridged=report.n_bridged, duplicates=report.n_duplicates,
                      lost_videos=lost > 0, portrait=video.frame_size[0] < video.frame_size[1])

    n = len(videos)
    print(f"{n} videos, {totals['boxes']} boxes, {totals['portrait']} portrait\n")
    print("| rule | 0 | 1 | 2 | 3+ | tracks |\n|---|---|---|---|---|---|")
    for key, name in (("pub", "published"), ("pubc", "published + clamp"), ("our", "facetubes")):
        print(histogram_row(f"{name}, >= {args.long} frames", rows[f"{key}_long"]))
    for key, name in (("pub", "published"), ("pubc", "published + clamp"), ("our", "facetubes")):
        print(histogram_row(f"{name}, all", rows[f"{key}_all"]))
    b = totals["boxes"]
    print("\n| what | count |\n|---|---|")
    print(f"| boxes lost by the published slicing (negative start) | {totals['lost']} ({100 * totals['lost'] / b:.2f}%)"
          f" in {totals['lost_videos']} videos |")
    print(f"| boxes recovered by clamping (negative x1 or y1) | {totals['negative']} |")
    print(f"| boxes clamped (any coordinate outside the frame) | {totals['clamped']} "
          f"({100 * totals['clamped'] / b:.1f}%) |")
    print(f"| boxes entirely outside the frame (ignored) | {totals['dropped']} |")
    print(f"| duplicate detections of a tracked face (ignored) | {totals['duplicates']} |")
    print(f"| connected components | {totals['components']} |")
    print(f"| components split into several tracks | {totals['split']} (in {totals['split_videos']} videos) |")
    print(f"| missed detections bridged | {totals['bridged']} |")
    print(f"| published >= {args.long}-frame components whose crop region is > 2x (area) the face track's "
          f"| {inflated} |")
    print(f"| videos whose number of >= {args.long}-frame tracks differs from published | {changed_long} |")
    print(f"\nCPU time per video: published (reimplementation) {1e3 * t_pub / n:.1f} ms, "
          f"build_tracks {1e3 * t_our / n:.1f} ms")
    if not args.no_crops:
        print("\ncrop to 256x256 from a 1080p frame (best of 7 x 30 calls, torch on 1 thread):\n")
        print("\n".join(crop_speed()))


if __name__ == "__main__":
    main()
