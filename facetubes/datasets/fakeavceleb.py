"""FakeAVCeleb.

Layout::

    {RealVideo-RealAudio,RealVideo-FakeAudio,FakeVideo-RealAudio,FakeVideo-FakeAudio}/<race>/<gender>/<id>/<n>.mp4
    meta_data.csv    source,target1,target2,method,category,type,race,gender,path,<file name>

The label is the **visual** one: ``FakeVideo-*`` is fake, and ``RealVideo-FakeAudio`` (a real face with a cloned
voice) is **real** for a visual model. The ``type`` becomes the ``folder`` column, so audio-only fakes can still be
told apart; ``method`` is the manipulation of fakes (``faceswap``, ``fsgan``, ``wav2lip``, ...) and empty for
reals. The ``path`` column starts with the dataset folder's own name (``FakeAVCeleb/...``); it is resolved
against the root either way. The group joins ``source`` and ``target1``/``target2`` ids.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import ConfigError
from .base import ReadResult, VideoEntry, register_reader, rel, safe_name, video_files

META = "meta_data.csv"
TYPES = ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio")


def _key(root: Path, folder: str, name: str) -> tuple[str, bool]:
    """The root-relative key of a meta_data.csv row and whether the file exists."""
    folder = folder.strip().replace("\\", "/").strip("/")
    candidates = [f"{folder}/{name}"]
    if "/" in folder:
        candidates.append(f"{folder.split('/', 1)[1]}/{name}")  # "FakeAVCeleb/RealVideo-..." -> "RealVideo-..."
    for c in candidates:
        if (root / c).is_file():
            return c, True
    return candidates[-1] if folder.split("/", 1)[0] not in TYPES else candidates[0], False


class FakeAVCelebReader:
    name = "fakeavceleb"
    reads = (f"FakeAVCeleb: {META}; FakeVideo-* are fake, RealVideo-FakeAudio (audio-only fakes) are real for a "
             "visual model")

    def detect(self, root: Path) -> bool:
        return (root / META).is_file()

    def read(self, root: Path) -> ReadResult:
        path = root / META
        try:
            reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
            rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ConfigError(f"{path}: cannot read ({e})") from None
        cols = {str(c).strip().lower(): c for c in (reader.fieldnames or [])}
        file_col = next((cols[c] for c in ("filename", "file", "") if c in cols), None)
        if file_col is None or "type" not in cols or "path" not in cols:
            raise ConfigError(f"{path}: expected FakeAVCeleb columns source,target1,target2,method,category,type,"
                              "race,gender,path and a file-name column")
        entries: list[VideoEntry] = []
        seen: set[str] = set()
        for i, row in enumerate(rows, start=2):
            kind = (row.get(cols["type"]) or "").strip()
            name = (row.get(file_col) or "").strip()
            if not name:
                continue
            if kind not in TYPES:
                raise ConfigError(f"{path}:{i}: type {kind!r} is none of {', '.join(TYPES)}")
            label = 1 if kind.startswith("FakeVideo") else 0
            key, exists = _key(root, row.get(cols["path"]) or "", name)
            ids = [f"fakeavceleb:{(row.get(cols[c]) or '').strip()}" for c in ("source", "target1", "target2")
                   if c in cols and (row.get(cols[c]) or "").strip() not in ("", "-")]
            method = (row.get(cols.get("method", "")) or "").strip() if label else ""
            entries.append(VideoEntry(key, safe_name(*Path(key).with_suffix("").parts), label,
                                      tuple(ids) or (f"fakeavceleb-file:{key}",), "", "fakeavceleb", method, "",
                                      kind, exists=exists))
            seen.add(key)
        unlabelled = [k for k in (rel(p, root) for p in video_files(root)) if k not in seen]
        return ReadResult(root, self.name, entries, unlabelled, ["no official split"])


register_reader(FakeAVCelebReader())
