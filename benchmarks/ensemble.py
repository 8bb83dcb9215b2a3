"""Ensemble inference speed: seconds per 10 s 1080p video, split into decode, detect and models.

The published 5-member ensemble (i3d, r3d34, mc3, r2plus1d, seresnext50) with random weights and each model's own
preset (I3D 64-frame windows at 224 px, the others 32 frames at 112 px, SE-ResNeXt50 32 frames at 224 px), flip
TTA, inference extraction settings (ExtractConfig.for_inference(): first 100 frames, MTCNN at long side 480,
top 5 faces). The video is a synthetic 1920x1080, 300-frame, 30 fps clip with one face (facetubes.synthetic).

- extraction: ``extract_tubes_in_memory`` with MTCNN wrapped in a timer: ``detect`` is the time inside the
  detector, ``decode`` the rest of the extraction (decoding both passes, colour conversion, crops, tracks);
- models: ``EnsemblePredictor.predict`` on the tubes (device synchronised), and every member alone;
- end to end: extraction + models for one video (``facetubes predict`` overlaps the extraction of the next video
  with the models of the current one, so its throughput on many videos is close to max(extraction, models)).

    .venv/bin/python benchmarks/ensemble.py                        # CPU, 1 video
    .venv/bin/python benchmarks/ensemble.py --device cuda --videos 5

``--ensemble dfdc-1st`` / ``dfdc-5th`` time the published ensembles instead, with the member settings of
``examples/dfdc-1st.yaml`` / ``dfdc-5th.yaml`` and random weights: the 1st place's recipe (32 frames, MTCNN
(0.7, 0.8, 0.8) on half-size frames, every face, 380 px, 7 EfficientNet-B7 members; the 7 members share one
randomly initialised network, which costs the same compute as 7 files) and the 5th place's 8 members on tubes.
``--members N`` times only the first N members and says so (the B7 ensemble takes many minutes per video on a
2-core CPU).

    .venv/bin/python benchmarks/ensemble.py --ensemble dfdc-5th
    .venv/bin/python benchmarks/ensemble.py --ensemble dfdc-1st --members 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models3d  # noqa: E402
from facetubes import ExtractConfig  # noqa: E402
from facetubes.detect import make_detector  # noqa: E402
from facetubes.pipeline import extract_tubes_in_memory  # noqa: E402
from infer.engine import EnsemblePredictor  # noqa: E402
from infer.members import resolve_member  # noqa: E402
from infer.spec import MemberSpec  # noqa: E402

ARCHS = ("i3d", "r3d34", "mc3", "r2plus1d", "seresnext50")


class TimedDetector:
    """Wraps a detector and adds up the seconds spent inside ``detect`` (device synchronised)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.min_face_size = inner.min_face_size
        self.seconds = 0.0

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.inner.thresholds

    @thresholds.setter
    def thresholds(self, value: tuple[float, ...]) -> None:
        self.inner.thresholds = value

    def detect(self, frames: np.ndarray):
        t0 = time.perf_counter()
        out = self.inner.detect(frames)
        if torch.cuda.is_available() and getattr(self.inner, "device", torch.device("cpu")).type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return out


def make_video(folder: Path, i: int, n_frames: int, width: int, height: int) -> Path:
    from facetubes.synthetic import make_video as synth

    p = folder / f"bench_{width}x{height}_{n_frames}_{i}.mp4"
    if not p.exists():
        synth(p, "one", width=width, height=height, n_frames=n_frames, fps=30, seed=100 + i)
    return p


def build_members(archs: tuple[str, ...]) -> list:
    members = []
    for arch in archs:
        torch.manual_seed(0)
        model = models3d.create_model(arch, num_classes=1 if arch == "seresnext50" else 2).eval()
        members.append(resolve_member(MemberSpec(name=arch, arch=arch, weights=Path("random")), model))
    return members


def published_members(which: str, n: int | None) -> list:
    """Members of examples/<which>.yaml with random weights (``n``: only the first n)."""
    import yaml

    from infer.spec import parse_spec

    spec = parse_spec(yaml.safe_load((ROOT / "examples" / f"{which}.yaml").read_text()))
    chosen = spec.members[:n] if n else spec.members
    members, shared = [], {}
    for m in chosen:
        torch.manual_seed(0)
        key = (m.arch, m.num_classes)
        if m.arch == "dfdc1st" and key in shared:
            model = shared[key]
        else:
            model = models3d.create_model(m.arch, **({} if m.num_classes is None else {"num_classes": m.num_classes}),
                                          **dict(m.model_args)).eval()
            shared[key] = model
        members.append(resolve_member(m, model))
    return members, spec


def main_published(a: argparse.Namespace) -> int:
    from infer.faces1st import FaceRecipe, extract_faces, recipe_for

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="facetubes-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n_warm = 1 if a.device.startswith("cuda") else 0
    videos = [make_video(work, i, a.frames, a.width, a.height) for i in range(a.videos + n_warm)]
    t0 = time.perf_counter()
    members, spec = published_members(a.ensemble, a.members)
    n_total = len(spec.members)
    clip = spec.clip if spec.clip_set else (0.01, 0.99)
    predictor = EnsemblePredictor(members, device=a.device, tta=spec.tta is not False, amp=a.amp, clip=clip)
    load_s = time.perf_counter() - t0
    faces_recipe = recipe_for(members) if a.ensemble == "dfdc-1st" else None
    config = ExtractConfig.for_inference(device=a.device)
    thresholds = faces_recipe.thresholds if faces_recipe else config.thresholds
    detector = TimedDetector(make_detector(a.device, thresholds))
    rows = []
    for k, v in enumerate(videos):
        detector.seconds = 0.0
        t0 = time.perf_counter()
        if faces_recipe is not None:
            faces = extract_faces(v, faces_recipe, detector)
            tubes, n_in = [], len(faces)
        else:
            faces = None
            vt = extract_tubes_in_memory(v, config, detector=detector)
            tubes = [t.frames for t in vt.tubes]
            n_in = len(tubes)
        extract_s = time.perf_counter() - t0
        if not n_in:
            print(f"warning: no face found in {v.name}; skipped", file=sys.stderr)
            continue
        pred = predictor.predict(tubes, faces=faces)
        row = {"video": v.name, "inputs": n_in, "extract_s": extract_s, "detect_s": detector.seconds,
               "decode_s": extract_s - detector.seconds, "models_s": pred.model_s,
               "total_s": extract_s + pred.model_s}
        if k >= n_warm:
            rows.append(row)
        print(json.dumps({**row, "warmup": k < n_warm}), file=sys.stderr)
    if not rows:
        print("error: no video could be timed", file=sys.stderr)
        return 1
    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    med = {k: statistics.median(r[k] for r in rows) for k in ("decode_s", "detect_s", "models_s", "total_s")}
    what = "faces" if faces_recipe else "tubes"
    print(f"\n{a.ensemble}: {a.width}x{a.height}, {a.frames} frames; {len(rows)} video(s), median; device {dev}; "
          f"AMP {'on' if a.amp and a.device.startswith('cuda') else 'off'}; {rows[0]['inputs']} {what}; "
          f"{len(members)} of {n_total} members timed; set-up {load_s:.1f} s")
    print("| stage | seconds per video |\n|---|---|")
    print(f"| decode (+ crops{', tracks' if not faces_recipe else ''}) | {med['decode_s']:.2f} |")
    print(f"| detect (MTCNN) | {med['detect_s']:.2f} |")
    print(f"| models ({len(members)} of {n_total} members) | {med['models_s']:.2f} |")
    if len(members) < n_total:
        print(f"| models, all {n_total} members (scaled from {len(members)}) | "
              f"{med['models_s'] * n_total / len(members):.2f} |")
    print(f"| end to end (timed members) | {med['total_s']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": dev, "rows": rows, "load_s": load_s}, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (models and detector)")
    ap.add_argument("--videos", type=int, default=1, help="videos to time (after one warm-up on CUDA)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--no-amp", dest="amp", action="store_false")
    ap.add_argument("--per-member", action="store_true", help="also time every member alone")
    ap.add_argument("--work", default=None, help="folder for the synthetic videos (default: a temp folder)")
    ap.add_argument("--json", default=None, help="write the raw figures here")
    ap.add_argument("--ensemble", default="legacy", choices=("legacy", "dfdc-1st", "dfdc-5th"),
                    help="legacy: the 5 archs with default presets; dfdc-1st / dfdc-5th: the published ensembles")
    ap.add_argument("--members", type=int, default=None, help="published ensembles: time only the first N members")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    if a.members is not None and a.members < 1:
        print("error: --members must be >= 1", file=sys.stderr)
        return 2
    if a.ensemble != "legacy":
        return main_published(a)

    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="facetubes-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n_warm = 1 if a.device.startswith("cuda") else 0
    t0 = time.perf_counter()
    videos = [make_video(work, i, a.frames, a.width, a.height) for i in range(a.videos + n_warm)]
    print(f"{len(videos)} synthetic videos ready in {time.perf_counter() - t0:.1f} s ({work})", file=sys.stderr)

    config = ExtractConfig.for_inference(device=a.device)
    detector = TimedDetector(make_detector(a.device, config.thresholds))
    t0 = time.perf_counter()
    members = build_members(tuple(a.archs))
    predictor = EnsemblePredictor(members, device=a.device, tta=True, amp=a.amp)
    load_s = time.perf_counter() - t0
    singles = {m.name: EnsemblePredictor([m], device=a.device, tta=True, amp=a.amp) for m in members}

    rows = []
    for k, v in enumerate(videos):
        detector.seconds = 0.0
        t0 = time.perf_counter()
        vt = extract_tubes_in_memory(v, config, detector=detector)
        extract_s = time.perf_counter() - t0
        tubes = [t.frames for t in vt.tubes]
        if not tubes:
            print(f"warning: no face found in {v.name}; skipped", file=sys.stderr)
            continue
        pred = predictor.predict(tubes)
        row = {"video": v.name, "n_tubes": len(tubes), "tube_frames": [len(t) for t in tubes],
               "extract_s": extract_s, "detect_s": detector.seconds, "decode_s": extract_s - detector.seconds,
               "models_s": pred.model_s, "total_s": extract_s + pred.model_s}
        if a.per_member:
            row["members_s"] = {n: p.predict(tubes).model_s for n, p in singles.items()}
        if k >= n_warm:
            rows.append(row)
        print(json.dumps({**row, "warmup": k < n_warm}), file=sys.stderr)
    if not rows:
        print("error: no video could be timed", file=sys.stderr)
        return 1

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"\n{a.width}x{a.height}, {a.frames} frames; {len(rows)} video(s), median; device {dev}; "
          f"AMP {'on' if a.amp and a.device.startswith('cuda') else 'off'}; torch {torch.__version__}")
    print(f"models loaded in {load_s:.1f} s; {rows[0]['n_tubes']} tube(s) of {rows[0]['tube_frames']} frames\n")
    print("| stage | seconds per video |\n|---|---|")
    for key, label in (("decode_s", "decode (+ crop, tracks)"), ("detect_s", "detect (MTCNN)"),
                       ("models_s", f"models ({len(members)} members, flip TTA)"), ("total_s", "end to end")):
        print(f"| {label} | {med(key):.2f} |")
    if a.per_member:
        print("\n| member | seconds per video |\n|---|---|")
        for n in singles:
            print(f"| {n} | {statistics.median(r['members_s'][n] for r in rows):.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": dev, "rows": rows, "load_s": load_s}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
