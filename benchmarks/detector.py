"""MTCNN speed and agreement: facenet-pytorch's ``detect_face`` vs ``facetubes.mtcnn.FastMTCNN``.

Same weights, same frames, same process; the two are timed alternately (A B B A ...) so that the load of a shared
machine falls on both alike, and the report gives their ratio. Frames: a DFDC-like 1920x1080 scene -- skimage's
coffee photo as background and two astronaut head-and-shoulder patches (``astronaut()[20:230, 130:330]``) pasted
300 px tall, moving a little from frame to frame -- downscaled (antialiased) to each detector input size.
Agreement over all frames of a size: same number of faces per frame, IoU of matched boxes, |probability
difference|.

    .venv/bin/python benchmarks/detector.py                                  # CPU, 1 thread
    .venv/bin/python benchmarks/detector.py --out /tmp/detector.md   # then copy the tables into benchmarks/RESULTS.md
    .venv/bin/python benchmarks/detector.py --device cuda --threads 0        # 0: leave torch's thread count
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from facetubes.mtcnn import FastMTCNN  # noqa: E402

THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709
MIN_FACE = 20.0


def dfdc_like_frames(n: int, width: int = 1920, height: int = 1080, face_px: int = 300) -> np.ndarray:
    """``n`` 1080p frames: coffee background, two astronaut patches ``face_px`` tall drifting left/right."""
    from skimage import data
    from skimage.transform import resize

    patch = data.astronaut()[20:230, 130:330]
    bg = resize(data.coffee(), (height, width), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    fw = int(round(face_px * patch.shape[1] / patch.shape[0]))
    face = resize(patch, (face_px, fw), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        f = bg.copy()
        for cx, cy in [(560 + 12 * i, 470 + 3 * i), (1350 - 9 * i, 520 - 2 * i)]:
            x0, y0 = cx - fw // 2, cy - face_px // 2
            f[y0:y0 + face_px, x0:x0 + fw] = face
        out[i] = f
    return out


def downscale(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class Facenet:
    """facenet-pytorch's batched detect_face with the networks of an MTCNN module (what MTCNNDetector runs)."""

    def __init__(self, mtcnn, device) -> None:
        from facenet_pytorch.models.utils.detect_face import detect_face

        self.m, self.device, self._detect_face = mtcnn, torch.device(device), detect_face

    def detect(self, frames: np.ndarray):
        with torch.inference_mode():
            boxes, _ = self._detect_face(frames, MIN_FACE, self.m.pnet, self.m.rnet, self.m.onet, list(THRESHOLDS),
                                         FACTOR, self.device)
        out = []
        for b in boxes:
            b = np.asarray(b, np.float32).reshape(-1, 5)
            out.append((b[:, :4], b[:, 4]))
        return out


def agreement(ref, ours) -> dict:
    """Per-frame face counts equal? min IoU of each reference box with its best match, max |prob difference|."""
    from torchvision.ops import box_iou

    same_count, ious, dps, n_ref, n_ours = 0, [], [], 0, 0
    for (rb, rp), (b, p) in zip(ref, ours):
        n_ref += len(rb)
        n_ours += len(b)
        same_count += len(rb) == len(b)
        if len(rb) and len(b):
            iou = box_iou(torch.from_numpy(rb).double(), torch.from_numpy(b).double()).numpy()
            j = iou.argmax(1)
            ious.extend(iou.max(1).tolist())
            dps.extend(np.abs(rp - p[j]).tolist())
        elif len(rb):
            ious.extend([0.0] * len(rb))
    return {"frames_same_count": same_count, "frames": len(ref), "faces_ref": n_ref, "faces_ours": n_ours,
            "min_iou": min(ious) if ious else float("nan"), "max_dprob": max(dps) if dps else float("nan")}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, sync) -> tuple[float, float]:
    sync()
    w, c = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - w, time.process_time() - c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--sizes", default="480x270,710x398,960x540", help="detector input sizes WxH")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--frames", type=int, default=8, help="distinct frames per size (>= the largest batch)")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per detector, size and batch")
    ap.add_argument("--bilinear", action="store_true", help="also check FastMTCNN(pyramid='bilinear') agreement")
    ap.add_argument("--out", help="write the Markdown report here")
    args = ap.parse_args(argv)

    from facenet_pytorch import MTCNN

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    mtcnn = MTCNN(keep_all=True, post_process=False, device=device).eval()
    ref_det = Facenet(mtcnn, device)
    fast = FastMTCNN(device, min_face_size=MIN_FACE, thresholds=THRESHOLDS, factor=FACTOR, mtcnn=mtcnn)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    n_frames = max(args.frames, max(batches))
    full = dfdc_like_frames(n_frames)
    load0 = os.getloadavg()

    rows, agree_rows = [], []
    for (w, h) in sizes:
        frames = downscale(full, w, h)
        ref_all = [r for i in range(0, n_frames, max(batches)) for r in ref_det.detect(frames[i:i + max(batches)])]
        ours_all = [r for i in range(0, n_frames, max(batches)) for r in fast.detect(frames[i:i + max(batches)])]
        agree_rows.append(((w, h), "area (default)", agreement(ref_all, ours_all)))
        if args.bilinear:
            bil = FastMTCNN(device, min_face_size=MIN_FACE, thresholds=THRESHOLDS, factor=FACTOR, mtcnn=mtcnn,
                            pyramid="bilinear")
            agree_rows.append(((w, h), "bilinear", agreement(ref_all, bil.detect(frames))))
        for b in batches:
            batch = np.ascontiguousarray(frames[:b])
            runs = {"facenet": ([], []), "fast": ([], [])}
            fns = {"facenet": lambda: ref_det.detect(batch), "fast": lambda: fast.detect(batch)}
            for f in fns.values():  # warm-up
                f()
            for r in range(args.repeats):
                order = ["facenet", "fast"] if r % 2 == 0 else ["fast", "facenet"]
                for name in order:
                    wall, cpu = timed(fns[name], sync)
                    runs[name][0].append(wall / b * 1000)
                    runs[name][1].append(cpu / b * 1000)
            med = {k: (statistics.median(v[0]), statistics.median(v[1])) for k, v in runs.items()}
            rows.append(((w, h), b, med))
            print(f"{w}x{h} batch {b}: facenet {med['facenet'][0]:.1f} ms/frame, fast {med['fast'][0]:.1f} ms/frame,"
                  f" speedup {med['facenet'][0] / med['fast'][0]:.2f}x (CPU time {med['facenet'][1] / med['fast'][1]:.2f}x)",
                  flush=True)
    load1 = os.getloadavg()

    lines = ["# MTCNN: facenet-pytorch `detect_face` vs `facetubes.mtcnn.FastMTCNN`", "",
             "Command (from the repository root):", "", "```",
             " ".join([".venv/bin/python benchmarks/detector.py"] + (argv if argv is not None else sys.argv[1:])),
             "```", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, device `{device}`"
             f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s); load average "
             f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (the machine is shared: compare the ratios, "
             "each taken in the same run). Median of "
             f"{args.repeats} alternating calls per cell; wall-clock ms per frame, and the ratio of process CPU time."
             + (" glibc malloc settings from the environment: "
                + ", ".join(f"`{k}={v}`" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")) + "."
                if any(k.startswith("MALLOC_") for k in os.environ) else ""),
             "", "## Speed", "",
             "| detector input | batch | facenet ms/frame | FastMTCNN ms/frame | speedup (wall) | speedup (CPU time) |",
             "|---|---|---|---|---|---|"]
    for (w, h), b, med in rows:
        lines.append(f"| {w}x{h} | {b} | {med['facenet'][0]:.1f} | {med['fast'][0]:.1f} | "
                     f"{med['facenet'][0] / med['fast'][0]:.2f}x | {med['facenet'][1] / med['fast'][1]:.2f}x |")
    lines += ["", "## Agreement with facenet-pytorch", "",
              f"All {n_frames} frames of each size (threshold {THRESHOLDS}, min face {MIN_FACE:g}, factor {FACTOR}).",
              "", "| detector input | pyramid | frames with the same face count | faces facenet / ours | "
              "min IoU of matched boxes | max abs prob difference |", "|---|---|---|---|---|---|"]
    for (w, h), mode, a in agree_rows:
        lines.append(f"| {w}x{h} | {mode} | {a['frames_same_count']}/{a['frames']} | {a['faces_ref']} / "
                     f"{a['faces_ours']} | {a['min_iou']:.4f} | {a['max_dprob']:.2g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
