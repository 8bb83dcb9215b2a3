"""The ensemble forward pass: every member (own preprocessing) x {x, hflip x} over every tube of a video.

:class:`Member` is a loaded model plus its resolved preprocessing; :class:`EnsemblePredictor` scores the tubes of
one video with all members and applies the aggregation rules of :mod:`infer.aggregate`. Nothing here reads files:
members come from :func:`infer.members.load_members` (or are built by hand, as the tests do).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .aggregate import clip_probability, combine_members, fake_probability, video_probability
from .preprocess import flip_tta, frame_indices, gather_views, prepare_tube, window_indices
from .reduce import reduce_probs

if TYPE_CHECKING:
    from .faces1st import FaceSet

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
    fake_class: int = 1
    channels: str = "rgb"
    view_agg: str = ""
    recipe: str = "tubes"
    tta: Optional[bool | str] = None

    @property
    def reduction(self) -> str:
        """The rule over a tube's views (or, recipe ``dfdc1st``, over a video's faces)."""
        if self.view_agg:
            return self.view_agg
        if self.recipe == "dfdc1st":
            return "confident"
        return "mean" if self.is_3d else "median"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, ...)`` RGB values in 0..255 -> the network's input (channel order, then normalisation)."""
        if self.channels == "bgr":
            x = x.flip(1)
        return self.normalize(x)

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
        face_probs: members of recipe ``dfdc1st``: name -> ``(n_faces,)`` probability of every face.
        n_faces: faces of the ``dfdc1st`` recipe.
        frame_probs: 2D tube members: name -> per tube, ``(V,)`` probabilities of the scored frames.
    """

    probability: float
    raw_probability: float
    member_probs: dict[str, float]
    tube_probs: dict[str, list[float]]
    n_tubes: int
    model_s: float = 0.0
    face_probs: dict[str, np.ndarray] = field(default_factory=dict)
    n_faces: int = 0
    frame_probs: dict[str, list[np.ndarray]] = field(default_factory=dict)


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
            out = member.model(member.prepare(x))
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
        prior: a member's probability for a video without input of its kind (no tube / no face).
    """

    def __init__(self, members: Sequence[Member], *, device: torch.device | str = "cpu", tta: bool = True,
                 amp: bool = True, video_agg: str = "mean", member_agg: str = "prob",
                 clip: Optional[tuple[float, float]] = (0.01, 0.99), prior: float = 0.5) -> None:
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
        self.prior = float(prior)
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
        flip = None
        if member.tta == "alternate" and owner:  # every other view of each tube mirrored, each scored once
            flip = np.concatenate([np.arange(n) % 2 == 1 for n in np.bincount(owner, minlength=len(tubes))])
        probs = self.view_probs(member, views, flip=flip)
        owner_arr = np.asarray(owner)
        return [probs[owner_arr == k] for k in range(len(tubes))]

    def member_tta(self, member: Member) -> bool:
        """Whether ``member``'s views are doubled into ``[x, hflip(x)]`` (``alternate`` mirrors views instead)."""
        if member.tta == "alternate":
            return False
        return self.tta if member.tta is None else bool(member.tta)

    @torch.inference_mode()
    def view_probs(self, member: Member, views: Sequence[torch.Tensor],
                   flip: Optional[np.ndarray] = None) -> np.ndarray:
        """Fake probabilities ``(V, A)`` of views (``(3, ...)`` in 0..255), ``A`` = 2 with flip TTA, else 1.
        ``flip``: optional ``(V,)`` booleans, views to mirror (horizontally) before they are scored."""
        tta = self.member_tta(member)
        n_aug = 2 if tta else 1
        probs = np.zeros((len(views), n_aug), dtype=np.float64)
        fmt = _memory_format(member.is_3d)
        for start, x in self._batches(list(views), max(1, member.batch_size)):
            b = x.shape[0]
            if flip is not None and flip[start:start + b].any():
                rows = torch.from_numpy(np.asarray(flip[start:start + b], dtype=bool))
                x = x.clone()
                x[rows] = x[rows].flip(-1)
            x = member.prepare(x)
            if tta:
                x = flip_tta(x)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=fmt)
            with _autocast(self.device, self.amp):
                logits = member.model(x)
            p = fake_probability(logits, member.fake_class).reshape(n_aug, b).T  # (b, A)
            probs[start:start + b] = p.double().cpu().numpy()
        return probs

    def predict(self, tubes: Sequence[np.ndarray] = (), faces: Optional[FaceSet] = None) -> VideoPrediction:
        """Score one video from its tubes (tube members) and its faces (members of recipe ``dfdc1st``).

        Args:
            tubes: arrays ``(T_i, S, S, 3)`` uint8 RGB.
            faces: the 1st-place faces of the video (:class:`infer.faces1st.FaceSet`), or None.
        A member with no input of its kind (no tube, or no face) gets ``prior`` (published: 0.5).
        Raises:
            ValueError: no member has any input (the caller gives such a video the prior), or a model produced NaN.
        """
        n_faces = len(faces) if faces is not None else 0
        if not any(len(tubes) if m.recipe == "tubes" else n_faces for m in self.members):
            raise ValueError("no tubes to score")
        t0 = time.perf_counter()
        prepared: dict[tuple[float, int], list[torch.Tensor]] = {}
        member_probs: dict[str, float] = {}
        tube_probs: dict[str, list[float]] = {}
        face_probs: dict[str, np.ndarray] = {}
        frame_probs: dict[str, list[np.ndarray]] = {}
        for m in self.members:
            if m.recipe == "dfdc1st":
                if not n_faces:
                    member_probs[m.name] = self.prior
                    continue
                assert faces is not None
                x = torch.as_tensor(faces.crops).to(self.device).permute(0, 3, 1, 2).float()
                if x.shape[-1] != m.crop_size:
                    raise ValueError(f"member {m.name}: faces are {x.shape[-1]} px, the member wants {m.crop_size}")
                per_face = self.view_probs(m, list(x)).mean(axis=1)
                face_probs[m.name] = per_face
                member_probs[m.name] = reduce_probs(per_face, m.reduction)
                continue
            if not len(tubes):
                member_probs[m.name] = self.prior
                continue
            key = (m.crop_fraction, m.crop_size)
            if key not in prepared:  # members sharing an input size share the crop + resize work
                prepared[key] = [prepare_tube(t, crop_fraction=m.crop_fraction, crop_size=m.crop_size,
                                              device=self.device) for t in tubes]
            per_tube = self.member_view_probs(m, prepared[key])
            tube_probs[m.name] = [reduce_probs(_finite(v).mean(axis=1), m.reduction) for v in per_tube]
            if not m.is_3d:
                frame_probs[m.name] = [v.mean(axis=1) for v in per_tube]
            member_probs[m.name] = video_probability(tube_probs[m.name], mode=self.video_agg)  # type: ignore[arg-type]
        raw = combine_members([member_probs[m.name] for m in self.members], self.weights,
                              mode=self.member_agg)  # type: ignore[arg-type]
        if self.device.type == "cuda":  # this thread's stream only: the detector's runs beside it, not in model_s
            torch.cuda.current_stream(self.device).synchronize()
        return VideoPrediction(probability=clip_probability(raw, self.clip), raw_probability=raw,
                               member_probs=member_probs, tube_probs=tube_probs, n_tubes=len(tubes),
                               model_s=time.perf_counter() - t0, face_probs=face_probs, n_faces=n_faces,
                               frame_probs=frame_probs)


def _finite(p: np.ndarray) -> np.ndarray:
    if not np.isfinite(p).all():
        raise ValueError("non-finite probability from a model (NaN or inf in its output)")
    return p
