"""Facial landmarks: from the detectors through tracks into tubes.json, in source and in tube pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facetubes import ExtractConfig
from facetubes.crops import face_boxes, plan_crops
from facetubes.detect import rescale_result, to_detections
from facetubes.errors import ConfigError
from facetubes.landmarks import interpolate_landmarks, read_landmarks, to_tube_coords, tube_landmarks
from facetubes.manifest import read_manifest
from facetubes.pipeline import extract_tubes
from facetubes.synthetic import make_video
from facetubes.tracks import Detections, build_tracks

# where the fake detector puts the five points, as fractions of the face box (eyes, nose, mouth corners)
LAYOUT = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])


def points_in(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.stack([x1 + LAYOUT[:, 0] * (x2 - x1), y1 + LAYOUT[:, 1] * (y2 - y1)], axis=1)


def test_tube_coordinates_and_interpolation_by_hand():
    # crop box (100, 50)-(300, 250) resized to 100 px: (x - 100) / 2, (y - 50) / 2
    pts = np.array([[[150, 100], [250, 100], [200, 150], [160, 200], [240, 200]]], np.float64)
    tube = to_tube_coords(pts, np.array([[100, 50, 300, 250]]), 100)
    np.testing.assert_allclose(tube[0], [[25, 25], [75, 25], [50, 50], [30, 75], [70, 75]])
    # known at frames 10 and 20; frame 15 halfway, 5 held at the first, 25 held at the last; NaN rows skipped
    a, b = np.zeros((5, 2)), np.full((5, 2), 10.0)
    known = np.stack([a, np.full((5, 2), np.nan), b])
    out = interpolate_landmarks(np.array([10, 12, 20]), known, np.array([5, 10, 15, 20, 25]))
    np.testing.assert_allclose(out[:, 0, 0], [0, 0, 5, 10, 10])
    assert interpolate_landmarks(np.array([3]), np.full((1, 5, 2), np.nan), np.array([3])) is None


def test_tracks_keep_each_box_with_its_landmarks():
    dets = []
    for f in range(0, 100, 10):  # two faces moving apart; listed in a different order every other frame
        boxes = np.array([[10 + f, 20, 60 + f, 80], [300 - f, 30, 350 - f, 90]], np.float32)
        if f % 20:
            boxes = boxes[::-1].copy()
        pts = np.stack([points_in(b) for b in boxes]).astype(np.float32)
        dets.append(Detections(frame=f, boxes=boxes, probs=[0.9, 0.8], landmarks=pts))
    dets.append(Detections(frame=100, boxes=[[110, 20, 160, 80]]))  # a detector without landmarks
    tracks = build_tracks(dets, frame_size=(400, 200), n_frames=120)
    assert len(tracks) == 2
    for t in tracks:
        assert t.landmarks.shape == (len(t.frames), 5, 2)
        for box, pts in zip(t.boxes, t.landmarks):
            if np.isfinite(pts).all():
                np.testing.assert_allclose(pts, points_in(box), atol=1e-4)
    assert np.isnan(tracks[0].landmarks[-1]).all() and tracks[0].frames[-1] == 100
    # a track without any landmarks has None; a bad shape is refused
    (t,) = build_tracks([Detections(frame=0, boxes=[[0, 0, 10, 10]])], frame_size=(50, 50), n_frames=5)
    assert t.landmarks is None
    with pytest.raises(ValueError, match="landmarks must have shape"):
        Detections(frame=0, boxes=[[0, 0, 10, 10]], landmarks=np.zeros((1, 4, 2)))


def test_detector_results_are_rescaled_and_filtered_with_their_landmarks():
    boxes = np.array([[10, 10, 20, 20], [30, 10, 40, 20]], np.float32)
    pts = np.stack([points_in(b) for b in boxes]).astype(np.float32)
    res = rescale_result((boxes, np.float32([0.9, 0.4]), pts), 0.5, 0.25)  # detector saw the frame at 1/2 x 1/4
    (d,) = to_detections([30], [res], 1.0, min_prob=0.5)
    np.testing.assert_allclose(d.boxes, [[20, 40, 40, 80]])
    np.testing.assert_allclose(d.landmarks[0], points_in([20, 40, 40, 80]), atol=1e-4)
    (d,) = to_detections([0], [(boxes, np.float32([0.9, 0.4]))], 1.0)
    assert d.landmarks is None and len(d.boxes) == 2


class LandmarkTruthDetector:
    """The ground-truth boxes of a synthetic video (as conftest's detector), plus landmarks at LAYOUT."""

    name = "ground-truth"
    min_face_size = 20.0

    def __init__(self, base) -> None:
        self.base = base

    def detect(self, frames):
        return [(b, p) for b, p, _ in self.detect_landmarks(frames)]

    def detect_landmarks(self, frames):
        return [(b, p, np.stack([points_in(x) for x in b]).astype(np.float32).reshape(-1, 5, 2))
                for b, p in self.base.detect(frames)]


def test_manifest_stores_landmarks_in_source_and_tube_pixels(tmp_path, gt_detector):
    video = tmp_path / "two.mp4"
    truth = make_video(video, "two", width=320, height=240, n_frames=48, seed=3)
    config = ExtractConfig(min_frames=16, crop="follow", size=64, margin=0.2)
    m = extract_tubes(video, tmp_path / "out", config, detector=LandmarkTruthDetector(gt_detector(truth)))
    assert m["status"] == "ok" and len(m["tubes"]) == 2
    by_track = {t["track"]: t for t in m["tracks"]}
    for tube in m["tubes"]:
        track = by_track[tube["track"]]
        frames, src = read_landmarks(track, "landmarks")
        assert list(frames) == tube["detections"]["frames"]  # one entry per detection
        for f, pts, box in zip(frames, src, tube["detections"]["boxes"]):
            np.testing.assert_allclose(pts, points_in(box), atol=0.1)  # the detection's own points, full res
        tf, tp = read_landmarks(tube)
        assert list(tf) == list(range(tube["start_frame"], tube["stop_frame"]))  # every tube frame
        runs = tube["crop_boxes"]
        crop = np.concatenate([np.repeat([r[1:]], r[0], axis=0) for r in runs])
        assert len(crop) == len(tf)
        # at the detections: the source points through that frame's crop box
        for f, pts in zip(frames, src):
            i = f - tube["start_frame"]
            np.testing.assert_allclose(tp[i], to_tube_coords(pts[None], crop[i:i + 1], 64)[0], atol=0.15)
        # between them: inside the tube, eyes above the nose above the mouth, left eye left of the right eye
        assert (tp >= 0).all() and (tp <= 64).all()
        assert (tp[:, 0, 1] < tp[:, 2, 1]).all() and (tp[:, 2, 1] < tp[:, 3, 1]).all()
        assert (tp[:, 0, 0] < tp[:, 1, 0]).all()
    assert json.loads((tmp_path / "out" / "two" / "tubes.json").read_text())["tubes"][0]["tube_landmarks"]


def test_old_manifests_and_detectors_without_landmarks(tmp_path, gt_detector):
    video = tmp_path / "one.mp4"
    truth = make_video(video, "one", width=160, height=120, n_frames=24, seed=2)
    m = extract_tubes(video, tmp_path / "out", ExtractConfig(min_frames=8, size=32), detector=gt_detector(truth))
    assert m["tubes"] and "tube_landmarks" not in m["tubes"][0] and "landmarks" not in m["tracks"][0]
    again = read_manifest(tmp_path / "out" / "one")  # a manifest without the fields reads as before
    assert read_landmarks(again["tubes"][0]) is None and read_landmarks(again["tracks"][0], "landmarks") is None
    with pytest.raises(ConfigError, match="malformed 'tube_landmarks'"):
        read_landmarks({"tube_landmarks": [[0, [[1, 2], [3, 4]]]]})


def test_tube_landmarks_follow_the_crop_plan():
    from facetubes.tracks import Track

    tr = Track(id=0, frames=np.array([0, 10]), boxes=np.array([[100, 100, 150, 160], [120, 100, 170, 160]],
                                                               np.float32),
               probs=np.ones(2, np.float32), start=0, stop=20,
               landmarks=np.stack([points_in([100, 100, 150, 160]), points_in([120, 100, 170, 160])]).astype(
                   np.float32))
    (plan,) = plan_crops(tr, frame_size=(400, 300), mode="follow", margin=0.25, follow_sigma=0)
    pts = tube_landmarks(tr, plan.start, plan.boxes, 80)
    faces = face_boxes(tr)
    for t in range(20):  # the interpolated points are the layout in the interpolated face box
        np.testing.assert_allclose(pts[t], to_tube_coords(points_in(faces[t])[None], plan.boxes[t:t + 1], 80)[0],
                                   atol=1e-6)
    assert tube_landmarks(Track(0, tr.frames, tr.boxes, tr.probs, 0, 20), 0, plan.boxes, 80) is None


def test_real_mtcnn_landmarks_on_a_real_face(tmp_path):
    """MTCNN (facenet-pytorch's networks) on the synthetic video's real face photos: the stored tube landmarks
    lie where a face's parts are."""
    pytest.importorskip("facenet_pytorch")
    video = tmp_path / "one.mp4"
    make_video(video, "one", width=320, height=240, n_frames=32, seed=5)
    m = extract_tubes(video, tmp_path / "out", ExtractConfig(min_frames=16, size=128))
    assert m["detector"]["name"] == "mtcnn" and len(m["tubes"]) == 1
    frames, src = read_landmarks(m["tracks"][0], "landmarks")
    assert len(frames) == m["tracks"][0]["n_detections"]
    _, tp = read_landmarks(m["tubes"][0])
    eyes_y, nose_y, mouth_y = tp[:, :2, 1].mean(1), tp[:, 2, 1], tp[:, 3:, 1].mean(1)
    assert (eyes_y < nose_y).all() and (nose_y < mouth_y).all()
    assert (tp[:, 0, 0] < tp[:, 1, 0]).all() and (tp[:, 3, 0] < tp[:, 4, 0]).all()
    eye_distance = tp[:, 1, 0] - tp[:, 0, 0]
    assert (eye_distance > 0.15 * 128).all() and (eye_distance < 0.7 * 128).all()  # a face, not a speck


def test_reference_mtcnn_gives_the_same_landmarks_as_fast_mtcnn(tmp_path):
    pytest.importorskip("facenet_pytorch")
    from facetubes.detect import FacenetMTCNN, detect_frames
    from facetubes.mtcnn import FastMTCNN
    from facetubes.video import read_frames

    video = tmp_path / "two.mp4"
    make_video(video, "two", width=320, height=240, n_frames=1, seed=8)
    frame = read_frames(video, [0])
    (rb, rp, rl), = detect_frames(FacenetMTCNN(min_face_size=40), frame)  # 40 px: a short pyramid, a fast test
    (fb, fp, fl), = detect_frames(FastMTCNN(min_face_size=40), frame)
    assert len(rb) == len(fb) == 2 and rl.shape == fl.shape == (2, 5, 2)
    order = [int(np.argmin(np.abs(fb[:, 0] - x))) for x in rb[:, 0]]
    np.testing.assert_allclose(fl[order], rl, atol=0.5)
    np.testing.assert_allclose(fb[order], rb, atol=0.5)
