"""facetubes: per-person face tubes from videos, for deepfake detection with 3D video CNNs.

Library entry points::

    from facetubes import ExtractConfig, extract_tubes, extract_tubes_in_memory, build_tracks
    manifest = extract_tubes("video.mp4", "tubes/", ExtractConfig(margin=0.2))
"""

__version__ = "0.1.0"

from .config import ExtractConfig  # noqa: E402
from .errors import ConfigError, FacetubesError, OutputError, VideoError  # noqa: E402
from .manifest import Label, TubeRecord, load_labels, read_index, read_manifest, rebuild_index  # noqa: E402


def __getattr__(name: str):
    # Heavy modules (PyAV, torch via the detector) load on first use, so `import facetubes` stays cheap.
    lazy = {
        "extract_tubes": "pipeline", "extract_tubes_in_memory": "pipeline", "Tube": "pipeline",
        "VideoTubes": "pipeline", "build_tracks": "tracks", "Track": "tracks", "Detections": "tracks",
        "plan_crops": "crops", "CropPlan": "crops", "probe": "video", "VideoInfo": "video",
        "MTCNNDetector": "detect", "FastMTCNN": "mtcnn", "Detector": "detect", "extract_batch": "batch",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f".{lazy[name]}", __name__), name)
    raise AttributeError(f"module 'facetubes' has no attribute {name!r}")


__all__ = [
    "__version__", "ExtractConfig", "FacetubesError", "VideoError", "ConfigError", "OutputError",
    "TubeRecord", "Label", "read_index", "read_manifest", "load_labels", "rebuild_index",
    "extract_tubes", "extract_tubes_in_memory", "Tube", "VideoTubes", "build_tracks", "Track", "Detections",
    "plan_crops", "CropPlan", "probe", "VideoInfo", "MTCNNDetector", "FastMTCNN", "Detector", "extract_batch",
]
