"""Labels and leakage-safe train/validation splits over index records.

A fake and its original share a ``group``; every split here keeps a group on one side. The random split depends
only on the seed and the set of groups (never on file-system order), and a run writes its split to
``RUN_DIR/split.csv`` so that the validation set stays fixed for the whole run, resumes included.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facetubes.manifest import TubeRecord, atomic_write_text, find_label, read_index

from .errors import TrainError

log = logging.getLogger("train")

VAL_NAMES = frozenset({"val", "valid", "validation", "dev"})
TRAIN_NAMES = frozenset({"train", "training"})
TEST_NAMES = frozenset({"test", "testing"})


@dataclass
class Split:
    """Train and validation records plus a one-line description of how they were chosen."""

    train: list[TubeRecord]
    val: list[TubeRecord]
    how: str
    dropped_for_leakage: int = 0


def load_records(data: str | Path, labels: Sequence[str] = ()) -> list[TubeRecord]:
    """Index records that carry a label; ``labels`` (label files or dataset roots, see facetubes.datasets) replace
    the index's labels, matched by video name or source path (videos they do not name become unlabelled).

    Raises TrainError when the index is empty, when label files match no tube, or when no tube has a label.
    """
    records = read_index(data)
    if not records:
        raise TrainError(f"{data}: the index lists no tubes")
    if labels:
        from facetubes.datasets import load as load_label_set

        found = load_label_set(list(labels))
        for line in found.summary().splitlines():
            log.info("%s", line)
        table = found.labels
        matched = 0
        out = []
        for r in records:
            lab = find_label(table, r.video, r.source)
            if lab is None:
                out.append(dataclasses.replace(r, label=None))
                continue
            matched += 1
            out.append(dataclasses.replace(r, label=lab.label, group=lab.group or r.group,
                                           split=lab.split or r.split, dataset=lab.dataset or r.dataset,
                                           method=lab.method or r.method, compression=lab.compression or
                                           r.compression, folder=lab.folder or r.folder))
        if matched == 0:
            raise TrainError(f"labels in {', '.join(map(str, labels))} match no tube of {data} "
                             f"(keys are video names, stems or dataset paths, e.g. {records[0].video!r})")
        records = out
    labelled = [r for r in records if r.label is not None]
    if not labelled:
        raise TrainError(f"{data}: no tube has a label (extract with --labels, or pass --labels FILE)")
    if len(labelled) < len(records):
        log.info("%d of %d tubes have no label and are not used", len(records) - len(labelled), len(records))
    return labelled


def class_counts(records: Iterable[TubeRecord]) -> tuple[int, int]:
    """(number of real tubes, number of fake tubes)."""
    labels = [int(r.label or 0) for r in records]
    return labels.count(0), labels.count(1)


def _check_two_classes(records: Sequence[TubeRecord], side: str, hint: str) -> None:
    n_real, n_fake = class_counts(records)
    if not records:
        raise TrainError(f"the {side} set is empty{hint}")
    if n_real == 0 or n_fake == 0:
        only = "fake" if n_real == 0 else "real"
        raise TrainError(f"the {side} set has only {only} tubes ({len(records)}); both classes are needed{hint}")


def _without_leaks(train: list[TubeRecord], val: list[TubeRecord]) -> tuple[list[TubeRecord], int]:
    """Drop training records whose group also appears in validation."""
    val_groups = {r.group for r in val}
    kept = [r for r in train if r.group not in val_groups]
    return kept, len(train) - len(kept)


def random_group_split(records: Sequence[TubeRecord], val_fraction: float, seed: int) -> Split:
    """Whole groups, drawn in a seeded order of the sorted group names, until ``val_fraction`` of tubes is reached.

    Groups are visited in a seeded permutation; a group goes to validation while the validation side holds fewer
    than ``val_fraction`` of the real (or fake) tubes and the group has some of that class, so both classes are
    represented in proportion whenever possible.
    """
    by_group: dict[str, list[TubeRecord]] = {}
    for r in records:
        by_group.setdefault(r.group, []).append(r)
    names = sorted(by_group)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).permutation(len(names))
    n_real, n_fake = class_counts(records)
    target = (max(1, round(val_fraction * n_real)), max(1, round(val_fraction * n_fake)))
    have = [0, 0]
    val_groups: set[str] = set()
    for i in order:
        if have[0] >= target[0] and have[1] >= target[1]:
            break
        r, f = class_counts(by_group[names[i]])
        if (r and have[0] < target[0]) or (f and have[1] < target[1]):
            val_groups.add(names[i])
            have[0] += r
            have[1] += f
    train = [r for r in records if r.group not in val_groups]
    val = [r for r in records if r.group in val_groups]
    how = f"random groups (seed {seed}, val fraction {val_fraction:g})"
    return Split(train, val, how)


def make_split(records: Sequence[TubeRecord], *, mode: str, val_fraction: float, seed: int,
               val_folders: Sequence[str] = ()) -> Split:
    """Choose train/validation records.

    ``mode``: ``folders`` (``val_folders`` match the index ``folder`` column), ``column`` (the index ``split``
    column: train / val), ``random`` (seeded, whole groups) or ``auto`` (folders if given, else the column if any
    tube is marked val, else random). Training tubes whose group reaches validation are dropped (no leakage).
    Raises TrainError when either side is empty or has a single class.
    """
    if mode == "auto":
        if val_folders:
            mode = "folders"
        elif any(r.split.strip().lower() in VAL_NAMES for r in records):
            mode = "column"
        else:
            mode = "random"
    dropped = 0
    if mode == "folders":
        if not val_folders:
            raise TrainError("--split folders needs --val-folders NAME...")
        wanted = set(val_folders)
        known = {r.folder for r in records}
        missing = sorted(wanted - known)
        if missing:
            raise TrainError(f"--val-folders {' '.join(missing)}: no tube comes from such a folder "
                             f"(folders in the index: {', '.join(sorted(known)[:8]) or 'none'})")
        val = [r for r in records if r.folder in wanted]
        train, dropped = _without_leaks([r for r in records if r.folder not in wanted], val)
        split = Split(train, val, f"validation folders {', '.join(sorted(wanted))}", dropped)
    elif mode == "column":
        val = [r for r in records if r.split.strip().lower() in VAL_NAMES]
        rest = [r for r in records if r.split.strip().lower() not in VAL_NAMES]
        # explicit 'train' rows if any are marked so; rows marked e.g. 'test' are never trained on
        marked = [r for r in rest if r.split.strip().lower() in TRAIN_NAMES]
        train_pool = marked if marked else [r for r in rest if not r.split.strip()]
        train, dropped = _without_leaks(train_pool, val)
        split = Split(train, val, "index split column", dropped)
    elif mode == "random":
        # official test videos (FF++ test pairs, Celeb-DF's test list) are never trained on, nor validated on
        pool = [r for r in records if r.split.strip().lower() not in TEST_NAMES]
        split = random_group_split(pool, val_fraction, seed)
        if len(pool) < len(records):
            split.how += f"; {len(records) - len(pool)} official test tubes left out"
    else:
        raise TrainError(f"unknown split mode {mode!r}")
    hint = f" (split: {split.how})"
    _check_two_classes(split.train, "training", hint)
    _check_two_classes(split.val, "validation", hint)
    if dropped:
        log.info("%d training tubes dropped: their group is in the validation set", dropped)
    return split


def holdout_split(records: Sequence[TubeRecord], *, val_datasets: Sequence[str] = (),
                  val_methods: Sequence[str] = (), mode: str = "auto", val_fraction: float = 0.15, seed: int = 0,
                  val_folders: Sequence[str] = ()) -> Split:
    """Cross-dataset / cross-manipulation split: whole datasets and/or methods held out for validation.

    - ``val_datasets``: every tube of these datasets (index ``dataset`` column) is validation; none is trained on.
    - ``val_methods``: the other tubes are first split as :func:`make_split` does (``mode``...), so that no
      identity crosses; then validation keeps the fakes of these methods and the reals, and training drops
      every tube of these methods.

    Training tubes whose group reaches validation are dropped (DeeperForensics fakes share groups with the FF++
    targets, for example). Raises TrainError for a name no tube has, or when a side is empty or single-class.
    """
    for what, wanted, column in (("--val-dataset", val_datasets, "dataset"), ("--val-method", val_methods,
                                                                              "method")):
        known = {getattr(r, column) for r in records} - {""}
        missing = sorted(set(wanted) - known)
        if missing:
            raise TrainError(f"{what} {' '.join(missing)}: no tube has such a {column} "
                             f"(in the index: {', '.join(sorted(known)[:12]) or 'none'})")
    d_set, m_set = set(val_datasets), set(val_methods)
    val = [r for r in records if r.dataset in d_set]
    rest = [r for r in records if r.dataset not in d_set]
    if m_set:
        base = make_split(rest, mode=mode, val_fraction=val_fraction, seed=seed, val_folders=val_folders)
        train = [r for r in base.train if r.method not in m_set]
        val += [r for r in base.val if r.method in m_set or r.label == 0]
        how = f"held out method(s) {', '.join(sorted(m_set))} over {base.how}"
    else:
        train = [r for r in rest if r.split.strip().lower() not in TEST_NAMES]
        how = ""
    if d_set:
        how = f"held out dataset(s) {', '.join(sorted(d_set))}" + (f"; {how}" if how else "")
    train, dropped = _without_leaks(train, val)
    split = Split(train, val, how, dropped)
    hint = f" (split: {how})"
    _check_two_classes(split.train, "training", hint)
    _check_two_classes(split.val, "validation", hint)
    if dropped:
        log.info("%d training tubes dropped: their group is in the validation set", dropped)
    return split


# ----------------------------------------------------------------------------------------------------------------
# the split of a run, saved next to its checkpoints


def write_split(path: str | Path, split: Split) -> None:
    """``tube,split`` rows for every tube used by the run (train or val), atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["tube", "split", "label", "group"])
    for side, recs in (("train", split.train), ("val", split.val)):
        for r in recs:
            w.writerow([r.tube, side, r.label, r.group])
    atomic_write_text(path, buf.getvalue())


def read_split(path: str | Path, records: Sequence[TubeRecord]) -> Split:
    """Rebuild a run's split from ``split.csv`` and the current index records (labels from the index).

    Raises TrainError when a tube named in the file is no longer in the index.
    """
    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except OSError as e:
        raise TrainError(f"{path}: cannot read the run's split ({e})") from None
    by_tube = {r.tube: r for r in records}
    train: list[TubeRecord] = []
    val: list[TubeRecord] = []
    for row in rows:
        rec = by_tube.get(row.get("tube", ""))
        if rec is None:
            raise TrainError(f"{path}: tube {row.get('tube')!r} of this run is missing from the index")
        (val if row.get("split") == "val" else train).append(rec)
    return Split(train, val, f"saved split {path.name}")


def summarize(split: Split) -> str:
    """One line: sizes and class counts of both sides."""
    tr, va = class_counts(split.train), class_counts(split.val)
    return (f"split: {split.how}; train {len(split.train)} tubes ({tr[0]} real, {tr[1]} fake), "
            f"val {len(split.val)} tubes ({va[0]} real, {va[1]} fake)")


__all__ = ["Split", "holdout_split", "load_records", "make_split", "random_group_split", "read_split", "write_split",
           "class_counts", "summarize"]
