"""Training-step throughput and memory of a registry model: FP32 vs mixed precision, and the largest batch that fits.

    .venv/bin/python benchmarks/train_step.py --device cuda                  # I3D, 64 x 224 x 224, fp32/bf16/fp16
    .venv/bin/python benchmarks/train_step.py --device cuda --mem-gb 24      # max batch on a 24 GB card
    .venv/bin/python benchmarks/train_step.py --device cpu --batch 1 --modes fp32 bf16

One step is what ``train3d`` does per batch, with its CUDA settings (``cudnn.benchmark`` on, TF32 off unless
``--tf32``): uint8 clips -> ``preset.normalize`` -> (channels_last_3d on CUDA) -> autocast forward -> soft-target
cross-entropy -> backward (GradScaler for fp16) -> AdamW step. Mode ``auto`` is what ``train3d --amp auto`` picks
on this device (``train.runtime.choose_amp``: bf16 from compute capability 8.0, else fp16); bf16 is skipped on
GPUs without bf16 tensor cores (emulated there). Reported per mode:
seconds per step, clips per second, and peak memory (CUDA: ``max_memory_allocated``; CPU: the process's peak
RSS). On CUDA ``--mem-gb`` caps the usable memory with ``set_per_process_memory_fraction`` and the largest batch
is found by doubling then bisecting until out-of-memory; ``--compile`` adds ``torch.compile``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models3d  # noqa: E402
from facetubes.precision import set_tf32  # noqa: E402
from train.mixing import one_hot_targets, soft_target_loss  # noqa: E402
from train.runtime import BF16_MIN_CAPABILITY, choose_amp, precision_name  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def train3d_settings(device: torch.device, tf32: bool = False) -> None:
    """The process-wide CUDA settings ``train3d`` runs under (``Trainer._start``)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    set_tf32(tf32)


def auto_mode(device: torch.device) -> str:
    """The mode ``--amp auto`` resolves to on ``device``: ``fp32``, ``bf16`` or ``fp16``."""
    return precision_name(choose_amp("auto", device)[0])


class Step:
    """A model, its optimizer and scaler, and one synthetic batch; ``__call__`` runs one training step."""

    def __init__(self, arch: str, batch: int, clip: int, crop: int, mode: str, device: torch.device,
                 compile_: bool) -> None:
        self.device, self.dtype = device, DTYPES[mode]
        self.model = models3d.create_model(arch, num_classes=2).to(device)
        self.fmt = torch.contiguous_format
        if device.type == "cuda":
            self.fmt = torch.channels_last_3d if self.model.preset.is_3d else torch.channels_last
            self.model = self.model.to(memory_format=self.fmt)
        self.net = torch.compile(self.model) if compile_ else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
        shape = (batch, 3, clip, crop, crop) if self.model.preset.is_3d else (batch, 3, crop, crop)
        self.x = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
        self.y = one_hot_targets(torch.arange(batch, device=device) % 2, 2)

    def __call__(self) -> None:
        x = self.model.preset.normalize(self.x).contiguous(memory_format=self.fmt)
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with ctx:
            logits = self.net(x)
        loss = soft_target_loss(logits, self.y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def measure(arch: str, batch: int, clip: int, crop: int, mode: str, device: torch.device, repeat: int,
            compile_: bool) -> tuple[float, float]:
    """(median seconds per step, peak memory in GiB)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = Step(arch, batch, clip, crop, mode, device, compile_)
    step()
    step()  # warm-up: cuDNN autotuning, compilation, optimizer state
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    del step
    gc.collect()
    return statistics.median(times), peak


def fits(arch: str, batch: int, clip: int, crop: int, mode: str, device: torch.device) -> bool:
    try:
        measure(arch, batch, clip, crop, mode, device, repeat=1, compile_=False)
        return True
    except torch.OutOfMemoryError:
        gc.collect()
        torch.cuda.empty_cache()
        return False


def max_batch(arch: str, clip: int, crop: int, mode: str, device: torch.device, limit: int = 512) -> int:
    """Largest batch that trains without running out of (capped) CUDA memory: doubling, then bisection."""
    lo, hi = 0, 1
    while hi <= limit and fits(arch, hi, clip, crop, mode, device):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(arch, mid, clip, crop, mode, device) else (lo, mid)
    return lo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="i3d")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip-len", type=int, default=None, help="default: the model preset (I3D 64)")
    ap.add_argument("--crop-size", type=int, default=None, help="default: the model preset (I3D 224)")
    ap.add_argument("--modes", nargs="+", default=["fp32", "bf16", "fp16"], choices=sorted(DTYPES) + ["auto"],
                    help="auto: what train3d --amp auto picks here")
    ap.add_argument("--tf32", action="store_true", help="as train3d --tf32 (default off, as train3d)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mem-gb", type=float, default=24.0, help="CUDA memory cap for the max-batch search")
    ap.add_argument("--no-max-batch", action="store_true")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but CUDA is not available on this machine")
    preset = models3d.get_preset(a.arch)
    clip, crop = a.clip_len or preset.clip_len, a.crop_size or preset.crop_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    print(f"# {a.arch} train step, {clip} x {crop} x {crop}, batch {a.batch}, on {name}; torch {torch.__version__}"
          f", {os.cpu_count()} CPUs{', compiled' if a.compile else ''}")
    train3d_settings(device, a.tf32)
    modes = list(dict.fromkeys(auto_mode(device) if m == "auto" else m for m in a.modes))
    modes = [m for m in modes if not (m == "fp16" and device.type == "cpu")]
    if device.type == "cuda" and "bf16" in modes:
        cap = torch.cuda.get_device_capability(device)
        if tuple(cap) < BF16_MIN_CAPABILITY:
            print(f"# bf16 skipped: sm{cap[0]}{cap[1]} has no bf16 tensor cores (train3d --amp auto picks fp16)")
            modes.remove("bf16")
    print(f"# train3d --amp auto here: {auto_mode(device)}; cudnn.benchmark "
          f"{torch.backends.cudnn.benchmark if device.type == 'cuda' else 'n/a'}, TF32 {'on' if a.tf32 else 'off'}")
    print("| mode | s/step | clips/s | peak memory (GiB) |\n|---|---|---|---|")
    base: Optional[float] = None
    for mode in modes:
        s, peak = measure(a.arch, a.batch, clip, crop, mode, device, a.repeat, a.compile)
        base = base or s
        print(f"| {mode} | {s:.3f} | {a.batch / s:.1f} ({base / s:.2f}x) | {peak:.1f} |")
    if device.type == "cuda" and not a.no_max_batch:
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        frac = min(1.0, a.mem_gb / total)
        torch.cuda.set_per_process_memory_fraction(frac, device)
        print(f"\nlargest batch within {a.mem_gb:g} GiB ({frac:.2f} of {total:.0f} GiB):")
        for mode in modes:
            print(f"- {mode}: {max_batch(a.arch, clip, crop, mode, device)}")


if __name__ == "__main__":
    main()
