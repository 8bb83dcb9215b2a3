"""Dataset readers (facetubes.datasets) on folder trees generated in each layout, with the label-file quirks, and
the FF++/DFDC readers on real label files and a real FF++ video (tests/data/datasets)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facetubes.cli import main
from facetubes.datasets import describe, identity_groups, list_readers, load, read_root
from facetubes.errors import ConfigError
from facetubes.manifest import find_label, load_labels, read_index

DATA = Path(__file__).resolve().parent / "data" / "datasets"


def touch(root: Path, *paths: str) -> None:
    """Placeholder video files (readers only need the paths)."""
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")


def ffpp_tree(root: Path, *, splits: bool = True) -> Path:
    for c in ("c23", "c40"):
        touch(root, *(f"original_sequences/youtube/{c}/videos/{i}.mp4" for i in ("000", "001", "002", "003")))
        for m in ("Deepfakes", "Face2Face"):
            touch(root, *(f"manipulated_sequences/{m}/{c}/videos/{n}.mp4"
                          for n in ("000_001", "001_000", "002_003", "003_002")))
    touch(root, "manipulated_sequences/FaceShifter/c23/videos/000_001.mp4",
          "original_sequences/actors/c23/videos/01__walking_down_street.mp4",
          "original_sequences/actors/c23/videos/02__talking.mp4",
          "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__YVGY8LOK.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/README.mp4")  # not <target>_<source>: unlabelled
    if splits:
        (root / "splits").mkdir()
        (root / "splits" / "train.json").write_text(json.dumps([["000", "001"]]))
        (root / "splits" / "val.json").write_text(json.dumps([["002", "003"]]))
        (root / "splits" / "test.json").write_text("[]")
    return root


def test_registry_lists_every_layout_and_what_it_reads(capsys):
    names = [r.name for r in list_readers()]
    assert names == ["ffpp", "celebdf", "deeperforensics", "fakeavceleb", "dfdc-preview", "dfdc-test", "dfdc"]
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == describe() and all(n in out for n in names) and "1 = real" in out


def test_identity_groups_are_connected_components():
    groups = identity_groups([("a",), ("b", "a"), ("c",), ("d", "c"), ("e", "d"), ("f",)])
    assert groups == ["a", "a", "c", "c", "c", "f"]
    with pytest.raises(ValueError):
        identity_groups([()])


def test_ffpp_labels_groups_official_split_methods_and_compressions(tmp_path):
    root = ffpp_tree(tmp_path / "ffpp")
    ls = load(root)
    lab = ls.labels
    fake = lab["manipulated_sequences/Deepfakes/c40/videos/001_000.mp4"]
    assert (fake.label, fake.group, fake.split, fake.dataset, fake.method, fake.compression) == \
        (1, "ffpp:000", "train", "ffpp", "Deepfakes", "c40")
    real = lab["original_sequences/youtube/c23/videos/003.mp4"]
    assert (real.label, real.group, real.split, real.method) == (0, "ffpp:002", "val", "")
    # a fake A_B is grouped with both originals A and B
    assert lab["youtube-c23-000"].group == lab["youtube-c23-001"].group == lab["FaceShifter-c23-000_001"].group
    assert lab["FaceShifter-c23-000_001"].method == "FaceShifter"
    # the original of A_B is the target A's video of the same compression (for --boxes-from-original)
    assert fake.original == "youtube-c40-001" and lab["FaceShifter-c23-000_001"].original == "youtube-c23-000"
    assert real.original == "" and lab["DeepFakeDetection-c23-01_02__walking__YVGY8LOK"].original == ""
    # DFD: actors are other people than the youtube ids, and have no official split
    dfd = lab["DeepFakeDetection-c23-01_02__walking__YVGY8LOK"]
    assert (dfd.label, dfd.group, dfd.split) == (1, "dfd:01", "")
    assert lab["actors-c23-02__talking"].group == "dfd:01" and lab["actors-c23-02__talking"].label == 0
    # stems collide (c23/c40, every method): names are unique, stems are no key
    assert "000_001" not in lab and "Deepfakes-c40-000_001" in lab and "Face2Face-c23-000_001" in lab
    assert len(ls.names) == len([e for r in ls.results for e in r.entries]) == 8 + 16 + 1 + 3
    assert ls.unlabelled() == ["manipulated_sequences/Deepfakes/c23/videos/README.mp4"]
    # an index row finds its label by the tail of its source path, even under another video name
    src = f"/mnt/x/{root.name}/manipulated_sequences/Face2Face/c23/videos/002_003.mp4"
    assert find_label(lab, "002_003", src).method == "Face2Face"


def test_datasets_command_counts_what_a_root_holds(tmp_path, capsys):
    root = ffpp_tree(tmp_path / "ffpp")
    assert main(["datasets", str(root)]) == 0
    cap = capsys.readouterr()
    rows = [line.split() for line in cap.out.splitlines()]
    assert ["ffpp", "Deepfakes", "train", "0", "4"] in rows and ["ffpp", "(real)", "val", "4", "0"] in rows
    assert ["ffpp", "DeepFakeDetection", "-", "0", "1"] in rows and ["ffpp", "(real)", "-", "2", "0"] in rows
    assert cap.out.splitlines()[-1] == "28 videos in 3 groups"  # pairs 000-001, 002-003, DFD actors
    assert "1 videos found with no label: manipulated_sequences/Deepfakes/c23/videos/README.mp4" in cap.err
    assert main(["datasets", "--dataset", "ffpp"]) == 2


def test_ffpp_official_split_keeps_every_identity_on_one_side(tmp_path):
    ls = load(ffpp_tree(tmp_path / "ffpp"))
    side: dict[str, set[str]] = {}
    for r in ls.results:
        for e in r.entries:
            for i in e.ids:
                side.setdefault(i, set()).add(e.split)
    assert side["ffpp:000"] == {"train"} and side["ffpp:003"] == {"val"} and side["dfd:01"] == {""}


def test_bad_ffpp_split_file_is_one_line(tmp_path):
    root = ffpp_tree(tmp_path / "ffpp")
    (root / "splits" / "val.json").write_text("{not json")
    with pytest.raises(ConfigError, match="val.json: unreadable FF\\+\\+ split file"):
        load(root)


def test_celebdf_test_list_means_one_is_real(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id16_0001.mp4", "Celeb-real/id3_0000.mp4",
          "YouTube-real/00000.mp4", "Celeb-synthesis/id0_id16_0000.mp4", "Celeb-synthesis/id3_id4_0002.mp4")
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id3_id4_0002.mp4\n1 Celeb-real/id3_0000.mp4\n\n"
        "0 Celeb-synthesis/id9_id8_0009.mp4\n")  # the last one is absent
    ls = load(root)
    lab = ls.labels
    assert lab["Celeb-real/id3_0000.mp4"].label == 0 and lab["Celeb-real/id3_0000.mp4"].split == "test"
    assert lab["id3_id4_0002"].label == 1 and lab["id3_id4_0002"].split == "test"
    assert lab["id0_id16_0000"].split == "train" and lab["id0_id16_0000"].group == "celebdf:id0"
    assert lab["id16_0001"].group == "celebdf:id0"           # real id16 joins the fake id0_id16
    assert lab["youtube-00000"].group == "celebdf-youtube:00000" and lab["youtube-00000"].label == 0
    assert ls.absent() == ["Celeb-synthesis/id9_id8_0009.mp4"]
    # the list file itself stands for its folder
    assert load(root / "List_of_testing_videos.txt").labels == lab


def test_celebdf_list_contradicting_its_folder_is_an_error(tmp_path):
    root = tmp_path / "celeb"
    touch(root, "Celeb-synthesis/id0_id1_0000.mp4")
    (root / "List_of_testing_videos.txt").write_text("1 Celeb-synthesis/id0_id1_0000.mp4\n")  # 1 = real: wrong
    with pytest.raises(ConfigError, match="labelled real, but its folder says otherwise"):
        load(root)
    (root / "List_of_testing_videos.txt").write_text("real Celeb-synthesis/id0_id1_0000.mp4\n")
    with pytest.raises(ConfigError, match=":1: expected '<1 real"):
        load(root)


def test_dfdc_parts_public_test_and_preview(tmp_path):
    parts = tmp_path / "dfdc"
    for part, meta in (("dfdc_train_part_0", {"aaa.mp4": {"label": "REAL", "split": "train"},
                                              "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"}}),
                       ("dfdc_train_part_1", {"ccc.mp4": {"label": "FAKE", "split": "train",
                                                          "original": "aaa.mp4"}})):
        (parts / part).mkdir(parents=True)
        (parts / part / "metadata.json").write_text(json.dumps(meta))
    touch(parts, "dfdc_train_part_0/aaa.mp4", "dfdc_train_part_0/bbb.mp4", "dfdc_train_part_0/zzz.mp4")
    ls = load(parts)
    assert ls.labels["ccc"].group == ls.labels["bbb"].group == "aaa"  # fakes of one original, across parts
    assert ls.labels["ccc"].original == ls.labels["bbb"].original == "aaa" and ls.labels["aaa"].original == ""
    assert ls.labels["ccc"].folder == "dfdc_train_part_1" and ls.labels["ccc"].dataset == "dfdc"
    assert ls.absent() == ["dfdc_train_part_1/ccc.mp4"] and ls.unlabelled() == ["dfdc_train_part_0/zzz.mp4"]
    assert "1 videos named by the labels but absent: dfdc_train_part_1/ccc.mp4" in ls.summary()

    test = tmp_path / "test"
    touch(test, "videos/t1.mp4", "videos/t2.mp4")
    (test / "labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    ls = load(test)
    assert read_root(test).reader == "dfdc-test"
    assert (ls.labels["t1"].label, ls.labels["t1"].split) == (1, "test") and ls.labels["t2"].label == 0
    assert ls.labels["videos/t1.mp4"].folder == "videos"

    preview = tmp_path / "preview"
    touch(preview, "original_videos/643049/643049_A_001.mp4", "method_A/643049/643049_B1/1971512_B_001.mp4")
    (preview / "dataset.json").write_text(json.dumps({
        "original_videos/643049/643049_A_001.mp4": {"label": "real", "set": "train"},
        "method_A/643049/643049_B1/1971512_B_001.mp4": {"label": "fake", "set": "test"}}))
    lab = load(preview).labels
    fake = lab["method_A/643049/643049_B1/1971512_B_001.mp4"]
    assert (fake.label, fake.split, fake.method, fake.group) == (1, "test", "method_A", "dfdc-preview:643049")
    assert lab["643049_A_001"].group == fake.group and lab["643049_A_001"].split == "train"


def test_deeperforensics_says_its_reals_are_missing_unless_ffpp_is_loaded(tmp_path):
    root = tmp_path / "DeeperForensics-1.0"
    touch(root, "manipulated_videos/end_to_end/000_M101.mp4", "manipulated_videos/end_to_end_level_1/000_M101.mp4",
          "manipulated_videos/end_to_end/001_W102.mp4", "source_videos/M101/x.mp4")
    (root / "lists" / "splits").mkdir(parents=True)
    (root / "lists" / "splits" / "test.txt").write_text("000_M101.mp4\n")
    (root / "lists" / "splits" / "train.txt").write_text("end_to_end/001_W102\n")
    ls = load(root)
    a = ls.labels["manipulated_videos/end_to_end_level_1/000_M101.mp4"]
    assert (a.label, a.split, a.method, a.group, a.dataset) == (1, "test", "end_to_end_level_1", "dfr:M101",
                                                                 "deeperforensics")
    assert ls.labels["end_to_end-001_W102"].split == "train"
    assert "their real counterparts are the FF++ c23 youtube targets" in ls.summary()
    # with FF++: the note goes, and the target's FF++ original joins the fake's group
    ff = tmp_path / "ffpp"
    touch(ff, "original_sequences/youtube/c23/videos/000.mp4")
    both = load([root, ff])
    assert "real counterparts" not in both.summary()
    assert both.labels["youtube-c23-000"].group == both.labels["end_to_end-000_M101"].group


def test_fakeavceleb_audio_only_fakes_are_real_for_a_visual_model(tmp_path):
    root = tmp_path / "FakeAVCeleb"
    rows = [("id00076", "-", "-", "real", "A", "RealVideo-RealAudio", "African", "men",
             "FakeAVCeleb/RealVideo-RealAudio/African/men/id00076", "00109.mp4"),
            ("id00076", "-", "-", "rtvc", "B", "RealVideo-FakeAudio", "African", "men",
             "FakeAVCeleb/RealVideo-FakeAudio/African/men/id00076", "00109_fake.mp4"),
            ("id00076", "id00166", "-", "faceswap", "C", "FakeVideo-RealAudio", "African", "men",
             "FakeAVCeleb/FakeVideo-RealAudio/African/men/id00076", "00109_2.mp4"),
            ("id00166", "-", "-", "real", "A", "RealVideo-RealAudio", "African", "men",
             "FakeAVCeleb/RealVideo-RealAudio/African/men/id00166", "00109.mp4")]
    for r in rows:
        touch(root, f"{r[8].split('/', 1)[1]}/{r[9]}")
    (root / "meta_data.csv").write_text("source,target1,target2,method,category,type,race,gender,path,\n"
                                        + "".join(",".join(r) + "\n" for r in rows))
    lab = load(root).labels
    audio = lab["RealVideo-FakeAudio/African/men/id00076/00109_fake.mp4"]
    assert (audio.label, audio.method, audio.folder) == (0, "", "RealVideo-FakeAudio")
    swap = lab["FakeVideo-RealAudio/African/men/id00076/00109_2.mp4"]
    assert (swap.label, swap.method) == (1, "faceswap")
    # the two 00109.mp4 of different people do not collide, and the swap joins both people
    a = lab["RealVideo-RealAudio/African/men/id00076/00109.mp4"]
    b = lab["RealVideo-RealAudio/African/men/id00166/00109.mp4"]
    assert a.group == b.group == swap.group == "fakeavceleb:id00076" and "00109" not in lab


def test_forced_dataset_unknown_layout_and_missing_root_are_one_line(tmp_path):
    touch(tmp_path / "plain", "a.mp4")
    with pytest.raises(ConfigError, match="no known dataset layout") as e:
        load(tmp_path / "plain")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        load(tmp_path / "plain", "nope")
    with pytest.raises(ConfigError, match="found no labelled video"):
        load(tmp_path / "plain", "ffpp")
    # a DFDC part folder that another layout would not claim can be forced too
    ffpp_tree(tmp_path / "ff", splits=False)
    assert read_root(tmp_path / "ff", "ffpp").notes == ["no splits/*.json: no official split"]


def test_real_dfdc_metadata_names_absent_videos(tmp_path):
    root = tmp_path / "dfdc"
    shutil.copytree(DATA / "dfdc", root)
    touch(root, "dfdc_train_part_0/brtujopkby.mp4", "dfdc_train_part_10/widuwuoiur.mp4",
          "dfdc_train_part_10/yhffcuhhjy.mp4", "samples/lynaeydofd.mp4")
    ls = load(root)
    assert ls.labels["brtujopkby"] == ls.labels["dfdc_train_part_0/brtujopkby.mp4"]
    assert (ls.labels["brtujopkby"].label, ls.labels["brtujopkby"].group) == (1, "gnmmhlbzge")
    assert ls.labels["widuwuoiur"].folder == "dfdc_train_part_10"
    assert sorted(ls.absent()) == ["dfdc_train_part_0/awnfpubqmo.mp4", "dfdc_train_part_1/vtfpbtmgfh.mp4",
                                   "dfdc_train_part_1/zvqinhzeah.mp4"]
    assert ls.unlabelled() == ["samples/lynaeydofd.mp4"]
    assert load_labels(root)["yhffcuhhjy"].group == "wdpsifpppf"  # the old entry point reads the same
    assert load_labels(tmp_path)["yhffcuhhjy"].folder == "dfdc_train_part_10"  # parts two levels down


def test_real_ffpp_video_through_extract_and_index(tmp_path, capsys):
    """A real FF++ c23 original, extracted in the dataset's own layout with --labels ROOT: the output folder is
    the unique name and the index carries label, group, dataset, method and compression."""
    root = tmp_path / "ffpp"
    video = root / "original_sequences/youtube/c23/videos/004.mp4"
    video.parent.mkdir(parents=True)
    shutil.copy(DATA / "ffpp" / "004.mp4", video)
    touch(root, "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4")  # a placeholder: labels only
    out = tmp_path / "out"
    rc = main(["extract", str(video), "--out", str(out), "--labels", str(root), "--first-frames", "21",
               "--min-frames", "5", "-q", "--size", "64", "--detect-long-side", "320"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "labels: " in err and "(ffpp, 2 videos)" in err
    rows = read_index(out)
    assert rows and {r.video for r in rows} == {"youtube-c23-004"}
    r = rows[0]
    assert (r.label, r.group, r.dataset, r.method, r.compression, r.folder) == \
        (0, "ffpp:004", "ffpp", "", "c23", "original_sequences/youtube/c23")
    assert (out / "youtube-c23-004" / "tubes.json").is_file()
    # rebuilding the index with labels again keeps the same rows; without labels it keeps them too
    assert main(["index", str(out)]) == 0
    assert [(x.tube, x.label, x.method, x.compression) for x in read_index(out)] == \
        [(x.tube, x.label, x.method, x.compression) for x in rows]


def test_index_cli_names_unlabelled_videos_and_needs_labels_for_dataset(tmp_path, capsys):
    out = tmp_path / "out"
    for stem in ("aaa", "bbb"):
        (out / stem).mkdir(parents=True)
        (out / stem / "tubes.json").write_text(json.dumps({
            "video": stem, "source": f"/v/dfdc_train_part_0/{stem}.mp4", "fps": 25.0, "config": {"size": 64},
            "tubes": [{"tube": f"{stem}_t0", "file": f"{stem}_t0.mp4", "track": 0, "start_frame": 0,
                       "stop_frame": 8, "n_frames": 8, "mean_prob": 0.9}]}))
    root = tmp_path / "dfdc" / "dfdc_train_part_0"
    root.mkdir(parents=True)
    (root / "metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "REAL"}}))
    assert main(["index", str(out), "--labels", str(tmp_path / "dfdc")]) == 0
    err = capsys.readouterr().err
    assert "index: 1 videos have no label: bbb" in err and "1 videos named by the labels but absent" in err
    assert [(r.video, r.label, r.dataset) for r in read_index(out)] == [("aaa", 0, "dfdc"), ("bbb", None, "")]
    assert main(["index", str(out), "--dataset", "ffpp"]) == 2
    assert "--dataset NAME forces the layout of --labels ROOT" in capsys.readouterr().err
