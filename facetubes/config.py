"""The extraction configuration: one dataclass shared by the library call, the batch job and inference."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Literal, Optional

from .errors import ConfigError

CropMode = Literal["auto", "static", "follow"]

MAX_SIZE = 2048
"""Largest tube side (a 2048 px tube is already 4x the 3D models' inputs)."""
MAX_THREADS = 256
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


@dataclass
class ExtractConfig:
    """Everything that decides which tubes come out of a video.

    Defaults follow the published DFDC 5th-place pipeline (REFERENCE.md section 1) except where that pipeline
    had a defect (frame rate, clamping, merged people).
    """

    # --- sampling / detection -------------------------------------------------------------------------------
    detect_every: int = 10
    """Run the face detector on every N-th frame (0, N, 2N, ...)."""
    first_frames: Optional[int] = None
    """Read only the first N frames of each video (inference reads 100). None: the whole video."""
    device: str = "cpu"
    """Torch device for the detector: ``cpu``, ``cuda``, ``cuda:1``..."""
    detector: str = "mtcnn"
    """Face detector by name (``facetubes.detect.list_detectors()``): ``mtcnn``, ``mtcnn-facenet``, ``retinaface``."""
    detector_weights: Optional[str] = None
    """Local weights file of the detector (``retinaface``: ``mobilenet0.25_Final.pth`` or ``Resnet50_Final.pth``)."""
    min_face: Optional[float] = None
    """Smallest face to find, in pixels of the full-resolution upright frame. None: the resolution policy
    (``max(40, 0.075 * short side)``, see ``facetubes.detect.detector_scale``)."""
    detect_long_side: Optional[int] = None
    """If set, overrides the policy: the detector sees frames whose long side is this many pixels."""
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    """MTCNN P/R/O-net thresholds."""
    min_prob: float = 0.0
    """Drop detections whose final probability is below this."""
    detect_batch: Optional[int] = None
    """Detector frames per forward pass (frames are detected as they stream by, so memory stays bounded).
    None: 1 on CPU (no faster per frame when batched, and the least memory), 16 on CUDA."""
    detector_threads: Optional[int] = 1
    """Torch threads for CPU detection (restored afterwards). 1 leaves the other cores to the video decoder,
    which runs at the same time (benchmarks/RESULTS.md: 10.8 s -> 6.6 s per 1080p video under load). None: leave as is."""
    decode_threads: int = 0
    """FFmpeg decoding threads per video; 0: FFmpeg's choice (about one per core). ``extract_batch`` with several
    worker processes uses ``cpu_count // workers`` when this is 0, so the workers do not oversubscribe the cores."""
    retry: bool = False
    """If a video yields no face: retry at 2x detector resolution, then with looser thresholds (0.5, 0.5, 0.5)."""

    # --- tracks ---------------------------------------------------------------------------------------------
    min_frames: int = 64
    """Tracks spanning fewer frames give no tube."""
    max_frames: Optional[int] = None
    """Long tracks are split (``long_tracks='split'``) or capped (``'cap'``) to at most this many frames."""
    long_tracks: Literal["split", "cap"] = "split"
    top_k: Optional[int] = None
    """Keep only the K tracks with the highest mean detector probability (inference uses 5)."""
    max_gap: int = 1
    """Bridge up to this many consecutive missed detections inside a track."""

    # --- crop / encode --------------------------------------------------------------------------------------
    size: int = 256
    """Output tubes are ``size x size`` pixels."""
    margin: float = 0.0
    """Extra context around the face, as a fraction of the face box side added on *each* side
    (0.3 = the 1st-place +30%). 0 is the published tight union box."""
    crop: CropMode = "auto"
    """``auto``: per track (and per decoding chunk), the static square while it stays tight around the face,
    else a following one: one person per tube, at a size that fills it. ``static``: one square over the union
    of the track's boxes (published; a walking person's union box shows the whole scene). ``follow``: a
    fixed-size square whose centre follows the face, smoothed over time."""
    follow_sigma: float = 15.0
    """``follow`` mode: Gaussian smoothing of the crop centre, in frames."""
    chunk_frames: Optional[int] = 150
    """Decode every frame once: the video is processed in chunks of this many frames (rounded down to a multiple
    of ``detect_every``; the published pipeline also cut videos into 150-frame chunks): detect on the chunk's
    sampled frames, extend the tracks, crop and encode the chunk. Memory is bounded by one chunk. A static crop is
    then the union box of the track's frames *in the chunk*. None: the two-pass path (detect over the whole video,
    then decode it a second time to crop), whose static crop is the union box over the whole track part."""
    chunk_memory_mb: int = 256
    """Upper bound on the decoded frames one chunk holds (native pixel format): a 1080p 4:2:0 video gets 80-frame
    chunks, 4K 20 frames, 720p the full 150 (peak RSS figures in benchmarks/RESULTS.md, "Single decode")."""
    crf: int = 23
    pix_fmt: str = "yuv444p"
    preset: str = "veryfast"
    """x264 preset. Quality is fixed by ``crf``; the preset trades file size for speed."""
    keyint: Optional[int] = 64
    """Keyframe interval of the tubes. 64 makes the random reads of training ~3x cheaper than x264's default
    (250) for ~30% larger files (benchmarks/RESULTS.md, video section). None: x264's default."""

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if any(isinstance(x, float) and not math.isfinite(x) for x in (v if isinstance(v, tuple) else (v,))):
                bad(f"{f.name} must be a finite number, got {v}")
        if self.detect_every < 1:
            bad(f"detect_every must be >= 1, got {self.detect_every}")
        from .detect import DETECTORS

        if self.detector not in DETECTORS:
            bad(f"detector must be one of {', '.join(sorted(DETECTORS))}, got {self.detector!r}")
        if self.detector == "retinaface" and not self.detector_weights:
            bad("the retinaface detector needs detector_weights (--detector-weights PATH: mobilenet0.25_Final.pth "
                "or Resnet50_Final.pth)")
        if self.detector_weights is not None and self.detector in ("mtcnn", "mtcnn-facenet"):
            bad(f"detector_weights is for the retinaface detector; {self.detector} uses facenet-pytorch's weights")
        if self.first_frames is not None and self.first_frames < 1:
            bad(f"first_frames must be >= 1, got {self.first_frames}")
        if self.min_frames < 1:
            bad(f"min_frames must be >= 1, got {self.min_frames}")
        if self.max_frames is not None and self.max_frames < self.min_frames:
            bad(f"max_frames ({self.max_frames}) must be >= min_frames ({self.min_frames})")
        if self.long_tracks not in ("split", "cap"):
            bad(f"long_tracks must be 'split' or 'cap', got {self.long_tracks!r}")
        if self.size < 16 or self.size > MAX_SIZE or self.size % 2:
            bad(f"size must be an even number from 16 to {MAX_SIZE}, got {self.size}")
        if self.margin < 0 or self.margin > 2:
            bad(f"margin must be in [0, 2], got {self.margin}")
        if self.crop not in ("auto", "static", "follow"):
            bad(f"crop must be 'auto', 'static' or 'follow', got {self.crop!r}")
        if self.chunk_frames is not None and not 1 <= self.chunk_frames <= 100_000:
            bad(f"chunk_frames must be from 1 to 100000 (or None: two passes), got {self.chunk_frames}")
        if not 16 <= self.chunk_memory_mb <= 1_000_000:
            bad(f"chunk_memory_mb must be from 16 to 1000000, got {self.chunk_memory_mb}")
        if not 0 <= self.decode_threads <= MAX_THREADS:
            bad(f"decode_threads must be from 0 to {MAX_THREADS}, got {self.decode_threads}")
        if self.detector_threads is not None and not 0 <= self.detector_threads <= MAX_THREADS:
            bad(f"detector_threads must be from 0 to {MAX_THREADS}, got {self.detector_threads}")
        if self.follow_sigma < 0:
            bad(f"follow_sigma must be >= 0, got {self.follow_sigma}")
        if self.preset not in X264_PRESETS:
            bad(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")
        formats = x264_pix_fmts()
        if formats and self.pix_fmt not in formats:
            bad(f"pix_fmt must be one of those the encoder takes ({', '.join(formats)}), got {self.pix_fmt!r}")
        if self.keyint is not None and self.keyint < 1:
            bad(f"keyint must be >= 1, got {self.keyint}")
        if not 0 <= self.crf <= 51:
            bad(f"crf must be in [0, 51], got {self.crf}")
        if len(self.thresholds) != 3 or not all(0 < t < 1 for t in self.thresholds):
            bad(f"thresholds must be three numbers in (0, 1), got {self.thresholds}")
        if self.top_k is not None and self.top_k < 1:
            bad(f"top_k must be >= 1, got {self.top_k}")
        if self.detect_batch is not None and self.detect_batch < 1:
            bad(f"detect_batch must be >= 1, got {self.detect_batch}")
        if self.min_face is not None and self.min_face <= 0:
            bad(f"min_face must be > 0, got {self.min_face}")
        if self.detect_long_side is not None and self.detect_long_side < 32:
            bad(f"detect_long_side must be >= 32, got {self.detect_long_side}")

    @classmethod
    def for_inference(cls, **overrides) -> "ExtractConfig":
        """The published inference settings: first 100 frames, detector long side 480, strict thresholds with
        retries, top 5 tracks, any track length accepted."""
        base = dict(
            first_frames=100,
            detect_long_side=480,
            thresholds=(0.8, 0.8, 0.9),
            retry=True,
            top_k=5,
            min_frames=1,
        )
        base.update(overrides)
        return cls(**base)

    def replace(self, **changes) -> "ExtractConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["thresholds"] = list(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ExtractConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown extraction setting(s): {', '.join(unknown)}")
        return cls(**data)


@functools.lru_cache(maxsize=1)
def x264_pix_fmts() -> tuple[str, ...]:
    """Pixel formats libx264 encodes in this PyAV build (empty if it cannot tell)."""
    try:
        import av

        return tuple(sorted(f.name for f in (av.codec.Codec("libx264", "w").video_formats or ())))
    except Exception:  # no libx264: VideoWriter says so when it is used
        return ()
