"""models3d checkpoint loading: upstream layouts, head replacement, facetubes checkpoints, clear errors.

Upstream files are written to tmp_path in their owners' layouts. The I3D and 3D-ResNet-34 layouts are generated
here from the facts in shared/REFERENCE.md (layer table, key names, shapes), independently of models3d; the
torchvision and Cadene layouts come from torchvision's builders and timm's Cadene-compatible model plus key facts
written here. Files are filled with random values so "loaded" can be checked value by value.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import timm
import torch
import torchvision

import models3d
from models3d import WeightsError

# ---------------------------------------------------------------- upstream layouts from REFERENCE.md

# I3D Mixed blocks: (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]).
I3D_MIXED = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 480, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 512, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 512, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 512, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 528, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 832, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 832, [384, 192, 384, 48, 128, 128]),
]


def _unit(prefix: str, cin: int, cout: int, k: int) -> dict[str, tuple[int, ...]]:
    """piergiaj Unit3D: conv3d (no bias) + bn (no num_batches_tracked in 2018-era files)."""
    shapes = {f"{prefix}.conv3d.weight": (cout, cin, k, k, k)}
    for b in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.bn.{b}"] = (cout,)
    return shapes


@functools.cache
def i3d_upstream_shapes(classes: int = 400) -> dict[str, tuple[int, ...]]:
    s = {**_unit("Conv3d_1a_7x7", 3, 64, 7), **_unit("Conv3d_2b_1x1", 64, 64, 1),
         **_unit("Conv3d_2c_3x3", 64, 192, 3)}
    for name, cin, (c0, c1a, c1b, c2a, c2b, c3b) in I3D_MIXED:
        s.update(_unit(f"{name}.b0", cin, c0, 1))
        s.update(_unit(f"{name}.b1a", cin, c1a, 1))
        s.update(_unit(f"{name}.b1b", c1a, c1b, 3))
        s.update(_unit(f"{name}.b2a", cin, c2a, 1))
        s.update(_unit(f"{name}.b2b", c2a, c2b, 3))
        s.update(_unit(f"{name}.b3b", cin, c3b, 1))
    s["logits.conv3d.weight"] = (classes, 1024, 1, 1, 1)
    s["logits.conv3d.bias"] = (classes,)
    return s


@functools.cache
def r3d34_upstream_shapes(classes: int = 400) -> dict[str, tuple[int, ...]]:
    """kenshohara resnet-34 (shortcut A: no downsample keys), without the ``module.`` prefix."""
    def bn(p: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{p}.{b}": (c,) for b in ("weight", "bias", "running_mean", "running_var")}

    s = {"conv1.weight": (64, 3, 7, 7, 7), **bn("bn1", 64)}
    cin = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            s[f"{p}.conv1.weight"] = (planes, cin, 3, 3, 3)
            s.update(bn(f"{p}.bn1", planes))
            s[f"{p}.conv2.weight"] = (planes, planes, 3, 3, 3)
            s.update(bn(f"{p}.bn2", planes))
            cin = planes
    s["fc.weight"] = (classes, 512)
    s["fc.bias"] = (classes,)
    return s


def torchvision_shapes(name: str) -> dict[str, tuple[int, ...]]:
    builder = {"mc3": torchvision.models.video.mc3_18, "r2plus1d": torchvision.models.video.r2plus1d_18}[name]
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in builder(num_classes=400).state_dict().items()}


def cadene_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = timm.create_model("legacy_seresnext50_32x4d", num_classes=1000)
    return {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(123)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.05
    return out


# Facts about each upstream layout: key -> shape, and the head keys replaced for 2 classes.
FACTS = {
    "i3d": {"Conv3d_1a_7x7.conv3d.weight": (64, 3, 7, 7, 7), "Mixed_5c.b3b.bn.running_var": (128,),
            "logits.conv3d.weight": (400, 1024, 1, 1, 1), "logits.conv3d.bias": (400,)},
    "r3d34": {"module.conv1.weight": (64, 3, 7, 7, 7), "module.layer4.2.conv2.weight": (512, 512, 3, 3, 3),
              "module.fc.weight": (400, 512)},
    "mc3": {"stem.0.weight": (64, 3, 3, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
            "fc.weight": (400, 512)},
    "r2plus1d": {"stem.0.weight": (45, 3, 1, 7, 7), "stem.3.weight": (64, 45, 3, 1, 1),
                 "fc.weight": (400, 512)},
    "seresnext50": {"layer0.conv1.weight": (64, 3, 7, 7), "layer1.0.se_module.fc1.weight": (16, 256, 1, 1),
                    "last_linear.weight": (1000, 2048)},
}
HEAD = {"i3d": ["logits.conv3d.weight", "logits.conv3d.bias"], "r3d34": ["fc.weight", "fc.bias"],
        "mc3": ["fc.weight", "fc.bias"], "r2plus1d": ["fc.weight", "fc.bias"],
        "seresnext50": ["last_linear.weight", "last_linear.bias"]}
FILENAMES = {"i3d": "rgb_imagenet.pt", "r3d34": "resnet-34-kinetics.pth", "mc3": "mc3_18-a90a0ba3.pth",
             "r2plus1d": "r2plus1d_18-91a641e6.pth", "seresnext50": "se_resnext50_32x4d-a260b3a4.pth"}


def write_upstream(name: str, folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write ``name``'s public checkpoint in its owner's layout; returns (path, state without prefixes)."""
    if name == "i3d":
        state = random_state(i3d_upstream_shapes())
        obj: object = state
    elif name == "r3d34":
        state = random_state(r3d34_upstream_shapes())
        sd = {"module." + k: v for k, v in state.items()}
        obj = {"epoch": 200, "arch": "resnet-34", "state_dict": sd,
               "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                             "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]}}
    elif name in ("mc3", "r2plus1d"):
        state = random_state(torchvision_shapes(name))
        obj = state
    else:
        state = random_state(cadene_shapes())
        obj = state
    flat = obj["state_dict"] if isinstance(obj, dict) and "state_dict" in obj else obj
    for key, shape in FACTS[name].items():  # the file really is in the documented layout
        assert tuple(flat[key].shape) == shape, key
    if name == "r3d34":
        assert not any("downsample" in k for k in flat)
    path = folder / FILENAMES[name]
    # The 2017-2018 files (piergiaj, kenshohara, Cadene) predate the zip format.
    legacy = name in ("i3d", "r3d34", "seresnext50")
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path, state


ALL = ["i3d", "mc3", "r2plus1d", "r3d34", "seresnext50"]


pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------- upstream loading + head replacement


@pytest.mark.parametrize("name", ALL)
def test_upstream_checkpoint_loads_backbone_and_replaces_head(name: str, tmp_path: Path) -> None:
    path, state = write_upstream(name, tmp_path)
    torch.manual_seed(0)
    model = models3d.create_model(name, num_classes=2, weights=path)
    report = model.load_report
    assert report.skipped == HEAD[name]
    assert report.reinitialized == HEAD[name]
    assert report.loaded == len(state) - 2
    loaded = model.state_dict()
    for key, value in state.items():
        if key in HEAD[name]:
            assert loaded[key].shape[0] == 2  # new 2-class head
        else:
            assert torch.equal(loaded[key], value), key
    head_w = loaded[HEAD[name][0]]
    assert not torch.equal(head_w, state[HEAD[name][0]][:2])  # not a slice of the old head
    # Keys absent from old files are exactly the BatchNorm counters.
    assert all(k.endswith("num_batches_tracked") for k in report.filled)
    if name in ("mc3", "r2plus1d"):
        assert report.filled == []


def test_upstream_keeps_head_when_class_count_matches(tmp_path: Path) -> None:
    path, state = write_upstream("i3d", tmp_path)
    model = models3d.create_model("i3d", num_classes=400, weights=path)
    assert model.load_report.skipped == [] and model.load_report.reinitialized == []
    assert torch.equal(model.state_dict()["logits.conv3d.bias"], state["logits.conv3d.bias"])


def test_kinetics400_name_resolves_in_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(WeightsError) as err:
        models3d.create_model("mc3", weights="kinetics400")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "th" / "hub" / "checkpoints" / "mc3_18-a90a0ba3.pth") in msg
    folder = tmp_path / "th" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    _, state = write_upstream("mc3", folder)
    model = models3d.create_model("mc3", weights="kinetics400")
    assert torch.equal(model.state_dict()["stem.0.weight"], state["stem.0.weight"])


# ---------------------------------------------------------------- facetubes checkpoints


@pytest.mark.parametrize("name", ALL)
def test_save_load_roundtrip_identical_output(name: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = models3d.create_model(name, num_classes=1).eval()
    path = models3d.save_checkpoint(tmp_path / "run" / "best.pt", model, epoch=4,
                                    optimizer={"state": {}, "param_groups": [{"lr": 1e-4}]})
    assert sorted(os.listdir(path.parent)) == ["best.pt"]  # no temp files left
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    ckpt = models3d.load_checkpoint(path)
    assert (ckpt["format"], ckpt["arch"], ckpt["num_classes"], ckpt["epoch"]) == ("facetubes", name, 1, 4)
    restored = models3d.create_model(name, weights=path).eval()  # class count comes from the file
    assert restored.num_classes == 1 and restored.load_report.skipped == []
    shape = {"i3d": (1, 3, 9, 32, 32), "seresnext50": (1, 3, 32, 32)}.get(name, (1, 3, 8, 32, 32))
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))


def test_checkpoint_from_compiled_or_ddp_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models3d.create_model("mc3")
    path = models3d.save_checkpoint(tmp_path / "c.pt", torch.compile(model))  # not run: no compile cost
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in models3d.load_checkpoint(path)["model"])
    # A training loop that saved a DDP-wrapped, compiled model's raw state dict.
    ckpt = models3d.load_checkpoint(path)
    ckpt["model"] = {"module._orig_mod." + k: v for k, v in ckpt["model"].items()}
    ckpt["scaler"] = {"scale": 65536.0}
    torch.save(ckpt, tmp_path / "ddp.pt")
    restored = models3d.create_model("mc3", weights=tmp_path / "ddp.pt")
    assert restored.load_report.stripped_prefix == "module._orig_mod."
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), restored.state_dict().values()))


def test_checkpoint_keeps_custom_preset(tmp_path: Path) -> None:
    model = models3d.create_model("r2plus1d")
    model.preset = model.preset.replace(clip_len=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    path = models3d.save_checkpoint(tmp_path / "p.pt", model)
    restored = models3d.create_model("r2plus1d", weights=path)
    assert restored.preset.clip_len == 16 and restored.preset.mean == (0.485, 0.456, 0.406)
    assert models3d.get_preset("r2plus1d").clip_len == 32  # registry default untouched


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = models3d.create_model("mc3")
    dest = tmp_path / "best.pt"
    dest.write_bytes(b"previous")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        models3d.save_checkpoint(dest, model)
    assert os.listdir(tmp_path) == ["best.pt"] and dest.read_bytes() == b"previous"


def test_save_rejects_unloadable_extras(tmp_path: Path) -> None:
    model = models3d.create_model("mc3")
    with pytest.raises(TypeError, match="args"):
        models3d.save_checkpoint(tmp_path / "x.pt", model, args=object())
    with pytest.raises(ValueError, match="reserved"):
        models3d.save_checkpoint(tmp_path / "x.pt", model, arch="i3d")
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------- errors: one line, naming the file


def one_line(exc: pytest.ExceptionInfo[WeightsError], path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert str(path) in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(WeightsError) as err:
        models3d.create_model("i3d", weights=path)
    assert "not found" in one_line(err, path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "rgb_imagenet.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError) as err:
        models3d.create_model("i3d", weights=path)
    assert "not a PyTorch checkpoint" in one_line(err, path)


def test_truncated_file(tmp_path: Path) -> None:
    good, _ = write_upstream("mc3", tmp_path)
    path = tmp_path / "half.pth"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError) as err:
        models3d.create_model("mc3", weights=path)
    one_line(err, path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": torchvision.models.video.mc3_18()}, path)  # a whole pickled module
    with pytest.raises(WeightsError) as err:
        models3d.create_model("mc3", weights=path)
    assert "refusing" in one_line(err, path)


@pytest.mark.parametrize("written,wanted", [("mc3", "r2plus1d"), ("i3d", "r3d34"), ("seresnext50", "i3d")])
def test_wrong_architecture(written: str, wanted: str, tmp_path: Path) -> None:
    path, _ = write_upstream(written, tmp_path)
    with pytest.raises(WeightsError) as err:
        models3d.create_model(wanted, weights=path)
    assert f"holds {written} weights, expected {wanted}" in one_line(err, path)


def test_wrong_architecture_facetubes_checkpoint(tmp_path: Path) -> None:
    path = models3d.save_checkpoint(tmp_path / "mc3.pt", models3d.create_model("mc3"))
    with pytest.raises(WeightsError) as err:
        models3d.create_model("r2plus1d", weights=path)
    assert "for 'mc3', expected 'r2plus1d'" in one_line(err, path)


def test_partial_or_altered_state_dict(tmp_path: Path) -> None:
    _, state = write_upstream("i3d", tmp_path)
    cases = {
        "missing": {k: v for k, v in state.items() if not k.startswith("Mixed_4b.b0.")},
        "unexpected": {**state, "Mixed_6a.b0.conv3d.weight": torch.zeros(1)},
        "wrong shape": {**state, "Conv3d_2b_1x1.conv3d.weight": torch.zeros(64, 64, 3, 3, 3)},
    }
    for word, bad in cases.items():
        path = tmp_path / f"{word.replace(' ', '_')}.pt"
        torch.save(bad, path)
        with pytest.raises(WeightsError) as err:
            models3d.create_model("i3d", weights=path)
        msg = one_line(err, path)
        assert word in msg and "does not fit i3d" in msg


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError) as err:
        models3d.create_model("mc3", weights=path)
    assert "not a state dict" in one_line(err, path)
