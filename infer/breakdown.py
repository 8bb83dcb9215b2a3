"""Per-video attributes (dataset, method, compression, folder) and the breakdowns of a report by them.

Where the attributes come from, first match wins per attribute:

1. the labels: ``Label.dataset`` / ``.method`` / ``.compression`` / ``.folder`` (the dataset readers fill them), the
   ``dataset, method, compression, folder`` columns of a labels CSV or ``index.csv``;
2. ``folder`` only: the folder of the video's ``source`` in the details file, else the folder of the
   ``metadata.json`` that labelled it (DFDC: the part, ``dfdc_train_part_N``), else the folder part of the
   predictions CSV's ``filename``.

Cells of a breakdown: for ``dataset``, ``compression`` and ``folder`` a cell holds the samples whose video has that
value. For ``method`` a cell holds the fakes of that manipulation *and every real of the same datasets* (the shared
reals, as FF++ papers report each manipulation against the same originals); the reals' own method is ignored.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from facetubes.errors import ConfigError
from facetubes.manifest import Label, load_labels, read_index

__all__ = ["BREAKDOWN_KEYS", "NONE", "parse_by", "match_label", "label_attributes", "load_eval_labels",
           "resolve_folders", "breakdown_cells",
           "plot_breakdown"]

BREAKDOWN_KEYS: tuple[str, ...] = ("dataset", "method", "compression", "folder")
#: the cell name of videos without a value
NONE = "(none)"


def parse_by(text: Optional[str | Sequence[str]]) -> tuple[str, ...]:
    """``"dataset,method"`` -> ``("dataset", "method")``; unknown keys are a ConfigError."""
    if not text:
        return ()
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    keys = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    bad = [k for k in keys if k not in BREAKDOWN_KEYS]
    if bad:
        raise ConfigError(f"--by: unknown breakdown {', '.join(bad)} (choose from {', '.join(BREAKDOWN_KEYS)})")
    return keys


def _csv_rows(path: Path) -> Optional[tuple[list[str], list[dict[str, str]]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    reader = csv.DictReader(io.StringIO(text))
    return [c.strip().lower() for c in (reader.fieldnames or [])], \
        [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in reader]


def _is_index(path: Path) -> bool:
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = [c.strip() for c in f.readline().split(",")]
    return "tube" in header and "path" in header


def match_label(labels: Mapping[str, Label], name: str, source: str = "") -> Optional[Label]:
    """The label of a predicted video: by its stem, then by the longest tail of its path (``name``, then the
    details' ``source``) that the table knows, then by the table's aliases (label tables of the dataset readers
    carry ``aliases``: root-relative paths and stems that only one video has)."""
    aliases: Mapping[str, Label] = getattr(labels, "aliases", {}) or {}
    stem = Path(name).stem
    lab = labels.get(stem) if stem in labels else None
    if lab is not None:
        return lab
    for path in (name, source):
        parts = Path(path).as_posix().split("/") if path else []
        for k in range(len(parts)):
            tail = "/".join(parts[k:])
            for key in (tail, str(Path(tail).with_suffix(""))):
                lab = (labels.get(key) if key in labels else None) or aliases.get(key)
                if lab is not None:
                    return lab
    return aliases.get(stem)


def label_attributes(lab: Label) -> dict[str, str]:
    """The breakdown values a label carries (``Label.dataset/method/compression/folder``, where present)."""
    return _present({k: getattr(lab, k, "") for k in BREAKDOWN_KEYS})


def _merge(tables: Sequence[Mapping[str, Label]]) -> Mapping[str, Label]:
    from facetubes import manifest

    merge = getattr(manifest, "merge_labels", None)  # keeps the aliases of the dataset readers' tables
    if merge is not None:
        return merge(*tables)
    out: dict[str, Label] = {}
    for t in tables:
        out.update(t)
    return out


def load_eval_labels(paths: Sequence[str | os.PathLike]) -> tuple[Mapping[str, Label], dict[str, dict[str, str]]]:
    """Labels (as :func:`facetubes.manifest.load_labels`, plus ``index.csv`` files, whose unlabelled rows are
    skipped; later sources win) and the attributes that label files give beside the labels: stem ->
    {attribute: value} (the CSVs' ``dataset, method, compression, folder`` columns, the folder of each
    ``metadata.json``). The attributes of the Label objects themselves are read when videos are matched."""
    tables: list[Mapping[str, Label]] = []
    attrs: dict[str, dict[str, str]] = {}
    for raw in paths:
        p = Path(raw)
        if _is_index(p):
            table: dict[str, Label] = {}
            for r in read_index(p):
                if r.label is None:
                    continue
                extra = {k: getattr(r, k, "") for k in ("dataset", "method", "compression")}
                table[r.video] = Label(r.label, r.group or r.video, r.split)
                attrs.setdefault(r.video, {}).update(_present({"folder": r.folder, **extra}))
            tables.append(table)
            continue
        tables.append(load_labels([p]))
        _extra_attributes(p, attrs)
    labels = _merge(tables)
    if not len(labels):
        raise ConfigError(f"{', '.join(map(str, paths))}: no labels found")
    return labels, attrs


def _present(d: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in d.items() if v not in (None, "")}


def _extra_attributes(p: Path, attrs: dict[str, dict[str, str]]) -> None:
    """CSV attribute columns; a metadata.json's folder as the folder of the videos it names."""
    metas = sorted(p.rglob("metadata.json")) if p.is_dir() else ([p] if p.name == "metadata.json" else [])
    for m in metas:
        try:
            data = json.loads(m.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for name in data:
                attrs.setdefault(Path(name).stem, {})["_metadata_folder"] = m.parent.name
    if p.is_file() and p.suffix.lower() == ".csv":
        parsed = _csv_rows(p)
        if parsed is None:
            return
        cols, rows = parsed
        name_col = next((c for c in ("filename", "video", "file", "name", "path") if c in cols), None)
        keys = [k for k in BREAKDOWN_KEYS if k in cols]
        if name_col and keys:
            for r in rows:
                if r.get(name_col):
                    attrs.setdefault(Path(r[name_col]).stem, {}).update(_present({k: r.get(k) for k in keys}))


def resolve_folders(attrs: dict[str, dict[str, str]], filenames: Iterable[str],
                    details: Optional[Mapping[str, dict]] = None) -> None:
    """Fill ``folder`` where the labels' columns did not: the folder of the details' ``source``, else of the
    ``metadata.json``, else of the predictions CSV's filename. Modifies ``attrs`` in place."""
    sources = {s: Path(str(o.get("source") or "")).parent.name for s, o in (details or {}).items()}
    csv_dirs = {Path(f).stem: Path(f).parent.name for f in filenames}
    for stem in set(attrs) | set(sources) | set(csv_dirs):
        a = attrs.setdefault(stem, {})
        meta = a.pop("_metadata_folder", "")
        if not a.get("folder"):
            folder = sources.get(stem) or meta or csv_dirs.get(stem, "")
            if folder:
                a["folder"] = folder


def _value(attrs: Mapping[str, Mapping[str, str]], video: str, key: str) -> str:
    return attrs.get(video, {}).get(key) or NONE


def breakdown_cells(key: str, videos: np.ndarray, y: np.ndarray, attrs: Mapping[str, Mapping[str, str]]
                    ) -> dict[str, np.ndarray]:
    """value -> boolean mask ``(N,)`` over the samples, cells sorted by value (see the module docstring)."""
    vals = np.array([_value(attrs, v, key) for v in videos], dtype=object)
    if key != "method":
        return {v: vals == v for v in sorted(set(vals.tolist()))}
    ds = np.array([_value(attrs, v, "dataset") for v in videos], dtype=object)
    fake = y == 1
    cells: dict[str, np.ndarray] = {}
    for m in sorted(set(vals[fake].tolist())):
        mine = fake & (vals == m)
        cells[m] = mine | (~fake & np.isin(ds, list(set(ds[mine].tolist()))))
    return cells


def plot_breakdown(key: str, cells: Mapping[str, np.ndarray], y: np.ndarray, p: np.ndarray,
                   metrics: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Left: the ROC curve of each cell; right: each cell's AUC with its bootstrap interval when there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .metrics import roc_curve

    names = list(cells)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.0, 4.8), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1)
    aucs, lo, hi = [], [], []
    for name in names:
        m = cells[name]
        auc = metrics[name].get("auc")
        aucs.append(np.nan if auc is None else auc)
        ci = (metrics[name].get("ci") or {}).get("auc")
        lo.append(aucs[-1] - ci[0] if ci else 0.0)
        hi.append(ci[1] - aucs[-1] if ci else 0.0)
        if auc is not None:
            c = roc_curve(y[m], p[m])
            ax.plot(c.fpr, c.tpr, linewidth=1.4, label=f"{name} ({auc:.3f}, n={int(m.sum())})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC per {key}")
    ax.legend(loc="lower right", fontsize=7)
    pos = np.arange(len(names))
    bx.bar(pos, np.nan_to_num(aucs, nan=0.0), yerr=[lo, hi], capsize=3, color="tab:blue", alpha=0.75)
    bx.set_xticks(pos)
    bx.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    bx.set_ylim(0, 1.02)
    bx.axhline(0.5, color="0.6", linestyle="--", linewidth=1)
    bx.set_ylabel("AUC" + (" (95% bootstrap CI)" if any(hi) else ""))
    bx.set_title(f"AUC per {key}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
