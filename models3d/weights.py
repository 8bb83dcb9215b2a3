"""Reading checkpoints (upstream and facetubes) and loading them into models3d networks.

Accepted files, as their owners publish them (see the README):

* a plain state dict (piergiaj ``rgb_imagenet.pt``, torchvision ``mc3_18-a90a0ba3.pth``, Cadene
  ``se_resnext50_32x4d-a260b3a4.pth``);
* a training dict holding the state dict under ``state_dict`` or ``model`` (kenshohara
  ``resnet-34-kinetics.pth``: ``{"epoch", "arch", "state_dict", "optimizer"}``);
* a facetubes checkpoint written by :func:`save_checkpoint`::

      {"format": "facetubes", "format_version": 1, "arch": "i3d", "num_classes": 2,
       "preset": {...}, "model": state_dict, **extra}     # extra top-level keys are ignored on load

Key prefixes ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (torch.compile) are stripped. Every file is read
with ``torch.load(weights_only=True)``. A class count that differs from the model's re-initialises the head; any
other missing, unexpected or mis-shaped key is a :class:`WeightsError` with a one-line message.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .base import ClipClassifier
from .presets import Preset
from .registry import get_spec, identify_arch

__all__ = [
    "WeightsError",
    "LoadReport",
    "FORMAT",
    "FORMAT_VERSION",
    "resolve_weights",
    "read_state_dict",
    "load_weights",
    "apply_state_dict",
    "load_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger("models3d")

FORMAT = "facetubes"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")
_RESERVED = ("format", "format_version", "arch", "num_classes", "preset", "model")


class WeightsError(Exception):
    """A weights file is missing, unreadable, or does not fit the model. The message is one line."""


@dataclass
class LoadReport:
    """What :func:`load_weights` did.

    Attributes:
        path: file that was read.
        kind: ``"facetubes"``, ``"state_dict"`` (plain) or ``"wrapped[<key>]"`` (a training dict).
        loaded: number of state-dict entries copied from the file.
        skipped: keys present in the file but not loaded (a head of another class count).
        reinitialized: model keys left at their fresh initialisation (the head).
        filled: ``num_batches_tracked`` buffers absent from older files (kept at 0).
        stripped_prefix: key prefix removed from the file's keys (``"module."`` ...), or ``""``.
        preset: the preset stored in a facetubes checkpoint, else None.
    """

    path: str
    kind: str
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    stripped_prefix: str = ""
    preset: Preset | None = None

    def __str__(self) -> str:
        msg = f"loaded {self.loaded} tensors from {self.path} ({self.kind}"
        msg += f", prefix {self.stripped_prefix!r} stripped)" if self.stripped_prefix else ")"
        if self.filled:
            msg += f"; {len(self.filled)} BatchNorm counters absent, set to 0"
        if self.reinitialized:
            msg += f"; head re-initialised: skipped {self.skipped} from the file, new {self.reinitialized}"
        return msg


def resolve_weights(arch: str, weights: str | os.PathLike[str]) -> Path:
    """Path of ``weights``: a file path, or a pretrained name of ``arch`` (e.g. ``"kinetics400"``).

    Names resolve to ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``, default
    ``~/.cache/torch/hub/checkpoints``). Raises :class:`WeightsError` when the file does not exist.
    """
    spec = get_spec(arch)
    if isinstance(weights, str) and weights in spec.pretrained:
        pre = spec.pretrained[weights]
        path = Path(torch.hub.get_dir()) / "checkpoints" / pre.filename
        if not path.is_file():
            raise WeightsError(
                f"{arch} '{weights}' weights not found: expected {path} "
                f"(download {pre.url} and put it there, or set TORCH_HOME)"
            )
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        names = f" or one of {sorted(spec.pretrained)}" if spec.pretrained else ""
        what = "is a directory" if path.is_dir() else "not found"
        raise WeightsError(f"weights file {path} {what} (expected a checkpoint file for {arch}{names})")
    return path


def _numpy_scalar_globals() -> list[Any]:
    """The few numpy globals a pickled numpy scalar needs (the DFDC 1st-place files store ``bce_best`` as a
    numpy float64): the scalar reconstructor under its numpy 2 and numpy 1 names, ``dtype`` and the numeric
    dtype classes. Nothing else is allowed."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch here
        return []
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [scalar, (scalar, "numpy.core.multiarray.scalar"),
                          (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            allowed.append(getattr(dtypes, name))
    return allowed


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU with one-line errors; numpy scalars (only) are allowed."""
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            name = found.group(1) if found else "?"
            raise WeightsError(
                f"refusing to load {path}: it pickles Python object {name}, not just tensors "
                "(only weights_only=True files are accepted)"
            ) from None
        raise WeightsError(f"cannot read {path}: not a PyTorch checkpoint (corrupt pickle data)") from None
    except Exception as exc:  # zip errors, EOF, truncated storage, ... all mean "not a checkpoint"
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise WeightsError(
            f"cannot read {path}: not a PyTorch checkpoint or truncated ({type(exc).__name__}: {first})"
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _strip_prefixes(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Remove ``module.`` / ``_orig_mod.`` (in any nesting) when every key carries it."""
    stripped = ""
    out = dict(state)
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if out and all(k.startswith(p) for k in out):
                out = {k[len(p):]: v for k, v in out.items()}
                stripped += p
                changed = True
    return out, stripped


def read_state_dict(path: Path, arch: str) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    """Read a checkpoint file meant for ``arch``.

    Returns:
        ``(state_dict, kind, meta)``: keys with prefixes still on; ``kind`` as in :class:`LoadReport`; ``meta``
        the facetubes header (``arch``, ``num_classes``, ``preset``) or ``{"arch": ...}`` from a training dict.
    """
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise WeightsError(f"{path} is a facetubes checkpoint of format version {version}; "
                               f"this models3d reads up to {FORMAT_VERSION}")
        if obj.get("arch") != arch:
            raise WeightsError(f"{path} is a facetubes checkpoint for {obj.get('arch')!r}, expected {arch!r}")
        if not _is_state_dict(obj.get("model")):
            raise WeightsError(f"{path} is a facetubes checkpoint without a 'model' state dict")
        meta = {k: obj.get(k) for k in ("arch", "num_classes", "preset")}
        return dict(obj["model"]), FORMAT, meta
    if _is_state_dict(obj):
        return dict(obj), "state_dict", {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if _is_state_dict(obj.get(key)):
                meta = {"arch": obj["arch"]} if isinstance(obj.get("arch"), str) else {}
                return dict(obj[key]), f"wrapped[{key}]", meta
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        raise WeightsError(f"{path} holds no state dict (top-level keys {keys}); expected {arch} weights")
    raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict; expected {arch} weights")


def _mismatch_message(path: Path, model: ClipClassifier, state: Mapping[str, Tensor], meta: Mapping[str, Any],
                      missing: list[str], unexpected: list[str], wrong: list[str]) -> str:
    """One line explaining why ``state`` does not fit ``model``."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        guess = identify_arch(shapes)
    except Exception:  # a third-party registered builder that cannot run on the meta device
        guess = None
    if guess is not None and guess != model.arch:
        return f"{path} holds {guess} weights, expected {model.arch}"
    parts = []
    if missing:
        parts.append(f"{len(missing)} keys missing (e.g. {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]!r})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} keys of wrong shape (e.g. {k!r}: file {shapes[k]}, "
                     f"model {tuple(model.state_dict()[k].shape)})")
    note = f"; the file says arch {meta['arch']!r}" if meta.get("arch") else ""
    return f"{path} does not fit {model.arch}: {', '.join(parts)}{note}"


def load_weights(model: ClipClassifier, weights: str | os.PathLike[str]) -> LoadReport:
    """Load ``weights`` (a path or a pretrained name such as ``"kinetics400"``) into ``model`` in place.

    If the file's head has another class count, or has no head, the head keeps its fresh initialisation and
    the report lists the keys. A facetubes checkpoint also sets ``model.preset`` to the stored preset.

    Raises:
        WeightsError: missing or unreadable file, another architecture's file, or any non-head key missing,
            unexpected or of the wrong shape.
    """
    path = resolve_weights(model.arch, weights)
    raw, kind, meta = read_state_dict(path, model.arch)
    return apply_state_dict(model, path, raw, kind, meta)


def apply_state_dict(model: ClipClassifier, path: Path, raw: Mapping[str, Tensor], kind: str,
                     meta: Mapping[str, Any]) -> LoadReport:
    """Second half of :func:`load_weights`: check ``raw`` (as returned by :func:`read_state_dict`) and load it.

    ``model`` may live on the meta device (built without initialising, as :func:`create_model` does): its
    tensors are then taken over from the file (cast to the model's dtypes, no copy otherwise), the head is
    initialised afresh when it is not loaded, and missing BatchNorm counters become 0.
    """
    state, stripped = _strip_prefixes(raw)
    adapt = getattr(model, "adapt_state_dict", None)
    dropped: list[str] = []
    if callable(adapt):  # a model that also reads another published layout (a bare backbone, a renamed head)
        state, dropped = adapt(state)
    own = model.state_dict()
    head = model.head_keys()
    report = LoadReport(path=str(path), kind=kind, stripped_prefix=stripped, skipped=list(dropped))

    def fits(key: str) -> bool:
        return key in state and tuple(state[key].shape) == tuple(own[key].shape)

    # The head is loaded whole or not at all (another class count, or absent from the file).
    load_head = all(fits(k) for k in head)
    missing, wrong = [], []
    for key in own:
        if key in head:
            if not load_head:
                report.reinitialized.append(key)
                if key in state:
                    report.skipped.append(key)
        elif not fits(key):
            if key not in state and key.endswith("num_batches_tracked"):
                report.filled.append(key)
            elif key not in state:
                missing.append(key)
            else:
                wrong.append(key)
    unexpected = [k for k in state if k not in own]
    if missing or unexpected or wrong:
        raise WeightsError(_mismatch_message(path, model, state, meta, missing, unexpected, wrong))

    on_meta = any(t.is_meta for t in own.values())
    merged: dict[str, Tensor] = {}
    for key, cur in own.items():
        if key in report.reinitialized or key in report.filled:
            # Placeholders: counters restart at 0, the head is re-initialised below.
            merged[key] = torch.zeros(cur.shape, dtype=cur.dtype) if on_meta else cur
        else:
            merged[key] = state[key].to(cur.dtype) if on_meta else state[key]
            report.loaded += 1
    model.load_state_dict(merged, strict=True, assign=on_meta)
    if report.reinitialized and on_meta:
        model.reset_classifier(model.num_classes)
    if on_meta and any(t.is_meta for t in model.state_dict().values()):
        raise RuntimeError(f"{model.arch}: tensors left uninitialised after loading {path}")

    if kind == FORMAT and isinstance(meta.get("preset"), Mapping):
        try:
            report.preset = Preset.from_dict(meta["preset"])
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"{path} has an invalid preset: {exc}") from None
        model.preset = report.preset
    log.log(logging.WARNING if report.reinitialized else logging.INFO, "%s: %s", model.arch, report)
    return report


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a facetubes checkpoint (e.g. to resume training) and return its whole dict.

    Raises:
        WeightsError: missing/unreadable file or not a facetubes checkpoint.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"checkpoint {p} not found (expected a facetubes checkpoint file)")
    obj = _torch_load(p)
    if not (isinstance(obj, Mapping) and obj.get("format") == FORMAT):
        raise WeightsError(f"{p} is not a facetubes checkpoint (no 'format': 'facetubes' entry)")
    return dict(obj)


def _unwrap(model: nn.Module) -> ClipClassifier:
    """The models3d network inside DDP/DataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    current: Any = model
    for _ in range(4):
        if isinstance(current, ClipClassifier) or current is None:
            break
        inner = getattr(current, "module", None)
        current = inner if isinstance(inner, nn.Module) else getattr(current, "_orig_mod", None)
    if not isinstance(current, ClipClassifier):
        raise TypeError("save_checkpoint needs a models3d network (optionally wrapped by DDP or torch.compile)")
    return current


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` loads with ``weights_only=True`` (tensors, numbers, str, containers)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, Tensor)):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}; checkpoints hold only tensors, numbers, strings "
                    "and lists/dicts of them")


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, **extra: Any) -> Path:
    """Write a facetubes checkpoint atomically (temp file in the same folder, then ``os.replace``).

    Args:
        path: destination file; parent folders are created.
        model: a models3d network, possibly wrapped by DDP/DataParallel or torch.compile (the saved keys carry
            no ``module.`` / ``_orig_mod.`` prefix).
        **extra: more top-level entries (``epoch``, ``optimizer`` state dict, metrics...): tensors, numbers,
            strings and lists/dicts of them. Names ``format, format_version, arch, num_classes, preset, model``
            are reserved.

    Returns:
        The written path.
    """
    net = _unwrap(model)
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"save_checkpoint: reserved key(s) {clash}")
    for k, v in extra.items():
        _check_plain(v, k)
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": net.arch,
        "num_classes": net.num_classes,
        "preset": net.preset.to_dict(),
        "model": net.state_dict(),
        **extra,
    }
    dest = Path(path).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    mask = os.umask(0o022)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)  # mkstemp makes 0600 files; a checkpoint is shared like any other file
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(ckpt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
