"""Is tube encoding reproducible? The same crops written several times with facetubes.video.VideoWriter.

    .venv/bin/python benchmarks/encode_repro.py                 # 48 crops of a synthetic fake, 6 writes

The crops are cut once (``crop_pass``, checked identical on a second call), then encoded RUNS times with the
tube settings (x264 CRF 23, veryfast, one thread). Prints each file's size, its PSNR against the crops, and
the largest pixel difference from the first write.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facetubes import ExtractConfig  # noqa: E402
from facetubes.pipeline import analyse, crop_pass  # noqa: E402
from facetubes.synthetic import FakeSpec, make_video  # noqa: E402
from facetubes.video import VideoWriter, iter_frames, probe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--size", type=int, default=72, help="tube side in pixels (the e2e test's 72)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="facetubes-repro-"))
    src = work / "fake.mp4"
    make_video(src, "one", width=256, height=192, n_frames=48, seed=1000, fake=FakeSpec())
    cfg = ExtractConfig(min_frames=16, size=a.size, crop="follow")
    plan = [p for _, p in analyse(src, cfg).plans][0]
    info = probe(src)

    def cut() -> list[np.ndarray]:
        got: list[np.ndarray] = []
        crop_pass(src, info, [plan], a.size, lambda k, i, f: got.append(f.to_ndarray(format="rgb24")))
        return got

    crops = cut()
    same_crops = all(np.array_equal(x, y) for x, y in zip(crops, cut()))
    ref = np.stack(crops).astype(np.float64)
    print(f"{len(crops)} crops of {a.size} px; cropping twice gives identical frames: {same_crops}\n")
    print("| write | bytes | PSNR mean dB | PSNR worst frame dB | max pixel difference from write 1 |")
    print("|---:|---:|---:|---:|---:|")
    first = None
    for run in range(a.runs):
        path = work / f"tube_{run}.mp4"
        with VideoWriter(path, fps=30, width=a.size, height=a.size, crf=cfg.crf, pix_fmt=cfg.pix_fmt,
                         preset=cfg.preset, threads=1) as w:
            for c in crops:
                w.write(c)
        out = np.stack([f for _, f in iter_frames(path)]).astype(np.float64)
        mse = ((out - ref) ** 2).reshape(len(out), -1).mean(1)
        psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-9))
        first = out if first is None else first
        print(f"| {run + 1} | {path.stat().st_size} | {psnr.mean():.1f} | {psnr.min():.1f} | "
              f"{int(np.abs(out - first).max())} |")


if __name__ == "__main__":
    main()
