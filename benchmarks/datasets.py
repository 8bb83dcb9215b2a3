"""Dataset readers at full scale: reading the labels of a full-size FF++ tree and of all 50 DFDC metadata files,
and matching them to a full-size index by source path.

The trees are generated with empty placeholder files (the readers only look at paths and label files):

- FF++: 1000 youtube originals + 5 methods x 1000 fakes, in c23 and c40 (12,000 files) and the official-split
  JSONs (pairs 0..999 as 360/70/70 pairs, like the real lists' sizes);
- DFDC: 50 parts x 2,400 metadata entries (120,000 videos; ~100k fakes of ~20k originals), no video files (every
  video is "absent": the summary counts and names them).

In-process figures (the interpreter start and imports are not counted):

    .venv/bin/python benchmarks/datasets.py             # full size
    .venv/bin/python benchmarks/datasets.py --scale 0.1 # a tenth
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from facetubes.datasets import load
from facetubes.manifest import find_label


def make_ffpp(root: Path, n: int) -> list[str]:
    ids = [f"{i:03d}" for i in range(n)]
    pairs = [(ids[i], ids[i + 1]) for i in range(0, n - 1, 2)]
    sources = []
    for c in ("c23", "c40"):
        d = root / "original_sequences/youtube" / c / "videos"
        d.mkdir(parents=True)
        for i in ids:
            (d / f"{i}.mp4").touch()
            sources.append(str(d / f"{i}.mp4"))
        for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter"):
            d = root / "manipulated_sequences" / m / c / "videos"
            d.mkdir(parents=True)
            for a, b in pairs:
                for t, s in ((a, b), (b, a)):
                    (d / f"{t}_{s}.mp4").touch()
                    sources.append(str(d / f"{t}_{s}.mp4"))
    (root / "splits").mkdir()
    k1, k2 = int(len(pairs) * 0.72), int(len(pairs) * 0.86)
    for name, part in (("train", pairs[:k1]), ("val", pairs[k1:k2]), ("test", pairs[k2:])):
        (root / "splits" / f"{name}.json").write_text(json.dumps([list(p) for p in part]))
    return sources


def make_dfdc(root: Path, parts: int, per_part: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for p in range(parts):
        meta = {}
        originals = [f"p{p:02d}r{i:05d}" for i in range(per_part // 6)]
        for o in originals:
            meta[f"{o}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        for i in range(per_part - len(originals)):
            meta[f"p{p:02d}f{i:05d}.mp4"] = {"label": "FAKE", "split": "train",
                                             "original": f"{rng.choice(originals)}.mp4"}
        d = root / f"dfdc_train_part_{p}"
        d.mkdir(parents=True)
        (d / "metadata.json").write_text(json.dumps(meta))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes (default: 1)")
    a = ap.parse_args(argv)
    if not 0 < a.scale <= 1:
        print("error: --scale must lie in (0, 1]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n = max(4, int(1000 * a.scale)) // 2 * 2
        t0 = time.perf_counter()
        sources = make_ffpp(tmp / "ffpp", n)
        make_dfdc(tmp / "dfdc", max(1, int(50 * a.scale)), 2400)
        print(f"generated {len(sources)} FF++ files and {max(1, int(50 * a.scale))} DFDC metadata files in "
              f"{time.perf_counter() - t0:.1f} s")
        for name, roots in (("ffpp", [tmp / "ffpp"]), ("dfdc", [tmp / "dfdc"]), ("both", [tmp / "ffpp", tmp / "dfdc"])):
            t0 = time.perf_counter()
            ls = load(roots)
            dt = time.perf_counter() - t0
            n_videos = sum(len(r.entries) for r in ls.results)
            groups = len({v.group for v in ls.labels.values()})
            print(f"load {name}: {n_videos} videos, {groups} groups, {len(ls.absent())} absent: {dt:.2f} s "
                  f"({dt / n_videos * 1e6:.1f} us per video)")
        ls = load([tmp / "ffpp"])
        t0 = time.perf_counter()
        hits = sum(find_label(ls.labels, Path(s).stem, "/mnt/copy/" + s.split("/ffpp/", 1)[1]) is not None
                   for s in sources)
        dt = time.perf_counter() - t0
        print(f"match {len(sources)} FF++ index rows by source-path tail: {hits} found, {dt:.3f} s "
              f"({dt / len(sources) * 1e6:.1f} us per row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
