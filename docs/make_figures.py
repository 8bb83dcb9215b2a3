"""Draw the pictures of the documentation (docs/img/*.png) from the synthetic sample and the shared real videos.

    python docs/make_figures.py                      # every figure, into docs/img/
    python docs/make_figures.py --only crops,details --crop-modes static,follow
    python docs/make_figures.py --only details --details predictions.details.jsonl --video fake_0

Figures (name: what it is drawn from):

- ``preview-sample.png``: ``facetubes preview`` of a synthetic sample (its fake two-person video);
- ``preview-street.png``: ``facetubes preview`` of the first 10 s of a real street scene with many people
  (``real/street_facenet.mp4`` of ``--shared``, default ``../shared/data``; from the MIT-licensed facenet-pytorch
  repository: the DFDC and FF++ videos there are research data, for tests and benchmarks only, not for the docs;
  the figure is left out with a note when the file is absent);
- ``crop-modes.png``: one synthetic track cropped with every mode of ``--crop-modes`` (rerun with the new modes
  when extraction gains one);
- ``training-curves.png``: ``metrics.csv`` of a ``train3d`` run: the learning recipe of benchmarks/RESULTS.md
  (mc3 from random weights on synthetic face tubes, held-out identities; a few minutes on 2 CPU cores);
- ``roc.png``: the ROC curve ``facetubes evaluate`` draws for that model's predictions on unseen identities;
- ``details.png``: the per-person details of one video, from a ``facetubes predict --details`` JSONL file
  (``--details``), or else from a hand-made record in that format (the figure then says so).

The documentation pages only show the PNGs; nothing here runs in the tests. Each PNG is kept under 300 KB.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("preview", "crops", "curves", "roc", "details", "original")
STREET_VIDEO = "real/street_facenet.mp4"
MAX_BYTES = 300_000
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"]


def _run(*args: str) -> None:
    """One facetubes/train3d command through this interpreter (so this checkout's code runs)."""
    print("+", " ".join(args), flush=True)
    # one torch thread: on a shared CPU, OpenMP spin-waiting made 2-thread runs many times slower
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run([sys.executable, "-m", *args], check=True, cwd=ROOT, env=env)


def _save_png(img: Image.Image | Path, dest: Path, *, max_width: int = 1100) -> Path:
    """Save (or re-save) a PNG no wider than ``max_width``, quantised if needed to stay under MAX_BYTES."""
    im = Image.open(img) if isinstance(img, Path) else img
    im = im.convert("RGB")
    if im.width > max_width:
        im = im.resize((max_width, round(im.height * max_width / im.width)), Image.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    im.save(dest, optimize=True)
    if dest.stat().st_size > MAX_BYTES:
        im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)
    print(f"{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}: {im.width}x{im.height}, "
          f"{dest.stat().st_size // 1024} KB", flush=True)
    return dest


def _save_fig(fig, dest: Path) -> Path:
    tmp = dest.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    _save_png(tmp, dest)
    tmp.unlink()
    return dest


# --- preview sheets ---------------------------------------------------------------------------------------------

def fig_preview(work: Path, out: Path, shared: Path) -> None:
    from facetubes import ExtractConfig, extract_batch, load_labels
    from facetubes.preview import batch_preview
    from facetubes.synthetic import make_dataset

    videos = work / "sample"
    if not (videos / "metadata.json").exists():
        make_dataset(videos, 1, 1, seed=0, scenario="two", width=320, height=240, n_frames=72, write_truth=False)
    tubes = work / "sample_tubes"
    extract_batch([videos], tubes, ExtractConfig(min_frames=32), labels=load_labels(videos), progress=False)
    _save_png(batch_preview(tubes, work / "preview-sample.png", max_videos=1), out / "preview-sample.png")   # the fake

    video = shared / STREET_VIDEO
    if not video.exists():
        print(f"note: {video} not found; preview-street.png left as it is", flush=True)
        return
    real = work / "street_tubes"
    extract_batch([video], real, ExtractConfig(first_frames=250), progress=False)
    _save_png(batch_preview(real, work / "preview-street.png"), out / "preview-street.png")


# --- crop modes ---------------------------------------------------------------------------------------------------

def fig_crops(work: Path, out: Path, modes: list[str], *, n_show: int = 5) -> None:
    """One synthetic face wandering through the frame; every mode's crop box on the frames, and its tube."""
    from facetubes import ExtractConfig, extract_tubes_in_memory
    from facetubes.synthetic import make_video
    from facetubes.video import read_frames

    video = work / "wander.mp4"
    if not video.exists():
        make_video(video, "one", width=640, height=360, n_frames=120, seed=3)
    tubes = {}
    for mode in modes:
        vt = extract_tubes_in_memory(video, ExtractConfig(crop=mode, min_frames=32, size=128, margin=0.1,
                                                          first_frames=None))
        if not vt.tubes:
            raise SystemExit(f"error: crop mode {mode!r} gave no tube for {video}")
        tubes[mode] = max(vt.tubes, key=lambda t: t.frames.shape[0])
    first = next(iter(tubes.values()))
    start, stop = first.plan.start, first.plan.stop
    for t in tubes.values():
        start, stop = max(start, t.plan.start), min(stop, t.plan.stop)
    shown = np.linspace(start, stop - 1, n_show).round().astype(int)
    full = read_frames(video, list(shown))
    fig, axes = plt.subplots(1 + len(modes), n_show, figsize=(2.2 * n_show, 1.25 + 2.25 * len(modes)),
                             gridspec_kw={"height_ratios": [0.56 * 2] + [1.0] * len(modes)}, squeeze=False)
    for j, frame_no in enumerate(shown):
        ax = axes[0, j]
        ax.imshow(full[j])
        for k, (mode, tube) in enumerate(tubes.items()):
            x1, y1, x2, y2 = tube.plan.box_at(int(frame_no))
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.8,
                                       color=COLOURS[k % len(COLOURS)], label=mode))
        ax.set_title(f"frame {frame_no}", fontsize=9)
        for k, (mode, tube) in enumerate(tubes.items()):
            a = axes[1 + k, j]
            a.imshow(tube.frames[int(frame_no) - tube.plan.start])
            if j == 0:
                a.set_ylabel(f"--crop {mode}", fontsize=10, color=COLOURS[k % len(COLOURS)])
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.suptitle("One wandering face: each mode's crop box (top) and the tube it gives (below)", fontsize=11)
    fig.tight_layout()
    _save_fig(fig, out / "crop-modes.png")


# --- training curves and ROC --------------------------------------------------------------------------------------

def _learn_module():
    spec = importlib.util.spec_from_file_location("learn", ROOT / "tests" / "test_train_learns.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_run(work: Path, epochs: int) -> Path:
    run = work / "run"
    if (run / "best.pt").exists():
        return run
    learn = _learn_module()
    data = work / "learn_tubes"
    if not (data / "index.csv").exists():
        learn.make_face_tubes(data)
    flags = list(learn.LEARN_FLAGS)
    flags[flags.index("--epochs") + 1] = str(epochs)
    flags[flags.index("--num-workers") + 1] = "0"              # decoding in the main process: no worker start-up
    _run("train.cli", "3d", "--data", str(data), "--out", str(run), *flags, "--no-progress")
    return run


def fig_curves(work: Path, out: Path, epochs: int) -> None:
    run = _train_run(work, epochs)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["epoch"]) + 1 for r in rows]      # metrics.csv counts from 0; the console says "epoch 1/16"
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.3))
    a.plot(ep, [float(r["train_loss"]) for r in rows], "o-", label="train loss")
    a.plot(ep, [float(r["val_loss"]) for r in rows], "s-", label="validation log loss")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.grid(alpha=0.3)
    b.plot(ep, [float(r["val_auc"]) for r in rows], "o-", color="C2", label="validation AUC")
    b.plot(ep, [float(r["val_acc_real"]) for r in rows], ":", color="C0", label="accuracy, real")
    b.plot(ep, [float(r["val_acc_fake"]) for r in rows], ":", color="C3", label="accuracy, fake")
    b.set_xlabel("epoch"), b.set_ylim(-0.02, 1.02), b.legend(loc="lower right"), b.grid(alpha=0.3)
    fig.suptitle(f"train3d --arch mc3 from random weights on synthetic face tubes, {len(rows)} epochs "
                 "(validation: unseen identities)", fontsize=10)
    fig.tight_layout()
    _save_fig(fig, out / "training-curves.png")


def fig_roc(work: Path, out: Path, epochs: int) -> None:
    run = _train_run(work, epochs)
    learn = _learn_module()
    test = work / "test_tubes"
    if not (test / "index.csv").exists():
        learn.make_face_tubes(test, n_groups=12, seed=1)       # identities the model never saw
    ensemble = work / "ensemble.yaml"
    ensemble.write_text(f"members:\n  - {{arch: mc3, weights: {run / 'best.pt'}}}\n")
    labels = work / "test_labels.csv"
    with open(test / "index.csv", newline="") as f, open(labels, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["filename", "label"])
        for r in csv.DictReader(f):
            w.writerow([Path(r["source"]).name, r["label"]])
    preds = work / "test_predictions.csv"
    _run("infer.cli", "predict", str(test / "index.csv"), "--ensemble", str(ensemble), "--out", str(preds),
         "--overwrite", "--quiet", "--device", "cpu")
    _run("infer.cli", "evaluate", str(preds), "--labels", str(labels), "--out", str(work / "eval"))
    _save_png(work / "eval" / "roc.png", out / "roc.png", max_width=700)


# --- per-person details -------------------------------------------------------------------------------------------

def draw_details(record: dict, video: Path | None = None, *, note: str = ""):
    """A figure of one video's per-person details record (the `facetubes predict --details` format).

    One row per track: a frame of the source video with the track's box (when ``video`` can be read), and the
    fake probability over the frames for every frame-level member, with each member's track probability as a
    dashed line. Returns the matplotlib figure.
    """
    from facetubes.video import read_frames

    tracks = record.get("tracks", [])
    if not tracks:
        raise ValueError(f"{record.get('video')}: the record has no tracks to draw")
    fig, axes = plt.subplots(len(tracks), 2, figsize=(10, 2.6 * len(tracks)),
                             gridspec_kw={"width_ratios": [1, 2.6]}, squeeze=False)
    for row, tr in enumerate(tracks):
        boxes = np.asarray(tr["boxes"], float).reshape(-1, 5)
        mid = boxes[len(boxes) // 2]
        ax = axes[row, 0]
        frame = None
        if video is not None and Path(video).exists():
            frame = read_frames(video, [int(mid[0])])[0]
            ax.imshow(frame)
        x1, y1, x2, y2 = mid[1:]
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, color=COLOURS[row % 6]))
        if frame is None:
            ax.set_xlim(0, max(boxes[:, 3].max() * 1.2, 1)), ax.set_ylim(max(boxes[:, 4].max() * 1.2, 1), 0)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"track {tr['track']}, frame {int(mid[0])}", fontsize=9)
        a = axes[row, 1]
        for k, (name, pts) in enumerate(sorted(tr.get("frames", {}).items())):
            pts = np.asarray(pts, float).reshape(-1, 2)
            a.plot(pts[:, 0], pts[:, 1], ".-", color=f"C{k}", label=f"{name} (per frame)")
        for k, (name, p) in enumerate(sorted(tr.get("members", {}).items())):
            a.axhline(p, ls="--", color=f"C{k}", lw=1.2, label=f"{name}: track {p:.2f}")
        a.set_xlim(tr["start_frame"], tr["stop_frame"])
        a.set_ylim(-0.02, 1.02), a.set_ylabel("fake probability"), a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="center right")
        if row == len(tracks) - 1:
            a.set_xlabel("source frame")
    members = ", ".join(f"{k} {v:.2f}" for k, v in sorted(record.get("members", {}).items()))
    title = f"{record['video']}: P(fake) = {record['prob']:.2f} ({record['status']}); members: {members}"
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


def handmade_record(work: Path) -> tuple[dict, Path]:
    """A details record in the agreed format for a synthetic two-person video whose person p1 is manipulated.

    Tracks and boxes come from real extraction; the probabilities are made up (one frame-level member and one
    clip member), to show the format until a `predict --details` file is drawn instead.
    """
    from facetubes import ExtractConfig, extract_tubes_in_memory
    from facetubes.synthetic import FakeSpec, make_video

    video = work / "two_fake.mp4"
    if not video.exists():
        make_video(video, "two", width=480, height=270, n_frames=90, seed=5, fake=FakeSpec(persons=("p1",)))
    vt = extract_tubes_in_memory(video, ExtractConfig(min_frames=32, first_frames=None))
    rng = np.random.default_rng(0)
    tracks = []
    for tube in vt.tubes:
        frames = np.arange(tube.plan.start, tube.plan.stop)
        fake_person = tube.track.boxes[:, 0].mean() > 240          # p1 stands on the right in scenario "two"
        level = 0.8 if fake_person else 0.15
        probs = np.clip(level + 0.08 * rng.standard_normal(len(frames[::3])), 0.01, 0.99)
        boxes = [[int(f), *map(float, b)] for f, b in zip(tube.track.frames, tube.track.boxes)]
        tracks.append({"track": tube.track.id, "start_frame": int(tube.plan.start), "stop_frame": int(tube.plan.stop),
                       "boxes": boxes,
                       "members": {"effnet_b7": round(float(np.median(probs)), 3), "i3d": round(level + 0.05, 3)},
                       "frames": {"effnet_b7": [[int(f), round(float(p), 3)] for f, p in zip(frames[::3], probs)]}})
    members = {m: round(max(t["members"][m] for t in tracks), 3) for m in ("effnet_b7", "i3d")}
    record = {"video": video.stem, "source": str(video), "prob": round(float(np.mean(list(members.values()))), 3),
              "status": "ok", "note": "", "members": members, "tracks": tracks}
    return record, video


def fig_details(work: Path, out: Path, details: Path | None, video_name: str | None) -> None:
    if details is not None:
        with open(details) as f:
            records = [json.loads(line) for line in f if line.strip()]
        pick = [r for r in records if video_name in (None, r["video"]) and r.get("tracks")]
        if not pick:
            raise SystemExit(f"error: {details}: no record with tracks" + (f" for {video_name}" if video_name else ""))
        record, note = pick[0], ""
        video = Path(record["source"])
    else:
        record, video = handmade_record(work)
        note = "(boxes from extraction; the probabilities of this example record are made up)"
    _save_fig(draw_details(record, video, note=note), out / "details.png")


def fig_original(work: Path, out: Path) -> None:
    """A synthetic real/fake pair through ``extract --boxes-from-original`` (MTCNN on the real video only): the
    fake tube, the real tube at the same frame and box, and the difference mask."""
    import importlib.util

    from facetubes import ExtractConfig, extract_batch, load_labels
    from facetubes.manifest import read_manifest
    from facetubes.synthetic import make_dataset

    videos = work / "pair"
    if not (videos / "metadata.json").exists():
        make_dataset(videos, 1, 1, seed=3, scenario="one", width=320, height=240, n_frames=72, write_truth=False)
    tubes = work / "pair_tubes"
    extract_batch([videos], tubes, ExtractConfig(min_frames=32), labels=load_labels(videos), progress=False,
                  boxes_from_original=True)
    spec = importlib.util.spec_from_file_location("bfo", ROOT / "benchmarks" / "boxes_from_original.py")
    bfo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bfo)  # type: ignore[union-attr]
    manifests = {p.parent.name: read_manifest(p) for p in tubes.glob("*/tubes.json")}
    bfo.figure(tubes, manifests, work / "boxes-from-original.png", title="synthetic real/fake pair")
    _save_png(work / "boxes-from-original.png", out / "boxes-from-original.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs (docs/img)")
    p.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--crop-modes", default="static,follow", help="crop modes side by side (static,follow)")
    shared = next((d for d in (ROOT.parent / "shared" / "data", ROOT.parents[1] / "shared" / "data") if d.is_dir()),
                  ROOT.parent / "shared" / "data")
    p.add_argument("--shared", type=Path, default=shared, help="the shared real data (default: ../shared/data)")
    p.add_argument("--epochs", type=int, default=16, help="epochs of the training run behind curves and ROC")
    p.add_argument("--details", type=Path, help="a `facetubes predict --details` JSONL file to draw")
    p.add_argument("--video", help="the video (stem) of --details to draw (default: the first with tracks)")
    p.add_argument("--work", type=Path, help="keep intermediate files here (default: a temporary folder)")
    a = p.parse_args(argv)
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    work = a.work or Path(tempfile.mkdtemp(prefix="facetubes-figures-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "preview" in only:
            fig_preview(work, a.out, a.shared)
        if "crops" in only:
            fig_crops(work, a.out, [m.strip() for m in a.crop_modes.split(",") if m.strip()])
        if "curves" in only:
            fig_curves(work, a.out, a.epochs)
        if "roc" in only:
            fig_roc(work, a.out, a.epochs)
        if "details" in only:
            fig_details(work, a.out, a.details, a.video)
        if "original" in only:
            fig_original(work, a.out)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
