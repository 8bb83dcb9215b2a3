"""Face tubes from one video: detect -> tracks -> crop plans -> tubes (MP4 files or in-memory arrays).

Default (``ExtractConfig.chunk_frames`` set): every frame is decoded once, in chunks of frames, memory bounded
by one chunk (:mod:`facetubes.chunked`, driven by :func:`analyse_once`).

``chunk_frames=None``: the two-pass path, kept for the published whole-track static crop (and as the reference
the single pass is checked against). Two streaming passes, memory independent of the video's length:

1. every ``detect_every``-th frame is converted (downscaled inside swscale) and detected in batches;
2. after the tracks are known, the frames they cover are decoded once more, cropped and either encoded (one
   writer per tube, all open at once) or collected into arrays.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from . import __version__
from .config import ExtractConfig
from .crops import CropPlan, crop_frame, plan_crops
from .detect import Detector, detect_frames, detector_scale, make_detector, rescale_result, scaled_size, to_detections
from .errors import OutputError, VideoError
from .landmarks import track_landmark_fields, tube_landmark_fields
from .manifest import MANIFEST_NAME, MANIFEST_VERSION, is_done, process_umask, write_manifest
from .tracks import Detections, Track, build_tracks
from .video import VideoInfo, VideoWriter, iter_av_frames, iter_frames, probe, rotate_array, upright_to_stored_boxes

LOOSE_THRESHOLDS = (0.5, 0.5, 0.5)


@dataclass
class Tube:
    """One tube in memory: ``frames`` is ``(T, size, size, 3)`` uint8 RGB, frame ``i`` is source frame
    ``plan.start + i``."""

    track: Track
    plan: CropPlan
    frames: np.ndarray

    @property
    def mean_prob(self) -> float:
        return self.track.mean_prob


@dataclass
class VideoTubes:
    """The result of :func:`extract_tubes_in_memory`."""

    info: VideoInfo
    tubes: list[Tube]
    detections: list[Detections]
    tracks: list[Track] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    status: str = "ok"
    """As in ``tubes.json``: ``ok``, ``no_face``, ``no_tube`` or ``too_short``."""
    note: str = ""
    """Why there is no tube (empty when ``status`` is ``ok``)."""
    chunks: dict = field(default_factory=dict)
    """Single decode: ``n_chunks``, ``chunk_frames``, ``max_frames_held``, ``n_relinked``; empty for two passes."""


@dataclass
class _Analysis:
    info: VideoInfo
    detections: list[Detections]
    tracks: list[Track]
    plans: list[tuple[Track, CropPlan]]
    scale: float
    thresholds: tuple[float, ...]
    status: str
    note: str
    timings: dict
    chunks: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# pass 1: detection

SPARSE_DECODE = True
"""Pass 1 lets the decoder skip frames that are neither detected on nor referenced (``iter_frames(sparse=True)``).
The detected frames are identical; a switch only for benchmarks' A/B runs."""


def detect_video(path: str | os.PathLike, info: VideoInfo, config: ExtractConfig, detector: Detector,
                 *, scale: Optional[float] = None) -> tuple[list[Detections], float]:
    """Run ``detector`` on every ``config.detect_every``-th frame (streaming, batched). Returns the detections in
    full-resolution upright pixels and the scale used."""
    if scale is None:
        scale = detector_scale(info.width, info.height, min_face=config.min_face,
                               detector_min_face=getattr(detector, "min_face_size", 20.0),
                               long_side=config.detect_long_side)
    size = scaled_size(info.width, info.height, scale)
    # exact per-axis scale after rounding to even sizes
    sx, sy = size[0] / info.width, size[1] / info.height
    stop = config.first_frames
    batch_size = config.detect_batch or (16 if str(config.device).startswith("cuda") else 1)
    detections: list[Detections] = []
    batch: list[np.ndarray] = []
    batch_idx: list[int] = []

    def flush() -> None:
        if not batch:
            return
        from .precision import full_fp32

        with full_fp32():  # no TF32: boxes as on CPU (facetubes.precision)
            results = [rescale_result(r, sx, sy) for r in detect_frames(detector, np.stack(batch))]
        detections.extend(to_detections(batch_idx, results, 1.0, config.min_prob))
        batch.clear()
        batch_idx.clear()

    frames = iter_frames(path, stop=stop, step=config.detect_every, size=size, sparse=SPARSE_DECODE,
                         threads=config.decode_threads)
    for idx, frame in prefetch(frames):
        batch.append(frame)
        batch_idx.append(idx)
        if len(batch) >= batch_size:
            flush()
    flush()
    return detections, scale


def prefetch(items: Iterable, depth: int = 8) -> Iterator:
    """Iterate ``items`` in a background thread, ``depth`` items ahead.

    PyAV releases the GIL while FFmpeg decodes and converts, and torch while it computes, so decoding the next
    frames overlaps detection (pass 1) and cropping + encoding (pass 2) instead of waiting for them. Exceptions
    from the producer are re-raised in the consumer; stopping early stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(_Raised(e))

    t = threading.Thread(target=produce, name="facetubes-decode", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


@dataclass
class _Raised:
    error: BaseException


def analyse(path: str | os.PathLike, config: ExtractConfig, detector: Optional[Detector] = None,
            info: Optional[VideoInfo] = None) -> _Analysis:
    """Probe, detect (with the configured retries), build tracks and crop plans. No output is written."""
    t0 = time.perf_counter()
    info = info or probe(path)
    n_frames = info.n_frames if config.first_frames is None else min(info.n_frames, config.first_frames)
    timings: dict = {}
    if n_frames < config.min_frames:
        return _Analysis(info, [], [], [], 0.0, tuple(config.thresholds), "too_short",
                         f"video has {n_frames} frames, fewer than min_frames={config.min_frames}", timings)
    detector = detector or make_detector(config.device, config.thresholds, name=config.detector,
                                         weights=config.detector_weights)
    with _detector_threads(config):
        return _analyse(path, config, detector, info, n_frames, timings, t0)


@contextlib.contextmanager
def _detector_threads(config: ExtractConfig):
    """Run CPU detection with ``config.detector_threads`` torch threads, restoring the setting afterwards.

    FFmpeg decodes in its own threads during the detection pass; torch's OpenMP threads spinning on the same
    cores made extraction 1.6x slower on 2 cores (benchmarks/RESULTS.md), so one torch thread is the default.
    """
    if str(config.device).startswith("cuda") or not config.detector_threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(config.detector_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _analyse(path, config: ExtractConfig, detector: Detector, info: VideoInfo, n_frames: int, timings: dict,
             t0: float) -> _Analysis:
    if hasattr(detector, "thresholds"):
        detector.thresholds = tuple(config.thresholds)  # type: ignore[attr-defined]
    detections, scale = detect_video(path, info, config, detector)
    thresholds = tuple(config.thresholds)
    if config.retry and not any(len(d.boxes) for d in detections):
        # published inference: retry at twice the resolution, then with looser thresholds
        if scale < 1.0:
            detections, scale = detect_video(path, info, config, detector, scale=min(1.0, 2 * scale))
        if not any(len(d.boxes) for d in detections) and hasattr(detector, "thresholds"):
            detector.thresholds = LOOSE_THRESHOLDS  # type: ignore[attr-defined]
            thresholds = LOOSE_THRESHOLDS
            try:
                detections, scale = detect_video(path, info, config, detector, scale=scale)
            finally:
                detector.thresholds = tuple(config.thresholds)  # type: ignore[attr-defined]
    timings["decode_detect_s"] = round(time.perf_counter() - t0, 4)

    tracks = build_tracks(detections, frame_size=(info.width, info.height), n_frames=n_frames,
                          detect_every=config.detect_every, max_gap=config.max_gap)
    if config.top_k is not None:
        tracks = sorted(tracks, key=lambda t: -t.mean_prob)[: config.top_k]
        tracks.sort(key=lambda t: (t.start, t.id))
    plans: list[tuple[Track, CropPlan]] = []
    for tr in tracks:
        for plan in plan_crops(tr, frame_size=(info.width, info.height), mode=config.crop, margin=config.margin,
                               follow_sigma=config.follow_sigma, max_frames=config.max_frames,
                               long_tracks=config.long_tracks):
            if plan.stop - plan.start >= config.min_frames:
                plans.append((tr, plan))
    if plans:
        status, note = "ok", ""
    elif not any(len(d.boxes) for d in detections):
        status, note = "no_face", "no face detected"
    else:
        status, note = "no_tube", f"faces found, but no track spans min_frames={config.min_frames} frames"
    return _Analysis(info, detections, tracks, plans, scale, thresholds, status, note, timings)


# ----------------------------------------------------------------------------------------------------------------
# pass 2: crop


_YUV420 = frozenset({"yuv420p", "yuvj420p"})


def _plane(plane) -> np.ndarray:
    """Writable ``(height, width)`` uint8 view of one plane of an ``av.VideoFrame`` (line padding dropped)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def crop_yuv420(frame, box: Sequence[int], rotation: int = 0):
    """Crop ``box`` (stored-frame pixels ``x1, y1, x2, y2``, even sides) out of a YUV 4:2:0 ``av.VideoFrame``
    directly in its planes, padding outside the frame with black, and rotate it upright.

    No colour conversion happens and the full frame is never converted to RGB: at 1080p this is what makes the
    second pass cheap. Returns a new ``av.VideoFrame`` (same pixel format, colorspace and range).
    """
    import av

    x1, y1, x2, y2 = (int(v) for v in box)
    x1 -= x1 % 2
    y1 -= y1 % 2
    w, h = (x2 - x1) + (x2 - x1) % 2, (y2 - y1) + (y2 - y1) % 2
    ow, oh = (h, w) if rotation in (90, 270) else (w, h)
    out = av.VideoFrame(ow, oh, frame.format.name)
    full_range = frame.format.name == "yuvj420p" or int(frame.color_range or 0) == 2
    for i, (sub, fill) in enumerate(((1, 0 if full_range else 16), (2, 128), (2, 128))):
        src = _plane(frame.planes[i])
        bx1, by1, bw, bh = x1 // sub, y1 // sub, w // sub, h // sub
        ix1, iy1 = max(bx1, 0), max(by1, 0)
        ix2, iy2 = min(bx1 + bw, src.shape[1]), min(by1 + bh, src.shape[0])
        if (ix1, iy1, ix2, iy2) == (bx1, by1, bx1 + bw, by1 + bh):
            region = src[by1:by1 + bh, bx1:bx1 + bw]
        else:
            region = np.full((bh, bw), fill, np.uint8)
            if ix2 > ix1 and iy2 > iy1:
                region[iy1 - by1:iy2 - by1, ix1 - bx1:ix2 - bx1] = src[iy1:iy2, ix1:ix2]
        _plane(out.planes[i])[:] = rotate_array(region, rotation) if rotation else region
    out.colorspace = frame.colorspace
    out.color_range = frame.color_range
    return out


def crop_pass(path: str | os.PathLike, info: VideoInfo, plans: Sequence[CropPlan], size: int,
              sink: Callable[[int, int, object], None], *, pix_fmt: str = "rgb24", threads: int = 0) -> list[int]:
    """Decode the frames covered by ``plans`` once and call ``sink(plan_index, frame_index, frame)`` for every
    plan active at that frame, in frame order; ``frame`` is a ``size x size`` ``av.VideoFrame`` in ``pix_fmt``.
    Returns the number of frames delivered per plan.

    YUV 4:2:0 sources (nearly all H.264) are cropped in their planes and only the small crop is scaled and
    converted; other formats (10-bit, 4:4:4, RGB) go through an upright RGB frame and :func:`crop_frame`.
    """
    import av.video.reformatter

    counts = [0] * len(plans)
    if not plans:
        return counts
    start = min(p.start for p in plans)
    stop = max(p.stop for p in plans)
    stored = [upright_to_stored_boxes(p.boxes, info.rotation, (info.width, info.height)).round().astype(int)
              for p in plans]
    # one scaler per plan: a fresh frame's .reformat() would build a new SwsContext every call (4 ms each)
    scalers = [av.video.reformatter.VideoReformatter() for _ in plans]
    for idx, frame in prefetch(iter_av_frames(path, start=start, stop=stop, threads=threads)):
        rgb: list = []
        for k, p in enumerate(plans):
            if not p.start <= idx < p.stop:
                continue
            small = cut_frame(frame, p.boxes[idx - p.start], stored[k][idx - p.start], info.rotation, size,
                              pix_fmt, scalers[k], rgb)
            sink(k, idx, small)
            counts[k] += 1
    return counts


def cut_frame(frame, box: np.ndarray, stored_box: np.ndarray, rotation: int, size: int, pix_fmt: str, scaler,
              rgb_cache: list):
    """One tube frame: ``box`` (upright pixels; ``stored_box`` the same box in stored pixels) cut out of the
    decoded ``av.VideoFrame`` and scaled to ``size x size`` ``pix_fmt`` by ``scaler`` (a ``VideoReformatter``
    kept per tube). ``rgb_cache``: an empty list per source frame, holding its upright RGB array for the
    non-4:2:0 path so several tubes convert it once."""
    import av

    if frame.format.name in _YUV420:
        return scaler.reformat(crop_yuv420(frame, stored_box, rotation), width=size, height=size, format=pix_fmt)
    if not rgb_cache:
        rgb = frame.to_ndarray(format="rgb24")
        rgb_cache.append(rotate_array(rgb, rotation) if rotation else rgb)
    small = av.VideoFrame.from_ndarray(crop_frame(rgb_cache[0], box, size), format="rgb24")
    return small if pix_fmt == "rgb24" else small.reformat(format=pix_fmt)


def extract_tubes_in_memory(path: str | os.PathLike, config: Optional[ExtractConfig] = None, *,
                            detector: Optional[Detector] = None) -> VideoTubes:
    """Tubes of one video as arrays (no files): what inference needs. See :func:`extract_tubes`."""
    config = config or ExtractConfig.for_inference()
    if config.chunk_frames is not None:
        parts: dict[int, list] = {}

        def open_tube(key: int) -> list:
            return parts.setdefault(key, [])

        a, handles = analyse_once(path, config, detector, open_tube=open_tube,
                                  write=lambda frames, frame: frames.append(frame.to_ndarray(format="rgb24")))
        empty = np.zeros((0, config.size, config.size, 3), np.uint8)
        tubes = [Tube(tr, p, np.stack(h) if h else empty) for (tr, p), h in zip(a.plans, handles)]
        return VideoTubes(a.info, tubes, a.detections, a.tracks, a.timings, a.status, a.note, a.chunks)
    a = analyse(path, config, detector)
    t0 = time.perf_counter()
    plans = [p for _, p in a.plans]
    arrays = [np.zeros((p.stop - p.start, config.size, config.size, 3), np.uint8) for p in plans]

    def sink(k: int, idx: int, frame) -> None:
        arrays[k][idx - plans[k].start] = frame.to_ndarray(format="rgb24")

    counts = crop_pass(path, a.info, plans, config.size, sink, threads=config.decode_threads)
    tubes = [Tube(tr, p, arr[:n]) for (tr, p), arr, n in zip(a.plans, arrays, counts) if n > 0]
    a.timings["crop_s"] = round(time.perf_counter() - t0, 4)
    return VideoTubes(a.info, tubes, a.detections, a.tracks, a.timings, a.status, a.note)


def analyse_once(path, config: ExtractConfig, detector: Optional[Detector], *, open_tube: Callable[[int], object],
                 write: Callable[[object, object], None], info: Optional[VideoInfo] = None,
                 pix_fmt: str = "rgb24", finish_tube: Optional[Callable[[object], None]] = None,
                 ) -> tuple[_Analysis, list]:
    """The single-decode path (:mod:`facetubes.chunked`) with the retries of :func:`analyse`: returns the
    analysis (its ``plans`` are the tubes that were cut) and, per plan, the handle ``open_tube`` made for it.
    Handles of tubes that were discarded (too short, not in ``top_k``, a retry's) go to ``discard``."""
    from .chunked import decode_once

    t0 = time.perf_counter()
    info = info or probe(path)
    n_frames = info.n_frames if config.first_frames is None else min(info.n_frames, config.first_frames)
    if n_frames < config.min_frames:
        return _Analysis(info, [], [], [], 0.0, tuple(config.thresholds), "too_short",
                         f"video has {n_frames} frames, fewer than min_frames={config.min_frames}", {}), []
    detector = detector or make_detector(config.device, config.thresholds)
    thresholds = tuple(config.thresholds)
    if hasattr(detector, "thresholds"):
        detector.thresholds = thresholds  # type: ignore[attr-defined]

    def run(scale: Optional[float]):
        return decode_once(path, info, config, detector, open_tube=open_tube, write=write, scale=scale,
                           finish_tube=finish_tube, threads=config.decode_threads, pix_fmt=pix_fmt)

    with _detector_threads(config):
        r = run(None)
        found = lambda res: any(len(d.boxes) for d in res.detections)  # noqa: E731
        if config.retry and not found(r):
            # published inference: retry at twice the resolution, then with looser thresholds (decodes again,
            # but only for a video in which no face was found)
            if r.scale < 1.0:
                r = run(min(1.0, 2 * r.scale))
            if not found(r) and hasattr(detector, "thresholds"):
                detector.thresholds = LOOSE_THRESHOLDS  # type: ignore[attr-defined]
                thresholds = LOOSE_THRESHOLDS
                try:
                    r = run(r.scale)
                finally:
                    detector.thresholds = tuple(config.thresholds)  # type: ignore[attr-defined]
    for h in r.discarded:
        _discard(h)
    plans = [(tr, p) for tr, p, _ in r.tubes]
    tracks = r.tracks
    if config.top_k is not None:
        tracks = sorted(tracks, key=lambda t: -t.mean_prob)[: config.top_k]
        tracks.sort(key=lambda t: (t.start, t.id))
    if plans:
        status, note = "ok", ""
    elif not any(len(d.boxes) for d in r.detections):
        status, note = "no_face", "no face detected"
    else:
        status, note = "no_tube", f"faces found, but no track spans min_frames={config.min_frames} frames"
    timings = dict(r.timings)
    timings["decode_detect_crop_s"] = round(time.perf_counter() - t0, 4)
    return (_Analysis(info, r.detections, tracks, plans, r.scale, thresholds, status, note, timings, r.stats),
            [h for _, _, h in r.tubes])


def _discard(handle) -> None:
    abort = getattr(handle, "abort", None)
    if abort is not None:
        abort()


def video_stem(path: str | os.PathLike) -> str:
    return Path(path).stem


def extract_tubes(path: str | os.PathLike, out_dir: str | os.PathLike, config: Optional[ExtractConfig] = None, *,
                  detector: Optional[Detector] = None, stem: Optional[str] = None,
                  extra: Optional[dict] = None) -> dict:
    """Extract the face tubes of one video into ``out_dir/<stem>/``: ``<stem>_t<k>.mp4`` per tube and
    ``tubes.json``. Returns the manifest (also for videos with no face: zero tubes is a normal result).

    The video's folder is assembled in a hidden temporary folder and renamed into place, so a killed job never
    leaves a half-written tube; an existing folder for the video is replaced.
    Raises :class:`VideoError` for unreadable input and :class:`OutputError` when ``out_dir`` is not writable.
    ``extra``: fields added to the manifest (the batch job's ``boxes_from_original`` record of a fallback).
    """
    config = config or ExtractConfig()
    path = Path(path)
    stem = stem or video_stem(path)
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    info = probe(path)  # fail on bad input before touching the output
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(out_dir, stem)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{stem}-", dir=out_dir))
        work.chmod(0o777 & ~process_umask())  # mkdtemp makes 0700 folders
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot write output ({e.strerror or e})") from None
    try:
        if config.chunk_frames is not None:
            a, names, written = _write_tubes_once(path, info, config, detector, stem, work)
        else:
            a = analyse(path, config, detector, info=info)
            t0 = time.perf_counter()
            plans = [p for _, p in a.plans]
            names = [_tube_name(stem, p, a.plans) for p in plans]
            written = _write_tubes(path, a.info, plans, names, work, config)
            a.timings["crop_encode_s"] = round(time.perf_counter() - t0, 4)
        a.timings["total_s"] = round(time.perf_counter() - t_start, 4)
        manifest = _manifest(path, stem, a, names, written, config, detector)
        manifest.update(extra or {})
        write_manifest(work, manifest)
        _install_dir(work, out_dir / stem)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _remove_stale(out_dir: Path, stem: str) -> None:
    """Remove what a killed earlier attempt at this video left behind (hidden, never a finished result)."""
    for pattern in (f".tmp-{glob.escape(stem)}-" + "?" * 8, f".old-{glob.escape(stem)}-*-*"):
        for p in out_dir.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def _tube_name(stem: str, plan: CropPlan, plans: Sequence[tuple[Track, CropPlan]]) -> str:
    split = sum(1 for _, p in plans if p.track_id == plan.track_id) > 1 or plan.part > 0
    return f"{stem}_t{plan.track_id}" + (f"p{plan.part}" if split else "")


def tube_writer(path: Path, info: VideoInfo, config: ExtractConfig) -> VideoWriter:
    """The writer of one tube of ``info``'s video: ``config``'s size and encoder settings, the source's exact frame
    rate, one x264 thread (at 256 px its threading costs more than it gives, and the decoder is using the cores;
    A/B: 1.80 s vs 2.02 s per 1080p video)."""
    fps = getattr(info, "fps_fraction", None) or info.fps
    return VideoWriter(path, fps=fps, width=config.size, height=config.size, crf=config.crf, pix_fmt=config.pix_fmt,
                       preset=config.preset, gop=config.keyint, threads=1)


def _write_tubes(path: Path, info: VideoInfo, plans: Sequence[CropPlan], names: Sequence[str], work: Path,
                 config: ExtractConfig) -> list[int]:
    """Encode every tube in one decode pass (:func:`tube_writer` per tube, all open at once)."""
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(tube_writer(work / f"{n}.mp4", info, config)) for n in names]
        counts = crop_pass(path, info, plans, config.size, lambda k, _i, frame: writers[k].write_frame(frame),
                           pix_fmt=config.pix_fmt, threads=config.decode_threads)
    return counts


def _write_tubes_once(path: Path, info: VideoInfo, config: ExtractConfig, detector: Optional[Detector], stem: str,
                      work: Path) -> tuple[_Analysis, list[str], list[int]]:
    """The single-decode path for files: one writer per tube, opened when the tube starts under a temporary name
    and renamed once the video is done and the tube's final name (track id, part) is known."""
    writers: list[VideoWriter] = []

    def open_tube(key: int) -> VideoWriter:
        w = tube_writer(work / f".tube{key}.mp4", info, config)
        writers.append(w)
        return w

    try:
        a, handles = analyse_once(path, config, detector, open_tube=open_tube,
                                  write=lambda w, frame: w.write_frame(frame), info=info, pix_fmt=config.pix_fmt,
                                  finish_tube=lambda w: w.finish())
        names = [_tube_name(stem, p, a.plans) for _, p in a.plans]
        written = []
        for w, name in zip(handles, names):
            w.close()
            written.append(w.frames_written)
            os.replace(w.path, work / f"{name}.mp4")
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return a, names, written


def _install_dir(work: Path, final: Path) -> None:
    """Move the finished temporary folder into place, replacing an older result for the same video."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(final, old)
    os.replace(work, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _manifest(path: Path, stem: str, a: _Analysis, names: Sequence[str], written: Sequence[int],
              config: ExtractConfig, detector: Optional[Detector]) -> dict:
    info = a.info
    tubes = []
    for (tr, plan), name, n in zip(a.plans, names, written):
        sel = (tr.frames >= plan.start) & (tr.frames < plan.stop)
        tubes.append({
            "tube": name,
            "file": f"{name}.mp4",
            "track": int(plan.track_id),
            "part": int(plan.part),
            "start_frame": int(plan.start),
            "stop_frame": int(plan.start + n),
            "n_frames": int(n),
            "mean_prob": round(float(tr.probs[sel].mean()) if sel.any() else tr.mean_prob, 6),
            "crop_box": [int(v) for v in plan.boxes[0]],
            "crop_boxes": _compress_boxes(plan.boxes),
            "detections": {
                "frames": [int(f) for f in tr.frames[sel]],
                "boxes": [[round(float(v), 1) for v in b] for b in tr.boxes[sel]],
                "probs": [round(float(p), 4) for p in tr.probs[sel]],
            },
            **tube_landmark_fields(tr, plan.start, plan.boxes[:n], config.size),
        })
    return {
        "version": MANIFEST_VERSION,
        "facetubes": __version__,
        "video": stem,
        "source": str(path),
        "status": a.status,
        "note": a.note,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "n_frames": info.n_frames,
        "rotation": info.rotation,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
        "detector": {
            "name": getattr(detector, "name", config.detector),
            "scale": round(a.scale, 5),
            "thresholds": list(a.thresholds),
            "n_sampled_frames": len(a.detections),
            "n_boxes": int(sum(len(d.boxes) for d in a.detections)),
            **({"settings": detector.settings} if hasattr(detector, "settings") else {}),
        },
        "config": config.to_dict(),
        "n_tracks": len(a.tracks),
        "tracks": [{"track": t.id, "start_frame": t.start, "stop_frame": t.stop, "n_detections": len(t.frames),
                    "mean_prob": round(t.mean_prob, 6), **track_landmark_fields(t)} for t in a.tracks],
        "tubes": tubes,
        "timings": a.timings,
        **({"chunks": a.chunks} if a.chunks else {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _compress_boxes(boxes: np.ndarray) -> list:
    """Per-frame crop boxes as runs ``[n_frames, x1, y1, x2, y2]`` (a static crop is a single run)."""
    runs: list = []
    for b in boxes:
        b = [int(v) for v in b]
        if runs and runs[-1][1:] == b:
            runs[-1][0] += 1
        else:
            runs.append([1, *b])
    return runs


__all__ = ["Tube", "VideoTubes", "analyse", "analyse_once", "crop_pass", "cut_frame", "detect_video", "extract_tubes",
           "extract_tubes_in_memory", "is_done", "video_stem", "VideoError"]
