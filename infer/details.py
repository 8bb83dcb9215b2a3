"""The per-person details file of ``facetubes predict --details FILE.jsonl``: one JSON object per line, per video.

Schema (shared contract; keys may be added, never renamed or removed)::

    {"video": stem, "source": path, "prob": float, "status": str, "note": str,
     "members": {name: video_prob},
     "tracks": [{"track": int, "start_frame": int, "stop_frame": int,
                 "boxes": [[frame, x1, y1, x2, y2], ...],        # source pixels
                 "members": {name: track_prob},
                 "frames": {name: [[frame, prob], ...]},         # frame (2D) members only; {} otherwise
                 "recipe": "tubes" | "dfdc1st"}]}

Tubes (recipe ``tubes``) are facetubes' face tracks; faces of the ``dfdc1st`` recipe are grouped into persons by IoU
(:func:`infer.faces1st.link_tracks`). Lines are appended with flush + fsync like the CSV rows; on resume the
videos already in the file are not written twice, and a half-written last line is dropped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from facetubes.errors import OutputError

__all__ = ["DetailsWriter", "video_record", "tube_tracks", "face_tracks"]


def _r(p: float) -> float:
    return round(float(p), 6)


def tube_tracks(infos: Sequence[dict[str, Any]], tube_probs: dict[str, list[float]],
                frame_probs: dict[str, list[np.ndarray]], frame_views: dict[str, list[np.ndarray]]
                ) -> list[dict[str, Any]]:
    """Track records of tube members. ``infos[k]``: ``start_frame``, ``stop_frame``, ``boxes`` of tube ``k``;
    ``frame_views[name][k]``: tube-relative frame indices whose probabilities are ``frame_probs[name][k]``."""
    out = []
    for k, info in enumerate(infos):
        frames = {name: [[int(info["start_frame"] + int(i)), _r(p)] for i, p in zip(frame_views[name][k], probs[k])]
                  for name, probs in frame_probs.items() if k < len(probs)}
        out.append({"track": k, "start_frame": int(info["start_frame"]), "stop_frame": int(info["stop_frame"]),
                    "boxes": info["boxes"], "members": {n: _r(v[k]) for n, v in tube_probs.items() if k < len(v)},
                    "frames": frames, "recipe": "tubes"})
    return out


def face_tracks(faces: Any, face_probs: dict[str, np.ndarray], reductions: dict[str, str], first_id: int = 0
                ) -> list[dict[str, Any]]:
    """Track records of ``dfdc1st`` members from a :class:`~infer.faces1st.FaceSet` and each member's per-face
    probabilities; a track's member probability is the member's own rule over that person's faces."""
    from .reduce import reduce_probs

    out = []
    for t in sorted(set(faces.tracks.tolist())):
        idx = np.flatnonzero(faces.tracks == t)
        fr = faces.frames[idx]
        out.append({
            "track": first_id + int(t), "start_frame": int(fr.min()), "stop_frame": int(fr.max()) + 1,
            "boxes": [[int(faces.frames[i]), *(int(v) for v in faces.boxes[i])] for i in idx],
            "members": {n: _r(reduce_probs(p[idx], reductions[n])) for n, p in face_probs.items()},
            "frames": {n: [[int(faces.frames[i]), _r(p[i])] for i in idx] for n, p in face_probs.items()},
            "recipe": "dfdc1st"})
    return out


def video_record(stem: str, source: str, prob: float, status: str, note: str, members: dict[str, Optional[float]],
                 tracks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"video": stem, "source": source, "prob": _r(prob), "status": status, "note": note,
            "members": {k: (None if v is None else _r(v)) for k, v in members.items()}, "tracks": tracks}


class DetailsWriter:
    """Append-only JSON-lines writer with resume (videos already in the file are in ``done``)."""

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a folder; --details takes a .jsonl file path")
        self.done: set[str] = set()
        if overwrite or not self.path.exists():
            self.path.write_text("")
        else:
            self._resume()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _resume(self) -> None:
        raw = self.path.read_bytes()
        good, keep = [], 0
        for line in raw.split(b"\n"):
            if not line.strip():
                keep += len(line) + 1
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                break  # a half-written last line of an interrupted run
            if isinstance(rec, dict) and isinstance(rec.get("video"), str):
                good.append(rec["video"])
            keep += len(line) + 1
        if keep < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(min(keep, len(raw)))
        self.done = set(good)

    def write(self, record: dict[str, Any]) -> None:
        if record["video"] in self.done:
            return
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done.add(record["video"])

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "DetailsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
