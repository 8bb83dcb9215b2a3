"""End to end on synthetic videos: extract (MTCNN), train two members with the train package's CLI, predict
held-out raw videos with the ensemble (in-memory tubes), evaluate. Slow: a few minutes on 2 CPU cores.

The members follow the recipe that learns the synthetic fakes on CPU from random weights
(benchmarks/RESULTS.md, Training, section 1: registry mc3, 8 frames x 48 px, batch 8, AdamW one-cycle to 3e-4, the
published augmentations with horizontal flips), trained on tubes that `facetubes extract` cuts tight around the
face (no margin) with a crop that follows the face (`--crop follow`; a static box over the union of a moving face's
boxes leaves the face small in the crop, and the members then stay at chance). The fakes are blended at full
opacity with a strong colour mismatch (``FAKE``), and the members train for 20 epochs (140 steps). With the
default, subtler blend and 14 epochs (98 steps) training ended right where it starts to separate the classes, and
the members' AUCs swung between 0.49 and 0.92 with the seed, the margin and the run (a CI run failed at 0.72; tube
encoding is not bit-reproducible, see the README). The strong blend alone still left one member of six at 0.54.
With both, four seeds on one set of tubes reached test AUC 0.98-1.0 at log loss 0.23-0.28.
To keep `make test` short the members now train at 32 px for 12 epochs (84 steps; a step at 32 px costs 0.42x one
at 48 px): measured members 1.00 and 0.96, ensemble 1.00, 403 CPU-s for the whole test (it was about 3x that).
The members differ by their seed
(initialisation, sampler, augmentation). Training videos and the predicted test videos come from different
`make_dataset` seeds, so the test identities are never seen in training. Asserted: each member ranks the test
videos clearly better than chance (AUC >= 0.75), and the ensemble (mean of probabilities) ranks them at least as
well as its best member within TOLERANCE (5 of the 100 real/fake pairs); the README records the measured figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from facetubes.synthetic import FakeSpec

pytestmark = pytest.mark.slow
FAKE = FakeSpec(opacity=1.0, color_shift=0.25)  # a clearly visible blend: the test checks the chain, not subtlety
N_TEST = 10  # real and fake test videos each: one discordant real/fake pair moves an AUC by 1 / N_TEST**2 = 0.01
TOLERANCE = 0.05  # ensemble vs best member: 5 of the 100 real/fake pairs, below one standard error of the AUC
VIDEO = dict(scenario="one", width=256, height=192, n_frames=48, write_truth=False)
RECIPE = ["--arch", "mc3", "--clip-len", "8", "--crop-size", "32", "--batch-size", "8", "--epochs", "12",
          "--lr", "3e-4", "--split", "column", "--num-workers", "1", "--device", "cpu", "--no-progress"]


@pytest.mark.timeout(900)
def test_extract_train_predict_evaluate(tmp_path: Path):
    from facetubes.cli import main as facetubes_main
    from facetubes.synthetic import make_dataset
    from infer.cli import main as infer_main
    from train.cli import main as train_main

    # Training videos: 32 identities, a real video and a fake of each; 4 identities (split=val) for validation.
    make_dataset(tmp_path / "train_videos", 32, 32, seed=1, val_fraction=0.125, fake=FAKE, **VIDEO)
    # Test videos: other identities (seed 2), predicted from the raw videos.
    test_videos = tmp_path / "test_videos"
    meta = make_dataset(test_videos, N_TEST, N_TEST, seed=2, fake=FAKE, **VIDEO)
    labels = test_videos / "metadata.json"

    tubes = tmp_path / "tubes"
    assert facetubes_main(["extract", str(tmp_path / "train_videos"), "--out", str(tubes), "--labels",
                           str(tmp_path / "train_videos" / "metadata.json"), "--min-frames", "16", "--size", "72",
                           "--crop", "follow", "-q"]) == 0
    for seed in (0, 1):
        assert train_main(RECIPE + ["--data", str(tubes), "--out", str(tmp_path / f"runs/s{seed}"),
                                    "--seed", str(seed)], task="3d") == 0

    ens = tmp_path / "ensemble.yaml"
    ens.write_text("members:\n"
                   "  - {name: mc3_s0, arch: mc3, weights: runs/s0/last.pt}\n"
                   "  - {name: mc3_s1, arch: mc3, weights: runs/s1/last.pt}\n"
                   "extract: {size: 72, crop: follow}\n")
    out = tmp_path / "pred.csv"
    assert facetubes_main(["predict", str(test_videos), "-e", str(ens), "-o", str(out), "--per-model", "-q",
                           "--device", "cpu"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["filename"] for r in rows) == sorted(meta)
    assert list(rows[0]) == ["filename", "label", "n_tubes", "status", "error", "mc3_s0", "mc3_s1"]
    for r in rows:
        assert r["status"] == "ok" and int(r["n_tubes"]) >= 1, r
        mean = (float(r["mc3_s0"]) + float(r["mc3_s1"])) / 2
        assert float(r["label"]) == pytest.approx(min(max(mean, 0.01), 0.99), abs=2e-6)

    assert infer_main(["evaluate", str(out), "--labels", str(labels)]) == 0
    report = json.loads((tmp_path / "pred_eval" / "report.json").read_text())
    assert report["n_evaluated"] == 2 * N_TEST and report["ensemble"]["n_fake"] == N_TEST
    assert report["correlation"]["n"] == 2 * N_TEST
    assert (tmp_path / "pred_eval" / "roc.png").stat().st_size > 0
    aucs = {name: m["auc"] for name, m in report["members"].items()}
    ens_auc = report["ensemble"]["auc"]
    print(f"\nensemble AUC {ens_auc:.3f}, members {aucs}")  # recorded in the README
    assert set(aucs) == {"mc3_s0", "mc3_s1"}
    # The members learned: held-out identities are ranked clearly better than chance. Under chance an AUC on
    # 10 + 10 videos has a standard deviation of 0.13 (Mann-Whitney), so 0.75 is ~2 of them above 0.5 (p ~ 0.03).
    for name, auc in aucs.items():
        assert auc >= 0.75, (name, aucs)
    # The requirement: the ensemble ranks at least as well as its best member, within TOLERANCE. Averaging
    # two members is not guaranteed to rank at least as well as the better one (measured: members 0.86 and 0.92,
    # ensemble 0.89: 3 of the 100 real/fake pairs behind), and on 10 + 10 videos an AUC near 0.9 has a standard
    # error of ~0.07 (Hanley-McNeil), so differences of a few pairs are noise, not a ranking.
    assert ens_auc >= max(aucs.values()) - TOLERANCE, (ens_auc, aucs)
