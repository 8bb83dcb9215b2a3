"""Synthetic test videos built from a real face photo, with exact ground truth; manipulated "fakes"; bad inputs.

The face is the astronaut portrait that ships with scikit-image (``skimage.data.astronaut()``, public domain).
"Identities" are deterministic transformations of it (mirror, hue, saturation, gamma, colour gains, aspect)
indexed by an int, so any number of different-looking people can be made. Heads (soft elliptical cut-outs)
move over panning backgrounds (gradients, smooth noise, other scikit-image photos without faces). Ground-truth
boxes are the face box a detector such as MTCNN reports, in upright pixels, for every frame.

A fake (``fake=True`` or a :class:`FakeSpec`) blends another identity's face, warped, blurred and colour-shifted,
into the inner face region through a soft mask whose size and opacity flicker from frame to frame. Everything
else (identities, background, motion) is drawn from the same random stream as the real video with the same
seed, so a fake differs from its real original only inside the face boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image

from .video import PathLike, VideoWriter, rotate_array

__all__ = [
    "SCENARIOS", "BACKGROUNDS", "FakeSpec", "GroundTruth", "render", "make_video", "make_dataset", "make_bad_inputs",
    "BAD_INPUT_REASONS", "face_template",
]

SCENARIOS = ("one", "two", "crossing", "enter_leave", "edge", "none")
"""``one`` a face wandering; ``two`` two people side by side; ``crossing`` two people crossing paths (the second
passes in front, faces overlap mid-video); ``enter_leave`` p0 all along, p1 visible only for
``[round(0.3 n), round(0.7 n))``; ``edge`` a face sliding partly out of the left edge; ``none`` no face."""

BACKGROUNDS = ("gradient", "noise", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel")

# Geometry of the head cut-out in astronaut() pixels: rows/cols of the template, the ellipse of the soft mask,
# and the face box MTCNN reports on the photo (prob 0.99999).
_TEMPLATE_ROWS, _TEMPLATE_COLS = (8, 209), (146, 303)
_ELLIPSE_CENTER, _ELLIPSE_AXES = (224.0, 108.0), (76.0, 100.0)
_PHOTO_FACE_BOX = (181.0, 62.0, 268.0, 172.0)
_T_H = _TEMPLATE_ROWS[1] - _TEMPLATE_ROWS[0]
_T_W = _TEMPLATE_COLS[1] - _TEMPLATE_COLS[0]
_FACE_H = _PHOTO_FACE_BOX[3] - _PHOTO_FACE_BOX[1]


@lru_cache(maxsize=128)
def face_template(identity: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head of ``identity`` at photo scale: ``(rgb float32 (h, w, 3) 0..255, alpha float32 (h, w),
    face_box float64 (4,) x1, y1, x2, y2 in template pixels)``. Identity 0 is the unmodified photo;
    odd identities are mirrored; the others get deterministic hue/saturation/gamma/gain/aspect changes."""
    from skimage import color, data

    y0, y1 = _TEMPLATE_ROWS
    x0, x1 = _TEMPLATE_COLS
    rgb = data.astronaut()[y0:y1, x0:x1].astype(np.float32)
    yy, xx = np.mgrid[0:_T_H, 0:_T_W].astype(np.float32) + 0.5
    r = np.hypot((xx + x0 - _ELLIPSE_CENTER[0]) / _ELLIPSE_AXES[0], (yy + y0 - _ELLIPSE_CENTER[1]) / _ELLIPSE_AXES[1])
    alpha = np.clip((1.0 - r) / 0.12, 0.0, 1.0).astype(np.float32)
    box = np.array(_PHOTO_FACE_BOX, dtype=np.float64) - [x0, y0, x0, y0]
    aspect = 1.0
    if identity:
        rng = np.random.default_rng([int(identity), 7919])
        hsv = color.rgb2hsv(rgb / 255.0)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.035, 0.035)) % 1.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.3), 0, 1)
        out = color.hsv2rgb(hsv) ** rng.uniform(0.75, 1.35) * rng.uniform(0.88, 1.08, size=3)
        rgb = np.clip(out * 255.0, 0, 255).astype(np.float32)
        aspect = float(rng.uniform(0.9, 1.12))
    if identity % 2:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        box = np.array([_T_W - box[2], box[1], _T_W - box[0], box[3]])
    if aspect != 1.0:
        w = round(_T_W * aspect)
        rgb = _resize(rgb, w, _T_H)
        alpha = _resize(alpha, w, _T_H)
        box = box * [w / _T_W, 1, w / _T_W, 1]
    return _frozen(np.ascontiguousarray(rgb), np.ascontiguousarray(alpha), box)


@lru_cache(maxsize=256)
def _scaled_head(identity: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb, alpha, box = face_template(identity)
    h0, w0 = alpha.shape
    width = max(2, round(w0 * height / h0))
    s = np.array([width / w0, height / h0, width / w0, height / h0])
    return _frozen(_resize(rgb, width, height), _resize(alpha, width, height), box * s)


def _frozen(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make cached arrays read-only: callers must not change them."""
    for x in (a, b, c):
        x.setflags(write=False)
    return a, b, c


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float32 (h, w) or (h, w, 3) array with PIL (antialiased when shrinking)."""
    if arr.ndim == 2:
        img = Image.fromarray(arr.astype(np.float32))
        return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))
    chans = [_resize(arr[..., c], width, height) for c in range(arr.shape[2])]
    return np.stack(chans, axis=-1)


@dataclass(frozen=True)
class FakeSpec:
    """How a face is manipulated. Defaults give a clearly visible but plausible blend."""

    donor: Optional[int] = None
    """Identity whose face is blended in; None: ``identity + 1 + 2 * (seed % 5)`` (the opposite mirror)."""
    opacity: float = 0.85
    """Mean opacity of the blended face at the mask centre."""
    flicker: float = 1.0
    """0..1: frame-to-frame jitter of mask size (up to +-25 %) and opacity (up to +-30 %)."""
    color_shift: float = 0.10
    """Colour mismatch: a constant RGB offset of this fraction of 255 (in a random direction) on the donor."""
    warp: float = 0.06
    """The donor face is scaled by ``1 + warp`` about the face centre, so features do not line up."""
    resolution: float = 0.5
    """The donor is rendered at this fraction of the resolution then upsampled (the typical blur)."""
    persons: Optional[tuple[str, ...]] = None
    """Which people (``"p0"``, ``"p1"``) are manipulated; None: all."""
    seed: int = 0
    """Random stream of the manipulation only (different fakes of the same real video)."""


@dataclass
class GroundTruth:
    """What is in a synthetic video. Boxes are the detector-style face boxes in **upright** pixels."""

    width: int
    height: int
    n_frames: int
    fps: float
    rotation: int
    boxes: dict[str, np.ndarray]
    """person -> (n_frames, 4) float32 x1, y1, x2, y2; NaN rows where the person is absent."""
    identities: dict[str, int]
    fake: dict[str, bool]
    visible: dict[str, np.ndarray] = field(default_factory=dict)
    """person -> (n_frames,) fraction of the face box inside the frame and not covered by someone in front."""
    scenario: str = ""
    seed: int = 0
    donors: dict[str, int] = field(default_factory=dict)
    times: Optional[list[float]] = None
    """Presentation time of each frame in seconds when the video has a variable frame rate, else None."""

    @property
    def persons(self) -> list[str]:
        return list(self.boxes)

    @property
    def is_fake(self) -> bool:
        return any(self.fake.values())

    def present(self, person: str) -> np.ndarray:
        """(n_frames,) bool: the person is in the scene at that frame."""
        return ~np.isnan(self.boxes[person][:, 0])

    def frame_range(self, person: str) -> tuple[int, int]:
        """``[start, stop)`` of the frames where the person is present."""
        idx = np.flatnonzero(self.present(person))
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    def to_json(self, path: Optional[PathLike] = None) -> str:
        """JSON text (NaN as null); also written to ``path`` when given."""

        def rows(a: np.ndarray) -> list[Any]:
            return [None if np.isnan(r).any() else [round(float(v), 3) for v in r] for r in a]

        doc = {
            "width": self.width, "height": self.height, "n_frames": self.n_frames, "fps": self.fps,
            "rotation": self.rotation, "scenario": self.scenario, "seed": self.seed,
            "identities": self.identities, "fake": self.fake, "donors": self.donors, "times": self.times,
            "boxes": {p: rows(b) for p, b in self.boxes.items()},
            "visible": {p: [round(float(v), 4) for v in a] for p, a in self.visible.items()},
        }
        text = json.dumps(doc)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: Union[str, PathLike]) -> "GroundTruth":
        """Inverse of :meth:`to_json`; ``source`` is JSON text or a path to a JSON file."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            text = Path(source).read_text()
        d = json.loads(text)
        boxes = {
            p: np.array([[np.nan] * 4 if r is None else r for r in rows], dtype=np.float32).reshape(-1, 4)
            for p, rows in d["boxes"].items()
        }
        visible = {p: np.array(v, dtype=np.float32) for p, v in d.get("visible", {}).items()}
        return cls(
            width=d["width"], height=d["height"], n_frames=d["n_frames"], fps=d["fps"], rotation=d["rotation"],
            boxes=boxes, identities=d["identities"], fake=d["fake"], visible=visible, scenario=d["scenario"],
            seed=d["seed"], donors=d.get("donors", {}), times=d.get("times"),
        )


def render(
    scenario: str = "two", *, width: int = 320, height: int = 240, n_frames: int = 80, fps: float = 30,
    seed: int = 0, face_size: Optional[float] = None, identities: Optional[Sequence[int]] = None,
    fake: Union[None, bool, FakeSpec] = None, background: Optional[str] = None,
) -> tuple[Iterator[np.ndarray], GroundTruth]:
    """Upright RGB uint8 frames ``(height, width, 3)`` (a lazy iterator) and their :class:`GroundTruth`.

    ``face_size``: face-box height in pixels (default ``0.3 * min(width, height)``). ``identities``: one int per
    person (default derived from ``seed``). ``background``: one of :data:`BACKGROUNDS` (default by seed).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
    if width < 32 or height < 32 or n_frames < 1:
        raise ValueError(f"need width, height >= 32 and n_frames >= 1, got {width}x{height}, {n_frames}")
    rng = np.random.default_rng([int(seed), 1])
    n_persons = {"none": 0, "one": 1, "edge": 1}.get(scenario, 2)
    ids = list(identities) if identities is not None else [int(seed) * 8 + k for k in range(n_persons)]
    if len(ids) < n_persons:
        raise ValueError(f"scenario {scenario!r} needs {n_persons} identities, got {len(ids)}")
    persons = [f"p{k}" for k in range(n_persons)]
    face = float(face_size) if face_size else 0.3 * min(width, height)
    head_h = face * _T_H / _FACE_H
    bg_kind = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    canvas = _background(bg_kind, width, height, rng)
    pan = rng.uniform(-1, 1, size=2) * [canvas.shape[1] - width, canvas.shape[0] - height] / 2
    centers, present = _trajectories(scenario, width, height, n_frames, head_h, rng)
    wobble = 1.0 + 0.04 * np.sin(np.arange(n_frames)[None, :] * 2 * np.pi / 37.0 + rng.uniform(0, 6, (n_persons, 1)))

    spec = FakeSpec() if fake is True else (fake or None)
    fake_flags = {p: spec is not None and (spec.persons is None or p in spec.persons) for p in persons}
    donors: dict[str, int] = {}
    frng = np.random.default_rng([int(seed), int(spec.seed) if spec else 0, 2])
    if spec:
        for p, ident in zip(persons, ids):
            if fake_flags[p]:
                donors[p] = int(spec.donor) if spec.donor is not None else ident + 1 + 2 * (spec.seed % 5)
    jitter = frng.uniform(-1, 1, size=(2, n_frames))
    direction = frng.normal(size=3)
    shift = np.zeros(3, np.float32)
    if spec:
        shift += spec.color_shift * 255.0 * direction / np.linalg.norm(direction)

    # Placement (integer top-left) and exact boxes for every frame, computed up front.
    boxes = {p: np.full((n_frames, 4), np.nan, np.float32) for p in persons}
    place: list[list[Optional[tuple[int, int, int]]]] = []  # per frame: per person (x0, y0, head height)
    for t in range(n_frames):
        row: list[Optional[tuple[int, int, int]]] = []
        for k, p in enumerate(persons):
            if not present[k, t]:
                row.append(None)
                continue
            hh = max(8, round(head_h * wobble[k, t]))
            _, alpha, fbox = _scaled_head(ids[k], hh)
            x0 = round(centers[k, t, 0] - alpha.shape[1] / 2)
            y0 = round(centers[k, t, 1] - alpha.shape[0] / 2)
            boxes[p][t] = fbox + [x0, y0, x0, y0]
            row.append((x0, y0, hh))
        place.append(row)
    visible = _visibility(boxes, place, ids, width, height)
    truth = GroundTruth(
        width=width, height=height, n_frames=n_frames, fps=float(fps), rotation=0, boxes=boxes,
        identities={p: int(i) for p, i in zip(persons, ids)}, fake=fake_flags, visible=visible,
        scenario=scenario, seed=int(seed), donors=donors,
    )

    def frames() -> Iterator[np.ndarray]:
        for t in range(n_frames):
            ox = int(round((canvas.shape[1] - width) / 2 + pan[0] * (2 * t / max(1, n_frames - 1) - 1)))
            oy = int(round((canvas.shape[0] - height) / 2 + pan[1] * (2 * t / max(1, n_frames - 1) - 1)))
            frame = canvas[oy : oy + height, ox : ox + width].copy()
            for k, p in enumerate(persons):
                if place[t][k] is None:
                    continue
                x0, y0, hh = place[t][k]  # type: ignore[misc]
                rgb, alpha, _ = _scaled_head(ids[k], hh)
                if fake_flags[p] and spec is not None:
                    rgb = _manipulate(ids[k], hh, donors[p], spec, jitter[:, t], shift)
                _paste(frame, rgb, alpha, x0, y0)
            yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    return frames(), truth


def _trajectories(
    scenario: str, width: int, height: int, n: int, head_h: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Head centres (persons, n, 2) and presence (persons, n) bool."""
    t = np.arange(n) / max(1, n - 1)
    head_w = head_h * _T_W / _T_H * 1.12  # widest identity
    free_x = max(0.0, (width - head_w) / 2 - 1)
    free_y = max(0.0, (height - head_h) / 2 - 1)
    ph = rng.uniform(0, 2 * np.pi, size=4)
    if scenario == "none":
        return np.zeros((0, n, 2)), np.zeros((0, n), bool)
    if scenario == "one":
        cx = width / 2 + 0.7 * free_x * np.sin(2 * np.pi * 0.6 * t + ph[0])
        cy = height / 2 + 0.6 * free_y * np.sin(2 * np.pi * 0.9 * t + ph[1])
        return np.stack([cx, cy], -1)[None], np.ones((1, n), bool)
    if scenario == "edge":  # centre swings to where ~40 % of the face box is left of the frame, and back
        face_w = head_h * (_PHOTO_FACE_BOX[2] - _PHOTO_FACE_BOX[0]) / _T_H
        cx = width / 2 + (0.1 * face_w - width / 2) * np.sin(np.pi * t)
        cy = np.full(n, height / 2)
        return np.stack([cx, cy], -1)[None], np.ones((1, n), bool)
    quarter = max(0.0, min(0.05 * width, width / 4 - head_w / 2 - 1))
    dy = min(0.06 * height, free_y)
    if scenario == "crossing":
        x_from, x_to = head_w / 2 + 1, width - head_w / 2 - 1
        c0 = np.stack([x_from + (x_to - x_from) * t, np.full(n, height / 2 - dy)], -1)
        c1 = np.stack([x_to - (x_to - x_from) * t, np.full(n, height / 2 + dy)], -1)
        return np.stack([c0, c1]), np.ones((2, n), bool)
    c = []
    for k, base in enumerate((width * 0.27, width * 0.73)):
        cx = base + quarter * np.sin(2 * np.pi * 0.5 * t + ph[k])
        cy = height / 2 + 0.5 * free_y * np.sin(2 * np.pi * 0.7 * t + ph[k + 2])
        c.append(np.stack([cx, cy], -1))
    present = np.ones((2, n), bool)
    if scenario == "enter_leave":
        present[1] = (np.arange(n) >= round(0.3 * n)) & (np.arange(n) < round(0.7 * n))
    return np.stack(c), present


def _background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 canvas 25 % larger than the frame, to pan over."""
    cw, ch = round(width * 1.25) + 2, round(height * 1.25) + 2
    if kind == "gradient":
        a, b = rng.uniform(20, 235, size=(2, 3))
        ramp = np.linspace(0, 1, cw)[None, :, None] * 0.7 + np.linspace(0, 1, ch)[:, None, None] * 0.3
        return (a + (b - a) * ramp).astype(np.float32) + _smooth_noise(cw, ch, 6, rng) * 25
    if kind == "noise":
        base = rng.uniform(60, 200, size=3)
        return (base + _smooth_noise(cw, ch, 10, rng) * 70).astype(np.float32)
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    from skimage import data

    img = np.asarray(getattr(data, kind)())[..., :3].astype(np.float32)
    scale = max(cw / img.shape[1], ch / img.shape[0])
    img = _resize(img, math.ceil(img.shape[1] * scale), math.ceil(img.shape[0] * scale))
    return np.ascontiguousarray(img[:ch, :cw])


def _smooth_noise(width: int, height: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) float32 noise in about [-1, 1], smooth over ``width / cells`` pixels."""
    coarse = rng.uniform(-1, 1, size=(cells, max(2, cells * width // height), 3)).astype(np.float32)
    return _resize(coarse, width, height)


def _paste(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite a head patch into ``frame`` (float32, in place), clipped to the frame."""
    h, w = alpha.shape
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    if fx0 >= fx1 or fy0 >= fy1:
        return
    a = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
    region = frame[fy0:fy1, fx0:fx1]
    region *= 1.0 - a
    region += a * rgb[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]


@lru_cache(maxsize=256)
def _donor_head(identity: int, height: int, donor: int, warp: float, resolution: float) -> np.ndarray:
    """The donor's head aligned on ``identity``'s face centre, scaled by ``1 + warp``, at low resolution."""
    rgb, _, fbox = _scaled_head(identity, height)
    h, w = rgb.shape[:2]
    d_rgb, _, d_box = _scaled_head(donor, max(8, round(h * (1 + warp))))
    ox = int(round((d_box[0] + d_box[2]) / 2 - (fbox[0] + fbox[2]) / 2))
    oy = int(round((d_box[1] + d_box[3]) / 2 - (fbox[1] + fbox[3]) / 2))
    out = rgb.copy()  # outside the donor's extent keep the original
    sx0, sy0 = max(0, ox), max(0, oy)
    sx1, sy1 = min(d_rgb.shape[1], ox + w), min(d_rgb.shape[0], oy + h)
    out[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox] = d_rgb[sy0:sy1, sx0:sx1]
    if resolution < 1:
        out = _resize(_resize(out, max(2, round(w * resolution)), max(2, round(h * resolution))), w, h)
    out.setflags(write=False)
    return out


def _manipulate(identity: int, height: int, donor: int, spec: FakeSpec, jitter: np.ndarray,
                shift: np.ndarray) -> np.ndarray:
    """``identity``'s head with the donor's face blended into the inner face region; the mask stays in the box."""
    rgb, _, (x1, y1, x2, y2) = _scaled_head(identity, height)
    h, w = rgb.shape[:2]
    donor_img = np.clip(_donor_head(identity, height, donor, spec.warp, spec.resolution) + shift, 0, 255)
    fw, fh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.03 * fh
    # flickering soft elliptical mask, semi-axes at most (0.45, 0.45) of the face box: always inside it
    size = min(1.0 + 0.25 * spec.flicker * float(jitter[0]), 0.45 / 0.36)
    opacity = float(np.clip(spec.opacity * (1.0 + 0.3 * spec.flicker * float(jitter[1])), 0.0, 1.0))
    yy, xx = np.ogrid[0:h, 0:w]
    r = np.hypot((xx + 0.5 - cx) / (0.34 * fw * size), (yy + 0.5 - cy) / (0.36 * fh * size))
    ramp = np.clip((1.0 - r) / 0.35, 0.0, 1.0)
    mask = (opacity * ramp * ramp * (3.0 - 2.0 * ramp))[..., None]  # smoothstep edge, zero for r >= 1
    return (rgb * (1 - mask) + donor_img * mask).astype(np.float32)


def _visibility(
    boxes: dict[str, np.ndarray], place: list[list[Any]], ids: list[int], width: int, height: int
) -> dict[str, np.ndarray]:
    """Fraction of each face box inside the frame and not covered (alpha > 0.5) by a head drawn later."""
    out = {p: np.zeros(len(place), np.float32) for p in boxes}
    persons = list(boxes)
    for t, row in enumerate(place):
        for k, p in enumerate(persons):
            if row[k] is None:
                continue
            bx1, by1, bx2, by2 = (int(round(v)) for v in boxes[p][t])
            area = max(1, (bx2 - bx1) * (by2 - by1))
            seen = np.zeros((by2 - by1, bx2 - bx1), bool)
            seen[max(0, -by1) : max(0, height - by1), max(0, -bx1) : max(0, width - bx1)] = True
            for j in range(k + 1, len(persons)):
                if row[j] is None:
                    continue
                x0, y0, hh = row[j]
                _, alpha, _ = _scaled_head(ids[j], hh)
                cover = np.zeros_like(seen)
                ys0, ys1 = max(by1, y0), min(by2, y0 + alpha.shape[0])
                xs0, xs1 = max(bx1, x0), min(bx2, x0 + alpha.shape[1])
                if ys0 < ys1 and xs0 < xs1:
                    head = alpha[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
                    cover[ys0 - by1 : ys1 - by1, xs0 - bx1 : xs1 - bx1] = head > 0.5
                seen &= ~cover
            out[p][t] = seen.sum() / area
    return out


def make_video(
    path: PathLike,
    scenario: str = "two",
    *,
    width: int = 320,
    height: int = 240,
    n_frames: int = 80,
    fps: Union[float, Fraction] = 30,
    seed: int = 0,
    face_size: Optional[float] = None,
    identities: Optional[Sequence[int]] = None,
    rotation: int = 0,
    crf: int = 18,
    fake: Union[None, bool, FakeSpec] = None,
    pix_fmt: Optional[str] = None,
    vfr: bool = False,
    gop: Optional[int] = None,
    background: Optional[str] = None,
) -> GroundTruth:
    """Write a synthetic H.264 MP4 and return its ground truth (upright coordinates).

    ``width``/``height`` are the **stored** frame size. With ``rotation=90`` (or 270) the pixels are stored
    rotated and a display-matrix tag makes players show them upright, like a phone held upright: the upright
    video (and the ground truth) is ``height x width``. ``pix_fmt`` defaults to ``yuv420p`` (``yuv444p`` when
    a side is odd; ``yuv420p10le`` makes a 10-bit video). ``vfr=True`` jitters frame durations (0.5..1.5 of
    ``1 / fps``); the times are in ``GroundTruth.times``.
    """
    up_w, up_h = (height, width) if rotation % 180 else (width, height)
    frames, truth = render(
        scenario, width=up_w, height=up_h, n_frames=n_frames, fps=float(fps), seed=seed, face_size=face_size,
        identities=identities, fake=fake, background=background,
    )
    truth.rotation = int(rotation) % 360
    if pix_fmt is None:
        pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
    times: Optional[list[float]] = None
    time_base: Optional[Fraction] = None
    if vfr:
        durations = np.random.default_rng([int(seed), 3]).uniform(0.5, 1.5, n_frames) / float(fps)
        times = [0.0] + np.cumsum(durations[:-1]).round(6).tolist()
        time_base = Fraction(1, 90000)
        truth.times = times
        truth.fps = n_frames / float(np.sum(durations))
    with VideoWriter(
        path, fps=fps, width=width, height=height, crf=crf, pix_fmt=pix_fmt, rotation=truth.rotation,
        gop=gop, time_base=time_base, threads=1,
    ) as writer:
        for t, frame in enumerate(frames):
            stored = rotate_array(frame, (360 - truth.rotation) % 360) if truth.rotation else frame
            writer.write(stored, pts=None if times is None else round(times[t] * 90000))
    return truth


BAD_INPUT_REASONS: dict[str, Optional[str]] = {
    "not_video": "not a video",
    "empty": "empty file",
    "truncated": "truncated",
    "audio_only": "no video stream",
    "short": None,
    "no_faces": None,
}
"""Substring of the :class:`~facetubes.errors.VideoError` message that ``probe``/``iter_frames`` raise for each
file of :func:`make_bad_inputs`; None: the file is a valid video (too short for 64-frame tubes / no face)."""


def make_bad_inputs(directory: PathLike) -> dict[str, Path]:
    """Write problem inputs into ``directory`` (created if needed); keys as in :data:`BAD_INPUT_REASONS`.

    ``not_video`` a text file named .mp4; ``empty`` 0 bytes; ``truncated`` a valid MP4 cut in half;
    ``audio_only`` an AAC sine in an .mp4; ``short`` a valid 30-frame video with a face; ``no_faces`` a valid
    70-frame video of background only.
    """
    import av

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.mp4" for k in BAD_INPUT_REASONS}
    paths["not_video"].write_text("This is a text file, not a video.\n" * 20)
    paths["empty"].write_bytes(b"")
    whole = out / "_whole.mp4"
    make_video(whole, "one", width=160, height=120, n_frames=30, seed=5)
    data = whole.read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    whole.unlink()
    with av.open(str(paths["audio_only"]), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        t = np.arange(44100 // 2) / 44100.0
        samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    make_video(paths["short"], "one", width=160, height=120, n_frames=30, seed=6)
    make_video(paths["no_faces"], "none", width=160, height=120, n_frames=70, seed=7)
    return paths


def make_dataset(
    out_dir: PathLike,
    n_real: int,
    n_fake: int,
    *,
    seed: int = 0,
    scenario: str = "one",
    fake: Optional[FakeSpec] = None,
    val_fraction: float = 0.0,
    write_truth: bool = True,
    **video_kw: Any,
) -> dict[str, dict[str, Any]]:
    """Write ``n_real`` real and ``n_fake`` fake videos plus a DFDC-style ``metadata.json``; return the metadata.

    Real ``real_<i>.mp4`` uses seed ``seed * 1000 + i`` (its own identities and background). Fake
    ``fake_<j>.mp4`` is real ``j % n_real`` re-rendered with a manipulation (``FakeSpec(seed=j)`` or ``fake``
    with that seed), so ``original`` names its group. ``val_fraction`` of the groups (whole groups) get split
    ``"val"``, the rest ``"train"``. ``write_truth`` writes ``<stem>.truth.json`` next to each video.
    Other keywords go to :func:`make_video` (``width``, ``height``, ``n_frames``, ``fps``...).
    """
    if n_real < 1 and n_fake > 0:
        raise ValueError("fakes need at least one real video to derive from")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = len(str(max(n_real, n_fake, 1) - 1))
    n_val = round(val_fraction * n_real)
    val_groups = set(np.random.default_rng([int(seed), 4]).permutation(n_real)[:n_val].tolist())
    meta: dict[str, dict[str, Any]] = {}
    jobs: list[tuple[str, int, Optional[FakeSpec], Optional[str], int]] = []
    for i in range(n_real):
        jobs.append((f"real_{i:0{width}d}.mp4", seed * 1000 + i, None, None, i))
    for j in range(n_fake):
        i = j % n_real
        manipulation = replace(fake or FakeSpec(), seed=j)
        jobs.append((f"fake_{j:0{width}d}.mp4", seed * 1000 + i, manipulation, f"real_{i:0{width}d}.mp4", i))
    for name, video_seed, spec, original, group in jobs:
        truth = make_video(out / name, scenario, seed=video_seed, fake=spec, **video_kw)
        if write_truth:
            truth.to_json(out / f"{Path(name).stem}.truth.json")
        meta[name] = {
            "label": "FAKE" if spec else "REAL",
            "original": original,
            "split": "val" if group in val_groups else "train",
        }
    (out / "metadata.json").write_text(json.dumps(meta, indent=1))
    return meta
