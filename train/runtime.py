"""Process-level plumbing: torchrun / DDP set-up, device and precision choice, RNG state, checkpoint files.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins the default process group (NCCL on CUDA, gloo on CPU),
takes GPU ``LOCAL_RANK`` and a disjoint shard of each epoch. Rank 0 alone writes files.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from facetubes.errors import ConfigError

from .errors import TrainError


@dataclass
class DistEnv:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_hint: str) -> DistEnv:
    """Join the process group when launched by torchrun; otherwise a single-process environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_hint != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)  # before any NCCL collective, so each process talks from its own GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank, world, local)


def shutdown_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(spec: str, env: DistEnv) -> torch.device:
    """``auto`` -> the rank's GPU if CUDA is available, else CPU; explicit ``cuda`` without CUDA is an error."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine")
        if env.distributed or device.index is None:
            device = torch.device("cuda", env.local_rank if env.distributed else torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def resolve_amp(spec: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: ``auto`` -> bf16 on CUDA that supports it, else fp16 on CUDA, else none (CPU)."""
    if spec == "none":
        return None
    if spec == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device (use bf16 or none on CPU)")
    return torch.bfloat16 if spec == "bf16" else torch.float16


def all_reduce_sum(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (identity when not distributed)."""
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


# ----------------------------------------------------------------------------------------------------------------
# RNG state (plain types only, so checkpoints load with weights_only=True)


def rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global), torch CPU and CUDA generator states."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (CUDA states are restored when present and CUDA is in use)."""
    py = state["python"]
    random.setstate((int(py[-1]), tuple(int(v) for v in py[:-1]), state.get("python_gauss")))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------
# checkpoint files


def save_train_checkpoint(path: Path, model: torch.nn.Module, **extra: Any) -> Path:
    """Write a facetubes checkpoint atomically (``models3d.save_checkpoint``) after checking the weights are finite.

    A model with NaN/inf parameters is never written, so the previous file stays the last good checkpoint.
    """
    from models3d import save_checkpoint

    for name, p in model.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise TrainError(f"parameter {name} is not finite; not overwriting {path} (the last good checkpoint)")
    return save_checkpoint(path, model, **extra)


def load_train_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by a training run (``weights_only=True``)."""
    from models3d import WeightsError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except WeightsError as e:
        raise TrainError(str(e)) from None
    if "train" not in ckpt:
        raise TrainError(f"{path}: a model checkpoint without training state (cannot resume from it)")
    return ckpt
