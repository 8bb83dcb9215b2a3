"""``facetubes predict``, ``facetubes evaluate`` and ``facetubes evaluate-cross``.

Registered as sub-commands of ``facetubes`` through the ``facetubes.commands`` entry-point group
(``register_predict``, ``register_evaluate``, ``register_evaluate_cross``); ``python -m infer.cli predict|evaluate
...`` runs them standalone.
Heavy imports (torch, models) happen inside the handlers so that ``facetubes --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from facetubes.config import ExtractConfig
from facetubes.errors import ConfigError

__all__ = ["register_predict", "register_evaluate", "register_check_ensemble", "main", "extract_config_from_args"]

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2

# (flag, ExtractConfig field, type, help). Defaults are None: unset flags leave the ensemble file's `extract:`
# section, then ExtractConfig.for_inference(), in charge.
_DETECTION_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--first-frames", "first_frames", int, "read the first N frames of each video; also caps pre-extracted "
                                            "tubes (published: 100)"),
    ("--detect-every", "detect_every", int, "detect faces on every N-th frame (published: 10)"),
    ("--detect-long-side", "detect_long_side", int, "detector input long side in pixels (published: 480)"),
    ("--min-face", "min_face", float, "smallest face in full-resolution pixels (used without --detect-long-side)"),
    ("--top-k", "top_k", int, "keep the K most confident face tracks per video (published: 5)"),
    ("--min-frames", "min_frames", int, "shortest usable tube in frames (inference default: 1)"),
    ("--size", "size", int, "tube side in pixels before each model's crop (default: 256)"),
    ("--margin", "margin", float, "context around the face, fraction of the face side per side: use the value "
                                  "the models were trained with (default: 0)"),
    ("--crop", "crop", str, "auto (default: static while tight, else follow), static (published union box) or follow"),
    ("--detector", "detector", str, "face detector: mtcnn (default), mtcnn-facenet or retinaface"),
    ("--detector-weights", "detector_weights", str, "retinaface: local mobilenet0.25_Final.pth / Resnet50_Final.pth"),
)


def _add_detection_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection (override the ensemble file's `extract:` section and the published "
                             "inference settings)")
    for flag, _field, typ, help_ in _DETECTION_FLAGS:
        kw: dict[str, Any] = {"choices": ("auto", "static", "follow")} if flag == "--crop" else {}
        metavar = None if kw else ("N" if typ is int else "X")
        g.add_argument(flag, type=typ, default=None, metavar=metavar, help=help_, **kw)
    g.add_argument("--thresholds", type=float, nargs=3, default=None, metavar=("P", "R", "O"),
                   help="MTCNN stage thresholds (published: 0.8 0.8 0.9)")
    g.add_argument("--no-retry", dest="retry", action="store_false", default=None,
                   help="no second detection pass (2x resolution, then looser thresholds) for videos without faces")


def extract_config_from_args(a: argparse.Namespace, file_overrides: Optional[dict] = None,
                             device: str = "cpu") -> ExtractConfig:
    """Published inference settings, then the ensemble file's ``extract:`` section, then the flags."""
    values: dict[str, Any] = dict(file_overrides or {})
    for _flag, name, _typ, _help in _DETECTION_FLAGS:
        v = getattr(a, name, None)
        if v is not None:
            values[name] = v
    if getattr(a, "thresholds", None) is not None:
        values["thresholds"] = tuple(a.thresholds)
    if getattr(a, "retry", None) is not None:
        values["retry"] = a.retry
    values.setdefault("device", device)
    return ExtractConfig.for_inference(**values)


def register_predict(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to a ``facetubes`` sub-parser set."""
    p = subparsers.add_parser(
        "predict", help="score videos (or extracted tubes) with an ensemble; writes a DFDC-style CSV",
        description="Score raw videos (files, folders, .txt lists) or extracted tubes (index.csv or a "
                    "`facetubes extract` output folder) with the ensemble of an ensemble.yaml. One CSV row per "
                    "video: filename,label(=fake probability),n_tubes,status,error. Resumes by default: videos "
                    "already in the CSV are skipped.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="videos, folders, .txt lists, index.csv")
    p.add_argument("--ensemble", "-e", required=True, metavar="YAML", help="ensemble file (see examples/)")
    p.add_argument("--out", "-o", default="predictions.csv", help="output CSV (default: %(default)s)")
    p.add_argument("--per-model", action="store_true", help="add one probability column per member")
    p.add_argument("--video-agg", choices=("mean", "max"), default=None,
                   help="per member, over a video's tubes (default: file's, else mean as published)")
    p.add_argument("--member-agg", choices=("prob", "logit"), default=None,
                   help="across members: weighted mean of probabilities or of logits (default: file's, else prob)")
    p.add_argument("--clip", default=None, metavar="LO,HI",
                   help="final clipping, e.g. 0.01,0.99 or none (default: file's, else 0.01,0.99)")
    tta = p.add_mutually_exclusive_group()
    tta.add_argument("--no-tta", dest="tta", action="store_false", default=None, help="no flip TTA")
    tta.add_argument("--tta", dest="tta", action="store_true", help="flip TTA (default unless the file says no)")
    p.add_argument("--prior", type=float, default=0.5, help="probability for no-face and failed videos (0.5)")
    p.add_argument("--device", default="auto", help="models and detector: auto, cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="full float32 on GPU, TF32 off (default: float16 AMP; detection is always float32)")
    p.add_argument("--prefetch", type=int, default=2, metavar="N",
                   help="videos decoded + detected ahead of the models by a background thread (default: 2)")
    p.add_argument("--overwrite", action="store_true", help="start a new CSV instead of resuming")
    p.add_argument("--skip-done", action="store_true",
                   help="skip videos already in the CSV (the default; kept for scripts that spell it out)")
    p.add_argument("--retry-errors", action="store_true", help="on resume, predict videos with status error again")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--details", default=None, metavar="FILE.jsonl",
                   help="also write one JSON line per video with every face track: frames, boxes, each member's "
                        "probability and the 2D members' per-frame probabilities")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="predict only the videos whose name hashes to K modulo N (as `extract --shard`); give each "
                        "shard its own --out and --details")
    _add_detection_options(p)
    p.set_defaults(handler=cmd_predict)


def register_check_ensemble(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check-ensemble`` to a ``facetubes`` sub-parser set."""
    p = subparsers.add_parser(
        "check-ensemble", help="check an ensemble file before any video is read: files, checksums, architectures, "
                               "one dummy forward pass per member",
        description="For each member: the expected weights file, found or missing, its size and SHA-256, the "
                    "architecture detected in it, and the result of one dummy forward pass. Exits 1 when anything "
                    "is wrong.")
    p.add_argument("ensemble", metavar="YAML", help="ensemble file (see examples/)")
    p.add_argument("--device", default="cpu", help="device of the dummy forward passes (default: cpu)")
    p.add_argument("--no-hash", dest="hash", action="store_false", help="skip the SHA-256 (large files)")
    p.set_defaults(handler=cmd_check_ensemble)


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to a ``facetubes`` sub-parser set."""
    p = subparsers.add_parser(
        "evaluate", help="log loss, AUC, EER, AP of a predictions CSV; JSON report and ROC/histogram PNGs",
        description="Compare a predictions CSV (filename,label[,member columns]) with labels (dataset "
                    "roots, DFDC metadata.json, a CSV with filename,label, or an index.csv). Writes report.json, roc.png and histogram.png.")
    p.add_argument("predictions", help="CSV written by `facetubes predict` (or any filename,label CSV)")
    p.add_argument("--labels", "-l", required=True, nargs="+", metavar="FILE",
                   help="dataset roots (FF++, Celeb-DF, DFDC, ...: see `facetubes datasets`), DFDC metadata.json, "
                        "labels CSV, index.csv, or folders searched for metadata.json")
    p.add_argument("--out", "-o", default=None, metavar="DIR",
                   help="report folder (default: <predictions>_eval/ next to the CSV)")
    p.add_argument("--eps", type=float, default=1e-15, help="log-loss clipping eps (default: %(default)s)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="JSON report only")
    _add_evaluation_options(p)
    p.set_defaults(handler=cmd_evaluate)


def register_evaluate_cross(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate-cross`` to a ``facetubes`` sub-parser set."""
    p = subparsers.add_parser(
        "evaluate-cross", help="cross-dataset table (rows: training sets, columns: test sets) from several "
                               "predictions CSVs; Markdown, CSV, JSON and a heat map",
        description="Each --run TRAIN=PREDICTIONS.csv is split into test-set columns by the videos' dataset "
                    "(or --columns method for a cross-manipulation table); TRAIN@TEST=PREDICTIONS.csv puts the "
                    "whole file in column TEST. Writes cross.md, cross.csv, cross.json and cross.png.")
    p.add_argument("--run", "-r", dest="runs", action="append", required=True, metavar="TRAIN[@TEST]=CSV",
                   help="one predictions CSV of a model trained on TRAIN (repeat for every run)")
    p.add_argument("--labels", "-l", required=True, nargs="+", metavar="FILE",
                   help="labels of every test set (as for evaluate; CSVs and index.csv may carry a dataset column)")
    p.add_argument("--columns", choices=("dataset", "method", "compression", "folder"), default="dataset",
                   help="what a column is, for TRAIN=CSV runs (default: %(default)s)")
    p.add_argument("--metric", choices=("auc", "log_loss", "eer", "ap", "accuracy"), default="auc",
                   help="the metric in the table and heat map (cross.json has all; default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95%% bootstrap intervals of AUC and log loss per cell from N resamples (default: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--eps", type=float, default=1e-15, help="log-loss clipping eps (default: %(default)s)")
    p.add_argument("--out", "-o", default="cross_eval", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="no heat map")
    p.set_defaults(handler=cmd_evaluate_cross)


def _add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """Level, aggregation, breakdown and bootstrap flags (see docs/evaluation.md)."""
    g = p.add_argument_group("levels, breakdowns and confidence intervals")
    g.add_argument("--level", choices=("video", "tube", "frame"), default="video",
                   help="one sample per video (the CSV), per face track or per face and frame (both from --details; "
                        "default: %(default)s)")
    g.add_argument("--details", metavar="JSONL", default=None,
                   help="per-person details file written by `facetubes predict --details`")
    g.add_argument("--frame-agg", choices=("mean", "median", "max"), default=None,
                   help="recompute frame members' tube scores from their frame scores (default: as predicted)")
    g.add_argument("--tube-agg", choices=("mean", "median", "max"), default=None,
                   help="--level video: recompute video scores from the tube scores (default: the CSV's)")
    g.add_argument("--by", default=None, metavar="KEYS",
                   help="breakdowns, comma-separated: dataset,method,compression,folder")
    g.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="95%% bootstrap intervals of AUC and log loss from N resamples (default: none; 1000 is usual)")
    g.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")


# ----------------------------------------------------------------------------------------------------------------
# handlers


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device: invalid device {name!r} (cpu, cuda, cuda:1, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return name


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_predict(a: argparse.Namespace) -> int:
    """Handler of ``facetubes predict``. Returns 0, or 1 when some videos failed (their rows say why)."""
    import models3d

    from .aggregate import parse_clip
    from .csvio import PredictionsWriter
    from .engine import EnsemblePredictor
    from .members import load_members
    from .predict import collect_work, load_item, run_predict
    from .spec import load_spec

    spec = load_spec(a.ensemble, known_archs=models3d.list_models())
    clip = parse_clip(a.clip) if a.clip is not None else (spec.clip if spec.clip_set else (0.01, 0.99))
    if not 0.0 <= a.prior <= 1.0:
        raise ConfigError(f"--prior must be in [0, 1], got {a.prior}")
    if a.prefetch < 1:
        raise ConfigError(f"--prefetch must be >= 1, got {a.prefetch}")
    device = _resolve_device(a.device)
    config = extract_config_from_args(a, spec.extract, device=device)
    items = collect_work(a.inputs)
    out = Path(a.out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out takes a CSV file path")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: output folder does not exist")

    if a.shard is not None:
        from facetubes.batch import in_shard, parse_shard

        shard = parse_shard(a.shard)
        items = [it for it in items if in_shard(Path(it.filename).stem, shard)]
    details_path = Path(a.details) if a.details else None
    if details_path is not None and not details_path.parent.is_dir():
        raise ConfigError(f"{details_path.parent}: output folder of --details does not exist")

    members = load_members(spec, device=device, amp=a.amp, progress=None if a.quiet else _log)
    predictor = EnsemblePredictor(members, device=device, tta=a.tta if a.tta is not None else spec.tta is not False,
                                  amp=a.amp, video_agg=a.video_agg or spec.video_agg or "mean",
                                  member_agg=a.member_agg or spec.member_agg or "prob", clip=clip, prior=a.prior)
    need_tubes = any(m.recipe == "tubes" for m in members)
    face_recipe = None
    detector = face_detector = None
    if any(it.video is not None for it in items):
        from facetubes.detect import make_detector

        if need_tubes:
            detector = make_detector(config.device, config.thresholds, name=config.detector,
                                     weights=config.detector_weights)
        face_members = [m for m in members if m.recipe == "dfdc1st"]
        if face_members:
            from .faces1st import recipe_for

            face_recipe = recipe_for(face_members)
            # the published 1st-place recipe is MTCNN's (REFERENCE.md section 4), whatever --detector says
            face_detector = make_detector(config.device, face_recipe.thresholds)

    def load(it: Any) -> Any:
        return load_item(it, config, detector, tubes=need_tubes, face_recipe=face_recipe,
                         face_detector=face_detector)

    columns = [m.name for m in members] if a.per_model else []
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(PredictionsWriter(out, columns, overwrite=a.overwrite,
                                                       retry_errors=a.retry_errors))
        details = None
        if details_path is not None:
            from .details import DetailsWriter

            details = stack.enter_context(DetailsWriter(details_path, overwrite=a.overwrite))
        if writer.dropped_partial:
            _log(f"{out}: dropped a half-written last row from an interrupted run")
        try:
            summary = run_predict(items, predictor, writer, load, prior=a.prior, prefetch=a.prefetch,
                                  progress=not a.quiet, details=details)
        except KeyboardInterrupt:
            _log(f"interrupted: {len(writer.done)} videos are in {out}; run the same command again to continue")
            raise
    _log(summary.text())
    earlier = sum(1 for it in items if writer.done.get(it.filename) == "error") - summary.counts["error"]
    if earlier > 0:
        _log(f"{earlier} of these videos kept their status error from an earlier run (--retry-errors predicts "
             "them again)")
    return EXIT_FAILURES if summary.counts["error"] or earlier > 0 else EXIT_OK


def cmd_check_ensemble(a: argparse.Namespace) -> int:
    """Handler of ``facetubes check-ensemble``: prints one block per member; 0 when all is well, else 1."""
    from .check import check_ensemble, format_check

    results = check_ensemble(a.ensemble, device=_resolve_device(a.device), hash_files=a.hash)
    print(format_check(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILURES


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Handler of ``facetubes evaluate``."""
    from .breakdown import load_eval_labels, parse_by, resolve_folders
    from .csvio import read_predictions
    from .evaluate import default_report_dir, evaluate_predictions, format_report, write_report
    from .levels import read_details

    if not 0.0 <= a.eps < 0.5:
        raise ConfigError(f"--eps must be in [0, 0.5), got {a.eps}")
    by = parse_by(a.by)
    preds = read_predictions(a.predictions)
    labels, attributes = load_eval_labels(a.labels)
    details = read_details(a.details) if a.details else None
    resolve_folders(attributes, preds.filenames, details)
    report, arrays = evaluate_predictions(preds, labels, eps=a.eps, level=a.level, details=details,
                                          frame_agg=a.frame_agg, tube_agg=a.tube_agg, by=by,
                                          attributes=attributes, bootstrap=a.bootstrap, seed=a.seed)
    report["labels"] = [str(x) for x in a.labels]
    if a.details:
        report["details"] = str(a.details)
    paths = write_report(report, arrays, default_report_dir(a.predictions, a.out), plots=a.plots)
    print(format_report(report))
    _log("report: " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK


def cmd_evaluate_cross(a: argparse.Namespace) -> int:
    """Handler of ``facetubes evaluate-cross``."""
    from .breakdown import load_eval_labels
    from .cross import cross_table, format_markdown, parse_run, write_cross

    if not 0.0 <= a.eps < 0.5:
        raise ConfigError(f"--eps must be in [0, 0.5), got {a.eps}")
    runs = [parse_run(r) for r in a.runs]
    labels, attributes = load_eval_labels(a.labels)
    table = cross_table(runs, labels, attributes, columns=a.columns, bootstrap=a.bootstrap, seed=a.seed,
                        eps=a.eps)
    paths = write_cross(table, a.out, metric=a.metric, plots=a.plots)
    print(format_markdown(table, a.metric), end="")
    _log("table: " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK


# ----------------------------------------------------------------------------------------------------------------
# standalone entry point


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m infer.cli predict|evaluate ...``: the ``facetubes`` command (same parser, same error handling;
    predict and evaluate reach it through the ``facetubes.commands`` entry points)."""
    from facetubes.cli import main as facetubes_main

    return facetubes_main(argv)


if __name__ == "__main__":
    sys.exit(main())
