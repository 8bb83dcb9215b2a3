"""``facetubes evaluate`` levels (video / tube / frame from a hand-written `predict --details` file), frame and tube
aggregation, breakdowns by dataset / method / compression / folder, bootstrap intervals and their plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from facetubes.manifest import Label
from infer.breakdown import breakdown_cells, load_eval_labels, match_label, parse_by, resolve_folders
from infer.cli import main
from infer.csvio import read_predictions
from infer.evaluate import evaluate_predictions
from infer.levels import frame_samples, read_details, tube_samples, video_samples_from_details
from infer.metrics import log_loss, roc_auc
from facetubes.errors import ConfigError

# video -> (label, dataset, method, compression, part folder, tracks); a track: (3D member prob, 2D frame probs)
VIDEOS = {
    "000": (0, "ffpp", "", "c23", "youtube", [(0.2, [0.1, 0.3, 0.2])]),
    "001": (0, "ffpp", "", "c23", "youtube", [(0.4, [0.6, 0.2, 0.1]), (0.1, [0.1, 0.1])]),
    "000_001": (1, "ffpp", "Deepfakes", "c23", "Deepfakes", [(0.9, [0.8, 0.9, 0.3])]),
    "001_000": (1, "ffpp", "Face2Face", "c23", "Face2Face", [(0.3, [0.2, 0.9, 0.7])]),
    "002_000": (1, "ffpp", "Deepfakes", "c40", "Deepfakes", [(0.6, [0.5, 0.5, 0.6]), (0.35, [0.4, 0.2, 0.3])]),
    "aaa": (0, "dfdc", "", "", "dfdc_train_part_1", [(0.7, [0.6, 0.8])]),
    "bbb": (1, "dfdc", "dfdc", "", "dfdc_train_part_1", [(0.8, [0.7, 0.9])]),
    "ccc": (0, "dfdc", "", "", "dfdc_train_part_2", []),  # no face: only the CSV's prior
}


def write_details(path: Path, videos=VIDEOS, with_prob: bool = False) -> Path:
    lines = []
    for v, (_y, _d, _m, _c, folder, tracks) in videos.items():
        tr = []
        for i, (p3, frames) in enumerate(tracks):
            t = {"track": i, "start_frame": 0, "stop_frame": len(frames), "boxes": [[0, 1, 2, 30, 40]],
                 "members": {"r3d": p3, "effb0": float(np.mean(frames))},
                 "frames": {"effb0": [[10 * k, f] for k, f in enumerate(frames)]}}
            if with_prob:
                t["prob"] = 0.5
            tr.append(t)
        lines.append(json.dumps({"video": v, "source": f"/data/{folder}/{v}.mp4", "prob": 0.5, "status": "ok",
                                 "note": "", "members": {}, "tracks": tr}))
    path.write_text("\n".join(lines) + "\n")
    return path


def video_prob(tracks) -> float:
    if not tracks:
        return 0.5
    return float(np.mean([np.mean([p3, np.mean(f)]) for p3, f in tracks]))


def write_inputs(tmp_path: Path):
    pred = tmp_path / "pred.csv"
    with open(pred, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label", "n_tubes", "status", "error"])
        for v, (*_, tracks) in VIDEOS.items():
            w.writerow([f"{v}.mp4", f"{video_prob(tracks):.6f}", len(tracks), "ok" if tracks else "no_face", ""])
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label", "dataset", "method", "compression"])
        for v, (y, d, m, c, *_rest) in VIDEOS.items():
            w.writerow([f"{v}.mp4", y, d, m, c])
    return pred, labels, write_details(tmp_path / "details.jsonl")


LABELS = {v: Label(t[0], v) for v, t in VIDEOS.items()}


def test_tube_level_samples_and_frame_aggregation(tmp_path):
    details = read_details(write_details(tmp_path / "d.jsonl"))
    s = tube_samples(details, LABELS)
    tracks = [(v, t) for v, rec in VIDEOS.items() for t in rec[5]]
    assert s.y.tolist() == [VIDEOS[v][0] for v, _ in tracks]
    np.testing.assert_allclose(s.members["r3d"], [t[0] for _, t in tracks])
    np.testing.assert_allclose(s.p, [np.mean([t[0], np.mean(t[1])]) for _, t in tracks])
    assert "no face track" in " ".join(s.notes)  # ccc
    m = tube_samples(details, LABELS, frame_agg="max")
    np.testing.assert_allclose(m.members["effb0"], [max(t[1]) for _, t in tracks])
    np.testing.assert_allclose(m.members["r3d"], s.members["r3d"])  # 3D members have no frames to reduce
    assert "max of its frame scores" in m.aggregation
    # a details file with the ensemble's own track prob: used as predicted
    withp = tube_samples(read_details(write_details(tmp_path / "p.jsonl", with_prob=True)), LABELS)
    assert (withp.p == 0.5).all()


def test_frame_level_one_sample_per_face_and_frame(tmp_path):
    details = read_details(write_details(tmp_path / "d.jsonl"))
    s = frame_samples(details, LABELS)
    frames = [(v, f) for v, rec in VIDEOS.items() for t in rec[5] for f in t[1]]
    assert s.y.size == len(frames) == 24
    np.testing.assert_allclose(s.p, [f for _, f in frames])
    assert s.video.tolist() == [v for v, _ in frames]
    assert set(s.members) == {"effb0"}
    # without frame members there is no frame level
    no2d = {k: {**o, "tracks": [{**t, "frames": {}} for t in o["tracks"]]} for k, o in details.items()}
    with pytest.raises(ConfigError, match="frame"):
        frame_samples(no2d, LABELS)


def test_video_level_recomputed_from_tubes(tmp_path):
    pred, labels, det = write_inputs(tmp_path)
    details = read_details(det)
    redo = video_samples_from_details(details, LABELS, tube_agg="max")
    assert "ccc" not in redo
    p, members = redo["002_000"]
    assert members["r3d"] == pytest.approx(0.6) and members["effb0"] == pytest.approx(np.mean([0.5, 0.5, 0.6]))
    assert p == pytest.approx((0.6 + np.mean([0.5, 0.5, 0.6])) / 2)
    report, arrays = evaluate_predictions(read_predictions(pred), LABELS, details=details, tube_agg="max")
    i = arrays["video"].tolist().index("ccc")
    assert arrays["p"][i] == pytest.approx(0.5)  # kept from the CSV
    assert report["ensemble"]["auc"] == pytest.approx(roc_auc(arrays["y"], arrays["p"]))
    assert "max of its tube scores" in report["aggregation"]
    plain, a2 = evaluate_predictions(read_predictions(pred), LABELS)
    assert not np.allclose(a2["p"], arrays["p"])
    assert "as predicted" in plain["aggregation"] and plain["level"] == "video"


def test_tube_level_counts_only_the_predicted_videos(tmp_path):
    pred, _labels, det = write_inputs(tmp_path)
    details = read_details(det)
    labels = {**LABELS, "zzz": Label(1, "zzz")}
    details["zzz"] = {**details["bbb"], "video": "zzz"}  # in the details file, not in the CSV
    report, arrays = evaluate_predictions(read_predictions(pred), labels, level="tube", details=details)
    assert "zzz" not in arrays["video"].tolist() and report["n_samples"] == 9
    assert any("not in the predictions CSV" in n for n in report["notes"])


def test_breakdowns_method_uses_the_shared_reals_of_its_dataset(tmp_path):
    pred, labels_csv, det = write_inputs(tmp_path)
    labels, attrs = load_eval_labels([labels_csv])
    resolve_folders(attrs, read_predictions(pred).filenames, read_details(det))
    assert attrs["aaa"] == {"dataset": "dfdc", "folder": "dfdc_train_part_1"}
    assert attrs["002_000"]["compression"] == "c40"
    report, arrays = evaluate_predictions(read_predictions(pred), labels, by=("method", "dataset", "compression",
                                                                              "folder"), attributes=attrs)
    vids, y, p = arrays["video"].tolist(), arrays["y"], arrays["p"]
    b = report["breakdowns"]
    assert set(b["method"]["cells"]) == {"Deepfakes", "Face2Face", "dfdc"}
    df = b["method"]["cells"]["Deepfakes"]
    assert (df["n_fake"], df["n_real"]) == (2, 2)  # 000_001, 002_000 vs the FF++ reals 000, 001 (not DFDC's)
    sel = [vids.index(v) for v in ("000", "001", "000_001", "002_000")]
    assert df["auc"] == pytest.approx(roc_auc(y[sel], p[sel]))
    assert df["log_loss"] == pytest.approx(log_loss(y[sel], p[sel]))
    assert b["method"]["cells"]["dfdc"]["n"] == 3  # bbb vs aaa, ccc
    assert b["dataset"]["cells"]["ffpp"]["n"] == 5 and b["dataset"]["cells"]["dfdc"]["n"] == 3
    assert set(b["compression"]["cells"]) == {"c23", "c40", "(none)"}
    assert b["folder"]["cells"]["dfdc_train_part_2"]["n"] == 1
    assert b["folder"]["cells"]["dfdc_train_part_2"]["auc"] is None  # one class: undefined, not an error


def test_breakdown_cells_and_parse_by():
    attrs = {"a": {"method": "X", "dataset": "d"}, "b": {"method": "Y", "dataset": "d"}, "r": {"dataset": "d"},
             "o": {"dataset": "other"}}
    cells = breakdown_cells("method", np.array(["a", "b", "r", "o"], dtype=object), np.array([1, 1, 0, 0]), attrs)
    assert {k: v.tolist() for k, v in cells.items()} == {"X": [True, False, True, False],
                                                        "Y": [False, True, True, False]}
    assert parse_by("method, dataset,method") == ("method", "dataset")
    with pytest.raises(ConfigError, match="unknown breakdown"):
        parse_by("method,colour")


def test_cli_tube_level_breakdowns_bootstrap_and_plots(tmp_path, capsys):
    pred, labels, det = write_inputs(tmp_path)
    out = tmp_path / "r"
    args = ["evaluate", str(pred), "-l", str(labels), "--details", str(det), "--level", "tube", "--by",
            "method,folder", "--bootstrap", "200", "--seed", "3", "-o", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert rep["level"] == "tube" and rep["n_samples"] == 9 and rep["n_videos_with_samples"] == 7
    ci = rep["ensemble"]["ci"]
    assert ci["unit"] == "cluster" and ci["n_units"] == 7 and ci["n_resamples"] == 200
    assert ci["auc"][0] <= rep["ensemble"]["auc"] <= ci["auc"][1]
    assert "ci" in rep["breakdowns"]["method"]["cells"]["Deepfakes"]
    assert rep["breakdowns"]["folder"]["cells"]["Deepfakes"]["n"] == 3  # tubes of the two Deepfakes videos
    for png in ("roc.png", "histogram.png", "by_method.png", "by_folder.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and (out / png).stat().st_size > 5000
    assert "level tube" in text and "by method" in text and "AUC 95% CI" in text
    assert main(args + ["--no-plots"]) == 0  # seeded: the same intervals again
    assert json.loads((out / "report.json").read_text())["ensemble"]["ci"] == ci
    assert main(["evaluate", str(pred), "-l", str(labels), "--details", str(det), "--level", "frame",
                 "-o", str(tmp_path / "f"), "--no-plots"]) == 0
    assert json.loads((tmp_path / "f" / "report.json").read_text())["n_samples"] == 24


@pytest.mark.parametrize("extra, message", [
    (["--level", "frame"], "needs a details file"),
    (["--tube-agg", "max"], "need a details file"),
    (["--by", "colour"], "unknown breakdown"),
    (["--bootstrap", "-1"], "--bootstrap"),
    (["--details", "DET", "--level", "tube", "--tube-agg", "max"], "applies to --level video"),
    (["--details", "DET", "--level", "frame", "--frame-agg", "max"], "does not apply"),
    (["--details", "DET", "--frame-agg", "max"], "needs --tube-agg"),
    (["--details", "BAD"], "BAD.jsonl:2: invalid JSON"),
    (["--details", "NOPE"], "details file not found"),
])
def test_cli_bad_options_are_one_line_errors(tmp_path, capsys, extra, message):
    pred, labels, det = write_inputs(tmp_path)
    bad = tmp_path / "BAD.jsonl"
    bad.write_text(det.read_text().splitlines()[0] + "\n{not json\n")
    subs = {"DET": str(det), "BAD": str(bad), "NOPE": str(tmp_path / "nope.jsonl")}
    extra = [subs.get(x, x) for x in extra]
    assert main(["evaluate", str(pred), "-l", str(labels), "--no-plots", "-o", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (tmp_path / "r" / "report.json").exists()


class AliasTable(dict):
    """A label table with aliases (root-relative paths, unique stems), as the dataset readers return."""

    def __init__(self, names, aliases):
        super().__init__(names)
        self.aliases = aliases


def test_labels_matched_by_path_and_alias_with_label_attributes(tmp_path):
    # FF++: two methods share the stem 000_001; the CSV names them by path or by their unique reader name
    labs = {f"{m}-000_001": Label(1, "ffpp:000", "", "ffpp", m, "c23", f"manipulated_sequences/{m}/c23")
            for m in ("Deepfakes", "Face2Face")}
    labs["youtube-000"] = Label(0, "ffpp:000", "", "ffpp", "", "c23", "original_sequences/youtube/c23")
    aliases = {f"manipulated_sequences/{m}/c23/videos/000_001.mp4": labs[f"{m}-000_001"]
               for m in ("Deepfakes", "Face2Face")}
    aliases["000"] = labs["youtube-000"]
    table = AliasTable(labs, aliases)
    assert match_label(table, "/data/ff/manipulated_sequences/Face2Face/c23/videos/000_001.mp4").method == "Face2Face"
    assert match_label(table, "000.mp4") is labs["youtube-000"]
    assert match_label(table, "Deepfakes-000_001.mp4") is labs["Deepfakes-000_001"]
    assert match_label(table, "000_001.mp4") is None  # ambiguous stem: no guess
    pred = tmp_path / "p.csv"
    pred.write_text("filename,label,n_tubes,status,error\n"
                    "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4,0.9,1,ok,\n"
                    "manipulated_sequences/Face2Face/c23/videos/000_001.mp4,0.4,1,ok,\n"
                    "000.mp4,0.5,1,ok,\n")
    report, arrays = evaluate_predictions(read_predictions(pred), table, by=("method", "folder"))
    assert report["n_evaluated"] == 3 and report["n_labels_without_prediction"] == 0
    cells = report["breakdowns"]["method"]["cells"]
    assert cells["Deepfakes"]["auc"] == 1.0 and cells["Face2Face"]["auc"] == 0.0
    assert (cells["Face2Face"]["n_fake"], cells["Face2Face"]["n_real"]) == (1, 1)
    assert set(report["breakdowns"]["folder"]["cells"]) == {"manipulated_sequences/Deepfakes/c23",
                                                            "manipulated_sequences/Face2Face/c23",
                                                            "original_sequences/youtube/c23"}


def test_index_csv_as_labels_skips_unlabelled_rows_and_reads_attributes(tmp_path):
    idx = tmp_path / "index.csv"
    idx.write_text("tube,path,video,source,track,part,start_frame,stop_frame,n_frames,fps,size,mean_prob,label,"
                   "group,split,folder\n"
                   "a_0,a/t0.mp4,a,/x/p1/a.mp4,0,0,0,10,10,25,64,0.9,1,b,,p1\n"
                   "b_0,b/t0.mp4,b,/x/p1/b.mp4,0,0,0,10,10,25,64,0.9,0,b,,p1\n"
                   "c_0,c/t0.mp4,c,/x/p2/c.mp4,0,0,0,10,10,25,64,0.9,,c,,p2\n")
    labels, attrs = load_eval_labels([idx])
    assert set(labels) == {"a", "b"} and labels["a"].label == 1 and labels["a"].group == "b"
    assert attrs["a"]["folder"] == "p1"


def test_dataset_roots_read_by_the_readers_ffpp_per_method_and_dfdc_per_part(tmp_path, capsys):
    """Labels from generated FF++ and DFDC roots (the dataset readers): FF++ per manipulation against the shared
    FF++ reals, DFDC per part, with CSV filenames given as root-relative paths (FF++ stems repeat per method)."""
    ff = tmp_path / "ffpp"
    (ff / "original_sequences/youtube/c23/videos").mkdir(parents=True)
    for i in ("000", "001", "002", "003"):
        (ff / f"original_sequences/youtube/c23/videos/{i}.mp4").touch()
    for m in ("Deepfakes", "Face2Face"):
        (ff / f"manipulated_sequences/{m}/c23/videos").mkdir(parents=True)
        for pair in ("000_001", "001_000", "002_003", "003_002"):
            (ff / f"manipulated_sequences/{m}/c23/videos/{pair}.mp4").touch()
    (ff / "splits").mkdir()
    for split, pairs in (("train", [["000", "001"]]), ("val", []), ("test", [["002", "003"]])):
        (ff / f"splits/{split}.json").write_text(json.dumps(pairs))
    dfdc = tmp_path / "dfdc"
    for part in (0, 1):
        d = dfdc / f"dfdc_train_part_{part}"
        d.mkdir(parents=True)
        meta = {f"r{part}{i}.mp4": {"label": "REAL", "split": "train"} for i in range(2)}
        meta.update({f"f{part}{i}.mp4": {"label": "FAKE", "split": "train", "original": f"r{part}{i}.mp4"}
                     for i in range(2)})
        (d / "metadata.json").write_text(json.dumps(meta))
        for name in meta:
            (d / name).touch()
    # scores: Deepfakes well separated from the FF++ reals, Face2Face not at all; DFDC part 0 perfect, part 1 inverted
    rows = [(f"original_sequences/youtube/c23/videos/{i}.mp4", 0.3) for i in ("000", "001", "002", "003")]
    rows += [(f"manipulated_sequences/Deepfakes/c23/videos/{p}.mp4", 0.9) for p in ("000_001", "001_000",
                                                                                 "002_003", "003_002")]
    rows += [(f"manipulated_sequences/Face2Face/c23/videos/{p}.mp4", 0.3) for p in ("000_001", "001_000",
                                                                                 "002_003", "003_002")]
    rows += [("r00.mp4", 0.2), ("r01.mp4", 0.1), ("f00.mp4", 0.8), ("f01.mp4", 0.7)]
    rows += [("r10.mp4", 0.8), ("r11.mp4", 0.7), ("f10.mp4", 0.2), ("f11.mp4", 0.1)]
    pred = tmp_path / "pred.csv"
    pred.write_text("filename,label,n_tubes,status,error\n" + "".join(f"{n},{p},1,ok,\n" for n, p in rows))
    out = tmp_path / "r"
    assert main(["evaluate", str(pred), "-l", str(ff), str(dfdc), "--by", "method,folder,dataset,compression",
                 "-o", str(out), "--no-plots"]) == 0
    capsys.readouterr()
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_evaluated"] == 20 and rep["n_missing_labels"] == 0
    method = rep["breakdowns"]["method"]["cells"]
    assert set(method) == {"Deepfakes", "Face2Face", "(none)"}  # DFDC fakes name no method
    assert (method["(none)"]["n_fake"], method["(none)"]["n_real"]) == (4, 4)  # against the DFDC reals
    assert (method["Deepfakes"]["n_fake"], method["Deepfakes"]["n_real"]) == (4, 4)  # the FF++ reals only
    assert method["Deepfakes"]["auc"] == 1.0 and method["Face2Face"]["auc"] == 0.5
    folder = rep["breakdowns"]["folder"]["cells"]
    assert folder["dfdc_train_part_0"]["auc"] == 1.0 and folder["dfdc_train_part_1"]["auc"] == 0.0
    assert {k: v["n"] for k, v in rep["breakdowns"]["dataset"]["cells"].items()} == {"ffpp": 12, "dfdc": 8}
    assert rep["breakdowns"]["compression"]["cells"]["c23"]["n"] == 12
