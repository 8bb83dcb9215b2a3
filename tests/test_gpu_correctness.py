"""CUDA behaviour checked on CPU (issue 14): precision choice, resume across precisions, TF32 policy, OOM
recovery, the detector's own stream, and RNG hygiene. GPUs are mocked; the multi-GPU validation check (two gloo
processes) is in test_train_ddp.py. What only a real GPU can confirm is run by ``benchmarks/gpu_checks.py``."""

from __future__ import annotations

import contextlib
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_fixtures import make_tube_set

import train.loop as loop
from facetubes.config import ExtractConfig
from facetubes.pipeline import extract_tubes_in_memory
from facetubes.precision import set_tf32, tf32_state
from facetubes.video import VideoWriter
from infer.csvio import PredictionsWriter, read_predictions
from infer.predict import Loaded, WorkItem, run_predict
from train.augment import apply_clip, train_transform
from train.config import TrainConfig
from train.loop import Trainer, train
from train.runtime import choose_amp, rank_seed

CUDA0 = torch.device("cuda", 0)


@pytest.fixture(autouse=True)
def _restore_tf32():
    before = tf32_state()
    yield
    set_tf32(before)


# ----------------------------------------------------------------------------------------------------------------
# 1. --amp auto by compute capability


@pytest.mark.parametrize("cap, dtype", [((6, 0), torch.float16), ((7, 0), torch.float16), ((7, 5), torch.float16),
                                        ((8, 0), torch.bfloat16), ((8, 9), torch.bfloat16),
                                        ((9, 0), torch.bfloat16)])
def test_auto_precision_follows_compute_capability(monkeypatch: pytest.MonkeyPatch, cap: tuple[int, int],
                                                   dtype: torch.dtype) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # true even where only emulated
    chosen, why = choose_amp("auto", CUDA0)
    assert chosen == dtype
    assert f"sm{cap[0]}{cap[1]}" in why
    assert ("GradScaler" in why) == (dtype == torch.float16)
    assert choose_amp("none", CUDA0)[0] is None and choose_amp("fp16", CUDA0)[0] == torch.float16
    forced = choose_amp("bf16", CUDA0)
    assert forced[0] == torch.bfloat16 and ("slow" in forced[1]) == (cap < (8, 0))


def test_auto_precision_on_cpu_is_none_and_fp16_needs_cuda() -> None:
    from facetubes.errors import ConfigError

    assert choose_amp("auto", torch.device("cpu")) == (None, "auto: no mixed precision on cpu")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        choose_amp("fp16", torch.device("cpu"))


# ----------------------------------------------------------------------------------------------------------------
# 4. resume across precisions (the GradScaler state), 3. TF32 switch in training


@pytest.fixture(scope="module")
def tubes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tubes")
    make_tube_set(root, n_groups=6, size=24, n_frames=8)
    return root


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(arch="tiny3d", data=str(data), out=str(out), clip_len=4, crop_size=16, batch_size=4, epochs=2,
                num_workers=0, progress=False, val_fraction=0.34, seed=0, device="cpu", save_every_minutes=0,
                lr=1e-3)
    base.update(kw)
    return TrainConfig(**base).validate()


class _Crash(Exception):
    pass


def _fp16_on_cpu(m: pytest.MonkeyPatch) -> None:
    """Make the trainer resolve fp16 (GradScaler on) on CPU, as ``auto`` does on a pre-Ampere GPU."""
    m.setattr(loop, "choose_amp", lambda spec, device: (torch.float16, "auto: sm75 (mocked)"))


@pytest.mark.parametrize("first, then", [("fp32", "fp16"), ("fp16", "fp32")], ids=["scaler-off-then-on",
                                                                                  "scaler-on-then-off"])
def test_resume_that_changes_precision_converts_the_scaler_state(tubes: Path, tmp_path: Path, first: str,
                                                                 then: str) -> None:
    run = tmp_path / "run"
    cfg = _cfg(tubes, run)

    def crash(self: Trainer) -> None:
        if self.global_step == 3:  # inside epoch 2: last.pt holds epoch 1
            raise _Crash

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "after_step", crash)
        if first == "fp16":
            _fp16_on_cpu(m)
        with pytest.raises(_Crash):
            train(cfg)
    saved = torch.load(run / "last.pt", weights_only=True)["train"]
    assert saved["precision"] == first
    assert bool(saved["scaler"]) == (first == "fp16")

    with pytest.MonkeyPatch.context() as m:
        if then == "fp16":
            _fp16_on_cpu(m)
        result = train(cfg, resume=True)  # old code: RuntimeError "The source state dict is empty" (off -> on)
    assert result.global_step == 4
    final = torch.load(run / "last.pt", weights_only=True)["train"]
    assert final["precision"] == then and bool(final["scaler"]) == (then == "fp16")
    logged = (run / "train.log").read_text()
    assert f"was trained in {first}; this launch resolves {then}" in logged
    assert f"precision {first} (" in logged  # the first launch says which precision and why


def test_tf32_is_off_in_training_unless_asked_and_restored_after(tubes: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, bool]] = []
    monkeypatch.setattr(Trainer, "after_step", lambda self: seen.append(tf32_state()))
    for flag in (False, True):
        set_tf32(not flag)  # the opposite of what the run asks for
        train(_cfg(tubes, tmp_path / f"run{flag}", epochs=1, tf32=flag))
        assert seen and all(s == {"cudnn": flag, "matmul": flag} for s in seen)
        assert tf32_state() == {"cudnn": not flag, "matmul": not flag}  # restored when the run ends
        seen.clear()


# ----------------------------------------------------------------------------------------------------------------
# 3. TF32 around detection and around the models of predict


class _RecordingDetector:
    name = "recording"
    min_face_size = 20.0

    def __init__(self) -> None:
        self.states: list[dict[str, bool]] = []

    def detect(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        self.states.append(tf32_state())
        return [(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)) for _ in frames]


def test_detection_runs_without_tf32_and_restores_the_switches(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    with VideoWriter(video, fps=25, width=64, height=48, threads=1) as w:
        for k in range(6):
            w.write(np.full((48, 64, 3), 40 * k, np.uint8))
    det = _RecordingDetector()
    set_tf32(True)
    extract_tubes_in_memory(video, ExtractConfig.for_inference(device="cpu"), detector=det)
    assert det.states and all(s == {"cudnn": False, "matmul": False} for s in det.states)
    assert tf32_state() == {"cudnn": True, "matmul": True}


class _FakeStream:
    def __init__(self, device=None) -> None:
        self.device = device
        self.waited: list[object] = []

    def wait_stream(self, other: object) -> None:
        self.waited.append(other)


class _OOMPredictor:
    """Stands in for EnsemblePredictor on a GPU: holds a 'batch tensor' in its frame, then runs out of memory."""

    def __init__(self) -> None:
        self.device = CUDA0
        self.members = [type("M", (), {"name": "m"})()]
        self.batch_ref: list[weakref.ref] = []
        self.states: list[dict[str, bool]] = []

    def predict(self, tubes, faces=None):
        self.states.append(tf32_state())
        x = torch.ones(4, 3, 8, 8)  # the batch's tensor, referenced by this frame (and so by the traceback)
        self.batch_ref.append(weakref.ref(x))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_predict_oom_frees_the_batch_before_emptying_the_cache_detector_has_own_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = _OOMPredictor()
    at_empty: list[bool] = []
    entered: list[tuple[object, str]] = []
    current = threading.local()

    @contextlib.contextmanager
    def fake_stream_ctx(stream):
        entered.append((stream, threading.current_thread().name))
        current.stream = stream
        try:
            yield
        finally:
            current.stream = None

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: at_empty.append(predictor.batch_ref[-1]() is None))
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", fake_stream_ctx)
    monkeypatch.setattr(torch.cuda, "default_stream", lambda device=None: "default")
    load_streams: list[object] = []
    load_tf32: list[dict[str, bool]] = []

    def load(item: WorkItem) -> Loaded:  # decode + detect, in the prefetch thread
        load_streams.append(getattr(current, "stream", None))
        load_tf32.append(tf32_state())
        return Loaded(item, tubes=[np.zeros((4, 8, 8, 3), np.uint8)])

    items = [WorkItem(filename=f"v{k}.mp4", source=f"v{k}.mp4") for k in range(2)]
    set_tf32(True)
    with PredictionsWriter(tmp_path / "p.csv", []) as writer:
        summary = run_predict(items, predictor, writer, load, progress=False)  # type: ignore[arg-type]
    assert summary.counts["error"] == 2 and "out of memory" in summary.errors[0][1]
    assert at_empty == [True, True]  # old code: the traceback still held the tensor when the cache was emptied
    # the loader ran in the prefetch thread, inside one stream of its own (created once, there)
    assert {name for _, name in entered} == {"facetubes-prefetch"}
    assert len({id(s) for s, _ in entered}) == 1 and all(isinstance(s, _FakeStream) for s in load_streams)
    assert entered[0][0].waited == ["default"]  # after the work already queued (the detector's weights)
    # TF32 off for the models (and the detector thread) during predict, restored afterwards
    assert predictor.states == load_tf32 == [{"cudnn": False, "matmul": False}] * 2
    assert tf32_state() == {"cudnn": True, "matmul": True}
    assert read_predictions(tmp_path / "p.csv").status == ["error", "error"]


# ----------------------------------------------------------------------------------------------------------------
# 7. RNG: augmentation leaves the CUDA generators alone; DDP ranks get their own seeds


def test_seeded_augmentation_leaves_cuda_generators_and_the_global_rng_untouched(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_seeds: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: cuda_seeds.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: cuda_seeds.append(seed))
    tf = train_transform(_cfg(Path("."), Path("out")), 16)
    frames = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    torch.manual_seed(123)
    cuda_seeds.clear()
    state = torch.get_rng_state()
    a = apply_clip(tf, frames, seed=7)
    b = apply_clip(tf, frames, seed=7)
    assert cuda_seeds == []  # old code: torch.manual_seed re-seeded every CUDA generator, per sample
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (3, 4, 16, 16)
    assert any(not torch.equal(a, apply_clip(tf, frames, seed=s)) for s in (8, 9, 10))


def test_rank_seeds_differ_per_rank_and_are_reproducible() -> None:
    seeds = [rank_seed(0, r) for r in range(4)]
    assert len(set(seeds)) == 4 and seeds == [rank_seed(0, r) for r in range(4)]
    assert rank_seed(1, 0) != seeds[0] and all(0 <= s < 2**63 for s in seeds)


# ----------------------------------------------------------------------------------------------------------------
# 8. the GPU benchmarks run what train3d runs; the GPU check script


def _bench(name: str):
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    return importlib.import_module(name)


def test_benchmarks_use_train3d_precision_and_cuda_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    train_step = _bench("train_step")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert train_step.auto_mode(CUDA0) == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    assert train_step.auto_mode(CUDA0) == "bf16"
    assert train_step.auto_mode(torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    set_tf32(True)
    train_step.train3d_settings(CUDA0)
    assert torch.backends.cudnn.benchmark is True and tf32_state() == {"cudnn": False, "matmul": False}


def test_gpu_checks_without_cuda_says_so_and_exits_0(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    gpu_checks = _bench("gpu_checks")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["gpu_checks.py"])
    assert gpu_checks.main() == 0
    assert capsys.readouterr().out.strip().splitlines() == ["gpu_checks: no CUDA device on this machine; nothing "
                                                            "to check"]
    a = [np.array([[10.0, 10, 50, 50]], np.float32), np.zeros((0, 4), np.float32), np.zeros((1, 4), np.float32)]
    b = [np.array([[10.0, 10.6, 50, 50]], np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)]
    n, moved, differ, worst = gpu_checks._compare(a, b)
    assert (n, moved, differ) == (1, 1, 1) and worst == pytest.approx(0.6, abs=1e-5)
