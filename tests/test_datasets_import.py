"""facetubes index --import: the 5th place's MP4 tubes (labels from a small CSV) and frame folders (WildDeepfake
layout, another benchmark's frames/<video>/ layout), in place or encoded, and a training epoch on each."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_fixtures import tube_frames, write_tube

from facetubes.cli import main
from facetubes.datasets.imported import find_items, import_tubes, natural_key, read_frame_folder
from facetubes.errors import ConfigError, VideoError
from facetubes.manifest import read_index
from train.cli import main as train_main

MEDICS = Path(__file__).resolve().parent / "data" / "datasets" / "medics"
TRAIN = ["--clip-len", "4", "--crop-size", "16", "--batch-size", "4", "--epochs", "1", "--num-workers", "0",
         "--no-progress", "--device", "cpu", "--save-every-minutes", "0", "--val-fraction", "0.34"]


def write_frames(folder: Path, frames: np.ndarray, ext: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i}{ext}")  # 0.png .. 10.png: natural order matters
    return folder


def test_natural_order_and_frame_folder_reading(tmp_path):
    assert sorted(["10.png", "2.png", "1.png"], key=natural_key) == ["1.png", "2.png", "10.png"]
    frames = tube_frames(12, 16, fake=False, seed=0)
    d = write_frames(tmp_path / "v", frames)
    Image.fromarray(tube_frames(1, 24, fake=True, seed=3)[0]).save(d / "12.png")  # another size: resized
    got = read_frame_folder(d, [11, 2, 2, 12])
    assert got.shape == (4, 16, 16, 3) and got.dtype == np.uint8
    assert np.array_equal(got[0], frames[11]) and np.array_equal(got[1], frames[2])  # PNG is lossless
    with pytest.raises(VideoError, match="frame 13 requested, the folder holds 13 images"):
        read_frame_folder(d, [13])
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        read_frame_folder(tmp_path / "empty", [0])


def test_medics_tubes_import_with_csv_labels_and_train_an_epoch(tmp_path, capsys):
    src = tmp_path / "tubes"
    shutil.copytree(MEDICS, src)
    # two more (synthetic) real videos in the same naming, so that both split sides hold both classes
    for k in range(2):
        write_tube(src / f"synthreal{k}.mp4_0_0.mp4", tube_frames(8, 32, fake=False, seed=k))
    (tmp_path / "labels.csv").write_text("filename,label\naayrffkzxn.mp4,REAL\naejvkfbtxs.mp4,FAKE\n"
                                         "acagallncj.mp4,FAKE\nsynthreal0.mp4,0\nsynthreal1.mp4,0\n"
                                         "notthere.mp4,1\n")
    out = tmp_path / "out"
    assert main(["index", str(out), "--import", str(src), "--labels", str(tmp_path / "labels.csv")]) == 0
    err = capsys.readouterr().err
    assert "import: 6 tubes of 5 videos" in err
    rows = {r.tube: r for r in read_index(out)}
    assert set(rows) == {"aayrffkzxn_t0", "aejvkfbtxs_t0", "aejvkfbtxs_t1", "acagallncj_t0", "synthreal0_t0",
                         "synthreal1_t0"}
    r = rows["aejvkfbtxs_t1"]  # <video>.mp4_<chunk>_<face>: face 1 of chunk 0
    assert (r.video, r.track, r.part, r.label, r.size) == ("aejvkfbtxs", 1, 0, 1, 256)
    assert r.path == (src / "aejvkfbtxs.mp4_0_1.mp4").resolve() and r.n_frames == 49
    assert rows["aayrffkzxn_t0"].label == 0 and rows["aayrffkzxn_t0"].n_frames == 149
    # the index is rebuilt identically from the tubes.json files the import wrote
    assert main(["index", str(out)]) == 0
    assert {t: (x.label, x.path) for t, x in ((x.tube, x) for x in read_index(out))} == \
        {t: (x.label, x.path) for t, x in rows.items()}
    run = tmp_path / "run"
    assert train_main(["--arch", "tiny3d", "--data", str(out), "--out", str(run), *TRAIN], task="3d") == 0
    assert (run / "last.pt").is_file() or any(run.glob("*.pt"))


def test_frame_folders_import_in_place_and_encoded_and_train_an_epoch(tmp_path, capsys):
    src = tmp_path / "wild"
    for split in ("train", "test"):
        for k in range(3):
            for lab in ("real", "fake"):
                write_frames(src / f"{lab}_{split}" / str(k) / "0",
                             tube_frames(6, 16, fake=lab == "fake", seed=k + 10 * (split == "test")))
    items = find_items(src)
    assert len(items) == 12 and len({i.video for i in items}) == 12  # "0" everywhere: names made unique
    out = tmp_path / "inplace"
    s = import_tubes(src, out)
    assert s.n_videos == 12 and not s.unlabelled
    rows = read_index(out)
    assert all(r.path.is_dir() and r.n_frames == 6 and r.size == 16 for r in rows)
    by_video = {r.video: r for r in rows}
    r = by_video["fake_train-2-0"]
    assert (r.label, r.split, r.dataset, r.group, r.folder) == (1, "train", "wilddeepfake", "fake-2", "fake_train")
    run = tmp_path / "run2d"
    assert train_main(["--arch", "tiny2d", "--data", str(out), "--out", str(run), *TRAIN, "--val-frames", "3"],
                      task="2d") == 0
    split = (run / "split.csv").read_text()
    assert "real_test" not in split and "fake_test" not in split  # the test folders are never used

    enc = tmp_path / "encoded"
    import_tubes(src / "fake_train", enc, frames="encode", fps=10)
    rows = read_index(enc)
    assert len(rows) == 3 and all(r.path.suffix == ".mp4" and r.path.is_relative_to(enc.resolve()) for r in rows)
    assert all(r.fps == 10 and r.n_frames == 6 and r.label is None for r in rows)  # no real_/fake_ above: unlabelled


def test_benchmark_frames_layout_takes_labels_from_a_dataset_root(tmp_path):
    """``frames/<video>/`` folders laid out like FF++ find the labels of the FF++ root's ``videos/<video>.mp4``."""
    ff = tmp_path / "ffpp"
    for p in ("original_sequences/youtube/c23/videos/000.mp4",
              "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4"):
        (ff / p).parent.mkdir(parents=True, exist_ok=True)
        (ff / p).write_bytes(b"")
    src = tmp_path / "bench"
    write_frames(src / "original_sequences/youtube/c23/frames/000", tube_frames(4, 16, fake=False, seed=0))
    write_frames(src / "manipulated_sequences/Deepfakes/c23/frames/000_001", tube_frames(4, 16, fake=True, seed=0))
    out = tmp_path / "out"
    assert main(["index", str(out), "--import", str(src), "--labels", str(ff)]) == 0
    rows = {r.video: r for r in read_index(out)}
    assert (rows["000"].label, rows["000"].group, rows["000"].dataset) == (0, "ffpp:000", "ffpp")
    assert (rows["000_001"].label, rows["000_001"].method, rows["000_001"].group) == (1, "Deepfakes", "ffpp:000")
    # a tree of frames alone labels itself
    out2 = tmp_path / "out2"
    assert main(["index", str(out2), "--import", str(src), "--labels", str(src)]) == 0
    assert {(r.video, r.label, r.group, r.compression) for r in read_index(out2)} == \
        {("000", 0, "ffpp:000", "c23"), ("000_001", 1, "ffpp:000", "c23")}


def test_import_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ConfigError, match="no MP4 tubes and no folders of frame images"):
        import_tubes(tmp_path / "nothing", tmp_path / "o")
    assert main(["index", str(tmp_path / "o"), "--import", str(tmp_path / "missing")]) == 2
    assert "no such folder to import" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "o"), "--import", str(tmp_path / "nothing"), "--fps", "0"]) == 2
    assert "--fps must lie in" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.mp4").write_bytes(b"not a video")
    write_tube(tmp_path / "bad" / "y.mp4", tube_frames(4, 16, fake=False, seed=0))
    s = import_tubes(tmp_path / "bad", tmp_path / "o2")
    assert s.n_tubes == 1 and s.unreadable == [str((tmp_path / "bad" / "x.mp4").resolve())]
    assert not (tmp_path / "o2" / "x").exists()
    assert "1 videos could not be read" in s.text() and "1 videos have no label" in s.text()
    # a video that `facetubes extract` wrote into OUT is never overwritten by an import of the same name
    (tmp_path / "o2" / "y" / "tubes.json").write_text('{"video": "y", "source": "/v/y.mp4", "fps": 25, '
                                                      '"config": {"size": 16}, "tubes": []}')
    s = import_tubes(tmp_path / "bad", tmp_path / "o2")
    assert s.kept == ["y"] and "imported" not in (tmp_path / "o2" / "y" / "tubes.json").read_text()
