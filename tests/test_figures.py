"""docs/make_figures.py: the per-person details drawing works on a record of the agreed details format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def figures():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(n_tracks: int = 2) -> dict:
    tracks = []
    for k in range(n_tracks):
        tracks.append({"track": k, "start_frame": 10 * k, "stop_frame": 10 * k + 60,
                       "boxes": [[10 * k + f, 20.0 + 100 * k, 30.0, 80.0 + 100 * k, 90.0] for f in range(0, 60, 10)],
                       "members": {"effnet_b7": 0.2 + 0.6 * k, "i3d": 0.3},
                       "frames": {"effnet_b7": [[10 * k + f, 0.2 + 0.6 * k] for f in range(0, 60, 3)]}})
    return {"video": "v", "source": "missing.mp4", "prob": 0.5, "status": "ok", "note": "",
            "members": {"effnet_b7": 0.8, "i3d": 0.3}, "tracks": tracks}


def test_draw_details_one_row_per_track_with_every_member(figures):
    import matplotlib.pyplot as plt

    fig = figures.draw_details(_record(2), None, note="hand-made")
    try:
        axes = fig.axes
        assert len(axes) == 4                                   # (box, probabilities) per track
        for row in range(2):
            plot = axes[2 * row + 1]
            labels = [line.get_label() for line in plot.get_lines()]
            assert "effnet_b7 (per frame)" in labels
            assert sum(lbl.startswith("i3d: track") for lbl in labels) == 1
            assert plot.get_xlim() == (10 * row, 10 * row + 60)
            assert len(axes[2 * row].patches) == 1              # the track's box
        assert "hand-made" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_draw_details_refuses_a_record_without_tracks(figures):
    with pytest.raises(ValueError, match="no tracks"):
        figures.draw_details({**_record(0), "tracks": []})
