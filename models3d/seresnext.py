"""2D SE-ResNeXt50_32x4d (timm ``legacy_seresnext50_32x4d``) behind the models3d contract.

timm's legacy model keeps Cadene's ``pretrainedmodels`` key layout (``layer0.conv1``, ``layer1.0.se_module.fc1``,
``last_linear``), so Cadene's ``se_resnext50_32x4d-a260b3a4.pth`` loads key for key. The network is built by
timm (``pretrained=False``, nothing downloaded); the wrapper adopts its stages so the keys stay unchanged.

The published DFDC 2D model used dropout 0.5 and ``Linear(2048, 1)`` trained with BCE: that is
``create_model("seresnext50", num_classes=1)`` (dropout 0.5 is the default here).
"""

from __future__ import annotations

from typing import Mapping

import timm
import torch
from torch import Tensor, nn

from . import presets
from .base import ClipClassifier, check_input
from .registry import PretrainedFile, register_model

__all__ = ["SEResNeXt50", "seresnext50"]

_STAGES = ("layer0", "pool0", "layer1", "layer2", "layer3", "layer4")
_CADENE_URL = "http://data.lip6.fr/cadene/pretrainedmodels/se_resnext50_32x4d-a260b3a4.pth"


class SEResNeXt50(ClipClassifier):
    """SE-ResNeXt50_32x4d for single frames.

    Input ``(B, 3, H, W)`` with ImageNet normalisation (see ``preset``); output ``(B, num_classes)``;
    ``forward_features`` gives ``(B, 2048)``. Downsamples space by 32.
    """

    classifier_name = "last_linear"

    def __init__(self, *, num_classes: int = 2, dropout: float = 0.5, head: str = "linear",
                 norm: str = "batch") -> None:
        from .frame2d import HEADS, NORMS, _hidden512, _to_group_norm

        if head not in HEADS or norm not in NORMS:
            raise ValueError(f"seresnext50: head must be one of {', '.join(HEADS)} and norm one of "
                             f"{', '.join(NORMS)}, got {head!r}, {norm!r}")
        super().__init__(arch="seresnext50", preset=presets.SERESNEXT50, num_features=2048,
                         num_classes=num_classes)
        net = timm.create_model("legacy_seresnext50_32x4d", pretrained=False, num_classes=num_classes)
        if net.num_features != self.num_features:
            raise RuntimeError(f"unexpected timm SE-ResNeXt50 width {net.num_features}")
        if norm == "group":
            _to_group_norm(net)
        self.head_kind, self.head_dropout, self.norm = head, float(dropout), norm
        for name in _STAGES:
            self.add_module(name, getattr(net, name))
        self.dropout = nn.Dropout(0.0 if head == "hidden512" else dropout)
        self.last_linear = net.last_linear if head == "linear" else _hidden512(2048, num_classes, dropout)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        if getattr(self, "head_kind", "linear") == "hidden512":
            from .frame2d import _hidden512

            return _hidden512(self.num_features, num_classes, self.head_dropout)
        return nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, 2048)``: ``layer0``, ``pool0``, four stages, global average pool."""
        check_input(x, 4, self.arch)
        for name in _STAGES:
            x = getattr(self, name)(x)
        return torch.mean(x, dim=(2, 3))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 2048)`` -> ``(B, num_classes)``: dropout, ``last_linear``."""
        return self.last_linear(self.dropout(features))

    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        """Also read the DFDC 5th place's 2D file (``SRXT50_094_VM-0.2504.PTH``): ``backbone.`` + Cadene keys
        without ``last_linear``, and ``fc`` (one logit). Its keys map one to one onto this layout."""
        if state and all(k.startswith(("backbone.", "fc.")) for k in state):
            return {("last_linear." + k[3:] if k.startswith("fc.") else k[len("backbone."):]): v
                    for k, v in state.items()}, []
        return dict(state), []


@register_model("seresnext50", preset=presets.SERESNEXT50,
                description="2D SE-ResNeXt50_32x4d (timm legacy_seresnext50_32x4d, Cadene keys)",
                pretrained={"imagenet": PretrainedFile("se_resnext50_32x4d-a260b3a4.pth", _CADENE_URL)})
def seresnext50(*, num_classes: int = 2, dropout: float = 0.5, head: str = "linear",
                norm: str = "batch") -> SEResNeXt50:
    """SE-ResNeXt50_32x4d; 25,514,994 parameters with 2 classes (27,559,896 with ImageNet's 1000).
    ``head`` and ``norm`` as in :mod:`models3d.frame2d` (``hidden512`` head, GroupNorm)."""
    return SEResNeXt50(num_classes=num_classes, dropout=dropout, head=head, norm=norm)
