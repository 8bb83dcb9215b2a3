"""Multi-process training under torchrun: 2 CPU processes, gloo backend, DistributedDataParallel.

One launch checks everything (a torchrun start costs seconds): shards, rank-0-only files, identical weights and
BatchNorm buffers on both ranks, per-rank RNG seeds, and that the gathered validation metric is the metric of the
one model that is saved (each rank validates with rank 0's BatchNorm statistics)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_fixtures import launcher_script, make_tube_set

from train.config import TrainConfig
from train.loop import Trainer
from train.runtime import DistEnv


@pytest.mark.timeout(300)
def test_torchrun_two_ranks_share_epochs_validate_one_model_and_only_rank0_writes(tmp_path: Path) -> None:
    tubes = tmp_path / "tubes"
    make_tube_set(tubes, n_groups=6, size=24, n_frames=8)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(launcher_script(tmp_path / "launch.py")), "3d", "--arch", "tiny3d", "--data", str(tubes),
           "--out", str(run), "--clip-len", "4", "--crop-size", "16", "--batch-size", "2", "--epochs", "2",
           "--num-workers", "0", "--no-progress", "--val-fraction", "0.34", "--device", "cpu", "--lr", "1e-3"]
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env, cwd=repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]

    # both ranks trained the same number of steps, each on its own half of every epoch, and ended in sync
    ranks = {int(m[0]): m for m in re.findall(
        r"rank (\d)/2: (\d+) optimizer steps, (\d+) clips, (\d+) checkpoint files written, weight checksum (\S+),"
        r" rank seed (\d+)", out)}
    assert set(ranks) == {0, 1}, out[-3000:]
    assert ranks[0][1] == ranks[1][1] == "4"  # 8 clips per epoch / 2 ranks / batch 2 = 2 steps x 2 epochs
    assert ranks[0][2] == ranks[1][2] == "8"
    assert int(ranks[0][3]) >= 3 and ranks[1][3] == "0"  # last.pt twice + best.pt at least once, rank 0 only
    assert ranks[0][4] == ranks[1][4]  # parameters and BatchNorm buffers, after the last validation
    assert ranks[0][5] != ranks[1][5]  # each rank its own dropout stream

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["train_clips"] for r in rows] == ["8", "8"]  # both shards counted
    assert [r["val_tubes"] for r in rows] == ["4", "4"]  # the validation shards are gathered
    for r in rows:
        assert 0.0 <= float(r["val_auc"]) <= 1.0 and 0.0 < float(r["val_loss"]) < 5.0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["train"]["world_size"] == 2 and ckpt["train"]["global_step"] == 4
    assert len(ckpt["train"]["rng"]) == 2  # every rank's RNG state, for an exact resume
    assert any(k.endswith("running_var") for k in ckpt["model"])  # the checksum covers BatchNorm statistics
    checksum = sum(float(v.double().sum()) for v in ckpt["model"].values() if v.is_floating_point())
    assert checksum == pytest.approx(float(ranks[0][4]), rel=1e-9)

    # the gathered validation loss of the last epoch is the loss of last.pt's model alone, on the whole set
    cfg = TrainConfig(arch="tiny3d", data=str(tubes), out=str(run), clip_len=4, crop_size=16, batch_size=4,
                      epochs=2, num_workers=0, progress=False, device="cpu", lr=1e-3).validate()
    alone = Trainer(cfg, DistEnv(), resume=True)  # one process, batch 4: the same 2 steps per epoch
    try:
        val = alone.validate()
    finally:
        alone.close()
    assert val["val_tubes"] == 4
    assert val["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]), rel=2e-5)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "curves.png", "last.pt",
                                                     "metrics.csv", "split.csv", "train.log"]
