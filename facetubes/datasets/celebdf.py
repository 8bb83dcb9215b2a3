"""Celeb-DF (v1 and v2).

Layout::

    Celeb-real/id0_0000.mp4             real, celebrity id0
    YouTube-real/00000.mp4              real, no celebrity id (its own group)
    Celeb-synthesis/id0_id16_0000.mp4   fake: target id0, source id16
    List_of_testing_videos.txt          "<label> <subdir>/<file>.mp4" per line, where 1 = REAL and 0 = fake

The listed videos form the official test split; every other video is ``train`` (the dataset has no val list).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from .base import ReadResult, VideoEntry, register_reader, rel, safe_name, video_files

TEST_LIST = "List_of_testing_videos.txt"
_FAKE = re.compile(r"^(id\d+)_(id\d+)_\d+$")
_REAL = re.compile(r"^(id\d+)_\d+$")


def read_test_list(path: Path) -> dict[str, int]:
    """``{relative path: label}`` of the test list, converted to 1 = fake (the file's own convention is 1 = real)."""
    out: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the Celeb-DF test list ({e})") from None
    for i, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise ConfigError(f"{path}:{i}: expected '<1 real | 0 fake> <subdir>/<file>.mp4', got {line.strip()!r}")
        out[parts[1].replace("\\", "/")] = 1 - int(parts[0])
    return out


class CelebDFReader:
    name = "celebdf"
    reads = (f"Celeb-DF v1/v2: Celeb-real, YouTube-real, Celeb-synthesis (id<t>_id<s>_<n>), {TEST_LIST} "
             "(1 = real there) as the test split")

    def detect(self, root: Path) -> bool:
        return (root / "Celeb-synthesis").is_dir() or (root / TEST_LIST).is_file()

    def read(self, root: Path) -> ReadResult:
        test = read_test_list(root / TEST_LIST) if (root / TEST_LIST).is_file() else {}
        entries: list[VideoEntry] = []
        unlabelled: list[str] = []
        seen: set[str] = set()
        for sub in ("Celeb-real", "YouTube-real", "Celeb-synthesis"):
            for p in video_files(root / sub):
                key = rel(p, root)
                e = self._entry(key, sub, p.stem, test)
                if e is None:
                    unlabelled.append(key)
                    continue
                if key in test and test[key] != e.label:
                    raise ConfigError(f"{root / TEST_LIST}: {key} is labelled "
                                      f"{'real' if test[key] == 0 else 'fake'}, but its folder says otherwise")
                entries.append(e)
                seen.add(key)
        for key, label in test.items():  # listed but absent
            if key not in seen:
                sub = key.split("/", 1)[0]
                e = self._entry(key, sub, Path(key).stem, test)
                if e is None:
                    e = VideoEntry(key, safe_name(Path(key).stem), label, (f"celebdf-file:{key}",), "test",
                                   "celebdf", "", "", sub)
                entries.append(replace(e, exists=False))
        notes = [] if test else [f"no {TEST_LIST}: no official split"]
        return ReadResult(root, self.name, entries, unlabelled, notes)

    @staticmethod
    def _entry(key: str, sub: str, stem: str, test: dict[str, int]) -> VideoEntry | None:
        split = ("test" if key in test else "train") if test else ""
        if sub == "Celeb-synthesis":
            m = _FAKE.match(stem)
            if not m:
                return None
            return VideoEntry(key, stem, 1, (f"celebdf:{m.group(1)}", f"celebdf:{m.group(2)}"), split, "celebdf",
                              "Celeb-synthesis", "", sub)
        if sub == "Celeb-real":
            m = _REAL.match(stem)
            ids = (f"celebdf:{m.group(1)}",) if m else (f"celebdf-file:{key}",)
            return VideoEntry(key, stem, 0, ids, split, "celebdf", "", "", sub)
        if sub == "YouTube-real":
            return VideoEntry(key, safe_name("youtube", stem), 0, (f"celebdf-youtube:{stem}",), split, "celebdf",
                              "", "", sub)
        return None


register_reader(CelebDFReader())
