"""Leakage: no group and no identity on both sides of any split that the readers or train3d make, on generated
FF++ and DFDC trees with crossed source/target ids; --val-dataset / --val-method holdouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_datasets import touch
from test_train_fixtures import tube_frames, write_tube

from facetubes.datasets import load
from facetubes.manifest import TubeRecord, find_label, write_index
from train.cli import main as train_main
from train.errors import TrainError
from train.splits import holdout_split, make_split

PAIRS = [("000", "001"), ("002", "003"), ("004", "005"), ("006", "007"), ("008", "009"), ("010", "011")]
METHODS = ("Deepfakes", "Face2Face")
CROSSED = ("001_002", "005_008")  # fakes whose target and source come from different pairs


def ffpp_cross_tree(root: Path, *, official: bool) -> Path:
    for a, b in PAIRS:
        touch(root, f"original_sequences/youtube/c23/videos/{a}.mp4", f"original_sequences/youtube/c23/videos/{b}.mp4")
        for m in METHODS:
            touch(root, f"manipulated_sequences/{m}/c23/videos/{a}_{b}.mp4",
                  f"manipulated_sequences/{m}/c23/videos/{b}_{a}.mp4")
    for n in CROSSED:
        touch(root, f"manipulated_sequences/Deepfakes/c23/videos/{n}.mp4")
    if official:
        (root / "splits").mkdir()
        for split, pairs in (("train", PAIRS[:4]), ("val", PAIRS[4:5]), ("test", PAIRS[5:])):
            (root / "splits" / f"{split}.json").write_text(json.dumps([list(p) for p in pairs]))
    return root


def dfdc_cross_tree(root: Path) -> Path:
    """Fakes of shared originals spread over parts; one original is also another fake's original's fake."""
    metas = {
        "dfdc_train_part_0": {"r1.mp4": {"label": "REAL"}, "r2.mp4": {"label": "REAL"},
                              "f1.mp4": {"label": "FAKE", "original": "r1.mp4"},
                              "f2.mp4": {"label": "FAKE", "original": "r3.mp4"}},
        "dfdc_train_part_1": {"r3.mp4": {"label": "REAL"}, "r4.mp4": {"label": "REAL"},
                              "f3.mp4": {"label": "FAKE", "original": "r1.mp4"},
                              "f4.mp4": {"label": "FAKE", "original": "r4.mp4"}},
        "dfdc_train_part_2": {"r5.mp4": {"label": "REAL"}, "r6.mp4": {"label": "REAL"},
                              "f5.mp4": {"label": "FAKE", "original": "r5.mp4"},
                              "f6.mp4": {"label": "FAKE", "original": "r6.mp4"},
                              "f7.mp4": {"label": "FAKE", "original": "r2.mp4"}},
    }
    for part, meta in metas.items():
        (root / part).mkdir(parents=True)
        (root / part / "metadata.json").write_text(json.dumps(meta))
    return root


def records_of(roots: list[Path], tube: Path) -> tuple[list[TubeRecord], dict[str, tuple[str, ...]]]:
    """One index record per labelled video (all pointing at one tube file), matched by source path, and the
    identities of each video."""
    ls = load(roots)
    recs, ids = [], {}
    for res in ls.results:
        for e in res.entries:
            source = str(res.root / e.key)
            lab = find_label(ls.labels, Path(e.key).stem, source)
            recs.append(TubeRecord(tube=f"{e.name}_t0", path=tube, video=e.name, source=source, track=0, part=0,
                                   start_frame=0, stop_frame=6, n_frames=6, fps=25.0, size=16, mean_prob=1.0,
                                   label=lab.label, group=lab.group, split=lab.split, folder=lab.folder,
                                   dataset=lab.dataset, method=lab.method, compression=lab.compression))
            ids[e.name] = e.ids
    return recs, ids


def assert_no_leak(train, val, ids) -> None:
    assert train and val
    assert {r.group for r in train}.isdisjoint({r.group for r in val})
    t_ids = {i for r in train for i in ids[r.video]}
    v_ids = {i for r in val for i in ids[r.video]}
    assert t_ids.isdisjoint(v_ids), sorted(t_ids & v_ids)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_group_split_never_crosses_an_identity(tmp_path, seed):
    recs, ids = records_of([ffpp_cross_tree(tmp_path / "ffpp", official=False), dfdc_cross_tree(tmp_path / "dfdc")],
                           tmp_path / "x.mp4")
    # crossed fakes chain pairs together: 000-001-002-003 and 004-005-008-009 are one group each
    groups = {r.video: r.group for r in recs}
    assert groups["youtube-c23-000"] == groups["youtube-c23-003"] == groups["Deepfakes-c23-001_002"]
    assert groups["youtube-c23-004"] == groups["youtube-c23-009"] != groups["youtube-c23-000"]
    assert groups["f2"] == "r3" and groups["f1"] == groups["f3"] == "r1"
    split = make_split(recs, mode="random", val_fraction=0.3, seed=seed)
    assert_no_leak(split.train, split.val, ids)


def test_official_split_is_used_and_its_test_pairs_are_never_trained_on(tmp_path):
    recs, ids = records_of([ffpp_cross_tree(tmp_path / "ffpp", official=True)], tmp_path / "x.mp4")
    split = make_split(recs, mode="auto", val_fraction=0.3, seed=0)
    assert split.how == "index split column"
    assert {r.split for r in split.val} == {"val"} and {r.split for r in split.train} == {"train"}
    assert_no_leak(split.train, split.val, ids)
    assert not any(r.split == "test" for r in split.train + split.val)
    # the crossed fake 005_008 joins a val pair and a test pair: it has no official split and is not used
    assert all(r.video != "Deepfakes-c23-005_008" for r in split.train + split.val)
    # a random split never draws the official test pairs either
    rnd = make_split(recs, mode="random", val_fraction=0.3, seed=0)
    assert not any(r.split == "test" for r in rnd.train + rnd.val) and "official test tubes left out" in rnd.how


def test_method_and_dataset_holdouts(tmp_path):
    recs, ids = records_of([ffpp_cross_tree(tmp_path / "ffpp", official=True), dfdc_cross_tree(tmp_path / "dfdc")],
                           tmp_path / "x.mp4")
    ff = [r for r in recs if r.dataset == "ffpp"]
    s = holdout_split(ff, val_methods=["Face2Face"])
    assert {r.method for r in s.val} == {"Face2Face", ""} and "Face2Face" not in {r.method for r in s.train}
    assert {r.label for r in s.val} == {0, 1}
    assert_no_leak(s.train, s.val, ids)
    d = holdout_split(recs, val_datasets=["dfdc"])
    assert {r.dataset for r in d.val} == {"dfdc"} and {r.dataset for r in d.train} == {"ffpp"}
    assert not any(r.split == "test" for r in d.train)
    with pytest.raises(TrainError, match="--val-method NeuralTextures: no tube has such a method"):
        holdout_split(ff, val_methods=["NeuralTextures"])
    with pytest.raises(TrainError, match="--val-dataset celebdf: no tube has such a dataset"):
        holdout_split(recs, val_datasets=["celebdf"])


def test_train3d_holds_out_a_method_without_leaking(tmp_path):
    """train3d --val-method on an index whose labels come from a generated FF++ root (matched by source path):
    the run's split.csv has no group and no identity on both sides, and the held-out method is never trained."""
    root = ffpp_cross_tree(tmp_path / "ffpp", official=False)
    real = write_tube(tmp_path / "tubes" / "real.mp4", tube_frames(6, 16, fake=False, seed=1))
    fake = write_tube(tmp_path / "tubes" / "fake.mp4", tube_frames(6, 16, fake=True, seed=2))
    recs, ids = records_of([root], real)
    recs = [r.__class__(**{**r.__dict__, "path": fake if r.label else real, "label": None, "group": r.video,
                           "method": "", "dataset": ""}) for r in recs]  # the index knows nothing: --labels does
    write_index(tmp_path / "tubes" / "index.csv", recs)
    run = tmp_path / "run"
    argv = ["--arch", "tiny3d", "--data", str(tmp_path / "tubes"), "--out", str(run), "--labels", str(root),
            "--val-method", "Face2Face", "--val-fraction", "0.3", "--clip-len", "4", "--crop-size", "16",
            "--batch-size", "8", "--epochs", "1", "--num-workers", "0", "--no-progress", "--device", "cpu",
            "--save-every-minutes", "0"]
    assert train_main(argv, task="3d") == 0
    rows = list(csv.DictReader((run / "split.csv").open()))
    by_side = {s: [r for r in rows if r["split"] == s] for s in ("train", "val")}
    assert by_side["train"] and by_side["val"]
    assert {r["group"] for r in by_side["train"]}.isdisjoint({r["group"] for r in by_side["val"]})
    video = {r.tube: r.video for r in recs}
    t_ids = {i for r in by_side["train"] for i in ids[video[r["tube"]]]}
    v_ids = {i for r in by_side["val"] for i in ids[video[r["tube"]]]}
    assert t_ids.isdisjoint(v_ids)
    assert not any(video[r["tube"]].startswith("Face2Face") for r in by_side["train"])
    assert any(video[r["tube"]].startswith("Face2Face") for r in by_side["val"])
