"""Every GPU figure in one run (``make bench-gpu``), written into benchmarks/RESULTS.md with the device named.

    .venv/bin/python benchmarks/gpu.py                 # all steps, 8 minutes at most
    .venv/bin/python benchmarks/gpu.py --budget 300 --dry-run   # print the plan, run nothing

Steps (each a subprocess with its own time limit, skipped when the remaining budget is too short):

1. extraction with ``--device cuda``: ``single_decode.py`` on the real DFDC videos when ``../shared`` has them,
   else ``extract.py`` on synthetic 1080p videos (generated first, not timed);
2. a training step of each registered architecture with AMP (bf16, fp16) and channels_last (``train_step.py``),
   against the data loader's clips per second for the same preset (``dataloading.py --skip-model``);
3. ensemble inference per video (``ensemble.py --device cuda``);
4. ``gpu_checks.py`` (GPU correctness checks), when present;
5. the frame recipes' B7 training step (bf16, 380 px) against one 1st-place loader process (``frame2d.py``), when
   ``../shared`` has the sample tubes: 16 cores must give the step its frames.

The outputs (markdown tables, as each script prints them) go under one ``## GPU figures`` section of RESULTS.md,
replaced on every run, with the device, torch/CUDA versions, the git commit and each step's exact command.
Without CUDA it stops with one line and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "RESULTS.md"
HEADING = "## GPU figures (`make bench-gpu`, benchmarks/gpu.py)"
SHARED_DFDC = next((p / "shared" / "data" / "real" / "dfdc" for p in (ROOT.parent, ROOT.parent.parent)
                    if (p / "shared" / "data" / "real" / "dfdc").is_dir()), None)
SHARED_TUBES = next((p / "shared" / "data" / "real" / "medics_tubes" for p in (ROOT.parent, ROOT.parent.parent)
                     if (p / "shared" / "data" / "real" / "medics_tubes").is_dir()), None)


def architectures() -> list[tuple[str, tuple[int, int]]]:
    """``(name, (clip_len, crop_size))`` of every registered architecture, one EfficientNet (the largest
    registered: the published 1st place's B7) standing for its family, so the run fits in the budget."""
    sys.path.insert(0, str(ROOT))
    import models3d

    names = list(models3d.list_models())
    effnets = [n for n in names if "efficientnet" in n]
    keep = [n for n in names if "efficientnet" not in n]
    for pick in ("tf_efficientnet_b7_ns", "tf_efficientnet_b7", "efficientnet_b7"):
        if pick in effnets:
            keep.append(pick)
            break
    else:
        keep += effnets[-1:]
    out = []
    for n in keep:
        p = models3d.get_preset(n)
        out.append((n, (int(p.clip_len), int(p.crop_size))))
    return out


def plan(device: str) -> list[tuple[str, list[str], int]]:
    """``(title, argv, time limit s)`` per step, in running order (the per-architecture steps last: when time
    runs out, they are the ones skipped)."""
    py = sys.executable
    steps: list[tuple[str, list[str], int]] = []
    if SHARED_DFDC is not None:
        steps.append(("extraction, real DFDC videos", [py, str(BENCH / "single_decode.py"), "--device", device,
                                                       "--no-batch", "--no-memory"], 90))
    else:
        steps.append(("extraction, synthetic 1080p videos", [py, str(BENCH / "extract.py"), "--device", device,
                                                             "--videos", "2", "--grain", "4", "--no-memory"], 90))
    steps.append(("ensemble inference per video", [py, str(BENCH / "ensemble.py"), "--device", device,
                                                   "--videos", "3"], 80))
    checks = BENCH / "gpu_checks.py"
    if checks.exists():
        steps.append(("GPU correctness checks (gpu_checks.py)", [py, str(checks)], 90))
    if SHARED_TUBES is not None:  # issue 10: one 1st-place loader process against the B7 step (AMP, 380 px)
        steps.append(("frame recipes: B7 training step vs one dfdc-1st loader process",
                      [py, str(BENCH / "frame2d.py"), "--device", device, "--amp", "bf16", "--batch", "16",
                       "--archs", "tf_efficientnet_b7_ns", "--repeat", "3", "--loader", str(SHARED_TUBES),
                       "--loader-samples", "60"], 60))
    archs = architectures()
    seen: set = set()
    for arch, preset in archs:  # the loader's clips per second depends only on the preset (clip length, crop)
        if preset not in seen:
            seen.add(preset)
            steps.append((f"data loader, {preset[0]} frames x {preset[1]} px ({arch} preset)",
                          [py, str(BENCH / "dataloading.py"), "--arch", arch, "--device", device, "--skip-model",
                           "--items", "6", "--workers", "4", "--repeat", "1"], 25))
    for arch, _ in archs:
        steps.append((f"training step: {arch}, AMP + channels_last", [py, str(BENCH / "train_step.py"), "--arch", arch,
                                                 "--device", device, "--modes", "fp32", "bf16", "--repeat", "3",
                                                 "--no-max-batch"], 30))
    return steps


def run_step(argv: list[str], limit: float) -> tuple[str, str]:
    """(status, output) of one step; the output is stdout, with stderr's last lines on failure."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return f"timed out after {limit:.0f} s", out
    took = time.perf_counter() - t0
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-5:])
        return f"failed (exit {r.returncode}) after {took:.0f} s", (r.stdout + "\n" + tail).strip()
    return f"{took:.0f} s", r.stdout.strip()


def _shell(argv: list[str]) -> str:
    rel = [os.path.relpath(a, ROOT) if a.startswith(str(ROOT)) else a for a in argv]
    rel[0] = ".venv/bin/python" if argv[0] == sys.executable else rel[0]
    return " ".join(rel)


def device_line() -> str:
    import torch

    p = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.get_device_name(0)} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, {os.cpu_count()} CPU cores")


def section(device: str, results: list[tuple[str, list[str], str, str]], total: float) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    lines = [HEADING, "",
             f"Device: **{device}**. Run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, "
             f"{total:.0f} s in all. Command: `make bench-gpu`. Every figure below comes from the script named in "
             "its step, run in its own process (start-up not counted in the per-step figures); a step that failed "
             "or ran out of time says so.", ""]
    for title, argv, status, out in results:
        lines += [f"### {title} ({status})", "", f"`{_shell(argv)}`", "", out or "(no output)", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_section(text: str) -> None:
    """Replace this script's section of RESULTS.md (or append it), atomically."""
    sys.path.insert(0, str(ROOT))
    from facetubes.manifest import atomic_path

    old = RESULTS.read_text() if RESULTS.exists() else ""
    start = old.find(HEADING)
    if start < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(HEADING))
        new = old[:start] + text + ("" if nxt < 0 else "\n" + old[nxt + 1:])
    with atomic_path(RESULTS) as tmp:
        Path(tmp).write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=480, help="seconds for all steps (default: 8 minutes)")
    ap.add_argument("--dry-run", action="store_true", help="print the steps and their limits, run nothing")
    ap.add_argument("--no-write", action="store_true", help="print the section instead of writing RESULTS.md")
    a = ap.parse_args()
    steps = plan(a.device)
    if a.dry_run:
        for title, argv, limit in steps:
            print(f"{limit:4d} s  {title}: {_shell(argv)}")
        print(f"{sum(s[2] for s in steps)} s of limits, budget {a.budget:.0f} s")
        return 0
    import torch

    if not a.device.startswith("cuda") or not torch.cuda.is_available():
        print(f"error: make bench-gpu needs a CUDA GPU (device {a.device!r}, torch.cuda.is_available() = "
              f"{torch.cuda.is_available()}); nothing was run or written", file=sys.stderr)
        return 2
    device = device_line()
    print(f"bench-gpu on {device}, budget {a.budget:.0f} s", file=sys.stderr)
    t_start = time.perf_counter()
    results = []
    for title, argv, limit in steps:
        left = a.budget - (time.perf_counter() - t_start)
        if left < min(limit, 20):
            results.append((title, argv, "skipped: the 8-minute budget was spent", ""))
            continue
        status, out = run_step(argv, min(limit, left))
        print(f"  {title}: {status}", file=sys.stderr)
        results.append((title, argv, status, out))
    text = section(device, results, time.perf_counter() - t_start)
    if a.no_write:
        print(text)
    else:
        write_section(text)
        print(f"wrote {RESULTS.relative_to(ROOT)} ({HEADING[3:]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
