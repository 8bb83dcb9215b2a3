"""models3d: registry, shared contract, architectures and presets (CPU, tiny inputs).

Expected numbers are written here from the issue and shared/REFERENCE.md, never taken from the code under test.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models3d
from models3d import registry
from models3d.i3d import Unit3D, i3d_head_pool, same_pad
from models3d.resnet3d import BasicBlock3D

ALL = ["i3d", "mc3", "r2plus1d", "r3d34", "seresnext50"]


pytestmark = pytest.mark.usefixtures("single_thread")

# Smallest cheap inputs (B=2 so BatchNorm sees >1 value per channel in train mode). I3D: T=9 is the
# smallest clip its unmodified upstream head accepts.
TINY = {
    "i3d": (2, 3, 9, 32, 32),
    "mc3": (2, 3, 8, 32, 32),
    "r2plus1d": (2, 3, 8, 32, 32),
    "r3d34": (2, 3, 8, 32, 32),
    "seresnext50": (2, 3, 32, 32),
}
NUM_FEATURES = {"i3d": 1024, "mc3": 512, "r2plus1d": 512, "r3d34": 512, "seresnext50": 2048}
# Parameter counts from the issue (2 classes) and upstream (torchvision metadata: 400 classes).
PARAMS_2 = {"i3d": 12_289_314, "r3d34": 63_340_738, "mc3": 11_491_266, "r2plus1d": 31_301_151,
            "seresnext50": 25_514_994}
PARAMS_UPSTREAM = {("i3d", 400): 12_697_264, ("mc3", 400): 11_695_440, ("r2plus1d", 400): 31_505_325,
                   ("seresnext50", 1000): 27_559_896}


@functools.cache
def _built(name: str) -> nn.Module:
    torch.manual_seed(0)
    return models3d.create_model(name)


def fresh(name: str) -> nn.Module:
    """A 2-class model of ``name`` with fixed random weights (built once, copied per test)."""
    return copy.deepcopy(_built(name))


def tiny_input(name: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(TINY[name], generator=g)


# ---------------------------------------------------------------- registry


def test_registry_names() -> None:
    names = models3d.list_models()
    # Other test modules may register stand-ins (e.g. "tiny3d"); the five models are always there.
    assert set(ALL) <= set(names) and names == sorted(names)


def test_duplicate_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        models3d.register_model("i3d", preset=models3d.get_preset("i3d"))(lambda **kw: None)
    assert models3d.get_spec("i3d").description.startswith("Inception-I3D")  # the original entry stays


def test_register_new_name_then_build() -> None:
    @models3d.register_model("tiny_test_model", preset=models3d.get_preset("mc3"))
    def builder(*, num_classes: int = 2):
        return models3d.create_model("mc3", num_classes=num_classes)

    try:
        assert "tiny_test_model" in models3d.list_models()
        with torch.device("meta"):
            assert models3d.create_model("tiny_test_model", num_classes=3).num_classes == 3
    finally:
        registry._REGISTRY.pop("tiny_test_model")


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'i4d'.*i3d"):
        models3d.create_model("i4d")
    with pytest.raises(ValueError):
        models3d.get_preset("resnet50")


# ---------------------------------------------------------------- parameter counts (meta device: no memory)


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_two_classes(name: str) -> None:
    with torch.device("meta"):
        model = models3d.create_model(name, num_classes=2)
    assert models3d.count_parameters(model) == PARAMS_2[name]


@pytest.mark.parametrize("name,classes", sorted(PARAMS_UPSTREAM))
def test_parameter_count_upstream_heads(name: str, classes: int) -> None:
    with torch.device("meta"):
        model = models3d.create_model(name, num_classes=classes)
    assert models3d.count_parameters(model) == PARAMS_UPSTREAM[(name, classes)]


# ---------------------------------------------------------------- presets


def test_preset_table() -> None:
    expect = {  # name: (clip_len, crop, is_3d)
        "i3d": (64, 224, True), "r3d34": (32, 112, True), "mc3": (32, 112, True),
        "r2plus1d": (32, 112, True), "seresnext50": (1, 224, False),
    }
    for name, (clip, crop, is3d) in expect.items():
        p = models3d.get_preset(name)
        assert (p.clip_len, p.crop_size, p.is_3d) == (clip, crop, is3d), name
        with torch.device("meta"):
            assert models3d.create_model(name).preset == p


def test_normalize_values() -> None:
    # One pixel per channel at 0 and at 255, shaped (B=2, C=3, T=1, H=1, W=1).
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1, 1).expand(2, 3, 1, 1, 1)
    out = {n: models3d.get_preset(n).normalize(x) for n in ALL if models3d.get_preset(n).is_3d}
    # I3D: (x / 255) * 2 - 1.
    assert torch.allclose(out["i3d"][0].flatten(), torch.full((3,), -1.0))
    assert torch.allclose(out["i3d"][1].flatten(), torch.full((3,), 1.0))
    # kenshohara: 0..255 minus [114.7748, 107.7354, 99.4750], std 1.
    assert torch.allclose(out["r3d34"][1].flatten(), torch.tensor([255 - 114.7748, 255 - 107.7354, 255 - 99.4750]))
    # torchvision Kinetics: [0, 1], mean (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989).
    mean, std = torch.tensor([0.43216, 0.394666, 0.37645]), torch.tensor([0.22803, 0.22145, 0.216989])
    for n in ("mc3", "r2plus1d"):
        assert torch.allclose(out[n][0].flatten(), -mean / std, atol=1e-5)
        assert torch.allclose(out[n][1].flatten(), (1 - mean) / std, atol=1e-5)
    # 2D model: ImageNet mean/std on (B, C, H, W).
    img = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    y = models3d.get_preset("seresnext50").normalize(img)
    expect = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert y.shape == (1, 3, 2, 2) and y.dtype == torch.float32
    assert torch.allclose(y[0, :, 1, 1], expect, atol=1e-5)
    # Float input holding 0..255 gives the same as uint8.
    assert torch.equal(models3d.get_preset("i3d").normalize(x.float()), out["i3d"])


def test_normalize_rejects_bad_layout() -> None:
    with pytest.raises(ValueError, match="normalize expects"):
        models3d.get_preset("i3d").normalize(torch.zeros(2, 8, 3, 4, 4))  # channels last by mistake
    with pytest.raises(ValueError):
        models3d.get_preset("seresnext50").normalize(torch.zeros(3, 4, 4))


def test_preset_roundtrip_plain_types() -> None:
    p = models3d.get_preset("r3d34").replace(clip_len=16)
    d = p.to_dict()
    assert d["clip_len"] == 16 and isinstance(d["mean"], list)
    assert models3d.Preset.from_dict(d) == p
    with pytest.raises(ValueError):
        models3d.Preset.from_dict({**d, "colour": "bgr"})


# ---------------------------------------------------------------- contract, shapes, gradients


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_gradient(name: str) -> None:
    model = fresh(name).train()
    x = tiny_input(name)
    feats = model.forward_features(x)
    assert feats.shape == (2, NUM_FEATURES[name]) and model.num_features == NUM_FEATURES[name]
    logits = model.forward_head(feats)
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    no_grad = [k for k, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("name", ALL)
def test_reset_classifier_and_single_logit(name: str) -> None:
    model = fresh(name).eval()
    backbone = {k: v.clone() for k, v in model.state_dict().items() if k not in model.head_keys()}
    x = tiny_input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert torch.equal(model(x), model.forward_head(feats))
        model.reset_classifier(1)
        out = model(x)
    assert model.num_classes == 1 and out.shape == (2, 1)
    assert torch.equal(model.forward_features(x).detach(), feats)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert len(model.head_keys()) == 2  # weight and bias, nothing else
    # Built with one class from the start (BCE head for train2d).
    with torch.device("meta"):
        assert models3d.create_model(name, num_classes=1).num_classes == 1


@pytest.mark.parametrize("name", ALL)
def test_autocast_bf16_and_channels_last(name: str) -> None:
    model = fresh(name).eval()
    x = tiny_input(name)
    with torch.no_grad():
        ref = model(x)
        fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
        model = model.to(memory_format=fmt)
        xc = x.contiguous(memory_format=fmt)
        same = model(xc)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(xc)
    assert torch.allclose(same, ref, atol=1e-5, rtol=1e-4)
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape
    assert torch.isfinite(low.float()).all()
    assert (low.float() - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3


def test_wrong_input_rank_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"i3d expects input \(B, 3, T, H, W\)"):
        fresh("i3d")(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"seresnext50 expects input \(B, 3, H, W\)"):
        fresh("seresnext50")(torch.zeros(2, 3, 4, 32, 32))


@pytest.mark.parametrize("name", ["i3d"] + [pytest.param(n, marks=pytest.mark.slow) for n in ALL if n != "i3d"])
def test_no_graph_breaks(name: str) -> None:
    """Dynamo traces the whole forward into one graph (what torch.compile(fullgraph=True) needs). I3D, whose
    padding is computed from the input shape in Python, runs in the fast suite; the others are marked slow."""
    model = fresh(name).eval()
    try:
        explanation = torch._dynamo.explain(model)(tiny_input(name))
    finally:
        torch._dynamo.reset()
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


# ---------------------------------------------------------------- I3D specifics


def test_same_padding_formula() -> None:
    # pad = max(k - s, 0) if n % s == 0 else max(k - n % s, 0); front = pad // 2.
    assert same_pad(224, 7, 2) == (2, 3)
    assert same_pad(9, 7, 2) == (3, 3)
    assert same_pad(64, 3, 2) == (0, 1)
    assert same_pad(5, 3, 2) == (1, 1)
    assert same_pad(8, 2, 2) == (0, 0)
    assert same_pad(7, 3, 1) == (1, 1)


def test_unit3d_matches_explicit_same_padding() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 6, 9, 10)
    for kernel, stride in [((3, 3, 3), (1, 1, 1)), ((7, 7, 7), (2, 2, 2)), ((1, 3, 3), (1, 2, 2))]:
        unit = Unit3D(4, 5, kernel, stride, batch_norm=False, relu=False)
        pads = []
        for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
            total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
            pads += [total // 2, total - total // 2]
        ref = F.conv3d(F.pad(x, pads), unit.conv3d.weight, stride=stride)
        out = unit(x)
        assert out.shape[2:] == tuple(-(-n // s) for n, s in zip(x.shape[2:], stride))  # ceil(n / s)
        assert torch.allclose(out, ref, atol=1e-5)


def test_i3d_feature_map_shape_at_training_size() -> None:
    with torch.device("meta"):
        model = models3d.create_model("i3d")
        fmap = model.forward_feature_map(torch.empty(1, 3, 64, 224, 224))
        tiny = model.forward_feature_map(torch.empty(1, 3, 9, 32, 32))
    assert tuple(fmap.shape) == (1, 1024, 8, 7, 7)
    assert tuple(tiny.shape) == (1, 1024, 2, 1, 1)


def test_i3d_head_equals_upstream_pool_then_time_mean() -> None:
    torch.manual_seed(0)
    fmap = torch.randn(2, 1024, 8, 7, 7)  # Mixed_5c output for a 64 x 224 x 224 clip
    upstream = nn.AvgPool3d((2, 7, 7), stride=1)(fmap)  # (2, 1024, 7, 1, 1)
    assert torch.allclose(i3d_head_pool(fmap), upstream.mean(dim=2).flatten(1), atol=1e-6)
    # Logits: upstream applies the 1x1x1 conv per time step, then averages over time.
    model = fresh("i3d").eval()
    conv = model.logits.conv3d
    with torch.no_grad():
        upstream_logits = conv(upstream).squeeze(-1).squeeze(-1).mean(dim=2)
        ours = model.forward_head(i3d_head_pool(fmap))
    assert torch.allclose(ours, upstream_logits, atol=1e-5)


# ---------------------------------------------------------------- R3D-34 specifics


def test_shortcut_a_subsamples_and_zero_pads() -> None:
    block = BasicBlock3D(64, 128, stride=2)
    assert not any("downsample" in k for k in block.state_dict())
    x = torch.randn(2, 64, 5, 6, 7)
    short = block.shortcut(x)
    assert short.shape == (2, 128, 3, 3, 4)
    assert torch.equal(short[:, :64], x[:, :, ::2, ::2, ::2])
    assert torch.count_nonzero(short[:, 64:]) == 0
