"""``facetubes predict`` / ``evaluate`` through their command-line handlers, with real models3d checkpoints written
here (random weights, tiny presets) and bad ensemble files that must fail before the first video."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import models3d
from facetubes.config import ExtractConfig
from facetubes.manifest import rebuild_index
from facetubes.pipeline import extract_tubes
from facetubes.video import write_video
from infer.cli import main
from infer.metrics import log_loss, roc_auc


class BrightDetector:
    name = "bright"
    min_face_size = 20.0

    def detect(self, frames):
        h, w = frames.shape[1:3]
        box = np.array([[w * 0.25, h * 0.2, w * 0.75, h * 0.8]], np.float32)
        return [(box, np.array([0.99], np.float32)) for _ in frames]


def tiny(arch: str, **preset) -> torch.nn.Module:
    torch.manual_seed(0)
    m = models3d.create_model(arch, num_classes=2).eval()
    m.preset = m.preset.replace(**preset)
    return m


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    mc3 = tiny("mc3", clip_len=4, crop_size=16)
    out = {"mc3": models3d.save_checkpoint(d / "mc3.pt", mc3)}
    torch.save(mc3.state_dict(), d / "mc3_plain.pt")
    out["mc3_plain"] = d / "mc3_plain.pt"
    k400 = models3d.create_model("mc3", num_classes=400)
    torch.save(k400.state_dict(), d / "mc3_kinetics.pt")  # an upstream file: 400-class head
    out["mc3_kinetics"] = d / "mc3_kinetics.pt"
    (d / "garbage.pt").write_bytes(b"\x00\x01 not a checkpoint" * 50)
    out["garbage"] = d / "garbage.pt"
    return out


@pytest.fixture(scope="module")
def tube_dir(tmp_path_factory) -> Path:
    """A `facetubes extract` output folder with three videos' tubes (index.csv + manifests)."""
    d = tmp_path_factory.mktemp("data")
    cfg = ExtractConfig.for_inference(size=32, first_frames=20, detect_long_side=64)
    for i, level in enumerate((40, 120, 220)):
        frames = np.full((20, 48, 64, 3), level, np.uint8)
        frames[:, :, : 10 + 10 * i] = 255 - level
        write_video(d / f"v{i}.mp4", frames, fps=25)
        extract_tubes(d / f"v{i}.mp4", d / "tubes", cfg, detector=BrightDetector())
    rebuild_index(d / "tubes")
    return d / "tubes"


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_cli_from_tubes_with_checkpoints(ckpts, tube_dir, tmp_path, capsys):
    ens = write_yaml(tmp_path / "ens.yaml", f"""
members:
  - arch: mc3
    weights: {ckpts['mc3']}
  - arch: mc3
    weights: {ckpts['mc3']}
    weight: 3
    clip_len: 8            # override of the checkpoint's preset (4)
clip: [0.2, 0.8]
""")
    out = tmp_path / "pred.csv"
    code = main(["predict", str(tube_dir / "index.csv"), "-e", str(ens), "-o", str(out), "--per-model", "-q",
                 "--device", "cpu", "--first-frames", "8"])
    assert code == 0
    rows = csv_rows(out)
    assert list(rows[0]) == ["filename", "label", "n_tubes", "status", "error", "mc3", "mc3_2"]
    assert [r["filename"] for r in rows] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    for r in rows:
        assert r["status"] == "ok" and r["n_tubes"] == "1" and r["error"] == ""
        expected = min(max(0.25 * float(r["mc3"]) + 0.75 * float(r["mc3_2"]), 0.2), 0.8)
        assert float(r["label"]) == pytest.approx(expected, abs=2e-6)
    err = capsys.readouterr().err
    assert "3 videos" in err and "3 ok" in err
    # second run: everything is done already
    assert main(["predict", str(tube_dir), "-e", str(ens), "-o", str(out), "--per-model", "-q"]) == 0
    assert "3 already in the CSV" in capsys.readouterr().err
    assert len(csv_rows(out)) == 3


def test_predict_cli_raw_videos_with_mtcnn(ckpts, tmp_path, capsys):
    vids = tmp_path / "v"
    vids.mkdir()
    write_video(vids / "blank.mp4", np.full((12, 48, 64, 3), 90, np.uint8), fps=25)
    (vids / "corrupt.mp4").write_bytes(b"\x00" * 500)
    ens = write_yaml(tmp_path / "e.yaml", f"members: [{{arch: mc3, weights: {ckpts['mc3']}}}]\n")
    out = tmp_path / "p.csv"
    code = main(["predict", str(vids), "-e", str(ens), "-o", str(out), "-q", "--device", "cpu"])
    assert code == 1  # one video failed: its row says why
    rows = {r["filename"]: r for r in csv_rows(out)}
    assert rows["blank.mp4"]["status"] == "no_face" and rows["blank.mp4"]["label"] == "0.500000"
    assert rows["corrupt.mp4"]["status"] == "error" and rows["corrupt.mp4"]["error"]
    assert "1 failed" in capsys.readouterr().err

    # a resumed run skips both videos, but the CSV still holds the failure: the exit status says so
    assert main(["predict", str(vids), "-e", str(ens), "-o", str(out), "-q", "--device", "cpu"]) == 1
    assert "1 of these videos kept their status error from an earlier run" in capsys.readouterr().err
    (vids / "corrupt.mp4").unlink()
    assert main(["predict", str(vids), "-e", str(ens), "-o", str(out), "-q", "--device", "cpu"]) == 0


BAD_ENSEMBLES = {
    "missing weights": ("members: [{arch: mc3, weights: /nonexistent/mc3.pt}]", "weights file not found"),
    "unknown arch": ("members: [{arch: resnet9000, weights: {mc3}}]", "unknown arch 'resnet9000'"),
    "wrong-arch checkpoint": ("members: [{arch: r2plus1d, weights: {mc3}}]", "for 'mc3', expected 'r2plus1d'"),
    "wrong-arch state dict": ("members: [{arch: r3d34, weights: {mc3_plain}}]", "r3d34"),
    "untrained head": ("members: [{arch: mc3, weights: {mc3_kinetics}}]", "no trained 2-class head"),
    "corrupt file": ("members: [{arch: mc3, weights: {garbage}}]", "garbage.pt"),
    "bad yaml": ("members: [{arch: mc3, weights: {mc3}\n  - oops: [", "invalid YAML"),
    "empty file": ("", "empty"),
    "no members": ("members: []", "non-empty list"),
    "unknown key": ("members: [{arch: mc3, weights: {mc3}, wieght: 2}]", "unknown key(s) wieght"),
    "negative weight": ("members: [{arch: mc3, weights: {mc3}, weight: -1}]", "'weight' must be a number >= 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENSEMBLES))
def test_bad_ensemble_fails_before_the_first_video(case, ckpts, tube_dir, tmp_path, capsys):
    text, message = BAD_ENSEMBLES[case]
    for k, v in ckpts.items():
        text = text.replace("{" + k + "}", str(v))
    ens = write_yaml(tmp_path / "bad.yaml", text)
    out = tmp_path / "p.csv"
    code = main(["predict", str(tube_dir), "-e", str(ens), "-o", str(out), "-q", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert message in err
    assert not out.exists()  # failed before any video was touched


def test_missing_ensemble_file_and_bad_flags(tube_dir, tmp_path, capsys):
    assert main(["predict", str(tube_dir), "-e", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "p.csv")]) == 2
    assert "ensemble file not found" in capsys.readouterr().err
    ens = write_yaml(tmp_path / "e.yaml", "members: [{arch: mc3, weights: x.pt}]")
    assert main(["predict", str(tube_dir), "-e", str(ens), "--clip", "0.7,0.9"]) == 2
    assert "clip" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none"), "-e", str(ens)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# evaluate


def write_predictions(path: Path, rows: list[tuple], members: tuple[str, ...] = ()) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label", "n_tubes", "status", "error", *members])
        w.writerows(rows)
    return path


def test_evaluate_cli_report_plots_and_members(tmp_path, capsys):
    y = [1, 1, 0, 0, 1, 0]
    ens = [0.9, 0.6, 0.6, 0.2, 0.5, 0.5]
    a = [0.8, 0.7, 0.4, 0.1, 0.5, 0.3]
    b = [0.95, 0.3, 0.7, 0.3, 0.5, 0.6]
    names = [f"v{i}.mp4" for i in range(6)]
    status = ["ok"] * 4 + ["no_face", "ok"]
    rows = [(n, p, 1, s, "", pa, pb) for n, p, s, pa, pb in zip(names, ens, status, a, b)]
    rows.append(("unlabelled.mp4", 0.5, 1, "ok", "", 0.5, 0.5))
    pred = write_predictions(tmp_path / "pred.csv", rows, ("a", "b"))
    meta = {n: {"label": "FAKE" if t else "REAL"} for n, t in zip(names, y)}
    meta["never_predicted.mp4"] = {"label": "REAL"}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    code = main(["evaluate", str(pred), "--labels", str(tmp_path / "metadata.json")])
    assert code == 0
    out = tmp_path / "pred_eval"
    report = json.loads((out / "report.json").read_text())
    e = report["ensemble"]
    assert e["n"] == 6 and e["n_fake"] == 3 and e["n_real"] == 3
    assert e["log_loss"] == pytest.approx(log_loss(np.array(y), np.array(ens)))
    assert e["auc"] == pytest.approx(roc_auc(np.array(y), np.array(ens)))
    # hand count: fakes .9 .6 .5 vs reals .6 .2 .5 -> 3 + (.5 + 1 + 1) + (0 + 1 + .5) = 7 of 9
    assert e["auc"] == pytest.approx(7 / 9)
    assert e["accuracy"] == pytest.approx(4 / 6)
    assert report["n_missing_labels"] == 1 and report["n_labels_without_prediction"] == 1
    assert report["status_counts_evaluated"] == {"ok": 5, "no_face": 1}
    assert set(report["members"]) == {"a", "b"}
    assert report["members"]["a"]["auc"] == pytest.approx(1.0)
    corr = report["correlation"]
    ok = [i for i in range(6) if status[i] == "ok"] + [6]
    pa, pb = np.array(a + [0.5])[ok], np.array(b + [0.5])[ok]
    assert corr["n"] == 6 and corr["pearson"][0][1] == pytest.approx(np.corrcoef(pa, pb)[0, 1])
    for png in ("roc.png", "histogram.png"):
        assert (out / png).stat().st_size > 5000
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "ensemble" in text and "correlation" in text and "1 predicted videos have no label" in text


def test_evaluate_single_class_and_bad_inputs(tmp_path, capsys):
    pred = write_predictions(tmp_path / "p.csv", [("a.mp4", 0.2, 1, "ok", ""), ("b.mp4", 0.4, 1, "ok", "")])
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\na.mp4,0\nb.mp4,0\n")
    from facetubes.cli import main as facetubes_main  # the sub-command through the entry-point group

    assert facetubes_main(["evaluate", str(pred), "-l", str(labels), "-o", str(tmp_path / "r"), "--no-plots"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["ensemble"]["auc"] is None and report["ensemble"]["eer"] is None
    assert any("undefined" in n for n in report["ensemble"]["notes"])
    assert report["ensemble"]["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert not (tmp_path / "r" / "roc.png").exists()
    capsys.readouterr()

    empty = write_predictions(tmp_path / "empty.csv", [])
    assert main(["evaluate", str(empty), "-l", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "no predictions" in err and err.count("\n") == 1
    (tmp_path / "zero.csv").write_text("")
    assert main(["evaluate", str(tmp_path / "zero.csv"), "-l", str(labels)]) == 2
    assert "empty" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    other.write_text("filename,label\nzzz.mp4,1\n")
    assert main(["evaluate", str(pred), "-l", str(other)]) == 2
    assert "has a label" in capsys.readouterr().err
    bad = write_predictions(tmp_path / "bad.csv", [("a.mp4", 1.5, 1, "ok", "")])
    assert main(["evaluate", str(bad), "-l", str(labels)]) == 2
    assert "outside [0, 1]" in capsys.readouterr().err
