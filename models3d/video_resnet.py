"""torchvision's ``mc3_18`` and ``r2plus1d_18`` behind the models3d contract.

The networks are built by torchvision's own builders (no weights requested, nothing downloaded). The wrapper
adopts their submodules (``stem``, ``layer1``..``layer4``, ``fc``) as its own, so state-dict keys are exactly
torchvision's and ``mc3_18-a90a0ba3.pth`` / ``r2plus1d_18-91a641e6.pth`` load key for key.

``weights="kinetics400"`` resolves to those files in ``$TORCH_HOME/hub/checkpoints/`` (see :mod:`.weights`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models import video as tv_video

from . import presets
from .base import ClipClassifier, check_input
from .registry import PretrainedFile, register_model

__all__ = ["TorchvisionVideoResNet", "mc3", "r2plus1d"]

_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


class TorchvisionVideoResNet(ClipClassifier):
    """A torchvision ``VideoResNet`` with the shared contract.

    Input ``(B, 3, T, H, W)`` in Kinetics normalisation (see ``preset``); output ``(B, num_classes)``;
    ``forward_features`` gives ``(B, 512)``. Downsamples space by 16; time by 8 for r2plus1d, not at all for
    mc3 (its 2D stages 2-4 keep the time axis: a 32-frame clip ends as a ``32 x 7 x 7`` map at 112 px).
    """

    classifier_name = "fc"

    def __init__(self, builder: Callable[..., nn.Module], *, arch: str, num_classes: int = 2,
                 dropout: float = 0.0) -> None:
        super().__init__(arch=arch, preset=presets.KINETICS_112, num_features=512, num_classes=num_classes)
        net = builder(weights=None, num_classes=num_classes)
        for name in _STAGES:
            self.add_module(name, getattr(net, name))
        self.dropout = nn.Dropout(dropout)
        self.fc = net.fc  # torchvision's init: N(0, 0.01) weights, zero bias

    def _new_classifier(self, num_classes: int) -> nn.Module:
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
        return fc

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, T, H, W)`` -> ``(B, 512)``: stem, four stages, global average pool."""
        check_input(x, 5, self.arch)
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return torch.mean(x, dim=(2, 3, 4))

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, 512)`` -> ``(B, num_classes)``."""
        return self.fc(self.dropout(features))


_TV_URL = "https://download.pytorch.org/models/"


@register_model("mc3", preset=presets.KINETICS_112,
                description="torchvision mc3_18 (mixed 3D/2D convolutions)",
                pretrained={"kinetics400": PretrainedFile("mc3_18-a90a0ba3.pth", _TV_URL + "mc3_18-a90a0ba3.pth")})
def mc3(*, num_classes: int = 2, dropout: float = 0.0) -> TorchvisionVideoResNet:
    """torchvision ``mc3_18``; 11,491,266 parameters with 2 classes."""
    return TorchvisionVideoResNet(tv_video.mc3_18, arch="mc3", num_classes=num_classes, dropout=dropout)


@register_model("r2plus1d", preset=presets.KINETICS_112,
                description="torchvision r2plus1d_18 ((2+1)D factorised convolutions)",
                pretrained={"kinetics400": PretrainedFile("r2plus1d_18-91a641e6.pth",
                                                          _TV_URL + "r2plus1d_18-91a641e6.pth")})
def r2plus1d(*, num_classes: int = 2, dropout: float = 0.0) -> TorchvisionVideoResNet:
    """torchvision ``r2plus1d_18``; 31,301,151 parameters with 2 classes."""
    return TorchvisionVideoResNet(tv_video.r2plus1d_18, arch="r2plus1d", num_classes=num_classes, dropout=dropout)
