"""The predictions CSV: DFDC submission columns ``filename,label`` plus ``n_tubes,status,error`` and, optionally,
one column per ensemble member.

Writing is incremental and crash-safe: the header is written atomically, then each video's row is appended as
one ``write`` followed by ``flush`` + ``fsync``. A killed run can only leave the current row half-written; the
next run drops such a trailing partial line and resumes after the last complete row.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TextIO

import numpy as np

from facetubes.errors import ConfigError, OutputError, read_text
from facetubes.manifest import atomic_write_text

__all__ = ["CORE_COLUMNS", "STATUSES", "PredictionRow", "PredictionsWriter", "Predictions", "read_predictions"]

CORE_COLUMNS: tuple[str, ...] = ("filename", "label", "n_tubes", "status", "error")
STATUSES: tuple[str, ...] = ("ok", "no_face", "error")


def _fmt(p: Optional[float]) -> str:
    return "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.6f}"


@dataclass
class PredictionRow:
    """One video's line. ``label`` is the fake probability; ``members`` maps member name -> probability."""

    filename: str
    label: float
    n_tubes: int
    status: str
    error: str = ""
    members: dict[str, Optional[float]] = field(default_factory=dict)

    def cells(self, member_columns: Sequence[str]) -> list[str]:
        error = " ".join(self.error.split())  # always one line
        return [self.filename, _fmt(self.label), str(self.n_tubes), self.status, error,
                *(_fmt(self.members.get(c)) for c in member_columns)]


def _line(cells: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()


class PredictionsWriter:
    """Append-only writer with resume.

    Args:
        path: the CSV to write.
        member_columns: per-member columns after the core ones (empty without ``--per-model``).
        overwrite: start a new file even if ``path`` exists.
        retry_errors: on resume, forget rows with status ``error`` so those videos are predicted again (the file
            is rewritten atomically without them).

    Attributes:
        done: filename -> status of the rows already in the file (resume skips these videos).
    """

    def __init__(self, path: str | os.PathLike, member_columns: Sequence[str] = (), *, overwrite: bool = False,
                 retry_errors: bool = False) -> None:
        self.path = Path(path)
        self.columns = [*CORE_COLUMNS, *member_columns]
        self.member_columns = list(member_columns)
        self.done: dict[str, str] = {}
        self.dropped_partial = False
        self._retry_errors = retry_errors
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a folder; --out takes a CSV file path")
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path.parent}: output folder does not exist")
        header = _line(self.columns)
        existing = None if overwrite or not self.path.exists() else self._read_existing()
        if existing is None:
            atomic_write_text(self.path, header)
        else:
            kept, rewrite = existing
            if rewrite:
                atomic_write_text(self.path, header + "".join(_line(r) for r in kept))
        try:
            self._f: Optional[TextIO] = open(self.path, "a", encoding="utf-8", newline="")
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None

    def _read_existing(self) -> Optional[tuple[list[list[str]], bool]]:
        """Parse the existing file for resume. Returns (rows to keep, whether the file must be rewritten), or None
        for an empty file."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise OutputError(f"{self.path}: cannot read existing predictions ({e})") from None
        if not text.strip():
            return None
        rewrite = False
        if not text.endswith("\n"):  # a run killed mid-row
            text = text[: text.rfind("\n") + 1]
            self.dropped_partial = rewrite = True
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or rows[0] != self.columns:
            found = ",".join(rows[0]) if rows else "(nothing)"
            raise ConfigError(f"{self.path}: existing file has columns {found}, this run writes "
                              f"{','.join(self.columns)}; pass --overwrite or choose another --out")
        kept = []
        for i, r in enumerate(rows[1:], start=2):
            if len(r) != len(self.columns):
                raise ConfigError(f"{self.path}:{i}: malformed row ({len(r)} fields, expected {len(self.columns)});"
                                  " fix or remove the file, or pass --overwrite")
            try:
                _float(r[1], f"{self.path}:{i}: label", allow_empty=False)
            except ConfigError as e:
                raise ConfigError(f"{e}; fix or remove the row, or pass --overwrite") from None
            if r[3] not in STATUSES:
                raise ConfigError(f"{self.path}:{i}: unknown status {r[3]!r}; fix or remove the row, or pass "
                                  "--overwrite")
            if r[3] == "error" and self._retry_errors:
                rewrite = True
                continue
            kept.append(r)
        self.done = {r[0]: r[3] for r in kept}
        return kept, rewrite

    def write(self, row: PredictionRow) -> None:
        """Append one row durably (flush + fsync)."""
        if self._f is None:
            raise OutputError(f"{self.path}: writer is closed")
        if row.status not in STATUSES:
            raise ValueError(f"unknown status {row.status!r}")
        try:
            self._f.write(_line(row.cells(self.member_columns)))
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e})") from None
        self.done[row.filename] = row.status

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "PredictionsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Predictions:
    """A predictions CSV in columns. ``members`` maps member name -> ``(N,)`` float64 (NaN where empty)."""

    path: Path
    filenames: list[str]
    label: np.ndarray  # (N,) float64
    status: list[str]  # "ok" when the file has no status column (a plain submission)
    n_tubes: list[Optional[int]]
    members: dict[str, np.ndarray]


def _float(v: str, where: str, *, allow_empty: bool) -> float:
    v = v.strip()
    if v == "" and allow_empty:
        return float("nan")
    try:
        x = float(v)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a number") from None
    if not (0.0 <= x <= 1.0):
        raise ConfigError(f"{where}: probability {x} is outside [0, 1]")
    return x


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a predictions CSV (ours, or any DFDC-style ``filename,label`` file). Raises ConfigError."""
    p = Path(path)
    text = read_text(p, "predictions file", "a predictions CSV", encoding="utf-8-sig")
    if not text.strip():
        raise ConfigError(f"{p}: predictions file is empty")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1] if "\n" in text else text  # drop a partial last row
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("filename", "label") if c not in cols]
    if missing:
        raise ConfigError(f"{p}: not a predictions CSV (missing column(s): {', '.join(missing)})")
    member_cols = [c for c in cols if c not in CORE_COLUMNS]
    names: list[str] = []
    labels: list[float] = []
    status: list[str] = []
    tubes: list[Optional[int]] = []
    members: dict[str, list[float]] = {c: [] for c in member_cols}
    seen: dict[str, int] = {}
    for i, row in enumerate(reader, start=2):
        name = (row.get("filename") or "").strip()
        if not name:
            raise ConfigError(f"{p}:{i}: empty filename")
        if name in seen:
            raise ConfigError(f"{p}:{i}: {name} appears twice (first at line {seen[name]})")
        seen[name] = i
        names.append(name)
        labels.append(_float(row.get("label") or "", f"{p}:{i}: label", allow_empty=False))
        st = (row.get("status") or "ok").strip() or "ok"
        status.append(st)
        nt = (row.get("n_tubes") or "").strip()
        tubes.append(int(nt) if nt.isdigit() else None)
        for c in member_cols:
            members[c].append(_float(row.get(c) or "", f"{p}:{i}: {c}", allow_empty=True))
    if not names:
        raise ConfigError(f"{p}: no predictions (the file has a header but no rows)")
    return Predictions(path=p, filenames=names, label=np.asarray(labels, dtype=np.float64), status=status,
                       n_tubes=tubes, members={c: np.asarray(v, dtype=np.float64) for c, v in members.items()})
