"""The training loop on CPU: checkpoints, exact resume, failure behaviour, the CLI, train2d.

Most runs use the registered stand-in ``tiny3d``/``tiny2d`` (test_train_fixtures.py) so that each takes about a
second; the CLI run trains the real registry ``mc3`` (4 frames x 16 px), and a slow test trains ``seresnext50``."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_fixtures import make_tube_set

import models3d
import train.loop as loop
from facetubes.manifest import read_index
from train.cli import main
from train.config import TrainConfig
from train.errors import TrainError
from train.augment import val_transform
from train.data import TubeDataset
from train.loop import Trainer, train
from train.metrics import log_loss
from train.splits import load_records, make_split


@pytest.fixture(scope="module")
def tubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tubes")
    make_tube_set(root, n_groups=6, size=24, n_frames=8)
    return root


def tiny(data: Path, out: Path, **kw) -> TrainConfig:
    """tiny3d at 4 frames x 16 px; 4 training groups -> 8 clips per balanced epoch -> 2 steps of 4."""
    base = dict(arch="tiny3d", data=str(data), out=str(out), clip_len=4, crop_size=16, batch_size=4, epochs=2,
                num_workers=0, progress=False, val_fraction=0.34, seed=0, device="cpu", save_every_minutes=0,
                lr=1e-3)
    base.update(kw)
    return TrainConfig(**base).validate()


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


class Crash(Exception):
    pass


def _crash_at(step: int):
    def after_step(self: Trainer) -> None:
        if self.global_step == step:
            raise Crash(f"simulated kill at step {step}")
    return after_step


@pytest.fixture(scope="module")
def straight(tubes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = train(tiny(tubes, out))
    assert result.global_step == result.total_steps == 4
    return out


def test_run_writes_checkpoints_metrics_plot_and_config(straight: Path) -> None:
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.yaml", "split.csv", "train.log"):
        assert (straight / name).is_file(), name
    rows = _rows(straight)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    for r in rows:
        assert 0.0 <= float(r["val_auc"]) <= 1.0 and float(r["val_loss"]) > 0 and float(r["clips_per_s"]) > 0
        assert r["train_clips"] == "8" and r["val_tubes"] == "4" and r["bad_tubes"] == "0"
        assert r["val_acc_real"] != "" and r["val_acc_fake"] != ""
    assert (straight / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_load_with_models3d(straight: Path) -> None:
    model = models3d.create_model("tiny3d", weights=straight / "best.pt")
    ckpt = torch.load(straight / "best.pt", weights_only=True)
    assert model.num_classes == 2 and ckpt["arch"] == "tiny3d" and ckpt["config"]["clip_len"] == 4
    assert (model.preset.clip_len, model.preset.crop_size) == (4, 16)  # what it was trained on
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k])
    last = torch.load(straight / "last.pt", weights_only=True)
    assert last["train"]["epoch"] == 2 and last["train"]["global_step"] == 4
    assert {"optimizer", "scheduler", "scaler", "sampler", "rng"} <= set(last["train"])


@pytest.mark.parametrize("crash_step, save_every", [(3, 0.0), (2, 1e-9)], ids=["epoch-boundary", "mid-epoch"])
def test_killed_run_resumes_to_identical_weights(tubes: Path, straight: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, crash_step: int,
                                                 save_every: float) -> None:
    cfg = tiny(tubes, tmp_path / "run", save_every_minutes=save_every)
    with monkeypatch.context() as m:
        m.setattr(Trainer, "after_step", _crash_at(crash_step))
        with pytest.raises(Crash):
            train(cfg)
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train"]
    assert (saved["epoch"], saved["epoch_step"]) == ((1, 0) if crash_step == 3 else (0, 1))
    with pytest.raises(TrainError, match="already holds a run"):
        train(cfg)
    train(cfg, resume=True)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert b["train"]["global_step"] == 4
    for ra, rb in zip(_rows(straight), _rows(tmp_path / "run")):
        for k in ("epoch", "step", "lr", "train_loss", "val_loss", "val_auc"):
            assert ra[k] == rb[k], k


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tubes: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_loss = loop.soft_target_loss

    def poisoned(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = real_loss(logits, targets)
        return loss * float("nan") if calls["n"] > 2 else loss  # epoch 1 (2 steps) is fine

    monkeypatch.setattr(loop, "soft_target_loss", poisoned)
    with pytest.raises(TrainError, match=r"loss became nan at epoch 2 step 1.*last good checkpoint"):
        train(tiny(tubes, tmp_path / "run"))
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["train"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_diverging_weights_stop_with_a_one_line_error(tubes: Path, tmp_path: Path) -> None:
    """A huge learning rate and one step per epoch: the step's loss is finite, but its update leaves non-finite
    weights, which the validation pass sees first. The run stops with a TrainError, keeping no broken checkpoint."""
    with pytest.raises(TrainError, match=r"outputs became non-finite after epoch 1 .*lower --lr.*last good"):
        train(tiny(tubes, tmp_path / "run", lr=1e30, max_grad_norm=0.0, batch_size=8))
    assert not (tmp_path / "run" / "best.pt").exists()


def test_corrupt_tube_is_skipped_counted_and_logged(tubes: Path, tmp_path: Path) -> None:
    data = tmp_path / "tubes"
    make_tube_set(data, n_groups=6, size=24, n_frames=8)
    cfg = tiny(data, tmp_path / "run", accum_steps=2, epochs=2)
    split = make_split(load_records(data), mode="random", val_fraction=0.34, seed=0)
    victim = next(r for r in split.train if r.label == 0)  # every real is drawn every epoch
    victim.path.write_bytes(b"\x00\x00\x00 garbage, not an mp4")
    result = train(cfg)
    assert result.global_step == result.total_steps == 2  # 2 batches / accum 2 = 1 step per epoch
    assert [int(r["bad_tubes"]) for r in _rows(tmp_path / "run")] == [1, 1]
    assert [r["train_clips"] for r in _rows(tmp_path / "run")] == ["8", "8"]  # a substitute took its place
    assert str(victim.path) in (tmp_path / "run" / "train.log").read_text()


def test_unreachable_data_stops_the_run_instead_of_training_on_nothing(tmp_path: Path) -> None:
    data = tmp_path / "tubes"
    make_tube_set(data, n_groups=6, size=24, n_frames=8)
    split = make_split(load_records(data), mode="random", val_fraction=0.34, seed=0)
    for r in split.train:  # every training read fails: batches come out empty (a zero-weight stand-in runs)
        r.path.write_bytes(b"gone")
    with pytest.raises(TrainError, match=r"tube reads failed in epoch 1 against 0 good clips"):
        train(tiny(data, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cli_errors_are_one_line(tubes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reals = [r for r in read_index(tubes) if r.label == 0]
    from facetubes.manifest import write_index

    (tmp_path / "reals").mkdir()
    write_index(tmp_path / "reals" / "index.csv", reals)
    cases = [
        (["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r1")], "no such index"),
        (["--data", str(tmp_path / "reals"), "--out", str(tmp_path / "r2"), "--arch", "tiny3d"],
         "only real tubes"),
        (["--data", str(tubes), "--out", str(tmp_path / "r3"), "--arch", "seresnext50"], "use train2d"),
        (["--data", str(tubes), "--out", str(tmp_path / "r4"), "--arch", "nope"], "unknown model 'nope'"),
        # the arch is checked before any data is read: a typo is named even when --data is wrong too
        (["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r4b"), "--arch", "nope"],
         "unknown model 'nope'"),
        (["--data", str(tubes), "--out", str(tmp_path / "r5"), "--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--data", str(tubes), "--out", str(tmp_path / "r5b"), "--seed", "-1"], "--seed: must be >= 0"),
        (["--data", str(tubes), "--out", str(tmp_path / "r5c"), "--lr", "inf"], "--lr: must be a finite number"),
        (["--data", str(tubes), "--out", str(tmp_path / "r5d"), "--crop-size", "100000"], "--crop-size: must be <="),
        (["--resume", str(tmp_path / "r6")], "not a training run folder"),
        (["--data", str(tubes), "--out", str(tmp_path / "r7"), "--weights", str(tmp_path / "missing.pt"),
          "--arch", "tiny3d"], "missing.pt"),
    ]
    for argv, match in cases:
        assert main(argv, task="3d") == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and "Traceback" not in err, (argv, err)
        assert err.count("\n") == 1
    # a failed start leaves no run folder behind (the folders did not exist before)
    assert not [p.name for p in tmp_path.glob("r[0-9]*")]


def test_cli_unexpected_failures_are_one_line_too(tubes: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a, **k):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(loop.Trainer, "fit", broken)
    argv = ["--arch", "tiny3d", "--batch-size", "4", "--clip-len", "4", "--crop-size", "16", "--no-progress"]
    assert main([*argv, "--data", str(tubes), "--out", str(tmp_path / "run")], task="3d") == 2
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: something unforeseen (rerun with FACETUBES_DEBUG=1 for the traceback)\n"
    monkeypatch.setenv("FACETUBES_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main([*argv, "--data", str(tubes), "--out", str(tmp_path / "run2")], task="3d")


def test_every_tube_unreadable_is_an_error_not_a_finished_run(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "MAX_BAD_TUBES", 10_000)  # a small data set: fewer failures than the usual threshold
    data = tmp_path / "tubes"
    make_tube_set(data, n_groups=6, size=24, n_frames=8)
    for r in read_index(data):
        r.path.write_bytes(r.path.read_bytes()[:300])
    with pytest.raises(TrainError, match="tube reads failed in epoch 1 against 0 good clips"):
        train(tiny(data, tmp_path / "run"))


def test_cli_trains_a_registry_model_and_enforces_resume_rules(tubes: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    argv = ["--arch", "mc3", "--data", str(tubes / "index.csv"), "--out", str(run), "--clip-len", "4",
            "--crop-size", "16", "--batch-size", "4", "--epochs", "1", "--num-workers", "0", "--no-progress",
            "--val-fraction", "0.34", "--device", "cpu"]
    assert main(argv, task="3d") == 0
    assert "done: 2 steps" in capsys.readouterr().out
    model = models3d.create_model("mc3", weights=run / "best.pt")
    assert (model.preset.clip_len, model.preset.crop_size, model.num_classes) == (4, 16, 2)
    saved = (run / "config.yaml").read_text()
    assert "arch: mc3" in saved and f"data: {tubes / 'index.csv'}" in saved
    assert main(argv, task="3d") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["--resume", str(run), "--lr", "0.5"], task="3d") == 2
    assert "--lr cannot change when resuming" in capsys.readouterr().err
    assert main(["--resume", str(run), "--num-workers", "1"], task="3d") == 0  # finished: nothing left to run
    assert main(["--resume", str(run)], task="2d") == 2
    assert "resume it with train3d" in capsys.readouterr().err


def _spy_validation(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    real_validate = Trainer.validate

    def spy(self: Trainer) -> dict:
        for batch in self.val_loader:
            seen.append(tuple(batch.counts.tolist()))
        return real_validate(self)

    monkeypatch.setattr(Trainer, "validate", spy)
    return seen


def test_train2d_frames_bce_and_median_validation(tubes: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy_validation(monkeypatch)
    run = tmp_path / "run"
    cfg = dataclasses.replace(tiny(tubes, run, arch="tiny2d", epochs=2, crop_size=16, clip_len=None,
                                   mix="mixup_or_cutmix", val_frames=4, val_batch_size=2, hflip_p=0.5, vflip_p=0.5,
                                   channel_perm_p=1.0, rrc=False), task="2d").validate()
    result = train(cfg)
    assert result.global_step == 4 and 0 <= result.metrics["val_auc"] <= 1
    assert seen == [(4, 4), (4, 4)] * 2  # 4 validation tubes x 4 frames, 2 tubes per batch, 2 epochs
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["num_classes"] == 1 and ckpt["preset"]["is_3d"] is False and ckpt["preset"]["crop_size"] == 16
    # the validation score of a tube is the median of its per-frame sigmoids
    model = models3d.create_model("tiny2d", weights=run / "best.pt").eval()
    val_tubes = {row["tube"] for row in csv.DictReader((run / "split.csv").open()) if row["split"] == "val"}
    recs = [r for r in read_index(tubes) if r.tube in val_tubes]
    ds = TubeDataset(recs, mode="frames", transform=val_transform(cfg, 16), train=False, frames_per_tube=4)
    with torch.no_grad():
        probs = [float(np.median(torch.sigmoid(model(model.preset.normalize(ds[i].x)))[:, 0].numpy()))
                 for i in range(len(ds))]
    assert log_loss([r.label for r in recs], probs) == pytest.approx(ckpt["metrics"]["val_loss"], rel=1e-5)


@pytest.mark.slow
def test_train2d_seresnext50(tubes: Path, tmp_path: Path) -> None:
    """The published 2D configuration (configs/seresnext50.yaml) at 32 px, one epoch."""
    run = tmp_path / "run"
    argv = ["--data", str(tubes), "--out", str(run), "--crop-size", "32", "--batch-size", "4", "--epochs", "1",
            "--num-workers", "0", "--no-progress", "--val-fraction", "0.34", "--val-frames", "3", "--device", "cpu"]
    assert main(argv, task="2d") == 0
    model = models3d.create_model("seresnext50", weights=run / "best.pt")
    assert model.num_classes == 1 and model.preset.crop_size == 32
    rows = _rows(run)
    assert len(rows) == 1 and rows[0]["val_tubes"] == "4"


@pytest.mark.parametrize("step, message", [(1, "interrupted before the first checkpoint; nothing to resume"),
                                           (3, "interrupted; continue with train3d --resume")])
def test_ctrl_c_names_the_resume_command_only_when_there_is_a_checkpoint(
        tubes: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, step: int,
        message: str) -> None:
    def interrupt(self: Trainer) -> None:
        if self.global_step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "after_step", interrupt)
    argv = ["--arch", "tiny3d", "--batch-size", "4", "--clip-len", "4", "--crop-size", "16", "--no-progress",
            "--val-fraction", "0.34", "--num-workers", "0", "--epochs", "2", "--save-every-minutes", "0"]
    assert main([*argv, "--data", str(tubes), "--out", str(tmp_path / "run")], task="3d") == 130
    assert message in capsys.readouterr().err
