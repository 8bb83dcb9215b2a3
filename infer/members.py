"""Build the ensemble's members from an :class:`~infer.spec.EnsembleSpec`: check every checkpoint, load every model
once, resolve each member's preprocessing from its models3d preset plus the file's overrides, and run one dummy
forward pass per member. Everything that can be wrong with an ensemble file fails here, before the first video.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

import models3d
from facetubes.errors import ConfigError, one_line

from .engine import Member, check_member
from .preprocess import PUBLISHED_CROP_FRACTION
from .spec import EnsembleSpec, MemberSpec

__all__ = ["load_members", "resolve_member", "DEFAULT_FRAMES_2D", "DEFAULT_BATCH_3D", "DEFAULT_BATCH_2D"]

DEFAULT_FRAMES_2D = 32
DEFAULT_BATCH_3D = 8
DEFAULT_BATCH_2D = 32


def _where(spec: EnsembleSpec, m: MemberSpec) -> str:
    return f"{spec.path or 'ensemble'}: member {m.name} ({m.arch})"


def check_weight_files(spec: EnsembleSpec) -> None:
    """Every member's checkpoint must be a readable file; all problems are reported in one message."""
    problems = []
    for m in spec.members:
        if not m.weights.exists():
            problems.append(f"member {m.name} ({m.arch}): weights file not found: {m.weights}")
        elif not m.weights.is_file():
            problems.append(f"member {m.name} ({m.arch}): weights path is not a file: {m.weights}")
        elif m.weights.stat().st_size == 0:
            problems.append(f"member {m.name} ({m.arch}): weights file is empty: {m.weights}")
    if problems:
        where = spec.path or "ensemble"
        raise ConfigError(f"{where}: " + "; ".join(problems))


def resolve_member(spec_member: MemberSpec, model: torch.nn.Module, *, where: str = "") -> Member:
    """A :class:`Member` from a loaded model: the model's preset gives the defaults, the file's overrides win."""
    preset = getattr(model, "preset", None)
    if preset is None:
        raise ConfigError(f"{where}: the model has no preprocessing preset (not a models3d model?)")
    is_3d = bool(preset.is_3d)
    changes = {k: getattr(spec_member, k) for k in ("value_range", "mean", "std") if getattr(spec_member, k)}
    if changes:
        preset = preset.replace(**changes)
    if spec_member.recipe == "dfdc1st" and is_3d:
        raise ConfigError(f"{where}: recipe dfdc1st feeds single face crops; {spec_member.arch} is a 3D model")
    clip_len = spec_member.clip_len or preset.clip_len
    crop_size = spec_member.crop_size or preset.crop_size
    crop_fraction = spec_member.crop_fraction or (PUBLISHED_CROP_FRACTION if is_3d else 1.0)
    frames = spec_member.frames or DEFAULT_FRAMES_2D
    batch = spec_member.batch_size or (DEFAULT_BATCH_3D if is_3d else DEFAULT_BATCH_2D)
    n_out = int(getattr(model, "num_classes", 0) or 0)
    fake_class = spec_member.fake_class
    if n_out == 2 and fake_class is None:
        report = getattr(model, "load_report", None)
        if report is not None and report.kind != "facetubes":
            raise ConfigError(f"{where}: {spec_member.weights} is a 2-class checkpoint not written by facetubes: "
                              "set fake_class to the index of its FAKE output (0 or 1; the DFDC 5th place's files: "
                              "0), it is never guessed")
        fake_class = 1  # facetubes checkpoints: class 1 = fake
    if n_out == 1 and fake_class is not None:
        raise ConfigError(f"{where}: fake_class is for 2-output models; this one has a single (fake) logit")
    return Member(name=spec_member.name, model=model, normalize=preset.normalize, is_3d=is_3d,
                  clip_len=int(clip_len) if is_3d else 1, crop_size=int(crop_size), crop_fraction=crop_fraction,
                  frames=int(frames), windows=spec_member.windows, batch_size=int(batch),
                  weight=spec_member.weight, arch=spec_member.arch, fake_class=int(fake_class or 0) if n_out == 2
                  else 1, channels=spec_member.channels, view_agg=spec_member.view_agg or "",
                  recipe=spec_member.recipe, tta=False if spec_member.recipe == "dfdc1st" and spec_member.tta is None
                  else spec_member.tta)


def _create(m: MemberSpec, where: str) -> torch.nn.Module:
    kwargs: dict = dict(m.model_args)
    if m.num_classes is not None:
        kwargs["num_classes"] = m.num_classes
    try:
        model = models3d.create_model(m.arch, weights=str(m.weights), **kwargs)
    except models3d.WeightsError as e:  # already a one-line message naming the file
        raise ConfigError(f"{where}: {' '.join(str(e).split())}") from None
    except TypeError as e:  # an option the architecture does not take (model_args)
        raise ConfigError(f"{where}: bad model_args {dict(m.model_args)}: {one_line(e)}") from None
    except ValueError as e:  # unknown arch, bad arguments
        raise ConfigError(f"{where}: {one_line(e)}") from None
    except (OSError, RuntimeError) as e:  # unreadable file, corrupt archive, state-dict mismatch
        raise ConfigError(f"{where}: cannot load {m.weights}: {one_line(e)}") from None
    report = getattr(model, "load_report", None)
    if report is not None and report.reinitialized:
        # models3d re-initialises a head of another class count (fine for fine-tuning); for inference a random
        # head means random predictions, so refuse.
        n = model.num_classes
        raise ConfigError(f"{where}: {m.weights} has no trained {n}-class head for this model (head keys "
                          f"{', '.join(report.reinitialized)} would be random); use a checkpoint from train3d/"
                          f"train2d, or set num_classes to the checkpoint's class count (1 or 2)")
    return model


def load_members(spec: EnsembleSpec, *, device: torch.device | str = "cpu", probe: bool = True,
                 amp: bool = False, progress: Optional[Callable[[str], None]] = None) -> list[Member]:
    """Load every member of ``spec``, failing at the first problem with a one-line ConfigError.

    Order of checks: the architecture names (against ``models3d.list_models()``), then that every weights file
    exists (all missing files in one message), then each checkpoint loads into its architecture, then (``probe``)
    one dummy forward pass per member on ``device``.
    """
    known = models3d.list_models()
    for m in spec.members:
        if m.arch not in known:
            raise ConfigError(f"{_where(spec, m)}: unknown arch {m.arch!r} (available: {', '.join(known)})")
    check_weight_files(spec)
    dev = torch.device(device)
    members: list[Member] = []
    for m in spec.members:
        where = _where(spec, m)
        if progress is not None:
            progress(f"loading {m.name} ({m.arch}) from {m.weights}")
        model = _create(m, where).eval().to(dev)
        member = resolve_member(m, model, where=where)
        if probe:
            try:
                check_member(member, dev, amp=amp)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        members.append(member)
    return members
