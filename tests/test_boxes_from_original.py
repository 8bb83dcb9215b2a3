"""Issue 10: ``extract --boxes-from-original``: fakes cut with their real video's crop boxes, difference masks,
and the fallback to the fake's own detection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from facetubes import ExtractConfig
from facetubes.batch import extract_batch, in_shard
from facetubes.manifest import labels_from_file, read_manifest, read_index
from facetubes.original import diff_mask, read_diff_mask, ssim_map
from facetubes.synthetic import make_video
from facetubes.video import read_frames


def test_ssim_is_one_for_equal_images_and_the_mask_marks_the_changed_region():
    rng = np.random.default_rng(0)
    a = (rng.random((96, 96)) * 255).astype(np.uint8)
    assert np.allclose(ssim_map(a, a), 1.0, atol=1e-4) and not diff_mask(a, a).any()
    b = a.copy()
    b[32:64, 32:64] = 255 - b[32:64, 32:64]  # one square changed
    m = diff_mask(b, a)
    assert m[40:56, 40:56].min() > 100  # inside: very different
    assert m[:20].max() == 0 and m[:, :20].max() == 0  # farther than the window's radius (5 px): untouched
    assert np.array_equal(m, diff_mask(a, b))  # symmetric
    # a brightness change alone lowers SSIM's luminance term only a little; noise of the same energy much more
    lighter = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    noisy = np.clip(a.astype(int) + rng.choice([-10, 10], a.shape), 0, 255).astype(np.uint8)
    assert diff_mask(lighter, a).mean() < diff_mask(noisy, a).mean()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A real synthetic video, its fake (same seed: it differs only inside the faces), a copy of the real
    labelled as a fake of it, and a fake whose original is absent; DFDC metadata.json naming them."""
    d = tmp_path_factory.mktemp("pair")
    truth = make_video(d / "real.mp4", "two", n_frames=72, seed=4)
    fake_truth = make_video(d / "fake.mp4", "two", n_frames=72, seed=4, fake=True)
    shutil.copyfile(d / "real.mp4", d / "same.mp4")
    make_video(d / "orphan.mp4", "one", n_frames=72, seed=9, fake=True)
    meta = {"real.mp4": {"label": "REAL", "split": "train"},
            "fake.mp4": {"label": "FAKE", "split": "train", "original": "real.mp4"},
            "same.mp4": {"label": "FAKE", "split": "train", "original": "real.mp4"},
            "orphan.mp4": {"label": "FAKE", "split": "train", "original": "gone.mp4"}}
    (d / "metadata.json").write_text(json.dumps(meta))
    return d, truth, fake_truth


def test_fakes_get_the_original_boxes_and_masks_and_a_missing_original_falls_back(pair, gt_detector, tmp_path):
    d, truth, _ = pair
    labels = labels_from_file(d / "metadata.json")
    assert labels["fake.mp4".split(".")[0]].original == "real" and labels["real"].original == ""
    out = tmp_path / "out"
    cfg = ExtractConfig(min_frames=32)
    inputs = [d / "same.mp4", d / "fake.mp4", d / "real.mp4"]  # fakes first: the batch does the original first
    s = extract_batch(inputs, out, cfg, labels=labels, progress=False, detector=gt_detector(truth),
                      boxes_from_original=True)
    assert s.n_failed == 0 and s.count("ok") == 3
    real, fake, same = (read_manifest(out / v) for v in ("real", "fake", "same"))
    assert "boxes_from_original" not in real and len(real["tubes"]) == 2
    for m in (fake, same):
        assert m["boxes_from_original"]["used"] and m["boxes_from_original"]["original"] == "real"
        assert m["detector"]["from_original"] == "real"
        assert [t["tube"] for t in m["tubes"]] == [t["tube"].replace("real", m["video"]) for t in real["tubes"]]
        for t, r in zip(m["tubes"], real["tubes"]):
            assert t["crop_boxes"] == r["crop_boxes"] and (t["start_frame"], t["n_frames"]) == \
                (r["start_frame"], r["n_frames"])
            mask = read_diff_mask(out / m["video"] / t["diff_file"])
            assert mask.shape == (t["n_frames"], 256, 256)
            if m is same:  # the same pixels: SSIM 1 everywhere (up to the mask video's coding)
                assert mask.max() <= 2, mask.max()
            else:  # the swapped face differs: the face (tube centre) far more than the forehead band
                centre, top = mask[:, 100:156, 100:156].mean(), mask[:, :30].mean()
                assert centre > 20 and centre > 3 * top, (centre, top)
    # pixel-aligned: the copy's tube frames are the original's (both encoded from the same crops)
    a = read_frames(out / "real" / real["tubes"][0]["file"], [0, 20, 40])
    b = read_frames(out / "same" / same["tubes"][0]["file"], [0, 20, 40])
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    # the index lists the fakes' tubes with their labels, not the masks
    rows = read_index(out / "index.csv")
    assert sorted(r.video for r in rows) == ["fake", "fake", "real", "real", "same", "same"]
    assert all(r.path.parent.name != "diff" for r in rows)


def test_a_fake_whose_original_is_missing_detects_its_own_faces_and_says_so(pair, gt_detector, tmp_path):
    d, _, _ = pair
    orphan_truth = make_video(tmp_path / "orphan.mp4", "one", n_frames=72, seed=9, fake=True)
    labels = labels_from_file(d / "metadata.json")
    s = extract_batch([tmp_path / "orphan.mp4"], tmp_path / "out", ExtractConfig(min_frames=32), labels=labels,
                      progress=False, detector=gt_detector(orphan_truth), boxes_from_original=True)
    m = read_manifest(tmp_path / "out" / "orphan")
    assert s.count("ok") == 1 and len(m["tubes"]) == 1
    rec = m["boxes_from_original"]
    assert rec["used"] is False and rec["original"] == "gone" and "no finished tubes.json" in rec["reason"]
    assert "diff_file" not in m["tubes"][0]


def test_boxes_from_original_needs_labels_and_keeps_a_fake_in_its_originals_shard(pair, gt_detector, tmp_path):
    from facetubes.errors import ConfigError

    d, truth, _ = pair
    with pytest.raises(ConfigError, match="needs --labels"):
        extract_batch([d / "real.mp4"], tmp_path / "x", boxes_from_original=True, progress=False)
    labels = labels_from_file(d / "metadata.json")
    n = next(n for n in range(2, 9) if len({in_shard(v, (0, n)) for v in ("real", "fake", "same")}) > 1)
    done = {}
    for k in range(n):  # the names alone would put the three videos in different shards of n
        s = extract_batch([d / "real.mp4", d / "fake.mp4", d / "same.mp4"], tmp_path / f"s{k}",
                          ExtractConfig(min_frames=32), shard=(k, n), labels=labels, progress=False,
                          detector=gt_detector(truth), boxes_from_original=True)
        done[k] = sorted(r.stem for r in s.results)
    assert sorted(done.values(), key=len)[-1] == ["fake", "real", "same"] and sum(map(len, done.values())) == 3
    k = next(k for k, v in done.items() if v)
    assert read_manifest(tmp_path / f"s{k}" / "fake")["boxes_from_original"]["used"]


def test_cli_boxes_from_original(pair, tmp_path):
    """Through the CLI with the real MTCNN: the real video is detected, the fake reuses its boxes."""
    import subprocess
    import sys

    d, _, _ = pair
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "facetubes", "extract", str(d / "real.mp4"), str(d / "fake.mp4"),
                        "--out", str(out), "--labels", str(d / "metadata.json"), "--boxes-from-original", "-q",
                        "--first-frames", "40", "--min-frames", "16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    real, fake = read_manifest(out / "real"), read_manifest(out / "fake")
    assert len(real["tubes"]) == 2 and real["detector"]["name"] == "mtcnn"
    assert fake["boxes_from_original"]["used"] is True
    assert [t["crop_boxes"] for t in fake["tubes"]] == [t["crop_boxes"] for t in real["tubes"]]
    assert all((out / "fake" / t["diff_file"]).is_file() for t in fake["tubes"])


def test_without_masks_the_fake_still_gets_the_original_boxes(pair, gt_detector, tmp_path, capsys):
    from facetubes.cli import main

    d, truth, _ = pair
    out = tmp_path / "out"
    s = extract_batch([d / "real.mp4", d / "fake.mp4"], out, ExtractConfig(min_frames=32),
                      labels=labels_from_file(d / "metadata.json"), progress=False, detector=gt_detector(truth),
                      boxes_from_original=True, diff_masks=False)
    assert s.count("ok") == 2
    real, fake = read_manifest(out / "real"), read_manifest(out / "fake")
    assert fake["boxes_from_original"]["used"] and fake["boxes_from_original"]["diff_masks"] is False
    assert [t["crop_boxes"] for t in fake["tubes"]] == [t["crop_boxes"] for t in real["tubes"]]
    assert all("diff_file" not in t for t in fake["tubes"]) and not (out / "fake" / "diff").exists()
    assert main(["extract", str(d / "real.mp4"), "--out", str(tmp_path / "x"), "--no-diff-masks", "-q"]) == 2
    assert "--no-diff-masks only applies with --boxes-from-original" in capsys.readouterr().err


def test_bad_fake_or_damaged_original_manifest_is_one_line_not_a_traceback(pair, gt_detector, tmp_path):
    d, truth, _ = pair
    out = tmp_path / "out"
    labels = labels_from_file(d / "metadata.json")
    extract_batch([d / "real.mp4"], out, ExtractConfig(min_frames=32), labels=labels, progress=False,
                  detector=gt_detector(truth))
    (tmp_path / "fake.mp4").write_bytes(b"not a video")  # a corrupt fake whose original is fine
    s = extract_batch([tmp_path / "fake.mp4"], out, ExtractConfig(min_frames=32), labels=labels, progress=False,
                      boxes_from_original=True)
    (err,) = [r.error for r in s.results if r.status == "error"]
    assert "fake.mp4" in err and "\n" not in err and "Traceback" not in err
    assert not (out / "fake").exists()
    # the original's manifest lost its tubes' boxes: the fake falls back and says why
    m = json.loads((out / "real" / "tubes.json").read_text())
    for t in m["tubes"]:
        del t["crop_boxes"]
    (out / "real" / "tubes.json").write_text(json.dumps(m))
    fake_truth = pair[2]
    s = extract_batch([d / "fake.mp4"], out, ExtractConfig(min_frames=32), labels=labels, progress=False,
                      detector=gt_detector(fake_truth), boxes_from_original=True)
    rec = read_manifest(out / "fake")["boxes_from_original"]
    assert s.count("ok") == 1 and rec["used"] is False and "lacks what the boxes need" in rec["reason"]
