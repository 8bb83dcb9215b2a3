"""The one contract every models3d network follows.

Training and the ensemble only ever call what is defined here, so they need no per-model special cases::

    feats  = model.forward_features(x)     # (B, num_features)
    logits = model.forward_head(feats)     # (B, num_classes)
    logits = model(x)                      # same thing
    model.reset_classifier(1)              # new head, backbone untouched
    model.preset.normalize(uint8_clip)     # preprocessing that matches the pretraining

``x`` is ``(B, 3, T, H, W)`` for 3D models (``preset.is_3d``) and ``(B, 3, H, W)`` for the 2D model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from .presets import Preset

__all__ = ["ClipClassifier", "check_input", "count_parameters"]


class ClipClassifier(nn.Module, ABC):
    """Base class of all registered networks.

    Subclasses build their layers with the upstream module names (so state-dict keys are those of the public
    checkpoints), set ``num_features`` and ``num_classes``, and name their classifier module in
    ``classifier_name`` (dotted path, e.g. ``"fc"`` or ``"logits.conv3d"``).

    Attributes:
        arch: registry name (``"i3d"``, ...).
        preset: preprocessing contract; replaced by the checkpoint's preset when loading a facetubes checkpoint.
        num_features: width of ``forward_features`` output.
        num_classes: width of the logits.
        classifier_name: dotted module path of the classifier, whose parameters form the "head".
    """

    arch: str
    classifier_name: str

    def __init__(self, *, arch: str, preset: Preset, num_features: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.arch = arch
        self.preset = preset
        self.num_features = num_features
        self.num_classes = num_classes

    @abstractmethod
    def forward_features(self, x: Tensor) -> Tensor:
        """Backbone and global pooling: ``(B, 3, T, H, W)`` or ``(B, 3, H, W)`` -> ``(B, num_features)``."""

    @abstractmethod
    def forward_head(self, features: Tensor) -> Tensor:
        """Dropout and classifier: ``(B, num_features)`` -> logits ``(B, num_classes)``."""

    @abstractmethod
    def _new_classifier(self, num_classes: int) -> nn.Module:
        """A freshly initialised classifier module for ``num_classes`` outputs."""

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for a batch ``(B, 3, T, H, W)`` (3D) or ``(B, 3, H, W)`` (2D)."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs.

        The new head is created on the device and with the dtype of the current one; the backbone is untouched.
        """
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.get_classifier()
        ref = next(old.parameters())
        new = self._new_classifier(num_classes).to(device=ref.device, dtype=ref.dtype)
        new.train(old.training)
        parent_name, _, leaf = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, leaf, new)
        self.num_classes = num_classes

    def get_classifier(self) -> nn.Module:
        """The classifier module (its parameters are the head)."""
        return self.get_submodule(self.classifier_name)

    def head_keys(self) -> list[str]:
        """State-dict keys of the head, e.g. ``["fc.weight", "fc.bias"]``."""
        prefix = self.classifier_name + "."
        return [k for k in self.state_dict(keep_vars=True) if k.startswith(prefix)]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}, num_features={self.num_features}"


def check_input(x: Tensor, ndim: int, arch: str) -> None:
    """Raise ``ValueError`` unless ``x`` has ``ndim`` dimensions and 3 channels (cheap; no graph break)."""
    if x.ndim != ndim or x.shape[1] != 3:
        layout = "(B, 3, T, H, W)" if ndim == 5 else "(B, 3, H, W)"
        raise ValueError(f"{arch} expects input {layout}, got shape {tuple(x.shape)}")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (works on the meta device too)."""
    return sum(p.numel() for p in model.parameters())
