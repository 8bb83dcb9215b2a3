"""The ensemble file: schema, defaults, paths, and one-line errors (no model is built here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facetubes.errors import ConfigError
from facetubes.cli import build_parser
from infer.cli import extract_config_from_args
from infer.spec import load_spec, parse_spec

ARCHS = ["i3d", "mc3", "r2plus1d", "r3d34", "seresnext50"]


def test_full_file_with_relative_paths_and_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WEIGHTS_DIR", "/data/w")
    f = tmp_path / "ens" / "ensemble.yaml"
    f.parent.mkdir()
    f.write_text("""
members:
  - arch: i3d
    weights: ckpt/i3d.pt
  - arch: mc3
    weights: $WEIGHTS_DIR/mc3.pt
    weight: 2
    clip_len: 16
    crop_size: 112
    crop_fraction: 0.9
    windows: whole
  - {arch: mc3, weights: /abs/mc3b.pt, name: mc3_seed1, batch_size: 4}
  - {arch: seresnext50, weights: ~/se.pt, frames: 16, num_classes: 1}
video_agg: max
member_agg: logit
clip: [0.02, 0.98]
tta: false
extract: {margin: 0.2, detect_long_side: 640}
""")
    s = load_spec(f, known_archs=ARCHS)
    assert [m.name for m in s.members] == ["i3d", "mc3", "mc3_seed1", "seresnext50"]
    assert s.members[0].weights == f.parent.resolve() / "ckpt" / "i3d.pt"
    assert s.members[1].weights == Path("/data/w/mc3.pt")
    assert s.members[3].weights == Path.home() / "se.pt"
    assert s.weights == [1.0, 2.0, 1.0, 1.0]
    m = s.members[1]
    assert (m.clip_len, m.crop_size, m.crop_fraction, m.windows) == (16, 112, 0.9, "whole")
    assert s.members[0].clip_len is None and s.members[0].windows == "cover"
    assert s.members[3].num_classes == 1 and s.members[3].frames == 16
    assert (s.video_agg, s.member_agg, s.clip, s.tta) == ("max", "logit", (0.02, 0.98), False)
    assert s.extract == {"margin": 0.2, "detect_long_side": 640}


def test_repeated_archs_get_numbered_names():
    s = parse_spec({"members": [{"arch": "mc3", "weights": f"{i}.pt"} for i in range(3)]})
    assert [m.name for m in s.members] == ["mc3", "mc3_2", "mc3_3"]
    s = parse_spec([{"arch": "mc3", "weights": "a.pt", "name": "mc3_2"}, {"arch": "mc3", "weights": "b.pt"},
                    {"arch": "mc3", "weights": "c.pt"}])  # a bare list is accepted too
    assert [m.name for m in s.members] == ["mc3_2", "mc3", "mc3_3"]
    assert parse_spec({"members": [{"arch": "mc3", "weights": "a.pt"}], "clip": None}).clip_set


@pytest.mark.parametrize("data, message", [
    ({"members": [{"arch": "mc3"}]}, "'weights' is required"),
    ({"members": [{"weights": "a.pt"}]}, "'arch' is required"),
    ({"members": [{"arch": "vgg", "weights": "a.pt"}]}, "unknown arch 'vgg'"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "clip_len": 0}]}, "'clip_len' must be an integer from 1 to 1024"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "crop_size": 100000}]},
     "'crop_size' must be an integer from 1 to 2048, got 100000"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "num_classes": 3}]}, "'num_classes' must be 1"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "windows": "all"}]}, "'windows' must be one of"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "crop_fraction": 1.5}]}, "'crop_fraction' must be in"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "name": "label"}]}, "clashes with a predictions column"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "name": "x y"}]}, "'name' must be"),
    ({"members": [{"arch": "mc3", "weights": "a", "name": "a"}, {"arch": "i3d", "weights": "b", "name": "a"}]},
     "two members are named 'a'"),
    ({"members": [{"arch": "mc3", "weights": "a.pt", "weight": 0}]}, "weights are all zero"),
    ({"members": "mc3"}, "'members' must be a non-empty list"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "video_agg": "median"}, "'video_agg' must be one of"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "member_agg": "vote"}, "'member_agg' must be one of"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "clip": [0.9, 0.1]}, "clip range"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "clip": "0.1"}, "'clip' must be [lo, hi]"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "tta": "yes"}, "'tta' must be true or false"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "extract": {"margn": 0.2}}, "'extract'"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "extract": {"top_k": 0}}, "top_k must be >= 1"),
    ({"members": [{"arch": "mc3", "weights": "a.pt"}], "ensemble": 1}, "unknown key(s) ensemble"),
    (42, "expected a mapping"),
])
def test_schema_errors_are_one_line(data, message):
    with pytest.raises(ConfigError) as e:
        parse_spec(data, path=Path("/x/ens.yaml"), known_archs=ARCHS)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("/x/ens.yaml")


def test_file_level_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_spec(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("members:\n  - arch: mc3\n   weights: [\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
        load_spec(bad)
    bad.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="empty"):
        load_spec(bad)


def test_example_ensemble_file_is_valid():
    example = Path(__file__).resolve().parents[1] / "examples" / "ensemble.yaml"
    s = load_spec(example, known_archs=ARCHS)
    assert sorted(m.arch for m in s.members) == sorted(ARCHS)
    assert all(m.weight == 1.0 for m in s.members)
    assert yaml.safe_load(example.read_text())["members"]


def test_detection_flags_override_file_then_published_defaults():
    p = build_parser()
    a = p.parse_args(["predict", "v.mp4", "-e", "e.yaml"])
    cfg = extract_config_from_args(a)
    assert (cfg.first_frames, cfg.detect_long_side, cfg.thresholds, cfg.top_k, cfg.retry) == \
        (100, 480, (0.8, 0.8, 0.9), 5, True)
    cfg = extract_config_from_args(a, {"margin": 0.2, "detect_long_side": 640})
    assert (cfg.margin, cfg.detect_long_side) == (0.2, 640)
    a = p.parse_args(["predict", "v.mp4", "-e", "e.yaml", "--detect-long-side", "960", "--thresholds", "0.6",
                      "0.7", "0.7", "--no-retry", "--top-k", "2", "--first-frames", "50", "--crop", "follow"])
    cfg = extract_config_from_args(a, {"margin": 0.2, "detect_long_side": 640}, device="cuda")
    assert (cfg.margin, cfg.detect_long_side, cfg.thresholds, cfg.retry, cfg.top_k, cfg.first_frames,
            cfg.crop, cfg.device) == (0.2, 960, (0.6, 0.7, 0.7), False, 2, 50, "follow", "cuda")


def test_extract_detector_weights_are_relative_to_the_ensemble_file(tmp_path):
    from infer.spec import load_spec

    sub = tmp_path / "ens"
    sub.mkdir()
    f = sub / "e.yaml"
    f.write_text("members:\n  - {arch: mc3, weights: w.pt}\n"
                 "extract: {detector: retinaface, detector_weights: weights/mobilenet0.25_Final.pth}\n")
    spec = load_spec(f)
    assert spec.extract["detector_weights"] == str(sub / "weights" / "mobilenet0.25_Final.pth")
