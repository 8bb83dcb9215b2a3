"""PNG contact sheets: people check an extraction by looking at it.

Per video: one source frame with every track's detection boxes and crop box drawn in the track's colour, and a
row of thumbnails across each tube. Per batch: the video sheets of the first videos stacked into one picture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from .errors import ConfigError, FacetubesError
from .manifest import atomic_path, iter_manifests, read_manifest

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]
THUMB = 96
N_THUMBS = 6
SHEET_WIDTH = 2 * 16 + N_THUMBS * (THUMB + 4) + 60


def _read(path: Path | str, indices: list[int]) -> Optional[np.ndarray]:
    from .video import read_frames

    try:
        return read_frames(path, indices)
    except (FacetubesError, OSError):
        return None


def crop_box_at(tube: dict, frame: int) -> Optional[list[int]]:
    """The crop box of manifest ``tube`` at source ``frame`` (from its ``crop_boxes`` runs; manifests without
    them: ``crop_box``), or None when the tube does not cover that frame."""
    k = frame - int(tube["start_frame"])
    if not 0 <= k < int(tube.get("n_frames", tube["stop_frame"] - tube["start_frame"])):
        return None
    for run in tube.get("crop_boxes") or [[k + 1, *tube["crop_box"]]]:
        if k < run[0]:
            return [int(v) for v in run[1:5]]
        k -= run[0]
    return None


def _middle_frame(manifest: dict) -> int:
    best, best_n = 0, -1
    for t in manifest["tubes"]:
        frames = t["detections"]["frames"]
        if len(frames) > best_n:
            best, best_n = frames[len(frames) // 2] if frames else t["start_frame"], len(frames)
    return best


def render_video_sheet(video_dir: str | os.PathLike) -> Image.Image:
    """The contact sheet of one video's folder (``OUT/<stem>``) as a PIL image."""
    video_dir = Path(video_dir)
    m = read_manifest(video_dir)
    panels: list[Image.Image] = []
    title = f"{m['video']}  {m['width']}x{m['height']} @ {m['fps']:.3g} fps, {m['n_frames']} frames, " \
            f"rotation {m['rotation']}: {len(m['tubes'])} tube(s) [{m['status']}]"

    idx = _middle_frame(m) if m["tubes"] else 0
    src = _read(m["source"], [idx]) if m.get("source") else None
    if src is not None:
        img = Image.fromarray(src[0])
        draw = ImageDraw.Draw(img)
        lw = max(2, img.width // 300)
        for t in m["tubes"]:
            c = COLOURS[t["track"] % len(COLOURS)]
            for f, b in zip(t["detections"]["frames"], t["detections"]["boxes"]):
                if f == idx:
                    draw.rectangle(b, outline=c, width=lw)
            box = crop_box_at(t, idx)
            if box is None:  # the tube does not cover the frame shown
                continue
            x1, y1, x2, y2 = box
            draw.rectangle([x1, y1, x2, y2], outline=c, width=max(1, lw // 2))
            draw.text((x1 + 4, y1 + 4), t["tube"], fill=c)
        scale = (SHEET_WIDTH - 32) / img.width
        panels.append(img.resize((int(img.width * scale), max(1, int(img.height * scale))), Image.BILINEAR))

    for t in m["tubes"]:
        n = t["n_frames"]
        picks = sorted({int(round(i)) for i in np.linspace(0, max(0, n - 1), N_THUMBS)})
        frames = _read(video_dir / t["file"], picks)
        row = Image.new("RGB", (SHEET_WIDTH - 32, THUMB + 18), (24, 24, 24))
        d = ImageDraw.Draw(row)
        d.text((2, 2), f"{t['tube']}: frames {t['start_frame']}-{t['stop_frame'] - 1}, p={t['mean_prob']:.3f}",
               fill=COLOURS[t["track"] % len(COLOURS)])
        if frames is not None:
            for j, fr in enumerate(frames):
                row.paste(Image.fromarray(fr).resize((THUMB, THUMB), Image.BILINEAR), (2 + j * (THUMB + 4), 16))
        else:
            d.text((2, 40), "(tube unreadable)", fill=(255, 80, 80))
        panels.append(row)

    height = 24 + sum(p.height + 6 for p in panels) + 8
    sheet = Image.new("RGB", (SHEET_WIDTH, height), (40, 40, 40))
    ImageDraw.Draw(sheet).text((16, 6), title, fill=(255, 255, 255))
    y = 24
    for p in panels:
        sheet.paste(p, (16, y))
        y += p.height + 6
    return sheet


def _save(img: Image.Image, path: Path) -> Path:
    if path.suffix.lower() != ".png":
        raise ConfigError(f"{path}: the preview is a PNG picture; give a file name ending in .png")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a .png file name")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def video_preview(video_dir: str | os.PathLike, output: Optional[str | os.PathLike] = None) -> Path:
    """Write ``OUT/<stem>/preview.png`` (or ``output``) for one video; returns its path."""
    video_dir = Path(video_dir)
    return _save(render_video_sheet(video_dir), Path(output) if output else video_dir / "preview.png")


def batch_preview(out_dir: str | os.PathLike, output: Optional[str | os.PathLike] = None, *,
                  max_videos: int = 16) -> Path:
    """Write ``OUT/preview.png``: the sheets of up to ``max_videos`` videos (those with tubes first)."""
    out_dir = Path(out_dir)
    if max_videos < 1:
        raise ConfigError(f"--max-videos must be >= 1, got {max_videos}")
    items = list(iter_manifests(out_dir))
    items.sort(key=lambda pm: (len(pm[1]["tubes"]) == 0, pm[0].parent.name))
    sheets = [render_video_sheet(p.parent) for p, _ in items[:max_videos]]
    if not sheets:
        img = Image.new("RGB", (SHEET_WIDTH, 40), (40, 40, 40))
        ImageDraw.Draw(img).text((16, 12), f"{out_dir}: no finished videos", fill=(255, 255, 255))
        sheets = [img]
    total = Image.new("RGB", (SHEET_WIDTH, sum(s.height for s in sheets)), (0, 0, 0))
    y = 0
    for s in sheets:
        total.paste(s, (0, y))
        y += s.height
    return _save(total, Path(output) if output else out_dir / "preview.png")
