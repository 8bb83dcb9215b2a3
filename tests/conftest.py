"""Shared fixtures: small synthetic videos with ground truth, and a detector that returns the ground truth."""

from __future__ import annotations

import os

import numpy as np
import pytest

# 2 cores shared by the test process and the video codecs: keep torch from oversubscribing. Under pytest-xdist
# (`make test` runs one worker per core) every worker gets one thread, so the workers do not fight for the cores.
# (The controller process sets 2 first and its workers inherit it, hence the override.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
else:
    os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    """Under xdist's ``worksteal`` scheduling each worker starts with a contiguous half of the test list: deal the
    long ``slow`` tests, longest first, to the heads of the two halves, so both workers start on one at once and
    the short tests fill in around them (otherwise both can land on one worker, and the run takes their sum)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def budget(item) -> float:  # the longest tests declare the longest timeouts
        marker = item.get_closest_marker("timeout")
        return float(marker.args[0]) if marker and marker.args else 0.0

    slow = sorted((it for it in items if it.get_closest_marker("slow")), key=budget, reverse=True)
    fast = [it for it in items if not it.get_closest_marker("slow")]
    half = len(fast) // 2
    items[:] = slow[0::2] + fast[:half] + slow[1::2] + fast[half:]


class GroundTruthDetector:
    """A detector that answers with the synthetic video's ground-truth boxes.

    It relies on the pipeline's contract that detection sees frames ``0, every, 2*every, ...`` in order; boxes are
    returned in the pixels of the (downscaled) frames it receives, like a real detector.
    """

    name = "ground-truth"
    min_face_size = 20.0

    def __init__(self, gt, every: int = 10) -> None:
        self.gt = gt
        self.every = every
        self.calls = 0
        self.frames_seen: list[int] = []

    def reset(self) -> None:
        self.calls = 0

    def detect(self, frames: np.ndarray):
        out = []
        h, w = frames.shape[1:3]
        sx, sy = w / self.gt.width, h / self.gt.height
        for _ in frames:
            idx = self.calls * self.every
            self.calls += 1
            self.frames_seen.append(idx)
            boxes = []
            for person_boxes in self.gt.boxes.values():
                if idx < len(person_boxes) and np.isfinite(person_boxes[idx]).all():
                    x1, y1, x2, y2 = person_boxes[idx]
                    boxes.append([x1 * sx, y1 * sy, x2 * sx, y2 * sy])
            b = np.asarray(boxes, np.float32).reshape(-1, 4)
            out.append((b, np.full(len(b), 0.99, np.float32)))
        return out


@pytest.fixture(scope="module")
def single_thread():
    """Run a module with one torch thread, then restore: tiny model inputs gain nothing from threads, and on a
    shared 2-core machine OpenMP spin-waiting under contention made 2-thread runs up to 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gt_detector():
    return GroundTruthDetector
