"""The default crop rule (``auto``: static while tight, else follow) against the published static union box.

    .venv/bin/python benchmarks/crop_rule.py                 # street video + synthetic walkers + DFDC boxes
    .venv/bin/python benchmarks/crop_rule.py --dfdc-limit 300 --ratios 1.1,1.25,1.5,2

Per tube frame, from the face boxes (no pixels are needed, so every figure is exact for its boxes):
- **face share**: the tube's own face side (``max(w, h)``) divided by the crop side; 1 fills the tube;
- **purity**: no *other* face (another track's box at that frame, or another ground-truth person) is at least half
  inside the crop with its centre a face side or more from the own face (a second face, not one overlapping it).
  A tube is pure when all its frames are.

Inputs: the real street video (FastMTCNN detections, every 10th frame, the default detector settings); a
synthetic 1080p scene with two people walking past each other and one standing (faces 135 px, ground-truth boxes
as detections); the real MTCNN boxes of DFDC part 0/1 (``dfdc_mtcnn_boxes_part*.npz``, 1920x1080 assumed).
Tubes are planned as the pipeline does: tracks by ``build_tracks``, tubes of at least ``min_frames`` (64); the
single-decode path decides per chunk (80 frames: its 1080p default) (``static (chunk)``, ``auto``), the two-pass path per track
(``static (track)``, the published rule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import facetubes.crops as crops  # noqa: E402
from facetubes import ExtractConfig  # noqa: E402
from facetubes.crops import _integer_boxes, face_boxes, plan_boxes  # noqa: E402
from facetubes.tracks import Detections, build_tracks  # noqa: E402

SHARED = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data")
CHUNK = 80
"""The pipeline's chunk at 1080p with the default ``chunk_memory_mb`` (``facetubes.chunked.chunk_length``)."""
SEGMENTS = {"static": 0, "all": 0}


def plan(track, size, mode: str, chunk: int | None) -> np.ndarray:
    """Crop boxes of every frame of ``track`` as the pipeline plans them (``chunk=None``: whole track)."""
    w, h = size
    faces = _integer_boxes(face_boxes(track), w, h)
    if chunk is None:
        return plan_boxes(faces, frame_size=size, mode=mode)
    out, context = [], None
    edges = sorted({track.start, track.stop, *range((track.start // chunk + 1) * chunk, track.stop, chunk)})
    for a, b in zip(edges[:-1], edges[1:]):
        if mode == "auto":
            SEGMENTS["all"] += 1
            SEGMENTS["static"] += crops.is_tight(faces[a - track.start:b - track.start])
        boxes = plan_boxes(faces[a - track.start:b - track.start], frame_size=size, mode=mode, context=context)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        context = (centres if context is None else np.concatenate([context, centres]))[-60:]
        out.append(boxes)
    return np.concatenate(out)


def _inside(face: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """Fraction of each face's area inside each crop; ``face``, ``crop`` ``(T, 4)``."""
    iw = np.clip(np.minimum(face[:, 2], crop[:, 2]) - np.maximum(face[:, 0], crop[:, 0]), 0, None)
    ih = np.clip(np.minimum(face[:, 3], crop[:, 3]) - np.maximum(face[:, 1], crop[:, 1]), 0, None)
    return iw * ih / np.maximum((face[:, 2] - face[:, 0]) * (face[:, 3] - face[:, 1]), 1e-9)


def evaluate(own: np.ndarray, others: list[np.ndarray], boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: face share and purity. ``own`` ``(T, 4)`` face boxes, ``others`` ``(T, 4)`` each with NaN where
    that face is absent, ``boxes`` ``(T, 4)`` crops."""
    side = np.maximum(own[:, 2] - own[:, 0], own[:, 3] - own[:, 1])
    share = side / (boxes[:, 2] - boxes[:, 0])
    pure = np.ones(len(own), bool)
    c_own = (own[:, :2] + own[:, 2:]) / 2
    for o in others:
        ok = np.isfinite(o).all(axis=1)
        if not ok.any():
            continue
        oo = np.where(ok[:, None], o, 0)
        apart = np.hypot(*((oo[:, :2] + oo[:, 2:]) / 2 - c_own).T) >= side
        pure &= ~(ok & apart & (_inside(oo, boxes) >= 0.5))
    return share, pure


def track_faces(tracks, n_frames: int) -> list[np.ndarray]:
    """Each track's interpolated face box on every video frame (NaN outside the track)."""
    out = []
    for t in tracks:
        full = np.full((n_frames, 4), np.nan)
        full[t.start:t.stop] = face_boxes(t)
        out.append(full)
    return out


RULES = {"static (track)": ("static", None), "static (chunk)": ("static", CHUNK), "auto": ("auto", CHUNK)}


def score(tracks, size, n_frames, truth_faces=None, min_frames=64) -> dict:
    """{rule: (shares, frame purity, tube purity, static fraction)} over the tubes of ``tracks``."""
    faces = truth_faces if truth_faces is not None else track_faces(tracks, n_frames)
    result = {}
    for name, (mode, chunk) in RULES.items():
        shares, pure, tubes_pure = [], [], []
        for k, t in enumerate(tracks):
            if t.n_frames < min_frames:
                continue
            boxes = plan(t, size, mode, chunk)
            own = (truth_faces[_owner(t, truth_faces)] if truth_faces is not None else faces[k])[t.start:t.stop]
            others = [f[t.start:t.stop] for j, f in enumerate(faces)
                      if j != (_owner(t, truth_faces) if truth_faces is not None else k)]
            s, p = evaluate(own, others, boxes)
            shares.append(s)
            pure.append(p)
            tubes_pure.append(bool(p.all()))
        result[name] = (np.concatenate(shares) if shares else np.zeros(0),
                        np.concatenate(pure) if pure else np.zeros(0, bool), tubes_pure)
    return result


def _owner(track, truth_faces) -> int:
    f = int(track.frames[len(track.frames) // 2])
    b = track.boxes[len(track.frames) // 2]
    c = (b[:2] + b[2:]) / 2
    d = [np.hypot(*((tf[f, :2] + tf[f, 2:]) / 2 - c)) if np.isfinite(tf[f]).all() else np.inf for tf in truth_faces]
    return int(np.argmin(d))


def merge(acc: dict, new: dict) -> None:
    for k, (s, p, t) in new.items():
        a = acc.setdefault(k, ([], [], []))
        a[0].append(s)
        a[1].append(p)
        a[2].extend(t)


def table(title: str, acc: dict) -> None:
    kept = f"; auto kept the static box for {SEGMENTS['static']} of {SEGMENTS['all']} track-chunks"
    SEGMENTS.update(static=0, all=0)
    print(f"\n{title}{kept}\n")
    print("| rule | tubes | tube frames | face share median | face share 10th pct | frames pure | tubes pure |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, (s, p, t) in acc.items():
        s, p = np.concatenate(s) if s else np.zeros(0), np.concatenate(p) if p else np.zeros(0, bool)
        if not len(s):
            print(f"| {k} | 0 | 0 | | | | |")
            continue
        print(f"| {k} | {len(t)} | {len(s)} | {np.median(s):.2f} | {np.percentile(s, 10):.2f} | "
              f"{100 * p.mean():.1f}% | {100 * np.mean(t):.1f}% |")


def street(path: Path, detect_every: int = 10):
    from facetubes.detect import make_detector
    from facetubes.pipeline import detect_video
    from facetubes.video import probe

    info = probe(path)
    cfg = ExtractConfig()
    dets, _ = detect_video(path, info, cfg, make_detector("cpu"))
    tracks = build_tracks(dets, frame_size=(info.width, info.height), n_frames=info.n_frames,
                          detect_every=detect_every)
    return tracks, (info.width, info.height), info.n_frames


def synthetic_scene(n_frames: int = 300):
    """Two walkers crossing a 1920x1080 frame plus one standing person; faces 135 px; ground-truth boxes."""
    from facetubes.synthetic import render

    _, truth = render("crossing", width=1920, height=1080, n_frames=n_frames, seed=1, face_size=135)
    faces = [np.asarray(truth.boxes[p], np.float64) for p in truth.persons]
    w = faces[0][0, 2] - faces[0][0, 0]
    standing = np.tile([960 - w / 2, 120, 960 + w / 2, 255], (n_frames, 1)).astype(np.float64)
    faces.append(standing)
    dets = []
    for f in range(0, n_frames, 10):
        b = np.array([x[f] for x in faces if np.isfinite(x[f]).all()], np.float32)
        dets.append(Detections(frame=f, boxes=b, probs=np.full(len(b), 0.99, np.float32)))
    tracks = build_tracks(dets, frame_size=(1920, 1080), n_frames=n_frames, detect_every=10)
    return tracks, (1920, 1080), n_frames, faces


def dfdc(limit: int):
    """Tracks of the DFDC MTCNN boxes (every 10th frame of 300; boxes given on half-size frames)."""
    for part in (0, 1):
        path = SHARED / f"dfdc_mtcnn_boxes_part{part}.npz"
        if not path.exists():
            continue
        d = np.load(path)
        boxes = d["boxes"]
        order = np.argsort(boxes[:, 0], kind="stable")
        boxes = boxes[order]
        starts = np.searchsorted(boxes[:, 0], np.arange(len(d["videos"]) + 1))
        for v in range(min(limit, len(d["videos"]))):
            rows = boxes[starts[v]:starts[v + 1]]
            dets = []
            for slot in range(int(d["n_detections"][v])):
                b = rows[rows[:, 1] == slot][:, 2:6] * 2
                dets.append(Detections(frame=10 * slot, boxes=b.astype(np.float32),
                                       probs=np.ones(len(b), np.float32)))
            yield build_tracks(dets, frame_size=(1920, 1080), n_frames=300, detect_every=10), (1920, 1080), 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--street", type=Path, default=SHARED / "real" / "street_facenet.mp4")
    ap.add_argument("--dfdc-limit", type=int, default=100000, help="videos per DFDC part")
    ap.add_argument("--ratios", default="", help="also score auto at these TIGHT_RATIO values, e.g. 1.1,1.5,2")
    ap.add_argument("--min-frames", type=int, default=64)
    a = ap.parse_args()
    ratios = [crops.TIGHT_RATIO] + [float(r) for r in a.ratios.split(",") if r]
    print(f"TIGHT_RATIO = {crops.TIGHT_RATIO} (auto rows); chunk {CHUNK} frames; tubes >= {a.min_frames} frames")
    street_tracks = street(a.street) if a.street.exists() else None
    scene = synthetic_scene()
    dfdc_sets = list(dfdc(a.dfdc_limit))
    for ratio in ratios:
        crops.TIGHT_RATIO = ratio
        tag = f" (TIGHT_RATIO {ratio})"
        if street_tracks is not None:
            # the street video has 105 frames: its tubes are those of min_frames 64 as well
            acc: dict = {}
            merge(acc, score(*street_tracks, min_frames=a.min_frames))
            table(f"street_facenet.mp4, {len(street_tracks[0])} tracks{tag}", acc)
        acc = {}
        merge(acc, score(scene[0], scene[1], scene[2], truth_faces=scene[3], min_frames=a.min_frames))
        table(f"synthetic 1080p: two walkers crossing + one standing, faces 135 px{tag}", acc)
        acc = {}
        for tracks, size, n in dfdc_sets:
            merge(acc, score(tracks, size, n, min_frames=a.min_frames))
        table(f"DFDC MTCNN boxes, {len(dfdc_sets)} videos{tag}", acc)


if __name__ == "__main__":
    main()
