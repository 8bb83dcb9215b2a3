"""The training configuration: one dataclass, defaulted from per-architecture YAML files, overridden by flags.

Precedence, lowest first: the dataclass defaults below, ``train/configs/<arch>.yaml``, a ``--config FILE``, then
command-line flags. The resolved configuration is written to ``RUN_DIR/config.yaml`` and read back by ``--resume``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from facetubes.errors import ConfigError, read_text

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

Task = Literal["3d", "2d"]
MixMode = Literal["none", "cutmix", "cutmix3d", "mixup", "mixup_or_cutmix"]

# Settings that may differ when a run is resumed: they change how fast it runs (amp, tf32: also the float rounding;
# a resume that changes the precision converts the GradScaler state), never the recipe.
RUNTIME_FIELDS = frozenset({"device", "num_workers", "progress", "compile", "save_every_minutes", "amp", "tf32"})


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help text (shown by ``--help``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that decides a training run. Field names are the flags: ``batch_size`` -> ``--batch-size``."""

    # --- what to train on ---------------------------------------------------------------------------------------
    arch: str = _f("i3d", "model name from the models3d registry", metavar="NAME")
    data: str = _f("", "tubes folder holding index.csv, or the index.csv path", metavar="TUBES")
    out: str = _f("", "run folder (checkpoints, metrics, config.yaml)", metavar="RUN_DIR")
    labels: list[str] = _f([], "labels that replace the index's labels: dataset roots (see `facetubes "
                           "datasets`), DFDC metadata.json or CSV",
                           metavar="FILE")
    weights: Optional[str] = _f(None, "initial weights: an upstream or facetubes checkpoint, or a pretrained name "
                                      "(kinetics400, imagenet) found in $TORCH_HOME", metavar="FILE")
    task: Task = _f("3d", "3d: clips and 2-class cross-entropy; 2d: frames and BCE (set by the command)", flag=False)

    # --- clips --------------------------------------------------------------------------------------------------
    clip_len: Optional[int] = _f(None, "frames per training clip (default: the model preset)")
    crop_size: Optional[int] = _f(None, "side of the model input in pixels (default: the model preset)")
    short_tubes: Literal["loop", "pad"] = _f("loop", "tubes shorter than a clip: loop them or repeat the last frame")
    val_window: Literal["first", "center"] = _f("first", "validation window of each tube")
    val_crop_fraction: float = _f(0.875, "validation: centre crop of this fraction of the tube side, then resize")
    val_frames: int = _f(32, "2D validation: frames per tube (evenly spaced); the tube score is their median")

    # --- split and sampling -------------------------------------------------------------------------------------
    split: Literal["auto", "random", "column", "folders"] = _f(
        "auto", "auto: --val-folders if given, else the index's split column if it names val, else random groups")
    val_fraction: float = _f(0.15, "random split: fraction of tubes (whole groups) held out for validation")
    val_folders: list[str] = _f([], "source folders (index 'folder' column) that form the validation set")
    val_dataset: list[str] = _f([], "datasets (index 'dataset' column) held out whole as validation "
                                    "(cross-dataset runs)", metavar="NAME")
    val_method: list[str] = _f([], "manipulations (index 'method' column) held out as validation, with the reals "
                                   "of the validation groups (cross-manipulation runs)", metavar="NAME")
    sampling: Literal["balanced", "shuffle", "paired"] = _f(
        "balanced", "balanced: every epoch all samples of the rarer class + as many fresh draws of the other; "
                    "paired (2D): each real tube with one of its fakes, same frame and augmentation, same batch")
    seed: int = _f(0, "seed of the split, the sampler, augmentation and initialisation")

    # --- optimisation -------------------------------------------------------------------------------------------
    epochs: int = _f(10, "epochs")
    batch_size: int = _f(12, "clips (3D) or frames (2D) per GPU per forward pass")
    val_batch_size: Optional[int] = _f(None, "tubes per validation batch (default: batch size; 2D: batch/8)")
    accum_steps: int = _f(1, "micro-batches per optimizer step (gradient accumulation)")
    lr: float = _f(1e-4, "peak learning rate of the one-cycle schedule (AdamW)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    pct_start: float = _f(0.3, "fraction of the steps spent warming up")
    div_factor: float = _f(25.0, "initial lr = lr / div_factor")
    final_div_factor: float = _f(1e4, "final lr = initial lr / final_div_factor")
    max_grad_norm: float = _f(5.0, "clip the gradient norm to this (0: off)")
    label_smoothing: float = _f(0.0, "label smoothing epsilon")
    mix: MixMode = _f("none", "cutmix3d: published space-time cuboid; cutmix: one box through all frames; "
                              "mixup; mixup_or_cutmix: one of the two per batch (2D recipe)")
    mix_prob: float = _f(1.0, "probability that a batch is mixed")
    cutmix_alpha: float = _f(1.0, "CutMix Beta(alpha, alpha)")
    mixup_alpha: float = _f(0.4, "MixUp Beta(alpha, alpha)")

    # --- augmentation (identical for every frame of a clip) -----------------------------------------------------
    rrc: bool = _f(True, "random resized crop to the crop size (off: centre crop / resize)")
    rrc_scale: tuple[float, float] = _f((0.5, 1.0), "random resized crop: area range")
    rrc_ratio: tuple[float, float] = _f((0.9, 1.1), "random resized crop: aspect-ratio range")
    hflip_p: float = _f(0.5, "horizontal flip probability")
    vflip_p: float = _f(0.0, "vertical flip probability")
    channel_perm_p: float = _f(0.0, "probability of a random RGB channel permutation")
    blur_p: float = _f(0.1, "Gaussian blur probability")
    blur_sigma: tuple[float, float] = _f((0.8, 1.4), "Gaussian blur sigma range (kernel 7)")
    noise_p: float = _f(0.1, "Gaussian noise probability")
    noise_std: float = _f(0.01, "Gaussian noise standard deviation (fraction of 255), drawn per pixel and frame")
    bc_p: float = _f(0.25, "brightness/contrast probability")
    bc_limit: float = _f(0.2, "brightness/contrast factors drawn from 1 +- this")

    # --- frame recipes (2D; see docs/recipes.md) ----------------------------------------------------------------
    head: Optional[str] = _f(None, "2D classifier head: linear or hidden512 (default: the model's)", metavar="HEAD")
    dropout: Optional[float] = _f(None, "dropout before the classifier (default: the model's)")
    norm: Optional[str] = _f(None, "2D backbone normalisation: batch or group (GroupNorm, for small batches)",
                             metavar="NORM")
    drop_path: Optional[float] = _f(None, "stochastic depth rate of a 2D timm backbone (default: the model's)")
    frames_per_tube: int = _f(1, "2D training: random frames per tube per epoch, each a separate sample")
    frame_every: int = _f(0, "2D training: every N-th frame of each tube is a separate sample (0: off; "
                             "replaces --frames-per-tube)")
    sample_unit: Literal["tube", "video"] = _f("tube", "video: each epoch one random tube of each video")
    loss: Literal["bce", "bce_classes", "focal"] = _f(
        "bce", "2D loss: bce; bce_classes (mean over fakes and mean over reals, averaged); focal")
    focal_gamma: float = _f(2.0, "focal loss gamma")
    focal_epochs: int = _f(0, "the last N epochs use the focal loss (a focal stage; 0: off)")
    label_clip: Optional[tuple[float, float]] = _f(None, "clip training targets into [MIN, MAX] (e.g. 0.01 0.99)")
    optimizer: Literal["adamw", "adam", "sgd"] = _f("adamw", "optimizer")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "SGD Nesterov momentum")
    schedule: Literal["onecycle", "poly", "plateau", "constant"] = _f(
        "onecycle", "lr schedule: onecycle; poly (per step); plateau (reduce on validation log loss); constant")
    plateau_patience: int = _f(2, "plateau: epochs without improvement before the lr is reduced")
    plateau_factor: float = _f(0.5, "plateau: lr multiplier")
    poly_power: float = _f(0.9, "poly: power")
    val_reduce: Literal["median", "mean", "max", "confident"] = _f(
        "median", "2D validation: how the per-frame probabilities of a tube become its score")
    val_clip: Optional[tuple[float, float]] = _f(None, "validation: clip tube probabilities into [MIN, MAX]")
    resize: Literal["crop", "isotropic"] = _f(
        "crop", "crop: (random resized) crop; isotropic: long side to the size with a random filter, zero padding")
    jpeg_p: float = _f(0.0, "JPEG re-compression probability")
    jpeg_quality: tuple[float, float] = _f((60.0, 100.0), "JPEG quality range")
    downscale_p: float = _f(0.0, "downscale-and-back probability")
    downscale_range: tuple[float, float] = _f((0.5, 0.9), "downscale: factor range")
    color_p: float = _f(0.0, "probability of one of brightness/contrast, FancyPCA, hue/saturation")
    gray_p: float = _f(0.0, "greyscale probability")
    affine_p: float = _f(0.0, "shift (0.1) / scale (0.2) / rotate (10 deg) probability")
    part_dropout_p: float = _f(0.0, "black out eyes, mouth or nose along the tube's landmarks (needs landmarks)")
    half_dropout_p: float = _f(0.0, "else black out half of the face (needs landmarks)")
    randmerge_p: float = _f(0.0, "RandMerge: right half of a sample from another sample of its class")

    # --- runtime ------------------------------------------------------------------------------------------------
    device: str = _f("auto", "auto (cuda if present), cpu, cuda, cuda:1; under torchrun each rank its local GPU",
                     metavar="DEVICE")
    amp: Literal["auto", "bf16", "fp16", "none"] = _f(
        "auto", "mixed precision (auto: bf16 on CUDA GPUs of compute capability 8.0+, fp16 with a GradScaler on "
                "older ones, none on CPU)")
    tf32: bool = _f(False, "let float32 convolutions and matrix products use TF32 on Ampere+ GPUs (faster, 10-bit "
                           "mantissa); off: --amp none is true float32")
    channels_last: bool = _f(True, "channels_last(_3d) memory format for model and input on CUDA "
                                   "(never on CPU, where 3D convolutions are slower with it)")
    compile: bool = _f(False, "torch.compile the model")
    sync_bn: bool = _f(False, "synchronise BatchNorm statistics across GPUs (DDP)")
    num_workers: int = _f(4, "data-loading processes per GPU")
    save_every_minutes: float = _f(30.0, "also save last.pt inside an epoch this often (0: only at epoch end)")
    progress: bool = _f(True, "progress bar")

    # ------------------------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """2 (softmax, cross-entropy) for 3D models as published; 1 (sigmoid, BCE) for the 2D model."""
        return 2 if self.task == "3d" else 1

    def validate(self) -> "TrainConfig":
        """Check ranges; raise ConfigError naming the first bad setting. Returns self."""
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"--{name.replace('_', '-')}: {why} (got {getattr(self, name)!r})")

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            values = v if isinstance(v, (tuple, list)) else (v,)
            if any(isinstance(x, float) and not math.isfinite(x) for x in values):
                raise bad(f.name, "must be a finite number")
        for name in ("epochs", "batch_size", "accum_steps", "val_frames"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        for name, most in (("clip_len", 1024), ("crop_size", 2048)):
            v = getattr(self, name)
            if v is not None and v > most:
                raise bad(name, f"must be <= {most}")
        for name in ("clip_len", "crop_size", "val_batch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise bad(name, "must be >= 1")
        for name in ("hflip_p", "vflip_p", "channel_perm_p", "blur_p", "noise_p", "bc_p", "mix_prob", "pct_start",
                     "label_smoothing", "jpeg_p", "downscale_p", "color_p", "gray_p", "affine_p", "part_dropout_p",
                     "half_dropout_p", "randmerge_p", "plateau_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must lie in [0, 1]")
        if not 0.0 < self.val_fraction < 1.0:
            raise bad("val_fraction", "must lie strictly between 0 and 1")
        if not 0.0 < self.val_crop_fraction <= 1.0:
            raise bad("val_crop_fraction", "must lie in (0, 1]")
        for name in ("lr", "div_factor", "final_div_factor"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        for name in ("weight_decay", "max_grad_norm", "num_workers", "save_every_minutes", "noise_std",
                     "cutmix_alpha", "mixup_alpha", "bc_limit"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        lo, hi = self.rrc_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise bad("rrc_scale", "needs 0 < min <= max <= 1")
        lo, hi = self.rrc_ratio
        if not 0.0 < lo <= hi:
            raise bad("rrc_ratio", "needs 0 < min <= max")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise bad("blur_sigma", "needs 0 < min <= max")
        if self.mix in ("cutmix", "cutmix3d", "mixup_or_cutmix") and self.cutmix_alpha <= 0:
            raise bad("cutmix_alpha", "must be > 0 when CutMix is used")
        if self.mix in ("mixup", "mixup_or_cutmix") and self.mixup_alpha <= 0:
            raise bad("mixup_alpha", "must be > 0 when MixUp is used")
        if self.mix == "cutmix3d" and self.task == "2d":
            raise bad("mix", "cutmix3d needs clips (train3d); use cutmix or mixup_or_cutmix")
        self._validate_recipe(bad)
        return self

    def _validate_recipe(self, bad: Any) -> None:
        """Checks of the frame-recipe settings (docs/recipes.md)."""
        for name in ("frames_per_tube",):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        for name in ("frame_every", "focal_epochs", "plateau_patience", "focal_gamma", "poly_power", "momentum"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if self.head is not None and self.head not in ("linear", "hidden512"):
            raise bad("head", "must be linear or hidden512")
        if self.norm is not None and self.norm not in ("batch", "group"):
            raise bad("norm", "must be batch or group")
        for name in ("dropout", "drop_path"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v < 1.0:
                raise bad(name, "must lie in [0, 1)")
        for name in ("label_clip", "val_clip"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v[0] < v[1] <= 1.0:
                raise bad(name, "needs 0 <= min < max <= 1")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise bad("jpeg_quality", "needs 1 <= min <= max <= 100")
        lo, hi = self.downscale_range
        if not 0.0 < lo <= hi <= 1.0:
            raise bad("downscale_range", "needs 0 < min <= max <= 1")
        if self.task == "3d":
            frame_only = {"frames_per_tube": 1, "frame_every": 0, "sample_unit": "tube", "loss": "bce",
                          "focal_epochs": 0, "part_dropout_p": 0.0, "half_dropout_p": 0.0, "head": None,
                          "norm": None, "drop_path": None}
            for name, default in frame_only.items():
                if getattr(self, name) != default:
                    raise bad(name, "is a 2D (train2d) setting")
            if self.sampling == "paired":
                raise bad("sampling", "paired is a 2D (train2d) setting")
        if self.frame_every and self.sample_unit == "video":
            raise bad("frame_every", "cannot be combined with --sample-unit video (the epoch size would vary)")
        if self.sampling == "paired":
            if self.sample_unit != "tube":
                raise bad("sample_unit", "paired sampling pairs tubes: use tube")
            if self.batch_size % 2:
                raise bad("batch_size", "must be even with paired sampling (a pair shares a batch)")
        if self.focal_epochs > self.epochs:
            raise bad("focal_epochs", f"must be <= --epochs ({self.epochs})")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def save(self, path: str | Path) -> None:
        """Write the resolved configuration as YAML, atomically."""
        from facetubes.manifest import atomic_write_text

        atomic_write_text(path, "# resolved facetubes training configuration\n"
                          + yaml.safe_dump(self.to_dict(), sort_keys=False))


# ----------------------------------------------------------------------------------------------------------------
# typed coercion


def field_types() -> dict[str, Any]:
    """Resolved type annotation of every field."""
    return typing.get_type_hints(TrainConfig)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def coerce(name: str, value: Any, where: str) -> Any:
    """Convert a YAML/flag value to the field's type; raise ConfigError naming ``where`` and the field."""
    types_ = field_types()
    if name not in types_:
        known = ", ".join(sorted(types_))
        raise ConfigError(f"{where}: unknown setting {name!r} (known: {known})")
    tp, optional = _unwrap_optional(types_[name])
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{where}: {name} cannot be empty")
    origin = typing.get_origin(tp)
    try:
        if origin is Literal:
            choices = typing.get_args(tp)
            if str(value) not in choices:
                raise ConfigError(f"{where}: {name} must be one of {', '.join(choices)} (got {value!r})")
            return str(value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            v = str(value).strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            return str(value)
        if origin is list:
            items = value if isinstance(value, (list, tuple)) else [value]
            return [str(v) for v in items]
        if origin is tuple:
            items = list(value) if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            args = typing.get_args(tp)
            if len(items) != len(args):
                raise ValueError(value)
            return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {name} has a bad value {value!r} (expected {tp})") from None
    raise ConfigError(f"{where}: {name}: unsupported type {tp}")


def apply_overrides(cfg: TrainConfig, values: dict[str, Any], where: str) -> TrainConfig:
    """Return a copy of ``cfg`` with ``values`` (YAML keys or flag names with - or _) applied."""
    changes = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        changes[name] = coerce(name, value, where)
    return dataclasses.replace(cfg, **changes)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; ConfigError with a one-line reason when it is missing or malformed."""
    path = Path(path)
    text = read_text(path, "config file", "a YAML config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value")
    return data


def arch_defaults_path(arch: str) -> Path:
    """``train/configs/<arch>.yaml`` (may not exist: then the dataclass defaults apply)."""
    return CONFIG_DIR / f"{arch}.yaml"


def resolve_config(*, task: Task, arch: Optional[str], config_file: Optional[str] = None,
                   overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """Dataclass defaults <- ``configs/<arch>.yaml`` <- ``config_file`` <- ``overrides``; validated.

    ``arch`` may also come from the config file; the per-architecture file is chosen by the final arch.
    """
    overrides = dict(overrides or {})
    if config_file and not Path(config_file).exists() and (CONFIG_DIR / f"{config_file}.yaml").is_file():
        config_file = str(CONFIG_DIR / f"{config_file}.yaml")  # a shipped recipe by name: --config dfdc-1st
    file_values = read_yaml(config_file) if config_file else {}
    arch = arch or overrides.get("arch") or file_values.get("arch") or ("i3d" if task == "3d" else "seresnext50")
    cfg = TrainConfig(task=task)
    arch_file = arch_defaults_path(str(arch))
    if arch_file.is_file():
        cfg = apply_overrides(cfg, read_yaml(arch_file), str(arch_file))
    if file_values:
        cfg = apply_overrides(cfg, file_values, str(config_file))
    overrides["arch"] = arch
    cfg = apply_overrides(cfg, overrides, "command line")
    cfg.task = task
    return cfg.validate()


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved configuration saved in ``run_dir/config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a training run folder (no config.yaml)")
    values = read_yaml(path)
    task = values.pop("task", "3d")
    cfg = apply_overrides(TrainConfig(task=coerce("task", task, str(path))), values, str(path))
    return cfg.validate()
