"""``facetubes evaluate-cross``: the cross-dataset table of research papers, from several predictions CSVs.

Rows are training sets (one run each, named on the command line), columns are test sets. A run given as
``TRAIN=PREDICTIONS.csv`` is split into columns by an attribute of its videos (``dataset`` by default, or
``method`` for a cross-manipulation table, with the same cell rules as ``evaluate --by``); a run given as
``TRAIN@TEST=PREDICTIONS.csv`` fills the single column ``TEST`` with all of its labelled videos. Every cell is
scored at video level from the CSV's probabilities.

Outputs: ``cross.md`` (Markdown table of the chosen metric, with 95% bootstrap intervals when asked),
``cross.csv`` (the same matrix, plain numbers), ``cross.json`` (every metric of every cell) and ``cross.png``
(heat map).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from facetubes.errors import ConfigError
from facetubes.manifest import Label, atomic_write_text

from .breakdown import BREAKDOWN_KEYS, resolve_folders
from .csvio import read_predictions
from .evaluate import MAX_RESAMPLES, evaluate_predictions
from .metrics import DEFAULT_EPS

__all__ = ["METRICS", "Run", "parse_run", "cross_table", "format_markdown", "format_csv", "plot_heatmap",
           "write_cross"]

#: metric -> (title, higher is better)
METRICS: dict[str, tuple[str, bool]] = {"auc": ("AUC", True), "log_loss": ("log loss", False),
                                        "eer": ("EER", False), "ap": ("AP", True), "accuracy": ("accuracy", True)}


@dataclass(frozen=True)
class Run:
    """One ``--run``: the training-set name, the fixed test-set name (``None``: split by attribute), the CSV."""

    train: str
    test: Optional[str]
    path: Path


def parse_run(text: str) -> Run:
    """``TRAIN=FILE`` or ``TRAIN@TEST=FILE``."""
    name, sep, path = text.partition("=")
    train, at, test = name.partition("@")
    if not sep or not train.strip() or not path.strip() or (at and not test.strip()):
        raise ConfigError(f"--run {text!r}: expected TRAIN=PREDICTIONS.csv or TRAIN@TEST=PREDICTIONS.csv")
    return Run(train.strip(), test.strip() or None, Path(path.strip()))


def cross_table(runs: Sequence[Run], labels: Mapping[str, Label], attributes: Mapping[str, Mapping[str, str]], *,
                columns: str = "dataset", bootstrap: int = 0, seed: int = 0, eps: float = DEFAULT_EPS
                ) -> dict[str, Any]:
    """Score every run and place its cells. Returns a JSON-ready ``{"rows", "columns", "column_key", "cells":
    {train: {test: metrics}}, "runs": [...]}``; a (train, test) cell given twice is a ConfigError."""
    if columns not in BREAKDOWN_KEYS:
        raise ConfigError(f"--columns must be one of {', '.join(BREAKDOWN_KEYS)}, got {columns!r}")
    if not runs:
        raise ConfigError("no --run given")
    if not 0 <= bootstrap <= MAX_RESAMPLES:
        raise ConfigError(f"--bootstrap must be 0..{MAX_RESAMPLES} resamples, got {bootstrap}")
    cells: dict[str, dict[str, Any]] = {}
    test_names: list[str] = []
    run_info = []
    for run in runs:
        preds = read_predictions(run.path)
        attrs = {k: dict(v) for k, v in attributes.items()}
        resolve_folders(attrs, preds.filenames)
        by = () if run.test else (columns,)
        try:
            report, _ = evaluate_predictions(preds, labels, eps=eps, by=by, attributes=attrs,
                                             bootstrap=bootstrap, seed=seed)
        except ConfigError as e:
            raise ConfigError(f"run {run.train}: {e}") from None
        found = {run.test: report["ensemble"]} if run.test else report["breakdowns"][columns]["cells"]
        row = cells.setdefault(run.train, {})
        for test, m in found.items():
            if test in row:
                raise ConfigError(f"cell {run.train} x {test} is given by two runs")
            row[test] = m
            if test not in test_names:
                test_names.append(test)
        run_info.append({"train": run.train, "test": run.test, "predictions": str(run.path),
                         "n_evaluated": report["n_evaluated"], "notes": report["notes"]})
    return {"rows": list(cells), "columns": test_names, "column_key": columns, "level": "video",
            "cells": cells, "runs": run_info}


def _cell_text(m: Optional[Mapping[str, Any]], metric: str, digits: int = 3) -> str:
    if m is None:
        return ""
    v = m.get(metric)
    if v is None:
        return "n/a"
    ci = (m.get("ci") or {}).get(metric)
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def format_markdown(table: Mapping[str, Any], metric: str = "auc") -> str:
    """Markdown table: one row per training set, one column per test set; empty where no run scored the cell."""
    title, higher = METRICS[metric]
    cols = table["columns"]
    head = "| train \\ test | " + " | ".join(cols) + " |"
    lines = [f"{title} ({'higher' if higher else 'lower'} is better), video level"
             + (", 95% bootstrap interval in brackets" if _any_ci(table) else "") + ":", "",
             head, "|" + "---|" * (len(cols) + 1)]
    for r in table["rows"]:
        lines.append(f"| {r} | " + " | ".join(_cell_text(table["cells"][r].get(c), metric) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _any_ci(table: Mapping[str, Any]) -> bool:
    return any(m.get("ci") for row in table["cells"].values() for m in row.values())


def format_csv(table: Mapping[str, Any], metric: str = "auc") -> str:
    """The matrix as CSV: ``train,<test 1>,<test 2>...``; empty cells where not scored or undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["train", *table["columns"]])
    for r in table["rows"]:
        row = table["cells"][r]
        vals = [row.get(c, {}).get(metric) for c in table["columns"]]
        w.writerow([r, *("" if v is None else f"{v:.6f}" for v in vals)])
    return buf.getvalue()


def _matrix(table: Mapping[str, Any], metric: str) -> np.ndarray:
    return np.array([[np.nan if (v := table["cells"][r].get(c, {}).get(metric)) is None else v
                      for c in table["columns"]] for r in table["rows"]], dtype=np.float64)


def plot_heatmap(table: Mapping[str, Any], path: Path, metric: str = "auc") -> Path:
    """Heat map of the chosen metric, each cell annotated; greener is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, higher = METRICS[metric]
    mat = _matrix(table, metric)
    rows, cols = table["rows"], table["columns"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 1.4 + 0.7 * len(rows)), dpi=100)
    bounded = metric in ("auc", "ap", "accuracy", "eer")
    vmin, vmax = (0.0, 1.0) if bounded else (np.nanmin(mat) if np.isfinite(mat).any() else 0.0,
                                             np.nanmax(mat) if np.isfinite(mat).any() else 1.0)
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="RdYlGn" if higher else "RdYlGn_r", vmin=vmin, vmax=vmax)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            text = _cell_text(table["cells"][r].get(c), metric).replace(" [", "\n[")
            ax.text(j, i, text or "-", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_xlabel(f"test set ({table['column_key']})")
    ax.set_ylabel("training set")
    ax.set_title(f"cross-{table['column_key']} {title}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_cross(table: dict[str, Any], out_dir: str | os.PathLike, *, metric: str = "auc", plots: bool = True
                ) -> dict[str, Path]:
    """Write ``cross.md``, ``cross.csv``, ``cross.json`` (atomically) and, with ``plots``, ``cross.png``."""
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the report folder ({e.strerror or e})") from None
    paths = {"markdown": out / "cross.md", "csv": out / "cross.csv", "json": out / "cross.json"}
    if plots:
        paths["heatmap"] = plot_heatmap(table, out / "cross.png", metric)
    atomic_write_text(paths["markdown"], format_markdown(table, metric))
    atomic_write_text(paths["csv"], format_csv(table, metric))
    atomic_write_text(paths["json"], json.dumps({**table, "metric": metric}, indent=1) + "\n")
    return paths
