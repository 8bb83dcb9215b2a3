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


BF16_MIN_CAPABILITY = (8, 0)
"""bf16 tensor cores arrived with Ampere (sm80). Earlier GPUs (P100 sm60, V100 sm70, T4 / RTX 20xx / RTX Titan
sm75) can hold bf16 tensors, so ``torch.cuda.is_bf16_supported()`` says yes, but compute in them is emulated."""


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """``bf16`` / ``fp16`` / ``fp32`` (no autocast): what checkpoints and logs record."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore[arg-type]


def choose_amp(spec: str, device: torch.device) -> tuple[Optional[torch.dtype], str]:
    """Autocast dtype for ``--amp spec`` on ``device``, and why, in words for the run log.

    ``auto``: bf16 on CUDA GPUs of compute capability 8.0 or more (bf16 tensor cores), fp16 with a GradScaler on
    older ones, none on CPU. The choice reads ``torch.cuda.get_device_capability`` (never
    ``is_bf16_supported()``, which also says yes where bf16 is only emulated). ``fp16`` needs CUDA.
    """
    if spec == "none":
        return None, "--amp none: float32"
    if device.type != "cuda":
        if spec == "auto":
            return None, f"auto: no mixed precision on {device.type}"
        if spec == "fp16":
            raise ConfigError("--amp fp16 needs a CUDA device (use bf16 or none on CPU)")
        return torch.bfloat16, "--amp bf16"
    cap = tuple(torch.cuda.get_device_capability(device))
    sm = f"sm{cap[0]}{cap[1]}"
    native = cap >= BF16_MIN_CAPABILITY
    if spec == "auto":
        if native:
            return torch.bfloat16, f"auto: {sm} has bf16 tensor cores"
        return torch.float16, f"auto: {sm} has no bf16 tensor cores (sm80+), fp16 with a GradScaler"
    if spec == "bf16":
        return torch.bfloat16, "--amp bf16" + ("" if native else f" (slow: {sm} has no bf16 tensor cores)")
    return torch.float16, "--amp fp16 with a GradScaler"


def resolve_amp(spec: str, device: torch.device) -> Optional[torch.dtype]:
    """The dtype of :func:`choose_amp` (None: no autocast)."""
    return choose_amp(spec, device)[0]


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


def broadcast_buffers(module: torch.nn.Module, env: DistEnv, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank, in place (no-op when alone).

    Without SyncBatchNorm each DDP rank ends an epoch with its own running statistics; rank 0's are the ones
    saved, so every rank must validate with them."""
    if not env.distributed:
        return
    with torch.no_grad():
        for buf in module.buffers():
            dist.broadcast(buf, src)


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


def rank_seed(seed: int, rank: int) -> int:
    """A distinct 63-bit seed per DDP rank, drawn after model initialisation (which stays identical on every rank),
    so that ranks do not draw identical dropout masks. A single-process run does not reseed."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(rank), 0xD50]).generate_state(2, np.uint64)[0] >> 1)


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
