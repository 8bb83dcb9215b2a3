"""The code examples of README.md and docs/*.md run, so the documentation stays true.

Every fenced ```python and ```bash block of a page runs, in page order, in one fresh folder per page: the Python
blocks share one namespace, the bash blocks run with `bash -e` (this environment's `facetubes`, `train3d`,
`train2d` first on PATH), so a later block can use what an earlier one wrote. A block whose fence is preceded by
the line `<!-- skip -->` is not run (output listings, real weights, GPUs, clusters, installation).

The folder stands for the repository root after `make install`: it holds a copy of `examples/` and a small
synthetic sample, `videos/` (2 real + 2 manipulated 320x240 videos of 40 frames with a DFDC-style
`metadata.json`, one group marked `split=val`), `clip.mp4` (a copy of `videos/real_0.mp4`) and `tubes/`, the
sample's tubes (`ExtractConfig(min_frames=32, size=64)`, with labels and `index.csv`). docs/contributing.md
describes this for page authors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_LANGS = {"python": "python", "py": "python", "bash": "bash", "sh": "bash"}
SKIP_MARK = "<!-- skip -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
BLOCK_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One fenced code block: language, code (dedented to its fence), 1-based line of its fence, skipped."""

    lang: str
    code: str
    line: int
    skip: bool


def parse_blocks(text: str) -> list[Block]:
    """All fenced code blocks of a Markdown text, in order, nested in lists or admonitions or not.

    The language is the first word of the info string (```python title="x" -> python). A block is skipped when the
    last non-blank line before its fence is exactly `<!-- skip -->`. An unclosed fence is an error, since MkDocs
    would swallow the rest of the page into it.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        start = i
        body: list[str] = []
        i += 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: code fence {fence} is never closed")
        i += 1
        prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        lang = info.split()[0].lower() if info else ""
        blocks.append(Block(lang, "\n".join(body) + "\n", start + 1, prev == SKIP_MARK))
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in RUN_LANGS and not b.skip]


def doc_pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def _pages_with_examples() -> list[Path]:
    return [p for p in doc_pages() if runnable(parse_blocks(p.read_text(encoding="utf-8")))]


# --- the parser (cheap; these can fail on a wrong parse) --------------------------------------------------------

def test_parse_blocks_languages_skip_marks_and_indentation():
    text = textwrap.dedent("""\
        Intro.

        ```bash
        echo one
        ```

        <!-- skip -->
        ```python
        import gpu_only
        ```

        - a list item:

            ```python title="nested"
            x = 1
              y = 2
            ```

        ```yaml
        a: 1
        ```

        ````markdown
        ```python
        not a block of its own
        ```
        ````
        """)
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.skip) for b in blocks] == [
        ("bash", 3, False), ("python", 8, True), ("python", 14, False), ("yaml", 19, False), ("markdown", 23, False)]
    assert blocks[2].code == "x = 1\n  y = 2\n"
    assert blocks[4].code.startswith("```python\n")
    assert [b.line for b in runnable(blocks)] == [3, 14]


def test_parse_blocks_refuses_an_unclosed_fence():
    with pytest.raises(ValueError, match="line 2: code fence"):
        parse_blocks("text\n```python\nx = 1\n")


def test_every_page_parses_and_the_pages_have_examples():
    # An unclosed fence anywhere fails here; and the runner must find the examples it is meant to run.
    pages = {p.relative_to(ROOT).as_posix(): runnable(parse_blocks(p.read_text(encoding="utf-8")))
             for p in doc_pages()}
    assert pages["README.md"], "README.md has no runnable example (its quick start should run)"
    assert sum(len(b) for b in pages.values()) >= 10


# --- the examples -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """The prepared folder every page starts from (see the module docstring)."""
    from facetubes.synthetic import make_dataset

    root = tmp_path_factory.mktemp("docs-sample")
    make_dataset(root / "videos", 2, 2, seed=0, scenario="one", val_fraction=0.5, write_truth=False,
                 width=320, height=240, n_frames=40)
    shutil.copy(root / "videos" / "real_0.mp4", root / "clip.mp4")
    from facetubes import ExtractConfig, extract_batch, load_labels

    extract_batch([root / "videos"], root / "tubes", ExtractConfig(min_frames=32, size=64),
                  labels=load_labels([root / "videos" / "metadata.json"]), workers=1, progress=False)
    shutil.copytree(ROOT / "examples", root / "examples")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # One torch thread per process: tiny examples gain nothing from threads, and on a shared CPU OpenMP
    # spin-waiting made 2-thread runs many times slower.
    env["OMP_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    env.pop("FACETUBES_DEBUG", None)
    return env


def _run_block(page: str, block: Block, workdir: Path, namespace: dict) -> None:
    where = f"{page}:{block.line}"
    if RUN_LANGS[block.lang] == "python":
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report which example failed, and how
            pytest.fail(f"{where}: the python example raised {type(exc).__name__}: {exc}\n{block.code}",
                        pytrace=False)
        return
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=workdir, env=_env(),
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-3000:]
        pytest.fail(f"{where}: the bash example exited {proc.returncode}\n{block.code}\n--- output ---\n{out}",
                    pytrace=False)


@pytest.mark.parametrize("page", _pages_with_examples(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(page: Path, sample_root: Path, tmp_path: Path, monkeypatch, single_thread):
    workdir = tmp_path / "repo"
    shutil.copytree(sample_root, workdir)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    name = page.relative_to(ROOT).as_posix()
    namespace: dict = {"__name__": "__docs__"}
    for block in runnable(parse_blocks(page.read_text(encoding="utf-8"))):
        _run_block(name, block, workdir, namespace)
