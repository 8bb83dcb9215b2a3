"""Bootstrap confidence intervals: the vectorised ``infer.bootstrap.bootstrap_ci`` against a plain loop that draws
indices and calls ``roc_auc`` + ``log_loss`` once per resample (the baseline, measured in the same run).

In-process timing (no CLI start-up, no import time): wall-clock (and process CPU time) best of ``--repeat`` runs
of ``bootstrap_ci`` with ``--resamples`` resamples of ``--videos`` synthetic videos (half fake, scores rounded to
3 decimals, so there are ties). The loop baseline runs ``--loop-resamples`` resamples and is scaled to ``--resamples``. Also times clustered resampling
(``--frames`` frames per video, whole videos resampled), as ``evaluate --level frame --bootstrap`` does.

    .venv/bin/python benchmarks/bootstrap.py
    .venv/bin/python benchmarks/bootstrap.py --videos 10000 --resamples 1000 --frames 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infer.bootstrap import bootstrap_ci  # noqa: E402
from infer.metrics import log_loss, roc_auc  # noqa: E402


def best_of(fn, repeat: int, clock=time.perf_counter) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def loop_baseline(y: np.ndarray, p: np.ndarray, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        idx = rng.integers(0, y.size, y.size)
        if 0 < y[idx].sum() < y.size:
            roc_auc(y[idx], p[idx])
        log_loss(y[idx], p[idx])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=10_000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--loop-resamples", type=int, default=100)
    ap.add_argument("--frames", type=int, default=32, help="frames per video for the clustered case (0: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if min(a.videos, a.resamples, a.loop_resamples, a.repeat) < 1 or a.videos < 2 or a.frames < 0:
        print("error: --videos >= 2, --resamples/--loop-resamples/--repeat >= 1, --frames >= 0", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    y = (np.arange(a.videos) % 2).astype(np.int64)
    p = np.round(np.clip(0.5 + 0.2 * (2 * y - 1) + rng.normal(0, 0.25, a.videos), 0, 1), 3)
    vec = best_of(lambda: bootstrap_ci(y, p, n_resamples=a.resamples, seed=1), a.repeat)
    vec_cpu = best_of(lambda: bootstrap_ci(y, p, n_resamples=a.resamples, seed=1), a.repeat, time.process_time)
    loop = best_of(lambda: loop_baseline(y, p, a.loop_resamples, 1), 1) * a.resamples / a.loop_resamples
    out = {"videos": a.videos, "resamples": a.resamples, "vectorised_s": round(vec, 4),
           "vectorised_cpu_s": round(vec_cpu, 4),
           "loop_s_scaled": round(loop, 3), "speedup": round(loop / vec, 1)}
    if a.frames:
        yf, pf = np.repeat(y, a.frames), np.clip(np.repeat(p, a.frames) + rng.normal(0, 0.05, y.size * a.frames), 0, 1)
        vid = np.repeat(np.arange(a.videos), a.frames)
        out["clustered_frames"] = int(yf.size)
        run = lambda: bootstrap_ci(yf, pf, n_resamples=a.resamples, seed=1, clusters=vid)  # noqa: E731
        out["clustered_s"] = round(best_of(run, a.repeat), 3)
        out["clustered_cpu_s"] = round(best_of(run, a.repeat, time.process_time), 3)
    out["python"] = platform.python_version()
    out["numpy"] = np.__version__
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
