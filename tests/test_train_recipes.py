"""Every shipped frame recipe (train/configs/dfdc-*.yaml) trains one epoch on the synthetic sample, on CPU, through
``train2d --config``, and its resolved configuration is saved with the run.

The published sizes (B7 at 380, Xception at 150...) do not fit a CPU test: every run overrides ``--arch
efficientnet_b0 --crop-size 32`` (a real timm backbone from the registry, random weights) and the batch and epoch
counts; everything else comes from the recipe file, which the test compares with the saved ``config.yaml``.
The synthetic tubes carry MTCNN-style landmarks in their ``tubes.json``, so part dropout runs where a recipe asks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_train_fixtures import make_tube_set

from facetubes.manifest import read_index
from train.cli import main
from train.config import CONFIG_DIR, coerce, read_yaml
from train.metrics import MetricsLog

RECIPES = sorted(p.stem for p in CONFIG_DIR.glob("dfdc-*.yaml"))
OVERRIDES = {"arch": "efficientnet_b0", "crop_size": 32, "batch_size": 4, "epochs": 1, "val_frames": 2,
             "num_workers": 0, "progress": False, "device": "cpu", "val_fraction": 0.5, "focal_epochs": 1}


@pytest.fixture(scope="module")
def tubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 real + 4 fake 32-px tubes of 12 frames; each video's tubes.json holds landmarks every 10th frame."""
    root = tmp_path_factory.mktemp("recipe_tubes")
    make_tube_set(root, n_groups=4, size=32, n_frames=12)
    lm = [[10.0, 12.0], [22.0, 12.0], [16.0, 17.0], [11.0, 23.0], [21.0, 23.0]]
    for rec in read_index(root):
        manifest = {"video": rec.video, "tubes": [{"tube": rec.tube, "track": 0,
                                                   "tube_landmarks": [[f, lm] for f in (0, 10)]}]}
        (rec.path.parent / "tubes.json").write_text(json.dumps(manifest))
    return root


def test_every_issue_recipe_is_shipped() -> None:
    assert RECIPES == ["dfdc-1st", "dfdc-5th-2d", "dfdc-67th", "dfdc-79th", "dfdc-bronze"]


def _argv(recipe: str, data: Path, out: Path) -> list[str]:
    argv = ["--config", str(CONFIG_DIR / f"{recipe}.yaml"), "--data", str(data), "--out", str(out)]
    for k, v in OVERRIDES.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    return argv


@pytest.fixture
def no_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    """curves.png costs ~2 s per run here and is tested in test_train_loop.py."""
    monkeypatch.setattr(MetricsLog, "plot", lambda self: None)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_one_epoch_and_saves_its_resolved_config(recipe: str, tubes: Path, tmp_path: Path,
                                                               single_thread, no_plot) -> None:
    run = tmp_path / "run"
    published = read_yaml(CONFIG_DIR / f"{recipe}.yaml")
    if published.get("focal_epochs", 0) == 0:
        argv = _argv(recipe, tubes, run)
        i = argv.index("--focal-epochs")
        del argv[i:i + 2]
    else:
        argv = _argv(recipe, tubes, run)
    assert main(argv, task="2d") == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    for key, value in published.items():
        want = OVERRIDES[key] if key in OVERRIDES else coerce(key, value, "recipe")
        got = coerce(key, saved[key], "saved")
        assert got == want, key
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["val_tubes"] == "4" and np.isfinite(float(rows[0]["val_loss"]))
    assert (run / "best.pt").is_file()
    log = (run / "train.log").read_text()
    if published.get("part_dropout_p", 0) > 0:
        assert "without landmarks" not in log  # every tube had landmarks


# The configuration of the 2D learning proof (also the command documented in benchmarks/RESULTS.md).
LEARN_2D_FLAGS = ["--config", "dfdc-bronze", "--arch", "resnet34", "--crop-size", "48", "--batch-size", "16",
                  "--epochs", "6", "--focal-epochs", "1", "--frame-every", "4", "--lr", "1e-3", "--val-fraction",
                  "0.25", "--val-frames", "8", "--num-workers", "1", "--device", "cpu", "--seed", "0",
                  "--save-every-minutes", "0"]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_bronze_recipe_learns_synthetic_fakes_on_held_out_identities(tmp_path: Path, single_thread) -> None:
    """The bronze recipe (paired real/fake frames, RandMerge, mixup, a focal stage) with a random-weight ResNet-34
    at 48 px separates the synthetic fakes of identities it never saw (tests/test_train_learns.py's data)."""
    from test_train_learns import make_face_tubes

    make_face_tubes(tmp_path / "tubes")
    run = tmp_path / "run"
    assert main(LEARN_2D_FLAGS + ["--data", str(tmp_path / "tubes"), "--out", str(run), "--no-progress"],
                task="2d") == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    split = list(csv.DictReader((run / "split.csv").open()))
    val_groups = {r["group"] for r in split if r["split"] == "val"}
    assert val_groups and val_groups.isdisjoint({r["group"] for r in split if r["split"] == "train"})
    last = float(rows[-1]["val_auc"])
    print(f"\nval AUC per epoch: {[r['val_auc'] for r in rows]}")
    assert last >= 0.75, f"final validation AUC {last:.3f} is not clearly above chance"


def test_a_killed_recipe_run_resumes_to_identical_weights(tubes: Path, tmp_path: Path, single_thread, no_plot,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Paired sampling over every 10th frame, per-class BCE, clipped targets, RandMerge, SGD + plateau: a run
    killed inside its second epoch and resumed ends with the weights of an uninterrupted run (tiny2d stand-in)."""
    import dataclasses

    import torch

    from train.config import resolve_config
    from train.loop import Trainer, train

    def cfg_for(out: Path):
        cfg = resolve_config(task="2d", arch="tiny2d", config_file="dfdc-bronze", overrides=dict(
            data=str(tubes), out=str(out), crop_size=16, batch_size=4, epochs=2, focal_epochs=0,
            loss="bce_classes", label_clip=(0.01, 0.99), optimizer="sgd", lr=0.05, schedule="plateau",
            plateau_patience=0, val_frames=2, num_workers=0, progress=False, device="cpu", val_fraction=0.5,
            save_every_minutes=0))
        return dataclasses.replace(cfg, save_every_minutes=1e-9)  # last.pt after every step

    straight = tmp_path / "straight"
    train(cfg_for(straight))

    class Crash(Exception):
        pass

    def crash(self: Trainer) -> None:
        if self.global_step == 4:  # last.pt then holds step 3: epoch 2, step 1
            raise Crash()

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(Trainer, "after_step", crash)
        with pytest.raises(Crash):
            train(cfg_for(run))
    saved = torch.load(run / "last.pt", weights_only=True)["train"]
    assert (saved["epoch"], saved["epoch_step"]) == (1, 1)  # inside epoch 2
    train(cfg_for(run), resume=True)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert a["train"]["global_step"] == b["train"]["global_step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["train"]["scheduler"] == b["train"]["scheduler"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["lr"] for r in rows] == [r["lr"] for r in csv.DictReader((straight / "metrics.csv").open())]
