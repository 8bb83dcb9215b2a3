"""The ensemble file (``ensemble.yaml``): its schema, parsing and validation. No model is built here.

Example::

    members:
      - arch: i3d
        weights: weights/i3d_dfdc.pt     # relative paths are relative to this file; ~ and $VARS are expanded
      - arch: r3d34
        weights: weights/r3d34_dfdc.pt
        weight: 2                        # optional, default 1 (normalised over members)
        clip_len: 32                     # optional overrides of the model's preprocessing preset
        crop_size: 112
    video_agg: mean                      # optional defaults for the command-line flags of the same names
    member_agg: prob
    clip: [0.01, 0.99]
    tta: true
    extract:                             # optional ExtractConfig overrides (facetubes.ExtractConfig fields)
      detect_long_side: 480
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from facetubes.config import ExtractConfig
from facetubes.errors import ConfigError, read_text

from .aggregate import MEMBER_AGGS, VIDEO_AGGS, validate_clip

__all__ = ["MemberSpec", "EnsembleSpec", "load_spec", "parse_spec", "WINDOW_MODES", "RESERVED_COLUMNS", "RECIPES",
           "CHANNEL_ORDERS", "VIEW_AGGS"]

#: How a 3D member covers a tube longer than its clip length (see the README, "Windows").
WINDOW_MODES: tuple[str, ...] = ("cover", "whole")

#: Columns of the predictions CSV that a member name may not take.
RESERVED_COLUMNS: frozenset[str] = frozenset({"filename", "label", "n_tubes", "status", "error"})

_MEMBER_KEYS = {"name", "arch", "weights", "weight", "num_classes", "clip_len", "crop_size", "crop_fraction",
                "frames", "windows", "batch_size", "fake_class", "value_range", "mean", "std", "channels",
                "view_agg", "recipe", "tta", "model_args"}

#: Where a member's input comes from: face tubes (facetubes extraction) or the DFDC 1st place's frame faces.
RECIPES: tuple[str, ...] = ("tubes", "dfdc1st")
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")
VIEW_AGGS: tuple[str, ...] = ("mean", "median", "max", "confident")
_TOP_KEYS = {"members", "video_agg", "member_agg", "clip", "tta", "extract"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class MemberSpec:
    """One ensemble member as written in the file (overrides still unresolved: ``None`` = the model's preset).

    Attributes:
        name: column name in the predictions CSV (default: the arch, with ``_2``, ``_3``... for repeats).
        arch: a ``models3d.list_models()`` name.
        weights: checkpoint path (a facetubes checkpoint or an upstream one that models3d can load).
        weight: non-negative weight in the ensemble mean.
        num_classes: classifier outputs (1: sigmoid, 2: softmax); None: what the checkpoint says, else 2.
        clip_len: frames per window (3D) .
        crop_size: model input side in pixels.
        crop_fraction: centre crop taken from the tube before resizing to ``crop_size`` (published: 224/256).
        frames: 2D members: how many frames, evenly spaced over the tube, are scored (published: 32).
        windows: ``cover`` (windows of ``clip_len`` covering the tube) or ``whole`` (the whole tube at once).
        batch_size: clips (3D) or frames (2D) per forward pass, before the flip doubles it.
        fake_class: for 2-output models, the index of the FAKE class (facetubes checkpoints: 1; the DFDC 5th
            place's files: 0). Required for a 2-output checkpoint that is not a facetubes checkpoint.
        value_range, mean, std: overrides of the model preset's normalisation (see ``models3d.Preset``).
        channels: ``rgb`` or ``bgr``: the channel order the network was trained on (the 5th place's 2D model: bgr).
        view_agg: ``mean``/``median``/``max``/``confident`` over a tube's views (3D windows, 2D frames; default
            mean for 3D, median for 2D) or, with recipe ``dfdc1st``, over all faces of the video (default
            ``confident``, the published rule).
        recipe: ``tubes`` (facetubes extraction) or ``dfdc1st`` (32 frames, every face, 1/3 padding, 380 px).
        tta: flip TTA for this member: ``true`` scores ``[x, hflip(x)]``, ``false`` only ``x``, ``alternate`` flips
            every other view of a tube and scores each view once (the published 5th-place 2D model: frames 1, 3,
            5, ... mirrored). Default: the ensemble's setting; recipe ``dfdc1st``: off, as published.
        model_args: builder options of the architecture, e.g. ``{encoder: tf_efficientnet_b0_ns}`` for dfdc1st.
    """

    name: str
    arch: str
    weights: Path
    weight: float = 1.0
    num_classes: Optional[int] = None
    clip_len: Optional[int] = None
    crop_size: Optional[int] = None
    crop_fraction: Optional[float] = None
    frames: Optional[int] = None
    windows: str = "cover"
    batch_size: Optional[int] = None
    fake_class: Optional[int] = None
    value_range: Optional[tuple[float, float]] = None
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    channels: str = "rgb"
    view_agg: Optional[str] = None
    recipe: str = "tubes"
    tta: Optional[bool | str] = None
    model_args: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class EnsembleSpec:
    """A parsed ensemble file. Aggregation fields are ``None`` when the file leaves them to the command line."""

    members: tuple[MemberSpec, ...]
    path: Optional[Path] = None
    video_agg: Optional[str] = None
    member_agg: Optional[str] = None
    clip: Optional[tuple[float, float]] = None
    clip_set: bool = False  # True when the file sets `clip` (also to null: no clipping)
    tta: Optional[bool | str] = None
    extract: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]


def _where(path: Optional[Path]) -> str:
    return str(path) if path else "ensemble"


def _expand(raw: str, base: Optional[Path]) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(raw)))
    if not p.is_absolute() and base is not None:
        p = base / p
    return p


def _int(v: Any, what: str, lo: int = 1, hi: int = 1 << 20) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{what} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _parse_member(i: int, raw: Any, where: str, base: Optional[Path], known_archs: Optional[list[str]]
                  ) -> MemberSpec:
    w = f"{where}: member {i + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{w}: expected a mapping with 'arch' and 'weights', got {type(raw).__name__}")
    unknown = sorted(set(raw) - _MEMBER_KEYS)
    if unknown:
        raise ConfigError(f"{w}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_MEMBER_KEYS))})")
    arch = raw.get("arch")
    if not isinstance(arch, str) or not arch:
        raise ConfigError(f"{w}: 'arch' is required (one of: {', '.join(known_archs or [])})")
    if known_archs is not None and arch not in known_archs:
        raise ConfigError(f"{w}: unknown arch {arch!r} (available: {', '.join(known_archs)})")
    weights = raw.get("weights")
    if not isinstance(weights, str) or not weights.strip():
        raise ConfigError(f"{w} ({arch}): 'weights' is required: the path of a checkpoint file")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ConfigError(f"{w} ({arch}): 'weight' must be a number >= 0, got {weight!r}")
    kw: dict[str, Any] = {}
    for key, most in (("clip_len", 1024), ("crop_size", 2048), ("frames", 1024), ("batch_size", 4096)):
        if raw.get(key) is not None:
            kw[key] = _int(raw[key], f"{w} ({arch}): '{key}'", hi=most)
    if raw.get("num_classes") is not None:
        n = _int(raw["num_classes"], f"{w} ({arch}): 'num_classes'")
        if n not in (1, 2):
            raise ConfigError(f"{w} ({arch}): 'num_classes' must be 1 (sigmoid) or 2 (softmax), got {n}")
        kw["num_classes"] = n
    if raw.get("crop_fraction") is not None:
        cf = raw["crop_fraction"]
        if isinstance(cf, bool) or not isinstance(cf, (int, float)) or not 0 < cf <= 1:
            raise ConfigError(f"{w} ({arch}): 'crop_fraction' must be in (0, 1], got {cf!r}")
        kw["crop_fraction"] = float(cf)
    windows = raw.get("windows", "cover")
    if windows not in WINDOW_MODES:
        raise ConfigError(f"{w} ({arch}): 'windows' must be one of {', '.join(WINDOW_MODES)}, got {windows!r}")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME_RE.match(name)):
        raise ConfigError(f"{w} ({arch}): 'name' must be letters, digits or _.+- (a CSV column), got {name!r}")
    kw.update(_parse_input_settings(raw, f"{w} ({arch})"))
    return MemberSpec(name=name or "", arch=arch, weights=_expand(weights.strip(), base), weight=float(weight),
                      windows=windows, **kw)


def _numbers(v: Any, n: int, what: str) -> tuple[float, ...]:
    if not isinstance(v, list) or len(v) != n or any(isinstance(x, bool) or not isinstance(x, (int, float))
                                                     for x in v):
        raise ConfigError(f"{what} must be a list of {n} numbers, got {v!r}")
    return tuple(float(x) for x in v)


def _parse_input_settings(raw: dict, w: str) -> dict[str, Any]:
    """The member keys that say what a network expects: class order, normalisation, channels, recipe."""
    kw: dict[str, Any] = {}
    if raw.get("fake_class") is not None:
        fc = raw["fake_class"]
        if isinstance(fc, bool) or fc not in (0, 1):
            raise ConfigError(f"{w}: 'fake_class' must be 0 or 1 (the index of the FAKE output), got {fc!r}")
        kw["fake_class"] = int(fc)
    if raw.get("value_range") is not None:
        lo, hi = _numbers(raw["value_range"], 2, f"{w}: 'value_range'")
        if not hi > lo:
            raise ConfigError(f"{w}: 'value_range' must be increasing [lo, hi], got {raw['value_range']!r}")
        kw["value_range"] = (lo, hi)
    for key in ("mean", "std"):
        if raw.get(key) is not None:
            kw[key] = _numbers(raw[key], 3, f"{w}: '{key}'")
    if "std" in kw and any(s <= 0 for s in kw["std"]):
        raise ConfigError(f"{w}: 'std' values must be positive, got {list(kw['std'])}")
    for key, choices in (("channels", CHANNEL_ORDERS), ("view_agg", VIEW_AGGS), ("recipe", RECIPES)):
        if raw.get(key) is not None:
            if raw[key] not in choices:
                raise ConfigError(f"{w}: '{key}' must be one of {', '.join(choices)}, got {raw[key]!r}")
            kw[key] = raw[key]
    if raw.get("tta") is not None:
        if not isinstance(raw["tta"], bool) and raw["tta"] != "alternate":
            raise ConfigError(f"{w}: 'tta' must be true, false or alternate, got {raw['tta']!r}")
        kw["tta"] = raw["tta"]
    if raw.get("model_args") is not None:
        args = raw["model_args"]
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args) or any(
                isinstance(v, (dict, list)) for v in args.values()):
            raise ConfigError(f"{w}: 'model_args' must be a mapping of option names to plain values, got {args!r}")
        kw["model_args"] = tuple(sorted(args.items()))
    return kw


def _unique_names(members: list[MemberSpec], where: str) -> list[MemberSpec]:
    """Fill in default names (the arch, then arch_2, arch_3...) and reject duplicates or reserved names."""
    taken = {m.name for m in members if m.name}
    out: list[MemberSpec] = []
    used: set[str] = set()
    for m in members:
        name = m.name
        if not name:
            name, k = m.arch, 2
            while name in used or name in taken:
                name, k = f"{m.arch}_{k}", k + 1
        if name in used:
            raise ConfigError(f"{where}: two members are named {name!r}; names must be unique")
        if name in RESERVED_COLUMNS:
            raise ConfigError(f"{where}: member name {name!r} clashes with a predictions column; choose another")
        used.add(name)
        out.append(MemberSpec(**{**m.__dict__, "name": name}))
    return out


def parse_spec(data: Any, *, path: Optional[Path] = None, known_archs: Optional[list[str]] = None) -> EnsembleSpec:
    """Validate the parsed YAML of an ensemble file. Raises ConfigError with a one-line reason.

    Args:
        data: the YAML document (a mapping with ``members``; a bare list of members is accepted too).
        path: the file it came from; relative weight paths are resolved against its folder.
        known_archs: registered architecture names; ``None`` skips that check (models3d does it later).
    """
    where = _where(path)
    base = path.parent if path is not None else None
    if isinstance(data, list):
        data = {"members": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'members' list, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    raw_members = data.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise ConfigError(f"{where}: 'members' must be a non-empty list of {{arch, weights}} entries")
    members = _unique_names([_parse_member(i, m, where, base, known_archs) for i, m in enumerate(raw_members)],
                            where)
    if sum(m.weight for m in members) <= 0:
        raise ConfigError(f"{where}: member weights are all zero")
    video_agg = data.get("video_agg")
    if video_agg is not None and video_agg not in VIDEO_AGGS:
        raise ConfigError(f"{where}: 'video_agg' must be one of {', '.join(VIDEO_AGGS)}, got {video_agg!r}")
    member_agg = data.get("member_agg")
    if member_agg is not None and member_agg not in MEMBER_AGGS:
        raise ConfigError(f"{where}: 'member_agg' must be one of {', '.join(MEMBER_AGGS)}, got {member_agg!r}")
    clip = None
    if data.get("clip") is not None:
        if not isinstance(data["clip"], list):
            raise ConfigError(f"{where}: 'clip' must be [lo, hi] or null, got {data['clip']!r}")
        try:
            clip = validate_clip([float(v) for v in data["clip"]])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: 'clip' must be two numbers [lo, hi], got {data['clip']!r}") from None
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    tta = data.get("tta")
    if tta is not None and not isinstance(tta, bool):
        raise ConfigError(f"{where}: 'tta' must be true or false, got {tta!r}")
    extract = data.get("extract") or {}
    if not isinstance(extract, dict):
        raise ConfigError(f"{where}: 'extract' must be a mapping of ExtractConfig fields")
    if isinstance(extract.get("detector_weights"), str):  # relative to the ensemble file, like members' weights
        extract = {**extract, "detector_weights": str(_expand(extract["detector_weights"], base))}
    try:
        ExtractConfig.for_inference(**extract)
    except TypeError as e:
        raise ConfigError(f"{where}: 'extract': {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{where}: 'extract': {e}") from None
    return EnsembleSpec(members=tuple(members), path=path, video_agg=video_agg, member_agg=member_agg, clip=clip,
                        clip_set="clip" in data, tta=tta, extract=dict(extract))


def load_spec(path: str | os.PathLike, *, known_archs: Optional[list[str]] = None) -> EnsembleSpec:
    """Read and validate an ensemble YAML file. Raises ConfigError (missing file, bad YAML, bad schema)."""
    p = Path(path)
    text = read_text(p, "ensemble file", "an ensemble .yaml file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{p}: invalid YAML{at} ({problem})") from None
    if data is None:
        raise ConfigError(f"{p}: ensemble file is empty (expected a 'members' list)")
    return parse_spec(data, path=p.resolve(), known_archs=known_archs)
