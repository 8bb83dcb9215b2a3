"""infer: ensemble inference and evaluation for face-tube deepfake detectors.

Library entry points::

    from infer import load_spec, load_members, EnsemblePredictor
    spec = load_spec("ensemble.yaml")
    predictor = EnsemblePredictor(load_members(spec, device="cuda"), device="cuda")
    result = predictor.predict([tube.frames for tube in facetubes.extract_tubes_in_memory("video.mp4").tubes])

Command line: ``facetubes predict`` and ``facetubes evaluate`` (see the README).
"""

from .aggregate import clip_probability, combine_members, fake_probability, tube_probability, video_probability
from .metrics import average_precision, binary_metrics, equal_error_rate, log_loss, roc_auc, roc_curve
from .spec import EnsembleSpec, MemberSpec, load_spec, parse_spec

_LAZY = {"EnsemblePredictor": "engine", "Member": "engine", "VideoPrediction": "engine", "load_members": "members"}


def __getattr__(name: str):
    # torch (engine) and models3d (members) are imported on first use, so that `facetubes evaluate`, `datasets`,
    # `index` and `--help` start in a fraction of a second instead of importing torch (~3 s)
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'infer' has no attribute {name!r}")


__all__ = [
    "EnsemblePredictor", "Member", "VideoPrediction", "EnsembleSpec", "MemberSpec", "load_spec", "parse_spec",
    "load_members", "clip_probability", "combine_members", "fake_probability", "tube_probability",
    "video_probability", "average_precision", "binary_metrics", "equal_error_rate", "log_loss", "roc_auc",
    "roc_curve",
]
