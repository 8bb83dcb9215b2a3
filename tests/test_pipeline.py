"""extract_tubes / extract_tubes_in_memory on synthetic videos, checked against their ground truth."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from facetubes import ExtractConfig
from facetubes.errors import ConfigError, OutputError, VideoError
from facetubes.manifest import process_umask
from facetubes.pipeline import extract_tubes, extract_tubes_in_memory
from facetubes.synthetic import make_video
from facetubes.video import probe, read_frames

CFG = ExtractConfig(min_frames=32)


def _contains(crop, box, tol=0.5):
    """The crop square contains the face box (up to ``tol`` px of rounding)."""
    return (crop[0] <= box[0] + tol and crop[1] <= box[1] + tol and crop[2] >= box[2] - tol
            and crop[3] >= box[3] - tol)


def _crop_at(tube: dict, frame: int) -> list[int]:
    k = frame - tube["start_frame"]
    for n, *box in tube["crop_boxes"]:
        if k < n:
            return box
        k -= n
    raise AssertionError("frame outside the tube")


def _owner(tube: dict, truth) -> str:
    """The person whose ground-truth box overlaps the tube's detections best."""
    votes: dict[str, int] = {}
    for f, b in zip(tube["detections"]["frames"], tube["detections"]["boxes"]):
        best = max(truth.persons, key=lambda p: _iou(b, truth.boxes[p][f]))
        votes[best] = votes.get(best, 0) + 1
    return max(votes, key=votes.get)


def _iou(a, b) -> float:
    if np.isnan(b).any():
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("scenario", ["two", "crossing"])
def test_each_person_gets_one_tube_that_contains_their_face(tmp_path, gt_detector, scenario):
    video = tmp_path / f"{scenario}.mp4"
    truth = make_video(video, scenario, width=320, height=240, n_frames=80, seed=3)
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    assert m["status"] == "ok"
    assert len(m["tubes"]) == 2
    owners = [_owner(t, truth) for t in m["tubes"]]
    assert sorted(owners) == ["p0", "p1"]  # one person per tube, nobody twice
    for t, person in zip(m["tubes"], owners):
        # every detection of the tube belongs to its person: no identity switch at the crossing
        for f, b in zip(t["detections"]["frames"], t["detections"]["boxes"]):
            assert _iou(b, truth.boxes[person][f]) > 0.9
        # the static crop is the union of the sampled detections: it contains the face at each of them
        for f in t["detections"]["frames"]:
            assert _contains(_crop_at(t, f), truth.boxes[person][f], tol=3), (person, f)
        mp4 = tmp_path / "out" / scenario / t["file"]
        info = probe(mp4)
        assert (info.width, info.height) == (256, 256)
        assert info.n_frames == t["n_frames"] == t["stop_frame"] - t["start_frame"]


def test_tube_keeps_source_frame_rate(tmp_path, gt_detector):
    video = tmp_path / "ntsc.mp4"
    truth = make_video(video, "one", width=320, height=240, n_frames=70, fps=Fraction(30000, 1001), seed=1)
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    info = probe(tmp_path / "out" / "ntsc" / m["tubes"][0]["file"])
    assert info.fps_fraction == Fraction(30000, 1001)  # the published code wrote 25 fps
    # results are readable by others as far as the umask allows (mkdtemp/mkstemp alone would give 0700/0600)
    mask = process_umask()
    assert (tmp_path / "out" / "ntsc").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out" / "ntsc" / "tubes.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_face_entering_late_and_leaving_early_bounds_the_tube(tmp_path, gt_detector):
    video = tmp_path / "enter.mp4"
    truth = make_video(video, "enter_leave", width=320, height=240, n_frames=120, seed=2)
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    ranges = {p: truth.frame_range(p) for p in truth.persons}
    for t in m["tubes"]:
        start, stop = ranges[_owner(t, truth)]
        # detections every 10th frame: the tube starts at the first sampled frame showing the face
        assert start <= t["start_frame"] < start + 10
        assert stop - 10 <= t["stop_frame"] <= stop + 10


def test_rotated_phone_video_gives_upright_tubes(tmp_path, gt_detector):
    video = tmp_path / "phone.mp4"
    truth = make_video(video, "one", width=320, height=240, n_frames=70, rotation=90, seed=4)
    assert (truth.width, truth.height) == (240, 320)  # upright portrait
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    assert (m["width"], m["height"], m["rotation"]) == (240, 320, 90)
    assert len(m["tubes"]) == 1
    tube = read_frames(tmp_path / "out" / "phone" / m["tubes"][0]["file"], [35])[0].astype(float)
    upright = read_frames(video, [m["tubes"][0]["start_frame"] + 35])[0]
    x1, y1, x2, y2 = _crop_at(m["tubes"][0], m["tubes"][0]["start_frame"] + 35)
    ref = upright[max(0, y1):y2, max(0, x1):x2].astype(float)
    from PIL import Image

    ref = np.asarray(Image.fromarray(ref.astype(np.uint8)).resize((256, 256)), float)
    # the tube matches the upright crop far better than a rotated one (faces are upright)
    err_upright = np.abs(tube - ref).mean()
    err_rotated = np.abs(np.rot90(tube) - ref).mean()
    assert err_upright < 12 and err_upright < 0.5 * err_rotated


def test_in_memory_tubes_match_the_written_ones(tmp_path, gt_detector):
    video = tmp_path / "two.mp4"
    truth = make_video(video, "two", width=320, height=240, n_frames=70, seed=5)
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    vt = extract_tubes_in_memory(video, CFG, detector=gt_detector(truth))
    assert len(vt.tubes) == len(m["tubes"]) == 2
    for t, mt in zip(vt.tubes, m["tubes"]):
        assert t.frames.shape == (mt["n_frames"], 256, 256, 3) and t.frames.dtype == np.uint8
        decoded = read_frames(tmp_path / "out" / "two" / mt["file"], [0, 30])
        assert np.abs(decoded.astype(float) - t.frames[[0, 30]]).mean() < 6  # only H.264 loss


def test_follow_crop_moves_with_the_face_and_split_long_tracks(tmp_path, gt_detector):
    video = tmp_path / "walk.mp4"
    truth = make_video(video, "crossing", width=320, height=240, n_frames=96, seed=6)
    cfg = ExtractConfig(min_frames=24, crop="follow", max_frames=48)
    m = extract_tubes(video, tmp_path / "out", cfg, detector=gt_detector(truth))
    assert all(t["n_frames"] <= 48 for t in m["tubes"])
    assert any(t["part"] == 1 for t in m["tubes"]) and all("p" in t["tube"].split("_t")[1] for t in m["tubes"])
    for t in m["tubes"]:
        person = _owner(t, truth)
        boxes = [_crop_at(t, f) for f in range(t["start_frame"], t["stop_frame"])]
        sides = {b[2] - b[0] for b in boxes}
        assert len(sides) == 1  # fixed size
        centres = np.array([(b[0] + b[2]) / 2 for b in boxes])
        gt_c = np.array([(truth.boxes[person][f][0] + truth.boxes[person][f][2]) / 2
                         for f in range(t["start_frame"], t["stop_frame"])])
        assert np.corrcoef(centres, gt_c)[0, 1] > 0.9  # the crop follows the walking face


def test_no_face_is_a_normal_result_with_a_manifest(tmp_path, gt_detector):
    video = tmp_path / "empty_room.mp4"
    truth = make_video(video, "none", width=160, height=120, n_frames=70, seed=0)
    m = extract_tubes(video, tmp_path / "out", CFG, detector=gt_detector(truth))
    assert m["status"] == "no_face" and m["tubes"] == []
    assert json.loads((tmp_path / "out" / "empty_room" / "tubes.json").read_text())["status"] == "no_face"


def test_bad_input_and_unwritable_output(tmp_path):
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(VideoError, match="text.mp4"):
        extract_tubes(tmp_path / "text.mp4", tmp_path / "out")
    video = tmp_path / "v.mp4"
    make_video(video, "one", width=160, height=120, n_frames=70)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        extract_tubes(video, blocker / "out")


def test_real_mtcnn_finds_both_people(tmp_path):
    video = tmp_path / "two.mp4"
    truth = make_video(video, "two", width=320, height=240, n_frames=64, seed=8)
    m = extract_tubes(video, tmp_path / "out", ExtractConfig(min_frames=32))
    assert len(m["tubes"]) == 2
    assert sorted(_owner(t, truth) for t in m["tubes"]) == ["p0", "p1"]
    for t in m["tubes"]:
        p = _owner(t, truth)
        ious = [_iou(b, truth.boxes[p][f]) for f, b in zip(t["detections"]["frames"], t["detections"]["boxes"])]
        assert np.mean(ious) > 0.5 and min(t["detections"]["probs"]) > 0.9


@pytest.mark.parametrize("rotation", [0, 90])
def test_yuv_plane_crop_equals_the_rgb_crop_including_padding(tmp_path, rotation):
    from facetubes.crops import crop_frame
    from facetubes.pipeline import crop_yuv420
    from facetubes.video import iter_av_frames, rotate_array, upright_to_stored_boxes

    video = tmp_path / "v.mp4"
    make_video(video, "one", width=320, height=240, n_frames=3, seed=1, rotation=rotation)
    info = probe(video)
    _, frame = next(iter_av_frames(video))
    rgb = rotate_array(frame.to_ndarray(format="rgb24"), rotation)
    assert rgb.shape[:2] == (info.height, info.width)
    for box in ([40, 30, 140, 130], [-30, -20, 70, 80], [info.width - 60, info.height - 50, info.width + 40,
                                                         info.height + 50]):
        ref = crop_frame(rgb, np.array(box), 64).astype(float)
        stored = upright_to_stored_boxes(np.array([box]), rotation, (info.width, info.height))[0].round().astype(int)
        got = crop_yuv420(frame, stored, rotation).reformat(width=64, height=64, format="rgb24").to_ndarray()
        assert np.abs(got.astype(float) - ref).mean() < 6, box  # same pixels, only chroma/filter rounding
        assert np.abs(np.rot90(got).astype(float) - ref).mean() > 2 * np.abs(got.astype(float) - ref).mean()


def test_prefetch_keeps_order_reraises_errors_and_stops_its_thread():
    import threading

    from facetubes.pipeline import prefetch

    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise VideoError("v.mp4: cannot decode: broken packet")

    got = []
    with pytest.raises(VideoError, match="broken packet"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]
    before = threading.active_count()
    for x in prefetch(iter(range(10_000)), depth=2):
        if x == 5:
            break
    import time

    time.sleep(0.1)
    assert threading.active_count() <= before  # the producer thread ended with the consumer


def test_sparse_decoding_and_decoder_threads_do_not_change_what_is_detected_or_cut(tmp_path, gt_detector,
                                                                                   monkeypatch):
    import facetubes.pipeline as pipeline
    from facetubes.pipeline import detect_video

    video = tmp_path / "one.mp4"
    truth = make_video(video, "one", width=320, height=240, n_frames=70, seed=6)  # x264 default: B-frames
    info = probe(video)

    class Recorder:
        min_face_size = 20.0

        def __init__(self):
            self.frames = []

        def detect(self, frames):
            self.frames.extend(np.array(f) for f in frames)
            return [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) for _ in frames]

    seen = {}
    for sparse in (True, False):
        monkeypatch.setattr(pipeline, "SPARSE_DECODE", sparse)
        rec = Recorder()
        detect_video(video, info, CFG, rec)
        seen[sparse] = rec.frames
    assert len(seen[True]) == len(seen[False]) == 7  # frames 0, 10, ..., 60
    assert all(np.array_equal(a, b) for a, b in zip(seen[True], seen[False]))

    cut = [extract_tubes_in_memory(video, ExtractConfig(min_frames=32, decode_threads=t),
                                   detector=gt_detector(truth)) for t in (0, 1)]
    assert len(cut[0].tubes) == len(cut[1].tubes) == 1
    assert np.array_equal(cut[0].tubes[0].frames, cut[1].tubes[0].frames)
    with pytest.raises(ConfigError, match="decode_threads"):
        ExtractConfig(decode_threads=-1)


def test_preview_draws_every_track_and_shows_each_tube(tmp_path, gt_detector, capsys):
    from PIL import Image

    from facetubes.cli import main
    from facetubes.preview import COLOURS, THUMB, batch_preview, video_preview

    out = tmp_path / "out"
    for name, scenario in (("two", "two"), ("empty", "none")):
        truth = make_video(tmp_path / f"{name}.mp4", scenario, width=320, height=240, n_frames=70, seed=2)
        extract_tubes(tmp_path / f"{name}.mp4", out, CFG, detector=gt_detector(truth))
    sheet = np.asarray(Image.open(video_preview(out / "two")).convert("RGB"))
    colours = {tuple(c) for c in sheet.reshape(-1, 3)}
    assert COLOURS[0] in colours and COLOURS[1] in colours  # both tracks' boxes are drawn in their colours
    # frame panel, then one thumbnail row per tube: each row shows the face, not an empty strip
    rows = sheet[-(2 * (THUMB + 24) + 8):-8]
    for k in range(2):
        thumb = rows[k * (THUMB + 24) + 16:k * (THUMB + 24) + 16 + THUMB, 16 + 2:16 + 2 + THUMB]
        assert thumb.std() > 40, k  # about 70 with the thumbnails, 18 for "(tube unreadable)" on grey

    both = Image.open(batch_preview(out))
    alone = Image.open(out / "two" / "preview.png")
    assert both.height > alone.height and both.width == alone.width  # the no-face video adds its own sheet

    for argv, message in [(["preview", str(tmp_path / "nothing")], "expected a facetubes output folder"),
                          (["preview", str(tmp_path)], "no finished videos to preview"),
                          (["preview", str(out), "--output", str(tmp_path / "notes.txt")], "ending in .png"),
                          (["preview", str(out), "--max-videos", "0"], "--max-videos must be >= 1")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "notes.txt").exists()
