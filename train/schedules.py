"""Optimisers and learning-rate schedules of the recipes, behind one small interface the loop steps.

- ``onecycle`` (the 5th place): :class:`torch.optim.lr_scheduler.OneCycleLR` over the run's optimizer steps.
- ``poly`` (the 1st place): ``lr * (1 - k / total) ** power`` at optimizer step k, per iteration.
- ``plateau`` (79th and 67th places): :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` on the validation
  log loss, stepped once per epoch (``plateau_patience`` epochs without improvement -> lr x ``plateau_factor``).
- ``constant``: the peak lr throughout.

Optimisers: ``adamw`` (default, decoupled weight decay), ``adam`` (L2 weight decay), ``sgd`` (``momentum``,
``nesterov``). Weight decay is applied to weight tensors only, never to biases and norm parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight tensors only (not on biases and norm parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` at ``cfg.lr``."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


class Schedule:
    """A learning-rate schedule stepped by the loop: :meth:`after_step` after every optimizer step,
    :meth:`after_epoch` after every validation. ``state_dict`` / ``load_state_dict`` for resuming."""

    def __init__(self, cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        self.kind = cfg.schedule
        self.total_steps = int(total_steps)
        self.optimizer = optimizer
        if self.kind == "onecycle":
            self.inner: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=self.total_steps, pct_start=cfg.pct_start,
                div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor)
        elif self.kind == "poly":
            power, total = cfg.poly_power, max(self.total_steps, 1)
            self.inner = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda k: max(1.0 - min(k, total) / total, 0.0) ** power)
        elif self.kind == "plateau":
            self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
        elif self.kind == "constant":
            self.inner = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
        else:
            raise ValueError(f"unknown schedule {self.kind!r}")

    def after_step(self) -> None:
        """One optimizer step was taken. Step-wise schedules advance (never past their last position: OneCycleLR
        raises there, and the last step needs no further position)."""
        if self.kind == "plateau":
            return
        if self.inner.last_epoch < self.total_steps - 1:
            self.inner.step()

    def after_epoch(self, val_loss: float) -> None:
        """An epoch was validated: ``plateau`` reacts to its log loss (a NaN loss counts as no improvement)."""
        if self.kind == "plateau":
            self.inner.step(val_loss if math.isfinite(val_loss) else math.inf)

    def get_last_lr(self) -> list[float]:
        """Current learning rate of each parameter group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "kind" not in state:  # a run saved before schedules were selectable: a OneCycleLR state
            state = {"kind": "onecycle", "inner": state}
        if state["kind"] != self.kind:
            raise ValueError(f"the checkpoint's schedule is {state['kind']}, not {self.kind}")
        self.inner.load_state_dict(state["inner"])
