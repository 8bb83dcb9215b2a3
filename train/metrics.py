"""Validation metrics (log loss, ROC AUC, per-class accuracy) and the per-epoch record: ``metrics.csv`` + a PNG.

Pure numpy; the CSV is rewritten atomically after every epoch, so a resumed run continues the same file.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facetubes.manifest import atomic_path, atomic_write_text
from infer import metrics as _metrics

COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_auc", "val_acc", "val_acc_real", "val_acc_fake",
           "clips_per_s", "epoch_time_s", "train_clips", "val_tubes", "bad_tubes")


def log_loss(y_true: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray, eps: float = 1e-15) -> float:
    """Binary log loss (the DFDC metric), ``p`` clipped to [eps, 1-eps]; NaN for an empty validation set.
    The one implementation lives in :mod:`infer.metrics` (shared with ``facetubes evaluate``)."""
    y = np.asarray(y_true)
    if y.size == 0:
        return float("nan")
    return _metrics.log_loss(y.astype(np.int64), np.asarray(p_fake, dtype=np.float64), eps)


def roc_auc(y_true: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count 1/2, :func:`infer.metrics.roc_auc`); NaN unless both classes occur,
    so a tiny validation set never stops a run."""
    y = np.asarray(y_true).astype(np.int64)
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return _metrics.roc_auc(y, np.asarray(score, dtype=np.float64))


def class_accuracy(y_true: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray,
                   threshold: float = 0.5) -> tuple[float, float, float]:
    """(overall, real, fake) accuracy at ``threshold``; NaN for a class with no example."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(p_fake) >= threshold).astype(int)
    ok = pred == y

    def mean(m: np.ndarray) -> float:
        return float(m.mean()) if m.size else float("nan")

    return mean(ok), mean(ok[y == 0]), mean(ok[y == 1])


def evaluate(y_true: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray) -> dict[str, float]:
    """All validation metrics as a dict: ``val_loss, val_auc, val_acc, val_acc_real, val_acc_fake``."""
    acc, acc_r, acc_f = class_accuracy(y_true, p_fake)
    return {"val_loss": log_loss(y_true, p_fake), "val_auc": roc_auc(y_true, p_fake), "val_acc": acc,
            "val_acc_real": acc_r, "val_acc_fake": acc_f}


# ----------------------------------------------------------------------------------------------------------------
# the record of a run


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class MetricsLog:
    """Rows of per-epoch metrics, kept in memory, written to ``metrics.csv`` and plotted to ``curves.png``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.csv_path = Path(run_dir) / "metrics.csv"
        self.png_path = Path(run_dir) / "curves.png"
        self.rows: list[dict[str, Any]] = []

    def load(self, up_to_epoch: int) -> None:
        """Read an existing ``metrics.csv`` (resume), keeping rows of epochs < ``up_to_epoch``."""
        self.rows = []
        if not self.csv_path.is_file():
            return
        for row in csv.DictReader(io.StringIO(self.csv_path.read_text(encoding="utf-8"))):
            parsed = {k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items() if k in COLUMNS}
            for k in ("epoch", "step", "train_clips", "val_tubes", "bad_tubes"):
                if k in parsed and not math.isnan(parsed[k]):
                    parsed[k] = int(parsed[k])
            if int(parsed.get("epoch", 0)) < up_to_epoch:
                self.rows.append(parsed)

    def append(self, row: dict[str, Any]) -> None:
        """Add one epoch's row and rewrite the CSV and the plot."""
        self.rows.append({k: row.get(k, float("nan")) for k in COLUMNS})
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.rows:
            w.writerow([_fmt(r[k]) for k in COLUMNS])
        atomic_write_text(self.csv_path, buf.getvalue())
        self.plot()

    def plot(self) -> None:
        """Loss, AUC and accuracy curves against the epoch, as ``curves.png``."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        ep = [r["epoch"] + 1 for r in self.rows]

        def col(k: str) -> list[float]:
            return [float(r[k]) for r in self.rows]

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        axes[0].plot(ep, col("train_loss"), "o-", label="train loss")
        axes[0].plot(ep, col("val_loss"), "o-", label="val log loss")
        axes[0].set_title("loss")
        axes[1].plot(ep, col("val_auc"), "o-", color="C2")
        axes[1].axhline(0.5, color="grey", lw=0.8, ls="--")
        axes[1].set_ylim(0.0, 1.0)
        axes[1].set_title("validation AUC")
        axes[2].plot(ep, col("val_acc_real"), "o-", label="real")
        axes[2].plot(ep, col("val_acc_fake"), "o-", label="fake")
        axes[2].plot(ep, col("val_acc"), "o-", label="all")
        axes[2].set_ylim(0.0, 1.0)
        axes[2].set_title("validation accuracy")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axes[0].legend()
        axes[2].legend()
        fig.tight_layout()
        with atomic_path(self.png_path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
