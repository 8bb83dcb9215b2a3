"""Frame-, tube- and video-level samples for evaluation, from the per-person details file of
``facetubes predict --details`` (one JSON object per video and line; schema in :func:`read_details`).

Levels:

- ``video``: one sample per video, its probability from the predictions CSV (as predicted), or, with a tube
  aggregation, recomputed from its tubes: per member, the tubes' probabilities reduced by ``tube_agg``
  (mean / median / max), then the plain mean over members.
- ``tube``: one sample per face track: per member, the track's probability as predicted or, with a frame
  aggregation, its frame probabilities reduced by ``frame_agg`` (frame members only); the ensemble score is the
  details file's track ``prob`` when present, else the plain mean over members.
- ``frame``: one sample per face and frame, from the frame (2D) members' ``frames`` lists; the ensemble score of
  a frame is the plain mean over the frame members that scored it. 3D members have no frame scores.

Every sample carries its video, so that a bootstrap can resample whole videos and breakdowns can look up the
video's dataset, method, compression and folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional

import numpy as np

from facetubes.errors import ConfigError, read_text
from facetubes.manifest import Label

__all__ = ["LEVELS", "REDUCTIONS", "Samples", "read_details", "reduce", "tube_samples", "frame_samples",
           "video_samples_from_details"]

LEVELS: tuple[str, ...] = ("video", "tube", "frame")
REDUCTIONS: tuple[str, ...] = ("mean", "median", "max")


@dataclass
class Samples:
    """The scored units of one level.

    ``video`` ``(N,)`` stems (each sample's video), ``y`` ``(N,)`` labels, ``p`` ``(N,)`` ensemble scores,
    ``members`` name -> ``(N,)`` (NaN where a member did not score the sample), ``aggregation``: how the scores
    were computed, in words."""

    level: str
    video: np.ndarray
    y: np.ndarray
    p: np.ndarray
    members: dict[str, np.ndarray]
    aggregation: str
    notes: list[str] = field(default_factory=list)


def reduce(values: np.ndarray, how: str) -> float:
    """``mean``, ``median`` or ``max`` of a non-empty ``(K,)`` array."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("nothing to reduce")
    if how == "mean":
        return float(v.mean())
    if how == "median":
        return float(np.median(v))
    if how == "max":
        return float(v.max())
    raise ValueError(f"aggregation must be one of {', '.join(REDUCTIONS)}, got {how!r}")


def _prob(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= 1:
        raise ConfigError(f"{where}: {x!r} is not a probability in [0, 1]")
    return float(x)


def read_details(path: str | Path) -> dict[str, dict]:
    """Read a details JSONL file: video name -> its object. Checks the parts evaluation uses:
    ``{"video": str, "tracks": [{"track": int, "members": {name: prob}, "frames": {name: [[frame, prob], ...]}}]}``
    (``source``, ``prob`` and the rest are optional here). Raises ConfigError with the line of the first problem."""
    p = Path(path)
    text = read_text(p, "details file", "a details .jsonl file")
    out: dict[str, dict] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{p}:{i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("video"), str) or not obj["video"]:
            raise ConfigError(f"{where}: expected an object with a 'video' name (a `predict --details` file)")
        tracks = obj.get("tracks", [])
        if not isinstance(tracks, list):
            raise ConfigError(f"{where}: 'tracks' must be a list")
        for t in tracks:
            if not isinstance(t, dict) or not isinstance(t.get("members", {}), dict) \
                    or not isinstance(t.get("frames", {}), dict):
                raise ConfigError(f"{where}: a track must be an object with 'members' and 'frames' objects")
            for name, v in t.get("members", {}).items():
                _prob(v, f"{where}: track {t.get('track')} member {name}")
            for name, rows in t.get("frames", {}).items():
                if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 2 for r in rows):
                    raise ConfigError(f"{where}: frames of member {name} must be [[frame, prob], ...]")
                for fr, v in rows:
                    _prob(v, f"{where}: member {name} frame {fr}")
            if "prob" in t:
                _prob(t["prob"], f"{where}: track {t.get('track')} prob")
        key = obj["video"]
        if key in out and str(out[key].get("source") or "") != str(obj.get("source") or ""):
            # two videos of one name (e.g. FF++ 000_003 of two methods): the later one is keyed by its source path
            key = PurePosixPath(Path(str(obj.get("source") or key)).as_posix()).with_suffix("").as_posix()
        out[key] = obj  # the same video again (a resumed run): the later line wins
    if not out:
        raise ConfigError(f"{p}: details file has no videos")
    return out


def _labelled(details: Mapping[str, dict], labels: Mapping[str, Label]) -> tuple[list[str], int]:
    stems = [s for s in details if s in labels]
    return stems, len(details) - len(stems)


def _finish(level: str, rows: list[tuple[str, int, float, dict[str, float]]], aggregation: str,
            notes: list[str]) -> Samples:
    if not rows:
        raise ConfigError(f"no {level}-level scores for any labelled video in the details file"
                          + (" (frame level needs frame (2D) members)" if level == "frame" else ""))
    names = sorted({n for *_, m in rows for n in m})
    members = {n: np.array([m.get(n, np.nan) for *_, m in rows], dtype=np.float64) for n in names}
    return Samples(level=level, video=np.array([r[0] for r in rows], dtype=object),
                   y=np.array([r[1] for r in rows], dtype=np.int64), p=np.array([r[2] for r in rows]),
                   members=members, aggregation=aggregation, notes=notes)


def _track_member_probs(t: dict, frame_agg: Optional[str]) -> dict[str, float]:
    probs = {n: float(v) for n, v in t.get("members", {}).items()}
    if frame_agg:
        for n, rows in t.get("frames", {}).items():
            if rows:
                probs[n] = reduce(np.array([r[1] for r in rows]), frame_agg)
    return probs


def tube_samples(details: Mapping[str, dict], labels: Mapping[str, Label], *,
                 frame_agg: Optional[str] = None) -> Samples:
    """One sample per track of every labelled video (see the module docstring for the scores)."""
    stems, unlabelled = _labelled(details, labels)
    rows: list[tuple[str, int, float, dict[str, float]]] = []
    no_tracks = 0
    for s in stems:
        tracks = details[s].get("tracks", [])
        no_tracks += not tracks
        for t in tracks:
            probs = _track_member_probs(t, frame_agg)
            if "prob" in t and not frame_agg:
                p = float(t["prob"])
            elif probs:
                p = float(np.mean(list(probs.values())))
            else:
                continue
            rows.append((s, labels[s].label, p, probs))
    how = (f"each track's frame-member score is the {frame_agg} of its frame scores; " if frame_agg
           else "each member's track score as predicted; ")
    how += ("the ensemble score of a track is the details file's track prob, else the plain mean over members"
            if not frame_agg else "the ensemble score of a track is the plain mean over members")
    notes = _notes(unlabelled, no_tracks, "tube")
    return _finish("tube", rows, how, notes)


def frame_samples(details: Mapping[str, dict], labels: Mapping[str, Label]) -> Samples:
    """One sample per (track, frame) that a frame member scored, in every labelled video."""
    stems, unlabelled = _labelled(details, labels)
    rows: list[tuple[str, int, float, dict[str, float]]] = []
    no_tracks = 0
    for s in stems:
        tracks = details[s].get("tracks", [])
        no_tracks += not tracks
        for t in tracks:
            per_frame: dict[int, dict[str, float]] = {}
            for name, fr_rows in t.get("frames", {}).items():
                for fr, v in fr_rows:
                    per_frame.setdefault(int(fr), {})[name] = float(v)
            for fr in sorted(per_frame):
                m = per_frame[fr]
                rows.append((s, labels[s].label, float(np.mean(list(m.values()))), m))
    how = ("one sample per face and frame scored by a frame (2D) member; a frame's ensemble score is the plain "
           "mean over the frame members that scored it")
    return _finish("frame", rows, how, _notes(unlabelled, no_tracks, "frame"))


def video_samples_from_details(details: Mapping[str, dict], labels: Mapping[str, Label], *, tube_agg: str,
                               frame_agg: Optional[str] = None) -> dict[str, tuple[float, dict[str, float]]]:
    """Video scores recomputed from the tubes: stem -> (ensemble score, member scores). Per member, the tubes'
    scores (see :func:`tube_samples`) reduced by ``tube_agg``; the ensemble is the plain mean over members.
    Videos without tracks are left out (the caller keeps their predicted probability)."""
    out: dict[str, tuple[float, dict[str, float]]] = {}
    for s in _labelled(details, labels)[0]:
        per_member: dict[str, list[float]] = {}
        for t in details[s].get("tracks", []):
            for n, v in _track_member_probs(t, frame_agg).items():
                per_member.setdefault(n, []).append(v)
        if per_member:
            m = {n: reduce(np.array(v), tube_agg) for n, v in per_member.items()}
            out[s] = (float(np.mean(list(m.values()))), m)
    return out


def _notes(unlabelled: int, no_tracks: int, level: str) -> list[str]:
    notes = []
    if unlabelled:
        notes.append(f"{unlabelled} videos of the details file have no label and are not evaluated")
    if no_tracks:
        notes.append(f"{no_tracks} labelled videos have no face track, so no {level}-level sample")
    return notes
