"""A fast MTCNN runner over facenet-pytorch's trained P-, R- and O-Nets.

facenet-pytorch's ``detect_face`` is slow on CPU mostly for reasons outside the networks: every candidate box is
cropped and resized with ``F.interpolate(mode="area")`` in a Python loop before R-Net and O-Net, max-pooling runs
on NCHW tensors (a slow CPU kernel), and the final "Min" NMS is a numpy loop. :class:`FastMTCNN` runs the same
algorithm with the same weights and aims at the same detections:

- **Pyramid.** Scales ``12/min_face * factor^k`` while the short side stays >= 12 px, level size
  ``int(h*s + 1) x int(w*s + 1)``, area-resampled from the full frame like facenet, but computed from an integer
  summed-area table of the frame (two row and two column gathers per level: exact box sums) instead of
  ``F.interpolate(mode="area")`` (a slow adaptive-average-pooling kernel). ``pyramid="bilinear"`` (antialiased
  bilinear) exists for comparison only: it is not faster on CPU and moves boxes (IoU with facenet's down to ~0.7).
- **Crops.** facenet cuts the integer box ``[max(trunc(x1), 1) - 1, min(trunc(x2), w))`` (same for y), i.e. the box
  *clipped* to the frame -- parts outside the frame are dropped and the clipped region is stretched, not zero
  padded as in the original MTCNN -- and area-resizes it to 24x24 / 48x48. Area resizing is adaptive average
  pooling: output cell ``i`` of ``n -> s`` averages input ``[floor(i n / s), ceil((i + 1) n / s))``. Here every cell
  of every crop is read from the same summed-area table in one vectorised gather (four corners per cell), so the
  crops equal facenet's up to float rounding, with no Python loop over boxes. (A box whose clipped crop is empty is
  dropped; facenet would skip it and misalign its outputs.)
- **Networks.** The trained weights, re-arranged once: the ``(x - 127.5) * 0.0078125`` input normalisation is folded
  into each first convolution, the 2-way softmax becomes ``sigmoid(l1 - l0)`` (one output instead of two), the
  classification and regression heads are one layer, the flatten permutation of R-/O-Net's dense layer is folded
  into its weight. Ceil-mode max-pools are elementwise maxima of strided views (exact, several times faster than
  the CPU max-pool kernels). Channels-last memory on CPU (oneDNN convolutions).
- **NMS.** ``torchvision.ops.batched_nms`` per (frame, scale) at 0.5 and per frame at 0.7 after P-Net and R-Net, as
  facenet; the final per-frame "Min" NMS (overlap = intersection / smaller area, ``+1`` pixel areas) is an exact
  greedy NMS computed by fixed-point iteration on the overlap matrix (Cluster-NMS), with no loop over boxes.

Because the convolutions sum in a different order, scores differ from facenet's by ~1e-6; very rarely that moves a
box corner across an integer crop boundary and the final box shifts by a pixel or two (1 box in 54 in a randomised
check, IoU 0.97); otherwise boxes agree to ~1e-4 px.

Works on CPU and CUDA and on a batch of frames of one size ``(N, H, W, 3)`` uint8 (numpy or tensor).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from .errors import ConfigError


def torch_device(device: Union[str, torch.device]) -> torch.device:
    """``torch.device(device)``, or a one-line :class:`ConfigError` for a bad name or CUDA without a GPU."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"invalid device {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev

__all__ = ["FastMTCNN", "pyramid_scales", "summed_area_table", "area_resize", "area_crops", "min_nms"]

_MEAN = 127.5
_STD_INV = 0.0078125
_PNET_STRIDE = 2
_PNET_CELL = 12


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """facenet's P-Net scales: ``12 / min_face_size * factor^k`` while the scaled short side is >= 12 pixels."""
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scales = []
    s = m
    while minl >= 12:
        scales.append(s)
        s = s * factor
        minl = minl * factor
    return scales


def _bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pooling bins of ``length`` input pixels onto ``size`` cells, offset by ``start``.

    Returns ``(lo, hi)`` of shape ``(K, size)``: cell ``i`` averages input ``[lo, hi)``."""
    i = torch.arange(size, device=start.device, dtype=start.dtype)
    lo = start[:, None] + (i[None, :] * length[:, None]) // size
    hi = start[:, None] + ((i[None, :] + 1) * length[:, None] + size - 1) // size
    return lo, hi


def summed_area_table(frames_nhwc: torch.Tensor, *, use_numpy: Optional[bool] = None) -> torch.Tensor:
    """Integer summed-area table ``(N, H + 1, W + 1, C)``: ``sat[n, y, x] = frames[n, :y, :x].sum((0, 1))``.

    int32 while ``255 * H * W`` fits (any frame up to 8 Mpixel), else int64: sums and differences are exact. On CPU
    numpy's cumulative sums are used (torch's integer cumsum over a non-last dimension is several times slower)."""
    n, h, w, c = frames_nhwc.shape
    dtype = torch.int32 if 255 * h * w < 2**31 else torch.int64
    if use_numpy is None:
        use_numpy = frames_nhwc.device.type == "cpu"
    if use_numpy:
        sat = torch.zeros(n, h + 1, w + 1, c, dtype=dtype)
        inner = sat.numpy()[:, 1:, 1:]
        np.cumsum(frames_nhwc.numpy(), axis=2, dtype=inner.dtype, out=inner)  # this order is ~2x faster
        np.cumsum(inner, axis=1, out=inner)
        return sat
    sat = frames_nhwc.cumsum(2, dtype=dtype).cumsum(1, dtype=dtype)
    return F.pad(sat, (0, 0, 1, 0, 1, 0))


def area_resize(sat: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Whole frames area-resized (= ``F.interpolate(mode="area")``, exactly) to ``height x width`` from their
    summed-area table: float32 ``(N, C, height, width)`` (channels-last memory), values 0..255."""
    n, h1, w1, c = sat.shape
    zero = torch.zeros(1, dtype=torch.long, device=sat.device)
    ylo, yhi = _bins(zero, zero + (h1 - 1), height)
    xlo, xhi = _bins(zero, zero + (w1 - 1), width)
    ylo, yhi, xlo, xhi = ylo[0], yhi[0], xlo[0], xhi[0]
    rows = sat.index_select(1, yhi) - sat.index_select(1, ylo)  # (N, height, W + 1, C)
    total = rows.index_select(2, xhi) - rows.index_select(2, xlo)  # (N, height, width, C)
    count = ((yhi - ylo)[:, None] * (xhi - xlo)[None, :]).to(torch.float32)
    return (total.to(torch.float32) / count[:, :, None]).permute(0, 3, 1, 2)


def area_crops(sat: torch.Tensor, image_idx: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
               cols: tuple[torch.Tensor, torch.Tensor], size: Union[int, tuple[int, int]]) -> torch.Tensor:
    """Area-resize (= ``F.interpolate(mode="area")``) the crops ``[r0, r1) x [c0, c1)`` of frames ``image_idx``.

    ``sat`` from :func:`summed_area_table`; ``rows``/``cols`` are ``(start, stop)`` int64 tensors ``(K,)`` with
    ``stop > start`` inside the frame. Returns float32 ``(K, C, sh, sw)`` (channels-last memory), values 0..255.
    """
    sh, sw = (size, size) if isinstance(size, int) else size
    n, h1, w1, c = sat.shape
    k = image_idx.shape[0]
    ylo, yhi = _bins(rows[0], rows[1] - rows[0], sh)
    xlo, xhi = _bins(cols[0], cols[1] - cols[0], sw)
    # the four corners of every cell, one gather: (K, 2 rows, 2 cols, sh, sw) flat indices into sat
    itype = torch.int32 if n * h1 * w1 < 2**31 else torch.int64  # int32 indices: half the index traffic
    ry = (torch.stack([yhi, ylo], 1) * w1 + (image_idx.long() * (h1 * w1))[:, None, None]).to(itype)
    cx = torch.stack([xhi, xlo], 1).to(itype)
    corner = sat.view(-1, c).index_select(0, (ry[:, :, None, :, None] + cx[:, None, :, None, :]).view(-1))
    v = corner.view(k, 2, 2, sh, sw, c)
    total = (v[:, 0, 0] - v[:, 1, 0]) - (v[:, 0, 1] - v[:, 1, 1])  # exact integer box sums
    count = ((yhi - ylo)[:, :, None] * (xhi - xlo)[:, None, :]).to(torch.float32)
    return (total.to(torch.float32) / count[..., None]).permute(0, 3, 1, 2)


def min_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS within each group with overlap = intersection / smaller area (``+1`` pixel convention),
    suppressing overlaps ``> threshold``; returns kept indices by decreasing score (facenet's final "Min" NMS).

    Computed without a loop over boxes: the greedy result is the fixed point of
    ``keep[i] = not any(keep[j] and overlap[j, i] > t for j ranked before i)`` (Cluster-NMS), reached in a few
    iterations (at most the length of the longest suppression chain)."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True)
    b = boxes[order]
    g = groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    overlap = iw * ih / torch.minimum(area[:, None], area[None, :])
    k = b.shape[0]
    ranked_before = torch.ones(k, k, dtype=torch.bool, device=b.device).triu(1)  # [j, i]: j before i
    suppresses = (overlap > threshold) & ranked_before & (g[:, None] == g[None, :])
    keep = torch.ones(k, dtype=torch.bool, device=b.device)
    for _ in range(k):
        new = ~(suppresses & keep[:, None]).any(0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def _maxpool_ceil(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """``max_pool2d(x, k, s, ceil_mode=True)`` (no padding) as strided elementwise maxima, rows then columns.

    Exact (max is exact), any memory layout, and several times faster than the CPU max-pool kernels here."""
    for dim in (2, 3):
        n = x.shape[dim]
        o = -(-(n - k) // s) + 1
        if (o - 1) * s >= n:  # the last window must start inside the input
            o -= 1
        out = x.narrow(dim, 0, (o - 1) * s + 1)[(slice(None),) * dim + (slice(None, None, s),)].clone()
        for j in range(1, k):
            m = min(o, (n - 1 - j) // s + 1)  # windows whose j-th element exists (ceil mode truncates the last)
            src = x.narrow(dim, j, (m - 1) * s + 1)[(slice(None),) * dim + (slice(None, None, s),)]
            dst = out.narrow(dim, 0, m)
            torch.maximum(dst, src, out=dst)
        x = out
    return x


class _Nets:
    """The three networks' weights, re-arranged for inference (see the module docstring)."""

    def __init__(self, pnet: torch.nn.Module, rnet: torch.nn.Module, onet: torch.nn.Module,
                 device: torch.device) -> None:
        def t(p: torch.Tensor) -> torch.Tensor:
            return p.detach().to(device=device, dtype=torch.float32).clone()

        def first_conv(conv: torch.nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
            # conv((x - 127.5) * s) = conv_{W s}(x) + b - 127.5 s sum(W)
            w, b = conv.weight.detach().double(), conv.bias.detach().double()
            return t(w * _STD_INV), t(b - _MEAN * _STD_INV * w.sum(dim=(1, 2, 3)))

        def head(cls: torch.nn.Module, *others: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
            # softmax([l0, l1])[1] = sigmoid(l1 - l0): one output for the class, then the other heads
            w = [cls.weight[1:2] - cls.weight[0:1]] + [o.weight for o in others]
            b = [cls.bias[1:2] - cls.bias[0:1]] + [o.bias for o in others]
            return t(torch.cat(w)), t(torch.cat(b))

        def dense(lin: torch.nn.Linear, c: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
            # facenet flattens x.permute(0, 3, 2, 1) (W, H, C order); we flatten NHWC (H, W, C order)
            wt = lin.weight.detach().reshape(-1, w, h, c).permute(0, 2, 1, 3).reshape(lin.weight.shape[0], -1)
            return t(wt), t(lin.bias)

        p, r, o = pnet, rnet, onet
        self.p_conv1 = first_conv(p.conv1)
        self.p_conv2 = (t(p.conv2.weight), t(p.conv2.bias))
        self.p_conv3 = (t(p.conv3.weight), t(p.conv3.bias))
        self.p_prelu = (t(p.prelu1.weight), t(p.prelu2.weight), t(p.prelu3.weight))
        hw, hb = head(p.conv4_1, p.conv4_2)
        self.p_head = (hw.flatten(1), hb)  # 1x1 conv as a linear layer: class logit difference, 4 box offsets

        self.r_conv1 = first_conv(r.conv1)
        self.r_conv2 = (t(r.conv2.weight), t(r.conv2.bias))
        self.r_conv3 = (t(r.conv3.weight), t(r.conv3.bias))
        self.r_prelu = (t(r.prelu1.weight), t(r.prelu2.weight), t(r.prelu3.weight), t(r.prelu4.weight))
        self.r_dense = dense(r.dense4, 64, 3, 3)
        self.r_head = head(r.dense5_1, r.dense5_2)

        self.o_conv1 = first_conv(o.conv1)
        self.o_conv2 = (t(o.conv2.weight), t(o.conv2.bias))
        self.o_conv3 = (t(o.conv3.weight), t(o.conv3.bias))
        self.o_conv4 = (t(o.conv4.weight), t(o.conv4.bias))
        self.o_prelu = (t(o.prelu1.weight), t(o.prelu2.weight), t(o.prelu3.weight), t(o.prelu4.weight),
                        t(o.prelu5.weight))
        self.o_dense = dense(o.dense5, 128, 3, 3)
        self.o_head = head(o.dense6_1, o.dense6_2, o.dense6_3)

    def pnet(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, h, w) float 0..255 -> (N, h', w', 5): class logit difference, 4 box offsets."""
        a1, a2, a3 = self.p_prelu
        x = F.prelu(F.conv2d(x, *self.p_conv1), a1)
        x = _maxpool_ceil(x, 2, 2)
        x = F.prelu(F.conv2d(x, *self.p_conv2), a2)
        x = F.prelu(F.conv2d(x, *self.p_conv3), a3)
        return F.linear(x.permute(0, 2, 3, 1), *self.p_head)

    def rnet(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, 3, 24, 24) float 0..255 -> (K, 5): class logit difference, 4 box offsets."""
        a1, a2, a3, a4 = self.r_prelu
        x = F.prelu(F.conv2d(x, *self.r_conv1), a1)
        x = _maxpool_ceil(x, 3, 2)
        x = F.prelu(F.conv2d(x, *self.r_conv2), a2)
        x = _maxpool_ceil(x, 3, 2)
        x = F.prelu(F.conv2d(x, *self.r_conv3), a3)
        x = F.prelu(F.linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1), *self.r_dense), a4)
        return F.linear(x, *self.r_head)

    def onet(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, 3, 48, 48) float 0..255 -> (K, 15): class logit difference, 4 box offsets, 10 landmarks."""
        a1, a2, a3, a4, a5 = self.o_prelu
        x = F.prelu(F.conv2d(x, *self.o_conv1), a1)
        x = _maxpool_ceil(x, 3, 2)
        x = F.prelu(F.conv2d(x, *self.o_conv2), a2)
        x = _maxpool_ceil(x, 3, 2)
        x = F.prelu(F.conv2d(x, *self.o_conv3), a3)
        x = _maxpool_ceil(x, 2, 2)
        x = F.prelu(F.conv2d(x, *self.o_conv4), a4)
        x = F.prelu(F.linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1), *self.o_dense), a5)
        return F.linear(x, *self.o_head)


def _rerec(b: torch.Tensor) -> torch.Tensor:
    """Square boxes ``(K, 4)`` around their centres with side ``max(w, h)`` (no +1, as facenet)."""
    h = b[:, 3] - b[:, 1]
    w = b[:, 2] - b[:, 0]
    side = torch.maximum(w, h)
    x1 = b[:, 0] + w * 0.5 - side * 0.5
    y1 = b[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _bbreg(b: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply box offsets relative to ``+1`` pixel widths (R-Net and O-Net)."""
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    return torch.stack([b[:, 0] + reg[:, 0] * w, b[:, 1] + reg[:, 1] * h,
                        b[:, 2] + reg[:, 2] * w, b[:, 3] + reg[:, 3] * h], dim=1)


def _crop_ranges(b: torch.Tensor, w: int, h: int) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                              tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """facenet's crop of a float box: rows ``[max(trunc(y1), 1) - 1, min(trunc(y2), h))``, same for columns.
    Returns (rows, cols, valid) where valid marks non-empty crops."""
    bi = b.trunc().long()
    c0 = bi[:, 0].clamp(min=1) - 1
    r0 = bi[:, 1].clamp(min=1) - 1
    c1 = bi[:, 2].clamp(max=w)
    r1 = bi[:, 3].clamp(max=h)
    valid = (c1 > c0) & (r1 > r0)
    return (r0, r1), (c0, c1), valid


class FastMTCNN:
    """MTCNN face detector with facenet-pytorch's weights, vectorised (see the module docstring).

    ``detect(frames)`` takes ``(N, H, W, 3)`` uint8 RGB (numpy or tensor; one frame ``(H, W, 3)`` also accepted) and
    returns one ``(boxes (k, 4) float32 x1 y1 x2 y2, probs (k,) float32)`` pair per frame, boxes by decreasing
    probability, in the frames' pixels (the :class:`facetubes.detect.Detector` contract); boxes may extend past the
    frame. ``thresholds`` (P-, R-, O-Net) may be changed between calls.

    ``pyramid``: ``"area"`` (default) resamples the pyramid exactly like facenet; ``"bilinear"`` uses antialiased
    bilinear interpolation (not faster on CPU, slightly different candidates; kept for comparison).
    ``chunk_bytes`` bounds the largest intermediate tensors: frames go through the three stages in groups and crops
    through R-/O-Net in chunks of about that size (default 4 MiB on CPU, where big blocks often come from fresh,
    page-faulting ``mmap`` memory on every call and small batches stay in cache; 1 GiB on CUDA). So a batch costs
    about the same per frame as single frames on CPU. ``channels_last`` defaults to True on CPU (oneDNN convolutions).
    ``mtcnn``: an existing ``facenet_pytorch.MTCNN`` whose ``pnet``/``rnet``/``onet`` weights to use.
    """

    name = "mtcnn"

    def __init__(self, device: Union[str, torch.device] = "cpu", min_face_size: float = 20.0,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709, *,
                 pyramid: str = "area", channels_last: Optional[bool] = None, chunk_bytes: Optional[int] = None,
                 mtcnn: Optional[torch.nn.Module] = None) -> None:
        self.device = torch_device(device)
        if pyramid not in ("area", "bilinear"):
            raise ConfigError(f"pyramid must be 'area' or 'bilinear', got {pyramid!r}")
        if not min_face_size > 0 or not 0 < factor < 1:
            raise ConfigError(f"need min_face_size > 0 and 0 < factor < 1, got {min_face_size}, {factor}")
        if len(thresholds) != 3:
            raise ConfigError(f"need 3 thresholds (P-, R-, O-Net), got {thresholds!r}")
        if mtcnn is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as e:  # pragma: no cover - install problem
                raise ConfigError(f"facenet-pytorch is not installed ({e}); run `make install`") from None
            mtcnn = MTCNN(keep_all=True, post_process=False, device="cpu").eval()
        cpu = self.device.type == "cpu"
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.pyramid = pyramid
        self.channels_last = cpu if channels_last is None else bool(channels_last)
        self.chunk_bytes = int(chunk_bytes) if chunk_bytes else (4 << 20 if cpu else 1 << 30)
        self.nets = _Nets(mtcnn.pnet, mtcnn.rnet, mtcnn.onet, self.device)

    # -- public API ---------------------------------------------------------------------------------------------

    def detect(self, frames) -> list[tuple[np.ndarray, np.ndarray]]:
        """Faces in each frame: ``[(boxes (k, 4) float32, probs (k,) float32), ...]``."""
        return [(b, p) for b, p, _ in self.detect_landmarks(frames)]

    def detect_landmarks(self, frames) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Like :meth:`detect`, plus five landmarks per face ``(k, 5, 2)`` float32 (x, y): eyes, nose, mouth."""
        x = self._as_tensor(frames)
        n, h, w, _ = x.shape
        if n == 0:
            return []
        scales = pyramid_scales(h, w, self.min_face_size, self.factor)
        # frames per group: the group's P-Net first-layer output (10 ch at the first scale) and summed-area table
        per_frame = h * w * max(40.0 * scales[0] ** 2 if scales else 0.0, 12.0)
        group = max(1, int(self.chunk_bytes // per_frame))
        out = []
        with torch.inference_mode():
            for start in range(0, n, group):
                chunk = x[start:start + group]
                boxes, probs, points, idx = self._run(chunk, scales)
                counts = torch.bincount(idx, minlength=len(chunk)).tolist()
                boxes, probs, points = boxes.cpu().numpy(), probs.cpu().numpy(), points.cpu().numpy()
                i = 0
                for c in counts:  # rows are grouped by frame, by decreasing probability within a frame
                    out.append((boxes[i:i + c].copy(), probs[i:i + c].copy(), points[i:i + c].copy()))
                    i += c
        return out

    __call__ = detect

    # -- internals ----------------------------------------------------------------------------------------------

    def _as_tensor(self, frames) -> torch.Tensor:
        if isinstance(frames, np.ndarray):
            frames = np.ascontiguousarray(frames)
            x = torch.from_numpy(frames if frames.flags.writeable else frames.copy())
        elif isinstance(frames, torch.Tensor):
            x = frames
        else:
            raise TypeError(f"frames must be a numpy array or a tensor, got {type(frames).__name__}")
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected frames (N, H, W, 3), got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames, got {x.dtype}")
        return x.to(self.device)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def _run(self, frames: torch.Tensor, scales: list[float]):
        """All three stages on a group of frames. Returns boxes (K, 4), probs (K,), points (K, 5, 2) and the frame
        index in the group (K,), sorted by frame, then by decreasing probability."""
        dev = self.device
        n, h, w, _ = frames.shape
        t1, t2, t3 = self.thresholds
        empty = (torch.zeros(0, 4, device=dev), torch.zeros(0, device=dev), torch.zeros(0, 5, 2, device=dev),
                 torch.zeros(0, dtype=torch.long, device=dev))
        sat = summed_area_table(frames)

        # Stage 1: P-Net over the pyramid; a candidate per output cell with p >= t1.
        img = frames.permute(0, 3, 1, 2).float() if self.pyramid == "bilinear" else None
        cand, cand_img, cand_grp = [], [], []
        for li, s in enumerate(scales):
            size = (int(h * s + 1), int(w * s + 1))
            if img is None:
                level = area_resize(sat, *size)
            else:
                level = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
            out = self.nets.pnet(self._layout(level))  # (N, h', w', 5)
            prob = torch.sigmoid(out[..., 0])
            idx = (prob >= t1).nonzero()  # (P, 3): frame, row, col
            if idx.shape[0] == 0:
                continue
            fi, yy, xx = idx.unbind(1)
            reg = out[fi, yy, xx, 1:5]  # (P, 4)
            cell = torch.stack([xx, yy], dim=1).to(torch.float32)
            q1 = ((_PNET_STRIDE * cell + 1) / s).floor()
            q2 = ((_PNET_STRIDE * cell + _PNET_CELL - 1 + 1) / s).floor()
            cand.append(torch.cat([q1, q2, prob[fi, yy, xx][:, None], reg], dim=1))
            cand_img.append(fi)
            cand_grp.append(fi * len(scales) + li)
        if not cand:
            return empty
        c = torch.cat(cand)
        ci = torch.cat(cand_img)
        keep = batched_nms(c[:, :4], c[:, 4], torch.cat(cand_grp), 0.5)  # per frame and scale
        c, ci = c[keep], ci[keep]
        keep = batched_nms(c[:, :4], c[:, 4], ci, 0.7)  # per frame, across scales
        c, ci = c[keep], ci[keep]
        bw = c[:, 2] - c[:, 0]
        bh = c[:, 3] - c[:, 1]
        boxes = _rerec(torch.stack([c[:, 0] + c[:, 5] * bw, c[:, 1] + c[:, 6] * bh,
                                    c[:, 2] + c[:, 7] * bw, c[:, 3] + c[:, 8] * bh], dim=1))

        # Stage 2: R-Net on 24x24 area crops; p > t2, NMS, box regression, squaring.
        boxes, ci, out = self._crops_through(self.nets.rnet, sat, boxes, ci, 24, 28 * 22 * 22 * 4)
        score = torch.sigmoid(out[:, 0])
        ok = score > t2
        boxes, score, ci, reg = boxes[ok], score[ok], ci[ok], out[ok, 1:5]
        keep = batched_nms(boxes, score, ci, 0.7)
        boxes = _rerec(_bbreg(boxes[keep], reg[keep]))
        ci = ci[keep]
        if boxes.shape[0] == 0:
            return empty

        # Stage 3: O-Net on 48x48 area crops; p > t3, landmarks, box regression, "Min" NMS.
        boxes, ci, out = self._crops_through(self.nets.onet, sat, boxes, ci, 48, 32 * 46 * 46 * 4)
        score = torch.sigmoid(out[:, 0])
        ok = score > t3
        boxes, score, ci, reg, lm = boxes[ok], score[ok], ci[ok], out[ok, 1:5], out[ok, 5:15]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([bw * lm[:, :5] + boxes[:, 0:1] - 1, bh * lm[:, 5:] + boxes[:, 1:2] - 1], dim=2)
        boxes = _bbreg(boxes, reg)
        keep = min_nms(boxes, score, ci, 0.7)  # by decreasing score
        boxes, score, ci, points = boxes[keep], score[keep], ci[keep], points[keep]
        order = torch.sort(ci, stable=True).indices  # group by frame, keeping the score order
        return boxes[order], score[order], points[order], ci[order]

    def _crops_through(self, net, sat: torch.Tensor, boxes: torch.Tensor, image_idx: torch.Tensor, size: int,
                       bytes_per_box: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """facenet's crops of ``boxes`` (dropping empty ones), area-resized to ``size`` and run through ``net`` in
        chunks. Returns the kept boxes, their frame indices and the network outputs."""
        rows, cols, valid = _crop_ranges(boxes, sat.shape[2] - 1, sat.shape[1] - 1)
        if not bool(valid.all()):
            boxes, image_idx = boxes[valid], image_idx[valid]
            rows, cols = (rows[0][valid], rows[1][valid]), (cols[0][valid], cols[1][valid])
        k = boxes.shape[0]
        chunk = max(1, self.chunk_bytes // bytes_per_box)
        outs = []
        for s in range(0, k, chunk):
            e = min(k, s + chunk)
            crops = area_crops(sat, image_idx[s:e], (rows[0][s:e], rows[1][s:e]), (cols[0][s:e], cols[1][s:e]),
                               size)
            outs.append(net(self._layout(crops)))
        out = torch.cat(outs) if outs else torch.zeros(0, 15, device=self.device)
        return boxes, image_idx, out
