"""facetubes.synthetic: ground truth matches the pixels, rotation round-trips, MTCNN finds the faces, fakes differ
from their originals only inside the face boxes, datasets are grouped, JSON round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facetubes import synthetic
from facetubes.synthetic import FakeSpec, GroundTruth, make_video, render
from facetubes.video import probe, read_frames


def frames_and_truth(scenario: str, **kw) -> tuple[np.ndarray, GroundTruth]:
    frames, truth = render(scenario, **kw)
    return np.stack(list(frames)).astype(np.int16), truth


def box_mask(box: np.ndarray, shape: tuple[int, int], grow: int = 0) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x1, y1, x2, y2 = np.round(box).astype(int)
    mask[max(0, y1 - grow) : max(0, y2 + grow), max(0, x1 - grow) : max(0, x2 + grow)] = True
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("scenario", ["one", "two", "enter_leave"])
def test_boxes_are_where_the_faces_were_pasted(scenario: str) -> None:
    kw = dict(width=240, height=180, n_frames=40, seed=3)
    with_faces, truth = frames_and_truth(scenario, **kw)
    empty, _ = frames_and_truth("none", **kw)  # same seed: the same background, no people
    changed = np.abs(with_faces - empty).max(axis=-1) > 0
    for t in range(40):
        present = [p for p in truth.persons if truth.present(p)[t]]
        anywhere = np.zeros((180, 240), bool)
        for p in present:
            inside = box_mask(truth.boxes[p][t], (180, 240))
            assert changed[t][inside].mean() > 0.99  # every face pixel differs from the background
            face_h = truth.boxes[p][t, 3] - truth.boxes[p][t, 1]
            anywhere |= box_mask(truth.boxes[p][t], (180, 240), grow=int(0.65 * face_h))  # the rest of the head
        assert not changed[t][~anywhere].any()  # nothing else was painted
    if scenario == "enter_leave":
        assert truth.frame_range("p1") == (12, 28) and truth.frame_range("p0") == (0, 40)
        assert not changed[:12, :, 150:].any() and changed[12:28, :, 150:].any()


def test_box_is_aligned_with_the_face_pixels() -> None:
    from PIL import Image

    frames, truth = frames_and_truth("one", width=240, height=180, n_frames=10, identities=[0], seed=1)
    rgb, _, b = synthetic.face_template(0)  # identity 0 is the unmodified photo
    face = rgb[round(b[1]) : round(b[3]), round(b[0]) : round(b[2])].mean(-1)

    def match(t: int, dx: int, dy: int) -> float:
        x1, y1, x2, y2 = np.round(truth.boxes["p0"][t]).astype(int) + [dx, dy, dx, dy]
        crop = frames[t, y1:y2, x1:x2].mean(-1).astype(np.float32)
        ref = Image.fromarray(face.astype(np.float32)).resize(crop.shape[::-1], Image.Resampling.BILINEAR)
        return float(np.corrcoef(np.asarray(ref).ravel(), crop.ravel())[0, 1])

    for t in (0, 9):
        exact = match(t, 0, 0)
        assert exact > 0.95
        assert all(exact > match(t, dx, dy) for dx, dy in [(-3, 0), (3, 0), (0, -3), (0, 3)])


def test_scenarios_have_the_promised_geometry() -> None:
    _, crossing = render("crossing", width=240, height=180, n_frames=41, seed=1)
    p0, p1 = crossing.boxes["p0"], crossing.boxes["p1"]
    assert p0[0, 0] < p1[0, 0] and p0[-1, 0] > p1[-1, 0]  # they swap sides
    assert iou(p0[20], p1[20]) > 0.3  # faces overlap mid-video
    assert crossing.visible["p0"].min() < 0.5 and crossing.visible["p1"].min() == 1.0  # p1 passes in front
    _, edge = render("edge", width=240, height=180, n_frames=41)
    assert edge.boxes["p0"][:, 0].min() < 0 < edge.boxes["p0"][:, 2].min()
    assert 0.4 < edge.visible["p0"].min() < 0.9
    _, none = render("none", n_frames=5)
    assert none.persons == [] and not none.is_fake
    with pytest.raises(ValueError, match="unknown scenario"):
        render("three")


def test_identities_are_deterministic_and_distinct() -> None:
    from skimage import data

    rgb0, alpha0, box0 = synthetic.face_template(0)
    assert np.array_equal(rgb0, data.astronaut()[8:209, 146:303].astype(np.float32))  # identity 0 = the photo
    assert np.array_equal(synthetic.face_template(5)[0], synthetic.face_template(5)[0])
    from PIL import Image

    rgb1 = synthetic.face_template(1)[0]  # odd identities are mirrored
    gray1 = np.asarray(Image.fromarray(rgb1.mean(-1).astype(np.float32)).resize(rgb0.shape[1::-1])).ravel()
    gray0 = rgb0.mean(-1)
    assert np.corrcoef(gray1, gray0[:, ::-1].ravel())[0, 1] > np.corrcoef(gray1, gray0.ravel())[0, 1] + 0.1
    means = [synthetic.face_template(i)[0].mean(axis=(0, 1)) for i in range(2, 8)]
    assert min(np.abs(a - b).max() for k, a in enumerate(means) for b in means[k + 1 :]) > 1.0
    a, ta = frames_and_truth("two", width=160, height=120, n_frames=3, seed=9)
    b, tb = frames_and_truth("two", width=160, height=120, n_frames=3, seed=9)
    assert np.array_equal(a, b) and ta.to_json() == tb.to_json()


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_round_trips_and_faces_are_upright(tmp_path: Path, rotation: int) -> None:
    path = tmp_path / "phone.mp4"
    truth = make_video(path, "one", n_frames=12, rotation=rotation, identities=[0], seed=2)
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (rotation, 240, 320)  # portrait
    assert (truth.width, truth.height, truth.rotation) == (240, 320, rotation)
    frame = read_frames(path, [6])[0].astype(np.float64)
    assert frame.shape == (320, 240, 3)
    x1, y1, x2, y2 = np.round(truth.boxes["p0"][6]).astype(int)
    face = frame[y1:y2, x1:x2].mean(-1)
    rgb, _, b = synthetic.face_template(0)
    template = rgb[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])].mean(-1)

    def corr(img: np.ndarray) -> float:
        from PIL import Image

        t = np.asarray(Image.fromarray(template.astype(np.float32)).resize(img.shape[::-1]))
        return float(np.corrcoef(t.ravel(), img.ravel())[0, 1])

    upright = corr(face)
    assert upright > 0.9
    for k in (1, 2, 3):  # any other orientation of the decoded face matches the photo far worse
        assert upright > corr(np.ascontiguousarray(np.rot90(face, k))) + 0.2, k


def test_mtcnn_finds_the_synthetic_faces(tmp_path: Path) -> None:
    facenet = pytest.importorskip("facenet_pytorch")
    detector = facenet.MTCNN(keep_all=True, post_process=False, device="cpu")
    checks = [("two", 0, [0, 15, 30]), ("two", 90, [20])]
    for k, (scenario, rotation, frames_at) in enumerate(checks):
        path = tmp_path / f"m{k}.mp4"
        truth = make_video(path, scenario, rotation=rotation, seed=k + 1, n_frames=31)
        frames = read_frames(path, frames_at)
        boxes, probs = detector.detect(frames)
        for f, t in enumerate(frames_at):
            assert boxes[f] is not None, (scenario, t)
            for person in truth.persons:
                best = int(np.argmax([iou(truth.boxes[person][t], b) for b in boxes[f]]))
                assert iou(truth.boxes[person][t], boxes[f][best]) > 0.5, (scenario, t, person)
                assert probs[f][best] > 0.9
    none = tmp_path / "none.mp4"
    make_video(none, "none", n_frames=4, seed=3)
    boxes, _ = detector.detect(read_frames(none, [0, 3]))
    assert all(b is None for b in boxes)


def test_fake_differs_from_real_only_inside_face_boxes() -> None:
    kw = dict(width=240, height=180, n_frames=30, seed=5)
    real, truth_real = frames_and_truth("two", **kw)
    fake, truth = frames_and_truth("two", fake=True, **kw)
    assert truth.is_fake and not truth_real.is_fake and truth.fake == {"p0": True, "p1": True}
    assert truth.donors["p0"] != truth.identities["p0"]
    for p in ("p0", "p1"):
        assert np.array_equal(truth.boxes[p], truth_real.boxes[p])
    diff = np.abs(fake - real).max(axis=-1)
    strength = []
    for t in range(30):
        inside = box_mask(truth.boxes["p0"][t], (180, 240)) | box_mask(truth.boxes["p1"][t], (180, 240))
        assert not diff[t][~inside].any()
        x1, y1, x2, y2 = np.round(truth.boxes["p0"][t]).astype(int)
        h3, w3 = (y2 - y1) // 3, (x2 - x1) // 3  # the middle ninth of the face box
        core = fake[t, y1 + h3 : y2 - h3, x1 + w3 : x2 - w3] - real[t, y1 + h3 : y2 - h3, x1 + w3 : x2 - w3]
        assert np.abs(core).mean() > 8  # the face centre really changed
        strength.append(np.abs(core).mean())
    assert np.std(strength) > 0.5  # the blend flickers over time
    only_p1, t1 = frames_and_truth("two", fake=FakeSpec(persons=("p1",)), **kw)
    assert t1.fake == {"p0": False, "p1": True}
    p0_area = np.stack([box_mask(t1.boxes["p0"][t], (180, 240)) for t in range(30)])
    assert np.array_equal(only_p1[p0_area], real[p0_area]) and not np.array_equal(only_p1, real)


def test_encoded_fake_differs_from_real_near_the_faces_only(tmp_path: Path) -> None:
    real = make_video(tmp_path / "real.mp4", "one", width=160, height=120, n_frames=20, seed=8)
    make_video(tmp_path / "fake.mp4", "one", width=160, height=120, n_frames=20, seed=8, fake=True)
    a = read_frames(tmp_path / "real.mp4", [5, 15]).astype(np.int16)
    b = read_frames(tmp_path / "fake.mp4", [5, 15]).astype(np.int16)
    for k, t in enumerate([5, 15]):
        near = box_mask(real.boxes["p0"][t], (120, 160), grow=16)
        d = np.abs(a[k] - b[k]).mean(-1)
        outside, inside = d[~near].mean(), d[box_mask(real.boxes["p0"][t], (120, 160))].mean()
        assert outside < 2.5 and inside > 4 * outside  # outside: only codec noise


def test_ground_truth_json_round_trip(tmp_path: Path) -> None:
    _, truth = render("enter_leave", width=160, height=120, n_frames=20, fake=True, seed=2)
    back = GroundTruth.from_json(truth.to_json(tmp_path / "t.json"))
    again = GroundTruth.from_json(tmp_path / "t.json")
    for other in (back, again):
        assert other.persons == truth.persons and other.fake == truth.fake and other.donors == truth.donors
        for p in truth.persons:
            np.testing.assert_allclose(other.boxes[p], truth.boxes[p], atol=1e-3, equal_nan=True)
        assert np.isnan(other.boxes["p1"][0]).all() and other.frame_range("p1") == truth.frame_range("p1")
        assert (other.width, other.height, other.n_frames, other.scenario) == (160, 120, 20, "enter_leave")


def test_make_dataset_groups_fakes_with_their_originals(tmp_path: Path) -> None:
    meta = synthetic.make_dataset(tmp_path, 2, 3, seed=1, val_fraction=0.5, width=128, height=96, n_frames=8)
    assert json.loads((tmp_path / "metadata.json").read_text()) == meta
    assert sorted(meta) == ["fake_0.mp4", "fake_1.mp4", "fake_2.mp4", "real_0.mp4", "real_1.mp4"]
    assert {v["label"] for k, v in meta.items() if k.startswith("real")} == {"REAL"}
    assert sorted(v["split"] for k, v in meta.items() if k.startswith("real")) == ["train", "val"]
    for name, entry in meta.items():
        assert (tmp_path / name).is_file() and probe(tmp_path / name).n_frames == 8
        if entry["label"] == "FAKE":
            original = entry["original"]
            assert meta[original]["label"] == "REAL" and meta[original]["split"] == entry["split"]
            mine = GroundTruth.from_json(tmp_path / name.replace(".mp4", ".truth.json"))
            theirs = GroundTruth.from_json(tmp_path / original.replace(".mp4", ".truth.json"))
            assert mine.identities == theirs.identities and mine.is_fake and not theirs.is_fake
            np.testing.assert_array_equal(mine.boxes["p0"], theirs.boxes["p0"])
        else:
            assert entry["original"] is None
    assert meta["fake_0.mp4"]["original"] == meta["fake_2.mp4"]["original"] == "real_0.mp4"
