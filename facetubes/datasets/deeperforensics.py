"""DeeperForensics-1.0.

Layout::

    manipulated_videos/<variant>/<target>_<source>.mp4   fake; target = FF++ youtube id (000), source = actor (M101)
    source_videos/...                                     the actors' recordings (not used: they are not the reals
                                                          that the fakes were made from)
    lists/splits/{train,val,test}.txt                     one fake file name (or path) per line

The variants (``end_to_end``, ``end_to_end_level_1`` .. ``_5``, ``end_to_end_mix_2_distortions``, ...) become the
``method`` column. The real counterparts of the fakes are the FF++ c23 youtube originals of the targets, which this
dataset does not include: add the FF++ root to ``--labels`` to have them. A target is the identity ``ffpp:<id>``,
so FF++ videos of that person fall into the same group when both datasets are loaded together.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError
from .base import ReadResult, VideoEntry, register_reader, rel, safe_name, video_files

_NAME = re.compile(r"^(\d{3})_([A-Za-z0-9]+)$")
MISSING_REALS = ("DeeperForensics-1.0 holds fakes only: their real counterparts are the FF++ c23 youtube targets "
                 "(first 3 digits of each name); add the FF++ root to --labels to include them")


def read_split_lists(root: Path) -> dict[str, str]:
    """``{file name: split}`` from ``lists/splits/{train,val,test}.txt`` (empty when absent)."""
    out: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = root / "lists" / "splits" / f"{split}.txt"
        if not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the split list ({e})") from None
        for line in lines:
            name = line.strip().replace("\\", "/").rsplit("/", 1)[-1]
            if name:
                out[name if "." in name else name + ".mp4"] = split
    return out


class DeeperForensicsReader:
    name = "deeperforensics"
    reads = ("DeeperForensics-1.0: manipulated_videos/<variant>/<target>_<source>.mp4 and lists/splits/*.txt; "
             "its reals are FF++ targets (not included)")

    def detect(self, root: Path) -> bool:
        return (root / "manipulated_videos").is_dir()

    def read(self, root: Path) -> ReadResult:
        split_of = read_split_lists(root)
        entries: list[VideoEntry] = []
        unlabelled: list[str] = []
        for p in video_files(root / "manipulated_videos"):
            key = rel(p, root)
            m = _NAME.match(p.stem)
            if not m:
                unlabelled.append(key)
                continue
            variant = p.parent.relative_to(root / "manipulated_videos").as_posix()
            target, source = m.groups()
            entries.append(VideoEntry(key, safe_name(variant, p.stem), 1, (f"ffpp:{target}", f"dfr:{source}"),
                                      split_of.get(p.name, ""), "deeperforensics", variant, "",
                                      rel(p.parent, root)))
        notes = [MISSING_REALS]
        if not split_of:
            notes.append("no lists/splits/*.txt: no official split")
        return ReadResult(root, self.name, entries, unlabelled, notes)


register_reader(DeeperForensicsReader())
