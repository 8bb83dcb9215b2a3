"""RetinaFace (MobileNet-0.25, ResNet-50) vs MTCNN (``FastMTCNN``): detector time per 1080p frame.

Frames: the DFDC-like 1920x1080 scene of ``benchmarks/detector.py`` (two real face photos, 300 px tall, on a
photo background), downscaled (antialiased) to each detector input. Each detector runs at its own input size of
the resolution policy (``facetubes.detect.detector_scale``: faces of 7.5% of the short side, 81 px at 1080p, must
reach the detector's smallest face: MTCNN 20 px -> 474x266, RetinaFace 16 px (its smallest anchor) -> 380x214), and
all run at the common sizes given by ``--sizes`` for a like-for-like comparison.

RetinaFace weights cannot be downloaded here, so it runs with random weights: the network costs the same, but the
post-processing depends on how many priors score above the 0.02 confidence threshold. Two bounds are timed:
``random`` (scores near 0.5 everywhere: 5000 boxes into NMS, the worst case) and ``quiet`` (class head biased to
"no face": nothing passes 0.02; network + decoding only). A real frame with a few faces lies in between, much
nearer ``quiet``. MTCNN uses facenet-pytorch's real weights (its cost depends on the candidates it finds).

Timings alternate between the detectors (A B C A B C ...), in one process, one torch thread (the extraction
default, ``detector_threads=1``), batch 1 (the CPU default). In-process, after a warm-up call; start-up not counted.

    .venv/bin/python benchmarks/retinaface.py
    .venv/bin/python benchmarks/retinaface.py --out /tmp/retinaface.md   # then copy the table into RESULTS.md
    .venv/bin/python benchmarks/retinaface.py --device cuda --threads 0 --batch 16
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from detector import cpu_model, dfdc_like_frames, downscale  # noqa: E402
from facetubes.detect import detector_scale, scaled_size  # noqa: E402
from facetubes.mtcnn import FastMTCNN  # noqa: E402
from facetubes.retinaface import RetinaFaceDetector, build_retinaface  # noqa: E402


def retinaface(backbone: str, quiet: bool, device: str, batch: int) -> RetinaFaceDetector:
    torch.manual_seed(0)
    model = build_retinaface(backbone)
    if quiet:
        with torch.no_grad():
            for head in model.ClassHead:
                head.conv1x1.weight.zero_()
                head.conv1x1.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0]))
    return RetinaFaceDetector(model, device, batch_size=batch)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave as is)")
    ap.add_argument("--sizes", default="474x266,960x540", help="common detector input sizes WxH")
    ap.add_argument("--batch", type=int, default=1, help="frames per detect call")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per detector and size")
    ap.add_argument("--resnet", action="store_true", help="also time RetinaFace ResNet-50 (slow on CPU)")
    ap.add_argument("--out", help="write the Markdown report here")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    detectors = {"MTCNN (FastMTCNN)": FastMTCNN(device)}
    detectors["RetinaFace MobileNet-0.25, quiet"] = retinaface("mobilenet0.25", True, args.device, args.batch)
    detectors["RetinaFace MobileNet-0.25, random"] = retinaface("mobilenet0.25", False, args.device, args.batch)
    if args.resnet:
        detectors["RetinaFace ResNet-50, quiet"] = retinaface("resnet50", True, args.device, args.batch)
    policy = {name: scaled_size(1920, 1080, detector_scale(1920, 1080, detector_min_face=d.min_face_size))
              for name, d in detectors.items()}
    common = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    full = dfdc_like_frames(max(args.batch, 4))
    load0 = os.getloadavg()

    rows = []  # (size, {name: (wall ms/frame, cpu ms/frame, faces in the first frame)})
    for size in sorted(set(common) | set(policy.values()), key=lambda s: s[0] * s[1]):
        frames = np.ascontiguousarray(downscale(full, *size)[:args.batch])
        names = [n for n in detectors if size in common or policy[n] == size]
        faces = {n: len(detectors[n].detect(frames)[0][0]) for n in names}  # also the warm-up
        runs: dict[str, tuple[list, list]] = {n: ([], []) for n in names}
        for r in range(args.repeats):
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                sync()
                w, c = time.perf_counter(), time.process_time()
                detectors[n].detect(frames)
                sync()
                runs[n][0].append((time.perf_counter() - w) / len(frames) * 1000)
                runs[n][1].append((time.process_time() - c) / len(frames) * 1000)
        med = {n: (statistics.median(v[0]), statistics.median(v[1]), faces[n]) for n, v in runs.items()}
        rows.append((size, med))
        print(f"{size[0]}x{size[1]}: " + ", ".join(f"{n} {m[0]:.1f} ms" for n, m in med.items()), flush=True)
    load1 = os.getloadavg()

    cmd = " ".join([".venv/bin/python benchmarks/retinaface.py"] + (argv if argv is not None else sys.argv[1:]))
    lines = ["## RetinaFace vs MTCNN: detector time per 1080p frame (`benchmarks/retinaface.py`)", "",
             "Command (from the repository root):", "", "```", cmd, "```", "",
             " ".join(__doc__.split("\n\n")[1:4]).replace("\n", " "), "",
             f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, device `{device}`"
             f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, torch "
             f"{torch.__version__}, {torch.get_num_threads()} intra-op thread(s), batch {args.batch}; load average "
             f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end (shared machine: compare the ratios, taken in "
             f"the same run). Median of {args.repeats} alternating calls; in-process, after a warm-up, start-up not "
             "counted. Policy sizes at 1080p: " + ", ".join(f"{n.split(',')[0]} {w}x{h}" for n, (w, h) in
                                                              policy.items() if "random" not in n) + ".", "",
             "| detector input | detector | policy size? | ms/frame (wall) | ms/frame (CPU) | "
             "vs MTCNN at its policy size (wall) | vs MTCNN at its policy size (CPU) | faces found |",
             "|---|---|---|---|---|---|---|---|"]
    base_size = policy["MTCNN (FastMTCNN)"]
    base_wall, base_cpu, _ = next(m for s, m in rows if s == base_size)["MTCNN (FastMTCNN)"]
    for (w, h), med in rows:
        for n, (wall, cpu, k) in med.items():
            pol = "yes" if policy[n] == (w, h) else ""
            lines.append(f"| {w}x{h} | {n} | {pol} | {wall:.1f} | {cpu:.1f} | {wall / base_wall:.2f}x | "
                         f"{cpu / base_cpu:.2f}x | {k} |")
    lines += ["", "RetinaFace's 'faces found' are meaningless with random weights (random: boxes over the 0.6 "
              "score threshold after NMS; quiet: none)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
