"""Manifests: per-video ``tubes.json``, the batch ``index.csv``, labels, and atomic file writes.

``tubes.json`` is written last for a video, atomically, so its presence means "this video is finished".
``index.csv`` is derived data: it can always be rebuilt from the ``tubes.json`` files (``facetubes index``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from .errors import ConfigError, OutputError

MANIFEST_NAME = "tubes.json"
INDEX_NAME = "index.csv"
ERRORS_NAME = "errors.jsonl"
MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------------------------------------------
# atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed.

    The temporary name keeps ``suffix`` (e.g. ``.mp4``) so that tools choosing a format by extension still work.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix or path.suffix}", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path.parent}: cannot write here ({e.strerror or e})") from None
    os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp makes 0600 files; results are shared like any other file
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@functools.lru_cache(maxsize=1)
def process_umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------------------------
# tubes.json


def write_manifest(video_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write ``video_dir/tubes.json`` atomically and return its path."""
    path = Path(video_dir) / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a ``tubes.json`` (or the folder holding one). Raises ConfigError with a one-line reason."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(data, dict) or "tubes" not in data:
        raise ConfigError(f"{path}: not a facetubes manifest (no 'tubes' list)")
    return data


def is_done(out_dir: str | os.PathLike, stem: str) -> bool:
    """True when ``out_dir/<stem>/tubes.json`` exists and reads as a manifest: the video was finished by an earlier
    run (a damaged manifest means the video is done again)."""
    try:
        read_manifest(Path(out_dir) / stem / MANIFEST_NAME)
    except ConfigError:
        return False
    return True


def iter_manifests(out_dir: str | os.PathLike) -> Iterator[tuple[Path, dict]]:
    """Every finished video's manifest under a batch output folder (one level deep), sorted by folder name."""
    out_dir = Path(out_dir)
    for p in sorted(out_dir.glob(f"*/{MANIFEST_NAME}")):
        try:
            manifest = read_manifest(p)
        except ConfigError as e:
            logging.getLogger("facetubes").warning("skipped %s (extract that video again)", e)
            continue
        yield p, manifest


# ----------------------------------------------------------------------------------------------------------------
# labels


@dataclass(frozen=True)
class Label:
    """Ground truth for one video: ``label`` 1 = fake, 0 = real; ``group`` keeps a fake with its original.

    ``dataset``, ``method`` (the manipulation; empty for reals), ``compression`` and ``folder`` come from the
    dataset readers of :mod:`facetubes.datasets`; an empty ``folder`` means "the source's parent folder".
    ``original``: for a fake whose labels name the real video it was made from, that video's name (its output
    folder), else ``""`` (``facetubes extract --boxes-from-original`` reuses that video's face tracks)."""

    label: int
    group: str
    split: str = ""
    dataset: str = ""
    method: str = ""
    compression: str = ""
    folder: str = ""
    original: str = ""


def _parse_label(value: object, where: str) -> int:
    v = str(value).strip().lower()
    if v in ("fake", "1", "1.0", "true"):
        return 1
    if v in ("real", "0", "0.0", "false"):
        return 0
    raise ConfigError(f"{where}: label {value!r} is neither FAKE/REAL nor 1/0")


def _stem(name: str) -> str:
    return Path(str(name).strip()).stem


def _labels_from_dfdc(path: Path, data: dict) -> dict[str, Label]:
    out: dict[str, Label] = {}
    for name, meta in data.items():
        if not isinstance(meta, dict) or "label" not in meta:
            raise ConfigError(f"{path}: entry {name!r} has no 'label' (expected DFDC metadata.json)")
        label = _parse_label(meta["label"], f"{path}: {name}")
        original = meta.get("original")
        group = _stem(original) if (label == 1 and original) else _stem(name)
        out[_stem(name)] = Label(label, group, str(meta.get("split") or ""),
                                 original=_stem(original) if (label == 1 and original) else "")
    return out


def _labels_from_csv(path: Path, text: str) -> dict[str, Label]:
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
    name_col = next((cols[c] for c in ("filename", "video", "file", "name", "path") if c in cols), None)
    if name_col is None or "label" not in cols:
        raise ConfigError(f"{path}: a labels CSV needs a 'filename' (or 'video') column and a 'label' column")
    group_col = next((cols[c] for c in ("group", "original") if c in cols), None)
    split_col = cols.get("split")
    original_col = cols.get("original")
    out: dict[str, Label] = {}
    for i, row in enumerate(reader, start=2):
        name = (row.get(name_col) or "").strip()
        if not name:
            continue
        label = _parse_label(row.get(cols["label"], ""), f"{path}:{i}")
        group = _stem(row[group_col]) if group_col and (row.get(group_col) or "").strip() else _stem(name)
        original = (row.get(original_col) or "").strip() if original_col and label == 1 else ""
        out[_stem(name)] = Label(label, group, (row.get(split_col) or "").strip() if split_col else "",
                                 original=_stem(original) if original else "")
    return out


def labels_from_file(path: str | os.PathLike) -> dict[str, Label]:
    """Labels keyed by video stem from one DFDC ``metadata.json`` or one labels CSV."""
    f = Path(path)
    if not f.is_file():
        raise ConfigError(f"{f}: labels file not found")
    try:
        text = f.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{f}: cannot read labels ({e})") from None
    if f.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{f}: invalid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{f}: expected a DFDC metadata.json object")
        return _labels_from_dfdc(f, data)
    return _labels_from_csv(f, text)


def load_labels(paths: str | os.PathLike | Sequence[str | os.PathLike], dataset: Optional[str] = None,
                ) -> dict[str, Label]:
    """Labels from DFDC ``metadata.json`` files, CSVs (keyed by video stem), or dataset roots whose layout is
    recognised (FF++, Celeb-DF, DFDC, ...; ``dataset`` forces one; see :func:`facetubes.datasets.load`, which
    also reports absent and unlabelled videos). Several sources are merged; later ones win."""
    from .datasets import load

    return load(paths, dataset).labels


class LabelTable(dict):
    """``{video name: Label}``, one key per video, plus ``aliases``: other keys of the same labels (paths relative
    to a dataset root, stems that only one video has). ``table[alias]`` and :func:`find_label` use the aliases;
    iteration, ``len`` and ``in`` see the video names only."""

    def __init__(self, names: Optional[dict[str, Label]] = None, aliases: Optional[dict[str, Label]] = None):
        super().__init__(names or {})
        self.aliases: dict[str, Label] = dict(aliases or {})

    def __missing__(self, key: str) -> Label:
        return self.aliases[key]


def merge_labels(*tables: Optional[dict[str, Label]]) -> LabelTable:
    """Merge label tables (later ones win), keeping the aliases of LabelTables."""
    names: dict[str, Label] = {}
    aliases: dict[str, Label] = {}
    for t in tables:
        if t:
            names.update(t)
            aliases.update(getattr(t, "aliases", {}))
    return LabelTable(names, aliases)


def find_label(labels: dict[str, Label], video: str, source: str = "") -> Optional[Label]:
    """The label of a video: by its name, else by the longest tail of its source path that is a key or an alias
    (``manipulated_sequences/Deepfakes/c23/videos/000_003.mp4``), else by a unique-stem alias, else None."""
    aliases = getattr(labels, "aliases", {})

    def get(key: str) -> Optional[Label]:
        lab = labels.get(key)
        return lab if lab is not None else aliases.get(key)

    lab = labels.get(video)
    if lab is not None:
        return lab
    if source:
        parts = Path(source).as_posix().split("/")
        for k in range(len(parts)):
            lab = get("/".join(parts[k:]))
            if lab is not None:
                return lab
    return aliases.get(video)


# ----------------------------------------------------------------------------------------------------------------
# index.csv


@dataclass
class TubeRecord:
    """One row of ``index.csv``: one tube."""

    tube: str
    path: Path  # absolute when read; written relative to the index's folder
    video: str
    source: str
    track: int
    part: int
    start_frame: int
    stop_frame: int
    n_frames: int
    fps: float
    size: int
    mean_prob: float
    label: Optional[int] = None
    group: str = ""
    split: str = ""
    folder: str = ""
    dataset: str = ""
    method: str = ""
    compression: str = ""
    original: str = ""
    """For a fake, the name of the real video it was made from, when the labels (or ``--boxes-from-original``)
    say so; the paired sampler pairs its tubes with that video's."""


INDEX_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TubeRecord))
_INT_COLS = {"track", "part", "start_frame", "stop_frame", "n_frames", "size"}
_FLOAT_COLS = {"fps", "mean_prob"}


def records_from_manifest(manifest_path: Path, manifest: dict, labels: Optional[dict[str, Label]] = None,
                          ) -> list[TubeRecord]:
    """Index rows for every tube of one video manifest, labelled when ``labels`` knows the video."""
    video_dir = manifest_path.parent
    stem = manifest.get("video") or video_dir.name
    source = str(manifest.get("source", ""))
    lab = find_label(labels or {}, stem, source)
    from_original = manifest.get("boxes_from_original") or {}
    original = (lab.original if lab and lab.original else "") or \
        (from_original.get("original", "") if from_original.get("used") else "")
    rows = []
    for t in manifest.get("tubes", []):
        rows.append(TubeRecord(
            tube=t["tube"], path=(video_dir / t["file"]).resolve(), video=stem, source=source,
            track=int(t["track"]), part=int(t.get("part", 0)), start_frame=int(t["start_frame"]),
            stop_frame=int(t["stop_frame"]), n_frames=int(t["n_frames"]), fps=float(manifest["fps"]),
            size=int(manifest["config"]["size"]), mean_prob=float(t["mean_prob"]),
            label=lab.label if lab else None, group=lab.group if lab else stem, split=lab.split if lab else "",
            folder=(lab.folder if lab and lab.folder else Path(source).parent.name if source else ""),
            dataset=lab.dataset if lab else "", method=lab.method if lab else "",
            compression=lab.compression if lab else "", original=original,
        ))
    return rows


def write_index(path: str | os.PathLike, records: Iterable[TubeRecord]) -> Path:
    """Write ``index.csv`` atomically; tube paths are stored relative to the index's folder when possible."""
    path = Path(path)
    base = path.parent.resolve()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in records:
        row = asdict(r)
        p = Path(r.path)
        try:
            row["path"] = p.resolve().relative_to(base).as_posix()
        except ValueError:
            row["path"] = str(p)
        row["label"] = "" if r.label is None else int(r.label)
        row["fps"] = f"{r.fps:.6g}"
        row["mean_prob"] = f"{r.mean_prob:.6f}"
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())
    return path


def read_index(path: str | os.PathLike) -> list[TubeRecord]:
    """Read ``index.csv`` (or the folder holding one). Tube paths come back absolute."""
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such index (run `facetubes extract` first, or `facetubes index DIR`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable index ({e})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("tube", "path") if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"{path}: not a facetubes index (missing column(s): {', '.join(missing)})")
    base = path.parent.resolve()
    out: list[TubeRecord] = []
    for i, row in enumerate(reader, start=2):
        try:
            kw: dict = {}
            for name in INDEX_COLUMNS:
                v = row.get(name)
                v = "" if v is None else v.strip()
                if name == "path":
                    kw[name] = (base / v) if not Path(v).is_absolute() else Path(v)
                elif name == "label":
                    kw[name] = None if v == "" else _parse_label(v, f"{path}:{i}")
                elif name in _INT_COLS:
                    kw[name] = int(float(v)) if v else 0
                elif name in _FLOAT_COLS:
                    kw[name] = float(v) if v else 0.0
                else:
                    kw[name] = v
        except ValueError as e:
            raise ConfigError(f"{path}:{i}: bad value ({e})") from None
        out.append(TubeRecord(**kw))
    return out


def rebuild_index(out_dir: str | os.PathLike, labels: Optional[dict[str, Label]] = None) -> tuple[Path, int]:
    """(Re)write ``out_dir/index.csv`` from every finished video's ``tubes.json``. Returns (path, n_rows).

    The labels (label, group, split) that the existing index holds are kept for the videos ``labels`` does not
    name, so a rerun without ``--labels``, or with labels for new videos only, loses none of them."""
    out_dir = Path(out_dir)
    labels = merge_labels(_labels_in_index(out_dir / INDEX_NAME), labels)
    records: list[TubeRecord] = []
    for mpath, manifest in iter_manifests(out_dir):
        records.extend(records_from_manifest(mpath, manifest, labels))
    return write_index(out_dir / INDEX_NAME, records), len(records)


def unlabelled_videos(path: str | os.PathLike) -> list[str]:
    """Sorted names of the videos of an index that have no label."""
    return sorted({r.video for r in read_index(path) if r.label is None})


def _labels_in_index(path: Path) -> dict[str, Label]:
    """The labelled videos of an existing index (empty when there is none or it cannot be read)."""
    if not path.is_file():
        return {}
    try:
        records = read_index(path)
    except ConfigError:
        return {}
    return {r.video: Label(r.label, r.group or r.video, r.split, r.dataset, r.method, r.compression, r.folder,
                           r.original) for r in records if r.label is not None}
