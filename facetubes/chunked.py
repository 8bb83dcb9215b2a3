"""Single-decode extraction: every frame is decoded once, in chunks, with memory bounded by one chunk.

The video streams through in chunks of ``C`` frames (``ExtractConfig.chunk_frames``, a multiple of
``detect_every``; shorter for large frames, see :func:`chunk_length`). For chunk ``[c0, c0 + C)``:

1. its frames are held as decoded (``av.VideoFrame``, native pixel format: 3.1 MB per 1080p 4:2:0 frame), plus
   frame ``c0 + C``, the first sampled frame of the next chunk, so that the face boxes of the chunk's last
   frames are interpolated exactly as in the two-pass path;
2. the sampled frames not yet detected are downscaled and detected;
3. the tracks are rebuilt by the pure :func:`~facetubes.tracks.build_tracks` over *all* detections so far (cheap:
   boxes only). A track whose detections up to ``c0`` are those of an open tube continues that tube: it keeps its
   tube, and its id is the final build's;
4. every track's frames in the chunk are cropped (per track and chunk: ``plan_boxes``, static while tight in
   ``auto`` mode) and encoded; then the chunk's frames are released.

At the end the final tracks are ``build_tracks`` over all detections with the true frame count: exactly the
two-pass tracks. The tubes differ from the two-pass ones only in their crop boxes: a static box is the union
over the track's frames *in the chunk* (two-pass: over the whole part), and a follow crop is smoothed with the
crops already cut as left context and no look-ahead past the chunk. ``min_frames`` and ``top_k`` are applied at
the end (a tube that ends too short is discarded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .config import ExtractConfig
from .crops import CropPlan, _integer_boxes, face_boxes, plan_boxes
from .detect import Detector, detect_frames, detector_scale, rescale_result, scaled_size, to_detections
from .precision import full_fp32
from .errors import VideoError
from .tracks import Detections, Track, build_tracks
from .video import VideoInfo, iter_av_frames, rotate_array, upright_to_stored_boxes

__all__ = ["chunk_length", "decode_once", "ChunkedResult", "frame_bytes"]

CONTEXT_SIGMAS = 4
"""Follow crops continue their smoothing from the last ``CONTEXT_SIGMAS * follow_sigma`` crop centres."""


def frame_bytes(info: VideoInfo) -> int:
    """Bytes of one decoded frame of ``info`` in its native pixel format (planes, no line padding)."""
    import av

    w, h = info.width, info.height
    try:
        fmt = av.VideoFormat(info.pix_fmt)
        comps = [c for c in fmt.components if not c.is_alpha]
        depth = 2 if max(c.bits for c in comps) > 8 else 1
        chroma = (len(comps) - 1) * fmt.chroma_width(w) * fmt.chroma_height(h) if len(comps) > 1 else 0
        return depth * (w * h + chroma) + (depth * w * h if len(comps) < len(fmt.components) else 0)
    except Exception:  # unknown format name: assume 16-bit 4:4:4
        return 6 * w * h


def chunk_length(info: VideoInfo, config: ExtractConfig) -> int:
    """Frames per chunk: ``config.chunk_frames`` rounded down to a multiple of ``detect_every``, shortened so
    that one chunk's decoded frames fit in ``config.chunk_memory_mb``. Raises :class:`VideoError` when not even
    ``detect_every`` frames fit (lower ``--detect-every`` or raise the memory bound)."""
    every = config.detect_every
    want = max(every, (int(config.chunk_frames or every) // every) * every)
    per_frame = frame_bytes(info)
    fit = int(config.chunk_memory_mb * 2**20 // per_frame) - 1  # the next chunk's first frame is held too
    fit = (fit // every) * every
    if fit < every:
        raise VideoError(
            f"{info.path}: {info.width}x{info.height} {info.pix_fmt} frames take {per_frame / 2**20:.0f} MB each; "
            f"one detection interval ({every} frames) does not fit in chunk_memory_mb={config.chunk_memory_mb} "
            f"(raise --chunk-memory-mb, or use --chunk-frames 0: two passes)")
    return min(want, fit)


@dataclass
class _OpenTube:
    key: int
    part: int
    track_start: int
    start: int
    n: int = 0
    boxes: list = field(default_factory=list)  # (k, 4) int32 arrays, per chunk
    known: tuple = ()  # the track's detections up to the last boundary: (frames, boxes) arrays
    centres: Optional[np.ndarray] = None  # last crop centres (follow context)
    anchor: tuple = ()  # (frame, box bytes) of one of its detections: finds the final track
    writer: object = None
    scaler: object = None


@dataclass
class ChunkedResult:
    """What :func:`decode_once` found: final tracks and detections, and the tubes cut (``(track, plan, handle)``
    where ``handle`` is what ``open_tube`` returned, ``plan.boxes`` the crop box of every frame)."""

    detections: list[Detections]
    tracks: list[Track]
    tubes: list[tuple[Track, CropPlan, object]]
    discarded: list[object]
    n_frames: int
    scale: float
    timings: dict
    """Seconds: ``detect_s``, ``track_s``, ``crop_encode_s``, ``decode_once_s``."""
    stats: dict = field(default_factory=dict)
    """``n_chunks``, ``chunk_frames`` (frames per chunk), ``max_frames_held`` (decoded frames alive at most),
    ``n_relinked`` (tracks whose earlier links changed after their frames were cut: a new tube part),
    ``max_open_tubes`` (tubes being written at once at most: one chunk's)."""


def decode_once(path, info: VideoInfo, config: ExtractConfig, detector: Detector, *,
                open_tube: Callable[[int], object], write: Callable[[object, object], None],
                finish_tube: Optional[Callable[[object], None]] = None,
                scale: Optional[float] = None, threads: int = 0, pix_fmt: str = "rgb24",
                on_chunk: Optional[Callable[[int], None]] = None) -> ChunkedResult:
    """One decoding pass over ``path``: detect, track, crop and hand every tube frame to ``write(handle, frame)``
    (``frame``: a ``size x size`` ``av.VideoFrame`` in ``pix_fmt``), where ``handle = open_tube(key)`` was made
    when the tube started. ``finish_tube(handle)`` is called as soon as a tube can get no more frames (a file
    writer flushes its encoder there, so that the encoders alive are those of the open tubes, not of every tube
    cut so far). ``on_chunk(n_frames_held)`` is called before each chunk is processed (tests count the
    frames alive with it). Tubes that end shorter than ``config.min_frames`` or whose track is not in the
    ``top_k`` come back in ``discarded`` (their handles, for the caller to throw away)."""
    import av.video.reformatter

    from .pipeline import prefetch  # the decoding thread is shared with the two-pass path

    t_start = time.perf_counter()
    every = config.detect_every
    width, height = info.width, info.height
    chunk = chunk_length(info, config)
    if scale is None:
        scale = detector_scale(width, height, min_face=config.min_face,
                               detector_min_face=getattr(detector, "min_face_size", 20.0),
                               long_side=config.detect_long_side)
    det_w, det_h = scaled_size(width, height, scale)
    sx, sy = det_w / width, det_h / height
    rot = info.rotation
    stored_det = (det_h, det_w) if rot in (90, 270) else (det_w, det_h)
    batch_size = config.detect_batch or (16 if str(config.device).startswith("cuda") else 1)
    down = av.video.reformatter.VideoReformatter()

    detections: list[Detections] = []
    open_tubes: list[_OpenTube] = []
    done: list[_OpenTube] = []
    n_keys = [0]
    timings = {"detect_s": 0.0, "track_s": 0.0, "crop_encode_s": 0.0}
    stats = {"n_chunks": 0, "chunk_frames": chunk, "max_frames_held": 0, "n_relinked": 0}
    tracks: list[Track] = []
    keep = max(1, int(CONTEXT_SIGMAS * config.follow_sigma + 0.5))
    max_open = [0]

    def detect(frames: list) -> None:
        t0 = time.perf_counter()
        for i in range(0, len(frames), batch_size):
            part = frames[i:i + batch_size]
            arrays = [down.reformat(f, width=stored_det[0], height=stored_det[1], format="rgb24").to_ndarray()
                      for _, f in part]
            if rot:
                arrays = [rotate_array(a, rot) for a in arrays]
            with full_fp32():  # no TF32: boxes as on CPU (facetubes.precision)
                results = [rescale_result(r, sx, sy) for r in detect_frames(detector, np.stack(arrays))]
            detections.extend(to_detections([k for k, _ in part], results, 1.0, config.min_prob))
        timings["detect_s"] += time.perf_counter() - t0

    def new_tube(track: Track, start: int, part: int) -> _OpenTube:
        tube = _OpenTube(key=n_keys[0], part=part, track_start=track.start, start=start,
                         anchor=_anchor(track), writer=open_tube(n_keys[0]),
                         scaler=av.video.reformatter.VideoReformatter())
        n_keys[0] += 1
        return tube

    def process(buf: list, c0: int, c1: int, final: bool, n_total: int) -> None:
        nonlocal tracks, open_tubes
        n_done = len(done)
        stats["n_chunks"] += 1
        stats["max_frames_held"] = max(stats["max_frames_held"], len(buf))
        if on_chunk is not None:
            on_chunk(len(buf))
        detect(pending)  # the sampled frames not detected yet (the chunk's look-ahead frame among them)
        pending.clear()
        t0 = time.perf_counter()
        tracks = build_tracks(detections, frame_size=(width, height), n_frames=n_total if final else c1 + every,
                              detect_every=every, max_gap=config.max_gap)
        timings["track_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        by_prefix = {_prefix_key(t.known): t for t in open_tubes}
        still_open: list[_OpenTube] = []
        work: list[tuple[_OpenTube, int, int, np.ndarray, np.ndarray]] = []  # tube, a, b, boxes, stored boxes
        for track in tracks:
            if track.stop <= c0 and track.start < c0:
                continue  # ended before this chunk (its tube, if any, is finished)
            a, b = max(track.start, c0), min(track.stop, c1)
            tube = by_prefix.pop(_prefix_key(_known(track, c0)), None) if track.start < c0 else None
            if track.start < c0 and (tube is None or (a < b and tube.start + tube.n != a)):
                stats["n_relinked"] += 1  # earlier links changed: its frames before c0 went to another tube
                if tube is not None:
                    done.append(tube)
                    tube = None
            # may the track go on in the next chunk (detected at c1, or bridged over a missed detection)?
            goes_on = not final and (track.stop > c1 or (track.stop == c1 and config.max_gap >= 1))
            pieces = _part_pieces(track.start, a, b, config) if a < b else []
            if a < b:
                faces = _integer_boxes(face_boxes(track)[a - track.start:b - track.start], width, height)
            for pa, pb, part in pieces:
                if tube is not None and tube.part != part:
                    done.append(tube)
                    tube = None
                if tube is None:
                    tube = new_tube(track, pa, part)
                context = tube.centres if config.crop != "static" else None
                boxes = plan_boxes(faces[pa - a:pb - a], frame_size=(width, height), mode=config.crop,
                                   margin=config.margin, follow_sigma=config.follow_sigma, context=context)
                stored = upright_to_stored_boxes(boxes, rot, (width, height)).round().astype(int)
                work.append((tube, pa, pb, boxes, stored))
                tube.boxes.append(boxes)
                tube.n += pb - pa
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
                tube.centres = (centres if tube.centres is None else np.concatenate([tube.centres, centres]))[-keep:]
            if tube is None:
                continue
            capped = (config.max_frames is not None and config.long_tracks == "cap"
                      and b >= track.start + config.max_frames)
            tube.known = _known(track, c1)
            if goes_on and not capped:
                still_open.append(tube)
            else:
                done.append(tube)
        done.extend(by_prefix.values())  # their tracks ended (or changed) before this chunk
        open_tubes = still_open
        max_open[0] = max(max_open[0], len(still_open) + len(done) - n_done)
        _cut(buf, work, info, config.size, pix_fmt, write)
        _finish_tubes(done[n_done:], finish_tube)
        timings["crop_encode_s"] += time.perf_counter() - t0

    buf: list = []
    pending: list = []
    c0 = 0
    last = -1
    for idx, frame in prefetch(iter_av_frames(path, stop=config.first_frames, threads=threads)):
        if idx != last + 1:
            raise VideoError(f"{path}: frame {last + 1} missing from the decoded stream")
        last = idx
        buf.append((idx, frame))
        if idx % every == 0:  # detect as the frames arrive: the decoding thread keeps going meanwhile
            pending.append((idx, frame))
            if len(pending) >= batch_size:
                detect(pending)
                pending.clear()
        if idx == c0 + chunk:  # the next chunk's first sampled frame: the look-ahead of this chunk
            process(buf, c0, c0 + chunk, False, 0)
            buf = buf[-1:]
            c0 += chunk
    n_total = last + 1
    if buf:
        process(buf, c0, n_total, True, n_total)
    buf = []
    _finish_tubes(open_tubes, finish_tube)
    done.extend(open_tubes)
    stats["max_open_tubes"] = max_open[0]
    tubes, discarded = _finish(done, tracks, config)
    timings = {k: round(v, 4) for k, v in timings.items()}
    timings["decode_once_s"] = round(time.perf_counter() - t_start, 4)
    return ChunkedResult(detections, tracks, tubes, discarded, n_total, scale, timings, stats)


def _cut(buf: list, work: list, info: VideoInfo, size: int, pix_fmt: str, write: Callable) -> None:
    """Cut and hand over the chunk's tube frames, frame by frame (each tube's frames in order)."""
    from .pipeline import cut_frame

    if not work:
        return
    for idx, frame in buf:
        rgb: list = []
        for tube, a, b, boxes, stored in work:
            if a <= idx < b:
                write(tube.writer, cut_frame(frame, boxes[idx - a], stored[idx - a], info.rotation, size, pix_fmt,
                                             tube.scaler, rgb))


def _finish_tubes(tubes: list[_OpenTube], finish_tube: Optional[Callable[[object], None]]) -> None:
    """Release what a finished tube holds: its scaler, and (through ``finish_tube``) its encoder."""
    for tube in tubes:
        if tube.scaler is None:
            continue  # finished already (a tube can be listed twice)
        tube.scaler = None
        if finish_tube is not None:
            finish_tube(tube.writer)


def _part_pieces(track_start: int, a: int, b: int, config: ExtractConfig) -> list[tuple[int, int, int]]:
    """The frames ``[a, b)`` of a track cut at its ``max_frames`` part boundaries: ``(a', b', part)``;
    ``long_tracks='cap'`` keeps only part 0."""
    m = config.max_frames
    if m is None:
        return [(a, b, 0)]
    pieces = []
    x = a
    while x < b:
        part = (x - track_start) // m
        y = min(b, track_start + (part + 1) * m)
        if part == 0 or config.long_tracks == "split":
            pieces.append((x, y, part))
        x = y
    return pieces


def _known(track: Track, upto: int) -> tuple:
    sel = track.frames <= upto
    return track.frames[sel], track.boxes[sel]


def _prefix_key(known: tuple) -> bytes:
    frames, boxes = known if known else (np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    return np.asarray(frames, np.int64).tobytes() + b"|" + np.asarray(boxes, np.float32).tobytes()


def _anchor(track: Track) -> tuple:
    return (int(track.frames[0]), np.asarray(track.boxes[0], np.float32).tobytes()) if len(track.frames) else ()


def _finish(done: list[_OpenTube], tracks: list[Track], config: ExtractConfig):
    """Match the finished tubes to the final tracks, apply ``min_frames`` and ``top_k``, number the parts."""
    owner = {}
    for t in tracks:
        for f, b in zip(t.frames, t.boxes):
            owner[(int(f), np.asarray(b, np.float32).tobytes())] = t
    keep_ids = {t.id for t in tracks}
    if config.top_k is not None:
        keep_ids = {t.id for t in sorted(tracks, key=lambda t: -t.mean_prob)[: config.top_k]}
    kept, discarded = [], []
    seen: set[int] = set()
    for tube in done:
        if id(tube) in seen:
            continue
        seen.add(id(tube))
        track = owner.get(tube.anchor) if tube.anchor else None
        if tube.n < config.min_frames or track is None or track.id not in keep_ids:
            discarded.append(tube.writer)
            continue
        kept.append((track, tube))
    kept.sort(key=lambda tt: (tt[0].start, tt[0].id, tt[1].start))
    out = []
    by_track: dict[int, list] = {}
    for track, tube in kept:
        by_track.setdefault(track.id, []).append(tube)
    for track, tube in kept:
        siblings = by_track[track.id]
        parts = [s.part for s in siblings]
        part = tube.part if len(set(parts)) == len(parts) else siblings.index(tube)
        plan = CropPlan(track_id=track.id, part=part, start=tube.start, stop=tube.start + tube.n,
                        boxes=np.concatenate(tube.boxes).astype(np.int32))
        out.append((track, plan, tube.writer))
    return out, discarded

