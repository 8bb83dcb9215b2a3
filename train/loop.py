"""The training loop behind ``train3d`` and ``train2d``.

One :class:`Trainer` per process. It reads the index, fixes the split, builds the model from the registry, and
runs epochs of rebalanced sampling with AdamW + one-cycle LR (or a recipe's optimiser and schedule:
``train.schedules``) scheduled over the optimizer steps actually taken (accumulation, drop_last and the DDP shard
included), mixed precision, gradient clipping and optional
``torch.compile``. After every epoch it validates, appends to ``metrics.csv`` / ``curves.png`` and writes
``last.pt`` (every state needed to resume) and, when the validation log loss improves, ``best.pt``; inside long
epochs ``last.pt`` is also refreshed every ``save_every_minutes``. A non-finite loss stops the run without
touching the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from facetubes.errors import one_line
from facetubes.precision import set_tf32, tf32_state

from infer.reduce import clip_probs, reduce_probs

from .augment import val_transform
from .augment2d import IsotropicVal, recipe_train_transform
from .config import TrainConfig
from .data import Batch, TubeDataset, collate, collate_frames
from .errors import TrainError
from .metrics import MetricsLog, evaluate
from .losses import clip_targets, recipe_loss
from .mixing import apply_mix, fake_probability, one_hot_targets, smooth_targets, soft_target_loss
from .parts import rand_merge
from .runtime import (DistEnv, all_reduce_sum, barrier, broadcast_buffers, choose_amp, gather_objects,
                      init_distributed, load_train_checkpoint, precision_name, rank_seed, resolve_device, rng_state,
                      save_train_checkpoint, seed_everything, set_rng_state, shutdown_distributed)
from .samplers import PlanSettings, RecipeSampler, TubeTable
from .sampling import EpochSampler, ShardSampler, optimizer_steps
from .schedules import Schedule, make_optimizer
from .splits import Split, holdout_split, load_records, make_split, read_split, summarize, write_split

log = logging.getLogger("train")

MAX_BAD_TUBES = 20
"""An epoch stops the run only when its failed tube reads exceed both this and its good clips."""


@dataclass
class RunResult:
    """What a finished run reports: its folder, the last epoch's metrics and the best validation log loss."""

    run_dir: Path
    metrics: dict[str, Any]
    best_val_loss: float
    global_step: int
    total_steps: int


def check_arch(cfg: TrainConfig) -> None:
    """``TrainError`` if ``cfg.arch`` is not in the registry or is the wrong kind (2D/3D) for the command."""
    import models3d

    try:
        spec = models3d.get_spec(cfg.arch)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if spec.preset.is_3d != (cfg.task == "3d"):
        cmd = "train3d" if spec.preset.is_3d else "train2d"
        raise TrainError(f"--arch {cfg.arch} is a {'3D' if spec.preset.is_3d else '2D'} model: use {cmd}")


def build_model(cfg: TrainConfig) -> nn.Module:
    """The registry model for ``cfg.arch`` with ``cfg.num_classes`` outputs (and ``cfg.weights`` if given); its
    preset is updated to the clip length / crop size actually trained, so checkpoints carry them."""
    import models3d

    check_arch(cfg)
    options = {k: getattr(cfg, k) for k in ("head", "dropout", "norm", "drop_path") if getattr(cfg, k) is not None}
    try:
        model = models3d.create_model(cfg.arch, num_classes=cfg.num_classes, weights=cfg.weights, **options)
    except TypeError as e:  # a builder without that option (e.g. --norm for a 3D model)
        names = ", ".join(f"--{k}" for k in options)
        raise TrainError(f"--arch {cfg.arch} does not take {names} ({one_line(e)})") from None
    preset = model.preset
    model.preset = preset.replace(clip_len=(cfg.clip_len or preset.clip_len) if cfg.task == "3d" else 1,
                                  crop_size=cfg.crop_size or preset.crop_size)
    return model


class Trainer:
    """One process's share of a training run (see the module docstring). ``fit()`` runs it to the end."""

    def __init__(self, cfg: TrainConfig, env: DistEnv, *, resume: bool = False) -> None:
        self.cfg, self.env = cfg, env
        self.run_dir = Path(cfg.out).expanduser().resolve()
        fresh = not resume and bool(cfg.out) and not self.run_dir.exists()
        self._check_run_dir(resume)
        self._log_handlers = self._setup_logging()
        self._tf32_before = tf32_state()  # restored by close(): the switches are process-wide
        try:
            self._start(resume)
        except BaseException:
            self.close()
            if fresh and env.is_main:  # a start that failed (bad data, bad arch...) leaves no run folder behind
                _remove_failed_start(self.run_dir)
            raise

    def _start(self, resume: bool) -> None:
        cfg, env = self.cfg, self.env
        self.device = resolve_device(cfg.device, env)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest kernels
        self.amp_dtype, self.amp_reason = choose_amp(cfg.amp, self.device)
        set_tf32(cfg.tf32)  # off by default: float32 (--amp none, and autocast's float32 ops) is float32

        check_arch(cfg)  # a typo in --arch is reported before anything is read
        records = load_records(cfg.data, cfg.labels)
        split_file = self.run_dir / "split.csv"
        split = read_split(split_file, records) if (resume and split_file.is_file()) else (
            holdout_split(records, val_datasets=cfg.val_dataset, val_methods=cfg.val_method, mode=cfg.split,
                          val_fraction=cfg.val_fraction, seed=cfg.seed, val_folders=cfg.val_folders)
            if (cfg.val_dataset or cfg.val_method) else make_split(
                records, mode=cfg.split, val_fraction=cfg.val_fraction, seed=cfg.seed, val_folders=cfg.val_folders))
        self.split: Split = split
        if env.is_main:
            log.info("%s", summarize(split))

        seed_everything(cfg.seed)
        self.model = build_model(cfg)
        self.preset = self.model.preset
        self.is_3d = cfg.task == "3d"
        if cfg.sync_bn and env.distributed:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if env.distributed:  # same initial weights on every rank, then a rank's own dropout / noise stream
            seed_everything(rank_seed(cfg.seed, env.rank))
        self.rank_seed = torch.initial_seed()
        # channels_last pays off on GPUs (cuDNN); on CPU 3D convolutions run 2-4x slower with it, so it is not used
        self.memory_format = torch.contiguous_format
        if cfg.channels_last and self.device.type == "cuda":
            self.memory_format = torch.channels_last_3d if self.is_3d else torch.channels_last
        self.model.to(self.device, memory_format=self.memory_format)

        self._build_data()
        if env.is_main:  # everything checked: record the run's split and configuration
            if not resume:
                write_split(split_file, split)
            cfg.save(self.run_dir / "config.yaml")  # on resume too: a moved --data or new runtime settings
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler = Schedule(cfg, self.optimizer, self.total_steps)
        self.no_landmarks = 0  # samples whose part dropout was skipped (their tube has no landmarks)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.mix_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, env.rank, 0x313]))

        self.train_model: nn.Module = self.model
        if env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)  # type: ignore[assignment]

        self.metrics = MetricsLog(self.run_dir)
        self.epoch, self.epoch_step, self.global_step = 0, 0, 0
        self.best_val_loss = math.inf
        self.partial: dict[str, float] = {}
        self._seen_bad: set[str] = set()
        self.files_written = 0  # checkpoint files written by this process (rank 0 only)
        self.clips_seen = 0  # training clips this process has seen in this launch
        if resume:
            self._resume()
        elif env.is_main:
            log.info("run %s: %s %s, %d epochs x %d steps (batch %d x %d accum x %d GPU), clip %dx%d px, "
                     "device %s, precision %s (%s), TF32 %s", self.run_dir, cfg.arch, "3D" if self.is_3d else "2D",
                     cfg.epochs, self.steps_per_epoch, cfg.batch_size, cfg.accum_steps, env.world_size,
                     self.clip_len, self.crop_size, self.device, precision_name(self.amp_dtype), self.amp_reason,
                     "on" if cfg.tf32 else "off")
        log.debug("rank %d/%d ready on %s", env.rank, env.world_size, self.device)

    # ------------------------------------------------------------------------------------------------ set-up
    def _check_run_dir(self, resume: bool) -> None:
        if not self.cfg.out:
            raise TrainError("--out RUN_DIR is required")
        if resume:
            if not (self.run_dir / "last.pt").is_file():
                raise TrainError(f"{self.run_dir}: nothing to resume (no last.pt)")
            return
        if (self.run_dir / "last.pt").exists():
            raise TrainError(f"{self.run_dir} already holds a run: continue it with --resume {self.run_dir}, "
                             "or choose another --out")
        if self.env.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise TrainError(f"{self.run_dir}: cannot create the run folder ({e.strerror or e})") from None
        barrier(self.env)

    def _setup_logging(self) -> list[logging.Handler]:
        handlers: list[logging.Handler] = []
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
        # a console handler unless the application has configured logging itself (then records propagate to it)
        console = not logging.getLogger().handlers
        if self.env.is_main:
            try:
                fh = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
            except OSError as e:
                raise TrainError(f"{self.run_dir}: cannot write the run folder ({e.strerror or e})") from None
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            handlers.append(fh)
            if console:
                sh = logging.StreamHandler(sys.stdout)
                sh.setFormatter(logging.Formatter("%(message)s"))
                handlers.append(sh)
        elif console:  # other ranks: their own lines (rank summary, unreadable tubes) on stderr, tagged
            sh = logging.StreamHandler(sys.stderr)
            sh.setFormatter(logging.Formatter(f"[rank {self.env.rank}] %(message)s"))
            handlers.append(sh)
        for h in handlers:
            log.addHandler(h)
        return handlers

    def close(self) -> None:
        """Detach this run's log handlers and restore the TF32 switches (a process may run several trainings)."""
        set_tf32(self._tf32_before)
        for h in self._log_handlers:
            log.removeHandler(h)
            h.close()

    def _build_data(self) -> None:
        cfg, env = self.cfg, self.env
        self.clip_len = self.preset.clip_len if self.is_3d else 1
        self.crop_size = self.preset.crop_size
        common = dict(short_tubes=cfg.short_tubes, val_window=cfg.val_window, frames_per_tube=cfg.val_frames)
        self.train_set = TubeDataset(self.split.train, mode="clip" if self.is_3d else "frame", train=True,
                                     clip_len=self.clip_len, transform=recipe_train_transform(cfg, self.crop_size),
                                     part_dropout=(cfg.part_dropout_p, cfg.half_dropout_p), **common)
        val_tf = IsotropicVal(self.crop_size) if cfg.resize == "isotropic" else val_transform(cfg, self.crop_size)
        self.val_set = TubeDataset(self.split.val, mode="clip" if self.is_3d else "frames", train=False,
                                   clip_len=self.clip_len, transform=val_tf, **common)
        self.sampler = make_sampler(cfg, self.train_set, env)
        pin = self.device.type == "cuda"
        # Loaders draw their worker base seed from their own generator, not the global RNG, so that creating an
        # iterator (e.g. after a mid-epoch resume) does not shift dropout masks; augmentation is seeded per sample.
        loader_rng = torch.Generator().manual_seed(cfg.seed)
        n_workers = min(cfg.num_workers, os.cpu_count() or 1)  # more processes than cores only thrash
        workers = dict(num_workers=n_workers, persistent_workers=n_workers > 0,
                       prefetch_factor=2 if n_workers > 0 else None, generator=loader_rng)
        self.train_loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                       collate_fn=collate, drop_last=True, pin_memory=pin, **workers)
        val_bs = cfg.val_batch_size or (cfg.batch_size if self.is_3d else max(1, cfg.batch_size // 8))
        self.val_loader = DataLoader(self.val_set, batch_size=val_bs,
                                     sampler=ShardSampler(len(self.val_set), rank=env.rank, world_size=env.world_size),
                                     collate_fn=collate if self.is_3d else collate_frames, pin_memory=pin, **workers)
        self.batches_per_epoch, self.steps_per_epoch = optimizer_steps(self.sampler.shard_size, cfg.batch_size,
                                                                       cfg.accum_steps)
        if self.batches_per_epoch == 0:
            raise TrainError(f"an epoch gives {self.sampler.shard_size} clips per process, fewer than --batch-size "
                             f"{cfg.batch_size} ({cfg.sampling} sampling of {len(self.train_set)} training tubes)")
        self.total_steps = self.steps_per_epoch * cfg.epochs

    # ------------------------------------------------------------------------------------------------ state
    def _train_state(self, epoch: int, epoch_step: int) -> dict[str, Any]:
        """Everything besides the weights that a resume needs (gathered from all ranks: call on every rank)."""
        rngs = gather_objects({"rng": rng_state(), "mix": self.mix_rng.bit_generator.state}, self.env)
        return {"epoch": epoch, "epoch_step": epoch_step, "global_step": self.global_step,
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.env.world_size, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "precision": precision_name(self.amp_dtype),
                "sampler": self.sampler.state_dict(), "rng": rngs, "best_val_loss": self.best_val_loss,
                "partial": dict(self.partial)}

    def save_last(self, epoch: int, epoch_step: int, metrics: Optional[dict[str, Any]] = None) -> None:
        """Write ``last.pt`` (rank 0; every rank must call it because RNG states are gathered)."""
        state = self._train_state(epoch, epoch_step)
        if self.env.is_main:
            save_train_checkpoint(self.run_dir / "last.pt", self.model, train=state, config=self.cfg.to_dict(),
                                  metrics=metrics or {})
            self.files_written += 1

    def _resume(self) -> None:
        ckpt = load_train_checkpoint(self.run_dir / "last.pt")
        st = ckpt["train"]
        if st["steps_per_epoch"] != self.steps_per_epoch or st["total_steps"] != self.total_steps:
            raise TrainError(f"{self.run_dir} was run with {st['world_size']} process(es) and "
                             f"{st['steps_per_epoch']} steps per epoch; this launch gives {self.steps_per_epoch}: "
                             "resume with the same number of processes and batch settings")
        if st["epoch_step"] and st["world_size"] != self.env.world_size:
            raise TrainError(f"{self.run_dir} was saved inside an epoch by {st['world_size']} process(es): "
                             "resume it with as many")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self._resume_scaler(st)
        self.epoch, self.epoch_step, self.global_step = st["epoch"], st["epoch_step"], st["global_step"]
        self.best_val_loss = float(st["best_val_loss"])
        self.partial = dict(st.get("partial") or {})
        rngs = st["rng"]
        if len(rngs) == self.env.world_size:
            set_rng_state(rngs[self.env.rank]["rng"])
            self.mix_rng.bit_generator.state = rngs[self.env.rank]["mix"]
        else:  # other process count at an epoch boundary: a fresh, still deterministic stream per rank
            seed_everything(self.cfg.seed * 1000 + self.epoch * 10 + self.env.rank)
        self.metrics.load(up_to_epoch=self.epoch)
        if self.env.is_main:
            log.info("resuming %s at epoch %d step %d of %d (global step %d of %d)", self.run_dir, self.epoch + 1,
                     self.epoch_step, self.steps_per_epoch, self.global_step, self.total_steps)

    def _resume_scaler(self, st: dict[str, Any]) -> None:
        """Load the GradScaler state, or convert when this launch resolves another precision than the saved one
        (e.g. a run started on CPU or on a bf16 GPU, resumed on a pre-Ampere GPU where ``auto`` means fp16)."""
        saved = st.get("precision")  # None in checkpoints written before it was recorded
        now = precision_name(self.amp_dtype)
        if saved is not None and saved != now and self.env.is_main:
            log.warning("%s was trained in %s; this launch resolves %s (%s): resuming in %s, no longer bit-exact",
                        self.run_dir, saved, now, self.amp_reason, now)
        if not self.scaler.is_enabled():
            return  # a saved fp16 scaler state has nothing to do in bf16 / fp32
        if st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        elif self.env.is_main:
            log.warning("no GradScaler state in %s: fp16 starts with a new scaler (scale %g)",
                        self.run_dir / "last.pt", self.scaler.get_scale())

    # ------------------------------------------------------------------------------------------------ steps
    @property
    def loss_kind(self) -> str:
        """The loss of the current epoch: ``cfg.loss``, or ``focal`` in the last ``focal_epochs`` epochs."""
        cfg = self.cfg
        if cfg.focal_epochs and self.epoch >= cfg.epochs - cfg.focal_epochs:
            return "focal"
        return cfg.loss

    def _inputs(self, batch: Batch) -> Tensor:
        x = batch.x.to(self.device, non_blocking=True)
        return self.preset.normalize(x).contiguous(memory_format=self.memory_format)

    def _dummy_batch(self) -> Batch:
        """Stand-in for a batch whose every tube failed: one black clip, weight 0 (keeps DDP ranks in step)."""
        shape = (1, 3, self.clip_len, self.crop_size, self.crop_size) if self.is_3d else (1, 3, self.crop_size,
                                                                                          self.crop_size)
        return Batch(torch.zeros(shape, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
                     torch.zeros(1, dtype=torch.int64))

    def _report_bad(self, bad: list[str]) -> None:
        for reason in bad:
            if reason not in self._seen_bad:
                self._seen_bad.add(reason)
                log.warning("skipped unreadable tube %s", reason)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _optimizer_step(self) -> None:
        cfg = self.cfg
        if cfg.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(norm) and not self.scaler.is_enabled():
                raise TrainError(f"non-finite gradient norm at epoch {self.epoch + 1} step {self.epoch_step + 1}; "
                                 f"stopped, the last good checkpoint {self.run_dir / 'last.pt'} is kept")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        # optimizer step k ran at schedule position k - 1; the last step needs no further position (stepping past
        # it would make OneCycleLR extrapolate, and stepping past total_steps raises, as in the published scripts)
        self.scheduler.after_step()
        self.epoch_step += 1
        self.global_step += 1

    def after_step(self) -> None:
        """Hook called on every rank after each optimizer step (tests use it to simulate a crash)."""

    def train_epoch(self) -> dict[str, float]:
        """One epoch (or its remainder, after a mid-epoch resume). Returns the epoch's training statistics."""
        cfg, env = self.cfg, self.env
        self.sampler.set_epoch(self.epoch, start=self.epoch_step * cfg.accum_steps * cfg.batch_size)
        self.train_model.train()
        p = self.partial or {}
        loss_sum, n_sum, bad = p.get("loss_sum", 0.0), p.get("n", 0.0), p.get("bad", 0.0)
        elapsed_before = p.get("time", 0.0)
        t0 = last_save = time.monotonic()
        first_batch = self.epoch_step * cfg.accum_steps
        bar = _progress(total=self.steps_per_epoch, initial=self.epoch_step, desc=f"epoch {self.epoch + 1}/"
                        f"{cfg.epochs}", enabled=env.is_main and cfg.progress)
        self.optimizer.zero_grad(set_to_none=True)
        for b, batch in enumerate(self.train_loader, start=first_batch):
            bad += len(batch.bad)
            self._report_bad(batch.bad)
            self.no_landmarks += batch.no_landmarks
            weight = 1.0
            if len(batch) == 0:
                batch, weight = self._dummy_batch(), 0.0
            group_start = (b // cfg.accum_steps) * cfg.accum_steps
            group_size = min(cfg.accum_steps, self.batches_per_epoch - group_start)
            last_micro = b - group_start == group_size - 1
            x = self._inputs(batch)
            labels = batch.labels.to(self.device)
            if cfg.randmerge_p > 0:
                x = rand_merge(x, labels, p=cfg.randmerge_p, rng=self.mix_rng)[0]
            targets = clip_targets(smooth_targets(one_hot_targets(labels, cfg.num_classes), cfg.label_smoothing),
                                   cfg.label_clip)
            x, targets = apply_mix(x, targets, mode=cfg.mix, prob=cfg.mix_prob, cutmix_alpha=cfg.cutmix_alpha,
                                   mixup_alpha=cfg.mixup_alpha, rng=self.mix_rng)
            sync = contextlib.nullcontext()
            if env.distributed and not last_micro:
                sync = self.train_model.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    logits = self.train_model(x)
                kind = self.loss_kind
                loss = (soft_target_loss(logits, targets) if kind == "bce" else
                        recipe_loss(logits, targets, labels, kind=kind, gamma=cfg.focal_gamma))
                self.scaler.scale(loss * (weight / group_size)).backward()
            n = float(len(batch)) * weight
            self.clips_seen += int(n)
            total_loss, total_n = all_reduce_sum([loss.item() * n, n], env, self.device)
            if not math.isfinite(total_loss):
                raise TrainError(f"loss became {total_loss} at epoch {self.epoch + 1} step {self.epoch_step + 1}; "
                                 f"stopped, the last good checkpoint {self.run_dir / 'last.pt'} is kept")
            loss_sum, n_sum = loss_sum + total_loss, n_sum + total_n
            if not last_micro:
                continue
            self._optimizer_step()
            self.after_step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(n_sum, 1):.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            due = cfg.save_every_minutes > 0 and time.monotonic() - last_save >= cfg.save_every_minutes * 60
            if env.distributed:
                due = all_reduce_sum([1.0 if (due and env.is_main) else 0.0], env, self.device)[0] > 0
            if due and self.epoch_step < self.steps_per_epoch:
                self.partial = {"loss_sum": loss_sum, "n": n_sum, "bad": bad,
                                "time": elapsed_before + time.monotonic() - t0}
                self.save_last(self.epoch, self.epoch_step)
                last_save = time.monotonic()
        bar.close()
        if self.no_landmarks and env.is_main:
            log.info("part dropout skipped for %d samples of tubes without landmarks", self.no_landmarks)
            self.no_landmarks = 0
        seconds = elapsed_before + time.monotonic() - t0
        bad_total = all_reduce_sum([bad], env, self.device)[0] if env.distributed else bad
        self.partial = {}
        if bad_total > max(MAX_BAD_TUBES, n_sum) or (bad_total and not n_sum):  # a vanished disk, not a few bad files
            raise TrainError(f"{int(bad_total)} tube reads failed in epoch {self.epoch + 1} against {int(n_sum)} "
                             f"good clips; is {self.cfg.data} reachable? (last good checkpoint kept)")
        return {"train_loss": loss_sum / max(n_sum, 1.0), "train_clips": int(n_sum), "epoch_time_s": seconds,
                "clips_per_s": n_sum / max(seconds, 1e-9), "bad_train": bad_total}

    def validate(self) -> dict[str, float]:
        """Validation log loss, AUC and per-class accuracy over the whole validation set (all ranks).

        Every rank first takes rank 0's buffers (BatchNorm running statistics, which differ per rank under DDP
        without ``--sync-bn``), so the gathered metrics are those of the one model that is saved."""
        broadcast_buffers(self.model, self.env)
        return self._validate()

    @torch.inference_mode()
    def _validate(self) -> dict[str, float]:
        self.model.eval()
        indices: list[int] = []
        probs: list[float] = []
        bad = 0
        for batch in self.val_loader:
            bad += len(batch.bad)
            self._report_bad(batch.bad)
            if len(batch) == 0:
                continue
            with self._autocast():
                logits = self.model(self._inputs(batch))
            p = fake_probability(logits)
            if batch.counts is not None:  # 2D: per-frame probabilities -> tube (median as published; --val-reduce)
                p = tube_scores(p, batch.counts.tolist(), self.cfg.val_reduce)
            indices += batch.index.tolist()
            probs += p.float().cpu().tolist()
        self.model.train()
        gathered = gather_objects((indices, probs, bad), self.env)
        idx = [i for g in gathered for i in g[0]]
        pr = [q for g in gathered for q in g[1]]
        labels = [self.val_set.labels[i] for i in idx]
        if not all(math.isfinite(q) for q in pr):  # the last step's update blew the weights up
            raise TrainError(f"the model's outputs became non-finite after epoch {self.epoch + 1} (the weights "
                             f"diverged; try a lower --lr); stopped, the last good checkpoint "
                             f"{self.run_dir / 'last.pt'} is kept")
        if self.cfg.val_clip is not None:
            pr = [float(q) for q in clip_probs(np.asarray(pr, np.float64), *self.cfg.val_clip)] if pr else pr
        out = evaluate(labels, pr) if idx else {"val_loss": math.nan}
        out["val_tubes"] = len(idx)
        out["bad_val"] = sum(g[2] for g in gathered)
        return out

    # ------------------------------------------------------------------------------------------------ run
    def fit(self) -> RunResult:
        """Run the remaining epochs; returns the final metrics."""
        cfg, env = self.cfg, self.env
        row: dict[str, Any] = {}
        while self.epoch < cfg.epochs:
            stats = self.train_epoch()
            val = self.validate()
            row = {"epoch": self.epoch, "step": self.global_step, "lr": self.scheduler.get_last_lr()[0], **stats,
                   **val, "bad_tubes": int(stats["bad_train"] + val["bad_val"])}
            self.scheduler.after_epoch(float(val["val_loss"]))
            improved = val["val_loss"] < self.best_val_loss
            if improved:
                self.best_val_loss = float(val["val_loss"])
            self.epoch, self.epoch_step = self.epoch + 1, 0
            clean = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in row.items()}
            self.save_last(self.epoch, 0, clean)
            if env.is_main:
                self.metrics.append(row)
                if improved:
                    save_train_checkpoint(self.run_dir / "best.pt", self.model, config=cfg.to_dict(), metrics=clean,
                                          epoch=self.epoch)
                    self.files_written += 1
                log.info("epoch %d/%d: train loss %.4f | val loss %.4f AUC %.3f acc %.3f (real %.3f, fake %.3f) | "
                         "%.1f clips/s | %d bad tubes%s", self.epoch, cfg.epochs, row["train_loss"],
                         row["val_loss"], row.get("val_auc", math.nan), row.get("val_acc", math.nan),
                         row.get("val_acc_real", math.nan), row.get("val_acc_fake", math.nan), row["clips_per_s"],
                         row["bad_tubes"], " | best" if improved else "")
            barrier(env)
        if self.epoch == cfg.epochs and self.global_step != self.total_steps and env.is_main:
            log.warning("the run took %d optimizer steps; the schedule was planned for %d", self.global_step,
                        self.total_steps)
        if env.distributed:
            # parameters and buffers (BatchNorm statistics): every float tensor a checkpoint holds
            checksum = sum(float(t.detach().double().sum()) for t in self.model.state_dict().values()
                           if t.is_floating_point())
            log.info("rank %d/%d: %d optimizer steps, %d clips, %d checkpoint files written, weight checksum %.12e"
                     ", rank seed %d", env.rank, env.world_size, self.global_step, self.clips_seen,
                     self.files_written, checksum, self.rank_seed)
        return RunResult(self.run_dir, row, self.best_val_loss, self.global_step, self.total_steps)


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def tube_scores(probs: Tensor, counts: list[int], how: str) -> Tensor:
    """``(sum K,)`` frame probabilities of consecutive tubes with ``counts`` frames -> ``(B,)`` tube scores by
    :func:`infer.reduce.reduce_probs` (``median``, ``mean``, ``max``, ``confident``); NaN for a non-finite tube."""
    out = []
    for chunk in torch.split(probs.float().cpu(), counts):
        c = chunk.numpy().astype(np.float64)
        out.append(reduce_probs(c, how) if np.isfinite(c).all() else math.nan)
    return torch.tensor(out, dtype=torch.float64)


def make_sampler(cfg: TrainConfig, train_set: TubeDataset, env: DistEnv) -> EpochSampler:
    """The epoch sampler of a run: :class:`EpochSampler` for whole-tube sampling as published for 3D, else a
    :class:`RecipeSampler` (frames per tube, every N-th frame, one tube per video, real/fake pairs)."""
    settings = PlanSettings(mode=cfg.sampling, frames_per_tube=cfg.frames_per_tube, frame_every=cfg.frame_every,
                            unit=cfg.sample_unit)
    if settings == PlanSettings(mode=cfg.sampling) and cfg.sampling != "paired":
        return EpochSampler(train_set.labels, mode=cfg.sampling, seed=cfg.seed, rank=env.rank,  # type: ignore
                            world_size=env.world_size)
    return RecipeSampler(TubeTable.from_records(train_set.records), settings, seed=cfg.seed, rank=env.rank,
                         world_size=env.world_size)


def _remove_failed_start(run_dir: Path) -> None:
    """Remove a run folder this start created, if it holds nothing but what the start wrote before failing."""
    leftovers = {"train.log", "split.csv", "config.yaml"}
    try:
        if run_dir.is_dir() and all(p.name in leftovers for p in run_dir.iterdir()):
            shutil.rmtree(run_dir)
    except OSError:
        pass


def _progress(*, total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)


def train(cfg: TrainConfig, *, resume: bool = False) -> RunResult:
    """Run (or resume) a training run in this process; joins the torchrun process group when there is one."""
    env = init_distributed(cfg.device)
    trainer: Optional[Trainer] = None
    try:
        trainer = Trainer(cfg, env, resume=resume)
        return trainer.fit()
    finally:
        if trainer is not None:
            trainer.close()
        shutdown_distributed()
