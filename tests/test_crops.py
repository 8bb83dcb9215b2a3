"""facetubes.crops: crop plans (static, follow, split/cap) and the per-frame crop."""

from __future__ import annotations

import numpy as np
import pytest

from facetubes.crops import CropPlan, crop_frame, crop_frames, face_boxes, part_ranges, plan_crops
from facetubes.tracks import Detections, Track, build_tracks

FRAME = (640, 480)  # (width, height)


def make_track(frames, boxes, stop: int | None = None, every: int = 10) -> Track:
    frames = np.asarray(frames, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return Track(id=3, frames=frames, boxes=boxes, probs=np.ones(len(frames), np.float32), start=int(frames[0]),
                 stop=int(stop if stop is not None else frames[-1] + every))


def per_frame_faces(track: Track) -> np.ndarray:
    """The face box at every frame of the track, interpolated here independently of the library."""
    f = np.arange(track.start, track.stop)
    return np.stack([np.interp(f, track.frames, track.boxes[:, k]) for k in range(4)], axis=1)


def check_plan(plan: CropPlan, track: Track, frame_size=FRAME) -> None:
    """Square, even, integer boxes that contain the face at every frame and lie inside the frame if they fit."""
    b = plan.boxes
    assert b.dtype == np.int32 and b.shape == (plan.stop - plan.start, 4)
    side = b[:, 2] - b[:, 0]
    assert np.all(side == b[:, 3] - b[:, 1]) and np.all(side % 2 == 0) and np.all(side == side[0])
    faces = per_frame_faces(track)[plan.start - track.start:plan.stop - track.start]
    faces = np.clip(faces, 0, [frame_size[0], frame_size[1]] * 2)
    assert np.all(b[:, :2] <= faces[:, :2] + 1e-4) and np.all(b[:, 2:] >= faces[:, 2:] - 1e-4), "face outside"
    for dim, limit in ((0, frame_size[0]), (1, frame_size[1])):
        if side[0] <= limit:
            assert np.all(b[:, dim] >= 0) and np.all(b[:, dim + 2] <= limit)
        else:
            assert np.all(b[:, dim] < 0) and np.all(b[:, dim + 2] > limit)


# ------------------------------------------------------------------------------------------------------------
# static


def test_static_is_the_union_box_made_square_and_centred() -> None:
    track = make_track([0, 10, 20], [[100, 100, 150, 180], [110, 100, 150, 170], [100, 110, 140, 180]])
    (plan,) = plan_crops(track, frame_size=FRAME)
    assert (plan.track_id, plan.part, plan.start, plan.stop) == (3, 0, 0, 30)
    np.testing.assert_array_equal(plan.boxes, np.tile([85, 100, 165, 180], (30, 1)))
    check_plan(plan, track)


def test_margin_is_a_fraction_of_the_face_side_on_each_side() -> None:
    track = make_track([0], [[100, 100, 150, 180]])
    (plan,) = plan_crops(track, frame_size=FRAME, margin=0.3)  # side 80 * 1.6 = 128
    np.testing.assert_array_equal(plan.boxes[0], [61, 76, 189, 204])


def test_side_is_rounded_up_to_even_and_fractional_boxes_are_covered() -> None:
    track = make_track([0], [[100.4, 200.6, 150.2, 251.5]])  # covers pixels 100..150, 200..251: 51 x 52
    (plan,) = plan_crops(track, frame_size=FRAME)
    x1, y1, x2, y2 = plan.boxes[0]
    assert x2 - x1 == 52 and y2 - y1 == 52
    assert x1 <= 100 and y1 <= 200 and x2 >= 151 and y2 >= 252


@pytest.mark.parametrize("face, expected", [([0, 0, 40, 60], [0, 0, 120, 120]),
                                            ([600, 420, 640, 480], [520, 360, 640, 480]),
                                            ([-30, 200, 30, 260], [0, 170, 120, 290])])
def test_crop_at_the_edge_is_shifted_inside_the_frame(face, expected) -> None:
    track = make_track([0], [face])
    (plan,) = plan_crops(track, frame_size=FRAME, margin=0.5)
    np.testing.assert_array_equal(plan.boxes[0], expected)
    check_plan(plan, track)


def test_crop_larger_than_the_frame_is_centred_and_zero_padded() -> None:
    frame = np.random.default_rng(0).integers(1, 255, (80, 100, 3), dtype=np.uint8)
    track = make_track([0], [[10, 10, 90, 70]])
    (plan,) = plan_crops(track, frame_size=(100, 80), margin=0.5)  # side 160 > 100 and > 80
    np.testing.assert_array_equal(plan.boxes[0], [-30, -40, 130, 120])
    check_plan(plan, track, (100, 80))
    crop = crop_frame(frame, plan.boxes[0], 160)
    expected = np.zeros((160, 160, 3), np.uint8)
    expected[40:120, 30:130] = frame
    np.testing.assert_array_equal(crop, expected)


# ------------------------------------------------------------------------------------------------------------
# follow


def roughness(x: np.ndarray, window: int = 21) -> float:
    """Largest distance of a sequence from its centred moving average (interior frames)."""
    kernel = np.ones(window) / window
    average = np.convolve(x, kernel, mode="valid")
    return float(np.abs(x[window // 2:len(x) - window // 2] - average).max())


def walking_track(jitter: float = 4.0) -> Track:
    """A 100 px face walking from x=20 to x=520 over 300 frames, with detector jitter."""
    rng = np.random.default_rng(1)
    frames = np.arange(0, 300, 10)
    x = 20 + 500 * frames / 290 + rng.uniform(-jitter, jitter, len(frames))
    y = 150 + rng.uniform(-jitter, jitter, len(frames))
    return make_track(frames, np.stack([x, y, x + 100, y + 100], axis=1), stop=300)


def test_follow_keeps_a_fixed_square_on_a_walking_face_and_is_smooth() -> None:
    track = walking_track()
    (follow,) = plan_crops(track, frame_size=FRAME, mode="follow", margin=0.2)
    (static,) = plan_crops(track, frame_size=FRAME)
    check_plan(follow, track)
    side = follow.boxes[0, 2] - follow.boxes[0, 0]
    assert side == 142  # face covers 101 pixels (fractional coordinates): 101 * 1.4 = 141.4 -> 142
    assert static.boxes[0, 2] - static.boxes[0, 0] >= 480  # the union box spans the walk
    cx = (follow.boxes[:, 0] + follow.boxes[:, 2]) / 2
    assert cx[-1] - cx[0] > 400  # the crop moves with the face
    raw = per_frame_faces(track)
    raw_cx = (raw[:, 0] + raw[:, 2]) / 2
    # smooth: the crop centre stays within 1 px of its own 21-frame moving average (integer rounding), the
    # jittery detections do not; and it stays on the true path of the face
    assert roughness(cx) <= 1.0 < 2.0 < roughness(raw_cx)
    true_cx = 70 + 500 * np.minimum(np.arange(300), 290) / 290
    assert np.abs(cx - true_cx)[60:240].max() < 3.0
    assert np.all(np.diff(cx) >= 0)


def test_follow_keeps_a_fast_face_inside_even_with_heavy_smoothing() -> None:
    # the face jumps 200 px between two sampled frames; sigma 50 alone would lag far behind
    frames = np.arange(0, 100, 10)
    x = np.where(frames < 50, 50.0, 450.0)
    track = make_track(frames, np.stack([x, 0 * x + 100, x + 80, 0 * x + 180], axis=1), stop=100)
    (plan,) = plan_crops(track, frame_size=FRAME, mode="follow", follow_sigma=50.0)
    check_plan(plan, track)


def test_follow_without_smoothing_is_centred_on_the_face() -> None:
    track = make_track([0, 10], [[100, 100, 160, 160], [200, 100, 260, 160]])
    (plan,) = plan_crops(track, frame_size=FRAME, mode="follow", follow_sigma=0, margin=0.5)
    faces = per_frame_faces(track)
    np.testing.assert_allclose((plan.boxes[:, 0] + plan.boxes[:, 2]) / 2, (faces[:, 0] + faces[:, 2]) / 2,
                               atol=0.5)
    assert np.all(plan.boxes[:, 2] - plan.boxes[:, 0] == 120)


# ------------------------------------------------------------------------------------------------------------
# long tracks


@pytest.mark.parametrize("max_frames, how, expected", [
    (None, "split", [(0, 300)]),
    (300, "split", [(0, 300)]),
    (128, "split", [(0, 128), (128, 256), (256, 300)]),
    (100, "split", [(0, 100), (100, 200), (200, 300)]),
    (128, "cap", [(0, 128)]),
])
def test_part_ranges(max_frames, how, expected) -> None:
    assert part_ranges(0, 300, max_frames, how) == expected


def test_split_parts_have_their_own_static_box() -> None:
    track = walking_track()
    plans = plan_crops(track, frame_size=FRAME, max_frames=128)
    assert [(p.part, p.start, p.stop, len(p.boxes)) for p in plans] == [(0, 0, 128, 128), (1, 128, 256, 128),
                                                                        (2, 256, 300, 44)]
    for p in plans:
        check_plan(p, track)
        assert np.all(p.boxes == p.boxes[0])
    assert plans[0].boxes[0, 2] - plans[0].boxes[0, 0] < 360  # ~220 px of walk + 100 px face, not 600
    assert plans[0].boxes[0, 0] < plans[1].boxes[0, 0] < plans[2].boxes[0, 0]
    assert [p.part for p in plan_crops(track, frame_size=FRAME, max_frames=128, min_frames=64)] == [0, 1]
    capped = plan_crops(track, frame_size=FRAME, max_frames=128, long_tracks="cap")
    assert [(p.part, p.start, p.stop) for p in capped] == [(0, 0, 128)]
    np.testing.assert_array_equal(capped[0].boxes, plans[0].boxes)


def test_split_follow_parts_contain_the_face() -> None:
    track = walking_track()
    for p in plan_crops(track, frame_size=FRAME, mode="follow", margin=0.1, max_frames=64):
        check_plan(p, track)


def test_plans_for_built_tracks_contain_every_face() -> None:
    d = [Detections(10 * k, np.array([[20 + 15 * k, 50, 100 + 15 * k, 150], [500, 300 - 3 * k, 580, 390 - 3 * k]]))
         for k in range(25)]
    tracks = build_tracks(d, frame_size=FRAME, n_frames=245)
    assert len(tracks) == 2
    for t in tracks:
        for mode in ("static", "follow"):
            (plan,) = plan_crops(t, frame_size=FRAME, mode=mode, margin=0.25)
            assert (plan.start, plan.stop) == (0, 245)
            check_plan(plan, t)
    assert face_boxes(tracks[0]).shape == (245, 4)


def test_invalid_arguments_are_refused() -> None:
    track = make_track([0], [[0, 0, 10, 10]])
    for kwargs in ({"mode": "zoom"}, {"long_tracks": "drop"}, {"margin": -0.1}, {"max_frames": 0},
                   {"frame_size": (0, 10)}):
        with pytest.raises(ValueError):
            plan_crops(track, **{"frame_size": FRAME, **kwargs})
    with pytest.raises(IndexError):
        plan_crops(track, frame_size=FRAME)[0].box_at(10)


# ------------------------------------------------------------------------------------------------------------
# pixels


def test_crop_frame_without_resize_is_an_exact_copy() -> None:
    frame = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    crop = crop_frame(frame, np.array([30, 20, 94, 84]), 64)
    np.testing.assert_array_equal(crop, frame[20:84, 30:94])
    crop[:] = 0
    assert frame[20:84, 30:94].any(), "crop_frame must not return a view of the frame"


def test_crop_frame_resizes_bilinearly() -> None:
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[:, :100] = (255, 0, 0)
    frame[:, 100:] = (0, 0, 255)
    crop = crop_frame(frame, np.array([50, 50, 150, 150]), 40)  # 100 -> 40: boundary in the middle
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[:, :18], np.broadcast_to([255, 0, 0], (40, 18, 3)))
    np.testing.assert_array_equal(crop[:, 22:], np.broadcast_to([0, 0, 255], (40, 18, 3)))


def test_crop_frame_pads_with_zeros_outside_the_frame() -> None:
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_frame(frame, np.array([-50, 0, 50, 100]), 50)
    assert np.all(crop[:, :24] == 0) and np.all(crop[:, 26:] == 200)
    assert np.all(crop_frame(frame, np.array([300, 300, 340, 340]), 16) == 0)
    with pytest.raises(ValueError):
        crop_frame(frame, np.array([10, 10, 10, 20]), 16)


def test_crop_frames_matches_crop_frame() -> None:
    frames = np.random.default_rng(3).integers(0, 255, (4, 90, 120, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 60, 60], [-10, -10, 50, 50], [60, 30, 120, 90], [100, 70, 160, 130]])
    batch = crop_frames(frames, boxes, 32)
    assert batch.shape == (4, 32, 32, 3)
    for k in range(4):
        np.testing.assert_array_equal(batch[k], crop_frame(frames[k], boxes[k], 32))
    same = crop_frames(frames, boxes[0], 32)
    np.testing.assert_array_equal(same[2], crop_frame(frames[2], boxes[0], 32))
