"""``train3d`` and ``train2d``: command-line front ends of :func:`train.loop.train`.

Every :class:`~train.config.TrainConfig` field is a flag (``batch_size`` -> ``--batch-size``). Defaults come from
``train/configs/<arch>.yaml``, then ``--config FILE``, then the flags. ``--resume RUN_DIR`` continues a run with its
saved configuration (only runtime settings such as ``--num-workers`` may change). Under ``torchrun`` every
process runs the same command. Errors print ``error: <reason>`` and exit with status 2, without a traceback.

    train3d --arch i3d --data TUBES --out RUN
    torchrun --nproc_per_node 4 -m train.cli 3d --arch i3d --data TUBES --out RUN
    train3d --resume RUN
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

from facetubes.errors import ConfigError, FacetubesError, OneLineArgumentParser, one_line

from .config import (RUNTIME_FIELDS, TrainConfig, _unwrap_optional, apply_overrides, coerce, field_types,
                     load_run_config, resolve_config)

_EXAMPLES = {
    "3d": "train3d --arch i3d --data TUBES --out runs/i3d   (TUBES: a folder with index.csv, or the index.csv)",
    "2d": "train2d --arch seresnext50 --data TUBES --out runs/seresnext50",
}
_OWN = ("config", "resume", "print_config")


def build_parser(task: str) -> argparse.ArgumentParser:
    """Parser whose flags mirror :class:`TrainConfig`; unset flags are absent from the namespace."""
    prog = "train3d" if task == "3d" else "train2d"
    p = OneLineArgumentParser(
        prog=prog, argument_default=argparse.SUPPRESS,
        description=f"Train a {'3D video' if task == '3d' else '2D frame'} deepfake detector on face tubes. "
                    f"Example: {_EXAMPLES[task]}. Resume: {prog} --resume RUN.")
    p.add_argument("--config", metavar="FILE", help="YAML file of settings (between the arch defaults and flags)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    types_ = field_types()
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata.get("flag", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp = types_[f.name]
        if typing.get_origin(_unwrap_optional(tp)[0]) is tuple:  # Optional[tuple]: still two values
            tp = _unwrap_optional(tp)[0]
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        help_ = f.metadata.get("help", "")
        if tp is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_)
        elif origin is list:
            p.add_argument(flag, nargs="+", metavar=f.metadata.get("metavar", "NAME"), help=help_)
        elif origin is tuple:
            p.add_argument(flag, nargs=2, metavar=("MIN", "MAX"), help=help_)
        elif origin is Literal:
            p.add_argument(flag, choices=typing.get_args(tp), help=help_)
        else:
            kind = args[0] if args else tp
            metavar = f.metadata.get("metavar") or {int: "N", float: "X"}.get(kind, "VALUE")
            p.add_argument(flag, metavar=metavar, help=help_)
    return p


def _resume_config(run_dir: str, overrides: dict[str, Any], task: str) -> TrainConfig:
    cfg = load_run_config(run_dir)
    if cfg.task != task:
        raise ConfigError(f"{run_dir} is a {cfg.task.upper()} run: resume it with train{cfg.task}")
    movable = RUNTIME_FIELDS | {"data", "out"}  # tubes may have moved: split.csv matches them by name
    for name, value in overrides.items():
        if name in movable:
            continue
        if coerce(name, value, "command line") != getattr(cfg, name):
            raise ConfigError(f"--{name.replace('_', '-')} cannot change when resuming (the run's config.yaml fixes "
                              f"it; runtime settings that may change: {', '.join(sorted(RUNTIME_FIELDS))})")
    runtime = {k: v for k, v in overrides.items() if k in RUNTIME_FIELDS or k == "data"}
    cfg = apply_overrides(cfg, runtime, "command line")
    cfg.out = str(Path(run_dir).expanduser().resolve())
    if "data" in runtime:
        cfg.data = str(Path(cfg.data).expanduser().resolve())
    return cfg.validate()


def _absolute(cfg: TrainConfig) -> TrainConfig:
    """Paths made absolute, so that ``config.yaml`` and ``--resume`` work from any directory."""
    def absolute(p: Optional[str]) -> Optional[str]:
        return str(Path(p).expanduser().resolve()) if p else p

    weights = cfg.weights  # a file, or a pretrained name such as "kinetics400"
    if weights and Path(weights).expanduser().exists():
        weights = absolute(weights)
    return dataclasses.replace(cfg, data=absolute(cfg.data) or "", out=absolute(cfg.out) or "",
                               labels=[absolute(x) or x for x in cfg.labels], weights=weights)


def parse_config(argv: Sequence[str], task: str) -> tuple[TrainConfig, bool, bool]:
    """(config, resume?, print_only?) from command-line arguments."""
    args = vars(build_parser(task).parse_args(list(argv)))
    overrides = {k: v for k, v in args.items() if k not in _OWN}
    if args.get("resume"):
        return _resume_config(args["resume"], overrides, task), True, bool(args.get("print_config"))
    cfg = resolve_config(task=task, arch=overrides.pop("arch", None), config_file=args.get("config"),  # type: ignore
                         overrides=overrides)
    if not args.get("print_config"):
        if not cfg.data:
            raise ConfigError("--data TUBES is required (a folder with index.csv, or the index.csv path)")
        if not cfg.out:
            raise ConfigError("--out RUN_DIR is required")
    return _absolute(cfg), False, bool(args.get("print_config"))


def main(argv: Optional[Sequence[str]] = None, task: Optional[str] = None) -> int:
    """Run the command; returns the exit status (0 done, 2 error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if task is None:
        if not argv or argv[0] not in ("3d", "2d"):
            print("usage: python -m train.cli {3d,2d} [options]   (same options as train3d / train2d)",
                  file=sys.stderr)
            return 2
        task, argv = argv[0], argv[1:]
    rank = int(os.environ.get("RANK", "0"))
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    from models3d import WeightsError

    cfg: Optional[TrainConfig] = None
    try:
        cfg, resume, print_only = parse_config(argv, task)
        if print_only:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from .loop import train

        result = train(cfg, resume=resume)
        if rank == 0:
            print(f"done: {result.global_step} steps; best validation log loss {result.best_val_loss:.4f}; "
                  f"checkpoints in {result.run_dir} (best.pt, last.pt)")
        return 0
    except KeyboardInterrupt:
        if cfg is not None and cfg.out and (Path(cfg.out) / "last.pt").is_file():
            print(f"{prefix}interrupted; continue with train{task} --resume {cfg.out}", file=sys.stderr)
        else:
            print(f"{prefix}interrupted before the first checkpoint; nothing to resume", file=sys.stderr)
        return 130
    except (FacetubesError, WeightsError) as e:
        print(f"{prefix}error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug or an unforeseen failure: still one line; FACETUBES_DEBUG=1 shows the traceback
        if os.environ.get("FACETUBES_DEBUG"):
            raise
        print(f"{prefix}error: {one_line(e)} (rerun with FACETUBES_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def main_3d() -> int:
    """Console script ``train3d``."""
    return main(task="3d")


def main_2d() -> int:
    """Console script ``train2d``."""
    return main(task="2d")


if __name__ == "__main__":
    sys.exit(main())
