"""models3d: the facetubes model zoo.

Registered networks (``list_models()``): ``i3d``, ``mc3``, ``r2plus1d``, ``r3d34`` (3D, input
``(B, 3, T, H, W)``), ``seresnext50`` and the timm frame classifiers of :mod:`models3d.frame2d` (``efficientnet_b0``
.. ``b7``, ``tf_efficientnet_*``, ``xception``, ``resnet34``, the DFDC 1st-place ``dfdc1st``; 2D, input
``(B, 3, H, W)``); all return logits ``(B, num_classes)``
and share one contract (``forward_features``, ``forward_head``, ``reset_classifier``, ``num_features``,
``preset``). ``create_model(name, num_classes, weights=path)`` loads the public pretrained checkpoints as
their owners publish them and facetubes' own checkpoints (``save_checkpoint``). See the README.

This package imports only torch, torchvision and timm (never facetubes, train or infer).
"""

from . import frame2d as _frame2d  # noqa: F401  (registers the 2D timm frame classifiers and "dfdc1st")
from . import i3d as _i3d  # noqa: F401  (registers "i3d")
from . import resnet3d as _resnet3d  # noqa: F401  (registers "r3d34")
from . import seresnext as _seresnext  # noqa: F401  (registers "seresnext50")
from . import video_resnet as _video_resnet  # noqa: F401  (registers "mc3", "r2plus1d")
from .base import ClipClassifier, count_parameters
from .factory import create_model
from .presets import Preset
from .registry import ModelSpec, PretrainedFile, get_preset, get_spec, list_models, register_model
from .weights import (
    FORMAT,
    FORMAT_VERSION,
    LoadReport,
    WeightsError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)

__all__ = [
    "ClipClassifier",
    "FORMAT",
    "FORMAT_VERSION",
    "LoadReport",
    "ModelSpec",
    "Preset",
    "PretrainedFile",
    "WeightsError",
    "count_parameters",
    "create_model",
    "get_preset",
    "get_spec",
    "list_models",
    "load_checkpoint",
    "load_weights",
    "register_model",
    "save_checkpoint",
]
