"""The ensemble forward pass: every member (own preprocessing) x {x, hflip x} over every tube of a video.

:class:`Member` is a loaded model plus its resolved preprocessing; :class:`EnsemblePredictor` scores the tubes of
one video with all members and applies the aggregation rules of :mod:`infer.aggregate`. Nothing here reads files:
members come from :func:`infer.members.load_members` (or are built by hand, as the tests do).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .aggregate import (clip_probability, combine_members, fake_probability, tube_probability,
                        video_probability)
from .preprocess import flip_tta, frame_indices, gather_views, prepare_tube, window_indices

__all__ = ["Member", "VideoPrediction", "EnsemblePredictor", "check_member"]


@dataclass
class Member:
    """One loaded ensemble member with its resolved preprocessing.

    Attributes:
        name: column name in the predictions CSV.
        model: ``(B, 3, T, H, W)`` (3D) or ``(B, 3, H, W)`` (2D) -> logits ``(B, 1 or 2)``; already in eval mode.
        normalize: maps 0..255 values to the model's input (``model.preset.normalize``), any of the two layouts.
        is_3d: video model (windows of ``clip_len`` frames) or image model (single frames).
        clip_len: frames per window (3D).
        crop_size: input side in pixels.
        crop_fraction: centre crop of the tube before resizing to ``crop_size``.
        frames: 2D: frames scored per tube (evenly spaced).
        windows: ``cover`` or ``whole`` (see :mod:`infer.preprocess`).
        batch_size: views per forward pass before flip TTA doubles it.
        weight: weight in the ensemble mean.
        arch: registry name, for messages.
    """

    name: str
    model: nn.Module
    normalize: Callable[[torch.Tensor], torch.Tensor]
    is_3d: bool
    clip_len: int
    crop_size: int
    crop_fraction: float
    frames: int = 32
    windows: str = "cover"
    batch_size: int = 8
    weight: float = 1.0
    arch: str = ""

    def views(self, n_frames: int) -> list[np.ndarray] | np.ndarray:
        """Frame indices of this member's views of a tube of ``n_frames`` frames."""
        if self.is_3d:
            return window_indices(n_frames, self.clip_len, self.windows)
        return frame_indices(n_frames, self.frames)


@dataclass
class VideoPrediction:
    """The ensemble's result for one video.

    Attributes:
        probability: final fake probability (clipped).
        raw_probability: the same before clipping.
        member_probs: member name -> video probability (before clipping).
        tube_probs: member name -> ``(n_tubes,)`` tube probabilities.
        n_tubes: tubes scored.
        model_s: seconds spent in preprocessing + forward passes (the models' CUDA stream synchronised; the
            detector works on its own stream, see :func:`infer.predict.on_own_stream`).
    """

    probability: float
    raw_probability: float
    member_probs: dict[str, float]
    tube_probs: dict[str, list[float]]
    n_tubes: int
    model_s: float = 0.0


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _memory_format(is_3d: bool) -> torch.memory_format:
    return torch.channels_last_3d if is_3d else torch.channels_last


def check_member(member: Member, device: torch.device | str = "cpu", *, amp: bool = False) -> None:
    """One dummy forward pass at the member's input shape, so that an incompatible override (e.g. an I3D at
    112 px) or a head with the wrong number of outputs fails before the first video. Raises ValueError."""
    device = torch.device(device)
    shape = (1, 3, member.clip_len, member.crop_size, member.crop_size) if member.is_3d else \
        (1, 3, member.crop_size, member.crop_size)
    x = torch.full(shape, 128.0, device=device)
    try:
        with torch.inference_mode(), _autocast(device, amp):
            out = member.model(member.normalize(x))
    except (RuntimeError, ValueError) as e:
        msg = " ".join(str(e).split())[:300]
        raise ValueError(f"member {member.name} ({member.arch or type(member.model).__name__}) fails on an input "
                         f"of shape {tuple(shape)}: {msg}") from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] not in (1, 2):
        raise ValueError(f"member {member.name}: expected logits of shape (1, 1) or (1, 2) for one input, got "
                         f"{tuple(out.shape)} (a deepfake checkpoint has 1 or 2 outputs)")


class EnsemblePredictor:
    """Scores the tubes of a video with every member.

    Args:
        members: loaded members (the models are moved to ``device`` and set to eval mode here).
        device: ``cpu``, ``cuda``... On CUDA the models run under float16 autocast (``amp``) with
            ``channels_last_3d`` (3D) / ``channels_last`` (2D) memory format.
        tta: flip TTA: every batch is ``[x, hflip(x)]`` in one forward pass, probabilities averaged.
        video_agg: ``mean`` or ``max`` over a video's tubes, per member.
        member_agg: ``prob`` (weighted mean of probabilities) or ``logit`` (weighted mean of logits).
        clip: final ``(lo, hi)`` clipping, or None.
    """

    def __init__(self, members: Sequence[Member], *, device: torch.device | str = "cpu", tta: bool = True,
                 amp: bool = True, video_agg: str = "mean", member_agg: str = "prob",
                 clip: Optional[tuple[float, float]] = (0.01, 0.99)) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        self.members = list(members)
        self.device = torch.device(device)
        self.tta = tta
        self.amp = amp and self.device.type == "cuda"
        self.video_agg = video_agg
        self.member_agg = member_agg
        self.clip = clip
        for m in self.members:
            m.model.eval().to(self.device)
            if self.device.type == "cuda":
                m.model.to(memory_format=_memory_format(m.is_3d))
        # fail on a bad rule now rather than after the first video
        combine_members([0.5] * len(self.members), self.weights, mode=member_agg)  # type: ignore[arg-type]
        video_probability([0.5], mode=video_agg)  # type: ignore[arg-type]

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]

    def _batches(self, views: list[torch.Tensor], size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Consecutive runs of same-shape views, at most ``size`` at a time: ``(first_index, (b, 3, ...))``."""
        i = 0
        while i < len(views):
            j = i + 1
            while j < len(views) and j - i < size and views[j].shape == views[i].shape:
                j += 1
            yield i, torch.stack(views[i:j])
            i = j

    @torch.inference_mode()
    def member_view_probs(self, member: Member, tubes: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Probabilities of every view of every tube for one member.

        Args:
            tubes: prepared tubes ``(3, T, H, W)`` in 0..255 at this member's crop size.
        Returns:
            One ``(V, A)`` array per tube: ``V`` views, ``A`` = 2 with flip TTA (column 1 = flipped), else 1.
        """
        views: list[torch.Tensor] = []
        owner: list[int] = []
        for k, tube in enumerate(tubes):
            vs = gather_views(tube, member.views(int(tube.shape[1])), is_3d=member.is_3d)
            views.extend(vs)
            owner.extend([k] * len(vs))
        n_aug = 2 if self.tta else 1
        probs = np.zeros((len(views), n_aug), dtype=np.float64)
        fmt = _memory_format(member.is_3d)
        for start, x in self._batches(views, max(1, member.batch_size)):
            b = x.shape[0]
            x = member.normalize(x)
            if self.tta:
                x = flip_tta(x)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=fmt)
            with _autocast(self.device, self.amp):
                logits = member.model(x)
            p = fake_probability(logits).reshape(n_aug, b).T  # (b, A)
            probs[start:start + b] = p.double().cpu().numpy()
        owner_arr = np.asarray(owner)
        return [probs[owner_arr == k] for k in range(len(tubes))]

    def predict(self, tubes: Sequence[np.ndarray]) -> VideoPrediction:
        """Score one video from its tubes.

        Args:
            tubes: ``N >= 1`` arrays ``(T_i, S, S, 3)`` uint8 RGB.
        Raises:
            ValueError: no tubes (the caller gives such a video the prior), or a model produced NaN.
        """
        if len(tubes) == 0:
            raise ValueError("no tubes to score")
        t0 = time.perf_counter()
        prepared: dict[tuple[float, int], list[torch.Tensor]] = {}
        member_probs: dict[str, float] = {}
        tube_probs: dict[str, list[float]] = {}
        for m in self.members:
            key = (m.crop_fraction, m.crop_size)
            if key not in prepared:  # members sharing an input size share the crop + resize work
                prepared[key] = [prepare_tube(t, crop_fraction=m.crop_fraction, crop_size=m.crop_size,
                                              device=self.device) for t in tubes]
            per_tube = self.member_view_probs(m, prepared[key])
            reduce = "mean" if m.is_3d else "median"
            tube_probs[m.name] = [tube_probability(v, views=reduce) for v in per_tube]
            member_probs[m.name] = video_probability(tube_probs[m.name], mode=self.video_agg)  # type: ignore[arg-type]
        raw = combine_members([member_probs[m.name] for m in self.members], self.weights,
                              mode=self.member_agg)  # type: ignore[arg-type]
        if self.device.type == "cuda":  # this thread's stream only: the detector's runs beside it, not in model_s
            torch.cuda.current_stream(self.device).synchronize()
        return VideoPrediction(probability=clip_probability(raw, self.clip), raw_probability=raw,
                               member_probs=member_probs, tube_probs=tube_probs, n_tubes=len(tubes),
                               model_s=time.perf_counter() - t0)

