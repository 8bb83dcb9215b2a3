"""The reader contract, the registry of dataset layouts, identity groups, and the label table they make.

A reader knows one public dataset's folder layout. ``detect(root)`` says whether a folder looks like that layout;
``read(root)`` returns one :class:`VideoEntry` per video its label files (or its folder names) label, plus the
video files it found that nothing labels. :func:`build_table` turns the entries of one or more readers into the
label table that ``facetubes.manifest`` uses (``{name: Label}`` plus aliases), and computes the leakage-safe
``group`` of each video.

Keys. Video file stems collide across and inside datasets (FF++ ``000_003.mp4`` exists once per method and per
compression), so every entry has

- ``key``: its path relative to the dataset root (POSIX, with extension), unique inside the dataset;
- ``name``: a unique, file-system-safe video name, used as the output folder of ``facetubes extract`` when the
  stem alone is ambiguous (``Deepfakes-c23-000_003``); it is the plain stem where the stem is unique.

An index row is matched to its label by ``video`` name first, then by the longest tail of its ``source`` path
that is a key (so tubes extracted without ``--labels`` still find their label), then by a stem that only one
entry of the table has (keys and unique stems are the table's aliases: iterating over it sees one name per video).

Groups. An entry lists the identities it shows (``ids``: FF++ target and source ids, Celeb-DF ids, a DFDC
original). Two videos that share an identity must stay on the same side of a split, and so must everything
connected to them through other shared identities: the group is the connected component of the "shares an
identity" graph (union-find over ids), named by its smallest id, e.g. ``ffpp:004``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol, Sequence

from ..errors import ConfigError

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})


@dataclass(frozen=True)
class VideoEntry:
    """One labelled video of a dataset.

    Attributes:
        key: path relative to the dataset root, POSIX, with extension (unique inside the dataset).
        name: unique video name (output folder of ``facetubes extract``).
        label: 1 fake, 0 real.
        ids: identity tokens shown in the video, namespaced (``"ffpp:004"``); the group is their component.
        split: official split (``train``/``val``/``test``) or ``""``.
        dataset, method, compression, folder: the index columns of the same names (``method`` is ``""`` for
            real videos unless the dataset names one).
        exists: False when a label file names the video but the file is absent.
        original: for a fake, the ``key`` of the real video it was made from when the layout says so (DFDC's
            ``original``, the FF++ target video), else ``""``.
    """

    key: str
    name: str
    label: int
    ids: tuple[str, ...]
    split: str = ""
    dataset: str = ""
    method: str = ""
    compression: str = ""
    folder: str = ""
    exists: bool = True
    original: str = ""


@dataclass
class ReadResult:
    """What a reader found under one root: labelled entries and the video files that no label names."""

    root: Path
    reader: str
    entries: list[VideoEntry]
    unlabelled: list[str] = field(default_factory=list)   # keys (relative paths) of unlabelled video files
    notes: list[str] = field(default_factory=list)        # one-line remarks for the summary


class Reader(Protocol):
    """A dataset layout: ``name`` (for ``--dataset``), ``reads`` (one line for ``facetubes datasets``)."""

    name: str
    reads: str

    def detect(self, root: Path) -> bool: ...

    def read(self, root: Path) -> ReadResult: ...


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add a reader to the registry (detection tries them in registration order). Duplicate names are an error."""
    if reader.name in _READERS:
        raise ValueError(f"dataset reader {reader.name!r} is already registered")
    _READERS[reader.name] = reader
    return reader


def list_readers() -> list[Reader]:
    """Registered readers, in detection order."""
    return list(_READERS.values())


def get_reader(name: str) -> Reader:
    """The reader called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return _READERS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(_READERS)}; see `facetubes datasets`)") \
            from None


def detect_reader(root: Path) -> Optional[Reader]:
    """The first registered reader that recognises ``root``, or None."""
    for r in _READERS.values():
        if r.detect(root):
            return r
    return None


# ----------------------------------------------------------------------------------------------------------------
# helpers for readers


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, POSIX."""
    return path.relative_to(root).as_posix()


def video_files(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursive), sorted; hidden files and facetubes temp files skipped."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS and not p.name.startswith(".")
                  and p.is_file())


def safe_name(*parts: str) -> str:
    """A file-system-safe video name made of ``parts`` joined by ``-``."""
    text = "-".join(p for p in parts if p)
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in text)


# ----------------------------------------------------------------------------------------------------------------
# groups and the label table


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller name becomes the root, so a component is named by its smallest id
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def identity_groups(id_lists: Iterable[Sequence[str]]) -> list[str]:
    """Pure: the group of each item, given the identities each shows.

    Items that share an identity, directly or through a chain of items, get the same group, named by the
    smallest identity of their connected component. An item without identities raises ValueError.
    """
    lists = [tuple(x) for x in id_lists]
    uf = _UnionFind()
    for ids in lists:
        if not ids:
            raise ValueError("every item needs at least one identity")
        for other in ids[1:]:
            uf.union(ids[0], other)
        uf.find(ids[0])
    return [uf.find(ids[0]) for ids in lists]


def build_table(results: Sequence[ReadResult], make_label: Callable[..., object]
                ) -> tuple[dict[str, object], dict[str, object]]:
    """``(names, aliases)``: the label of each entry keyed by its unique name, and the same labels keyed by the
    root-relative key and by the stem where only one entry has that stem. Groups are computed over all results
    together (identities are namespaced by dataset, so FF++ targets reused by DeeperForensics join their groups)."""
    entries = [e for res in results for e in res.entries]
    groups = identity_groups(e.ids for e in entries)
    name_of = {e.key: e.name for e in entries}
    labels = [make_label(label=e.label, group=g, split=e.split, dataset=e.dataset, method=e.method,
                         compression=e.compression, folder=e.folder,
                         original=name_of.get(e.original, Path(e.original).stem) if e.original else "")
              for e, g in zip(entries, groups)]
    stem_of = [os.path.splitext(os.path.basename(e.key))[0] for e in entries]
    count: dict[str, int] = {}
    for stem in stem_of:
        count[stem] = count.get(stem, 0) + 1
    aliases: dict[str, object] = {stem: lab for stem, lab in zip(stem_of, labels) if count[stem] == 1}
    names: dict[str, object] = {}
    for e, lab in zip(entries, labels):
        aliases[e.key] = lab
        names[e.name] = lab
    return names, aliases


def output_names(results: Sequence[ReadResult]) -> dict[str, str]:
    """``{absolute source path: video name}`` for every existing entry whose name is not its file stem (what
    ``facetubes extract`` names its output folder, so that colliding stems do not collide)."""
    out: dict[str, str] = {}
    for res in results:
        for e in res.entries:
            if e.exists and e.name != Path(e.key).stem:
                out[os.path.normpath(str((res.root / e.key).absolute()))] = e.name
    return out
