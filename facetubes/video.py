"""Video I/O on PyAV: probe, streaming decode, exact random access and atomic H.264 writing.

Conventions (docs/ARCHITECTURE.md): frame indices count decoded frames in presentation order from 0; frames come
out **upright** (the display-matrix rotation phones store is applied; ``rotation`` is always the clockwise angle
0/90/180/270 that turns stored pixels upright); every problem with a file is a one-line
:class:`~facetubes.errors.VideoError` (``OutputError`` when writing) naming the file; no PyAV exception escapes.
Decoding streams (memory flat in video length) on threads; only requested frames are converted to RGB, with any
downscale done inside swscale during that conversion.
"""

from __future__ import annotations

import itertools
import os
import secrets
import struct
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Union

import av
import av.error
import numpy as np

from .errors import OutputError, VideoError

PathLike = Union[str, "os.PathLike[str]"]
FpsLike = Union[int, float, Fraction, str]

__all__ = [
    "VideoInfo", "probe", "iter_frames", "iter_av_frames", "read_frames", "rotate_array", "upright_to_stored_boxes",
    "as_fraction", "VideoWriter", "write_video", "OUTPUT_FORMATS",
]

OUTPUT_FORMATS = ("rgb24", "bgr24", "gray")
"""Pixel formats :func:`iter_frames` / :func:`read_frames` can return (``gray`` gives ``(H, W)`` arrays)."""

_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"moof", b"styp"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` knows about a video. ``width``/``height`` are the **upright** size."""

    path: str
    width: int
    height: int
    fps: float
    fps_fraction: Fraction
    n_frames: int
    """Frame count from the container, else ``round(duration * fps)`` (then ``n_frames_estimated`` is True)."""
    rotation: int
    """Clockwise degrees (0/90/180/270) applied to stored frames to make them upright."""
    codec: str
    pix_fmt: str
    duration: float
    """Seconds."""
    n_frames_estimated: bool = False

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames as stored in the file (before rotation)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``fps_fraction`` as ``"30000/1001"``)."""
        d = asdict(self)
        d["fps_fraction"] = f"{self.fps_fraction.numerator}/{self.fps_fraction.denominator}"
        return d


def probe(path: PathLike) -> VideoInfo:
    """Open ``path``, decode its first frame and describe the video.

    Decoding one frame proves the file is decodable and reveals the rotation tag (FFmpeg attaches the display
    matrix to decoded frames). Raises :class:`VideoError` for missing, empty, truncated, non-video or
    undecodable files.
    """
    with _Source(path, threads=1) as src:
        first = next(src.frames(0), None)
        if first is None:
            raise VideoError(f"{src.path}: cannot decode: no video frame could be decoded")
        frame, stream = first[1], src.stream
        rotation, rate = src.rotation(frame), _stream_rate(stream)
        if rate is None:
            raise VideoError(f"{src.path}: unknown frame rate")
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (src.container.duration or 0) / av.time_base
        n_frames = int(stream.frames or 0)
        estimated = n_frames <= 0
        if estimated:
            n_frames = max(1, round(duration * rate))
        duration = duration if duration > 0 else n_frames / float(rate)
        w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
        pix_fmt = stream.codec_context.pix_fmt or frame.format.name
        return VideoInfo(str(path), w, h, float(rate), rate, n_frames, rotation,
                         stream.codec_context.name, pix_fmt, duration, n_frames_estimated=estimated)


def iter_av_frames(
    path: PathLike, *, start: int = 0, stop: Optional[int] = None, step: int = 1, threads: int = 0
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, av.VideoFrame)`` for frames with ``start <= index < stop`` and ``index % step == 0``.

    Frames are **as stored** (not rotated, native pixel format, e.g. ``yuv420p`` or ``yuv420p10le``): for
    callers that crop planes themselves. Use ``probe(path).rotation`` with :func:`rotate_array` /
    :func:`upright_to_stored_boxes` to map between stored and upright coordinates. A frame stays valid after
    the generator moves on. ``threads=0`` lets FFmpeg choose the number of decoding threads.
    """
    _check_range(start, stop, step)
    with _Source(path, threads=threads) as src:
        yield from _select(src.frames(start), start, stop, step)


def iter_frames(
    path: PathLike, *, start: int = 0, stop: Optional[int] = None, step: int = 1,
    size: Optional[tuple[int, int]] = None, format: str = "rgb24", threads: int = 0, sparse: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream upright frames as ``(index, array)``; arrays are ``(H, W, 3)`` uint8 (``(H, W)`` for ``gray``).

    Only frames with ``start <= index < stop`` and ``index % step == 0`` are converted (note: ``step`` selects
    on the absolute index, so ``start=5, step=10`` yields 10, 20, ...). ``size=(width, height)`` is the upright
    output size; the downscale happens inside swscale during the colour conversion. A positive ``start`` seeks
    to the last keyframe before it when the container allows exact frame numbering (MP4/MOV), otherwise it
    decodes from the beginning; the frames are identical either way.

    ``sparse=True`` (with ``step > 1`` and ``start == 0``) also skips *decoding* the frames that are neither
    selected nor referenced by other frames (FFmpeg's ``skip_frame=NONREF``, set packet by packet): H.264 with
    B-frames decodes about half its frames. It needs exact frame numbers from timestamps (an MP4/MOV sample index
    and a distinct timestamp per packet); otherwise every frame is decoded. The yielded frames are identical.
    """
    _check_range(start, stop, step)
    _check_output(size, format)
    with _Source(path, threads=threads) as src:
        rotation: Optional[int] = None
        frames = None
        if sparse and step > 1 and start == 0:
            frames = src.sparse_frames(lambda i: i % step == 0 and (stop is None or i < stop))
        for index, frame in _select(frames or src.frames(start), start, stop, step):
            if rotation is None:
                rotation = src.rotation(frame)
            yield index, _to_array(frame, rotation, size, format)


def read_frames(
    path: PathLike, indices: Union[Sequence[int], np.ndarray], *, size: Optional[tuple[int, int]] = None,
    format: str = "rgb24", threads: int = 0,
) -> np.ndarray:
    """Return the frames at ``indices`` (any order, repeats allowed) as ``(N, H, W, 3)`` uint8, in that order.

    Seeks to the keyframe before ``min(indices)`` when that saves work, decodes up to ``max(indices)`` and
    converts only the requested frames. The frame for index ``i`` is exactly what :func:`iter_frames` yields
    for ``i``. An index past the end raises :class:`VideoError`.
    """
    _check_output(size, format)
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0)):
        raise ValueError(f"indices must be a 1-D sequence of ints >= 0, got {idx.shape} {idx.dtype} array")
    if idx.size == 0:
        info = probe(path)
        w, h = size or (info.width, info.height)
        return np.empty((0, h, w) + ((3,) if format != "gray" else ()), np.uint8)
    wanted = {int(i) for i in idx}
    lo, hi = int(idx.min()), int(idx.max())
    got: dict[int, np.ndarray] = {}
    with _Source(path, threads=threads) as src:
        rotation: Optional[int] = None
        last = -1
        for last, frame in src.frames(lo):
            if last in wanted:
                rotation = src.rotation(frame) if rotation is None else rotation
                got[last] = _to_array(frame, rotation, size, format)
            if len(got) == len(wanted) or last > hi:
                break
    if len(got) < len(wanted):
        missing = min(wanted - got.keys())
        raise VideoError(f"{path}: frame {missing} out of range (the video has {last + 1} frames)")
    out = np.empty((idx.size,) + got[lo].shape, np.uint8)
    for k, i in enumerate(idx.tolist()):
        out[k] = got[i]
    return out


def rotate_array(arr: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an ``(H, W[, C])`` array clockwise by ``rotation`` degrees (0/90/180/270); returns a contiguous copy
    (or ``arr`` itself for 0)."""
    rotation = _norm_rotation(rotation)
    if rotation == 0:
        return arr
    return np.ascontiguousarray(np.rot90(arr, k=-(rotation // 90), axes=(0, 1)))


def upright_to_stored_boxes(boxes: np.ndarray, rotation: int, upright_size: tuple[int, int]) -> np.ndarray:
    """Map ``(k, 4)`` ``x1, y1, x2, y2`` boxes from upright pixels to stored-frame pixels.

    ``upright_size`` is ``(width, height)`` of the upright frame (``VideoInfo.width, VideoInfo.height``).
    Cropping a stored frame with the result and then :func:`rotate_array` gives the upright crop.
    """
    rotation = _norm_rotation(rotation)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b.T
    w, h = upright_size
    if rotation == 0:
        out = b.copy()
    elif rotation == 90:  # stored = upright rotated counter-clockwise: (x, y) -> (y, w - x)
        out = np.stack([y1, w - x2, y2, w - x1], axis=1)
    elif rotation == 180:
        out = np.stack([w - x2, h - y2, w - x1, h - y1], axis=1)
    else:  # 270: stored = upright rotated clockwise: (x, y) -> (h - y, x)
        out = np.stack([h - y2, x1, h - y1, x2], axis=1)
    dtype = np.asarray(boxes).dtype
    return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)


def as_fraction(fps: FpsLike) -> Fraction:
    """Exact frame rate: ``Fraction`` kept, ``"30000/1001"`` parsed, NTSC floats (29.97, 23.976, 59.94...)
    snapped to ``N*1000/1001``, other floats rounded to a denominator <= 1001."""
    if isinstance(fps, str):
        try:
            f = Fraction(fps.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"cannot parse frame rate {fps!r}") from None
    elif isinstance(fps, (Fraction, int, np.integer)):
        f = Fraction(int(fps)) if isinstance(fps, np.integer) else Fraction(fps)
    else:
        x = float(fps) if np.isfinite(fps) else 0.0
        ntsc = round(x * 1.001)
        if abs(x - round(x)) < 1e-6:
            f = Fraction(round(x))
        else:
            f = Fraction(ntsc * 1000, 1001) if abs(x * 1.001 - ntsc) < 2e-3 else Fraction(x).limit_denominator(1001)
    if f <= 0 or f > 1000:
        raise ValueError(f"frame rate must be in (0, 1000], got {fps!r}")
    return f


class VideoWriter:
    """Atomic H.264 (MP4) writer, a context manager. Frames go to ``<stem>.tmp<random><suffix>`` in the same
    folder; :meth:`close` (or leaving the ``with`` block normally) renames it onto ``path``; an exception in the
    block or :meth:`abort` deletes it. The frame rate is exactly ``fps`` (pass ``VideoInfo.fps_fraction``).

    ``gop``: keyframe interval (None: encoder default, 250 for x264; shorter = faster random access, bigger
    files). ``rotation``: clockwise degrees a player must apply to show frames upright (display-matrix tag).
    ``time_base`` + ``write(..., pts=)``: explicit timestamps (variable frame rate). ``threads``: 0 = auto.
    """

    def __init__(
        self, path: PathLike, *, fps: FpsLike, width: int, height: int, crf: int = 23, pix_fmt: str = "yuv420p",
        preset: str = "veryfast", codec: str = "libx264", gop: Optional[int] = None, rotation: int = 0,
        threads: int = 0, time_base: Optional[Fraction] = None, options: Optional[dict[str, str]] = None,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.frames_written = 0
        self._closed = False
        self._container: Any = None
        try:
            self.fps = as_fraction(fps)
        except ValueError as exc:
            raise VideoError(f"{self.path}: {exc}") from None
        self._check_settings(codec, pix_fmt, crf, rotation, gop)
        self.rotation: int = _norm_rotation(rotation)
        self._time_base = Fraction(time_base) if time_base is not None else 1 / self.fps
        self._frame_ticks = (1 / self.fps) / self._time_base
        if not self.path.parent.is_dir():
            raise OutputError(f"{self.path}: output folder {self.path.parent} does not exist")
        suffix = self.path.suffix or ".mp4"
        self.tmp_path = self.path.with_name(f"{self.path.stem}.tmp{secrets.token_hex(4)}{suffix}")
        try:
            self._container = av.open(str(self.tmp_path), "w", format=None if self.path.suffix else "mp4")
            stream = self._container.add_stream(codec, rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, pix_fmt
            stream.codec_context.time_base = self._time_base
            stream.codec_context.thread_count = threads
            if gop:
                stream.codec_context.gop_size = int(gop)
            x26x = {"crf": str(crf), "preset": preset} if codec.startswith("libx26") else {}
            stream.options = {**x26x, **(options or {})}
            if self.rotation:
                stream.set_display_rotation(-self.rotation)
            self._stream = stream
        except OSError as exc:
            self._discard()
            raise OutputError(f"{self.path}: cannot write: {_av_message(exc)}") from exc
        except (av.error.FFmpegError, ValueError, AttributeError) as exc:  # AttributeError: PyAV < 18, rotation
            self._discard()
            raise VideoError(f"{self.path}: cannot set up {codec} encoder: {_av_message(exc)}") from exc

    def _check_settings(self, codec: str, pix_fmt: str, crf: int, rotation: int, gop: Optional[int]) -> None:
        where = f"{self.path}:"
        try:
            enc = av.codec.Codec(codec, "w")
        except Exception:
            raise VideoError(f"{where} encoder {codec!r} is not available in this PyAV/FFmpeg build") from None
        supported = {f.name for f in (enc.video_formats or ())}
        if supported and pix_fmt not in supported:
            raise VideoError(f"{where} {codec} cannot encode pix_fmt {pix_fmt!r} (supported: {sorted(supported)})")
        if min(self.width, self.height) < 2 or max(self.width, self.height) > 16384:
            raise VideoError(f"{where} frame size {self.width}x{self.height} is not supported")
        fmt = av.VideoFormat(pix_fmt)
        odd_w = self.width % 2 and fmt.chroma_width(2) < 2
        odd_h = self.height % 2 and fmt.chroma_height(2) < 2
        if odd_w or odd_h:
            side = "width" if odd_w else "height"
            raise VideoError(f"{where} {pix_fmt} needs an even {side}, got {self.width}x{self.height} "
                             "(use an even size or pix_fmt='yuv444p')")
        if not 0 <= int(crf) <= 51:
            raise VideoError(f"{where} crf must be in [0, 51], got {crf}")
        if _norm_rotation(rotation, strict=False) is None:
            raise VideoError(f"{where} rotation must be 0, 90, 180 or 270, got {rotation}")
        if gop is not None and int(gop) < 1:
            raise VideoError(f"{where} gop must be >= 1, got {gop}")

    def write(self, frame_rgb: np.ndarray, *, pts: Optional[int] = None) -> None:
        """Append one ``(height, width, 3)`` uint8 RGB frame."""
        arr = np.asarray(frame_rgb)
        if arr.dtype != np.uint8 or arr.shape != (self.height, self.width, 3):
            raise ValueError(f"expected a ({self.height}, {self.width}, 3) uint8 frame, got {arr.shape} {arr.dtype}")
        self.write_frame(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24"), pts=pts)

    def write_frame(self, frame: av.VideoFrame, *, pts: Optional[int] = None) -> None:
        """Append an ``av.VideoFrame`` of the writer's size (any pixel format; converted if needed).

        ``pts`` in units of ``time_base`` (default: frame number / fps)."""
        if self._closed or self._container is None:
            raise ValueError(f"{self.path}: writer is closed")
        if (frame.width, frame.height) != (self.width, self.height):
            raise ValueError(f"expected a {self.width}x{self.height} frame, got {frame.width}x{frame.height}")
        frame.pts = int(pts) if pts is not None else round(self.frames_written * self._frame_ticks)
        frame.time_base = self._time_base
        self._run(lambda: [self._container.mux(p) for p in self._stream.encode(frame)], "encode")
        self.frames_written += 1

    def finish(self) -> None:
        """Flush the encoder and finish the file under its temporary name, freeing the encoder's memory; no
        more frames can be written. :meth:`close` then moves it onto ``path``; :meth:`abort` deletes it."""
        if self._closed or self._container is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"{self.path}: no frames were written")
        self._run(lambda: [self._container.mux(p) for p in self._stream.encode(None)], "finish")
        self._run(self._container.close, "finish")
        self._container = self._stream = None

    def close(self) -> None:
        """Flush the encoder, finish the file and move it onto ``path``."""
        if self._closed:
            return
        self.finish()
        self._closed = True
        try:
            os.replace(self.tmp_path, self.path)
        except OSError as exc:
            self._discard()
            raise OutputError(f"{self.path}: cannot move finished file into place: {exc.strerror}") from exc

    def abort(self) -> None:
        """Stop writing and delete the temporary file; ``path`` is left untouched."""
        self._closed = True
        self._discard()

    def _run(self, fn: Any, what: str) -> None:
        try:
            fn()
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot write ({what}): {_av_message(exc)}") from exc
        except av.error.FFmpegError as exc:
            self.abort()
            raise VideoError(f"{self.path}: cannot {what} video: {_av_message(exc)}") from exc

    def _discard(self) -> None:
        container, self._container = self._container, None
        try:
            if container is not None:
                container.close()
        except Exception:  # the file is deleted next; a failing close changes nothing
            pass
        if getattr(self, "tmp_path", None) is not None:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.abort()


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: FpsLike, **kwargs: Any) -> int:
    """Write RGB uint8 frames atomically (size from the first frame; keywords go to :class:`VideoWriter`).
    Returns the number of frames written."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise VideoError(f"{path}: no frames to write")
    h, w = np.asarray(first).shape[:2]
    with VideoWriter(path, fps=fps, width=w, height=h, **kwargs) as writer:
        for frame in itertools.chain([first], it):
            writer.write(frame)
    return writer.frames_written


class _Source:
    """An open input container with its video stream; yields ``(index, frame)`` from any starting index."""

    def __init__(self, path: PathLike, *, threads: int) -> None:
        self.path = str(path)
        self.threads = threads
        self._entries: Optional[tuple[np.ndarray, np.ndarray]] = None
        p = Path(path)
        if not p.exists() or p.is_dir():
            raise VideoError(f"{self.path}: {'is a directory, not a video file' if p.is_dir() else 'not found'}")
        size = p.stat().st_size
        problem = "empty file" if size == 0 else _mp4_truncation(p, size)
        if problem:
            raise VideoError(f"{self.path}: {problem}")
        self._open()

    def _open(self) -> None:
        self._moved = False  # True once the container was moved away from the start
        try:
            self.container = av.open(self.path, "r")
        except PermissionError:
            raise VideoError(f"{self.path}: permission denied") from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"{self.path}: not a video file or unsupported format ({_av_message(exc)})") from None
        streams = [s for s in self.container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        kinds = sorted({s.type for s in self.container.streams})
        if not streams or streams[0].codec_context is None:
            self.container.close()
            found = f" (found: {', '.join(kinds)})" if kinds else ""
            raise VideoError(f"{self.path}: " + (f"no video stream{found}" if not streams
                                                 else "cannot decode: no decoder for this video codec"))
        self.stream = streams[0]
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = self.threads

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.container.close()

    def rotation(self, frame: av.VideoFrame) -> int:
        """Clockwise upright rotation from the display matrix FFmpeg attaches to decoded frames."""
        return _norm_rotation(-(getattr(frame, "rotation", 0) or 0), strict=False) or 0

    def frames(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """All frames from index ``first`` on (possibly a few before it), numbered exactly."""
        plan = self._seek_plan(first) if first > 0 else None
        if plan is None and self._moved:
            self._reopen()
        if plan is not None:
            position, timestamp, key_pts = plan
            self.container.seek(timestamp, stream=self.stream, backward=True, any_frame=False)
            it = self._decode(position)
            head = next(it, None)
            if head is not None and head[1].pts == key_pts:
                yield head
                yield from it
                return
            it.close()  # the decoder did not restart where the index said: decode from the top instead
            self._reopen()
        yield from self._decode(0)

    def sparse_frames(self, wanted: Callable[[int], bool]) -> Optional[Iterator[tuple[int, av.VideoFrame]]]:
        """Frames from the start where the decoder skips non-reference frames that ``wanted(index)`` rejects.
        Yields every wanted frame (and the reference frames it decodes anyway), numbered from the timestamps.
        None when exact numbering from timestamps is not possible (see :func:`iter_frames`)."""
        order = self._presentation_order()
        if order is None:
            return None
        return self._decode_sparse(order, wanted)

    def _presentation_order(self) -> Optional[dict[int, int]]:
        """``{pts: frame index}`` from one demux pass over the packets (no decoding), then back to the start."""
        entries = self._index()
        if entries is None:
            return None
        pts: list[int] = []
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    return None
                pts.append(int(packet.pts))
        except av.error.FFmpegError:
            return None
        finally:
            self._reopen()
        if len(pts) != len(entries[0]) or len(set(pts)) != len(pts):
            return None
        return {p: i for i, p in enumerate(sorted(pts))}

    def _decode_sparse(self, order: dict[int, int],
                       wanted: Callable[[int], bool]) -> Generator[tuple[int, av.VideoFrame], None, None]:
        ctx = self.stream.codec_context
        index = -1
        mismatch = False
        try:
            for packet in self.container.demux(self.stream):
                i = order.get(packet.pts) if packet.pts is not None else None
                ctx.skip_frame = "DEFAULT" if i is None or wanted(i) else "NONREF"
                for frame in packet.decode():
                    got = order.get(frame.pts) if frame.pts is not None else None
                    if got is None or got <= index:
                        mismatch = True
                        break
                    index = got
                    yield index, frame
                if mismatch:
                    break
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot decode frame {index + 1}: {_av_message(exc)}") from exc
        finally:
            ctx.skip_frame = "DEFAULT"
        if mismatch:  # the timestamps do not number the frames after all: decode everything, from the start
            self._reopen()
            for i, frame in self._decode(0):
                if i > index:
                    yield i, frame

    def _reopen(self) -> None:
        self.container.close()
        self._open()

    def _decode(self, index: int) -> Generator[tuple[int, av.VideoFrame], None, None]:
        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    yield index, frame
                    index += 1
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot decode frame {index}: {_av_message(exc)}") from exc

    def _seek_plan(self, first: int) -> Optional[tuple[int, int, int]]:
        """``(position, seek_timestamp, key_pts)`` of a keyframe at or before frame ``first`` (not frame 0) whose
        position in the MP4/MOV sample index (decode order) is its presentation index, i.e. no later sample is
        shown before it (closed GOP, checked by demuxing its GOP); else None: decode from the start."""
        entries = self._index()
        if entries is None:
            return None
        dts, keys = entries
        candidates = np.flatnonzero(keys[: min(first, len(keys) - 1) + 1])
        if candidates.size == 0 or candidates[-1] == 0:
            return None
        self._moved = True
        try:
            head = next(iter(self.container.demux(self.stream)), None)
            if head is None or head.pts is None or head.dts is None:
                return None
            # FFmpeg's MP4 demuxer seeks on presentation time: aim at the keyframe's pts (dts + the stream's lag)
            seek_ts = int(dts[candidates[-1]]) + (head.pts - head.dts)
            self.container.seek(seek_ts, stream=self.stream, backward=True, any_frame=False)
            key_pts, position = None, 0
            for n, packet in enumerate(self.container.demux(self.stream)):
                if packet.size == 0:
                    break  # end of the stream
                if packet.pts is None or packet.dts is None:
                    return None
                if key_pts is None:
                    position = int(np.searchsorted(dts, packet.dts))
                    ok = position < len(dts) and dts[position] == packet.dts and keys[position]
                    if not (ok and packet.is_keyframe and 0 < position <= first):
                        return None
                    key_pts = packet.pts
                elif packet.is_keyframe or n > 1000:
                    break
                elif packet.pts <= key_pts:
                    return None  # open GOP: frames after the keyframe are shown before it
            return None if key_pts is None else (position, seek_ts, key_pts)
        except av.error.FFmpegError:
            return None

    def _index(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        if self._entries is None:
            entries = getattr(self.stream, "index_entries", None) or []  # MP4/MOV: every sample
            if len(entries) == 0 or (self.stream.frames and len(entries) != self.stream.frames):
                return None
            arr = np.array([(e.timestamp, e.is_keyframe, e.is_discard) for e in entries], dtype=np.int64)
            if arr[:, 2].any() or not arr[0, 1] or np.any(np.diff(arr[:, 0]) <= 0):
                return None
            self._entries = (arr[:, 0], arr[:, 1].astype(bool))
        return self._entries


def _select(frames: Iterator[tuple[int, av.VideoFrame]], start: int, stop: Optional[int],
            step: int) -> Iterator[tuple[int, av.VideoFrame]]:
    for index, frame in frames:
        if stop is not None and index >= stop:
            return
        if index >= start and index % step == 0:
            yield index, frame


def _to_array(frame: av.VideoFrame, rotation: int, size: Optional[tuple[int, int]], fmt: str) -> np.ndarray:
    width, height = (None, None) if size is None else (size[1], size[0]) if rotation in (90, 270) else size
    arr = frame.to_ndarray(width=width, height=height, format=fmt)
    return rotate_array(arr, rotation) if rotation else arr


def _stream_rate(stream: Any) -> Optional[Fraction]:
    rates = [getattr(stream, name, None) for name in ("average_rate", "guessed_rate", "base_rate")]
    return next((Fraction(r) for r in rates if r), None)


def _check_range(start: int, stop: Optional[int], step: int) -> None:
    if start < 0 or step < 1 or (stop is not None and stop < 0):
        raise ValueError(f"need start >= 0, stop >= 0 and step >= 1, got start={start} stop={stop} step={step}")


def _check_output(size: Optional[tuple[int, int]], fmt: str) -> None:
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    if size is not None and (len(size) != 2 or min(int(size[0]), int(size[1])) < 1):
        raise ValueError(f"size must be (width, height) with positive ints, got {size!r}")


def _norm_rotation(rotation: float, strict: bool = True) -> Any:
    r = int(round(float(rotation) / 90.0)) * 90 % 360
    if abs((float(rotation) - r + 180) % 360 - 180) > 1:
        if strict:
            raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
        return None
    return r


def _av_message(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())


def _mp4_truncation(path: Path, size: int) -> Optional[str]:
    """For ISO-BMFF files (MP4/MOV/M4A): a reason if the top-level boxes run past the end of the file."""
    try:
        with open(path, "rb") as f:
            if f.read(8)[4:8] not in _MP4_BOXES:
                return None
            pos, seen = 0, set()
            while pos < size:
                f.seek(pos)
                header = f.read(16)
                box_size, kind = struct.unpack(">I4s", header[:8]) if len(header) >= 8 else (-1, b"")
                if box_size == 1:
                    box_size = struct.unpack(">Q", header[8:16])[0] if len(header) == 16 else -1
                if box_size == -1:
                    return f"truncated (incomplete box header at byte {pos} of {size})"
                if box_size == 0:
                    box_size = size - pos
                if box_size < 8:
                    return None  # not a box structure we understand: leave it to FFmpeg
                seen.add(kind)
                if pos + box_size > size:
                    name = kind.decode("latin-1")
                    return f"truncated ('{name}' box needs {pos + box_size} bytes, the file has {size})"
                pos += box_size
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if b"moov" not in seen:
        return "truncated or unfinished MP4 (no 'moov' index box; was the recording stopped?)"
    return None
