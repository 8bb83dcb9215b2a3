"""FaceForensics++ (with DeepFakeDetection and FaceShifter).

Layout::

    original_sequences/youtube/<c>/videos/000.mp4                        real, identity 000
    original_sequences/actors/<c>/videos/01__walking_down_street.mp4     real (DFD), actor 01
    manipulated_sequences/<method>/<c>/videos/<target>_<source>.mp4      fake, identities target and source
    manipulated_sequences/DeepFakeDetection/<c>/videos/01_02__walking__YVGY8LOK.mp4   fake (DFD), actors 01, 02
    splits/{train,val,test}.json                                         [["953", "974"], ...] (youtube ids)

``<c>`` is ``raw``, ``c23`` or ``c40``. The official split assigns both ids of a pair, so ``a_b`` and ``b_a`` and
the originals ``a`` and ``b`` share it; DFD has no official split. YouTube ids and DFD actors are different
people: they are namespaced ``ffpp:`` and ``dfd:``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import ConfigError
from .base import ReadResult, VideoEntry, register_reader, rel, safe_name, video_files

_PAIR = re.compile(r"^(\d+)_(\d+)$")
_DFD_FAKE = re.compile(r"^(\d+)_(\d+)__")
_DFD_REAL = re.compile(r"^(\d+)__")


def read_official_split(root: Path) -> dict[str, str]:
    """``{youtube id: split}`` from ``splits/{train,val,test}.json`` (empty when there is no such folder)."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = root / "splits" / f"{split}.json"
        if not path.is_file():
            continue
        try:
            pairs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: unreadable FF++ split file ({e})") from None
        if not isinstance(pairs, list):
            raise ConfigError(f"{path}: expected a list of id pairs like [\"953\", \"974\"]")
        for pair in pairs:
            if not isinstance(pair, (list, tuple)):
                raise ConfigError(f"{path}: expected a list of id pairs, found {pair!r}")
            for vid in pair:
                out[str(vid)] = split
    return out


def _entry(root: Path, path: Path, split_of: dict[str, str]) -> VideoEntry | None:
    parts = path.relative_to(root).parts
    # (original|manipulated)_sequences / <kind or method> / <c> / videos / file  (or frames / <video> folder)
    if len(parts) < 5 or parts[-2] not in ("videos", "frames"):
        return None
    top, kind, comp = parts[0], parts[1], parts[-3]
    stem = path.stem
    key = rel(path, root)
    folder = "/".join(parts[:-2])
    if top == "original_sequences":
        if kind == "actors":
            m = _DFD_REAL.match(stem)
            ids = (f"dfd:{m.group(1)}",) if m else (f"dfd:{stem}",)
            return VideoEntry(key, safe_name("actors", comp, stem), 0, ids, "", "ffpp", "", comp, folder)
        return VideoEntry(key, safe_name(kind, comp, stem), 0, (f"ffpp:{stem}",), split_of.get(stem, ""), "ffpp",
                          "", comp, folder)
    if top != "manipulated_sequences":
        return None
    if kind == "DeepFakeDetection":
        m = _DFD_FAKE.match(stem)
        ids = (f"dfd:{m.group(1)}", f"dfd:{m.group(2)}") if m else (f"dfd:{stem}",)
        return VideoEntry(key, safe_name(kind, comp, stem), 1, ids, "", "ffpp", kind, comp, folder)
    m = _PAIR.match(stem)
    if not m:
        return None
    target, source = m.groups()
    s_t, s_s = split_of.get(target, ""), split_of.get(source, "")
    split = s_t if s_t == s_s else ""  # the official lists always agree; a disagreement gets no split
    # a face swap or reenactment keeps the target video's frames around the face: that is its original
    original = "/".join(("original_sequences", "youtube", comp, parts[-2], target + path.suffix))
    return VideoEntry(key, safe_name(kind, comp, stem), 1, (f"ffpp:{target}", f"ffpp:{source}"), split, "ffpp",
                      kind, comp, folder, original=original)


class FFPPReader:
    name = "ffpp"
    reads = ("FaceForensics++ (+ DeepFakeDetection, FaceShifter): original_sequences/{youtube,actors}/<c>/videos, "
             "manipulated_sequences/<method>/<c>/videos/<target>_<source>.mp4, splits/{train,val,test}.json")

    def detect(self, root: Path) -> bool:
        return (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir()

    def read(self, root: Path) -> ReadResult:
        split_of = read_official_split(root)
        entries, unlabelled = [], []
        for top in ("original_sequences", "manipulated_sequences"):
            for p in video_files(root / top):
                e = _entry(root, p, split_of)
                if e is None:
                    unlabelled.append(rel(p, root))
                else:
                    entries.append(e)
        # frame folders another benchmark wrote in the same tree: <c>/frames/<video>/000.png
        names = {e.name for e in entries}
        for p in sorted(root.glob("*_sequences/*/*/frames/*")):
            e = _entry(root, p, split_of) if p.is_dir() else None
            if e is not None and e.name not in names:
                entries.append(e)
        notes = [] if split_of else ["no splits/*.json: no official split"]
        return ReadResult(root, self.name, entries, unlabelled, notes)


register_reader(FFPPReader())
