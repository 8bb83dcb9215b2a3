"""``facetubes check-ensemble``: everything about an ensemble file that can be checked before a video is read.

Per member: the expected weights file, found or missing, its size and SHA-256, the architecture detected from the
file's keys and shapes, and the result of one dummy forward pass at the member's input shape (with its resolved
preprocessing). Problems of one member do not hide those of the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

import models3d
from facetubes.errors import ConfigError, one_line

from .engine import check_member
from .members import _create, _where, resolve_member
from .spec import load_spec

__all__ = ["MemberCheck", "check_ensemble", "format_check", "detect_arch"]


@dataclass
class MemberCheck:
    """The checks of one member; ``ok`` when the file was found, loads, and the forward pass works."""

    name: str
    arch: str
    path: Path
    found: bool = False
    size: int = 0
    sha256: str = ""
    detected: str = ""
    forward: str = ""
    ok: bool = False
    problem: str = ""


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def detect_arch(path: Path, arch: str) -> str:
    """The architecture the file's keys and shapes say, e.g. ``dfdc1st (tf_efficientnet_b7_ns)``, ``i3d``, or
    ``unknown``. Never raises (an unreadable file gives ``unreadable: ...``)."""
    from models3d.frame2d import _EFFNET_HEAD
    from models3d.registry import identify_arch
    from models3d.weights import WeightsError, _strip_prefixes, read_state_dict

    try:
        raw, kind, _meta = read_state_dict(path, arch)
    except WeightsError as e:
        return f"unreadable: {one_line(e)}"
    state, _ = _strip_prefixes(raw)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if "encoder.classifier.weight" in shapes and "fc.weight" in shapes:
        head = shapes.get("encoder.conv_head.weight", ())[:2]
        for i, fc in enumerate(_EFFNET_HEAD):
            if tuple(head) == fc:
                return f"dfdc1st (tf_efficientnet_b{i}_ns encoder), {shapes['fc.weight'][0]} output(s)"
    if state and all(k.startswith(("backbone.", "fc.")) for k in state) and "backbone.layer0.conv1.weight" in shapes:
        return f"seresnext50 (DFDC 5th place 2D layout: backbone. + fc), {shapes.get('fc.weight', (0,))[0]} output(s)"
    try:
        guess = identify_arch(shapes)
    except Exception:  # a registered builder that cannot run on the meta device
        guess = None
    return f"{guess} ({kind})" if guess else f"unknown ({kind}, {len(shapes)} tensors)"


def check_ensemble(path: str, *, device: str = "cpu", hash_files: bool = True) -> list[MemberCheck]:
    """Check every member of the ensemble file ``path``. Raises ConfigError only for an unreadable file/schema."""
    spec = load_spec(path, known_archs=models3d.list_models())
    dev = torch.device(device)
    results = []
    for m in spec.members:
        r = MemberCheck(name=m.name, arch=m.arch, path=m.weights)
        results.append(r)
        if not m.weights.is_file():
            r.problem = "weights file not found" if not m.weights.exists() else "weights path is not a file"
            continue
        r.found = True
        r.size = m.weights.stat().st_size
        if hash_files:
            r.sha256 = sha256(m.weights)
        r.detected = detect_arch(m.weights, m.arch)
        where = _where(spec, m)
        try:
            model = _create(m, where).eval().to(dev)
            member = resolve_member(m, model, where=where)
            check_member(member, dev)
        except (ConfigError, ValueError) as e:
            r.problem = one_line(e).replace(f"{where}: ", "")
            continue
        shape = (1, 3, member.clip_len, member.crop_size, member.crop_size) if member.is_3d else \
            (1, 3, member.crop_size, member.crop_size)
        r.forward = (f"ok on {tuple(shape)}, {model.num_classes} output(s)"
                     + (f", fake class {member.fake_class}" if model.num_classes == 2 else "")
                     + f", recipe {member.recipe}, {member.channels}")
        r.ok = True
    return results


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def format_check(results: list[MemberCheck], width: Optional[int] = None) -> str:
    lines = []
    for r in results:
        lines.append(f"[{'ok' if r.ok else 'FAIL'}] {r.name} ({r.arch})")
        lines.append(f"    file: {r.path} " + (f"found, {_size(r.size)}" if r.found else "MISSING"))
        if r.sha256:
            lines.append(f"    sha256: {r.sha256}")
        if r.detected:
            lines.append(f"    detected: {r.detected}")
        if r.forward:
            lines.append(f"    forward: {r.forward}")
        if r.problem:
            lines.append(f"    problem: {r.problem}")
    bad = sum(not r.ok for r in results)
    lines.append(f"{len(results) - bad} of {len(results)} members ok" + (f"; {bad} with problems" if bad else ""))
    return "\n".join(lines)
