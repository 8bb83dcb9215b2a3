"""The prediction run: inputs, in-memory tubes, no-face and error rows, the CSV schema, resume after a kill.

Videos are tiny MP4s written here; a stub detector finds a "face" wherever the frame is bright, so no test
depends on MTCNN. Models are the hand-made ``LeftEdge`` of test_infer_engine (logit from the left-most columns).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facetubes.config import ExtractConfig
from facetubes.errors import ConfigError
from facetubes.manifest import rebuild_index
from facetubes.pipeline import extract_tubes
from facetubes.video import write_video
from infer.csvio import CORE_COLUMNS, PredictionsWriter, read_predictions
from infer.engine import EnsemblePredictor, Member
from infer.predict import Loaded, WorkItem, collect_work, load_item, run_predict


class LeftEdge(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 6.0 * x[..., :4].flatten(1).mean(1) / 255.0 - 3.0
        return torch.stack([torch.zeros_like(z), z], 1)


class BrightDetector:
    """A 'face' (fixed box in the middle) on every frame whose mean is above 60, nothing elsewhere."""

    name = "bright"
    min_face_size = 20.0

    def detect(self, frames: np.ndarray):
        out = []
        for f in frames:
            h, w = f.shape[:2]
            if f.mean() > 60:
                out.append((np.array([[w * 0.25, h * 0.2, w * 0.75, h * 0.8]], np.float32),
                            np.array([0.99], np.float32)))
            else:
                out.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
        return out


def predictor(**kw) -> EnsemblePredictor:
    m = Member(name="edge", model=LeftEdge(), normalize=lambda x: x.float(), is_3d=True, clip_len=8, crop_size=32,
               crop_fraction=1.0)
    return EnsemblePredictor([m], **kw)


def config() -> ExtractConfig:
    return ExtractConfig.for_inference(size=32, first_frames=30, detect_long_side=64)


def make_video(path: Path, level: int, n: int = 30, left: int = 255) -> Path:
    frames = np.full((n, 48, 64, 3), level, np.uint8)
    frames[:, :, :26] = left  # bright left part: inside the crop box, so the tube has a bright left edge
    write_video(path, frames, fps=25)
    return path


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    d = tmp_path / "videos"
    d.mkdir()
    make_video(d / "face.mp4", 120)
    make_video(d / "dark.mp4", 5, left=5)  # no "face"
    (d / "broken.mp4").write_bytes(b"not a video at all" * 100)
    return d


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(items, out: Path, load=None, **kw):
    cfg, det = config(), BrightDetector()
    with PredictionsWriter(out, kw.pop("columns", ())) as w:
        return run_predict(items, kw.pop("predictor", None) or predictor(), w,
                           load or (lambda it: load_item(it, cfg, det)), progress=False, **kw)


def test_raw_videos_ok_no_face_and_error_rows(videos: Path, tmp_path: Path):
    out = tmp_path / "pred.csv"
    summary = run(collect_work([videos]), out, columns=["edge"])
    r = {x["filename"]: x for x in rows(out)}
    assert list(rows(out)[0]) == [*CORE_COLUMNS, "edge"]
    assert set(r) == {"face.mp4", "dark.mp4", "broken.mp4"}
    assert r["face.mp4"]["status"] == "ok" and r["face.mp4"]["n_tubes"] == "1"
    assert float(r["face.mp4"]["label"]) > 0.7  # bright left edge -> high LeftEdge score
    assert r["face.mp4"]["label"] == r["face.mp4"]["edge"]  # one member, no clipping needed
    assert r["dark.mp4"]["status"] == "no_face" and float(r["dark.mp4"]["label"]) == 0.5
    assert r["dark.mp4"]["error"] == "no face detected"
    assert r["broken.mp4"]["status"] == "error" and float(r["broken.mp4"]["label"]) == 0.5
    assert "broken.mp4" in r["broken.mp4"]["error"] and "\n" not in r["broken.mp4"]["error"]
    assert summary.counts == {"ok": 1, "no_face": 1, "error": 1}
    text = summary.text()
    assert "1 failed" in text and "broken.mp4" in text
    # a face in a video too short for min_frames is not reported as "no face detected"
    short = load_item(collect_work([videos / "face.mp4"])[0], config().replace(min_frames=31), BrightDetector())
    assert not short.tubes and short.note == "video has 30 frames, fewer than min_frames=31"


def test_tubes_are_built_in_memory_without_writing_files(videos: Path, tmp_path: Path, monkeypatch):
    import facetubes.pipeline as fp
    import facetubes.video as fv

    def no_writer(*a, **k):
        raise AssertionError("inference must not encode MP4 tubes")

    for module in (fp, fv):
        monkeypatch.setattr(module, "VideoWriter", no_writer)
    monkeypatch.setattr(fp, "extract_tubes", no_writer)
    loaded = load_item(WorkItem("face.mp4", str(videos / "face.mp4"), video=videos / "face.mp4"), config(),
                       BrightDetector())
    assert not loaded.error and len(loaded.tubes) == 1
    t = loaded.tubes[0]
    assert t.dtype == np.uint8 and t.shape == (30, 32, 32, 3)
    assert t[:, :, :4].mean() > 200 and t[:, :, -4:].mean() < 160


def test_index_input_matches_in_memory_prediction(videos: Path, tmp_path: Path):
    out_dir = tmp_path / "tubes"
    cfg = config()
    for v in ("face.mp4", "dark.mp4"):
        extract_tubes(videos / v, out_dir, cfg, detector=BrightDetector())
    index, n = rebuild_index(out_dir)
    assert n == 1
    from_index = collect_work([index])
    assert [(it.filename, len(it.tubes)) for it in from_index] == [("face.mp4", 1)]
    from_dir = collect_work([out_dir])  # the folder: manifests, so the face-less video is there too
    assert sorted((it.filename, len(it.tubes)) for it in from_dir) == [("dark.mp4", 0), ("face.mp4", 1)]
    run(from_dir, tmp_path / "a.csv")
    run(collect_work([videos / "face.mp4"]), tmp_path / "b.csv")
    a = {x["filename"]: x for x in rows(tmp_path / "a.csv")}
    b = rows(tmp_path / "b.csv")[0]
    assert a["dark.mp4"]["status"] == "no_face"
    assert float(a["face.mp4"]["label"]) == pytest.approx(float(b["label"]), abs=0.03)  # codec loss only


def test_resume_skips_done_videos_and_drops_a_partial_row(tmp_path: Path):
    out = tmp_path / "p.csv"
    tube = np.full((8, 32, 32, 3), 200, np.uint8)
    items = [WorkItem(f"v{i}.mp4", f"v{i}.mp4") for i in range(4)]
    calls: list[str] = []

    def load(it: WorkItem) -> Loaded:
        calls.append(it.filename)
        return Loaded(it, tubes=[tube])

    run(items[:2], out, load)
    with open(out, "a") as f:  # a run killed in the middle of writing v2's row
        f.write("v2.mp4,0.9")
    calls.clear()
    with PredictionsWriter(out) as w:
        assert w.dropped_partial and set(w.done) == {"v0.mp4", "v1.mp4"}
        summary = run_predict(items, predictor(), w, load, progress=False)
    assert calls == ["v2.mp4", "v3.mp4"] and summary.skipped == 2
    assert [x["filename"] for x in rows(out)] == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    read_predictions(out)  # well-formed

    # a row edited by hand into nonsense is refused on resume, not kept and appended to
    text = out.read_text().splitlines()
    out.write_text("\n".join(text[:2] + ["v1.mp4,notnum" + text[2][text[2].index(",", 7):]] + text[3:]) + "\n")
    with pytest.raises(ConfigError, match=r"p.csv:3: label: 'notnum' is not a number; fix or remove the row"):
        PredictionsWriter(out)


def test_retry_errors_and_overwrite(tmp_path: Path):
    out = tmp_path / "p.csv"
    items = [WorkItem("a.mp4", "a.mp4"), WorkItem("b.mp4", "b.mp4")]
    tube = np.full((8, 32, 32, 3), 200, np.uint8)
    run(items, out, lambda it: Loaded(it, error="decode failed") if it.filename == "b.mp4" else Loaded(it, [tube]))
    assert [x["status"] for x in rows(out)] == ["ok", "error"]
    with PredictionsWriter(out) as w:  # default resume: the error row counts as done
        assert set(w.done) == {"a.mp4", "b.mp4"}
    with PredictionsWriter(out, retry_errors=True) as w:
        assert set(w.done) == {"a.mp4"}
        run_predict(items, predictor(), w, lambda it: Loaded(it, [tube]), progress=False)
    assert [(x["filename"], x["status"]) for x in rows(out)] == [("a.mp4", "ok"), ("b.mp4", "ok")]
    with PredictionsWriter(out, overwrite=True) as w:
        assert w.done == {}
    assert rows(out) == []


def test_resume_refuses_a_different_schema(tmp_path: Path):
    out = tmp_path / "p.csv"
    PredictionsWriter(out).close()
    with pytest.raises(ConfigError, match="--overwrite"):
        PredictionsWriter(out, ["edge"])


def test_model_failure_gives_error_row_and_run_continues(tmp_path: Path):
    class Fragile(nn.Module):
        def forward(self, x):
            if x[:, :, :, 0, 0].mean() > 250:
                raise RuntimeError("CUDA out of memory (simulated)\nsecond line")
            return torch.zeros(x.shape[0], 2)

    m = Member("fragile", Fragile(), lambda x: x.float(), True, 8, 32, 1.0)
    items = [WorkItem("bad.mp4", "bad.mp4"), WorkItem("good.mp4", "good.mp4")]
    tubes = {"bad.mp4": np.full((8, 32, 32, 3), 255, np.uint8), "good.mp4": np.zeros((8, 32, 32, 3), np.uint8)}
    out = tmp_path / "p.csv"
    summary = run(items, out, lambda it: Loaded(it, [tubes[it.filename]]), predictor=EnsemblePredictor([m]))
    r = rows(out)
    assert r[0]["status"] == "error" and r[0]["label"] == "0.500000"
    assert r[0]["error"] == "models: RuntimeError: CUDA out of memory (simulated) second line"
    assert r[1]["status"] == "ok" and float(r[1]["label"]) == pytest.approx(0.5)
    assert summary.counts["error"] == 1 and summary.errors[0][0] == "bad.mp4"


def test_collect_work_errors(tmp_path: Path, videos: Path):
    with pytest.raises(ConfigError, match="no such file"):
        collect_work([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no videos"):
        collect_work([tmp_path / "empty"])
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "face.mp4", 100)
    with pytest.raises(ConfigError, match="share the file name face.mp4"):
        collect_work([videos, other])
    lst = tmp_path / "list.txt"
    lst.write_text(f"{videos / 'face.mp4'}\n{tmp_path / 'gone.mp4'}\n")
    items = collect_work([lst])
    assert [(i.filename, bool(i.error)) for i in items] == [("face.mp4", False), ("gone.mp4", True)]


def test_clip_and_prior_are_applied(tmp_path: Path):
    out = tmp_path / "p.csv"
    bright = np.full((8, 32, 32, 3), 255, np.uint8)
    items = [WorkItem("a.mp4", "a.mp4"), WorkItem("b.mp4", "b.mp4")]
    run(items, out, lambda it: Loaded(it, [bright]) if it.filename == "a.mp4" else Loaded(it, note="no face"),
        predictor=predictor(clip=(0.1, 0.9)), prior=0.4, columns=["edge"])
    r = rows(out)
    assert float(r[0]["label"]) == 0.9 and float(r[0]["edge"]) == pytest.approx(1 / (1 + math.exp(-3)), abs=1e-5)
    assert float(r[1]["label"]) == 0.4 and r[1]["status"] == "no_face"


def test_prefetcher_keeps_order_and_reraises_loader_bugs():
    from infer.predict import Prefetcher

    items = [WorkItem(f"v{i}.mp4", f"v{i}.mp4") for i in range(5)]
    got = [x.item.filename for x in Prefetcher(items, lambda it: Loaded(it), depth=1)]
    assert got == [it.filename for it in items]

    def buggy(it: WorkItem) -> Loaded:
        if it.filename == "v2.mp4":
            raise KeyError("bug")
        return Loaded(it)

    seen = []
    with pytest.raises(KeyError):
        for x in Prefetcher(items, buggy, depth=1):
            seen.append(x.item.filename)
    assert seen == ["v0.mp4", "v1.mp4"]
