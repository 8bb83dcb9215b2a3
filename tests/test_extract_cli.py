"""`facetubes extract` as a batch job: bad inputs, resume, shards, labels, workers, a SIGKILL mid-way."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facetubes.batch import collect_inputs, in_shard, parse_shard
from facetubes.cli import main
from facetubes.errors import ConfigError
from facetubes.manifest import read_index
from facetubes.synthetic import BAD_INPUT_REASONS, make_bad_inputs, make_video

FAST = ["--min-frames", "32", "-q"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    for i in range(3):
        make_video(d / f"vid{i}.mp4", "one", width=160, height=120, n_frames=48, seed=i)
    return d


def _errors(out: Path) -> dict[str, str]:
    lines = (out / "errors.jsonl").read_text().splitlines() if (out / "errors.jsonl").exists() else []
    return {Path(e["source"]).stem: e["error"] for e in map(json.loads, lines)}


def test_bad_inputs_are_recorded_one_line_each_and_never_stop_the_batch(tmp_path, videos, capsys):
    bad = make_bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    code = main(["extract", str(tmp_path / "bad"), str(videos / "vid0.mp4"), str(tmp_path / "missing.mp4"),
                 "--out", str(out), *FAST])
    assert code == 1  # some inputs failed
    errors = _errors(out)
    for name, reason in BAD_INPUT_REASONS.items():
        if reason is None:
            assert name not in errors
        else:
            assert reason in errors[name] and "\n" not in errors[name] and "Traceback" not in errors[name]
    assert "no such file" in errors["missing"]
    # the valid inputs were processed: a tube for the good video, zero-tube manifests for the others
    assert json.loads((out / "short" / "tubes.json").read_text())["status"] == "too_short"
    assert json.loads((out / "no_faces" / "tubes.json").read_text())["status"] == "no_face"
    assert [r.video for r in read_index(out)] == ["vid0"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "failed" in err
    assert set(bad) == set(BAD_INPUT_REASONS)


def test_unwritable_output_is_a_one_line_error(tmp_path, videos, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["extract", str(videos / "vid0.mp4"), "--out", str(blocker / "out"), *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "not writable" in err and len(err.splitlines()) == 1


def test_rerun_skips_finished_videos_and_overwrite_redoes_them(tmp_path, videos, capsys, caplog):
    out = tmp_path / "out"
    assert main(["extract", str(videos), "--out", str(out), *FAST]) == 0
    first = {p: p.stat().st_mtime_ns for p in out.glob("*/tubes.json")}
    assert len(first) == 3 and len(read_index(out)) == 3
    capsys.readouterr()
    assert main(["extract", str(videos), "--out", str(out), *FAST]) == 0
    assert "3 already done" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/tubes.json")} == first
    assert main(["extract", str(videos / "vid1.mp4"), "--out", str(out), "--overwrite", *FAST]) == 0
    assert (out / "vid1" / "tubes.json").stat().st_mtime_ns != first[out / "vid1" / "tubes.json"]

    # a damaged manifest is named when the index is rebuilt, and its video is extracted again on a rerun
    (out / "vid2" / "tubes.json").write_text('{"broken')
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="facetubes"):
        assert main(["index", str(out)]) == 0
    assert "vid2/tubes.json: unreadable manifest" in caplog.text
    assert main(["extract", str(videos), "--out", str(out), *FAST]) == 0
    assert "2 already done" in capsys.readouterr().err
    assert len(read_index(out)) == 3 and json.loads((out / "vid2" / "tubes.json").read_text())["tubes"]


def test_shards_partition_the_inputs_deterministically(tmp_path, videos):
    stems = [f"video_{i:04d}" for i in range(400)]
    shards = [{s for s in stems if in_shard(s, (k, 4))} for k in range(4)]
    assert set().union(*shards) == set(stems)
    assert sum(len(s) for s in shards) == len(stems)  # disjoint
    assert all(60 < len(s) < 140 for s in shards)  # roughly balanced
    with pytest.raises(ConfigError):
        parse_shard("4/4")
    with pytest.raises(ConfigError):
        parse_shard("one/two")
    outs = []
    for k in range(2):
        out = tmp_path / "out"
        assert main(["extract", str(videos), "--out", str(out), "--shard", f"{k}/2", *FAST]) == 0
        outs.append({p.parent.name for p in out.glob("*/tubes.json")})
    assert outs[1] >= outs[0] and len(outs[1]) == 3  # the second shard added the rest into the same folder


def test_list_file_and_labels_fill_the_index(tmp_path, videos):
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"# videos\n{videos / 'vid0.mp4'}\n{videos / 'vid1.mp4'}\n")
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"vid0.mp4": {"label": "REAL"}, "vid1.mp4": {"label": "FAKE", "original": "vid0.mp4"}}))
    out = tmp_path / "out"
    assert main(["extract", str(lst), "--out", str(out), "--labels", str(meta), *FAST]) == 0
    rows = {r.video: r for r in read_index(out)}
    assert (rows["vid0"].label, rows["vid1"].label) == (0, 1)
    assert rows["vid1"].group == "vid0"
    videos_found, problems = collect_inputs([lst])
    assert len(videos_found) == 2 and not problems


def test_workers_in_parallel_give_the_same_tubes(tmp_path, videos):
    rows = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert main(["extract", str(videos), "--out", str(out), "--workers", str(workers), *FAST]) == 0
        rows[workers] = sorted((r.tube, r.start_frame, r.stop_frame, r.n_frames) for r in read_index(out))
    assert sorted({t[0].split("_t")[0] for t in rows[2]}) == ["vid0", "vid1", "vid2"]
    assert rows[1] == rows[2]
    # each worker decodes with its share of the cores, recorded in the manifest's config
    config = json.loads((tmp_path / "out2" / "vid0" / "tubes.json").read_text())["config"]
    assert config["decode_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_sigkill_mid_batch_leaves_no_partial_files_and_rerun_completes(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    for i in range(4):
        make_video(src / f"long{i}.mp4", "two", width=192, height=144, n_frames=100, seed=10 + i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facetubes", "extract", str(src), "--out", str(out), "--min-frames", "32", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/tubes.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.parent.name for p in out.glob("*/tubes.json")}
    assert 1 <= len(done) < 4, "the kill should land mid-batch"
    # visible output is only finished work: every video folder is complete, every tube listed and decodable
    for d in out.iterdir():
        if d.name.startswith("."):
            continue
        if d.is_dir():
            manifest = json.loads((d / "tubes.json").read_text())
            assert sorted(p.name for p in d.glob("*.mp4")) == sorted(t["file"] for t in manifest["tubes"])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{len(done)} already done" in r.stderr
    assert {p.parent.name for p in out.glob("*/tubes.json")} == {f"long{i}" for i in range(4)}
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))]  # leftovers cleaned


def test_unusable_device_fails_once_before_any_video(tmp_path, videos, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["extract", str(videos), "--out", str(tmp_path / "out"), "--device", "cuda", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: device 'cuda' requested but CUDA is not available on this machine"
    assert not (tmp_path / "out").exists()


BAD_FLAGS = [
    (["--margin", "nan"], "margin must be a finite number"),
    (["--min-face", "nan"], "min_face must be a finite number"),
    (["--follow-sigma", "-1"], "follow_sigma must be >= 0"),
    (["--size", "100000"], "size must be an even number from 16 to 2048"),
    (["--preset", "bogus"], "preset must be one of ultrafast,"),
    (["--pix-fmt", "bogus"], "pix_fmt must be one of those the encoder takes"),
    (["--decode-threads", "100000"], "decode_threads must be from 0 to 256"),
    (["--workers", "0"], "--workers must be >= 1"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[f[0][0] for f in BAD_FLAGS])
def test_bad_values_fail_once_before_any_video(tmp_path, videos, capsys, flags, message):
    code = main(["extract", str(videos), "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_sample_checks_its_arguments_and_never_overwrites_a_data_set(tmp_path, capsys):
    for flags, message in [(["--real", "-1"], "--real and --fake must be >= 0"),
                           (["--fake", "2"], "--fake needs --real >= 1"),
                           (["--real", "1", "--val-fraction", "2"], "--val-fraction must lie in [0, 1)"),
                           (["--width", "100000"], "16 to 4096 px")]:
        assert main(["sample", str(tmp_path / "s"), *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    small = ["--width", "64", "--height", "48", "--frames", "4", "--scenario", "one"]
    assert main(["sample", str(tmp_path / "s"), "--real", "1", *small]) == 0
    before = (tmp_path / "s" / "metadata.json").read_text()
    assert main(["sample", str(tmp_path / "s"), "--real", "2", *small]) == 2
    assert "already holds a sample data set" in capsys.readouterr().err
    assert (tmp_path / "s" / "metadata.json").read_text() == before


def test_usage_errors_are_one_line_not_the_usage_block(capsys):
    from train.cli import main as train_main

    for run, argv, message in [(main, ["extract", "v", "--out", "o", "--crop", "x"],
                                "error: argument --crop: invalid choice: 'x'"),
                               (lambda a: train_main(a, task="3d"), ["--bogus"],
                                "error: unrecognized arguments: --bogus (see train3d --help)")]:
        with pytest.raises(SystemExit) as exit_:
            run(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err
