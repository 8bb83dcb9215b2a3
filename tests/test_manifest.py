"""Labels, index.csv round trips and atomic writes (facetubes.manifest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facetubes.errors import ConfigError
from facetubes.manifest import (INDEX_COLUMNS, Label, TubeRecord, atomic_path, atomic_write_text, load_labels,
                                read_index, read_manifest, rebuild_index, write_index, write_manifest)


def _dfdc(tmp_path: Path) -> Path:
    meta = {
        "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "FAKE", "split": "train"},
    }
    p = tmp_path / "metadata.json"
    p.write_text(json.dumps(meta))
    return p


def test_dfdc_labels_give_label_and_leakage_safe_group(tmp_path):
    labels = load_labels(_dfdc(tmp_path))
    assert labels["aaa"].label == 0 and labels["aaa"].group == "aaa"
    assert labels["bbb"].label == 1 and labels["bbb"].group == "aaa"  # a fake goes with its original
    assert labels["ccc"].label == 1 and labels["ccc"].group == "ccc"  # no original known: its own group
    assert labels["bbb"].split == "train"


def test_labels_from_folder_merge_every_metadata_json(tmp_path):
    for part, name in (("dfdc_train_part_0", "x.mp4"), ("dfdc_train_part_1", "y.mp4")):
        d = tmp_path / part
        d.mkdir()
        (d / "metadata.json").write_text(json.dumps({name: {"label": "REAL"}}))
    labels = load_labels(tmp_path)  # keyed by stem; the path under the folder is an alias
    assert set(labels) == {"x", "y"} and labels["dfdc_train_part_1/y.mp4"] == labels["y"]
    assert labels["x"].folder == "dfdc_train_part_0" and labels["x"].dataset == "dfdc"


def test_csv_labels_accept_words_and_numbers(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("filename,label,original,split\nv1.mp4,1,v2.mp4,val\nv2.mp4,REAL,,train\n")
    labels = load_labels(p)
    assert (labels["v1"].label, labels["v1"].group, labels["v1"].split) == (1, "v2", "val")
    assert (labels["v2"].label, labels["v2"].group) == (0, "v2")
    assert (labels["v1"].original, labels["v2"].original) == ("v2", "")  # what --boxes-from-original reuses
    from facetubes.manifest import labels_from_file

    assert labels_from_file(_dfdc(tmp_path))["bbb"].original == "aaa"
    assert labels_from_file(_dfdc(tmp_path))["ccc"].original == ""


@pytest.mark.parametrize("content, match", [
    ("filename,label\nv1.mp4,maybe\n", "neither FAKE/REAL"),
    ("name_of_file,y\nv1.mp4,1\n", "needs a 'filename'"),
])
def test_bad_labels_csv_is_a_one_line_error(tmp_path, content, match):
    p = tmp_path / "labels.csv"
    p.write_text(content)
    with pytest.raises(ConfigError, match=match) as e:
        load_labels(p)
    assert "\n" not in str(e.value)


def test_missing_and_corrupt_label_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_labels(tmp_path / "nope.json")
    bad = tmp_path / "metadata.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_labels(bad)


def _record(tmp_path: Path, name: str, label=None) -> TubeRecord:
    return TubeRecord(tube=f"{name}_t0", path=tmp_path / name / f"{name}_t0.mp4", video=name, source=f"/data/{name}.mp4",
                      track=0, part=0, start_frame=10, stop_frame=90, n_frames=80, fps=29.97, size=256,
                      mean_prob=0.987654, label=label, group=name, split="", folder="data")


def test_index_round_trip_with_relative_paths(tmp_path):
    recs = [_record(tmp_path, "aaa", 0), _record(tmp_path, "bbb", 1), _record(tmp_path, "ccc", None)]
    path = write_index(tmp_path / "index.csv", recs)
    header = path.read_text().splitlines()[0].split(",")
    assert tuple(header) == INDEX_COLUMNS
    assert "aaa/aaa_t0.mp4" in path.read_text()  # stored relative: the folder can be moved
    back = read_index(tmp_path)
    assert [r.label for r in back] == [0, 1, None]
    assert back[1].path == (tmp_path / "bbb" / "bbb_t0.mp4").resolve()
    assert back[0].fps == pytest.approx(29.97) and back[0].n_frames == 80


def test_read_index_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such index"):
        read_index(tmp_path)
    (tmp_path / "index.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing column"):
        read_index(tmp_path)


def test_rebuild_index_from_manifests_applies_labels(tmp_path):
    for stem, n in (("aaa", 1), ("bbb", 2), ("empty", 0)):
        d = tmp_path / stem
        d.mkdir()
        tubes = [{"tube": f"{stem}_t{k}", "file": f"{stem}_t{k}.mp4", "track": k, "part": 0, "start_frame": 0,
                  "stop_frame": 70, "n_frames": 70, "mean_prob": 0.9} for k in range(n)]
        write_manifest(d, {"video": stem, "source": f"/x/part_0/{stem}.mp4", "fps": 30.0,
                           "config": {"size": 256}, "tubes": tubes})
    (tmp_path / ".tmp-zzz-123").mkdir()  # an unfinished video from a killed job is ignored
    labels = load_labels(_dfdc(tmp_path))
    path, n = rebuild_index(tmp_path, labels)
    rows = read_index(path)
    assert n == 3 and [r.tube for r in rows] == ["aaa_t0", "bbb_t0", "bbb_t1"]
    assert [r.label for r in rows] == [0, 1, 1] and [r.group for r in rows] == ["aaa", "aaa", "aaa"]
    assert rows[0].folder == "part_0"

    # a rerun without labels keeps them; labels for some videos replace only those videos' labels
    rebuild_index(tmp_path)
    assert [(r.label, r.group, r.split) for r in read_index(path)] == [(r.label, r.group, r.split) for r in rows]
    rebuild_index(tmp_path, {"bbb": Label(0, "bbb", "val")})
    assert [(r.label, r.group, r.split) for r in read_index(path)] == [(0, "aaa", "train"), (0, "bbb", "val"),
                                                                      (0, "bbb", "val")]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no temp file left behind


def test_read_manifest_rejects_other_json(tmp_path):
    (tmp_path / "tubes.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a facetubes manifest"):
        read_manifest(tmp_path)


def test_atomic_writes_and_video_folders_follow_the_umask(tmp_path):
    import os

    from facetubes.manifest import process_umask

    target = tmp_path / "f.txt"
    atomic_write_text(target, "x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~process_umask()
