"""Boxes from the original on real FF++ pairs: cost of a fake cut from its original's boxes against its own
detection, and what the difference masks show.

    .venv/bin/python benchmarks/boxes_from_original.py                       # ../shared/data/real/ffpp
    .venv/bin/python benchmarks/boxes_from_original.py --figure docs/img/boxes-from-original.png

In-process (``extract_batch``, one worker, MTCNN on CPU, the detector built before the clock starts): the FF++
root as ``--labels`` and as input, without ``boxes_from_original``, with it, and with it but ``diff_masks=False``;
wall and CPU seconds
per video (this process, all threads) from each video's ``timings.total_s`` and the batch's clock. Then, per fake
tube: the difference mask's mean in the tube's centre (the inner face: 40 % of the side) and in its outer ring
(the outer 15 %), 0-255 = 0-1 of ``1 - SSIM``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from facetubes import ExtractConfig  # noqa: E402
from facetubes.batch import extract_batch  # noqa: E402
from facetubes.datasets import load  # noqa: E402
from facetubes.manifest import read_manifest  # noqa: E402
from facetubes.original import read_diff_mask  # noqa: E402

DEFAULT = next((p / "shared" / "data" / "real" / "ffpp" for p in (ROOT.parent, ROOT.parent.parent)
                if (p / "shared" / "data" / "real" / "ffpp").is_dir()), ROOT.parent / "shared" / "data" / "real" / "ffpp")


def run(root: Path, out: Path, from_original: bool, detector, masks: bool = True) -> dict:
    found = load(root)
    t0, c0 = time.perf_counter(), time.process_time()
    s = extract_batch([root], out, ExtractConfig(), labels=found.labels, names=found.names, progress=False,
                      detector=detector, boxes_from_original=from_original, diff_masks=masks)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per = {r.stem: read_manifest(out / r.stem) for r in s.results if r.status == "ok"}
    return {"wall": wall, "cpu": cpu, "manifests": per, "failed": s.n_failed}


def mask_stats(out: Path, m: dict) -> list[tuple[str, float, float, int]]:
    rows = []
    for t in m["tubes"]:
        if "diff_file" not in t:
            continue
        mask = read_diff_mask(out / m["video"] / t["diff_file"]).astype(np.float64)
        n = mask.shape[1]
        c0, c1 = int(0.3 * n), int(0.7 * n)
        ring = np.ones(mask.shape[1:], bool)
        r = int(0.15 * n)
        ring[r:n - r, r:n - r] = False
        rows.append((t["tube"], float(mask[:, c0:c1, c0:c1].mean()), float(mask[:, ring].mean()), len(mask)))
    return rows


def figure(out: Path, manifests: dict, path: Path, title: str = "real FF++ c23 pairs") -> None:
    """One row per fake: a fake tube frame, the original's tube frame at the same index, and the mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facetubes.video import read_frames

    fakes = [m for m in manifests.values() if m.get("boxes_from_original", {}).get("used")]
    fig, axes = plt.subplots(len(fakes), 3, figsize=(7.5, 2.6 * len(fakes)), squeeze=False)
    for row, m in zip(axes, fakes):
        t = m["tubes"][0]
        k = t["n_frames"] // 2
        orig = m["boxes_from_original"]["original"]
        ot = read_manifest(out / orig)["tubes"][0]
        fake_img = read_frames(out / m["video"] / t["file"], [k])[0]
        orig_img = read_frames(out / orig / ot["file"], [k])[0]
        mask = read_diff_mask(out / m["video"] / t["diff_file"])[k]
        for ax, img, label in zip(row, (fake_img, orig_img, mask),
                                  (f"{m['video']}\nframe {t['start_frame'] + k}", f"{orig}\nsame box",
                                   "1 - SSIM")):
            ax.imshow(img, cmap="magma" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"extract --boxes-from-original: {title}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"figure: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT)
    ap.add_argument("--figure", type=Path, default=None,
                    help="draw the pairs here (research data: for your own eyes, not for the docs)")
    a = ap.parse_args()
    from facetubes.detect import make_detector

    detector = make_detector("cpu", (0.6, 0.7, 0.7))
    work = Path(tempfile.mkdtemp(prefix="bfo-"))
    res = {flag: run(a.root, work / ("from_original" if flag else "own"), flag, detector) for flag in (False, True)}
    bare = run(a.root, work / "no_masks", True, detector, masks=False)
    print(f"FF++ root {a.root}: {len(res[True]['manifests'])} videos with tubes, "
          f"{res[True]['failed']} failed; in-process, detector loaded before the clock\n")
    print("| video | kind | own detection s | from the original s | ... without masks s | used the original |")
    print("|---|---|---:|---:|---:|---|")
    fake_ratio, bare_ratio = [], []
    for name in sorted(res[True]["manifests"]):
        own = res[False]["manifests"].get(name, {}).get("timings", {}).get("total_s", float("nan"))
        m = res[True]["manifests"][name]
        mine = m.get("timings", {}).get("total_s", float("nan"))
        rec = m.get("boxes_from_original")
        kind = "fake" if rec else "real"
        used = "" if not rec else ("yes" if rec["used"] else f"no: {rec['reason']}")
        no_mask = bare["manifests"].get(name, {}).get("timings", {}).get("total_s", float("nan"))
        if rec and rec["used"]:
            fake_ratio.append(mine / own)
            bare_ratio.append(no_mask / own)
        print(f"| {name} | {kind} | {own:.2f} | {mine:.2f} | {no_mask:.2f} | {used} |")
    print(f"\nbatch wall / CPU s: own detection {res[False]['wall']:.1f} / {res[False]['cpu']:.1f}, "
          f"boxes from the original {res[True]['wall']:.1f} / {res[True]['cpu']:.1f}")
    if fake_ratio:
        print(f"a fake from its original's boxes takes {statistics.median(fake_ratio):.2f}x the time of its own "
              f"extraction, {statistics.median(bare_ratio):.2f}x without masks (medians of {len(fake_ratio)})")
    print("\n| fake tube | mask mean, inner face (centre 40 %) | mask mean, outer ring (15 %) | frames |")
    print("|---|---:|---:|---:|")
    out = work / "from_original"
    for m in res[True]["manifests"].values():
        for tube, centre, ring, n in mask_stats(out, m):
            print(f"| {tube} | {centre:.1f} | {ring:.1f} | {n} |")
    if a.figure:
        figure(out, res[True]["manifests"], a.figure)


if __name__ == "__main__":
    main()
