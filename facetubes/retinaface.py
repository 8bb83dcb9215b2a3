"""RetinaFace (MobileNet-0.25 and ResNet-50) in the key layout of biubug6/Pytorch_Retinaface, behind the
:class:`facetubes.detect.Detector` interface.

The public files ``mobilenet0.25_Final.pth`` and ``Resnet50_Final.pth`` load strictly (every key, every shape),
with or without a ``module.`` prefix (the ResNet-50 file was trained on 4 GPUs) and with or without a
``{"state_dict": ...}`` wrapper, from a local path only (``torch.load(weights_only=True)``; nothing is downloaded).

Network (names are the checkpoint's keys):

- ``body``: MobileNetV1 x0.25 (``stage1..3``, outputs 64, 128, 256 channels at strides 8, 16, 32) or
  torchvision's ResNet-50 without its classifier (``conv1, bn1, layer1..4``; ``layer2..4`` give 512, 1024, 2048).
- ``fpn``: ``output1..3`` (1x1 conv + BN + activation to ``out`` channels), top-down nearest upsampling and sums,
  ``merge1..2`` (3x3 conv + BN + activation). ``out`` = 64 (MobileNet) or 256 (ResNet-50).
- ``ssh1..3``: the SSH context module on each level: ``conv3X3`` (out/2), ``conv5X5_1 -> conv5X5_2`` (out/4),
  ``conv5X5_1 -> conv7X7_2 -> conv7x7_3`` (out/4), concatenated, ReLU.
- ``ClassHead/BboxHead/LandmarkHead.{0,1,2}.conv1x1``: 1x1 convs giving 2 anchors x (2, 4, 10) values per cell.
- Activations: LeakyReLU(0.1) in the FPN and SSH when ``out <= 64`` (MobileNet), else ReLU; LeakyReLU(0.1) in the
  MobileNet body.

Inference (the published ``detect.py`` settings): input BGR float minus (104, 117, 123), no scaling, at the
frame's own size; priors per input size (:func:`priors`); boxes and landmarks decoded with variances (0.1, 0.2)
(:func:`decode_boxes`, :func:`decode_landmarks`); score = softmax(conf)[:, 1]; scores > 0.02 kept, the top 5000
by score, NMS at IoU 0.4 with the ``+1`` pixel area convention of ``py_cpu_nms``, at most 750 kept; the detector
returns those with score >= 0.6 (the published visualisation threshold, ``vis_thres``).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from .errors import ConfigError, FacetubesError

__all__ = ["RetinaFace", "RetinaFaceConfig", "RetinaFaceDetector", "CONFIGS", "priors", "decode_boxes",
           "decode_landmarks", "postprocess", "load_retinaface", "build_retinaface", "RetinaFaceWeightsError"]

MEAN_BGR = (104.0, 117.0, 123.0)
VARIANCE = (0.1, 0.2)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
CONFIDENCE_THRESHOLD = 0.02
TOP_K = 5000
NMS_THRESHOLD = 0.4
KEEP_TOP_K = 750
VIS_THRESHOLD = 0.6


class RetinaFaceWeightsError(FacetubesError):
    """A RetinaFace checkpoint is missing, unreadable or not in the expected layout."""


@dataclass(frozen=True)
class RetinaFaceConfig:
    """One backbone's settings (biubug6's ``cfg_mnet`` / ``cfg_re50``)."""

    name: str
    file_name: str
    in_channels: tuple[int, int, int]
    out_channels: int


CONFIGS = {
    "mobilenet0.25": RetinaFaceConfig("mobilenet0.25", "mobilenet0.25_Final.pth", (64, 128, 256), 64),
    "resnet50": RetinaFaceConfig("resnet50", "Resnet50_Final.pth", (512, 1024, 2048), 256),
}
_ALIASES = {"mobilenet": "mobilenet0.25", "mnet": "mobilenet0.25", "mobilenet0.25": "mobilenet0.25",
            "resnet50": "resnet50", "re50": "resnet50", "resnet": "resnet50"}


# ----------------------------------------------------------------------------------------------------------------
# network


def _conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0, kernel: int = 3,
             act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup)]
    if act:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + BN + act, pointwise 1x1 + BN + act (keys ``0, 1, 3, 4``)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp), nn.LeakyReLU(leaky, True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.LeakyReLU(leaky, True))


class MobileNetV1Body(nn.Module):
    """MobileNetV1 x0.25: ``(B, 3, H, W)`` -> features at strides 8, 16, 32 with 64, 128, 256 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn(3, 8, 2, leaky=0.1), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2),
                                    _conv_dw(32, 32, 1), _conv_dw(32, 64, 2), _conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class ResNet50Body(nn.Module):
    """torchvision ResNet-50 without pooling and classifier: features of ``layer2..4`` (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        r = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    """Three lateral 1x1 convs, top-down nearest upsampling + sum, 3x3 merge convs on the two finer levels."""

    def __init__(self, in_channels: Sequence[int], out: int) -> None:
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.output1 = _conv_bn(in_channels[0], out, leaky=leaky, kernel=1)
        self.output2 = _conv_bn(in_channels[1], out, leaky=leaky, kernel=1)
        self.output3 = _conv_bn(in_channels[2], out, leaky=leaky, kernel=1)
        self.merge1 = _conv_bn(out, out, leaky=leaky)
        self.merge2 = _conv_bn(out, out, leaky=leaky)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, inp: int, out: int) -> None:
        super().__init__()
        if out % 4:
            raise ValueError(f"SSH needs out channels divisible by 4, got {out}")
        leaky = 0.1 if out <= 64 else 0.0
        self.conv3X3 = _conv_bn(inp, out // 2, act=False)
        self.conv5X5_1 = _conv_bn(inp, out // 4, leaky=leaky)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, act=False)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, leaky=leaky)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(self.conv7X7_2(c5_1))], dim=1)
        return F.relu(out)


class _Head(nn.Module):
    """A 1x1 conv giving ``anchors x values`` per cell, reshaped to ``(B, H*W*anchors, values)``."""

    def __init__(self, inp: int, values: int, anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(inp, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace with biubug6's module names. ``forward(x)`` takes ``(B, 3, H, W)`` float (BGR minus
    :data:`MEAN_BGR`) and returns raw ``loc (B, P, 4)``, ``conf`` logits ``(B, P, 2)`` and ``landmarks (B, P, 10)``,
    ``P = len(priors(H, W))`` in the order of :func:`priors` (level, row, column, anchor size)."""

    def __init__(self, config: RetinaFaceConfig) -> None:
        super().__init__()
        self.config = config
        self.body = MobileNetV1Body() if config.name == "mobilenet0.25" else ResNet50Body()
        out = config.out_channels
        self.fpn = FPN(config.in_channels, out)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out), SSH(out, out), SSH(out, out)
        self.ClassHead = nn.ModuleList([_Head(out, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(out, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(out, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(x))
        feats = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landms = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, conf, landms


def backbone_name(name: str) -> str:
    """The canonical backbone name for ``name`` (``mobilenet0.25`` or ``resnet50``; a few aliases accepted)."""
    key = _ALIASES.get(str(name).lower())
    if key is None:
        raise ConfigError(f"unknown RetinaFace backbone {name!r}; choose from {', '.join(CONFIGS)}")
    return key


def build_retinaface(backbone: str = "mobilenet0.25") -> RetinaFace:
    """A RetinaFace with random weights (eval mode)."""
    return RetinaFace(CONFIGS[backbone_name(backbone)]).eval()


# ----------------------------------------------------------------------------------------------------------------
# checkpoints


def _read_state_dict(path: Union[str, os.PathLike]) -> dict:
    """The tensors of a checkpoint file: unwraps ``{"state_dict": ...}`` and strips a ``module.`` prefix."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RetinaFaceWeightsError(
            f"{path}: no such RetinaFace weights file (expected mobilenet0.25_Final.pth or Resnet50_Final.pth from "
            "biubug6/Pytorch_Retinaface; nothing is downloaded, give its local path)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, pickle with disallowed types, not a torch file
        raise RetinaFaceWeightsError(f"{path}: cannot read as a weights-only torch checkpoint "
                                     f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise RetinaFaceWeightsError(f"{path}: not a RetinaFace state dict (expected a dict of tensors)")
    if all(str(k).startswith("module.") for k in data):
        data = OrderedDict((k[len("module."):], v) for k, v in data.items())
    return data


def detect_backbone(state: dict) -> str:
    """``mobilenet0.25`` or ``resnet50`` from a state dict's keys."""
    if "body.stage1.0.0.weight" in state:
        return "mobilenet0.25"
    if "body.conv1.weight" in state and "body.layer4.0.conv1.weight" in state:
        return "resnet50"
    raise RetinaFaceWeightsError("not a RetinaFace checkpoint: neither body.stage1 (MobileNet-0.25) nor "
                                 "body.conv1/body.layer4 (ResNet-50) keys found")


def load_retinaface(path: Union[str, os.PathLike], backbone: Optional[str] = None) -> RetinaFace:
    """A RetinaFace with the weights of ``path``, loaded strictly (eval mode). ``backbone`` None: from the keys."""
    state = _read_state_dict(path)
    try:
        found = detect_backbone(state)
    except RetinaFaceWeightsError as e:
        raise RetinaFaceWeightsError(f"{os.fspath(path)}: {e}") from None
    if backbone is not None and backbone_name(backbone) != found:
        raise RetinaFaceWeightsError(f"{os.fspath(path)}: holds a {found} RetinaFace, not {backbone_name(backbone)}")
    model = build_retinaface(found)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise RetinaFaceWeightsError(f"{os.fspath(path)}: not the {found} RetinaFace layout: {', '.join(parts)}")
    model.load_state_dict(state, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# priors, decoding, NMS (pure functions)


def feature_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Feature map sizes ``(rows, cols)`` per level: ``ceil(H / step) x ceil(W / step)``."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in STEPS]


def priors(height: int, width: int) -> torch.Tensor:
    """Anchor boxes ``(P, 4)`` float32 ``cx, cy, w, h`` relative to the input size, ordered by level, row,
    column, then min size (biubug6's ``PriorBox``; no clipping). 640x640 gives 16,800 and 1080x1920 85,200."""
    if height < 1 or width < 1:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    out = []
    for (rows, cols), step, sizes in zip(feature_sizes(height, width), STEPS, MIN_SIZES):
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")
        n = rows * cols
        per = [torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((n,), m / width, dtype=torch.float64),
                            torch.full((n,), m / height, dtype=torch.float64)], dim=1) for m in sizes]
        out.append(torch.stack(per, dim=1).reshape(-1, 4))  # (n, sizes, 4) -> row-major, size fastest
    return torch.cat(out).to(torch.float32)


def decode_boxes(loc: torch.Tensor, prior: torch.Tensor, variance: Sequence[float] = VARIANCE) -> torch.Tensor:
    """Box offsets ``(..., P, 4)`` + priors ``(P, 4)`` -> boxes ``(..., P, 4)`` ``x1, y1, x2, y2`` relative to the
    input size: centre = prior_c + loc[:2] * v0 * prior_wh, size = prior_wh * exp(loc[2:] * v1)."""
    centre = prior[..., :2] + loc[..., :2] * variance[0] * prior[..., 2:]
    size = prior[..., 2:] * torch.exp(loc[..., 2:] * variance[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(pre: torch.Tensor, prior: torch.Tensor, variance: Sequence[float] = VARIANCE) -> torch.Tensor:
    """Landmark offsets ``(..., P, 10)`` + priors -> points ``(..., P, 5, 2)`` ``x, y`` relative to the input size:
    point = prior_c + pre * v0 * prior_wh."""
    pts = pre.reshape(*pre.shape[:-1], 5, 2)
    return prior[..., None, :2] + pts * variance[0] * prior[..., None, 2:]


def postprocess(boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, *,
                confidence_threshold: float = CONFIDENCE_THRESHOLD, top_k: int = TOP_K,
                nms_threshold: float = NMS_THRESHOLD, keep_top_k: int = KEEP_TOP_K,
                score_threshold: float = VIS_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's decoded ``boxes (P, 4)`` (pixels), ``scores (P,)`` and ``landmarks (P, 5, 2)`` -> the kept faces,
    by decreasing score: scores > ``confidence_threshold``, the best ``top_k``, greedy NMS at IoU
    ``nms_threshold`` with ``+1`` pixel areas (as ``py_cpu_nms``), the first ``keep_top_k``, then score >=
    ``score_threshold``."""
    keep = scores > confidence_threshold
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    order = torch.argsort(scores, descending=True, stable=True)[:top_k]
    boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
    # IoU with (x2 - x1 + 1) widths equals plain IoU of the boxes extended by one pixel
    plus1 = boxes + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
    keep = nms(plus1, scores, nms_threshold)[:keep_top_k]
    boxes, scores, landmarks = boxes[keep], scores[keep], landmarks[keep]
    ok = scores >= score_threshold
    return boxes[ok], scores[ok], landmarks[ok]


# ----------------------------------------------------------------------------------------------------------------
# the detector


class RetinaFaceDetector:
    """RetinaFace as a :class:`facetubes.detect.Detector`.

    ``detect(frames)`` takes ``(N, H, W, 3)`` uint8 RGB (numpy or tensor) and returns one ``(boxes (k, 4) float32
    x1 y1 x2 y2, probs (k,) float32)`` pair per frame in the frames' pixels, by decreasing probability;
    :meth:`detect_landmarks` adds the five points ``(k, 5, 2)`` (eyes, nose, mouth corners, as MTCNN's).

    ``weights``: a local ``mobilenet0.25_Final.pth`` / ``Resnet50_Final.pth`` (backbone from its keys), or a
    :class:`RetinaFace` module (for tests and benchmarks with random weights). ``score_threshold``: the published
    visualisation threshold 0.6. ``min_face_size``: the smallest anchor (16 px) for the resolution policy.
    """

    name = "retinaface"
    min_face_size = 16.0

    def __init__(self, weights: Union[str, os.PathLike, RetinaFace], device: str = "cpu", *,
                 score_threshold: float = VIS_THRESHOLD, confidence_threshold: float = CONFIDENCE_THRESHOLD,
                 nms_threshold: float = NMS_THRESHOLD, top_k: int = TOP_K, keep_top_k: int = KEEP_TOP_K,
                 batch_size: int = 8) -> None:
        from .mtcnn import torch_device

        if not 0 <= score_threshold <= 1 or not 0 <= confidence_threshold <= 1 or not 0 < nms_threshold <= 1:
            raise ConfigError("RetinaFace thresholds must lie in [0, 1] (NMS IoU in (0, 1])")
        self.device = torch_device(device)
        model = weights if isinstance(weights, RetinaFace) else load_retinaface(weights)
        self.backbone = model.config.name
        self.model = model.eval().to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.score_threshold = float(score_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k, self.keep_top_k = int(top_k), int(keep_top_k)
        self.batch_size = max(1, int(batch_size))
        self._priors: dict[tuple[int, int], torch.Tensor] = {}
        self._mean = torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)

    @property
    def settings(self) -> dict:
        """What ``tubes.json`` records about this detector (``detector.settings``)."""
        return {"backbone": self.backbone, "score_threshold": self.score_threshold,
                "confidence_threshold": self.confidence_threshold, "nms_threshold": self.nms_threshold,
                "top_k": self.top_k, "keep_top_k": self.keep_top_k}

    def detect(self, frames) -> list[tuple[np.ndarray, np.ndarray]]:
        """Faces in each frame: ``[(boxes (k, 4) float32, probs (k,) float32), ...]``."""
        return [(b, p) for b, p, _ in self.detect_landmarks(frames)]

    __call__ = detect

    def detect_landmarks(self, frames) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Like :meth:`detect`, plus five landmarks per face ``(k, 5, 2)`` float32 in the frames' pixels."""
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"frames must be a numpy array or a tensor, got {type(frames).__name__}")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (N, H, W, 3), got {tuple(x.shape)} {x.dtype}")
        n, h, w, _ = x.shape
        if n == 0:
            return []
        prior = self._priors_for(h, w)
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
        out = []
        with torch.inference_mode():
            for s in range(0, n, self.batch_size):
                chunk = x[s:s + self.batch_size].to(self.device)
                inp = chunk.flip(-1).permute(0, 3, 1, 2).float() - self._mean  # RGB -> BGR, minus the mean
                if self.device.type == "cpu":
                    inp = inp.contiguous(memory_format=torch.channels_last)
                loc, conf, landms = self.model(inp)
                boxes = decode_boxes(loc.float(), prior) * scale
                points = decode_landmarks(landms.float(), prior) * scale[:2]
                scores = torch.softmax(conf.float(), dim=-1)[..., 1]
                for b, p, lm in zip(boxes, scores, points):
                    b, p, lm = postprocess(b, p, lm, confidence_threshold=self.confidence_threshold,
                                           top_k=self.top_k, nms_threshold=self.nms_threshold,
                                           keep_top_k=self.keep_top_k, score_threshold=self.score_threshold)
                    out.append((b.cpu().numpy().astype(np.float32), p.cpu().numpy().astype(np.float32),
                                lm.cpu().numpy().astype(np.float32)))
        return out

    def _priors_for(self, h: int, w: int) -> torch.Tensor:
        key = (h, w)
        if key not in self._priors:
            if len(self._priors) > 8:
                self._priors.clear()
            self._priors[key] = priors(h, w).to(self.device)
        return self._priors[key]
