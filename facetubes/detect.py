"""Face detection behind a small interface, a registry of detectors by name, and the policy that picks the
detector's input resolution.

Any object with ``name`` and ``detect(frames) -> list[(boxes, probs)]`` is a detector; one that also has
``detect_landmarks(frames) -> list[(boxes, probs, landmarks (k, 5, 2))]`` gives five facial landmarks per face.
Registered detectors (``make_detector(name=...)``, ``facetubes extract --detector NAME``): ``mtcnn`` (the default,
facenet-pytorch's networks run by :class:`facetubes.mtcnn.FastMTCNN`), ``mtcnn-facenet`` (facenet-pytorch's own
driver, the reference) and ``retinaface`` (:mod:`facetubes.retinaface`, needs a local weights file). Detectors work
in the pixel coordinates of the frames they are given; the pipeline downscales frames before detection and scales
boxes and landmarks back to full resolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .tracks import Detections

__all__ = ["Detector", "FacenetMTCNN", "Detections", "detector_scale", "make_detector", "MIN_FACE_POLICY",
           "DETECTORS", "list_detectors", "register_detector", "detect_frames", "rescale_result", "to_detections"]

#: The smallest face the default policy looks for: max(MIN_FACE_PX, MIN_FACE_FRACTION * short side) pixels.
MIN_FACE_PX = 40.0
MIN_FACE_FRACTION = 0.075
MIN_FACE_POLICY = f"max({MIN_FACE_PX:g} px, {MIN_FACE_FRACTION:g} x short side)"


@runtime_checkable
class Detector(Protocol):
    """A face detector. ``frames`` is ``(N, H, W, 3)`` uint8 RGB; the result has one ``(boxes, probs)`` pair per
    frame with ``boxes`` ``(k, 4)`` float32 ``x1, y1, x2, y2`` in the frames' pixels and ``probs`` ``(k,)``.

    Optional: ``detect_landmarks(frames) -> list[(boxes, probs, landmarks)]`` with ``landmarks`` ``(k, 5, 2)``
    float32 ``x, y`` (left eye, right eye, nose, left and right mouth corner) in the same pixels; the pipeline
    uses it when present (:func:`detect_frames`) and stores the points in ``tubes.json``."""

    name: str
    #: The detector's own smallest face, in its input pixels (the resolution policy builds on it).
    min_face_size: float

    def detect(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]: ...


def detector_scale(width: int, height: int, *, min_face: Optional[float] = None, detector_min_face: float = 20.0,
                   long_side: Optional[int] = None) -> float:
    """Factor by which frames are shrunk before detection (<= 1, never upscaled).

    Policy: MTCNN finds faces down to ``detector_min_face`` pixels of its input (20), and its cost grows with the
    input area. We only need faces of at least ``min_face`` full-resolution pixels, which by default is
    ``max(40 px, 7.5% of the short side)`` (the published pipeline looked for 40 px faces at 1080p; a tube made
    from a smaller face is mostly upscaling blur), so the frame can be shrunk by ``detector_min_face / min_face``.
    At 1920x1080 that gives 0.25 (474x266 detector input); at 640x360, 0.5; at 4K, 0.12. ``long_side`` overrides
    the policy with a fixed detector resolution (inference uses 480).

    Why 7.5%: in the real MTCNN detections of DFDC part 1 (1,699 videos, `../shared/data`), 95% of face boxes are
    at least 110 px (full resolution) and 99% of videos have a median face of at least 111 px; boxes under
    81 px (7.5% of 1080) are 3% of all boxes, mostly spurious or background faces. The detector's cost grows
    with (1 / min_face)^2, so 81 px instead of 54 px (5%) makes detection 2.25x cheaper.
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"invalid frame size {width}x{height}")
    if long_side is not None:
        return min(1.0, long_side / max(width, height))
    if min_face is None:
        min_face = max(MIN_FACE_PX, MIN_FACE_FRACTION * min(width, height))
    return float(min(1.0, detector_min_face / min_face))


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Detector input size for a scale, rounded to even numbers (swscale and most detectors like them)."""
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


class FacenetMTCNN:
    """facenet-pytorch's own batched ``detect_face`` with its three networks: the reference implementation,
    kept to check :class:`~facetubes.mtcnn.FastMTCNN` against (same boxes, 2.2-2.7x slower on CPU)."""

    name = "mtcnn-facenet"

    def __init__(self, device: str = "cpu", *, min_face_size: float = 20.0,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> None:
        import torch

        try:
            from facenet_pytorch import MTCNN
            from facenet_pytorch.models.utils.detect_face import detect_face
        except ImportError as e:  # pragma: no cover - install problem
            raise ConfigError(f"facenet-pytorch is not installed ({e}); run `make install`") from None
        from .mtcnn import torch_device

        self.device = torch_device(device)
        self._torch = torch
        self._detect_face = detect_face
        self._mtcnn = MTCNN(keep_all=True, post_process=False, device=self.device).eval()
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    def detect(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(b, p) for b, p, _ in self.detect_landmarks(frames)]

    def detect_landmarks(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Like :meth:`detect`, plus five landmarks per face ``(k, 5, 2)`` float32 (x, y): eyes, nose, mouth."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (N, H, W, 3), got {frames.shape}")
        if len(frames) == 0:
            return []
        m = self._mtcnn
        with self._torch.inference_mode():
            batch_boxes, batch_points = self._detect_face(
                np.ascontiguousarray(frames), self.min_face_size, m.pnet, m.rnet, m.onet,
                list(self.thresholds), self.factor, self.device)
        out = []
        for b, pts in zip(batch_boxes, batch_points):
            b = np.asarray(b, dtype=np.float32)
            if b.size == 0:
                out.append((np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)))
            else:
                out.append((b[:, :4].copy(), b[:, 4].copy(), np.asarray(pts, np.float32).reshape(-1, 5, 2).copy()))
        return out


def __getattr__(name: str):
    if name == "MTCNNDetector":  # the default MTCNN: facenet-pytorch's networks, our faster driver
        from .mtcnn import FastMTCNN

        return FastMTCNN
    if name == "Detections":  # imported lazily: ExtractConfig validates detector names without scipy/skimage
        from .tracks import Detections

        return Detections
    raise AttributeError(name)


def _mtcnn(device: str, thresholds: Sequence[float], weights: Optional[str]) -> Detector:
    from .mtcnn import FastMTCNN

    _no_weights("mtcnn", weights)
    return FastMTCNN(device, thresholds=tuple(thresholds))


def _mtcnn_facenet(device: str, thresholds: Sequence[float], weights: Optional[str]) -> Detector:
    _no_weights("mtcnn-facenet", weights)
    return FacenetMTCNN(device, thresholds=tuple(thresholds))


def _retinaface(device: str, thresholds: Sequence[float], weights: Optional[str]) -> Detector:
    from .retinaface import RetinaFaceDetector

    if not weights:
        raise ConfigError("the retinaface detector needs its weights file: --detector-weights PATH "
                          "(mobilenet0.25_Final.pth or Resnet50_Final.pth from biubug6/Pytorch_Retinaface)")
    return RetinaFaceDetector(weights, device)


def _no_weights(name: str, weights: Optional[str]) -> None:
    if weights:
        raise ConfigError(f"the {name} detector uses the weights inside facenet-pytorch; --detector-weights is "
                          "for retinaface")


#: Detector factories by name: ``factory(device, thresholds, weights) -> Detector``. ``thresholds`` are MTCNN's
#: three stage thresholds (RetinaFace uses its published settings, see :mod:`facetubes.retinaface`).
DETECTORS: dict[str, Callable[[str, Sequence[float], Optional[str]], Detector]] = {
    "mtcnn": _mtcnn,
    "mtcnn-facenet": _mtcnn_facenet,
    "retinaface": _retinaface,
}


def register_detector(name: str, factory: Callable[[str, Sequence[float], Optional[str]], Detector]) -> None:
    """Add a detector to the registry: ``factory(device, thresholds, weights) -> Detector``. A name that is
    already registered is an error."""
    if name in DETECTORS:
        raise ConfigError(f"a detector named {name!r} is already registered")
    DETECTORS[name] = factory


def list_detectors() -> list[str]:
    """Registered detector names."""
    return sorted(DETECTORS)


def make_detector(device: str = "cpu", thresholds: Sequence[float] = (0.6, 0.7, 0.7), *, name: str = "mtcnn",
                  weights: Optional[str] = None) -> Detector:
    """A detector by name for a device. The default, ``mtcnn``, is MTCNN with facenet-pytorch's trained networks
    run by :class:`facetubes.mtcnn.FastMTCNN` (identical boxes, 2.2-2.7x faster than facenet-pytorch's driver on
    CPU); ``retinaface`` needs ``weights``, a local biubug6 checkpoint."""
    factory = DETECTORS.get(name)
    if factory is None:
        raise ConfigError(f"unknown detector {name!r}; choose from {', '.join(list_detectors())}")
    return factory(device, thresholds, weights)


def check_detector(name: str, weights: Optional[str] = None) -> None:
    """Fail early, with a one-line error, for an unknown detector or an unusable weights file (a batch checks
    this once instead of failing every video)."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose from {', '.join(list_detectors())}")
    if name == "retinaface":
        from .retinaface import load_retinaface

        if not weights:
            _retinaface("cpu", (), None)  # raises the error that names the expected files
        load_retinaface(weights)


DetectorResult = Union[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]


def detect_frames(detector: Detector, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """Run ``detector`` on ``frames``: ``(boxes, probs, landmarks)`` per frame, with ``landmarks`` ``(k, 5, 2)``
    from ``detect_landmarks`` when the detector has it, else None."""
    if hasattr(detector, "detect_landmarks"):
        return [(b, p, lm) for b, p, lm in detector.detect_landmarks(frames)]  # type: ignore[attr-defined]
    return [(b, p, None) for b, p in detector.detect(frames)]


def rescale_result(result: DetectorResult, sx: float, sy: float) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Boxes (and landmarks) of a detector input that was scaled by ``sx, sy`` back to the original pixels."""
    boxes, probs = result[0], result[1]
    landmarks = result[2] if len(result) > 2 else None
    boxes = boxes.astype(np.float32, copy=True)
    boxes[:, [0, 2]] /= sx
    boxes[:, [1, 3]] /= sy
    if landmarks is not None:
        landmarks = landmarks.astype(np.float32, copy=True)
        landmarks[..., 0] /= sx
        landmarks[..., 1] /= sy
    return boxes, probs, landmarks


def to_detections(frame_indices: Sequence[int], results: Sequence[DetectorResult], scale: float,
                  min_prob: float = 0.0) -> list[Detections]:
    """Scale detector boxes (and landmarks, when a result has them) back to full resolution and wrap them per
    sampled frame."""
    from .tracks import Detections

    inv = np.float32(1.0 / scale)
    out = []
    for idx, result in zip(frame_indices, results):
        boxes, probs = result[0], result[1]
        landmarks = result[2] if len(result) > 2 else None
        keep = probs >= min_prob
        boxes = boxes[keep].astype(np.float32) * inv
        probs = probs[keep].astype(np.float32)
        finite = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if landmarks is not None:
            landmarks = (np.asarray(landmarks, np.float32).reshape(-1, 5, 2)[keep] * inv)[finite]
        out.append(Detections(frame=int(idx), boxes=boxes[finite], probs=probs[finite], landmarks=landmarks))
    return out
