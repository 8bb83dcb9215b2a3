"""Generic 2D frame classifiers over timm backbones, and the DFDC 1st-place ``DeepFakeClassifier`` layout.

Every network here has the same module layout, which is the one the DFDC 1st-place team (selimsef) published::

    encoder   a timm backbone (pretrained=False); ``encoder.*`` keys are timm's own keys
    avg_pool  AdaptiveAvgPool2d(1)                       (B, F, h, w) -> (B, F)
    dropout   Dropout(p)
    fc        the head: Linear(F, num_classes)            head="linear"
              or BN(F), Dropout, Linear(F, 512), ReLU, BN(512), Linear(512, num_classes)   head="hidden512"

Registered names: ``efficientnet_b0`` .. ``efficientnet_b7``, ``tf_efficientnet_b0`` .. ``tf_efficientnet_b7`` and
their ``_ns`` (Noisy Student) variants, ``xception`` (timm ``legacy_xception``, key-compatible with the Cadene file),
``resnet34``; and ``dfdc1st``, the 1st-place class, whose encoder (``tf_efficientnet_b7_ns`` by default, b0..b7
allowed) keeps timm's 1000-class ``encoder.classifier`` in the state dict (unused in the forward pass, but present in
the published files, so strict loading needs it).

An ImageNet checkpoint of the bare backbone (timm/Cadene keys, no ``encoder.`` prefix) loads through
:meth:`FrameClassifier.adapt_state_dict`: the keys get the ``encoder.`` prefix, the ImageNet classifier is dropped
and the ``fc`` head starts fresh (``model.load_report`` lists it). ``norm="group"`` replaces every BatchNorm of the
encoder by a GroupNorm (for small batches); the ImageNet file's affine parameters still load, its running
statistics are dropped.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import timm
from torch import Tensor, nn

from . import presets
from .base import ClipClassifier, check_input
from .presets import Preset
from .registry import PretrainedFile, register_model

__all__ = ["FrameClassifier", "HEADS", "NORMS", "DFDC1ST_ENCODERS", "frame_preset"]

HEADS = ("linear", "hidden512")
NORMS = ("batch", "group")

# name -> (timm model name, input size, mean/std kind)
_EFFNET_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)
_BACKBONES: dict[str, tuple[str, int, str]] = {}
for _i, _s in enumerate(_EFFNET_SIZES):
    _BACKBONES[f"efficientnet_b{_i}"] = (f"efficientnet_b{_i}", _s, "imagenet")
    _BACKBONES[f"tf_efficientnet_b{_i}"] = (f"tf_efficientnet_b{_i}", _s, "imagenet")
    _BACKBONES[f"tf_efficientnet_b{_i}_ns"] = (f"tf_efficientnet_b{_i}.ns_jft_in1k", _s, "imagenet")
_BACKBONES["xception"] = ("legacy_xception", 299, "inception")
_BACKBONES["resnet34"] = ("resnet34", 224, "imagenet")

#: Encoders the 1st-place class accepts (its published files use ``tf_efficientnet_b7_ns``).
DFDC1ST_ENCODERS: tuple[str, ...] = tuple(f"tf_efficientnet_b{i}_ns" for i in range(8))
#: The 1st-place inference size (isotropic resize to 380, zero padding to 380x380).
DFDC1ST_SIZE = 380


def frame_preset(crop_size: int, kind: str = "imagenet") -> Preset:
    """2D preset: [0, 1] then ImageNet mean/std (``kind="imagenet"``) or mean = std = 0.5 (``"inception"``)."""
    mean, std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) if kind == "inception" else (presets.IMAGENET_MEAN,
                                                                               presets.IMAGENET_STD)
    return Preset(clip_len=1, crop_size=crop_size, value_range=(0.0, 1.0), mean=mean, std=std, is_3d=False)


def _groups(channels: int) -> int:
    return math.gcd(channels, 32)


def _to_group_norm(module: nn.Module) -> None:
    """Replace every BatchNorm2d (timm's BatchNormAct2d included, keeping its activation) by a GroupNorm."""
    from timm.layers import BatchNormAct2d, GroupNormAct

    for name, child in list(module.named_children()):
        if isinstance(child, BatchNormAct2d):
            gn = GroupNormAct(child.num_features, num_groups=_groups(child.num_features), eps=child.eps,
                              affine=True, apply_act=False)
            gn.act, gn.drop = child.act, child.drop
            setattr(module, name, gn)
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(_groups(child.num_features), child.num_features, eps=child.eps))
        else:
            _to_group_norm(child)


def _hidden512(num_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """The public DFDC kernel head: BN(F), Dropout, Linear(F, 512), ReLU, BN(512), Linear(512, num_classes)."""
    return nn.Sequential(nn.BatchNorm1d(num_features), nn.Dropout(dropout), nn.Linear(num_features, 512),
                         nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Linear(512, num_classes))


class FrameClassifier(ClipClassifier):
    """A timm backbone + global average pool + dropout + head, for single frames.

    Input ``(B, 3, H, W)`` normalised as ``preset`` says; output ``(B, num_classes)``; ``forward_features``
    gives ``(B, num_features)``.

    Args:
        arch: registry name.
        timm_name: timm model name of the encoder (``pretrained=False``: nothing is downloaded).
        preset: preprocessing contract.
        num_classes: logits width.
        head: ``"linear"`` or ``"hidden512"``.
        dropout: dropout probability before the head (inside it for ``hidden512``).
        norm: ``"batch"`` or ``"group"`` (GroupNorm in the encoder).
        keep_encoder_classifier: keep timm's 1000-class classifier inside ``encoder`` (the 1st-place layout).
        drop_path: stochastic depth of the encoder (training only).
    """

    classifier_name = "fc"

    def __init__(self, *, arch: str, timm_name: str, preset: Preset, num_classes: int = 1, head: str = "linear",
                 dropout: float = 0.0, norm: str = "batch", keep_encoder_classifier: bool = False,
                 drop_path: float = 0.0) -> None:
        if head not in HEADS:
            raise ValueError(f"{arch}: head must be one of {', '.join(HEADS)}, got {head!r}")
        if norm not in NORMS:
            raise ValueError(f"{arch}: norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"{arch}: dropout must be in [0, 1), got {dropout!r}")
        kwargs: dict[str, Any] = {"drop_path_rate": drop_path} if drop_path else {}
        encoder = timm.create_model(timm_name, pretrained=False, num_classes=1000 if keep_encoder_classifier else 0,
                                    **kwargs)
        super().__init__(arch=arch, preset=preset, num_features=int(encoder.num_features), num_classes=num_classes)
        self.timm_name = timm_name
        self.head_kind = head
        self.head_dropout = float(dropout)
        self.norm = norm
        self._timm_classifier = str(encoder.pretrained_cfg.get("classifier") or "classifier")
        if norm == "group":
            _to_group_norm(encoder)
        self.encoder = encoder
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.0 if head == "hidden512" else dropout)
        self.fc = self._new_classifier(num_classes)

    def _new_classifier(self, num_classes: int) -> nn.Module:
        if self.head_kind == "hidden512":
            return _hidden512(self.num_features, num_classes, self.head_dropout)
        return nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, F)``: ``encoder.forward_features``, global average pool."""
        check_input(x, 4, self.arch)
        return self.avg_pool(self.encoder.forward_features(x)).flatten(1)

    def forward_head(self, features: Tensor) -> Tensor:
        """``(B, F)`` -> ``(B, num_classes)``: dropout, ``fc``."""
        return self.fc(self.dropout(features))

    def adapt_state_dict(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        """Map a bare-backbone file (timm/Cadene keys) onto this layout; other files pass unchanged.

        Returns:
            ``(state, dropped)``: the mapped state dict and the file's keys that were dropped (its ImageNet
            classifier, and BatchNorm running statistics when ``norm="group"``).
        """
        own = self.state_dict()
        if any(k.startswith("encoder.") for k in state):
            out, dropped = dict(state), []
        else:
            head = self._timm_classifier + "."
            keep_cls = any(k.startswith("encoder." + head) for k in own)
            out, dropped = {}, []
            for k, v in state.items():
                if k.startswith(head) and not keep_cls:
                    dropped.append(k)
                else:
                    out["encoder." + k] = v
            if not any(k.startswith("encoder.") for k in out):
                return dict(state), []
        if self.norm == "group":
            stats = ("running_mean", "running_var", "num_batches_tracked")
            for k in [k for k in out if k not in own and k.rsplit(".", 1)[-1] in stats]:
                dropped.append(k)
                del out[k]
        return out, dropped

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, encoder={self.timm_name!r}, head={self.head_kind!r}, norm={self.norm!r}"


# EfficientNet b0..b7: (features, channels of the last block) = shape of conv_head, a cheap arch signature.
_EFFNET_HEAD = ((1280, 320), (1280, 320), (1408, 352), (1536, 384), (1792, 448), (2048, 512), (2304, 576),
                (2560, 640))


def _hint(timm_name: str) -> tuple[str, tuple[int, ...]]:
    """(key, shape) that :func:`models3d.registry.identify_arch` checks before building the model."""
    if "efficientnet_b" in timm_name:
        f, c = _EFFNET_HEAD[int(timm_name.split("efficientnet_b")[1][0])]
        return "encoder.conv_head.weight", (f, c, 1, 1)
    if "xception" in timm_name:
        return "encoder.block12.skip.weight", ()
    return "encoder.layer4.0.conv1.weight", ()


def _register_backbone(name: str, timm_name: str, size: int, kind: str) -> None:
    try:
        url = getattr(timm.get_pretrained_cfg(timm_name), "url", "") or ""
    except RuntimeError:  # a timm without that pretrained tag: no named file, a path still works
        url = ""
    pretrained = {"imagenet": PretrainedFile(url.rsplit("/", 1)[-1], url)} if url else {}
    preset = frame_preset(size, kind)

    def build(*, num_classes: int = 1, head: str = "linear", dropout: float = 0.0, norm: str = "batch",
              drop_path: float = 0.0) -> FrameClassifier:
        return FrameClassifier(arch=name, timm_name=timm_name, preset=preset, num_classes=num_classes, head=head,
                               dropout=dropout, norm=norm, drop_path=drop_path)

    build.__doc__ = f"2D {name} (timm {timm_name}) frame classifier, {size} px."
    register_model(name, preset=preset, description=f"2D {name} frame classifier (timm {timm_name}), {size} px",
                   pretrained=pretrained, key_hint=_hint(timm_name)[0], hint_shape=_hint(timm_name)[1])(build)


for _name, (_timm, _size, _kind) in _BACKBONES.items():
    _register_backbone(_name, _timm, _size, _kind)


@register_model("dfdc1st", preset=frame_preset(DFDC1ST_SIZE),
                description="DFDC 1st place DeepFakeClassifier: tf_efficientnet_b7_ns encoder (with its 1000-class "
                            "classifier), avg pool, dropout, fc (1 logit), 380 px",
                key_hint="encoder.classifier.weight")  # any encoder size: the file says which
def dfdc1st(*, num_classes: int = 1, encoder: str = "tf_efficientnet_b7_ns", dropout: float = 0.0,
            crop_size: int = DFDC1ST_SIZE) -> FrameClassifier:
    """The 1st-place ``DeepFakeClassifier`` (selimsef). Published files: 1,202 tensors with the B7 encoder.

    Args:
        encoder: one of :data:`DFDC1ST_ENCODERS` (the published class supports b2..b7; smaller ones are for tests).
        crop_size: input side of the preset (published: 380).
    """
    if encoder not in DFDC1ST_ENCODERS:
        raise ValueError(f"dfdc1st: encoder must be one of {', '.join(DFDC1ST_ENCODERS)}, got {encoder!r}")
    return FrameClassifier(arch="dfdc1st", timm_name=_BACKBONES[encoder][0], preset=frame_preset(crop_size),
                           num_classes=num_classes, dropout=dropout, keep_encoder_classifier=True, drop_path=0.2)
