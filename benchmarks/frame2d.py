"""2D frame backbones of the DFDC recipes: training-step and inference frames per second, and the recipe data loader.

    .venv/bin/python benchmarks/frame2d.py --device cpu --batch 2 --repeat 2         # the recipes' backbones
    .venv/bin/python benchmarks/frame2d.py --device cuda --batch 32 --amp bf16       # GPU: AMP + channels_last
    .venv/bin/python benchmarks/frame2d.py --all --device cuda                       # every registered 2D model
    .venv/bin/python benchmarks/frame2d.py --loader ../shared/data/real/medics_tubes --archs tf_efficientnet_b7_ns
    .venv/bin/python benchmarks/frame2d.py --loader ../shared/data/real/medics_tubes --no-models

Models (random weights, ``pretrained=False``) at the input size their recipe trains (``train/configs/dfdc-*.yaml``;
``--all``: every registered 2D model at its preset size). A training step is what ``train2d`` does per batch:
uint8 frames -> ``preset.normalize`` -> (channels_last on CUDA) -> autocast forward -> BCE -> backward -> SGD step;
inference is an ``eval()`` + ``inference_mode`` forward. Timed in-process after one warm-up call; model building
and start-up are not counted. CUDA times are synchronised.

``--loader DIR``: frames per second of ONE data-loading process (``TubeDataset`` in the main process, no workers)
for the 1st-place recipe (random frame decode from 256-px tube MP4s, part dropout along landmarks written into a
temporary ``tubes.json``, the recipe augmentation at 380 px), next to the training step of the same run: the
number of workers that keeps one training step fed is ``step fps / loader fps``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models3d  # noqa: E402

# backbone -> (input size, recipe) as trained by the shipped recipes
RECIPE_BACKBONES: dict[str, tuple[int, str]] = {
    "tf_efficientnet_b7_ns": (380, "dfdc-1st"),
    "resnet34": (224, "dfdc-bronze"),
    "efficientnet_b4": (224, "dfdc-79th"),
    "xception": (150, "dfdc-67th"),
    "efficientnet_b1": (150, "dfdc-67th"),
    "seresnext50": (256, "dfdc-5th-2d"),
}
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeat: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (this process, all threads) of ``fn()`` over ``repeat`` calls
    after one warm-up. On a CPU shared with other jobs the CPU seconds are the steadier figure."""
    fn()
    _sync(device)
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def measure(arch: str, size: int, batch: int, device: torch.device, amp: str, repeat: int,
            options: Optional[dict] = None) -> dict[str, float]:
    """``{train_fps, infer_fps, train_s, infer_s, train_cpu_s, infer_cpu_s}`` of ``arch`` at ``size`` px,
    ``batch`` frames per step (``*_s``: wall seconds per step; ``*_cpu_s``: CPU seconds per step)."""
    model = models3d.create_model(arch, num_classes=1, **(options or {})).to(device)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    dtype = DTYPES[amp]
    ctx = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = (torch.arange(batch, device=device) % 2).float().unsqueeze(1)

    def step() -> None:
        inp = model.preset.normalize(x).contiguous(memory_format=fmt)
        with ctx():
            loss = F.binary_cross_entropy_with_logits(model(inp).float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    model.train()
    train_s, train_cpu = _timed(step, device, repeat)
    model.eval()

    def infer() -> None:
        with torch.inference_mode(), ctx():
            model(model.preset.normalize(x).contiguous(memory_format=fmt))

    infer_s, infer_cpu = _timed(infer, device, repeat)
    del model, opt
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"train_s": train_s, "infer_s": infer_s, "train_fps": batch / train_s, "infer_fps": batch / infer_s,
            "train_cpu_s": train_cpu, "infer_cpu_s": infer_cpu}


def loader_fps(tube_dir: Path, size: int, n: int) -> tuple[float, float, int]:
    """(wall frames/s, frames per CPU second, samples whose part dropout was skipped) of one process producing
    1st-place training samples from the tubes in ``tube_dir``."""
    from facetubes.manifest import TubeRecord
    from facetubes.video import probe
    from train.augment2d import recipe_train_transform
    from train.config import resolve_config
    from train.data import TubeDataset

    cfg = resolve_config(task="2d", arch=None, config_file="dfdc-1st")
    tubes = sorted(tube_dir.glob("*.mp4"))
    if not tubes:
        raise SystemExit(f"error: {tube_dir}: no .mp4 tubes")
    tmp = Path(tempfile.mkdtemp(prefix="frame2d_loader_"))
    try:
        recs = []
        for i, src in enumerate(tubes):
            info = probe(src)
            d = tmp / f"v{i:03d}"
            d.mkdir()
            shutil.copy(src, d / "t0.mp4")
            s = info.width / 256.0  # landmarks of a centred face in a 256-px tube, scaled to the tube
            lm = [[96 * s, 110 * s], [160 * s, 110 * s], [128 * s, 145 * s], [100 * s, 180 * s], [156 * s, 180 * s]]
            (d / "tubes.json").write_text(json.dumps({"tubes": [{"tube": f"v{i:03d}_t0", "track": 0, "tube_landmarks": [
                [f, lm] for f in range(0, info.n_frames, 10)]}]}))
            recs.append(TubeRecord(tube=f"v{i:03d}_t0", path=d / "t0.mp4", video=f"v{i:03d}", source=str(src),
                                   track=0, part=0, start_frame=0, stop_frame=info.n_frames, n_frames=info.n_frames,
                                   fps=info.fps, size=info.width, mean_prob=1.0, label=i % 2, group=f"v{i:03d}"))
        ds = TubeDataset(recs, mode="frame", train=True, transform=recipe_train_transform(cfg, size),
                         part_dropout=(cfg.part_dropout_p, cfg.half_dropout_p), max_substitutes=0)
        ds[(0, 0)]  # warm-up (imports, codec)
        skipped = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(n):
            s = ds[(k % len(ds), 1000 + k)]
            skipped += s.no_landmarks
        return n / (time.perf_counter() - t0), n / (time.process_time() - c0), skipped
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--amp", default="fp32", choices=sorted(DTYPES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=None, help="default: the recipes' backbones")
    ap.add_argument("--all", action="store_true", help="every registered 2D model at its preset size")
    ap.add_argument("--no-models", action="store_true", help="only the loader measurement")
    ap.add_argument("--loader", type=Path, default=None, help="folder of tube MP4s for the loader measurement")
    ap.add_argument("--loader-samples", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but CUDA is not available on this machine")
    if args.batch < 1 or args.repeat < 1:
        sys.exit("error: --batch and --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_models:
        plan = {}
    elif args.all:
        plan = {n: (models3d.get_preset(n).crop_size, "preset") for n in models3d.list_models()
                if not models3d.get_preset(n).is_3d}
    else:
        names = args.archs or list(RECIPE_BACKBONES)
        unknown = [n for n in names if n not in models3d.list_models()]
        if unknown:
            sys.exit(f"error: unknown model(s): {', '.join(unknown)}")
        plan = {n: RECIPE_BACKBONES.get(n, (models3d.get_preset(n).crop_size, "preset")) for n in names}
    print(f"device {device}, amp {args.amp}, batch {args.batch}, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    if plan:
        print("| model | recipe | px | train frames/s | inference frames/s | train s/step | train CPU s/step | "
              "inference CPU s/step |")
        print("|---|---|---:|---:|---:|---:|---:|---:|", flush=True)
    results = {}
    for name, (size, recipe) in plan.items():
        r = measure(name, size, args.batch, device, args.amp, args.repeat)
        results[name] = r
        print(f"| {name} | {recipe} | {size} | {r['train_fps']:.2f} | {r['infer_fps']:.2f} | {r['train_s']:.3f} | "
              f"{r['train_cpu_s']:.3f} | {r['infer_cpu_s']:.3f} |", flush=True)
    if args.loader is not None:
        size = RECIPE_BACKBONES["tf_efficientnet_b7_ns"][0]
        fps, cpu_fps, skipped = loader_fps(args.loader, size, args.loader_samples)
        print(f"\nloader (1 process, dfdc-1st recipe at {size} px, {args.loader_samples} samples, part dropout "
              f"skipped {skipped}): {fps:.1f} frames/s wall, {cpu_fps:.1f} frames per CPU second")
        if "tf_efficientnet_b7_ns" in results:
            step = results["tf_efficientnet_b7_ns"]["train_fps"]
            print(f"B7 training step here: {step:.2f} frames/s -> {step / fps:.2f} loader processes per step")


if __name__ == "__main__":
    main()
