"""``facetubes evaluate-cross``: the cross-dataset table (rows: training sets, columns: test sets) from several
predictions CSVs, as Markdown, CSV, JSON and a heat map."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from facetubes.errors import ConfigError
from infer.cli import main
from infer.cross import parse_run
from infer.metrics import log_loss, roc_auc

DATASETS = ("ffpp", "celebdf", "dfdc")


def make_data(tmp_path: Path, n: int = 12):
    """n videos per dataset, half fake; each run separates its own dataset best."""
    rng = np.random.default_rng(5)
    videos = [(f"{d}_{i:02d}", d, i % 2) for d in DATASETS for i in range(n)]
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "label", "dataset"])
        w.writerows([(f"{v}.mp4", y, d) for v, d, y in videos])
    runs, scores = {}, {}
    for train in ("ffpp", "celebdf"):
        path = tmp_path / f"pred_{train}.csv"
        s = {v: float(np.clip(0.5 + (0.35 if d == train else 0.0) * (2 * y - 1) + rng.normal(0, 0.2), 0.01, 0.99))
             for v, d, y in videos}
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label", "n_tubes", "status", "error"])
            w.writerows([(f"{v}.mp4", f"{p:.6f}", 1, "ok", "") for v, p in s.items()])
        runs[train], scores[train] = path, s
    return labels, runs, scores, videos


def cell(scores, videos, train, test):
    sel = [(y, scores[train][v]) for v, d, y in videos if d == test]
    y, p = np.array([a for a, _ in sel]), np.array([b for _, b in sel])
    return roc_auc(y, p), log_loss(y, p)


def test_cross_table_markdown_csv_json_and_heatmap(tmp_path, capsys):
    labels, runs, scores, videos = make_data(tmp_path)
    out = tmp_path / "x"
    args = ["evaluate-cross", "-l", str(labels), "-o", str(out), "--run", f"FF++={runs['ffpp']}",
            "--run", f"Celeb-DF={runs['celebdf']}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "cross.json").read_text())
    assert data["rows"] == ["FF++", "Celeb-DF"] and sorted(data["columns"]) == sorted(DATASETS)
    for row, train in (("FF++", "ffpp"), ("Celeb-DF", "celebdf")):
        for test in DATASETS:
            auc, ll = cell(scores, videos, train, test)
            assert data["cells"][row][test]["auc"] == pytest.approx(auc)
            assert data["cells"][row][test]["log_loss"] == pytest.approx(ll)
            assert data["cells"][row][test]["n"] == 12
    # each model is best on its own data set: the diagonal of this synthetic table
    assert data["cells"]["FF++"]["ffpp"]["auc"] > data["cells"]["FF++"]["dfdc"]["auc"]
    assert data["cells"]["Celeb-DF"]["celebdf"]["auc"] > data["cells"]["Celeb-DF"]["ffpp"]["auc"]
    rows = list(csv.reader(io.StringIO((out / "cross.csv").read_text())))
    assert rows[0] == ["train", *data["columns"]]
    j = rows[0].index("dfdc")
    assert float(rows[1][j]) == pytest.approx(data["cells"]["FF++"]["dfdc"]["auc"], abs=1e-6)
    md = (out / "cross.md").read_text()
    assert md == printed
    assert "| train \\ test | " in md and "| FF++ | " in md
    assert f"{data['cells']['Celeb-DF']['celebdf']['auc']:.3f}" in md
    png = (out / "cross.png").read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 5000


def test_fixed_test_column_bootstrap_and_metric(tmp_path):
    labels, runs, scores, videos = make_data(tmp_path)
    out = tmp_path / "y"
    assert main(["evaluate-cross", "-l", str(labels), "-o", str(out), "--no-plots", "--metric", "log_loss",
                 "--bootstrap", "100", "--run", f"A@all={runs['ffpp']}", "--run", f"B={runs['celebdf']}"]) == 0
    data = json.loads((out / "cross.json").read_text())
    assert data["columns"][0] == "all" and set(data["cells"]["A"]) == {"all"}
    assert data["cells"]["A"]["all"]["n"] == 36
    ci = data["cells"]["B"]["dfdc"]["ci"]["log_loss"]
    assert ci[0] <= data["cells"]["B"]["dfdc"]["log_loss"] <= ci[1]
    md = (out / "cross.md").read_text()
    assert md.startswith("log loss (lower is better)") and "bootstrap interval" in md and " [" in md
    rows = list(csv.reader(io.StringIO((out / "cross.csv").read_text())))
    assert rows[1][1] != "" and rows[1][2:] == ["", "", ""]  # A has only the column "all"
    assert not (out / "cross.png").exists()


def test_parse_run_and_errors(tmp_path, capsys):
    assert parse_run("FF++@Celeb-DF=/a/b=c.csv").test == "Celeb-DF"
    assert parse_run("FF++@Celeb-DF=/a/b=c.csv").path == Path("/a/b=c.csv")
    assert parse_run("x=p.csv").test is None
    for bad in ("p.csv", "=p.csv", "x@=p.csv", "x="):
        with pytest.raises(ConfigError):
            parse_run(bad)
    labels, runs, *_ = make_data(tmp_path)
    base = ["evaluate-cross", "-l", str(labels), "-o", str(tmp_path / "z"), "--no-plots"]
    assert main(base + ["--run", f"A={runs['ffpp']}", "--run", f"A={runs['celebdf']}"]) == 2
    err = capsys.readouterr().err
    assert "given by two runs" in err and err.count("\n") == 1
    assert main(base + ["--run", "A=" + str(tmp_path / "none.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(base + ["--run", "nonsense"]) == 2
    assert "TRAIN=PREDICTIONS.csv" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
