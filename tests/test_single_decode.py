"""Issue 12: one person per tube by default (crop ``auto``), every frame decoded once (chunked), preview boxes."""

from __future__ import annotations

import numpy as np
import pytest

from facetubes import ExtractConfig
from facetubes.chunked import chunk_length
from facetubes.crops import TIGHT_RATIO, crop_frame, plan_crops
from facetubes.errors import ConfigError, VideoError
from facetubes.pipeline import extract_tubes, extract_tubes_in_memory
from facetubes.preview import crop_box_at
from facetubes.synthetic import make_video
from facetubes.tracks import Track, build_tracks
from facetubes.video import VideoInfo, probe, read_frames


def _inside(face, crop) -> float:
    """Fraction of the face box's area inside the crop box."""
    iw = max(0.0, min(face[2], crop[2]) - max(face[0], crop[0]))
    ih = max(0.0, min(face[3], crop[3]) - max(face[1], crop[1]))
    return iw * ih / ((face[2] - face[0]) * (face[3] - face[1]))


def _identity_and_share(tube, truth):
    """Per tube frame: the person whose face centre is nearest the crop centre, the other people whose face is
    at least half inside the crop and apart from that face (centres a face side or more apart: a second face,
    not one overlapping it), and the nearest face's side as a share of the crop side."""
    nearest, others, shares = [], [], []
    for k, box in enumerate(tube.plan.boxes):
        f = tube.plan.start + k
        faces = {p: truth.boxes[p][f] for p in truth.persons if np.isfinite(truth.boxes[p][f]).all()}
        centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])  # noqa: E731
        own = min(faces, key=lambda p: np.hypot(*(centre(faces[p]) - centre(box))))
        side = max(faces[own][2] - faces[own][0], faces[own][3] - faces[own][1])
        nearest.append(own)
        others.append(sorted(p for p, b in faces.items() if p != own and _inside(b, box) > 0.5
                             and np.hypot(*(centre(b) - centre(faces[own]))) >= side))
        shares.append(side / (box[2] - box[0]))
    return nearest, others, np.array(shares)


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """Two people walking across the frame past each other (faces ~64 px in 320 px), 96 frames."""
    path = tmp_path_factory.mktemp("crossing") / "crossing.mp4"
    truth = make_video(path, "crossing", width=320, height=240, n_frames=96, seed=6)
    return path, truth


def test_default_crop_gives_one_person_per_tube_at_half_the_tube_side_or_more(crossing, gt_detector):
    path, truth = crossing
    results = {}
    for crop in ("auto", "static"):
        cfg = ExtractConfig(min_frames=32) if crop == "auto" else ExtractConfig(min_frames=32, crop="static")
        assert cfg.crop == crop  # auto is the default
        results[crop] = extract_tubes_in_memory(path, cfg, detector=gt_detector(truth))
    owners = []
    for tube in results["auto"].tubes:
        nearest, others, shares = _identity_and_share(tube, truth)
        owners.append(nearest[0])
        assert nearest == [nearest[0]] * len(nearest)  # one identity, centred, in every frame of the tube
        assert not any(others), others  # and nobody else's face beside it
        assert shares.min() >= 0.5, shares.min()
        # the face in each tube frame is its own track's: the crop holds the track's detections
        for f, b in zip(tube.track.frames, tube.track.boxes):
            if tube.plan.start <= f < tube.plan.stop:
                assert _inside(b, tube.plan.box_at(int(f))) > 0.99
    assert sorted(owners) == ["p0", "p1"]
    # the published static union box fails both: the walkers' tubes show both faces, small
    static = [_identity_and_share(t, truth) for t in results["static"].tubes]
    assert all(any(others) for _, others, _ in static)
    assert max(s.min() for _, _, s in static) < 0.5


def test_auto_keeps_the_static_box_while_it_is_tight():
    def track(xs):
        frames = np.arange(0, 10 * len(xs), 10)
        boxes = np.array([[x, 100, x + 80, 180] for x in xs], np.float32)
        return Track(0, frames, boxes, np.ones(len(xs), np.float32), 0, int(frames[-1]) + 10)

    (still,) = plan_crops(track([200, 205, 198, 202]), frame_size=(640, 480), mode="auto")
    assert (still.boxes == still.boxes[0]).all()  # static: the face hardly moves
    (walk,) = plan_crops(track([50, 150, 250, 350]), frame_size=(640, 480), mode="auto")
    sides = walk.boxes[:, 2] - walk.boxes[:, 0]
    assert len(np.unique(walk.boxes[:, 0])) > 10 and (sides == 80).all()  # follow: moves, face-sized
    (static,) = plan_crops(track([50, 150, 250, 350]), frame_size=(640, 480), mode="static")
    assert static.boxes[0, 2] - static.boxes[0, 0] > TIGHT_RATIO * 80
    with pytest.raises(ConfigError, match="crop must be"):
        ExtractConfig(crop="union")


def test_chunked_tracks_equal_the_pure_builder_and_tubes_are_continuous(crossing, gt_detector):
    path, truth = crossing
    info = probe(path)
    two = extract_tubes_in_memory(path, ExtractConfig(min_frames=32, chunk_frames=None),
                                  detector=gt_detector(truth))
    cfg = ExtractConfig(min_frames=32, chunk_frames=20, crop="follow")
    one = extract_tubes_in_memory(path, cfg, detector=gt_detector(truth))
    pure = build_tracks(one.detections, frame_size=(info.width, info.height), n_frames=info.n_frames,
                        detect_every=10)

    def key(tracks):
        return [(t.id, t.start, t.stop, t.frames.tolist(), t.boxes.round(2).tolist()) for t in tracks]

    assert key(one.tracks) == key(pure) == key(two.tracks)
    assert one.chunks["n_chunks"] == 5 and one.chunks["max_frames_held"] <= 21  # one chunk (+ its look-ahead)
    assert [(t.plan.track_id, t.plan.start, t.plan.stop) for t in one.tubes] == \
        [(t.plan.track_id, t.plan.start, t.plan.stop) for t in two.tubes]
    source = read_frames(path, list(range(info.n_frames)))
    for tube in one.tubes:
        assert len(tube.frames) == tube.plan.stop - tube.plan.start  # nothing missing or doubled at boundaries
        for k in range(0, len(tube.frames), 3):
            want = crop_frame(source[tube.plan.start + k], tube.plan.boxes[k], 256).astype(float)
            err = np.abs(tube.frames[k] - want).mean()
            assert err < 12, (tube.plan.track_id, k, err)  # YUV-plane crop + swscale vs RGB crop + Pillow
            for d in (-1, 1):  # ... and it is this frame, not a neighbour (the people move)
                if 0 <= k + d < len(tube.frames):
                    other = crop_frame(source[tube.plan.start + k + d], tube.plan.boxes[k], 256).astype(float)
                    assert err < 0.8 * np.abs(tube.frames[k] - other).mean(), (tube.plan.track_id, k, d)


def test_written_tubes_keep_frame_count_and_timestamps_across_chunks(crossing, gt_detector, tmp_path):
    import av

    path, truth = crossing
    m = extract_tubes(path, tmp_path / "out", ExtractConfig(min_frames=32, chunk_frames=30),
                      detector=gt_detector(truth))
    assert m["chunks"]["n_chunks"] == 4 and len(m["tubes"]) == 2
    src = probe(path)
    for t in m["tubes"]:
        assert sum(n for n, *_ in t["crop_boxes"]) == t["n_frames"] == t["stop_frame"] - t["start_frame"]
        with av.open(str(tmp_path / "out" / "crossing" / t["file"])) as c:
            s = c.streams.video[0]
            times = [float(f.pts * f.time_base) for f in c.decode(s)]
        assert len(times) == t["n_frames"]
        np.testing.assert_allclose(np.diff(times), 1 / src.fps, atol=1e-3)
        assert crop_box_at(t, t["start_frame"] + 31) == [int(v) for v in _run_box(t, 31)]


def _run_box(tube: dict, k: int) -> list:
    for n, *box in tube["crop_boxes"]:
        if k < n:
            return box
        k -= n
    raise AssertionError


def test_preview_draws_the_crop_of_the_frame_shown():
    tube = {"start_frame": 10, "stop_frame": 40, "n_frames": 30, "crop_box": [0, 0, 64, 64],
            "crop_boxes": [[10, 0, 0, 64, 64], [20, 100, 0, 164, 64]]}
    assert crop_box_at(tube, 10) == [0, 0, 64, 64]
    assert crop_box_at(tube, 25) == [100, 0, 164, 64]  # not the first frame's box
    assert crop_box_at(tube, 40) is None and crop_box_at(tube, 9) is None
    old = {"start_frame": 0, "stop_frame": 5, "crop_box": [1, 2, 3, 4]}  # an old manifest: one box
    assert crop_box_at(old, 3) == [1, 2, 3, 4]


def test_large_frames_get_shorter_chunks_or_a_clear_error():
    def info(w, h, fmt="yuv420p"):
        return VideoInfo("v.mp4", w, h, 30.0, None, 300, 0, "h264", fmt, 10.0)

    cfg = ExtractConfig()
    assert chunk_length(info(1280, 720), cfg) == 150
    full_hd = chunk_length(info(1920, 1080), cfg)
    assert 10 <= full_hd < 150 and full_hd % 10 == 0
    assert (full_hd + 1) * 1920 * 1080 * 1.5 <= cfg.chunk_memory_mb * 2**20
    four_k = chunk_length(info(3840, 2160), cfg)
    assert 10 <= four_k < full_hd and four_k % 10 == 0
    assert (four_k + 1) * 3840 * 2160 * 1.5 <= cfg.chunk_memory_mb * 2**20
    assert chunk_length(info(3840, 2160, "yuv420p10le"), ExtractConfig(chunk_memory_mb=512)) == four_k  # 2 B/sample
    with pytest.raises(VideoError, match="does not fit in chunk_memory_mb=256"):
        chunk_length(info(3840, 2160, "yuv420p10le"), cfg)
    with pytest.raises(ConfigError, match="chunk_frames"):
        ExtractConfig(chunk_frames=0)


def test_one_chunk_gives_exactly_the_two_pass_tubes(crossing, gt_detector):
    """When the video fits in one chunk, the single decode and the two passes plan the same crops, so they must
    cut the same pixels: what differs between them for longer videos is the per-chunk crop, nothing else."""
    path, truth = crossing
    one = extract_tubes_in_memory(path, ExtractConfig(min_frames=32), detector=gt_detector(truth))
    two = extract_tubes_in_memory(path, ExtractConfig(min_frames=32, chunk_frames=None), detector=gt_detector(truth))
    assert one.chunks["n_chunks"] == 1 and len(one.tubes) == len(two.tubes) == 2
    for a, b in zip(one.tubes, two.tubes):
        assert (a.plan.start, a.plan.stop) == (b.plan.start, b.plan.stop)
        assert np.array_equal(a.plan.boxes, b.plan.boxes)
        assert np.array_equal(a.frames, b.frames)


def test_a_tube_is_finished_when_it_ends_not_at_the_end_of_the_video(tmp_path, gt_detector):
    """A finished tube's encoder is flushed as soon as its track ends (a chunk later at most), so the encoders alive
    are those of the open tubes: with every tube kept open to the end, memory grew with the video's length
    (1297 -> 1625 MiB peak RSS from 10 s to 60 s on a portrait DFDC video, benchmarks/RESULTS.md)."""
    from facetubes.chunked import decode_once

    path = tmp_path / "enter_leave.mp4"
    truth = make_video(path, "enter_leave", width=320, height=240, n_frames=120, seed=3)  # p1: frames 36-84
    info = probe(path)
    events: list = []

    class Handle:
        def __init__(self, key):
            self.key, self.frames, self.finished = key, 0, False

    def write(h, frame):
        assert not h.finished, f"tube {h.key} got a frame after it was finished"
        h.frames += 1
        events.append(("frame", h.key))

    def finish(h):
        assert not h.finished, f"tube {h.key} finished twice"
        h.finished = True
        events.append(("finish", h.key, last_chunk[0]))

    last_chunk = [0]
    r = decode_once(path, info, ExtractConfig(min_frames=8, chunk_frames=20), gt_detector(truth),
                    open_tube=Handle, write=write, finish_tube=finish,
                    on_chunk=lambda n: last_chunk.__setitem__(0, last_chunk[0] + 1))
    handles = [h for _, _, h in r.tubes] + list(r.discarded)
    assert len(r.tubes) == 2 and all(h.finished for h in handles)
    (short,) = [h for tr, plan, h in r.tubes if plan.stop < info.n_frames]  # p1's tube, ending near frame 84
    finished_at = [e[2] for e in events if e[0] == "finish" and e[1] == short.key][0]
    # p1's last frame (83) is in the 5th chunk of 6: finished there or in the next, not at the end of the video
    assert finished_at <= 83 // 20 + 1 < r.stats["n_chunks"], (finished_at, r.stats)
    assert r.stats["max_open_tubes"] <= 2
