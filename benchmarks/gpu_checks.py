"""What only a CUDA machine can confirm (issue 14), checked in a few minutes; prints a Markdown block.

    .venv/bin/python benchmarks/gpu_checks.py                 # every check this machine can run
    .venv/bin/python benchmarks/gpu_checks.py --out gpu_checks.md --checks precision boxes

Checks (each says "skipped" with the reason when the machine cannot run it):

1. ``precision``: what ``train3d --amp auto`` picks on this GPU (``train.runtime.choose_amp``: fp16 + GradScaler
   below compute capability 8.0, bf16 from 8.0), and one I3D training step (16 x 224 x 224, batch 2, the
   ``benchmarks/train_step.py`` step, i.e. what ``train3d`` runs) in that precision and in bf16: it must be
   finite; on a pre-Ampere GPU (sm75: T4, RTX 20xx, RTX Titan) the bf16 step shows what ``auto`` now avoids.
2. ``boxes``: MTCNN boxes on synthetic faces (``facetubes.synthetic``) on this GPU with TF32 on and off, against
   CPU. With TF32 off (what facetubes runs) boxes must match CPU to 0.05 px; needs sm80+ (no TF32 before).
3. ``ddp``: two GPUs: ``train3d`` under torchrun (NCCL, 2 ranks, no ``--sync-bn``) on tiny tubes; both ranks must
   end with the same parameters *and* BatchNorm buffers, and the gathered validation loss must equal the loss
   of the saved ``last.pt`` validated alone. Needs 2 GPUs.

Without CUDA it prints one line and exits 0. Exit status 1 when a check that ran failed. ``benchmarks/gpu.py``
(``make bench-gpu``) runs it as a subprocess.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).resolve().parent)]

Row = tuple[str, str, str]  # check, result (PASS / FAIL / skipped / info), detail


def _sm(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# 1. precision


def check_precision(device: torch.device) -> list[Row]:
    from train_step import Step, auto_mode, train3d_settings

    from train.runtime import choose_amp

    cap = _sm(device)
    dtype, why = choose_amp("auto", device)
    expected = torch.bfloat16 if cap >= (8, 0) else torch.float16
    rows: list[Row] = [("precision: --amp auto", "PASS" if dtype == expected else "FAIL",
                        f"sm{cap[0]}{cap[1]}: {auto_mode(device)} ({why})")]
    train3d_settings(device)
    modes = [auto_mode(device)] + (["bf16"] if auto_mode(device) != "bf16" else [])
    for mode in modes:
        label = f"precision: I3D step in {mode}" + (" (auto)" if mode == modes[0] else " (forced)")
        try:
            step = Step("i3d", 2, 16, 224, mode, device, compile_=False)
            step()
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            s = (time.perf_counter() - t0) / 3
            finite = all(torch.isfinite(p).all() for p in step.model.parameters())
            rows.append((label, "PASS" if finite or mode != modes[0] else "FAIL",
                         f"{s * 1000:.0f} ms/step, weights {'finite' if finite else 'NOT finite'}"))
            del step
        except RuntimeError as e:  # e.g. a cuDNN failure for bf16 on a pre-Ampere GPU
            msg = " ".join(str(e).split())[:160]
            rows.append((label, "FAIL" if mode == modes[0] else "info", f"raised: {msg}"))
        torch.cuda.empty_cache()
    if cap >= (8, 0):
        rows.append(("precision: sm75 behaviour", "skipped", "needs a pre-Ampere GPU (sm75: T4, RTX 20xx, Titan RTX)"))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 2. detector boxes, TF32 on / off


def _frames(n_videos: int = 3, n_frames: int = 8) -> np.ndarray:
    from facetubes.synthetic import render

    out = []
    for k, scenario in enumerate(["one", "two", "one"][:n_videos]):
        frames, _ = render(scenario, width=480, height=270, n_frames=n_frames, seed=11 + k)
        out.append(np.asarray(frames))
    return np.concatenate(out)


def _boxes(device: str, frames: np.ndarray, tf32_on: bool) -> list[np.ndarray]:
    from facetubes.detect import make_detector
    from facetubes.precision import tf32

    det = make_detector(device)
    with tf32(tf32_on):
        return [b for b, _ in det.detect(frames)]


def _compare(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[int, int, int, float]:
    """(faces compared, faces moved >= 0.5 px, frames whose face count differs, largest move in px)."""
    n = moved = differ = 0
    worst = 0.0
    for x, y in zip(a, b):
        if len(x) != len(y):
            differ += 1
            continue
        if not len(x):
            continue
        x, y = x[np.lexsort(x.T[::-1])], y[np.lexsort(y.T[::-1])]
        d = np.abs(x - y).max(axis=1)
        n, moved, worst = n + len(d), moved + int((d >= 0.5).sum()), max(worst, float(d.max()))
    return n, moved, differ, worst


def check_boxes(device: torch.device) -> list[Row]:
    cap = _sm(device)
    if cap < (8, 0):
        return [("boxes: TF32 on / off", "skipped", f"sm{cap[0]}{cap[1]} has no TF32 (needs sm80+)")]
    frames = _frames()
    cpu = _boxes("cpu", frames, False)
    off = _boxes(str(device), frames, False)
    on = _boxes(str(device), frames, True)
    n, moved, differ, worst = _compare(cpu, off)
    ok = differ == 0 and worst <= 0.05 and n > 0
    rows: list[Row] = [("boxes: GPU, TF32 off (facetubes) vs CPU", "PASS" if ok else "FAIL",
                        f"{n} faces, {moved} moved >= 0.5 px, {differ} frames with another face count, "
                        f"largest move {worst:.3f} px")]
    n, moved, differ, worst = _compare(cpu, on)
    rows.append(("boxes: GPU, TF32 on vs CPU", "info", f"{n} faces, {moved} moved >= 0.5 px, {differ} frames with "
                                                      f"another face count, largest move {worst:.3f} px"))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 3. two GPUs: BatchNorm buffers after validation


def check_ddp(device: torch.device) -> list[Row]:
    if torch.cuda.device_count() < 2:
        return [("ddp: BN buffers after validation", "skipped",
                 f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")]
    sys.path.insert(0, str(REPO / "tests"))
    from test_train_fixtures import launcher_script, make_tube_set, register_tiny_models

    from train.config import TrainConfig
    from train.loop import Trainer
    from train.runtime import DistEnv

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tube_set(root / "tubes", n_groups=6, size=24, n_frames=8)
        run = root / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(launcher_script(root / "launch.py")), "3d", "--arch", "tiny3d", "--data", str(root / "tubes"),
               "--out", str(run), "--clip-len", "4", "--crop-size", "16", "--batch-size", "2", "--epochs", "2",
               "--num-workers", "0", "--no-progress", "--val-fraction", "0.34", "--device", "cuda", "--lr", "1e-3",
               "--amp", "none"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            return [("ddp: BN buffers after validation", "FAIL", "torchrun failed: " + " ".join(out.split())[-300:])]
        sums = dict(re.findall(r"rank (\d)/2: .* weight checksum (\S+),", out))
        rows = [("ddp: parameters + BN buffers equal on both ranks", "PASS" if len(set(sums.values())) == 1
                 and len(sums) == 2 else "FAIL", f"checksums {sums}")]
        register_tiny_models()
        cfg = TrainConfig(arch="tiny3d", data=str(root / "tubes"), out=str(run), clip_len=4, crop_size=16,
                          batch_size=4, epochs=2, num_workers=0, progress=False, device="cuda", lr=1e-3,
                          amp="none").validate()
        alone = Trainer(cfg, DistEnv(), resume=True)
        try:
            val = alone.validate()["val_loss"]
        finally:
            alone.close()
        gathered = float(list(csv.DictReader((run / "metrics.csv").open()))[-1]["val_loss"])
        ok = math.isclose(val, gathered, rel_tol=2e-5)
        rows.append(("ddp: gathered val loss = last.pt alone", "PASS" if ok else "FAIL",
                     f"gathered {gathered:.6g}, alone {val:.6g}"))
        return rows


CHECKS: dict[str, Callable[[torch.device], list[Row]]] = {"precision": check_precision, "boxes": check_boxes,
                                                            "ddp": check_ddp}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", nargs="+", choices=sorted(CHECKS), default=list(CHECKS))
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown block to this file")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_checks: no CUDA device on this machine; nothing to check")
        return 0
    device = torch.device("cuda", 0)
    cap = _sm(device)
    lines = [f"### GPU checks: {torch.cuda.get_device_name(device)} (sm{cap[0]}{cap[1]}), "
             f"{torch.cuda.device_count()} GPU(s), torch {torch.__version__}", "",
             "| check | result | detail |", "|---|---|---|"]
    failed = False
    for name in a.checks:
        try:
            rows = CHECKS[name](device)
        except Exception as e:  # one broken check must not hide the others
            rows = [(name, "FAIL", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")]
        for check, result, detail in rows:
            failed |= result == "FAIL"
            lines.append(f"| {check} | {result} | {detail.replace('|', '/')} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
