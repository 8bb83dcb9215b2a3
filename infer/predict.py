"""The batch behind ``facetubes predict``: inputs -> tubes (in a background thread) -> ensemble -> CSV rows.

- Inputs are videos, folders of videos (recursive), list files, or already-extracted tubes: an ``index.csv`` from
  ``facetubes extract`` or the output folder holding one (tubes are grouped by video).
- Raw videos are turned into tubes in memory (:func:`facetubes.extract_tubes_in_memory`, no MP4 round trip) by a
  background thread that works on the next video(s) while the models run on the current one.
- One CSV row per video, written as soon as the video is done; videos already in the CSV are skipped (resume).
- A video without faces gets the prior (0.5) with status ``no_face``; a video that fails gets the prior with status
  ``error`` and a one-line reason. Both are counted in the summary.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from facetubes.config import ExtractConfig
from facetubes.errors import ConfigError, one_line
from facetubes.manifest import INDEX_NAME, MANIFEST_NAME, iter_manifests, read_index
from facetubes.precision import full_fp32

from .csvio import PredictionRow, PredictionsWriter
from .engine import EnsemblePredictor

__all__ = ["WorkItem", "Loaded", "collect_work", "load_item", "Prefetcher", "RunSummary", "run_predict",
           "on_own_stream"]


@dataclass(frozen=True)
class WorkItem:
    """One video to predict: a raw ``video`` to extract, or the ``tubes`` already extracted from it.

    ``filename`` is the CSV key (the video's file name, as in DFDC submissions); ``error`` marks an input known to
    be bad before any work (e.g. a path in a list file that does not exist)."""

    filename: str
    source: str
    video: Optional[Path] = None
    tubes: tuple[Path, ...] = ()
    error: str = ""


@dataclass
class Loaded:
    """A work item with its tubes in memory (``(T, S, S, 3)`` uint8 each), or the reason it has none."""

    item: WorkItem
    tubes: list[np.ndarray] = field(default_factory=list)
    error: str = ""
    note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    tube_info: list[dict[str, Any]] = field(default_factory=list)  # per tube: start_frame, stop_frame, boxes
    faces: Any = None  # infer.faces1st.FaceSet for members of recipe dfdc1st, else None

    @property
    def empty(self) -> bool:
        return not self.tubes and (self.faces is None or len(self.faces) == 0)


# ----------------------------------------------------------------------------------------------------------------
# inputs


def _is_extract_dir(p: Path) -> bool:
    return (p / INDEX_NAME).is_file() or any(p.glob(f"*/{MANIFEST_NAME}"))


def _filename(source: str, stem: str) -> str:
    return Path(source).name if source else f"{stem}.mp4"


def _items_from_index(path: Path) -> list[WorkItem]:
    """One item per video of an ``index.csv``, tubes in index order."""
    groups: OrderedDict[str, list[Any]] = OrderedDict()
    for r in read_index(path):
        groups.setdefault(r.video, []).append(r)
    return [WorkItem(filename=_filename(rs[0].source, v), source=rs[0].source or v,
                     tubes=tuple(r.path for r in rs)) for v, rs in groups.items()]


def _items_from_extract_dir(folder: Path) -> list[WorkItem]:
    """Every video of a ``facetubes extract`` output folder, from its ``tubes.json`` manifests (so videos without
    tubes are included, and predicted as ``no_face``); falls back to ``index.csv`` when there are no manifests."""
    items = []
    for mpath, m in iter_manifests(folder):
        stem = str(m.get("video") or mpath.parent.name)
        source = str(m.get("source") or "")
        tubes = tuple(mpath.parent / t["file"] for t in m.get("tubes", []) if t.get("file"))
        items.append(WorkItem(filename=_filename(source, stem), source=source or stem, tubes=tubes))
    return items or _items_from_index(folder / INDEX_NAME)


def collect_work(inputs: Sequence[str | Path]) -> list[WorkItem]:
    """Expand command-line inputs into work items (stable order, deduplicated).

    Raises ConfigError for a command-line path that does not exist, for two different inputs with the same file
    name (the CSV is keyed by file name, as DFDC submissions are) and when nothing is found.
    """
    from facetubes.batch import collect_inputs

    items: list[WorkItem] = []
    plain: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder")
        if p.is_file() and p.suffix.lower() == ".csv":
            items.extend(_items_from_index(p))
        elif p.is_dir() and _is_extract_dir(p):
            items.extend(_items_from_extract_dir(p))
        else:
            plain.append(str(p))
    if plain:
        videos, problems = collect_inputs(plain)
        items.extend(WorkItem(filename=v.name, source=str(v), video=v) for v in videos)
        items.extend(WorkItem(filename=Path(r.source).name, source=r.source, error=r.error) for r in problems)
    if not items:
        raise ConfigError(f"no videos or tubes found in {', '.join(map(str, inputs))}")
    seen: dict[str, WorkItem] = {}
    out = []
    for it in items:
        prev = seen.get(it.filename)
        if prev is not None:
            if prev.source == it.source and prev.video == it.video and prev.tubes == it.tubes:
                continue
            raise ConfigError(f"two inputs share the file name {it.filename} ({prev.source} and {it.source}); "
                              "predictions are keyed by file name: predict them into separate CSVs")
        seen[it.filename] = it
        out.append(it)
    return out


# ----------------------------------------------------------------------------------------------------------------
# loading tubes


def read_tube(path: Path, max_frames: Optional[int]) -> np.ndarray:
    """Decode a tube MP4: ``(T, S, S, 3)`` uint8, at most ``max_frames`` frames. Raises on unreadable files."""
    from facetubes.video import iter_frames

    frames = [f for _, f in iter_frames(path, stop=max_frames)]
    if not frames:
        raise ConfigError(f"{path}: tube has no frames")
    return np.stack(frames)


def _tube_info(t: Any) -> dict[str, Any]:
    tr, plan = t.track, t.plan
    boxes = [[int(f), *(round(float(v), 1) for v in b)] for f, b in zip(tr.frames, tr.boxes)]
    return {"start_frame": int(plan.start), "stop_frame": int(plan.start + len(t.frames)), "boxes": boxes}


def load_item(item: WorkItem, config: ExtractConfig, detector: Any = None, *, tubes: bool = True,
              face_recipe: Any = None, face_detector: Any = None) -> Loaded:
    """Tubes of one item in memory (``tubes``), and the 1st-place faces (``face_recipe``, a
    :class:`~infer.faces1st.FaceRecipe`, with ``face_detector``) when the ensemble has such members. Never raises
    for a per-video problem: it comes back in ``Loaded.error``."""
    out = Loaded(item)
    if item.error:
        out.error = item.error
        return out
    try:
        if item.video is not None and face_recipe is not None:
            from .faces1st import extract_faces

            out.faces = extract_faces(item.video, face_recipe, face_detector)
            out.timings = {f"faces_{k}": v for k, v in out.faces.timings.items()}
            if not len(out.faces):
                out.note = "no face detected (dfdc1st recipe)"
        elif face_recipe is not None:
            raise ConfigError("members of recipe dfdc1st need raw videos, not extracted tubes")
        if item.video is not None and tubes:
            from facetubes.pipeline import extract_tubes_in_memory

            vt = extract_tubes_in_memory(item.video, config, detector=detector)
            out.tubes = [t.frames for t in vt.tubes if len(t.frames)]
            out.tube_info = [_tube_info(t) for t in vt.tubes if len(t.frames)]
            out.timings.update({k: float(v) for k, v in (vt.timings or {}).items() if isinstance(v, (int, float))})
            if not out.tubes and (out.faces is None or not len(out.faces)):
                out.note = vt.note or "no usable face track"
        elif item.video is None:
            t0 = time.perf_counter()
            out.tubes = [read_tube(p, config.first_frames) for p in item.tubes]
            out.tube_info = [{"start_frame": 0, "stop_frame": len(t), "boxes": []} for t in out.tubes]
            out.timings = {"read_tubes_s": time.perf_counter() - t0}
            if not out.tubes:
                out.note = "no tubes extracted for this video"
    except Exception as e:  # per-video failure: recorded as an error row, never fatal, never silent
        out.tubes, out.faces, out.tube_info = [], None, []
        out.error = one_line(e)
    return out


@dataclass
class _Failure:
    exc: BaseException


class Prefetcher:
    """Loads items in a background thread, ``depth`` ahead of the consumer; yields :class:`Loaded` in input order.

    One thread only: the face detector is not shared between threads, and decoding + detection of one video at a
    time already overlaps with the models' work on the previous one.
    """

    _END = object()

    def __init__(self, items: Sequence[WorkItem], load: Callable[[WorkItem], Loaded], depth: int = 2) -> None:
        self._items = list(items)
        self._load = load
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="facetubes-prefetch", daemon=True)
        self._thread.start()

    def _put(self, obj: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self._items:
                if self._stop.is_set():
                    return
                if not self._put(self._load(item)):
                    return
        except BaseException as e:  # a bug in the loader: hand it to the consumer instead of hanging it
            self._put(_Failure(e))
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Loaded]:
        while True:
            obj = self._q.get()
            if obj is self._END:
                return
            if isinstance(obj, _Failure):
                raise obj.exc
            yield obj  # type: ignore[misc]

    def close(self) -> None:
        """Stop the thread after its current item (it is a daemon: a stuck decode does not block exit)."""
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)


# ----------------------------------------------------------------------------------------------------------------
# the run


@dataclass
class RunSummary:
    """What a prediction run did."""

    out: Path
    counts: Counter = field(default_factory=Counter)  # ok / no_face / error
    skipped: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # summed over processed videos
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    def text(self, max_errors: int = 10) -> str:
        n = self.processed
        per = self.seconds / n if n else 0.0
        lines = [f"{n} videos in {self.seconds:.1f} s ({per:.2f} s per video): {self.counts['ok']} ok, "
                 f"{self.counts['no_face']} without faces (prior), {self.counts['error']} failed (prior)"
                 + (f"; {self.skipped} already in the CSV, skipped" if self.skipped else "")]
        if n and self.timings:
            parts = ", ".join(f"{k.removesuffix('_s')} {v / n:.2f} s" for k, v in sorted(self.timings.items()))
            lines.append(f"per video: {parts} (extraction runs in the background, overlapping the models)")
        for name, msg in self.errors[:max_errors]:
            lines.append(f"  error: {name}: {msg}")
        if len(self.errors) > max_errors:
            lines.append(f"  ... and {len(self.errors) - max_errors} more (status 'error' in the CSV)")
        if self.errors:
            lines.append("failed videos are retried by running again with --retry-errors")
        lines.append(f"predictions: {self.out}")
        return "\n".join(lines)


def _row(item: WorkItem, p: float, n_tubes: int, status: str, error: str, members: dict[str, Optional[float]]
         ) -> PredictionRow:
    return PredictionRow(filename=item.filename, label=p, n_tubes=n_tubes, status=status, error=error,
                         members=members)


def _details(loaded: Loaded, pred: Any, predictor: EnsemblePredictor) -> list[dict[str, Any]]:
    from .details import face_tracks, tube_tracks

    if pred is None:
        return []
    views = {m.name: [np.asarray(m.views(len(t))).reshape(-1) for t in loaded.tubes]
             for m in predictor.members if m.name in pred.frame_probs}
    tracks = tube_tracks(loaded.tube_info, pred.tube_probs, pred.frame_probs, views) if loaded.tubes else []
    if loaded.faces is not None and len(loaded.faces) and pred.face_probs:
        rules = {m.name: m.reduction for m in predictor.members}
        tracks += face_tracks(loaded.faces, pred.face_probs, rules, first_id=len(tracks))
    return tracks


@full_fp32()
def run_predict(items: Sequence[WorkItem], predictor: EnsemblePredictor, writer: PredictionsWriter,
                load: Callable[[WorkItem], Loaded], *, prior: float = 0.5, prefetch: int = 2,
                progress: bool = True, details: Any = None) -> RunSummary:
    """Predict every item not already in ``writer.done`` and append its row. Returns the summary.

    ``load`` turns an item into tubes (:func:`load_item` with a config and detector bound); it runs in a
    background thread, on a CUDA stream of its own. Model failures on one video (e.g. CUDA out of memory) give
    that video an ``error`` row. TF32 is off for the whole run: the switches are process-wide, shared by the
    detector thread (boxes as on CPU) and the models (float32 under ``--no-amp``; float16 autocast needs none).
    """
    from tqdm import tqdm

    todo = [it for it in items if it.filename not in writer.done]
    summary = RunSummary(out=writer.path, skipped=len(items) - len(todo))
    names = [m.name for m in predictor.members]
    t_start = time.perf_counter()
    fetch = Prefetcher(todo, on_own_stream(load, predictor.device), depth=prefetch)
    bar = tqdm(total=len(todo), unit="video", disable=not progress, dynamic_ncols=True)
    try:
        for loaded in fetch:
            item = loaded.item
            for k, v in loaded.timings.items():
                summary.timings[k] = summary.timings.get(k, 0.0) + v
            prior_cols: dict[str, Optional[float]] = {n: prior for n in names}
            pred = None
            # n_tubes: tubes, or for a faces-only ensemble the persons (face tracks) of the dfdc1st recipe
            n_inputs = len(loaded.tubes) or (len(set(loaded.faces.tracks.tolist())) if loaded.faces is not None
                                             else 0)
            if loaded.error:
                row = _row(item, prior, 0, "error", loaded.error, prior_cols)
            elif loaded.empty:
                row = _row(item, prior, 0, "no_face", loaded.note, prior_cols)
            else:
                failure = ""
                try:
                    pred = predictor.predict(loaded.tubes, faces=loaded.faces)
                except Exception as e:  # recorded as an error row and in the summary, never silent
                    failure = f"models: {one_line(e)}"
                    pred = None
                if failure:
                    # outside the except block: the exception's traceback (and the frames holding the batch's
                    # GPU tensors) is gone, so emptying the cache can give the memory back (e.g. after an OOM)
                    row = _row(item, prior, n_inputs, "error", failure, prior_cols)
                    _free_cuda(predictor)
                else:
                    summary.timings["models_s"] = summary.timings.get("models_s", 0.0) + pred.model_s
                    row = _row(item, pred.probability, n_inputs, "ok", "", dict(pred.member_probs))
            if details is not None:  # written before the CSV row: a resumed run never misses a record
                from .details import video_record

                details.write(video_record(Path(item.filename).stem, item.source, row.label, row.status,
                                           row.error or loaded.note, row.members, _details(loaded, pred, predictor)))
            writer.write(row)
            summary.counts[row.status] += 1
            if row.status == "error":
                summary.errors.append((item.filename, row.error))
            bar.update(1)
            bar.set_postfix_str(f"{summary.counts['error']} errors", refresh=False)
    finally:
        bar.close()
        fetch.close()
        summary.seconds = time.perf_counter() - t_start
    return summary


def on_own_stream(load: Callable[[WorkItem], Loaded], device: Any) -> Callable[[WorkItem], Loaded]:
    """``load`` run on a CUDA stream of its own (created in the calling thread, the prefetch thread), so that the
    detector's kernels do not queue behind the models' on the default stream. Identity off CUDA.

    The new stream first waits for the work already queued on the default stream (the detector's weights).
    After that nothing crosses the streams: the detector hands back numpy boxes and frames (copied to the host,
    which waits for its own stream), so no ``record_stream`` is needed."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return load
    streams: dict[int, Any] = {}

    def run(item: WorkItem) -> Loaded:
        key = threading.get_ident()
        if key not in streams:
            streams[key] = torch.cuda.Stream(device=device)
            # after everything queued so far on the default stream (e.g. the detector's weights being uploaded)
            streams[key].wait_stream(torch.cuda.default_stream(device))
        with torch.cuda.stream(streams[key]):
            return load(item)

    return run


def _free_cuda(predictor: EnsemblePredictor) -> None:
    if predictor.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
