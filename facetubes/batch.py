"""The batch job behind ``facetubes extract``: many videos, resumable, shardable, parallel, never stopped by one
bad input.

- Inputs are files, folders (searched recursively for video files) or list files (one path per line).
- ``shard=(k, n)`` keeps the videos whose name hashes to ``k`` modulo ``n``: stable across machines and runs, and
  adding videos to the input does not move the others to another shard.
- A video whose ``OUT/<stem>/tubes.json`` exists is skipped unless ``overwrite``.
- Failures go to ``OUT/errors.jsonl`` (one JSON object per line with a one-line reason); ``OUT/index.csv`` is
  rebuilt from all finished videos at the end (also after Ctrl-C).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .config import ExtractConfig
from .errors import ConfigError, FacetubesError, OutputError, one_line
from .manifest import ERRORS_NAME, Label, atomic_write_text, is_done, rebuild_index

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv",
                              ".flv", ".3gp"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


@dataclass
class VideoResult:
    source: str
    stem: str
    status: str  # ok | no_face | no_tube | too_short | skipped | error
    n_tubes: int = 0
    error: str = ""
    seconds: float = 0.0


@dataclass
class BatchSummary:
    results: list[VideoResult] = field(default_factory=list)
    seconds: float = 0.0
    index_path: Optional[Path] = None
    n_index_rows: int = 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def n_failed(self) -> int:
        return self.count("error")

    @property
    def n_tubes(self) -> int:
        return sum(r.n_tubes for r in self.results)

    def text(self) -> str:
        done = [r for r in self.results if r.status != "skipped"]
        per = (sum(r.seconds for r in done) / len(done)) if done else 0.0
        parts = [f"{self.count(s)} {label}" for s, label in (
            ("ok", "with tubes"), ("no_face", "without faces"), ("no_tube", "without long-enough tracks"),
            ("too_short", "too short"), ("error", "failed"), ("skipped", "already done")) if self.count(s)]
        lines = [f"{len(self.results)} videos in {self.seconds:.1f} s ({per:.2f} s per processed video): "
                 + (", ".join(parts) or "nothing to do"),
                 f"{self.n_tubes} new tubes; index: {self.index_path} ({self.n_index_rows} tubes in total)"]
        if self.n_failed:
            lines.append(f"failures are listed in {self.index_path.parent / ERRORS_NAME if self.index_path else ERRORS_NAME}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# inputs and shards


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[VideoResult]]:
    """Expand files, folders and list files into video paths (deduplicated, in a stable order).

    Returns ``(videos, problems)``: inputs that do not exist come back as error results instead of stopping
    the batch."""
    videos: list[Path] = []
    problems: list[VideoResult] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            videos.append(p)

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file() and not f.name.startswith("."):
                    add(f)
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                q = Path(line)
                if not q.is_absolute() and not q.exists():
                    q = p.parent / q
                if q.exists():
                    add(q)
                else:
                    problems.append(VideoResult(line, q.stem, "error", error=f"{line}: no such file (listed in {p})"))
        elif p.exists():
            add(p)
        else:
            problems.append(VideoResult(str(p), p.stem, "error", error=f"{p}: no such file or folder"))
    return videos, problems


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (SLURM: ``--shard $SLURM_ARRAY_TASK_ID/N`` with --array=0-(N-1))."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like K/N (e.g. 0/8), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ConfigError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def in_shard(stem: str, shard: Optional[tuple[int, int]]) -> bool:
    if shard is None:
        return True
    k, n = shard
    h = int.from_bytes(hashlib.sha1(stem.encode("utf-8")).digest()[:8], "big")
    return h % n == k


# ----------------------------------------------------------------------------------------------------------------
# workers

_WORKER: dict = {}


def _init_worker(config_dict: dict, n_threads: int) -> None:
    # Ctrl-C reaches every process of the terminal's group: while a worker is still importing torch, the main
    # process handles it alone (otherwise each starting worker prints a KeyboardInterrupt traceback)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(max(1, n_threads))
    _WORKER["config"] = ExtractConfig.from_dict(config_dict)
    _WORKER["detector"] = None
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _process(source: str, stem: str, out_dir: str, original: Optional[tuple[str, str, bool]] = None,
             ) -> VideoResult:
    """One video. ``original``: ``(name, source, masks)`` of the real video whose boxes a fake reuses
    (``--boxes-from-original``; ``name`` empty when the labels name none: the fake falls back; ``masks``: write
    the difference masks)."""
    from .detect import make_detector
    from .pipeline import extract_tubes

    config: ExtractConfig = _WORKER["config"]
    t0 = time.perf_counter()
    try:
        manifest = None
        extra = None
        if original is not None:
            from .original import Fallback, extract_from_original

            try:
                manifest = extract_from_original(source, out_dir, config, original=original[0], stem=stem,
                                                 original_source=original[1] or None, masks=original[2])
            except Fallback as fb:
                extra = {"boxes_from_original": {"used": False, "original": original[0], "reason": str(fb)}}
        if manifest is None:
            if _WORKER.get("detector") is None:
                _WORKER["detector"] = make_detector(config.device, config.thresholds, name=config.detector,
                                                    weights=config.detector_weights)
            manifest = extract_tubes(source, out_dir, config, detector=_WORKER["detector"], stem=stem, extra=extra)
        return VideoResult(source, stem, manifest["status"], len(manifest["tubes"]),
                           seconds=time.perf_counter() - t0)
    except FacetubesError as e:
        return VideoResult(source, stem, "error", error=one_line(e), seconds=time.perf_counter() - t0)
    except Exception as e:  # a bug or an unforeseen codec failure: recorded, never fatal to the batch
        return VideoResult(source, stem, "error", error=f"{source}: {one_line(e)}", seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------------
# the batch


class _ErrorLog:
    """``errors.jsonl``: failures of the latest attempt per video; entries of videos retried now are replaced."""

    def __init__(self, path: Path, retried: Iterable[str]) -> None:
        self.path = path
        retried = set(retried)
        self.kept: list[dict] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("source") not in retried:
                    self.kept.append(entry)
        self.new: list[dict] = []
        self._flush()

    def add(self, r: VideoResult) -> None:
        entry = {"source": r.source, "video": r.stem, "error": r.error,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.new.append(entry)
        with open(self.path, "a", encoding="utf-8") as f:  # one short line per append: survives a kill
            f.write(json.dumps(entry) + "\n")

    def _flush(self) -> None:
        entries = self.kept + self.new
        if entries or self.path.exists():
            atomic_write_text(self.path, "".join(json.dumps(e) + "\n" for e in entries))


def extract_batch(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                  config: Optional[ExtractConfig] = None, *, workers: int = 1,
                  shard: Optional[tuple[int, int]] = None, overwrite: bool = False,
                  labels: Optional[dict[str, Label]] = None, progress: bool = True,
                  detector=None, names: Optional[dict[str, str]] = None,
                  boxes_from_original: bool = False, diff_masks: bool = True) -> BatchSummary:
    """Extract tubes for every input video into ``out_dir``; see the module docstring.

    ``names``: ``{absolute source path: video name}`` for sources whose output folder is not their file stem
    (dataset readers name FF++ videos ``Deepfakes-c23-000_003``, whose stems collide).

    ``boxes_from_original``: faces are detected in the real videos only; every fake that ``labels`` gives an
    ``original`` is cut with that original's crop boxes, plus difference masks (:mod:`facetubes.original`).
    The originals of the inputs are done first; with ``shard``, a fake goes to its original's shard.
    ``diff_masks=False`` skips the masks (the fakes then cost one decode each, no detection)."""
    config = config or ExtractConfig()
    if boxes_from_original and not labels:
        raise ConfigError("--boxes-from-original needs --labels that name each fake's original "
                          "(DFDC metadata.json, a dataset root, or a CSV with an 'original' column)")
    if detector is None:
        from .mtcnn import torch_device

        torch_device(config.device)  # a bad --device fails once, before any video, not once per video
        from .detect import check_detector

        check_detector(config.detector, config.detector_weights)  # so does a bad weights file
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".write-test-{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as e:
        raise OutputError(f"{out}: output folder is not writable ({e.strerror or e})") from None

    t_start = time.perf_counter()
    videos, problems = collect_inputs(inputs)
    summary = BatchSummary(results=list(problems))
    todo: list[tuple[str, str]] = []
    stems: dict[str, str] = {}
    original_of: dict[str, str] = {}  # fake's name -> its original's name ("" when the labels name none)
    for v in videos:
        stem = (names or {}).get(os.path.normpath(str(v.absolute())), v.stem)
        if boxes_from_original:
            from .manifest import find_label

            lab = find_label(labels or {}, stem, str(v))
            if lab is not None and lab.label == 1:
                original_of[stem] = lab.original
        if not in_shard(original_of.get(stem) or stem, shard):
            continue
        if stem in stems:
            summary.results.append(VideoResult(str(v), stem, "error",
                                               error=f"{v}: another input has the same name ({stems[stem]})"))
            continue
        stems[stem] = str(v)
        if not overwrite and is_done(out, stem):
            summary.results.append(VideoResult(str(v), stem, "skipped"))
        else:
            todo.append((str(v), stem))

    log = _ErrorLog(out / ERRORS_NAME, [s for s, _ in todo] + [r.source for r in problems])
    for r in problems:
        log.add(r)
    for r in summary.results:
        if r.status == "error" and r not in problems:
            log.add(r)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="video", desc="extract", disable=not progress, dynamic_ncols=True)

    def record(r: VideoResult) -> None:
        summary.results.append(r)
        if r.status == "error":
            log.add(r)
            bar.write(f"error: {r.error}")
        bar.update(1)
        bar.set_postfix(tubes=summary.n_tubes, failed=summary.n_failed, refresh=False)

    # with boxes from the original: the videos that detect first, then the fakes that reuse their boxes
    phases = [[(s, st, None) for s, st in todo if st not in original_of],
              [(s, st, (original_of[st], stems.get(original_of[st], ""), diff_masks)) for s, st in todo
               if st in original_of]]
    phases = [ph for ph in phases if ph]
    try:
        if workers <= 1 or len(todo) <= 1:
            _WORKER.clear()
            _WORKER.update(config=config, detector=detector)
            for phase in phases:
                for source, stem, orig in phase:
                    record(_process(source, stem, str(out), orig))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            if not config.decode_threads:  # FFmpeg's default is a thread per core in *each* worker
                config = replace(config, decode_threads=threads)
            ctx = mp.get_context("spawn")  # torch and fork do not mix
            with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                        initargs=(config.to_dict(), threads)) as pool:
                for phase in phases:  # a phase ends before the next starts: fakes need finished originals
                    futures = {pool.submit(_process, s, st, str(out), orig): (s, st) for s, st, orig in phase}
                    for fut in cf.as_completed(futures):
                        try:
                            record(fut.result())
                        except Exception as e:  # a worker process died (out of memory, segfault in a codec)
                            source, stem = futures[fut]
                            record(VideoResult(source, stem, "error",
                                               error=f"{source}: worker crashed ({one_line(e)})"))
    finally:
        bar.close()
        summary.index_path, summary.n_index_rows = rebuild_index(out, labels)
        summary.seconds = time.perf_counter() - t_start
    return summary
