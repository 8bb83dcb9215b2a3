"""Training-step speed and peak memory of every models3d network, FP32 against AMP, measured in the same run.

One training step = forward + cross-entropy + backward on a random batch (no optimizer step). Per model, one
spawned process builds the network once and times FP32 and AMP steps *interleaved* (one step of each in turn,
``--iters`` rounds after ``--warmup``), so a busy machine slows both alike; figures are the median step time.
Peak memory:

- CUDA: ``torch.cuda.max_memory_allocated`` during that precision's steps (weights + gradients + activations);
- CPU: in a separate fresh process per (model, precision), the peak RSS growth over one step
  (``ru_maxrss`` minus the RSS before the model was built).

Shapes default to each model's preset (training clip length and crop: I3D 64x224x224, the others 32x112x112,
the 2D model 224x224); ``--frames`` / ``--size`` override them for every model.

    .venv/bin/python benchmarks/models.py --device cpu --batch 2 --frames 16 --size 112 --iters 3
    .venv/bin/python benchmarks/models.py --device cuda --batch 8
    .venv/bin/python benchmarks/models.py --device cuda --max-batch --models i3d --budget-gb 24

``--max-batch`` (CUDA only) caps this process at ``--budget-gb`` with
``torch.cuda.set_per_process_memory_fraction`` and finds the largest batch whose training step fits
(doubling, then bisection).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from queue import Empty
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models3d  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _shape(name: str, batch: int, frames: int | None, size: int | None) -> tuple[int, ...]:
    p = models3d.get_preset(name)
    s = size or p.crop_size
    return (batch, 3, frames or p.clip_len, s, s) if p.is_3d else (batch, 3, s, s)


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: str | None, device: str) -> None:
    """One forward + backward; gradients are dropped afterwards."""
    with torch.autocast(device_type=device, dtype=DTYPES[amp or "bf16"], enabled=amp is not None):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    model.zero_grad(set_to_none=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _build(name: str, shape: tuple[int, ...], device: str, channels_last: bool):
    model = models3d.create_model(name).to(device).train()
    x = torch.randn(shape, device=device)
    if channels_last:
        fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
        model = model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, model.num_classes, (shape[0],), device=device)
    return model, x, y


def time_steps(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Time training steps of one model for every precision in ``cfg['precisions']``, interleaved.

    After ``warmup`` steps per precision, ``iters`` rounds each run one step per precision in turn, so a noisy
    machine slows all precisions alike; the median step time gives clips/s. On CUDA the peak memory of each
    precision's steps is recorded too. Returns one row per precision.
    """
    device, name = cfg["device"], cfg["model"]
    torch.manual_seed(0)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    shape = _shape(name, cfg["batch"], cfg["frames"], cfg["size"])
    model, x, y = _build(name, shape, device, cfg["channels_last"])
    precs = cfg["precisions"]
    times: dict[Any, list[float]] = {p: [] for p in precs}
    peaks = {p: 0.0 for p in precs}
    for _ in range(cfg["warmup"]):
        for p in precs:
            _step(model, x, y, p, device)
    for _ in range(cfg["iters"]):
        for p in precs:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            t0 = time.perf_counter()
            _step(model, x, y, p, device)
            _sync(device)
            times[p].append(time.perf_counter() - t0)
            if device == "cuda":
                peaks[p] = max(peaks[p], torch.cuda.max_memory_allocated() / 2**20)
    rows = []
    for p in precs:
        med = statistics.median(times[p])
        rows.append({"model": name, "amp": p, "shape": list(shape), "clips_per_s": cfg["batch"] / med,
                     "s_per_step": med, "s_min": min(times[p]), "s_max": max(times[p]),
                     "peak_mib": peaks[p] if device == "cuda" else None})
    return rows


def cpu_peak_rss(cfg: dict[str, Any]) -> float:
    """Peak RSS growth (MiB) of this process over one training step of one precision (``cfg['amp']``)."""
    torch.manual_seed(0)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    shape = _shape(cfg["model"], cfg["batch"], cfg["frames"], cfg["size"])
    rss0 = _rss_mib()
    model, x, y = _build(cfg["model"], shape, "cpu", cfg["channels_last"])
    _step(model, x, y, cfg["amp"], "cpu")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0


def _worker(job: str, cfg: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(time_steps(cfg) if job == "time" else cpu_peak_rss(cfg))
    except Exception as exc:  # reported as a row, never fatal to the whole benchmark
        queue.put(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


def run_isolated(job: str, cfg: dict[str, Any]) -> Any:
    """Run ``job`` ("time" or "rss") in a fresh spawned process; an error comes back as a string."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(job, cfg, queue))
    proc.start()
    result = None
    while result is None:
        try:
            result = queue.get(timeout=1.0)
        except Empty:
            if not proc.is_alive():  # died without answering (e.g. killed for memory); last look at the pipe
                try:
                    result = queue.get(timeout=1.0)
                except Empty:
                    break
    proc.join()
    if result is None:
        result = f"worker exited with code {proc.exitcode} (out of memory?)"
    return result


def _fits(name: str, batch: int, args: argparse.Namespace, amp: str | None) -> tuple[bool, float]:
    """Whether a training step at ``batch`` fits in the capped CUDA memory; returns (fits, peak MiB)."""
    shape = _shape(name, batch, args.frames, args.size)
    model = x = y = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model, x, y = _build(name, shape, "cuda", args.channels_last)
        for _ in range(2):
            _step(model, x, y, amp, "cuda")
        torch.cuda.synchronize()
        return True, torch.cuda.max_memory_allocated() / 2**20
    except torch.cuda.OutOfMemoryError:
        return False, float("nan")
    finally:
        del model, x, y
        torch.cuda.empty_cache()


def max_batch(name: str, args: argparse.Namespace, amp: str | None) -> tuple[int, float]:
    """Largest batch whose training step fits in ``args.budget_gb`` GiB (0 if even batch 1 does not)."""
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, args.budget_gb * 2**30 / total))
    good, bad, peak = 0, None, float("nan")
    b = 1
    while bad is None:  # doubling
        ok, p = _fits(name, b, args, amp)
        if ok:
            good, peak, b = b, p, b * 2
        else:
            bad = b
        if b > 4096:
            break
    while bad is not None and bad - good > 1:  # bisection
        mid = (good + bad) // 2
        ok, p = _fits(name, mid, args, amp)
        if ok:
            good, peak = mid, p
        else:
            bad = mid
    return good, peak


def _table(rows: list[dict[str, Any]]) -> str:
    out = ["| model | input (B,C,[T,]H,W) | precision | clips/s | s/step median (min-max) | peak MiB | AMP/FP32 speed |",
           "|---|---|---|---:|---:|---:|---:|"]
    fp32 = {r["model"]: r for r in rows if r["amp"] is None and "error" not in r}
    for r in rows:
        prec = "fp32" if r["amp"] is None else f"amp {r['amp']}"
        if "error" in r:
            out.append(f"| {r['model']} | | {prec} | error: {r['error']} | | | |")
            continue
        ratio = ""
        if r["amp"] is not None and r["model"] in fp32:
            ratio = f"{r['clips_per_s'] / fp32[r['model']]['clips_per_s']:.2f}x"
        shape = "x".join(map(str, r["shape"]))
        out.append(f"| {r['model']} | {shape} | {prec} | {r['clips_per_s']:.2f} | {r['s_per_step']:.3f} "
                   f"({r['s_min']:.3f}-{r['s_max']:.3f}) | {r['peak_mib']:.0f} | {ratio} |")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default=",".join(models3d.list_models()),
                    help="comma-separated registry names (default: all)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=None, help="clip length for 3D models (default: preset)")
    ap.add_argument("--size", type=int, default=None, help="crop size (default: preset)")
    ap.add_argument("--amp", choices=["off", "on", "both"], default="both",
                    help="FP32, autocast, or both in the same run (default)")
    ap.add_argument("--amp-dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="channels_last(_3d) memory format for model and input (default on)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--max-batch", action="store_true",
                    help="CUDA only: largest batch per model fitting --budget-gb, instead of timing")
    ap.add_argument("--budget-gb", type=float, default=24.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    unknown = set(args.models.split(",")) - set(models3d.list_models())
    if unknown:
        ap.error(f"unknown model(s) {sorted(unknown)}; choose from {models3d.list_models()}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    if args.max_batch and args.device != "cuda":
        ap.error("--max-batch needs --device cuda (the memory budget is CUDA memory)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.models.split(",")
    precisions = {"off": [None], "on": [args.amp_dtype], "both": [None, args.amp_dtype]}[args.amp]
    threads = args.threads or torch.get_num_threads()
    env = (f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
           f"{threads} threads" if args.device == "cpu"
           else f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    print(f"# {' '.join(sys.argv)}\n# {env}, channels_last={args.channels_last}")
    if args.max_batch:
        for name in names:
            for amp in precisions:
                b, peak = max_batch(name, args, amp)
                shape = _shape(name, b, args.frames, args.size)
                print(f"{name} {'fp32' if amp is None else 'amp ' + amp}: max batch {b} "
                      f"({'x'.join(map(str, shape[1:]))}) within {args.budget_gb:g} GiB, peak {peak:.0f} MiB")
        return 0
    rows: list[dict[str, Any]] = []
    for name in names:
        cfg = {"model": name, "device": args.device, "batch": args.batch, "frames": args.frames,
               "size": args.size, "precisions": precisions, "channels_last": args.channels_last,
               "warmup": args.warmup, "iters": args.iters, "threads": args.threads}
        result = run_isolated("time", cfg)
        if isinstance(result, str):
            rows += [{"model": name, "amp": p, "error": result} for p in precisions]
            continue
        for row in result:
            if args.device == "cpu":
                rss = run_isolated("rss", {**cfg, "amp": row["amp"]})
                row["peak_mib"] = rss if isinstance(rss, float) else float("nan")
            print(json.dumps({k: row.get(k) for k in ("model", "amp", "clips_per_s", "peak_mib")}), flush=True)
        rows += result
    print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
