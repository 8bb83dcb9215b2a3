"""train: datasets over face tubes, clip-consistent augmentation, CutMix/MixUp, and the ``train3d`` / ``train2d`` loop.

Typical use from Python::

    from train import TrainConfig, train, resolve_config
    cfg = resolve_config(task="3d", arch="i3d", overrides={"data": "tubes/", "out": "runs/i3d"})
    result = train(cfg)                       # or train(load_run_config("runs/i3d"), resume=True)

The building blocks are usable on their own: :class:`TubeDataset` (PyAV decode of only the needed frames),
:func:`train_transform` (torchvision v2 on ``tv_tensors.Video``), :func:`cutmix_cuboid` / :func:`cutmix_box` /
:func:`mixup` (plain functions of ``(x, targets)``), :class:`EpochSampler` (per-epoch rebalancing, DDP shards),
:func:`make_split` (group-aware, seeded). The DFDC frame recipes (``train/configs/dfdc-*.yaml``) add
:class:`RecipeSampler`, :func:`recipe_loss`, :func:`recipe_train_transform`, part dropout and RandMerge: see
docs/recipes.md.
"""

from .augment import train_transform, val_transform
from .augment2d import recipe_train_transform
from .config import TrainConfig, load_run_config, resolve_config
from .data import Batch, Sample, TubeDataset, collate, collate_frames, window_indices
from .errors import TrainError
from .loop import RunResult, Trainer, build_model, train
from .metrics import evaluate, log_loss, roc_auc
from .mixing import (apply_mix, cutmix_box, cutmix_cuboid, fake_probability, mixup, one_hot_targets,
                     smooth_targets, soft_target_loss)
from .losses import recipe_loss
from .parts import apply_part_dropout, rand_merge
from .samplers import RecipeSampler, epoch_plan
from .sampling import EpochSampler, epoch_order, optimizer_steps
from .schedules import Schedule
from .splits import Split, load_records, make_split

__all__ = [
    "Batch", "EpochSampler", "RecipeSampler", "RunResult", "Sample", "Schedule", "Split", "TrainConfig",
    "TrainError", "Trainer", "TubeDataset", "apply_mix", "apply_part_dropout", "build_model", "collate",
    "collate_frames", "cutmix_box", "cutmix_cuboid", "epoch_order", "epoch_plan", "evaluate", "fake_probability",
    "load_records", "load_run_config", "log_loss", "make_split", "mixup", "one_hot_targets", "optimizer_steps",
    "rand_merge", "recipe_loss", "recipe_train_transform", "resolve_config", "roc_auc", "smooth_targets",
    "soft_target_loss", "train", "train_transform", "val_transform", "window_indices",
]
