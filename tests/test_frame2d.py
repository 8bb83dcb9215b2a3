"""models3d.frame2d: the generic timm frame classifiers and the DFDC 1st-place layout.

The 1st-place files are written here in their published layouts (a training dict with ``module.`` keys and a numpy
``bce_best``, or a bare state dict), with random weights. The reference probability comes from a network built in
this file directly from timm, as the winner's ``DeepFakeClassifier`` is written (encoder with its 1000-class
classifier, forward_features, avg pool, flatten, dropout, fc). The B7 layout itself is checked on the meta device;
forward passes use the small b0 encoder of the same class at 64 px.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

import models3d
from models3d import WeightsError


class UpstreamDeepFakeClassifier(nn.Module):
    """The published class, rebuilt from its description (REFERENCE.md section 5)."""

    def __init__(self, encoder: str) -> None:
        super().__init__()
        self.encoder = timm.create_model(encoder, pretrained=False, drop_path_rate=0.2)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(self.encoder.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder.forward_features(x)
        return self.fc(self.dropout(self.avg_pool(x).flatten(1)))


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Random weights everywhere: default init of convs/linears re-drawn from ``seed``, random norm statistics
    and affine parameters (so that a wrong BatchNorm buffer would show)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape) + 0.5)
            elif name.endswith("running_mean") or (t.ndim == 1 and name.endswith("bias")):
                t.copy_(torch.randn(t.shape) * 0.1)
            elif t.ndim == 1:
                t.copy_(1.0 + torch.randn(t.shape) * 0.1)
            else:
                fan_in = max(1, t[0].numel())
                t.copy_(torch.randn(t.shape) * (2.0 / fan_in) ** 0.5)


@pytest.fixture(scope="module")
def upstream_b0() -> UpstreamDeepFakeClassifier:
    net = UpstreamDeepFakeClassifier("tf_efficientnet_b0.ns_jft_in1k")
    _randomise(net)
    return net.eval()


def test_registered_names() -> None:
    names = set(models3d.list_models())
    expected = {f"efficientnet_b{i}" for i in range(8)} | {f"tf_efficientnet_b{i}" for i in range(8)}
    expected |= {f"tf_efficientnet_b{i}_ns" for i in range(8)} | {"xception", "resnet34", "seresnext50", "dfdc1st"}
    assert expected <= names
    assert models3d.get_preset("tf_efficientnet_b7_ns").crop_size == 600
    assert models3d.get_preset("xception").mean == (0.5, 0.5, 0.5)
    assert models3d.get_preset("dfdc1st").crop_size == 380
    assert models3d.get_preset("resnet34").std == (0.229, 0.224, 0.225)


def test_dfdc1st_b7_layout_on_meta() -> None:
    """The published B7 state dict: 1,202 tensors, the named shapes, stage depths 4, 7, 7, 10, 10, 13, 4."""
    with torch.device("meta"):
        model = models3d.create_model("dfdc1st")
    sd = model.state_dict()
    assert len(sd) == 1202
    assert tuple(sd["encoder.conv_stem.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["encoder.conv_head.weight"].shape) == (2560, 640, 1, 1)
    assert tuple(sd["encoder.classifier.weight"].shape) == (1000, 2560)
    assert tuple(sd["fc.weight"].shape) == (1, 2560) and tuple(sd["fc.bias"].shape) == (1,)
    depths = [len({k.split(".")[3] for k in sd if k.startswith(f"encoder.blocks.{s}.")}) for s in range(7)]
    assert depths == [4, 7, 7, 10, 10, 13, 4]
    with torch.device("meta"):
        ref = UpstreamDeepFakeClassifier("tf_efficientnet_b7.ns_jft_in1k")
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _numpy1_file(obj: object, path: Path) -> Path:
    """The same checkpoint as numpy 1.x would have pickled it (module ``numpy.core.multiarray``)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(info, data)
    return path


@pytest.mark.parametrize("layout", ["training_dict", "numpy1_dict", "bare"])
def test_dfdc1st_published_file_loads_strictly_and_matches(layout: str, upstream_b0: nn.Module,
                                                            tmp_path: Path) -> None:
    sd = upstream_b0.state_dict()
    path = tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36"  # no extension, as published
    if layout == "bare":
        _save(sd, path)
    else:
        obj = {"epoch": 36, "state_dict": {f"module.{k}": v for k, v in sd.items()}, "bce_best": np.float64(0.19)}
        (_save if layout == "training_dict" else _numpy1_file)(obj, path)
    model = models3d.create_model("dfdc1st", encoder="tf_efficientnet_b0_ns", weights=path).eval()
    report = model.load_report
    assert report.loaded == len(sd) and not report.reinitialized and not report.skipped
    assert report.stripped_prefix == ("" if layout == "bare" else "module.")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        mine = torch.sigmoid(model(model.preset.normalize(x)))[:, 0]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        ref = torch.sigmoid(upstream_b0((x / 255 - mean) / std))[:, 0]
    assert torch.allclose(mine, ref, atol=1e-5), (mine, ref)
    assert not torch.allclose(ref[0], ref[1])  # the inputs are told apart: the check can fail


def test_dfdc1st_refuses_other_pickled_objects(upstream_b0: nn.Module, tmp_path: Path) -> None:
    """Numpy scalars are allowed, a numpy array (another global) is not."""
    obj = {"state_dict": upstream_b0.state_dict(), "bce_best": np.array([0.1, 0.2])}
    path = _save(obj, tmp_path / "final_x")
    with pytest.raises(WeightsError, match="refusing to load .*numpy"):
        models3d.create_model("dfdc1st", encoder="tf_efficientnet_b0_ns", weights=path)


def test_dfdc1st_missing_key_is_an_error(upstream_b0: nn.Module, tmp_path: Path) -> None:
    sd = {k: v for k, v in upstream_b0.state_dict().items() if not k.startswith("encoder.classifier.")}
    path = _save(sd, tmp_path / "final_y")
    # without its 1000-class classifier the file is a plain b0 frame classifier, and the message says so
    with pytest.raises(WeightsError, match="holds (tf_)?efficientnet_b0(_ns)? weights, expected dfdc1st"):
        models3d.create_model("dfdc1st", encoder="tf_efficientnet_b0_ns", weights=path)


def test_imagenet_backbone_file_loads_into_encoder(tmp_path: Path) -> None:
    """A timm ImageNet file (bare keys, 1000-class classifier) fills the encoder; the head starts fresh."""
    net = timm.create_model("efficientnet_b0", pretrained=False)
    _randomise(net, seed=3)
    path = _save(net.state_dict(), tmp_path / "efficientnet_b0_ra-3dd342df.pth")
    model = models3d.create_model("efficientnet_b0", num_classes=1, weights=path, dropout=0.2).eval()
    assert sorted(model.load_report.skipped) == ["classifier.bias", "classifier.weight"]
    assert model.load_report.reinitialized == ["fc.weight", "fc.bias"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = net.eval().forward_features(x).mean(dim=(2, 3))
        assert torch.allclose(model.forward_features(x), ref, atol=1e-5)
        assert model(x).shape == (1, 1)


def test_xception_is_key_compatible_with_legacy_file(tmp_path: Path) -> None:
    net = timm.create_model("legacy_xception", pretrained=False)
    sd = net.state_dict()
    assert len(sd) > 270 and "block12.skip.weight" in sd  # the Cadene layout
    path = _save(sd, tmp_path / "xception-43020ad28.pth")
    model = models3d.create_model("xception", weights=path)
    assert model.load_report.skipped == ["fc.weight", "fc.bias"]
    assert model.load_report.loaded == len(sd) - 2


def test_heads_and_group_norm() -> None:
    model = models3d.create_model("resnet34", head="hidden512", dropout=0.5, norm="group").eval()
    keys = [k for k in model.state_dict() if k.startswith("fc.")]
    assert {k.split(".")[1] for k in keys} == {"0", "2", "4", "5"}  # BN, Linear 512, BN, Linear 1
    assert model.fc[2].out_features == 512 and model.fc[5].in_features == 512 and model.fc[5].out_features == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.encoder.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.encoder.modules()) > 30
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    eff = models3d.create_model("tf_efficientnet_b0", norm="group").eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in eff.modules())
    with torch.no_grad():
        assert torch.isfinite(eff(torch.randn(1, 3, 32, 32))).all()
    model.reset_classifier(2)
    assert model.fc[5].out_features == 2


def test_group_norm_keeps_imagenet_affine(tmp_path: Path) -> None:
    net = timm.create_model("resnet34", pretrained=False)
    _randomise(net, seed=5)
    path = _save(net.state_dict(), tmp_path / "r34.pth")
    model = models3d.create_model("resnet34", weights=path, norm="group")
    assert torch.equal(model.encoder.bn1.weight, net.bn1.weight)
    assert any(k.endswith("running_mean") for k in model.load_report.skipped)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="head must be"):
        models3d.create_model("resnet34", head="mlp")
    with pytest.raises(ValueError, match="norm must be"):
        models3d.create_model("resnet34", norm="layer")
    with pytest.raises(ValueError, match="encoder must be"):
        models3d.create_model("dfdc1st", encoder="resnet50")


def test_seresnext50_takes_the_same_head_and_norm_options() -> None:
    with torch.device("meta"):
        model = models3d.create_model("seresnext50", num_classes=1, head="hidden512", norm="group")
    keys = model.state_dict()
    assert tuple(keys["last_linear.2.weight"].shape) == (512, 2048)
    assert tuple(keys["last_linear.5.weight"].shape) == (1, 512)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.device("meta"):
        assert tuple(models3d.create_model("seresnext50", num_classes=1).last_linear.weight.shape) == (1, 2048)
