"""``facetubes evaluate``: score a predictions CSV against labels; JSON report, text table and PNG plots.

Videos are matched by file stem (``abc.mp4`` in the CSV <-> ``abc.mp4`` / ``abc`` in the labels). Predictions
without a label are counted and left out; labels without a prediction are counted too. With per-member columns
the report has each member's metrics and the correlation between members (ensemble diversity).

Beyond that (all optional): the level of the samples (``video``, or ``tube`` / ``frame`` from a details file,
:mod:`infer.levels`), breakdowns by dataset / method / compression / folder (:mod:`infer.breakdown`) and bootstrap
confidence intervals for AUC and log loss (:mod:`infer.bootstrap`; at tube and frame level whole videos are
resampled).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from facetubes.errors import ConfigError
from facetubes.manifest import Label, atomic_write_text

from .bootstrap import bootstrap_ci
from .breakdown import breakdown_cells, label_attributes, match_label, plot_breakdown
from .csvio import Predictions
from .levels import LEVELS, REDUCTIONS, Samples, frame_samples, tube_samples, video_samples_from_details
from .metrics import DEFAULT_EPS, binary_metrics, correlation_matrix, optional_round, roc_curve

#: upper bound of --bootstrap (1000 is usual; 100000 resamples of 10k videos take about a minute)
MAX_RESAMPLES = 100_000

__all__ = ["evaluate_predictions", "format_report", "write_report", "plot_roc", "plot_histogram"]


def _clean(x: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _check_options(level: str, details: Optional[Mapping[str, dict]], frame_agg: Optional[str],
                   tube_agg: Optional[str], bootstrap: int) -> None:
    if level not in LEVELS:
        raise ConfigError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    for flag, v in (("--frame-agg", frame_agg), ("--tube-agg", tube_agg)):
        if v is not None and v not in REDUCTIONS:
            raise ConfigError(f"{flag} must be one of {', '.join(REDUCTIONS)}, got {v!r}")
    need = "a details file (--details FILE.jsonl, written by `facetubes predict --details`)"
    if details is None and level != "video":
        raise ConfigError(f"--level {level} needs {need}")
    if details is None and (frame_agg or tube_agg):
        raise ConfigError(f"--frame-agg and --tube-agg need {need}")
    if level == "video" and frame_agg and not tube_agg:
        raise ConfigError("--frame-agg at --level video needs --tube-agg (the video scores are otherwise the "
                          "predicted ones)")
    if level == "frame" and frame_agg:
        raise ConfigError("--frame-agg does not apply to --level frame (every frame is a sample)")
    if level != "video" and tube_agg:
        raise ConfigError(f"--tube-agg applies to --level video only (at --level {level} nothing is reduced over "
                          "tubes)")
    if not 0 <= bootstrap <= MAX_RESAMPLES:
        raise ConfigError(f"--bootstrap must be 0..{MAX_RESAMPLES} resamples, got {bootstrap}")


def _video_aggregation(tube_agg: Optional[str], frame_agg: Optional[str]) -> str:
    if not tube_agg:
        return "one sample per video: the video probability of the predictions CSV, as predicted"
    return ("one sample per video, recomputed from the details file: per member, the "
            f"{tube_agg} of its tube scores ("
            + (f"a frame member's tube score is the {frame_agg} of its frame scores" if frame_agg
               else "as predicted") + "), then the plain mean over members; videos without tracks keep the "
            "predicted probability")


def evaluate_predictions(preds: Predictions, labels: Mapping[str, Label], *, eps: float = DEFAULT_EPS,
                         level: str = "video", details: Optional[Mapping[str, dict]] = None,
                         frame_agg: Optional[str] = None, tube_agg: Optional[str] = None,
                         by: Sequence[str] = (), attributes: Optional[Mapping[str, Mapping[str, str]]] = None,
                         bootstrap: int = 0, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of the ensemble (column ``label``) and of every member column.

    Args:
        level: ``video`` (the CSV), ``tube`` or ``frame`` (from ``details``, see :mod:`infer.levels`).
        details: the per-person details file read by :func:`infer.levels.read_details`.
        frame_agg: ``mean`` / ``median`` / ``max``: recompute frame members' tube scores from their frames.
        tube_agg: the same, video scores from tube scores (``level="video"`` only).
        by: breakdowns (``dataset``, ``method``, ``compression``, ``folder``); ``attributes`` gives each video's
            values (:func:`infer.breakdown.load_eval_labels`).
        bootstrap: number of resamples for 95% intervals of AUC and log loss (0: none); ``seed`` fixes them.
    Returns:
        ``(report, arrays)``: the JSON-ready report, and the matched arrays for plotting
        (``y`` ``(N,)``, ``p`` ``(N,)``, ``members`` name -> ``(N,)``, ``video`` ``(N,)``, ``cells``
        breakdown -> value -> mask ``(N,)``), N samples of the chosen level.
    Raises:
        ConfigError: no prediction has a label, or an option does not fit the others.
    """
    _check_options(level, details, frame_agg, tube_agg, bootstrap)
    keys = [video_key(f) for f in preds.filenames]  # sample ids at video level: the filename minus extension
    det_of: dict[str, str] = {}  # CSV key -> its video in the details file
    for k in keys if details else ():
        d = k if k in details else PurePosixPath(k).name
        if d in details:
            det_of[k] = d
    resolved: dict[str, Label] = {}  # every predicted video's label, by stem, path tail or alias
    for f, k in zip(preds.filenames, keys):
        lab = match_label(labels, f, str(details[det_of[k]].get("source") or "") if k in det_of else "")
        if lab is not None:
            resolved[k] = lab
    has = np.array([k in resolved for k in keys], dtype=bool)
    missing = [f for f, h in zip(preds.filenames, has) if not h]
    if not has.any():
        examples = ", ".join(preds.filenames[:3])
        raise ConfigError(f"none of the {len(keys)} predicted videos has a label (e.g. {examples}); "
                          "are these the right labels?")
    matched = {id(lab) for lab in resolved.values()}
    unpredicted = sum(1 for lab in labels.values() if id(lab) not in matched)
    notes: list[str] = []
    if details is not None and level != "video":
        extra = len(details) - len(set(det_of.values()))
        if extra:
            notes.append(f"{extra} videos of the details file are not in the predictions CSV and are not "
                         "evaluated")
        resolved = {d: resolved[k] for k, d in det_of.items() if k in resolved}  # keyed by details video
        details = {d: details[d] for d in resolved}
    given = attributes or {}
    attributes = {k: {**_given_attributes(given, k), **label_attributes(lab)} for k, lab in resolved.items()}
    report: dict[str, Any] = {
        "predictions": str(preds.path),
        "n_predictions": len(keys),
        "n_evaluated": int(has.sum()),
        "n_missing_labels": len(missing),
        "missing_labels_examples": missing[:10],
        "n_labels_without_prediction": unpredicted,
        "status_counts": dict(Counter(preds.status)),
        "status_counts_evaluated": dict(Counter(s for s, h in zip(preds.status, has) if h)),
        "eps": eps,
        "level": level,
    }
    if missing:
        notes.append(f"{len(missing)} predicted videos have no label and are not evaluated")
    if unpredicted:
        notes.append(f"{unpredicted} labelled videos have no prediction")
    if level == "video":
        samples = _video_samples(preds, resolved, has, keys, details, det_of, tube_agg, frame_agg)
    elif level == "tube":
        samples = tube_samples(details or {}, resolved, frame_agg=frame_agg)
    else:
        samples = frame_samples(details or {}, resolved)
    notes.extend(samples.notes)
    y, p, videos = samples.y, samples.p, samples.video
    clusters = None if level == "video" else videos
    report.update({"aggregation": samples.aggregation, "n_samples": int(y.size),
                   "n_videos_with_samples": int(len(set(videos.tolist())))})
    report["ensemble"] = _metrics(y, p, eps, bootstrap, seed, clusters)
    report["members"] = {}
    report["notes"] = notes
    members: dict[str, np.ndarray] = {}
    for name, v in samples.members.items():
        ok = np.isfinite(v)
        if not ok.any():
            report["members"][name] = {"n": 0, "notes": ["no values in this column"]}
            continue
        report["members"][name] = binary_metrics(y[ok], v[ok], eps=eps)
        if not ok.all():
            report["members"][name]["notes"].append(f"{int((~ok).sum())} {level}s without a value left out")
        members[name] = v
    if len(preds.members) >= 2:
        report["correlation"] = _correlations(preds)
    cells: dict[str, dict[str, np.ndarray]] = {}
    if by:
        report["breakdowns"] = {}
        for key in by:
            cells[key] = breakdown_cells(key, videos, y, attributes or {})
            report["breakdowns"][key] = {
                "cells": {v: _metrics(y[m], p[m], eps, bootstrap, seed, None if clusters is None else clusters[m])
                          for v, m in cells[key].items()},
                "rule": ("fakes of each method against every real of the same datasets" if key == "method"
                         else f"the samples whose video has each {key}"),
            }
    return _clean(report), {"y": y, "p": p, "members": members, "video": videos, "cells": cells}


def _metrics(y: np.ndarray, p: np.ndarray, eps: float, bootstrap: int, seed: int,
             clusters: Optional[np.ndarray]) -> dict[str, Any]:
    m = binary_metrics(y, p, eps=eps)
    if bootstrap:
        m["ci"] = bootstrap_ci(y, p, n_resamples=bootstrap, seed=seed, clusters=clusters, eps=eps)
    return m


def video_key(filename: str) -> str:
    """A predicted video's id: its CSV filename without the extension (``a/b.mp4`` -> ``a/b``)."""
    return PurePosixPath(Path(filename).as_posix()).with_suffix("").as_posix()


def _given_attributes(given: Mapping[str, Mapping[str, str]], key: str) -> dict[str, str]:
    for k in (key, PurePosixPath(key).name):
        if k in given:
            return dict(given[k])
    return {}


def _video_samples(preds: Predictions, labels: Mapping[str, Label], has: np.ndarray, keys: list[str],
                   details: Optional[Mapping[str, dict]], det_of: Mapping[str, str], tube_agg: Optional[str],
                   frame_agg: Optional[str]) -> Samples:
    """One sample per labelled predicted video: the CSV's probabilities, or recomputed from the tubes."""
    vids = [k for k, h in zip(keys, has) if h]
    y = np.array([labels[s].label for s in vids], dtype=np.int64)
    p = preds.label[has].copy()
    members = {n: c[has].copy() for n, c in preds.members.items()}
    notes: list[str] = []
    if tube_agg:
        det_labels = {det_of[k]: labels[k] for k in vids if k in det_of}
        redo = video_samples_from_details({d: (details or {})[d] for d in det_labels}, det_labels,
                                          tube_agg=tube_agg, frame_agg=frame_agg)
        n_redo = 0
        for i, k in enumerate(vids):
            if det_of.get(k) in redo:
                n_redo += 1
                p[i], per_member = redo[det_of[k]]
                for n, v in per_member.items():
                    members.setdefault(n, np.full(len(vids), np.nan))[i] = v
        notes.append(f"{n_redo} of {len(vids)} videos recomputed from their tubes; the others keep the "
                     "predicted probability")
    return Samples(level="video", video=np.array(vids, dtype=object), y=y, p=p, members=members,
                   aggregation=_video_aggregation(tube_agg, frame_agg), notes=notes)


def _correlations(preds: Predictions) -> dict[str, Any]:
    """Pearson and Spearman correlation between member columns over the videos every member scored (status
    ``ok``: the prior given to no-face and failed videos would inflate the agreement)."""
    names = list(preds.members)
    mat = np.column_stack([preds.members[n] for n in names])
    rows = np.isfinite(mat).all(axis=1) & np.array([s == "ok" for s in preds.status])
    out: dict[str, Any] = {"members": names, "n": int(rows.sum())}
    if rows.sum() < 2:
        out["note"] = "fewer than 2 videos scored by every member: correlation undefined"
        out["pearson"] = out["spearman"] = None
        return out
    out["pearson"] = correlation_matrix(mat[rows], method="pearson")
    out["spearman"] = correlation_matrix(mat[rows], method="spearman")
    return out


def _ci_text(m: Mapping[str, Any], key: str) -> str:
    ci = (m.get("ci") or {}).get(key)
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"


def _table(rows: Sequence[tuple[str, Mapping[str, Any]]], with_ci: bool, width: int = 16) -> list[str]:
    cols = ("log_loss", "auc", "eer", "ap", "accuracy")
    width = min(48, max([width] + [len(n) + 1 for n, _ in rows]))
    head = f"{'':<{width}}{'n':>7}" + "".join(f"{c:>10}" for c in ("logloss", "AUC", "EER", "AP", "acc@0.5"))
    if with_ci:
        head += f"{'AUC 95% CI':>18}{'logloss 95% CI':>18}"
    lines = [head]
    for name, m in rows:
        if not m.get("n"):
            lines.append(f"{name[:width]:<{width}}{0:>7}   (no values)")
            continue
        line = f"{name[:width]:<{width}}{m['n']:>7}" + "".join(f"{optional_round(m.get(c)):>10}" for c in cols)
        if with_ci and m.get("ci"):
            line += f"{_ci_text(m, 'auc'):>18}{_ci_text(m, 'log_loss'):>18}"
        lines.append(line)
    return lines


def format_report(report: Mapping[str, Any]) -> str:
    """A short text version of the report for the terminal."""
    e = report["ensemble"]
    level = report.get("level", "video")
    lines = [f"{report['n_evaluated']} of {report['n_predictions']} predicted videos evaluated; status: "
             + ", ".join(f"{k} {v}" for k, v in sorted(report["status_counts_evaluated"].items())),
             f"level {level}: {e['n']} samples ({e['n_fake']} fake, {e['n_real']} real)"
             + (f" from {report['n_videos_with_samples']} videos" if level != "video" else ""),
             f"aggregation: {report.get('aggregation', '')}"]
    with_ci = bool(e.get("ci"))
    if with_ci:
        ci = e["ci"]
        lines.append(f"95% bootstrap intervals: {ci['n_resamples']} resamples of {ci['n_units']} "
                     f"{'videos' if ci['unit'] == 'cluster' else level + 's'}, seed {ci['seed']}")
    lines += _table([("ensemble", e)] + list(report["members"].items()), with_ci)
    corr = report.get("correlation")
    if corr and corr.get("pearson") is not None:
        names = corr["members"]
        w = max(8, max(len(n) for n in names) + 1)
        lines.append(f"correlation between members (Pearson, {corr['n']} videos with status ok):")
        lines.append(" " * w + "".join(f"{n[:w - 1]:>{w}}" for n in names))
        for n, r in zip(names, corr["pearson"]):
            lines.append(f"{n[:w - 1]:<{w}}" + "".join(f"{optional_round(v, 3):>{w}}" for v in r))
    for key, b in report.get("breakdowns", {}).items():
        lines.append(f"by {key} ({b['rule']}):")
        lines += _table(list(b["cells"].items()), with_ci)
    notes = list(report.get("notes", [])) + list(e.get("notes", []))
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def plot_roc(arrays: Mapping[str, Any], report: Mapping[str, Any], path: Path) -> Path:
    """ROC curve of the ensemble (thick) and of each member (thin), AUC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = arrays["y"]
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    if y.min() == y.max():
        ax.text(0.5, 0.5, "single-class labels:\nROC undefined", ha="center", va="center")
    else:
        for name, v in arrays["members"].items():
            ok = np.isfinite(v)
            if ok.any() and y[ok].min() != y[ok].max():
                c = roc_curve(y[ok], v[ok])
                ax.plot(c.fpr, c.tpr, linewidth=1, alpha=0.8,
                        label=f"{name} (AUC {optional_round(report['members'][name].get('auc'), 3)})")
        c = roc_curve(y, arrays["p"])
        ax.plot(c.fpr, c.tpr, color="black", linewidth=2.2,
                label=f"ensemble (AUC {optional_round(report['ensemble']['auc'], 3)})")
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title(f"ROC, {len(y)} {report.get('level', 'video')}s")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_histogram(arrays: Mapping[str, Any], path: Path, bins: int = 25, unit: str = "videos") -> Path:
    """Histogram of the ensemble's fake probability, one colour per true label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = arrays["y"], arrays["p"]
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    edges = np.linspace(0, 1, bins + 1)
    for lab, name, color in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
        sel = p[y == lab]
        if sel.size:
            ax.hist(sel, bins=edges, alpha=0.55, color=color, label=f"{name} ({sel.size})")
    ax.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted fake probability")
    ax.set_ylabel(unit)
    ax.set_title("score distribution per label")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], arrays: Mapping[str, Any], out_dir: str | os.PathLike, *,
                 plots: bool = True) -> dict[str, Path]:
    """Write ``report.json`` (atomically) and, with ``plots``, ``roc.png``, ``histogram.png`` and one
    ``by_<breakdown>.png`` per breakdown into ``out_dir``. Returns the written paths by kind."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the report folder ({e.strerror or e})") from None
    paths: dict[str, Path] = {}
    if plots:
        paths["roc"] = plot_roc(arrays, report, out / "roc.png")
        paths["histogram"] = plot_histogram(arrays, out / "histogram.png", unit=f"{report.get('level', 'video')}s")
        for key, cells in arrays.get("cells", {}).items():
            paths[f"by_{key}"] = plot_breakdown(key, cells, arrays["y"], arrays["p"],
                                                report["breakdowns"][key]["cells"], out / f"by_{key}.png")
        report["plots"] = {k: str(v) for k, v in paths.items()}
    paths["report"] = out / "report.json"
    atomic_write_text(paths["report"], json.dumps(report, indent=1) + "\n")
    return paths


def default_report_dir(predictions: str | os.PathLike, out: Optional[str] = None) -> Path:
    """``--out`` if given, else ``<predictions stem>_eval/`` beside the CSV."""
    if out:
        return Path(out)
    p = Path(predictions)
    return p.with_name(f"{p.stem}_eval")
