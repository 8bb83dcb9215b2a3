"""Model registry: names -> builders, presets and named pretrained files.

Each model file registers its builder with :func:`register_model`; :func:`create_model` in
:mod:`models3d.factory` builds by name. Registering a name twice is an error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar

import torch

from .base import ClipClassifier
from .presets import Preset

__all__ = [
    "PretrainedFile",
    "ModelSpec",
    "register_model",
    "list_models",
    "get_spec",
    "get_preset",
    "expected_shapes",
]


@dataclass(frozen=True)
class PretrainedFile:
    """A public checkpoint that can be asked for by name (``weights="kinetics400"``).

    The file is looked for in ``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``), where torchvision
    and timm would have downloaded it; nothing is ever downloaded here.
    """

    filename: str
    url: str


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry of one architecture."""

    name: str
    builder: Callable[..., ClipClassifier]
    preset: Preset
    description: str = ""
    pretrained: Mapping[str, PretrainedFile] = field(default_factory=dict)
    key_hint: str = ""  # a state-dict key every file of this model has; identify_arch skips it when absent
    hint_shape: tuple[int, ...] = ()  # and that key's shape, when known without building the model


_REGISTRY: dict[str, ModelSpec] = {}

B = TypeVar("B", bound=Callable[..., ClipClassifier])


def register_model(
    name: str,
    *,
    preset: Preset,
    description: str = "",
    pretrained: Mapping[str, PretrainedFile] | None = None,
    key_hint: str = "",
    hint_shape: tuple[int, ...] = (),
) -> Callable[[B], B]:
    """Decorator registering ``builder(*, num_classes, **kwargs) -> ClipClassifier`` under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorate(builder: B) -> B:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, builder, preset, description, dict(pretrained or {}), key_hint,
                                    tuple(hint_shape))
        return builder

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """Registry entry of ``name``; ``ValueError`` naming the choices if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def get_preset(name: str) -> Preset:
    """Default preprocessing preset of the model ``name`` (same object as ``model.preset`` of a fresh model)."""
    return get_spec(name).preset


@functools.cache
def expected_shapes(name: str, num_classes: int = 2) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape of model ``name``, computed on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def identify_arch(shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """Best-matching registered architecture for a state dict given as key -> shape, or None.

    A candidate matches when at least 90% of its non-head keys are present with the same shape.
    """
    best, best_score = None, 0.0
    for name in list_models():
        spec = _REGISTRY[name]
        # cheap pre-filter: building every timm backbone on the meta device would cost seconds
        if spec.key_hint and (spec.key_hint not in shapes
                              or (spec.hint_shape and tuple(shapes[spec.key_hint]) != spec.hint_shape)):
            continue
        ref = expected_shapes(name)
        keys = [k for k in ref if not k.endswith("num_batches_tracked")]
        hits = sum(1 for k in keys if shapes.get(k) == ref[k])
        score = hits / max(len(keys), 1)
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= 0.9 else None
