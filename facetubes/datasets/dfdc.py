"""DFDC: the training parts, the public test set and the preview set.

- ``dfdc``: every ``metadata.json`` under the root (``dfdc_train_part_N/metadata.json``):
  ``{"x.mp4": {"label": "FAKE", "split": "train", "original": "y.mp4"}}``. The part folder becomes the
  ``folder`` column (the common split is by part: 0-34 / 35-39 / 40-49, see ``--val-folders``). A fake is grouped
  with its original (the group is the original's stem, unprefixed, as in earlier facetubes versions).
- ``dfdc-test``: the public test set's ``labels.csv`` (``filename,label``, 1 = fake), split ``test``.
- ``dfdc-preview``: the preview set's ``dataset.json``:
  ``{"method_A/<id>/<id>_A/x.mp4": {"label": "fake", "set": "test"}, "original_videos/<id>/y.mp4": ...}``;
  its ``set`` is the official split and its first sub-folder the person, which is the group.

DFDC names are unique across parts, so the video name is the file stem.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..errors import ConfigError
from .base import ReadResult, VideoEntry, register_reader, rel, video_files

_FAKE_WORDS = ("fake", "1", "1.0", "true")
_REAL_WORDS = ("real", "0", "0.0", "false")


def _label(value: object, where: str) -> int:
    v = str(value).strip().lower()
    if v in _FAKE_WORDS:
        return 1
    if v in _REAL_WORDS:
        return 0
    raise ConfigError(f"{where}: label {value!r} is neither FAKE/REAL nor 1/0")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of videos")
    return data


def metadata_entries(root: Path, meta_path: Path) -> tuple[list[VideoEntry], list[str]]:
    """Entries of one DFDC ``metadata.json`` (keys relative to ``root``) and the unlabelled videos of its folder."""
    folder = meta_path.parent
    data = _json(meta_path)
    prefix = "" if folder == root else rel(folder, root) + "/"
    folder_name = folder.name if folder != root else root.name
    try:
        present = {n for n in os.listdir(folder)}  # one listing, not a stat per entry (a part has ~2,400)
    except OSError as e:
        raise ConfigError(f"{folder}: cannot list the folder ({e.strerror or e})") from None
    entries = []
    for name, meta in data.items():
        if not isinstance(meta, dict) or "label" not in meta:
            raise ConfigError(f"{meta_path}: entry {name!r} has no 'label' (expected DFDC metadata.json)")
        label = _label(meta["label"], f"{meta_path}: {name}")
        stem = os.path.splitext(os.path.basename(name))[0]
        original = meta.get("original")
        ident = os.path.splitext(os.path.basename(str(original)))[0] if (label == 1 and original) else stem
        entries.append(VideoEntry(prefix + name, stem, label, (ident,), str(meta.get("split") or ""), "dfdc", "",
                                  "", folder_name, exists=name in present,
                                  original=prefix + str(original) if (label == 1 and original) else ""))
    unlabelled = [prefix + n for n in sorted(present) if n.lower().endswith(".mp4") and n not in data
                  and (folder / n).is_file()]
    return entries, unlabelled


class DFDCReader:
    name = "dfdc"
    reads = ("DFDC training parts: every dfdc_train_part_N/metadata.json (label, split, original); the part is "
             "the folder column")

    def detect(self, root: Path) -> bool:
        # the last reader tried: any metadata.json below the root (folders of parts at any depth, as before)
        return (root / "metadata.json").is_file() or next(root.rglob("metadata.json"), None) is not None

    def read(self, root: Path) -> ReadResult:
        files = sorted(root.rglob("metadata.json"))
        if not files:
            raise ConfigError(f"{root}: no metadata.json found in this folder")
        entries: list[VideoEntry] = []
        unlabelled: list[str] = []
        for f in files:
            e, u = metadata_entries(root, f)
            entries += e
            unlabelled += u
        labelled_dirs = {f.parent for f in files}  # and the videos of folders without a metadata.json
        unlabelled += [rel(p, root) for p in video_files(root) if p.parent not in labelled_dirs]
        return ReadResult(root, self.name, entries, sorted(unlabelled))


class DFDCTestReader:
    name = "dfdc-test"
    reads = "DFDC public test set: labels.csv (filename,label with 1 = fake), split test"

    def detect(self, root: Path) -> bool:
        path = root / "labels.csv"
        if not path.is_file():
            return False
        with open(path, encoding="utf-8-sig") as f:
            header = [c.strip().lower() for c in f.readline().split(",")]
        return "filename" in header and "label" in header

    def read(self, root: Path) -> ReadResult:
        path = root / "labels.csv"
        try:
            rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read labels ({e})") from None
        found = {p.name: p for p in video_files(root)}
        entries = []
        for i, row in enumerate(rows, start=2):
            row = {str(k).strip().lower(): v for k, v in row.items()}
            name = (row.get("filename") or "").strip()
            if not name:
                continue
            label = _label(row.get("label", ""), f"{path}:{i}")
            p = found.pop(Path(name).name, None)
            key = rel(p, root) if p is not None else name
            stem = Path(name).stem
            entries.append(VideoEntry(key, stem, label, (f"dfdc-test:{stem}",), "test", "dfdc", "", "",
                                      (p.parent.name if p is not None else root.name), exists=p is not None))
        return ReadResult(root, self.name, entries, sorted(rel(p, root) for p in found.values()))


class DFDCPreviewReader:
    name = "dfdc-preview"
    reads = "DFDC preview: dataset.json (label, set) over original_videos/, method_A/, method_B/"

    def detect(self, root: Path) -> bool:
        return (root / "dataset.json").is_file()

    def read(self, root: Path) -> ReadResult:
        path = root / "dataset.json"
        data = _json(path)
        entries = []
        for key, meta in data.items():
            if not isinstance(meta, dict) or "label" not in meta:
                raise ConfigError(f"{path}: entry {key!r} has no 'label' (expected the DFDC preview dataset.json)")
            label = _label(meta["label"], f"{path}: {key}")
            parts = Path(key).parts
            person = parts[1] if len(parts) >= 3 else Path(key).stem
            method = parts[0] if (label == 1 and len(parts) > 1) else ""
            split = str(meta.get("set") or "")
            entries.append(VideoEntry(key, Path(key).stem, label, (f"dfdc-preview:{person}",), split, "dfdc-preview",
                                      method, "", parts[0] if len(parts) > 1 else "", exists=(root / key).is_file()))
        named = set(data)
        unlabelled = [k for k in (rel(p, root) for p in video_files(root)) if k not in named]
        return ReadResult(root, self.name, entries, unlabelled)


register_reader(DFDCPreviewReader())
register_reader(DFDCTestReader())
register_reader(DFDCReader())
