"""Face crops made elsewhere, imported as tubes: ``facetubes index OUT --import SRC``.

Two kinds of input, found anywhere under ``SRC``:

- **MP4 tubes** (any video file). The 5th place's ``<video>.mp4_<chunk>_<face>.mp4`` names give the video, the part
  (chunk) and the track (face); any other file is one tube of the video named by its stem.
- **Frame folders**: a folder that directly holds images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``), e.g.
  WildDeepfake's sequences or another benchmark's ``frames/<video>/000.png``. Images are taken in natural order
  (``2.png`` before ``10.png``). ``frames="inplace"`` indexes the folder itself (training reads the images,
  :func:`read_frame_folder`); ``frames="encode"`` writes ``OUT/<video>/<video>_t0.mp4`` (H.264, lossless-looking
  CRF 18) and indexes that.

Each imported video gets ``OUT/<video>/tubes.json`` (``"imported": {...}``, tube ``file`` paths relative to that
folder, so ``facetubes index OUT`` rebuilds the same ``index.csv``). No detector ran: ``mean_prob`` is 1.

Labels: from ``labels`` (a labels CSV keyed by video stem, or a dataset root) matched by video name, then by the
path under ``SRC`` (a ``frames/<video>`` folder also matches the ``videos/<video>.mp4`` of a dataset root), else
from the folder names: an ancestor ``real``/``fake`` or ``real_<split>``/``fake_<split>`` (WildDeepfake) gives the
label and the split; the group is then the folder right below it (one source video's sequences stay together).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError, VideoError
from ..manifest import Label, find_label, rebuild_index, write_manifest
from .base import VIDEO_EXTS, safe_name

log = logging.getLogger("facetubes")

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_MEDICS = re.compile(r"^(?P<video>.+)\.(?:mp4|avi|mov|mkv)_(?P<chunk>\d+)_(?P<face>\d+)$", re.IGNORECASE)
_FOLDER_LABEL = re.compile(r"^(?P<label>real|fake)(?:_(?P<split>train|val|test))?$", re.IGNORECASE)


def natural_key(name: str) -> list:
    """Sort key that orders ``2.png`` before ``10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_files(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, in natural order."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                   and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def read_frame_folder(folder: str | os.PathLike, indices) -> np.ndarray:
    """Frames ``indices`` of a frame folder as ``(N, H, W, 3)`` uint8 RGB, in that order (repeats allowed).

    Every frame is resized (bilinear) to the size of the folder's first image when it differs (face crops made
    elsewhere often vary in size). Raises VideoError with a one-line reason."""
    from PIL import Image

    folder = Path(folder)
    try:
        files = frame_files(folder)
    except OSError as e:
        raise VideoError(f"{folder}: cannot list the frame folder ({e.strerror or e})") from None
    if not files:
        raise VideoError(f"{folder}: no frame images in this folder")
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    bad = [i for i in idx if not 0 <= i < len(files)]
    if bad:
        raise VideoError(f"{folder}: frame {bad[0]} requested, the folder holds {len(files)} images")

    def load(p: Path) -> Image.Image:
        try:
            with Image.open(p) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as e:
            raise VideoError(f"{p}: unreadable image ({e})") from None

    first = load(files[0]).size
    cache: dict[int, np.ndarray] = {}
    for i in sorted(set(idx)):
        im = load(files[i])
        if im.size != first:
            im = im.resize(first, Image.BILINEAR)
        cache[i] = np.asarray(im, dtype=np.uint8)
    return np.stack([cache[i] for i in idx])


@dataclass
class ImportItem:
    """One tube to import: an MP4 file or a frame folder, and the video it belongs to."""

    path: Path
    kind: str           # "tube" | "frames"
    video: str
    track: int = 0
    part: int = 0


@dataclass
class ImportSummary:
    out: Path
    n_videos: int = 0
    n_tubes: int = 0
    unlabelled: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)      # OUT already holds an extracted video of that name
    index_rows: int = 0

    def text(self, max_names: int = 5) -> str:
        lines = [f"import: {self.n_tubes} tubes of {self.n_videos} videos; {self.out / 'index.csv'}: "
                 f"{self.index_rows} rows"]
        for what, items in (("have no label", self.unlabelled), ("could not be read", self.unreadable),
                            ("were not imported: OUT holds an extracted video of the same name", self.kept)):
            if items:
                lines.append(f"import: {len(items)} videos {what}: " + ", ".join(items[:max_names])
                             + (", ..." if len(items) > max_names else ""))
        return "\n".join(lines)


def find_items(src: Path) -> list[ImportItem]:
    """Pure-ish scan: every MP4 tube and frame folder under ``src``, with unique video names.

    A video name that occurs in two different folders is prefixed with its folder path under ``src``."""
    items: list[ImportItem] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        names = sorted(f for f in filenames if not f.startswith("."))
        if any(Path(f).suffix.lower() in IMAGE_EXTS for f in names):
            items.append(ImportItem(d, "frames", d.name))
        for f in names:
            if Path(f).suffix.lower() not in VIDEO_EXTS:
                continue
            stem = Path(f).stem
            m = _MEDICS.match(stem)
            if m:
                items.append(ImportItem(d / f, "tube", m["video"], int(m["face"]), int(m["chunk"])))
            else:
                items.append(ImportItem(d / f, "tube", stem))
    where: dict[str, set[Path]] = {}
    for it in items:
        where.setdefault(it.video, set()).add(it.path.parent if it.kind == "tube" else it.path)
    for it in items:
        if len(where[it.video]) > 1:
            home = it.path.parent if it.kind == "tube" else it.path
            parts = home.relative_to(src).parts if home != src else ()
            it.video = safe_name(*parts[:-1], it.video) if it.kind == "frames" else safe_name(*parts, it.video)
    return items


def folder_label(rel_parts: tuple[str, ...]) -> Optional[Label]:
    """Label from folder names (``real``/``fake``, ``real_train``/``fake_test``...), or None."""
    for i, part in enumerate(rel_parts):
        m = _FOLDER_LABEL.match(part)
        if m:
            below = rel_parts[i + 1] if i + 1 < len(rel_parts) else part
            group = safe_name(m["label"].lower(), below)
            dataset = "wilddeepfake" if m["split"] else ""
            return Label(int(m["label"].lower() == "fake"), group, (m["split"] or "").lower(), dataset,
                         folder=part)
    return None


def _label_for(item: ImportItem, src: Path, labels: dict[str, Label]) -> Optional[Label]:
    relpath = item.path.relative_to(src).as_posix()
    lab = find_label(labels, item.video, relpath)
    if lab is None and item.kind == "frames":  # frames/<video> -> videos/<video>.mp4 of a dataset root
        parts = relpath.split("/")
        swapped = ["videos" if p == "frames" else p for p in parts]
        if swapped != parts:
            lab = find_label(labels, item.video, "/".join(swapped) + ".mp4")
    if lab is None:
        lab = find_label(labels, item.path.stem) if item.kind == "tube" else None
    if lab is None:
        lab = folder_label(item.path.relative_to(src).parts[:-1] if item.kind == "tube"
                           else item.path.relative_to(src).parts)
    return lab


def _describe(item: ImportItem) -> tuple[int, float, int]:
    """(n_frames, fps, size) of an item; size is the frame width."""
    if item.kind == "frames":
        files = frame_files(item.path)
        from PIL import Image

        try:
            with Image.open(files[0]) as im:
                width = im.size[0]
        except OSError as e:
            raise VideoError(f"{files[0]}: unreadable image ({e})") from None
        return len(files), 0.0, width
    from ..video import probe

    info = probe(item.path)
    return info.n_frames, info.fps, info.width


def _encode(item: ImportItem, video_dir: Path, fps: float) -> Path:
    from ..video import VideoWriter

    files = frame_files(item.path)
    first = read_frame_folder(item.path, [0])[0]
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2  # yuv420p needs even sides
    out = video_dir / f"{item.video}_t0.mp4"
    with VideoWriter(out, fps=fps, width=w, height=h, crf=18) as writer:
        for i in range(len(files)):
            writer.write(np.ascontiguousarray(read_frame_folder(item.path, [i])[0][:h, :w]))
    return out


def _extracted_here(video_dir: Path) -> bool:
    """True when ``video_dir`` holds a manifest that ``facetubes extract`` wrote (not an earlier import)."""
    from ..manifest import read_manifest

    if not (video_dir / "tubes.json").is_file():
        return False
    try:
        return "imported" not in read_manifest(video_dir)
    except ConfigError:
        return False


def import_tubes(src: str | os.PathLike, out: str | os.PathLike, *, labels: Optional[dict[str, Label]] = None,
                 frames: str = "inplace", fps: float = 25.0) -> ImportSummary:
    """Index the MP4 tubes and frame folders under ``src`` into ``out`` (``tubes.json`` per video + ``index.csv``).

    ``frames``: ``inplace`` (index the folders) or ``encode`` (write an MP4 per folder into ``out``). ``fps``: the
    frame rate given to frame folders. Unreadable items are skipped and named in the summary, never fatal.
    """
    src, out = Path(src).resolve(), Path(out)
    if frames not in ("inplace", "encode"):
        raise ConfigError(f"--frames must be inplace or encode, got {frames!r}")
    if not (fps > 0 and np.isfinite(fps) and fps <= 1000):
        raise ConfigError(f"--fps must lie in (0, 1000], got {fps}")
    if not src.is_dir():
        what = "is a file, not a folder" if src.exists() else "no such folder"
        raise ConfigError(f"{src}: {what} to import (--import takes a folder of tubes or frame folders)")
    items = find_items(src)
    if not items:
        raise ConfigError(f"{src}: no MP4 tubes and no folders of frame images to import")
    out.mkdir(parents=True, exist_ok=True)
    by_video: dict[str, list[ImportItem]] = {}
    for it in items:
        by_video.setdefault(it.video, []).append(it)
    summary = ImportSummary(out)
    table: dict[str, Label] = {}
    for video, group in sorted(by_video.items()):
        video_dir = out / video
        if _extracted_here(video_dir):  # never overwrite what `facetubes extract` wrote
            summary.kept.append(video)
            continue
        video_dir.mkdir(exist_ok=True)
        tubes, size, rate = [], 0, fps
        for k, it in enumerate(sorted(group, key=lambda i: (i.track, i.part, i.path.name))):
            try:
                n, item_fps, width = _describe(it)
                target = _encode(it, video_dir, fps) if (it.kind == "frames" and frames == "encode") else it.path
            except VideoError as e:
                log.warning("skipped %s", e)
                summary.unreadable.append(str(it.path))
                continue
            size, rate = width, (item_fps or fps)
            suffix = f"p{it.part}" if it.part else ""
            tubes.append({"tube": f"{video}_t{it.track}{suffix}" if it.kind == "tube" else f"{video}_t{k}",
                          "file": os.path.relpath(target, video_dir), "track": it.track, "part": it.part,
                          "start_frame": 0, "stop_frame": n, "n_frames": n, "mean_prob": 1.0,
                          "crop_box": [0, 0, width, width], "detections": {"frames": [], "boxes": [], "probs": []}})
        if not tubes:
            with contextlib.suppress(OSError):
                video_dir.rmdir()  # only when empty: no folder is left behind for a video that was not imported
            continue
        ids = [t["tube"] for t in tubes]
        for j, t in enumerate(tubes):  # two files that parse to the same track and part keep distinct ids
            if ids.count(t["tube"]) > 1:
                t["tube"] = f"{t['tube']}_{j}"
        source = str(group[0].path)
        write_manifest(video_dir, {
            "version": 1, "video": video, "source": source, "status": "ok", "note": "imported",
            "width": size, "height": size, "fps": rate, "n_frames": max(t["n_frames"] for t in tubes),
            "rotation": 0, "config": {"size": size},
            "imported": {"from": str(src), "kind": group[0].kind, "frames": frames},
            "tubes": tubes})
        lab = _label_for(group[0], src, labels or {})
        if lab is None:
            summary.unlabelled.append(video)
        else:
            table[video] = lab
        summary.n_videos += 1
        summary.n_tubes += len(tubes)
    _, summary.index_rows = rebuild_index(out, table)
    return summary


__all__ = ["ImportItem", "ImportSummary", "find_items", "folder_label", "frame_files", "import_tubes",
           "natural_key", "read_frame_folder"]
