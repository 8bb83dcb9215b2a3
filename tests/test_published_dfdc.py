"""The published DFDC ensembles: the 5th place's layouts and inputs, the 1st place's crop rule, and end to end.

The 5th place's files are written with random weights in their layouts (plain state dicts, 2 classes with class 0 =
FAKE; the 2D file with ``backbone.`` + ``fc``). Each member is built from the members of ``examples/dfdc-5th.yaml``
(the shipped settings), and its probability is compared with a reference computed by hand from a network built
directly with torchvision / timm (mc3, r(2+1)d, SE-ResNeXt50) or models3d (I3D, R3D-34, which have no upstream
package), with the normalisation, channel order and class order written out here.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
import yaml
from torch import nn

import models3d
from infer.engine import EnsemblePredictor
from infer.faces1st import crops_from_frames, FaceRecipe, isotropic_resize, link_tracks, pad_crop, put_to_center, \
    sample_frames, scale_boxes
from infer.members import load_members
from infer.preprocess import prepare_tube
from infer.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(
    1, 3, 1, 1, 1))


def _example_members() -> dict[str, dict]:
    data = yaml.safe_load((ROOT / "examples" / "dfdc-5th.yaml").read_text())
    return {m["name"]: m for m in data["members"]}


def _random_bn(net: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _upstream_3d(kind: str) -> nn.Module:
    if kind.startswith("mc3"):
        net = torchvision.models.video.mc3_18(num_classes=2)
    elif kind.startswith("r2p1"):
        net = torchvision.models.video.r2plus1d_18(num_classes=2)
    else:  # no upstream package: the models3d network in the (separately tested) upstream key layout
        net = models3d.create_model({"i3d": "i3d", "res34": "r3d34"}[kind], num_classes=2)
    return _random_bn(net, seed=len(kind))


def _reference_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    """x: (B, 3, T, H, W) in 0..255 RGB -> what the team fed each model type (REFERENCE.md section 5)."""
    if kind.startswith("i3d"):
        return x / 255 * 2 - 1
    if kind == "res34":
        return x
    return (x / 255 - IMAGENET[0]) / IMAGENET[1]


def _predict_one(spec_member: dict, path: Path, tubes: list[np.ndarray]) -> float:
    spec = parse_spec({"members": [{**spec_member, "weights": str(path)}]})
    members = load_members(spec, probe=False)
    pred = EnsemblePredictor(members, tta=True, clip=None).predict(tubes)
    return pred.member_probs[members[0].name]


@pytest.mark.parametrize("kind", ["i3d", "res34", "mc3_112", "mc3_224", "r2p1_112"])
def test_medics_3d_layout_and_input(kind: str, tmp_path: Path) -> None:
    member = _example_members()[kind]
    net = _upstream_3d(kind)
    path = tmp_path / member["weights"]
    torch.save(net.state_dict(), path)  # plain state dict, no prefix, as published
    model = models3d.create_model(member["arch"], num_classes=2, weights=path)
    assert model.load_report.loaded == len(net.state_dict()) and not model.load_report.reinitialized
    g = torch.Generator().manual_seed(0)
    frames = 9 if kind.startswith("i3d") else 4
    tubes = [(torch.rand(frames, 256, 256, 3, generator=g) * 255).to(torch.uint8).numpy()]
    # The shipped settings, except: clip_len = the tube length (no reflection padding to the model's 64-frame
    # window, so the reference sees the same frames) and a 64-px input (speed; the size is a plain number here)
    size = 64
    mine = _predict_one({**member, "clip_len": frames, "crop_size": size}, path, tubes)
    x = prepare_tube(tubes[0], crop_fraction=224 / 256, crop_size=size)[None]
    with torch.no_grad():
        soft = torch.softmax(net(_reference_input(kind, torch.cat([x, x.flip(-1)]))), dim=1)
        ref = float((1 - soft[:, 1]).mean())  # class 0 = FAKE
        wrong = float(soft[:, 1].mean())
    assert mine == pytest.approx(ref, abs=1e-5)
    assert abs(ref - wrong) > 1e-4  # class order matters for these weights: the check can fail


class MedicsSRXT(nn.Module):
    """The 5th place's 2D model: Cadene SE-ResNeXt50 without last_linear as ``backbone``, dropout, fc(2048, 1)."""

    def __init__(self) -> None:
        super().__init__()
        net = timm.create_model("legacy_seresnext50_32x4d", pretrained=False)
        net.last_linear = nn.Identity()
        self.backbone = net
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


def test_medics_2d_layout_bgr_median(tmp_path: Path) -> None:
    member = _example_members()["srxt50"]
    net = _random_bn(MedicsSRXT(), seed=7)
    sd = {k: v for k, v in net.state_dict().items()}
    assert all(k.startswith(("backbone.", "fc.")) for k in sd)
    path = tmp_path / member["weights"]
    torch.save(sd, path)
    model = models3d.create_model("seresnext50", num_classes=1, weights=path)
    assert model.load_report.loaded == len(sd) and not model.load_report.reinitialized
    g = torch.Generator().manual_seed(1)
    tube = (torch.rand(3, 64, 64, 3, generator=g) * 255).to(torch.uint8).numpy()  # 64 px instead of 256: speed
    mine = _predict_one({**member, "frames": 3, "crop_size": 64}, path, [tube])
    x = torch.as_tensor(tube).permute(0, 3, 1, 2).float()  # (T, 3, H, W) RGB
    bgr = x.flip(1) / 255
    mean, std = IMAGENET[0][..., 0], IMAGENET[1][..., 0]
    with torch.no_grad():  # one batch: BGR, its flip, RGB (the wrong order), its flip
        inp, rgb = (bgr - mean) / std, (x / 255 - mean) / std
        p = torch.sigmoid(net(torch.cat([inp, inp.flip(-1), rgb, rgb.flip(-1)])))[:, 0].view(4, -1)
        # tta: alternate, as published: frame 1 (of 0, 1, 2) is mirrored; each frame scored once; 3 frames: the
        # median is one of them
        odd = torch.arange(p.shape[1]) % 2 == 1
        ref = float(torch.where(odd, p[1], p[0]).median())
        ref_rgb = float(torch.where(odd, p[3], p[2]).median())
    assert mine == pytest.approx(ref, abs=1e-5)
    assert abs(ref - ref_rgb) > 1e-5  # channel order matters: the check can fail


def test_two_class_upstream_file_needs_fake_class(tmp_path: Path) -> None:
    net = torchvision.models.video.mc3_18(num_classes=2)
    path = tmp_path / "mc3.model"
    torch.save(net.state_dict(), path)
    from facetubes.errors import ConfigError

    with pytest.raises(ConfigError, match="set fake_class"):
        load_members(parse_spec({"members": [{"arch": "mc3", "weights": str(path), "num_classes": 2}]}), probe=False)


# ------------------------------------------------------------------------------------------ 1st place crop rule


def test_sample_frames_first_and_last() -> None:
    idx = sample_frames(300, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 299 and idx[1] == 9
    assert sample_frames(10, 32).tolist().count(0) == 4  # fewer frames than samples: repeats, as linspace gives


def test_pad_crop_hand_computed_boxes() -> None:
    frame = np.arange(100 * 200 * 3, dtype=np.int64).reshape(100, 200, 3).astype(np.uint8)
    # box 30x60 at (60, 20): pad 10 px left/right, 20 px top/bottom
    assert pad_crop(frame, (60, 20, 90, 80)).shape == (100, 50, 3)  # rows 0..100 (top clipped at 0), cols 50..100
    assert np.array_equal(pad_crop(frame, (60, 20, 90, 80)), frame[0:100, 50:100])
    # at the right/bottom edge: clipped
    assert np.array_equal(pad_crop(frame, (180, 80, 210, 110)), frame[70:100, 170:200])
    # negative MTCNN coordinates do not wrap around
    assert np.array_equal(pad_crop(frame, (-9, -6, 21, 24)), frame[0:34, 0:31])
    assert np.array_equal(scale_boxes(np.array([[10.7, 5.2, 40.9, 30.5]]), 0.5), [[21, 10, 81, 61]])


def test_isotropic_resize_and_center() -> None:
    img = np.full((100, 50, 3), 200, np.uint8)
    up = isotropic_resize(img, 380)
    assert up.shape == (380, 190, 3)
    down = isotropic_resize(np.full((1000, 300, 3), 7, np.uint8), 380)
    assert down.shape == (380, 114, 3) and int(down.min()) == 7 == int(down.max())
    wide = isotropic_resize(np.zeros((33, 100, 3), np.uint8), 380)
    assert wide.shape == (int(33 * 3.8), 380, 3)
    out = put_to_center(up, 380)
    assert out.shape == (380, 380, 3)
    assert (out[:, :95] == 0).all() and (out[:, 95:285] == 200).all() and (out[:, 285:] == 0).all()


def test_isotropic_resize_uses_the_published_opencv_filters() -> None:
    """The 1st place resized with cv2.INTER_AREA down and cv2.INTER_CUBIC up; other filters give other pixels."""
    import cv2

    rng = np.random.default_rng(3)
    big, small = rng.integers(0, 256, (700, 530, 3), np.uint8), rng.integers(0, 256, (90, 61, 3), np.uint8)
    down, up = isotropic_resize(big, 380), isotropic_resize(small, 380)
    assert np.array_equal(down, cv2.resize(big, (287, 380), interpolation=cv2.INTER_AREA))
    assert np.array_equal(up, cv2.resize(small, (257, 380), interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(down, cv2.resize(big, (287, 380), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(up, cv2.resize(small, (257, 380), interpolation=cv2.INTER_LINEAR))


def test_crops_and_person_tracks() -> None:
    frames = np.full((3, 120, 160, 3), 90, np.uint8)
    dets = [(np.array([[10, 10, 30, 40], [50, 10, 70, 40]], np.float32), np.array([0.9, 0.95], np.float32)),
            (np.array([[51, 11, 71, 41]], np.float32), np.array([0.9], np.float32)),
            (np.array([[11, 10, 31, 40], [51, 10, 71, 40]], np.float32), np.array([0.9, 0.9], np.float32))]
    faces = crops_from_frames(frames, np.array([0, 5, 9]), dets, FaceRecipe(size=64))
    assert faces.crops.shape == (5, 64, 64, 3) and faces.frames.tolist() == [0, 0, 5, 9, 9]
    assert faces.boxes[0].tolist() == [20, 20, 60, 80]  # x2 and truncated
    assert faces.tracks.tolist() == [0, 1, 1, 0, 1]
    assert link_tracks(np.array([0, 1]), np.array([[0, 0, 10, 10], [50, 50, 60, 60]])).tolist() == [0, 1]


# ------------------------------------------------------------------------------------------ end to end


FIRST_NAMES = ["final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36",
               "final_555_DeepFakeClassifier_tf_efficientnet_b7_ns_0_19"]


@pytest.fixture(scope="module")
def first_place_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight files under the published names (b0 encoder to stay fast) and an ensemble file next to them
    that keeps the published recipe but sets crop_size 64 and 8 frames."""
    d = tmp_path_factory.mktemp("dfdc1st")
    for i, name in enumerate(FIRST_NAMES):
        torch.manual_seed(i)
        m = models3d.create_model("dfdc1st", encoder="tf_efficientnet_b0_ns")
        sd = {"module." + k: v for k, v in m.state_dict().items()}
        torch.save({"epoch": 30 + i, "state_dict": sd, "bce_best": np.float64(0.2)}, d / name)
    data = yaml.safe_load((ROOT / "examples" / "dfdc-1st.yaml").read_text())
    members = [m for m in data["members"] if m["weights"] in FIRST_NAMES]
    assert len(members) == 2
    for m in members:
        m.update(crop_size=64, frames=8, model_args={"encoder": "tf_efficientnet_b0_ns"})
    data["members"] = members
    (d / "ensemble.yaml").write_text(yaml.safe_dump(data))
    return d


def test_first_place_end_to_end_with_details(first_place_dir: Path, tmp_path: Path) -> None:
    from facetubes.cli import main

    videos = [tmp_path / "portrait.mp4", tmp_path / "landscape.mp4"]
    shutil.copy(DATA / "dfdc_portrait.mp4", videos[0])  # 540x960: a portrait DFDC video, re-encoded short
    shutil.copy(DATA / "dfdc_landscape.mp4", videos[1])
    out, details = tmp_path / "p.csv", tmp_path / "d.jsonl"
    rc = main(["predict", *map(str, videos), "-e", str(first_place_dir / "ensemble.yaml"), "-o", str(out),
               "--details", str(details), "--per-model", "-q"])
    assert rc == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["filename"] for r in rows) == ["landscape.mp4", "portrait.mp4"]
    assert all(r["status"] == "ok" for r in rows)
    records = [json.loads(line) for line in details.read_text().splitlines()]
    assert len(records) == 2
    for rec in records:
        row = next(r for r in rows if r["filename"] == rec["video"] + ".mp4")
        assert int(row["n_tubes"]) == len(rec["tracks"]) >= 1  # one record per person
        members = rec["members"]
        assert float(row["label"]) == pytest.approx(np.mean(list(members.values())), abs=2e-6)  # plain mean
        for t in rec["tracks"]:
            assert t["recipe"] == "dfdc1st" and t["start_frame"] < t["stop_frame"] <= 40
            assert len(t["boxes"]) == len(t["frames"]["dfdc1st"]) and set(t["members"]) == set(members)
            assert all(0 <= f < 40 and x1 < x2 and y1 < y2 for f, x1, y1, x2, y2 in t["boxes"])
    portrait = next(r for r in records if r["video"] == "portrait")
    boxes = [b for t in portrait["tracks"] for b in t["boxes"]]
    # [frame, x1, y1, x2, y2] in upright portrait coordinates (540 wide, 960 high)
    assert all(-10 <= x1 and x2 <= 550 and -10 <= y1 and y2 <= 970 for _f, x1, y1, x2, y2 in boxes)
    # resume: a second run does nothing and writes no duplicate record
    assert main(["predict", *map(str, videos), "-e", str(first_place_dir / "ensemble.yaml"), "-o", str(out),
                 "--details", str(details), "--per-model", "-q"]) == 0
    assert len(details.read_text().splitlines()) == 2


def test_predict_shard_is_checked(first_place_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from facetubes.cli import main

    assert main(["predict", str(DATA / "dfdc_portrait.mp4"), "-e", str(first_place_dir / "ensemble.yaml"),
                 "--shard", "2/2", "-q"]) == 2
    assert "--shard K/N needs 0 <= K < N" in capsys.readouterr().err


def test_check_ensemble(first_place_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from facetubes.cli import main

    assert main(["check-ensemble", str(first_place_dir / "ensemble.yaml")]) == 0
    text = capsys.readouterr().out
    assert "detected: dfdc1st (tf_efficientnet_b0_ns encoder)" in text and "sha256: " in text
    assert "2 of 2 members ok" in text
    bad = yaml.safe_load((first_place_dir / "ensemble.yaml").read_text())
    bad["members"].append({**bad["members"][0], "weights": "final_999_DeepFakeClassifier_tf_efficientnet_b7_ns_0_23"})
    (first_place_dir / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["check-ensemble", str(first_place_dir / "bad.yaml")]) == 1
    text = capsys.readouterr().out
    assert "MISSING" in text and "2 of 3 members ok" in text
