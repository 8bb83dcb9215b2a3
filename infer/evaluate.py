"""``facetubes evaluate``: score a predictions CSV against labels; JSON report, text table and PNG plots.

Videos are matched by file stem (``abc.mp4`` in the CSV <-> ``abc.mp4`` / ``abc`` in the labels). Predictions
without a label are counted and left out; labels without a prediction are counted too. With per-member columns
the report has each member's metrics and the correlation between members (ensemble diversity).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from facetubes.errors import ConfigError
from facetubes.manifest import Label, atomic_write_text

from .csvio import Predictions
from .metrics import DEFAULT_EPS, binary_metrics, correlation_matrix, optional_round, roc_curve

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


def evaluate_predictions(preds: Predictions, labels: Mapping[str, Label], *, eps: float = DEFAULT_EPS
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of the ensemble (column ``label``) and of every member column.

    Returns:
        ``(report, arrays)``: the JSON-ready report, and the matched arrays for plotting
        (``y`` ``(N,)``, ``p`` ``(N,)``, ``members`` name -> ``(N,)``).
    Raises:
        ConfigError: no prediction has a label.
    """
    stems = [Path(f).stem for f in preds.filenames]
    has = np.array([s in labels for s in stems], dtype=bool)
    missing = [f for f, h in zip(preds.filenames, has) if not h]
    if not has.any():
        examples = ", ".join(preds.filenames[:3])
        raise ConfigError(f"none of the {len(stems)} predicted videos has a label (e.g. {examples}); "
                          "are these the right labels?")
    y = np.array([labels[s].label for s, h in zip(stems, has) if h], dtype=np.int64)
    p = preds.label[has]
    predicted = set(stems)
    unpredicted = sum(1 for k in labels if k not in predicted)
    report: dict[str, Any] = {
        "predictions": str(preds.path),
        "n_predictions": len(stems),
        "n_evaluated": int(has.sum()),
        "n_missing_labels": len(missing),
        "missing_labels_examples": missing[:10],
        "n_labels_without_prediction": unpredicted,
        "status_counts": dict(Counter(preds.status)),
        "status_counts_evaluated": dict(Counter(s for s, h in zip(preds.status, has) if h)),
        "eps": eps,
        "ensemble": binary_metrics(y, p, eps=eps),
        "members": {},
        "notes": [],
    }
    if missing:
        report["notes"].append(f"{len(missing)} predicted videos have no label and are not evaluated")
    if unpredicted:
        report["notes"].append(f"{unpredicted} labelled videos have no prediction")
    members: dict[str, np.ndarray] = {}
    for name, col in preds.members.items():
        v = col[has]
        ok = np.isfinite(v)
        if not ok.any():
            report["members"][name] = {"n": 0, "notes": ["no values in this column"]}
            continue
        report["members"][name] = binary_metrics(y[ok], v[ok], eps=eps)
        if not ok.all():
            report["members"][name]["notes"].append(f"{int((~ok).sum())} videos without a value left out")
        members[name] = v
    if len(preds.members) >= 2:
        report["correlation"] = _correlations(preds)
    return _clean(report), {"y": y, "p": p, "members": members}


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


def format_report(report: Mapping[str, Any]) -> str:
    """A short text version of the report for the terminal."""
    cols = ("log_loss", "auc", "eer", "ap", "accuracy")
    e = report["ensemble"]
    lines = [f"{report['n_evaluated']} of {report['n_predictions']} predicted videos evaluated: "
             f"{e['n_fake']} fake, {e['n_real']} real; status: "
             + ", ".join(f"{k} {v}" for k, v in sorted(report["status_counts_evaluated"].items())),
             f"{'':<16}{'n':>7}" + "".join(f"{c:>10}" for c in ("logloss", "AUC", "EER", "AP", "acc@0.5"))]
    rows = [("ensemble", e)] + [(k, v) for k, v in report["members"].items()]
    for name, m in rows:
        if not m.get("n"):
            lines.append(f"{name:<16}{0:>7}   (no values)")
            continue
        lines.append(f"{name[:16]:<16}{m['n']:>7}" + "".join(f"{optional_round(m.get(c)):>10}" for c in cols))
    corr = report.get("correlation")
    if corr and corr.get("pearson") is not None:
        names = corr["members"]
        w = max(8, max(len(n) for n in names) + 1)
        lines.append(f"correlation between members (Pearson, {corr['n']} videos with status ok):")
        lines.append(" " * w + "".join(f"{n[:w - 1]:>{w}}" for n in names))
        for n, r in zip(names, corr["pearson"]):
            lines.append(f"{n[:w - 1]:<{w}}" + "".join(f"{optional_round(v, 3):>{w}}" for v in r))
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
    ax.set_title(f"ROC, {len(y)} videos")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_histogram(arrays: Mapping[str, Any], path: Path, bins: int = 25) -> Path:
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
    ax.set_ylabel("videos")
    ax.set_title("score distribution per label")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], arrays: Mapping[str, Any], out_dir: str | os.PathLike, *,
                 plots: bool = True) -> dict[str, Path]:
    """Write ``report.json`` (atomically) and, with ``plots``, ``roc.png`` and ``histogram.png`` into ``out_dir``.
    Returns the written paths by kind."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the report folder ({e.strerror or e})") from None
    paths: dict[str, Path] = {}
    if plots:
        paths["roc"] = plot_roc(arrays, report, out / "roc.png")
        paths["histogram"] = plot_histogram(arrays, out / "histogram.png")
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
