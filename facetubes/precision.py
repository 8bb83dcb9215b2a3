"""Float32 precision on CUDA: the TF32 switches, read and set in one place.

On Ampere and later GPUs (compute capability 8.0+) PyTorch may run float32 convolutions (cuDNN; on by default) and
matrix products (off by default) on TF32 tensor cores, which keep a 10-bit mantissa. That moves MTCNN boxes by up
to about 2 px against CPU and makes "float32" runs something else. facetubes' policy:

- face detection always runs in full float32 (:func:`full_fp32` around every ``detector.detect`` call), so boxes
  match CPU ones to float32 rounding;
- ``facetubes predict`` keeps TF32 off for the whole process: the detector thread and the models share these
  switches (they are process-wide, not per thread), and the models run in float16 autocast by default anyway;
- ``train3d`` / ``train2d`` turn TF32 on only with ``--tf32`` (off by default, so ``--amp none`` is float32).

The switches are :data:`torch.backends.cudnn.allow_tf32` and :data:`torch.backends.cuda.matmul.allow_tf32` (the
API of every torch this package supports). They can be set on a machine without CUDA, which is how the tests
check the policy.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

__all__ = ["tf32_state", "set_tf32", "tf32", "full_fp32"]

_lock = threading.Lock()


def tf32_state() -> dict[str, bool]:
    """``{"cudnn": bool, "matmul": bool}``: whether float32 convolutions / matrix products may use TF32."""
    return {"cudnn": bool(torch.backends.cudnn.allow_tf32), "matmul": bool(torch.backends.cuda.matmul.allow_tf32)}


def set_tf32(enabled: bool | dict[str, bool]) -> None:
    """Allow (True) or forbid (False) TF32 for both, or set each from a :func:`tf32_state` dict. Process-wide."""
    state = enabled if isinstance(enabled, dict) else {"cudnn": bool(enabled), "matmul": bool(enabled)}
    torch.backends.cudnn.allow_tf32 = bool(state["cudnn"])
    torch.backends.cuda.matmul.allow_tf32 = bool(state["matmul"])


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set both TF32 switches for the duration of the block, then restore what was there."""
    with _lock:
        before = tf32_state()
        set_tf32(enabled)
    try:
        yield
    finally:
        with _lock:
            set_tf32(before)


def full_fp32() -> contextlib.AbstractContextManager[None]:
    """TF32 off for the block: what face detection runs under (see the module docstring)."""
    return tf32(False)
