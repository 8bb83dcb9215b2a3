"""``create_model``: build a registered network by name, optionally loading weights."""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch

from .base import ClipClassifier
from .registry import get_spec
from .weights import FORMAT, WeightsError, apply_state_dict, read_state_dict, resolve_weights

__all__ = ["create_model"]


def _default_classes(builder: Any) -> int:
    """The builder's own ``num_classes`` default (1 for the 2D frame classifiers), else 2."""
    try:
        default = inspect.signature(builder).parameters["num_classes"].default
    except (KeyError, TypeError, ValueError):
        return 2
    return default if isinstance(default, int) and default >= 1 else 2


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> ClipClassifier:
    """Build the registered network ``name`` and optionally load weights into it.

    Args:
        name: one of :func:`models3d.list_models` (``i3d``, ``mc3``, ``r2plus1d``, ``r3d34``, ``seresnext50``).
        num_classes: logits width. Default: the model's own (2 for the 3D models and ``seresnext50``, 1 for the
            frame classifiers of :mod:`models3d.frame2d`); when ``weights`` is a facetubes checkpoint, default is the
            checkpoint's own class count (so a trained model comes back with its trained head).
        weights: None (random init), a path to an upstream or facetubes checkpoint, or a pretrained name of the
            model (``"kinetics400"`` for mc3/r2plus1d, ``"imagenet"`` for seresnext50) that resolves to
            ``$TORCH_HOME/hub/checkpoints/<file>``. If the file's class count differs from ``num_classes``
            the backbone is loaded and the head re-initialised; ``model.load_report`` says which keys.
        **kwargs: builder options, e.g. ``dropout``.

    Returns:
        The network in train mode, on the CPU, with ``model.preset`` and (when weights were given)
        ``model.load_report``. Input ``(B, 3, T, H, W)`` for 3D models, ``(B, 3, H, W)`` for ``seresnext50``;
        output logits ``(B, num_classes)``.

    Raises:
        ValueError: unknown name or bad option.
        WeightsError: weights missing, unreadable or for another architecture (one-line message).
    """
    spec = get_spec(name)
    if weights is None:
        return spec.builder(num_classes=_default_classes(spec.builder) if num_classes is None else num_classes,
                            **kwargs)
    path = resolve_weights(name, weights)
    raw, kind, meta = read_state_dict(path, name)
    if num_classes is None:
        num_classes = _default_classes(spec.builder)
        if kind == FORMAT:
            stored = meta.get("num_classes")
            if not isinstance(stored, int) or stored < 1:
                raise WeightsError(f"{path} is a facetubes checkpoint with invalid num_classes {stored!r}")
            num_classes = stored
    # Build without initialising (the file overwrites nearly everything): no wasted init time or memory.
    with torch.device("meta"):
        model = spec.builder(num_classes=num_classes, **kwargs)
    with torch.no_grad():
        model.load_report = apply_state_dict(model, path, raw, kind, meta)
    return model
