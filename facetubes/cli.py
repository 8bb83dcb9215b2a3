"""The ``facetubes`` command.

Sub-commands of this package: ``extract``, ``index``, ``datasets``, ``preview``, ``sample``. Other installed
packages add theirs (``predict``, ``evaluate`` from ``infer``) through the ``facetubes.commands`` entry-point
group: each entry point is a function ``register(subparsers)`` that adds a parser and sets
``handler=fn(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .config import ExtractConfig
from .errors import ConfigError, FacetubesError, OneLineArgumentParser, one_line

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _config_from_args(a: argparse.Namespace) -> ExtractConfig:
    return ExtractConfig(
        detect_every=a.detect_every, first_frames=a.first_frames, device=a.device, detector=a.detector,
        detector_weights=a.detector_weights, min_face=a.min_face,
        detect_long_side=a.detect_long_side, thresholds=tuple(a.thresholds), min_frames=a.min_frames,
        max_frames=a.max_frames, long_tracks=a.long_tracks, top_k=a.top_k, size=a.size, margin=a.margin,
        crop=a.crop, follow_sigma=a.follow_sigma, crf=a.crf, pix_fmt=a.pix_fmt, preset=a.preset,
        detect_batch=a.detect_batch, keyint=a.keyint, detector_threads=a.detector_threads,
        decode_threads=a.decode_threads, chunk_frames=a.chunk_frames or None, chunk_memory_mb=a.chunk_memory_mb,
    )


def add_extraction_options(p: argparse.ArgumentParser, defaults: ExtractConfig) -> None:
    """Detection/track/crop options shared by ``extract`` and (through infer) ``predict``."""
    d = defaults
    g = p.add_argument_group("detection")
    g.add_argument("--device", default=d.device, help="detector device: cpu, cuda, cuda:1 (default: %(default)s)")
    g.add_argument("--detector", default=d.detector, metavar="NAME",
                   help="face detector: mtcnn, mtcnn-facenet (reference driver) or retinaface (default: %(default)s)")
    g.add_argument("--detector-weights", default=d.detector_weights, metavar="PATH",
                   help="retinaface: local mobilenet0.25_Final.pth or Resnet50_Final.pth (biubug6 layout)")
    g.add_argument("--detect-every", type=int, default=d.detect_every, metavar="N",
                   help="detect faces on every N-th frame (default: %(default)s)")
    g.add_argument("--first-frames", type=int, default=d.first_frames, metavar="N",
                   help="read only the first N frames of each video (default: all)")
    g.add_argument("--min-face", type=float, default=d.min_face, metavar="PX",
                   help="smallest face in full-resolution pixels; sets the detector downscale "
                        "(default: max(40, 7.5%% of the short side))")
    g.add_argument("--detect-long-side", type=int, default=d.detect_long_side, metavar="PX",
                   help="fixed detector resolution (long side), overrides --min-face")
    g.add_argument("--thresholds", type=float, nargs=3, default=list(d.thresholds), metavar=("P", "R", "O"),
                   help="MTCNN stage thresholds (default: %(default)s)")
    g.add_argument("--detect-batch", type=int, default=d.detect_batch, help=argparse.SUPPRESS)
    g.add_argument("--detector-threads", type=int, default=d.detector_threads, metavar="N",
                   help="torch threads for CPU detection; 1 leaves the cores to the decoder (default: %(default)s)")
    g.add_argument("--decode-threads", type=int, default=d.decode_threads, metavar="N",
                   help="FFmpeg decoding threads per video; 0: FFmpeg's choice, or cores // workers with -j "
                        "(default: %(default)s)")
    g = p.add_argument_group("tracks and tubes")
    g.add_argument("--min-frames", type=int, default=d.min_frames,
                   help="shortest tube in frames (default: %(default)s)")
    g.add_argument("--max-frames", type=int, default=d.max_frames,
                   help="longest tube; longer tracks are split or capped (default: no limit)")
    g.add_argument("--long-tracks", choices=("split", "cap"), default=d.long_tracks,
                   help="what --max-frames does to long tracks (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=d.top_k, help="keep the K most confident tracks per video")
    g.add_argument("--size", type=int, default=d.size, help="tube side in pixels (default: %(default)s)")
    g.add_argument("--margin", type=float, default=d.margin,
                   help="context around the face, fraction of the face side per side (default: %(default)s)")
    g.add_argument("--crop", choices=("auto", "static", "follow"), default=d.crop,
                   help="auto: static while the box stays tight around the face, else follow (default); "
                        "static: one union box per track (published); follow: a smoothed moving box")
    g.add_argument("--chunk-frames", type=int, default=d.chunk_frames or 0, metavar="N",
                   help="decode every frame once, N frames at a time (memory: one chunk); 0: two passes, "
                        "whose static box spans the whole track (default: %(default)s)")
    g.add_argument("--chunk-memory-mb", type=int, default=d.chunk_memory_mb, metavar="MB",
                   help="most memory one chunk's decoded frames may take; large frames get shorter chunks "
                        "(default: %(default)s: 80 frames at 1080p)")
    g.add_argument("--follow-sigma", type=float, default=d.follow_sigma,
                   help="smoothing of the follow crop, in frames (default: %(default)s)")
    g.add_argument("--crf", type=int, default=d.crf, help="x264 quality, lower is better (default: %(default)s)")
    g.add_argument("--pix-fmt", default=d.pix_fmt, help="tube pixel format (default: %(default)s)")
    g.add_argument("--preset", default=d.preset, help="x264 speed preset (default: %(default)s)")
    g.add_argument("--keyint", type=int, default=d.keyint,
                   help="keyframe interval of the tubes; smaller = faster random reads (default: %(default)s)")


def _load_labels(a: argparse.Namespace):
    """The LabelSet of ``--labels``/``--dataset`` (None without labels); prints what was read."""
    from .datasets import load

    if getattr(a, "dataset", None) and not a.labels:
        raise ConfigError("--dataset NAME forces the layout of --labels ROOT: give --labels too")
    if not a.labels:
        return None
    found = load(a.labels, a.dataset)
    print(found.summary(), file=sys.stderr)
    return found


def _cmd_extract(a: argparse.Namespace) -> int:
    from .batch import extract_batch, parse_shard

    if a.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {a.workers}")
    config = _config_from_args(a)
    shard = parse_shard(a.shard) if a.shard else None
    if a.no_diff_masks and not a.boxes_from_original:
        raise ConfigError("--no-diff-masks only applies with --boxes-from-original")
    found = _load_labels(a)
    summary = extract_batch(a.inputs, a.out, config, workers=a.workers, shard=shard, overwrite=a.overwrite,
                            labels=found.labels if found else None, progress=not a.quiet,
                            names=found.names if found else None, boxes_from_original=a.boxes_from_original,
                            diff_masks=not a.no_diff_masks)
    if a.preview:
        from .preview import batch_preview

        png = batch_preview(a.out)
        print(f"preview: {png}", file=sys.stderr)
    print(summary.text(), file=sys.stderr)
    if found is not None and summary.index_path:
        _say_unlabelled(summary.index_path)
    return EXIT_FAILURES if summary.n_failed else EXIT_OK


def _say_unlabelled(index_path) -> None:
    from .manifest import unlabelled_videos

    missing = unlabelled_videos(index_path)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"index: {len(missing)} videos have no label: {shown}", file=sys.stderr)


def _cmd_index(a: argparse.Namespace) -> int:
    from .manifest import rebuild_index

    found = _load_labels(a)
    labels = found.labels if found else None
    if a.import_from:
        from .datasets.imported import import_tubes

        summary = import_tubes(a.import_from, a.out, labels=labels, frames=a.frames, fps=a.fps)
        print(summary.text(), file=sys.stderr)
        return EXIT_OK
    if not Path(a.out).is_dir():
        raise ConfigError(f"{a.out}: no such folder")
    path, n = rebuild_index(a.out, labels)
    print(f"{path}: {n} tubes", file=sys.stderr)
    if labels is not None:
        _say_unlabelled(path)
    return EXIT_OK


def _cmd_datasets(a: argparse.Namespace) -> int:
    from .datasets import counts, describe, load

    if not a.roots:
        if a.dataset:
            raise ConfigError("--dataset NAME forces the layout of the ROOTs: give a ROOT too")
        print(describe())
        return EXIT_OK
    found = load(a.roots, a.dataset)
    print(found.summary(), file=sys.stderr)
    if found.results:
        print(counts(found))
    return EXIT_OK


def _cmd_preview(a: argparse.Namespace) -> int:
    from .preview import batch_preview, video_preview

    target = Path(a.path)
    if (target / "tubes.json").is_file():
        png = video_preview(target, a.output)
    elif target.is_dir():
        if not any(target.glob("*/tubes.json")):
            raise ConfigError(f"{target}: no finished videos to preview (no */tubes.json)")
        png = batch_preview(target, a.output, max_videos=a.max_videos)
    else:
        raise ConfigError(f"{target}: expected a facetubes output folder or one video's folder")
    print(png)
    return EXIT_OK


def _cmd_sample(a: argparse.Namespace) -> int:
    from .synthetic import SCENARIOS, make_dataset, make_video

    if a.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {a.scenario!r}; choose from {', '.join(SCENARIOS)}")
    out = Path(a.output)
    size = dict(width=a.width, height=a.height, n_frames=a.frames)
    if a.real < 0 or a.fake < 0:
        raise ConfigError(f"--real and --fake must be >= 0, got {a.real} and {a.fake}")
    if a.fake and not a.real:
        raise ConfigError("fakes are made from real videos: --fake needs --real >= 1")
    if not 0.0 <= a.val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must lie in [0, 1), got {a.val_fraction}")
    if not (16 <= a.width <= 4096 and 16 <= a.height <= 4096 and 1 <= a.frames <= 10_000):
        raise ConfigError(f"sample videos are 16 to 4096 px a side and 1 to 10000 frames, got "
                          f"{a.width}x{a.height}, {a.frames} frames")
    if (a.real or a.fake) and (out / "metadata.json").exists():
        raise ConfigError(f"{out}: already holds a sample data set (metadata.json); choose another folder")
    if out.is_dir() and not (a.real or a.fake):
        raise ConfigError(f"{out}: is a folder; give a video file name, or --real/--fake for a data set")
    if a.real or a.fake:
        meta = make_dataset(out, a.real, a.fake, seed=a.seed, scenario=a.scenario, val_fraction=a.val_fraction,
                            **size)
        print(f"{out}: {len(meta)} videos and metadata.json")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        make_video(out, a.scenario, seed=a.seed, **size)
        print(out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="facetubes", description="Face tubes for deepfake-video detection.")
    parser.add_argument("--version", action="version", version=f"facetubes {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("extract", help="extract face tubes from videos (batch job)",
                       description="Extract one MP4 per person track from each video. Resumable: videos with a "
                                   "finished OUT/<name>/tubes.json are skipped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (recursive) or .txt lists")
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--workers", "-j", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument("--shard", metavar="K/N", help="process only shard K of N (0 <= K < N), for job arrays")
    p.add_argument("--labels", nargs="+", metavar="FILE_OR_ROOT",
                   help="dataset roots (FF++, Celeb-DF, DFDC, ...; see `facetubes datasets`), DFDC metadata.json "
                        "or a labels CSV (filename,label[,original][,split]); adds label/group/split/dataset/"
                        "method/compression to index.csv")
    p.add_argument("--dataset", metavar="NAME", help="force the layout of the --labels roots (see `facetubes "
                                                     "datasets`)")
    p.add_argument("--boxes-from-original", action="store_true",
                   help="detect faces in the real videos only and cut every fake the --labels give an original "
                        "with that original's crop boxes (pixel-aligned tubes, plus diff/<tube>.mp4 masks of "
                        "1 - SSIM); a fake whose original is unusable falls back to its own detection")
    p.add_argument("--no-diff-masks", action="store_true",
                   help="with --boxes-from-original: no difference masks (a fake then costs one decode)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already finished")
    p.add_argument("--preview", action="store_true", help="also write OUT/preview.png (contact sheet)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_extraction_options(p, ExtractConfig())
    p.set_defaults(handler=_cmd_extract)

    p = sub.add_parser("index", help="rebuild OUT/index.csv from the tubes.json files (e.g. after sharded jobs), "
                                     "or import face crops made elsewhere (--import)")
    p.add_argument("out", help="output folder of `facetubes extract` (or of the import)")
    p.add_argument("--labels", nargs="+", metavar="FILE_OR_ROOT", help="labels, as for extract")
    p.add_argument("--dataset", metavar="NAME", help="force the layout of the --labels roots")
    p.add_argument("--import", dest="import_from", metavar="SRC",
                   help="index the MP4 tubes and frame-image folders under SRC into OUT (no detection)")
    p.add_argument("--frames", choices=("inplace", "encode"), default="inplace",
                   help="--import: read frame folders in place, or encode each into an MP4 in OUT "
                        "(default: %(default)s)")
    p.add_argument("--fps", type=float, default=25.0, help="--import: frame rate of frame folders (default: 25)")
    p.set_defaults(handler=_cmd_index)

    p = sub.add_parser("datasets", help="list the dataset layouts that --labels ROOT recognises, and what each "
                                        "reads; with ROOTs: what they hold",
                       description="Without ROOT: the layouts and what each reads. With ROOTs: the layout found, "
                                   "absent and unlabelled videos, and real/fake counts per dataset, method and "
                                   "split.")
    p.add_argument("roots", nargs="*", metavar="ROOT", help="dataset roots or label files to read")
    p.add_argument("--dataset", metavar="NAME", help="force the layout of the ROOTs")
    p.set_defaults(handler=_cmd_datasets)

    p = sub.add_parser("preview", help="PNG contact sheet of a video's tubes or of a whole output folder")
    p.add_argument("path", help="OUT folder or OUT/<video> folder")
    p.add_argument("--output", "-o", help="PNG path (default: inside the folder)")
    p.add_argument("--max-videos", type=int, default=16)
    p.set_defaults(handler=_cmd_preview)

    p = sub.add_parser("sample", help="write synthetic videos made from real face photos (tests, demos)",
                       description="One video (OUTPUT is an .mp4), or with --real/--fake a labelled folder of real "
                                   "and manipulated videos with a DFDC-style metadata.json.")
    p.add_argument("output", help="MP4 path, or a folder with --real/--fake")
    p.add_argument("--real", type=int, default=0, help="number of real videos (dataset mode)")
    p.add_argument("--fake", type=int, default=0, help="number of manipulated videos (dataset mode)")
    p.add_argument("--val-fraction", type=float, default=0.25, help="fraction of groups marked split=val (dataset mode; default: 0.25)")
    p.add_argument("--scenario", default="two", help="one, two, crossing, enter_leave, none... (default: two)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_cmd_sample)

    for ep in entry_points(group="facetubes.commands"):
        try:
            ep.load()(sub)
        except Exception as e:  # a broken plugin must not take the whole command down
            logging.getLogger(__name__).debug("cannot load sub-command %s: %s", ep.name, e)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not getattr(a, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(a.handler(a) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished videos are kept, rerun to continue", file=sys.stderr)
        return 130
    except FacetubesError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # unexpected: still one line, with the hint to rerun verbosely
        if a.verbose:
            raise
        print(f"error: {one_line(e)} (rerun with -v for details)", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
