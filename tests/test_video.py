"""facetubes.video: probe, decoding (exactness, seeking, rotation, VFR, odd/10-bit/4K), atomic writing, bad inputs.

Truth comes from outside the code under test: the frames that were rendered before encoding, the frame rate and
timestamps that were asked for, and files damaged in known ways.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facetubes import synthetic, video
from facetubes.errors import OutputError, VideoError
from facetubes.video import VideoWriter, iter_av_frames, iter_frames, probe, read_frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """60 frames at 29.97 fps with short GOPs (seekable) and B-frames, plus the frames that were encoded."""
    frames = list(synthetic.render("one", width=192, height=144, n_frames=60, seed=4)[0])
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    video.write_video(path, frames, fps=30000 / 1001, crf=12, gop=12)
    return path, frames


@pytest.fixture(scope="module")
def decoded(clip: tuple[Path, list[np.ndarray]]) -> dict[int, np.ndarray]:
    return dict(iter_frames(clip[0]))


def test_probe_reports_what_was_written(clip: tuple[Path, list[np.ndarray]]) -> None:
    info = probe(clip[0])
    assert (info.width, info.height, info.n_frames, info.rotation) == (192, 144, 60, 0)
    assert info.fps_fraction == Fraction(30000, 1001)  # 29.97 stays 29.97, not 25 or 30
    assert info.duration == pytest.approx(60 * 1001 / 30000, abs=0.05)
    assert (info.codec, info.pix_fmt, info.n_frames_estimated) == ("h264", "yuv420p", False)
    assert info.to_dict()["fps_fraction"] == "30000/1001"


def test_iter_frames_gives_every_frame_close_to_the_source(clip, decoded) -> None:
    path, source = clip
    assert sorted(decoded) == list(range(60))
    assert all(decoded[i].shape == (144, 192, 3) and decoded[i].dtype == np.uint8 for i in decoded)
    assert min(psnr(decoded[i], source[i]) for i in range(60)) > 32
    # frame i is source frame i (not a neighbour): the match is much better than with the next frame
    assert psnr(decoded[30], source[30]) > psnr(decoded[30], source[31]) + 3


def test_start_stop_step_select_on_the_absolute_index(clip, decoded) -> None:
    got = list(iter_frames(clip[0], start=15, stop=50, step=10))
    assert [i for i, _ in got] == [20, 30, 40]
    assert all(np.array_equal(f, decoded[i]) for i, f in got)
    tail = list(iter_frames(clip[0], start=50))  # seeks to a keyframe; numbering stays exact
    assert [i for i, _ in tail] == list(range(50, 60))
    assert all(np.array_equal(f, decoded[i]) for i, f in tail)
    assert [i for i, _ in iter_av_frames(clip[0], step=25)] == [0, 25, 50]


def test_size_downscales_in_the_conversion(clip, decoded) -> None:
    (i, small), = list(iter_frames(clip[0], start=20, stop=21, size=(96, 72)))
    assert small.shape == (72, 96, 3)
    reference = decoded[20].reshape(72, 2, 96, 2, 3).mean(axis=(1, 3))
    assert np.abs(small - reference).mean() < 6
    gray = next(iter_frames(clip[0], format="gray"))[1]
    assert gray.shape == (144, 192)


def test_read_frames_is_exact_with_seeking_unsorted_and_repeated_indices(clip, decoded) -> None:
    path = clip[0]
    with video._Source(path, threads=0) as src:  # the file really allows seeking: the test covers that path
        plan = src._seek_plan(41)
    assert plan is not None and 24 <= plan[0] <= 41
    indices = [41, 30, 41, 59, 25, 40, 36]
    frames = read_frames(path, indices)
    assert frames.shape == (7, 144, 192, 3)
    for k, i in enumerate(indices):
        assert np.array_equal(frames[k], decoded[i]), i
    assert np.array_equal(read_frames(path, [3, 0])[0], decoded[3])  # from the start: no seek
    assert read_frames(path, []).shape == (0, 144, 192, 3)
    with pytest.raises(VideoError, match="frame 60 out of range"):
        read_frames(path, [5, 60])


def test_read_frames_is_exact_for_open_and_closed_gops_and_without_a_full_index(tmp_path, clip) -> None:
    source = clip[1][:40]
    fixed_b = "bframes=3:b-adapt=0:scenecut=0"  # B-frames at every GOP boundary
    cases: list[tuple[str, dict[str, str]]] = [
        ("closed.mp4", {"x264-params": fixed_b}),
        ("open.mp4", {"x264-params": "open-gop=1:" + fixed_b}),
        ("plain.mkv", {}),
    ]
    for name, opts in cases:
        path = tmp_path / name
        video.write_video(path, source, fps=25, gop=10, options=opts)
        every = dict(iter_frames(path))
        assert len(every) == 40
        picked = read_frames(path, [33, 11, 25])
        assert all(np.array_equal(f, every[i]) for f, i in zip(picked, [33, 11, 25]))
        with av.open(str(path)) as container:  # presentation order of the packets, independently of the code
            packets = [(p.pts, p.is_keyframe) for p in container.demux(video=0) if p.pts is not None]
        shown = sorted(pts for pts, _ in packets)
        with video._Source(path, threads=0) as src:
            plans = [src._seek_plan(k) for k in range(1, 40)]
        for plan in filter(None, plans):  # a seek target's decode position is its presentation index
            position, _, key_pts = plan
            assert packets[position] == (key_pts, True) and shown[position] == key_pts
        open_gop = any(key and shown.index(pts) != n for n, (pts, key) in enumerate(packets))
        assert open_gop == (name == "open.mp4")
        if name == "closed.mp4":
            assert any(plans)


@pytest.mark.parametrize("threads", [0, 1])
def test_sparse_decoding_skips_frames_and_yields_the_same_ones(tmp_path, clip, threads: int) -> None:
    source = clip[1][:40]
    cases = {  # name -> (x264 options, can the decoder skip anything?)
        "bframes.mp4": ({"x264-params": "bframes=3:b-pyramid=none:b-adapt=0:scenecut=0"}, True),
        "open.mp4": ({"x264-params": "open-gop=1:bframes=3:b-adapt=0:scenecut=0"}, True),
        "no_bframes.mp4": ({"x264-params": "bframes=0"}, False),
        "plain.mkv": ({}, False),  # no sample index: timestamps cannot be trusted for numbering
    }
    for name, (opts, skips) in cases.items():
        path = tmp_path / name
        video.write_video(path, source, fps=25, gop=10, options=opts)
        for stop in (None, 23):
            full = list(iter_frames(path, step=10, stop=stop, size=(96, 72), threads=threads))
            sparse = list(iter_frames(path, step=10, stop=stop, size=(96, 72), threads=threads, sparse=True))
            assert [i for i, _ in sparse] == [i for i, _ in full] == [0, 10, 20, 30][: 3 if stop else 4], name
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(full, sparse)), name
        with video._Source(path, threads=threads) as src:
            it = src.sparse_frames(lambda i: i % 10 == 0)
            decoded = None if it is None else [i for i, _ in it]
        if not skips and name.endswith(".mkv"):
            assert decoded is None
        elif skips:  # non-reference B-frames that are not selected are never decoded
            assert decoded is not None and {0, 10, 20, 30} <= set(decoded) and len(decoded) < 30, (name, decoded)
        else:
            assert decoded == list(range(40)), name


def test_sparse_decoding_falls_back_to_full_decoding_when_timestamps_do_not_match(tmp_path, clip,
                                                                                   monkeypatch) -> None:
    path = tmp_path / "b.mp4"
    video.write_video(path, clip[1][:30], fps=25, gop=10)
    full = list(iter_frames(path, step=10))
    monkeypatch.setattr(video._Source, "_presentation_order", lambda self: {})  # no frame can be numbered
    sparse = list(iter_frames(path, step=10, sparse=True))
    assert [i for i, _ in sparse] == [i for i, _ in full] == [0, 10, 20]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(full, sparse))


def test_sparse_decoding_of_a_rotated_video_matches(tmp_path) -> None:
    path = tmp_path / "rot90.mp4"
    synthetic.make_video(path, "one", width=128, height=96, n_frames=30, rotation=90, seed=3)
    full = list(iter_frames(path, step=10))
    sparse = list(iter_frames(path, step=10, sparse=True))
    assert [i for i, _ in sparse] == [0, 10, 20]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(full, sparse))
    assert full[0][1].shape == (128, 96, 3)


def test_variable_frame_rate_keeps_timestamps_and_exact_access(tmp_path) -> None:
    path = tmp_path / "vfr.mp4"
    truth = synthetic.make_video(path, "one", width=160, height=120, n_frames=40, vfr=True, gop=10)
    info = probe(path)
    assert info.n_frames == 40 and truth.times is not None
    assert info.fps == pytest.approx(40 / (truth.times[-1] + 1 / info.fps), rel=0.05)
    times = [f.time for _, f in iter_av_frames(path)]
    assert np.allclose(times, truth.times, atol=1e-3)
    assert np.ptp(np.diff(times)) > 0.5 / 30  # really variable
    every = dict(iter_frames(path))
    picked = read_frames(path, [35, 22])
    assert np.array_equal(picked[0], every[35]) and np.array_equal(picked[1], every[22])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_videos_come_out_upright(tmp_path, rotation: int) -> None:
    path = tmp_path / f"rot{rotation}.mp4"
    upright_w, upright_h = (96, 128) if rotation % 180 else (128, 96)
    synthetic.make_video(path, "one", width=128, height=96, n_frames=6, rotation=rotation, seed=2)
    source = list(synthetic.render("one", width=upright_w, height=upright_h, n_frames=6, seed=2)[0])
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (rotation, upright_w, upright_h)
    assert info.stored_size == (128, 96)
    frames = dict(iter_frames(path))
    assert frames[3].shape == (upright_h, upright_w, 3)
    assert psnr(frames[3], source[3]) > 30
    small = read_frames(path, [3], size=(upright_w // 2, upright_h // 2))[0]
    assert small.shape == (upright_h // 2, upright_w // 2, 3)
    raw = dict(iter_av_frames(path))[3]
    assert (raw.width, raw.height) == (128, 96)  # raw frames are as stored


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_upright_boxes_map_to_stored_crops(rotation: int) -> None:
    rng = np.random.default_rng(rotation)
    upright = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    stored = video.rotate_array(upright, (360 - rotation) % 360)
    assert np.array_equal(video.rotate_array(stored, rotation), upright)
    box = np.array([[5, 7, 21, 19]], np.float32)
    s = video.upright_to_stored_boxes(box, rotation, (40, 30))[0].astype(int)
    crop = video.rotate_array(stored[s[1] : s[3], s[0] : s[2]], rotation)
    assert np.array_equal(crop, upright[7:19, 5:21])


def test_odd_size_is_rejected_for_420_and_works_in_444(tmp_path) -> None:
    with pytest.raises(VideoError, match=r"odd\.mp4: yuv420p needs an even width, got 321x241"):
        VideoWriter(tmp_path / "odd.mp4", fps=30, width=321, height=241)
    assert list(tmp_path.iterdir()) == []
    truth = synthetic.make_video(tmp_path / "odd.mp4", "one", width=321, height=241, n_frames=5)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, info.pix_fmt) == (321, 241, "yuv444p") == (truth.width, truth.height, "yuv444p")
    assert next(iter_frames(tmp_path / "odd.mp4"))[1].shape == (241, 321, 3)


def test_ten_bit_input_decodes_to_8_bit_rgb(tmp_path) -> None:
    path = tmp_path / "ten.mp4"
    synthetic.make_video(path, "one", width=128, height=96, n_frames=4, pix_fmt="yuv420p10le", seed=1)
    source = list(synthetic.render("one", width=128, height=96, n_frames=4, seed=1)[0])
    assert probe(path).pix_fmt == "yuv420p10le"
    assert next(iter_av_frames(path))[1].format.name == "yuv420p10le"
    frame = read_frames(path, [2])[0]
    assert frame.dtype == np.uint8 and psnr(frame, source[2]) > 30


def test_4k_input_downscales(tmp_path) -> None:
    big = np.zeros((2160, 3840, 3), np.uint8)
    big[:1080, :1920] = (255, 0, 0)
    path = tmp_path / "uhd.mp4"
    video.write_video(path, [big, big], fps=24, preset="ultrafast")
    info = probe(path)
    assert (info.width, info.height, info.n_frames) == (3840, 2160, 2)
    small = next(iter_frames(path, size=(384, 216)))[1]
    assert small.shape == (216, 384, 3)
    assert small[50, 50, 0] > 200 and small[50, 50, 1] < 50 and small[160, 300].max() < 40


@pytest.mark.parametrize("fps,expected", [
    (29.97, Fraction(30000, 1001)), (Fraction(24000, 1001), Fraction(24000, 1001)), (25, Fraction(25)),
    ("60000/1001", Fraction(60000, 1001)), (12.5, Fraction(25, 2)),
])
def test_writer_keeps_the_frame_rate(tmp_path, fps, expected) -> None:
    assert video.as_fraction(fps) == expected
    path = tmp_path / "rate.mp4"
    video.write_video(path, [np.zeros((32, 32, 3), np.uint8)] * 3, fps=fps, preset="ultrafast")
    assert probe(path).fps_fraction == expected


def test_writer_is_atomic(tmp_path) -> None:
    target = tmp_path / "tube.mp4"
    frame = np.zeros((64, 64, 3), np.uint8)
    with VideoWriter(target, fps=30, width=64, height=64) as writer:
        for _ in range(40):  # enough to get past the encoder's look-ahead, so packets reach the file
            writer.write(frame)
        assert not target.exists()
        assert [p.name for p in tmp_path.iterdir()] == [writer.tmp_path.name]
        assert writer.tmp_path.name.startswith("tube.tmp") and writer.tmp_path.suffix == ".mp4"
    assert [p.name for p in tmp_path.iterdir()] == ["tube.mp4"] and probe(target).n_frames == 40

    other = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(other, fps=30, width=64, height=64) as writer:
            writer.write(frame)
            raise RuntimeError("boom")
    writer = VideoWriter(other, fps=30, width=64, height=64)
    for _ in range(40):
        writer.write(frame)
    assert writer.tmp_path.exists()
    writer.abort()
    with pytest.raises(VideoError, match="no frames were written"):
        with VideoWriter(other, fps=30, width=64, height=64):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["tube.mp4"]


def test_writer_rejects_bad_frames_and_folders(tmp_path) -> None:
    with VideoWriter(tmp_path / "a.mp4", fps=30, width=64, height=48) as writer:
        with pytest.raises(ValueError, match=r"expected a \(48, 64, 3\) uint8 frame"):
            writer.write(np.zeros((64, 48, 3), np.uint8))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "a.mp4", fps=30, width=64, height=48)
    with pytest.raises(VideoError, match="rotation"):
        VideoWriter(tmp_path / "b.mp4", fps=30, width=64, height=48, rotation=45)


def test_write_frame_reencodes_decoded_frames(clip, decoded, tmp_path) -> None:
    out = tmp_path / "copy.mp4"
    with VideoWriter(out, fps=probe(clip[0]).fps_fraction, width=192, height=144, crf=10) as writer:
        for _, frame in iter_av_frames(clip[0], stop=10):
            writer.write_frame(frame)
    copy = dict(iter_frames(out))
    assert len(copy) == 10 and psnr(copy[7], decoded[7]) > 35


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synthetic.make_bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", [k for k, v in synthetic.BAD_INPUT_REASONS.items() if v])
def test_bad_inputs_raise_one_line_video_errors(bad_inputs, name: str) -> None:
    path = bad_inputs[name]
    reason = synthetic.BAD_INPUT_REASONS[name] or ""
    for call in (lambda: probe(path), lambda: list(iter_frames(path)), lambda: read_frames(path, [0])):
        with pytest.raises(VideoError) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_valid_bad_inputs_and_missing_paths(bad_inputs, tmp_path) -> None:
    assert probe(bad_inputs["short"]).n_frames == 30
    assert probe(bad_inputs["no_faces"]).n_frames == 70
    assert probe(bad_inputs["short"]).width == 160
    with pytest.raises(VideoError, match="missing.mp4: not found"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="is a directory"):
        probe(tmp_path)
    with pytest.raises(VideoError, match="no video stream \\(found: audio\\)"):
        probe(bad_inputs["audio_only"])


def test_truncated_faststart_file_is_detected(tmp_path, clip) -> None:
    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 192, 144, "yuv420p"
        for frame in clip[1][:20]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert probe(path).n_frames == 20
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(VideoError, match="cut.mp4: truncated \\('mdat' box"):
        probe(cut)


def test_writer_finish_flushes_early_then_close_installs_or_abort_deletes(tmp_path):
    import av

    frames = [np.full((32, 32, 3), 10 * k, np.uint8) for k in range(5)]
    for end in ("close", "abort"):
        w = VideoWriter(tmp_path / f"{end}.mp4", fps=25, width=32, height=32)
        for f in frames:
            w.write_frame(av.VideoFrame.from_ndarray(f, format="rgb24"))
        w.finish()
        assert w.tmp_path.stat().st_size > 0 and not w.path.exists()  # a complete file, still under its temp name
        with pytest.raises(ValueError, match="closed"):
            w.write_frame(av.VideoFrame.from_ndarray(frames[0], format="rgb24"))
        w.finish()  # twice is harmless
        getattr(w, end)()
        assert not w.tmp_path.exists()
        assert w.path.exists() == (end == "close")
    with av.open(str(tmp_path / "close.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
