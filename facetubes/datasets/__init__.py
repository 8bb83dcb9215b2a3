"""Public deepfake datasets read in their own layouts: labels, leakage-safe groups, official splits.

    from facetubes.datasets import load
    labels = load(["/data/FaceForensics++", "/data/Celeb-DF-v2"])   # each root's layout is recognised
    labels.labels["manipulated_sequences/Deepfakes/c23/videos/000_003.mp4"]   # Label(label=1, group='ffpp:000', ...)
    print(labels.summary())

One small reader per layout (``ffpp``, ``celebdf``, ``deeperforensics``, ``fakeavceleb``, ``dfdc-preview``,
``dfdc-test``, ``dfdc``) behind the contract of :mod:`facetubes.datasets.base`; ``facetubes datasets`` lists them.
Plain label files (a DFDC ``metadata.json``, a CSV) are read as before. Importing face crops made elsewhere (MP4
tubes, frame folders) is :mod:`facetubes.datasets.imported`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError
from ..manifest import Label, LabelTable, labels_from_file
from . import ffpp, celebdf, deeperforensics, fakeavceleb, dfdc  # noqa: F401  (registration order = detection)
from .base import (ReadResult, Reader, VideoEntry, build_table, detect_reader, get_reader, identity_groups,
                   list_readers, output_names, register_reader)

# label files that stand for their folder (the folder is the dataset root)
_ROOT_FILES = {celebdf.TEST_LIST: "celebdf", fakeavceleb.META: "fakeavceleb", "dataset.json": "dfdc-preview"}


@dataclass
class LabelSet:
    """Labels of one or more sources.

    Attributes:
        labels: ``{video name: Label}`` (a :class:`~facetubes.manifest.LabelTable`: root-relative paths and unique
            stems are its aliases, see :mod:`facetubes.datasets.base`); plain label files are keyed by stem.
        results: what each dataset reader read.
        names: ``{absolute source path: video name}`` where the output folder must not be the file stem.
        sources: one short description per source, for the summary.
    """

    labels: dict[str, Label]
    results: list[ReadResult] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def absent(self) -> list[str]:
        """Videos that a label file names but whose file is missing (root-relative paths)."""
        return [e.key for r in self.results for e in r.entries if not e.exists]

    def unlabelled(self) -> list[str]:
        """Video files found under a dataset root that no label names (root-relative paths)."""
        return [k for r in self.results for k in r.unlabelled]

    def notes(self) -> list[str]:
        readers = {r.reader for r in self.results}
        out = []
        for r in self.results:
            for n in r.notes:
                if n == deeperforensics.MISSING_REALS and "ffpp" in readers:
                    continue
                out.append(f"{r.root}: {n}")
        return out

    def summary(self, max_names: int = 5) -> str:
        """A few lines: what was read, then the absent and the unlabelled videos, counted and named."""
        lines = [f"labels: {'; '.join(self.sources)}"]
        for what, items in (("named by the labels but absent", self.absent()),
                            ("found with no label", self.unlabelled())):
            if items:
                shown = ", ".join(items[:max_names]) + (", ..." if len(items) > max_names else "")
                lines.append(f"labels: {len(items)} videos {what}: {shown}")
        lines += [f"labels: {n}" for n in self.notes()]
        return "\n".join(lines)


def read_root(root: str | os.PathLike, dataset: Optional[str] = None) -> ReadResult:
    """Read one dataset root with the reader ``dataset`` or, when None, the one that recognises the layout."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such dataset folder")
    reader = get_reader(dataset) if dataset else detect_reader(root)
    if reader is None:
        raise ConfigError(f"{root}: no known dataset layout here (see `facetubes datasets`; force one with "
                          f"--dataset NAME, or give a metadata.json / CSV label file)")
    res = reader.read(root)
    if not res.entries:
        raise ConfigError(f"{root}: the {reader.name} reader found no labelled video here")
    return res


def load(paths: str | os.PathLike | Sequence[str | os.PathLike], dataset: Optional[str] = None) -> LabelSet:
    """Labels from dataset roots (layout recognised, or forced with ``dataset``) and plain label files.

    A folder is a dataset root; the files ``List_of_testing_videos.txt``, ``meta_data.csv`` and ``dataset.json``
    stand for their folder; any other file is a DFDC ``metadata.json`` or a labels CSV (keys: video stems). Later
    sources win where keys repeat. Groups are computed over all dataset roots together.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if dataset:
        get_reader(dataset)  # unknown names fail before anything is read
    results: list[ReadResult] = []
    plain: dict[str, Label] = {}
    sources: list[str] = []
    for p in map(Path, paths):
        if p.is_file() and (p.name in _ROOT_FILES or dataset):
            res = read_root(p.parent, dataset or _ROOT_FILES[p.name])
        elif p.is_dir():
            res = read_root(p, dataset)
        else:
            table = labels_from_file(p)
            plain.update(table)
            sources.append(f"{p} ({len(table)} videos)")
            continue
        results.append(res)
        sources.append(f"{res.root} ({res.reader}, {len(res.entries)} videos)")
    names, aliases = build_table(results, Label) if results else ({}, {})
    labels = LabelTable({**names, **plain}, aliases)
    if not labels:
        raise ConfigError(f"{', '.join(map(str, paths))}: no labels found")
    return LabelSet(labels, results, output_names(results), sources)


def counts(found: LabelSet) -> str:
    """Per dataset, method and split: how many real and fake videos (``facetubes datasets ROOT``)."""
    table: dict[tuple[str, str, str], list[int]] = {}
    for r in found.results:
        for e in r.entries:
            row = table.setdefault((e.dataset, e.method or "(real)" if e.label == 0 else e.method or "(fake)",
                                    e.split or "-"), [0, 0])
            row[e.label] += 1
    lines = [f"{'dataset':<16}{'method':<22}{'split':<8}{'real':>8}{'fake':>8}"]
    for (d, m, sp), (n_real, n_fake) in sorted(table.items()):
        lines.append(f"{d:<16}{m:<22}{sp:<8}{n_real:>8}{n_fake:>8}")
    groups = len({lab.group for lab in found.labels.values()})
    lines.append(f"{sum(len(r.entries) for r in found.results)} videos in {groups} groups")
    return "\n".join(lines)


def describe() -> str:
    """The registered layouts, one per line: ``name: what it reads`` (``facetubes datasets``)."""
    width = max(len(r.name) for r in list_readers())
    return "\n".join(f"{r.name:<{width}}  {r.reads}" for r in list_readers())


__all__ = ["LabelSet", "ReadResult", "Reader", "VideoEntry", "build_table", "counts", "describe", "detect_reader",
           "get_reader", "identity_groups", "list_readers", "load", "output_names", "read_root", "register_reader"]
