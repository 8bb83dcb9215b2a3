"""Boxes from the original: a fake's tubes cut with its real video's face tracks, and difference masks.

``facetubes extract --boxes-from-original --labels ...`` (the 1st DFDC place's preprocessing): faces are detected
in the real videos only. A fake whose labels name its ``original`` (:attr:`facetubes.manifest.Label.original`)
is cut with the crop boxes of that original's finished ``tubes.json``, frame for frame, so each fake tube is
pixel-aligned with the real tube of the same name (``<fake>_t3`` with ``<original>_t3``) and the paired sampler
(:mod:`train.samplers`) pairs the same face at the same frame.

Next to each such fake tube, ``diff/<tube>.mp4`` holds its **difference mask**: per frame ``1 - SSIM`` between the
fake's crop and the original's crop of the same box (grey, 0-255 = 0-1, in the luma of an H.264 video of the tube's
size; :func:`read_diff_mask` reads it back as ``(T, size, size)`` uint8). SSIM uses an 11x11 Gaussian window
(sigma 1.5) on the grey crops, the settings of Wang et al. that the published masks used.

A fake falls back to its own detection when its original is not usable, and its manifest says why
(``boxes_from_original: {"used": false, "original": ..., "reason": ...}``): no original named, the original not
finished (or failed), without tubes, missing on disk, or a different frame size, rotation or frame rate. A fake
with fewer frames than its original gets the original's tubes cut to its length (``note`` says so).
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import replace
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import __version__
from .config import ExtractConfig
from .crops import CropPlan
from .errors import ConfigError, OutputError, VideoError, one_line
from .manifest import MANIFEST_NAME, MANIFEST_VERSION, process_umask, read_manifest, write_manifest
from .video import VideoWriter, iter_av_frames, probe, upright_to_stored_boxes

__all__ = ["DIFF_DIR", "ssim_map", "diff_mask", "Fallback", "usable_original", "extract_from_original",
           "read_diff_mask"]

DIFF_DIR = "diff"
"""Sub-folder of a video's output folder that holds the difference masks (``diff/<tube>.mp4``)."""


class Fallback(Exception):
    """The original cannot be used; the message is the reason recorded in the fake's manifest."""


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM of two grey ``uint8`` images (same shape), float32 in ``[-1, 1]``; 1 where they agree.

    Gaussian window (``sigma``, 11x11 at 1.5), ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``, population (not
    sample) covariances; borders are reflected."""
    import cv2

    if a.shape != b.shape:
        raise ValueError(f"ssim_map: shapes differ, {a.shape} vs {b.shape}")
    x, y = a.astype(np.float32), b.astype(np.float32)
    k = 2 * int(3.5 * sigma + 0.5) + 1

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (k, k), sigma, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def diff_mask(fake_grey: np.ndarray, original_grey: np.ndarray) -> np.ndarray:
    """``1 - SSIM`` clipped to ``[0, 1]`` as ``uint8`` 0-255: high where the fake differs from its original."""
    d = 1.0 - ssim_map(fake_grey, original_grey)
    return np.clip(np.rint(d * 255.0), 0, 255).astype(np.uint8)


def read_diff_mask(path: str | Path) -> np.ndarray:
    """A ``diff/<tube>.mp4`` as ``(T, H, W)`` uint8 (the luma plane of every frame)."""
    import av

    from .pipeline import _plane

    try:
        with av.open(str(path)) as c:
            return np.stack([_plane(f.planes[0]).copy() for f in c.decode(video=0)])
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"{path}: cannot read difference mask ({e})") from None


def usable_original(out_dir: Path, original: str, fake_info, original_source: Optional[str] = None,
                    ) -> tuple[dict, Path]:
    """The original's manifest and source file, or :class:`Fallback` with the reason it cannot be used."""
    if not original:
        raise Fallback("the labels name no original for this fake")
    try:
        m = read_manifest(Path(out_dir) / original / MANIFEST_NAME)
    except ConfigError:
        raise Fallback(f"original {original!r} has no finished tubes.json in {out_dir} (not extracted, or "
                       "it failed)") from None
    if m.get("boxes_from_original", {}).get("used"):
        raise Fallback(f"original {original!r} was itself cut from another video's boxes")
    if not m.get("tubes"):
        raise Fallback(f"original {original!r} has no tubes ({m.get('status', '?')})")
    source = Path(original_source or m.get("source", ""))
    if not source.is_file():
        raise Fallback(f"original {original!r}: source video {source} is missing")
    try:
        size, rotation, fps = (int(m["width"]), int(m["height"])), int(m.get("rotation", 0)), float(m["fps"])
        for t in m["tubes"]:
            int(t["start_frame"]), int(t["stop_frame"]), t["crop_boxes"][0][4]  # noqa: B018  (all there?)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise Fallback(f"original {original!r}: its tubes.json lacks what the boxes need ({one_line(e)})") from None
    for what, mine, theirs in (("frame size", (fake_info.width, fake_info.height), size),
                               ("rotation", int(fake_info.rotation), rotation)):
        if mine != theirs:
            raise Fallback(f"original {original!r}: {what} {theirs} differs from the fake's {mine}")
    if abs(float(fake_info.fps) - fps) > 1e-3 * fps:
        raise Fallback(f"original {original!r}: frame rate {fps} differs from the fake's {fake_info.fps}")
    return m, source


def _expand(runs: list) -> np.ndarray:
    return np.concatenate([np.tile(np.asarray(r[1:], np.int32), (int(r[0]), 1)) for r in runs])


def _grey(frame) -> np.ndarray:
    from .pipeline import _plane

    if frame.format.name.startswith("yuv"):  # luma plane, as is
        return _plane(frame.planes[0])
    import cv2

    return cv2.cvtColor(frame.to_ndarray(format="rgb24"), cv2.COLOR_RGB2GRAY)


def _mask_frame(mask: np.ndarray):
    import av

    h, w = mask.shape
    yuv = np.concatenate([mask, np.full((h // 2, w), 128, np.uint8)])  # chroma: neutral grey
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def extract_from_original(path: str | Path, out_dir: str | Path, config: ExtractConfig, *, original: str,
                          stem: Optional[str] = None, original_source: Optional[str] = None,
                          masks: bool = True) -> dict:
    """Cut the fake ``path`` with the crop boxes of ``out_dir/<original>/tubes.json`` into ``out_dir/<stem>/``
    (tubes named as the original's, with the fake's name), plus ``diff/<tube>.mp4`` masks when ``masks``.
    Returns the manifest. Raises :class:`Fallback` when the original cannot be used (nothing is written then),
    :class:`VideoError` / :class:`OutputError` for unreadable input or unwritable output."""
    import av.video.reformatter

    from .pipeline import _compress_boxes, _install_dir, _remove_stale, cut_frame, prefetch, tube_writer

    t_start = time.perf_counter()
    path, out_dir = Path(path), Path(out_dir)
    stem = stem or path.stem
    info = probe(path)
    om, source = usable_original(out_dir, original, info, original_source)
    oinfo = probe(source)
    n = min(info.n_frames, oinfo.n_frames, int(om["n_frames"]))
    if config.first_frames is not None:
        n = min(n, config.first_frames)
    size = int(om["config"].get("size", config.size)) if isinstance(om.get("config"), dict) else config.size
    config = replace(config, size=size)  # the original's tube size, whatever --size says: the tubes align
    entries, plans = [], []
    for t in om["tubes"]:
        start, stop = int(t["start_frame"]), min(int(t["stop_frame"]), n)
        if stop - start < max(1, config.min_frames):
            continue
        boxes = _expand(t["crop_boxes"])[: stop - start]
        plans.append(CropPlan(track_id=int(t["track"]), part=int(t["part"]), start=start, stop=stop, boxes=boxes))
        entries.append(t)
    if not plans:
        raise Fallback(f"original {original!r}: no tube of {config.min_frames} frames or more within the fake's "
                       f"{n} frames")
    names = [stem + t["tube"][len(original):] if t["tube"].startswith(original) else f"{stem}_{t['tube']}"
             for t in entries]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale(out_dir, stem)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{stem}-", dir=out_dir))
        work.chmod(0o777 & ~process_umask())
        if masks:
            (work / DIFF_DIR).mkdir()
    except OSError as e:
        raise OutputError(f"{out_dir}: cannot write output ({e.strerror or e})") from None
    writers: list[VideoWriter] = []
    fake_frames = orig_frames = None
    try:
        def writer(p: Path) -> VideoWriter:
            w = tube_writer(p, info, config)  # config.size is the original's (above)
            writers.append(w)
            return w

        tubes = [writer(work / f"{nm}.mp4") for nm in names]
        diffs = [writer(work / DIFF_DIR / f"{nm}.mp4") for nm in names] if masks else []
        rot, wh = info.rotation, (info.width, info.height)
        stored = [upright_to_stored_boxes(p.boxes, rot, wh).round().astype(int) for p in plans]
        scalers = [(av.video.reformatter.VideoReformatter(), av.video.reformatter.VideoReformatter()) for _ in plans]
        first, last = min(p.start for p in plans), max(p.stop for p in plans)
        fake_frames = prefetch(iter_av_frames(path, start=first, stop=last, threads=config.decode_threads))
        orig_frames = prefetch(iter_av_frames(source, start=first, stop=last, threads=config.decode_threads)) \
            if masks else None
        for idx, frame in fake_frames:
            oframe = None
            if orig_frames is not None:
                oidx, oframe = next(orig_frames, (None, None))
                if oidx is None:
                    raise VideoError(f"{source}: the original ends before frame {idx} (decoded fewer frames than "
                                     "its tubes.json names)")
                if oidx != idx:
                    raise VideoError(f"{source}: frame {idx} expected, decoded {oidx}")
            rgb_f: list = []
            rgb_o: list = []
            for k, p in enumerate(plans):
                if not p.start <= idx < p.stop:
                    continue
                j = idx - p.start
                small = cut_frame(frame, p.boxes[j], stored[k][j], rot, size, config.pix_fmt, scalers[k][0], rgb_f)
                tubes[k].write_frame(small)
                if oframe is not None:
                    osmall = cut_frame(oframe, p.boxes[j], stored[k][j], rot, size, config.pix_fmt, scalers[k][1],
                                       rgb_o)
                    diffs[k].write_frame(_mask_frame(diff_mask(_grey(small), _grey(osmall))))
        tube_entries = []
        for t, nm, p, w in zip(entries, names, plans, tubes):
            w.close()
            k = w.frames_written
            stop = p.start + k
            e = dict(t)
            e.update(tube=nm, file=f"{nm}.mp4", stop_frame=stop, n_frames=k, crop_box=[int(v) for v in p.boxes[0]],
                     crop_boxes=_compress_boxes(p.boxes[:k]))
            det = t.get("detections", {})
            keep = [i for i, f in enumerate(det.get("frames", [])) if f < stop]
            e["detections"] = {key: [v[i] for i in keep] for key, v in det.items()}
            if "tube_landmarks" in t:
                e["tube_landmarks"] = [r for r in t["tube_landmarks"] if r[0] < stop]
            if masks:
                e["diff_file"] = f"{DIFF_DIR}/{nm}.mp4"
            tube_entries.append(e)
        for d in diffs:
            d.close()
        short = n < int(om["n_frames"]) or any(e["stop_frame"] < t["stop_frame"] for e, t in zip(tube_entries, entries))
        manifest = {
            "version": MANIFEST_VERSION,
            "facetubes": __version__,
            "video": stem,
            "source": str(path),
            "status": "ok",
            "note": (f"cut to the fake's {n} frames (the original has {om['n_frames']})" if short else ""),
            "width": info.width, "height": info.height, "fps": info.fps, "n_frames": info.n_frames,
            "rotation": info.rotation, "codec": info.codec, "pix_fmt": info.pix_fmt,
            "detector": {**om["detector"], "from_original": original},
            "boxes_from_original": {"used": True, "original": original, "original_source": str(source),
                                    "diff_masks": bool(masks)},
            "config": config.to_dict(),
            "n_tracks": om.get("n_tracks", len(om.get("tracks", []))),
            "tracks": om.get("tracks", []),
            "tubes": tube_entries,
            "timings": {"total_s": round(time.perf_counter() - t_start, 4)},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_manifest(work, manifest)
        _install_dir(work, out_dir / stem)
    except BaseException:
        for w in writers:
            w.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        for gen in (fake_frames, orig_frames):
            if gen is not None:
                gen.close()  # stops the decoding threads
    return manifest
