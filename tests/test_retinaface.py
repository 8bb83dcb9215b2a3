"""RetinaFace: priors, decoding against hand-computed boxes, NMS settings, strict loading of the biubug6 layouts
(written here with random weights), the detector contract and its selection by name."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from facetubes.config import ExtractConfig
from facetubes.detect import Detector, check_detector, list_detectors, make_detector
from facetubes.errors import ConfigError, FacetubesError
from facetubes.retinaface import (RetinaFace, RetinaFaceDetector, RetinaFaceWeightsError, CONFIGS, build_retinaface,
                                  decode_boxes, decode_landmarks, load_retinaface, postprocess, priors)

pytestmark = pytest.mark.usefixtures("single_thread")


def reference_priors(height: int, width: int) -> np.ndarray:
    """biubug6's PriorBox loop, written out plainly."""
    out = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512))):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for m in sizes:
                    out.append([(j + 0.5) * step / width, (i + 0.5) * step / height, m / width, m / height])
    return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def resnet50_model():
    torch.manual_seed(1)
    return build_retinaface("resnet50")


def _randomised(model: torch.nn.Module) -> OrderedDict:
    """The model's state dict with every float tensor replaced by random values (so a load that drops a tensor
    cannot pass by chance)."""
    g = torch.Generator().manual_seed(0)
    return OrderedDict((k, torch.rand(v.shape, generator=g) if v.is_floating_point() else v.clone())
                       for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------------------
# priors and decoding


def test_prior_counts_and_order():
    assert len(priors(640, 640)) == 16_800
    assert len(priors(1080, 1920)) == 85_200
    p = priors(640, 640)
    np.testing.assert_allclose(p[0], [4 / 640, 4 / 640, 16 / 640, 16 / 640])  # first cell, min size 16
    np.testing.assert_allclose(p[1], [4 / 640, 4 / 640, 32 / 640, 32 / 640])  # same cell, min size 32
    np.testing.assert_allclose(p[2], [12 / 640, 4 / 640, 16 / 640, 16 / 640])  # next column
    np.testing.assert_allclose(p[80 * 2], [4 / 640, 12 / 640, 16 / 640, 16 / 640])  # next row (80 columns)
    np.testing.assert_allclose(p[-1], [624 / 640, 624 / 640, 512 / 640, 512 / 640])
    for h, w in ((45, 70), (33, 17)):  # sizes that are not multiples of 32: ceil per level
        np.testing.assert_allclose(priors(h, w).numpy(), reference_priors(h, w), rtol=0, atol=1e-7)


def test_decoding_against_hand_computed_boxes():
    prior = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    loc = torch.tensor([[1.0, -2.0, 5 * math.log(2.0), 0.0]])
    # centre (0.5 + 1 * 0.1 * 0.1, 0.5 - 2 * 0.1 * 0.2) = (0.51, 0.46); size (0.1 * 2, 0.2 * 1) = (0.2, 0.2)
    box = decode_boxes(loc, prior) * torch.tensor([100.0, 50.0, 100.0, 50.0])
    np.testing.assert_allclose(box.numpy(), [[41.0, 18.0, 61.0, 28.0]], atol=1e-4)
    pre = torch.tensor([[0, 0, 1, 1, -1, 0, 0, -1, 2, 3]], dtype=torch.float32)
    pts = decode_landmarks(pre, prior) * torch.tensor([100.0, 50.0])
    # point = centre + pre * 0.1 * (0.1, 0.2) -> pixels (x * 100, y * 50)
    np.testing.assert_allclose(pts.numpy(), [[[50, 25], [51, 26], [49, 25], [50, 24], [52, 28]]], atol=1e-4)


def test_postprocess_uses_the_published_thresholds():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]],
                         dtype=torch.float32)
    scores = torch.tensor([0.9, 0.95, 0.01, 0.5, 0.7])
    points = torch.arange(5 * 10, dtype=torch.float32).reshape(5, 5, 2)
    b, s, lm = postprocess(boxes, scores, points)
    # IoU of boxes 0 and 1 with +1 areas: 10 * 11 / (2 * 121 - 110) = 0.83 > 0.4: box 0 suppressed by box 1;
    # box 2 is under the 0.02 confidence threshold, box 3 under the 0.6 score threshold
    np.testing.assert_array_equal(s.numpy(), np.float32([0.95, 0.7]))
    np.testing.assert_array_equal(b.numpy(), boxes[[1, 4]].numpy())
    np.testing.assert_array_equal(lm.numpy(), points[[1, 4]].numpy())
    # boxes that overlap exactly at the threshold with +1 areas are kept: [0, 0, 9, 9] vs [5, 0, 14, 9]:
    # intersection 5 x 10 = 50, union 150: IoU 1/3 (without +1 it would be 4 x 9 / 126 = 0.29)
    two = torch.tensor([[0, 0, 9, 9], [5, 0, 14, 9]], dtype=torch.float32)
    assert len(postprocess(two, torch.tensor([0.9, 0.8]), points[:2], nms_threshold=0.34)[0]) == 2
    assert len(postprocess(two, torch.tensor([0.9, 0.8]), points[:2], nms_threshold=0.33)[0]) == 1


class HandMade(RetinaFace):
    """A 'network' whose outputs are prepared by hand for the priors of one input size."""

    def __init__(self, loc, conf, landms) -> None:
        torch.nn.Module.__init__(self)
        self.config = CONFIGS["mobilenet0.25"]
        self.out = (loc, conf, landms)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return tuple(o[None].expand(x.shape[0], *o.shape) for o in self.out)


def _encode(box, prior, width, height):
    """Inverse of the decoding: offsets that make ``prior`` decode to ``box`` (pixels)."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    w, h = (box[2] - box[0]) / width, (box[3] - box[1]) / height
    return [(cx - prior[0]) / (0.1 * prior[2]), (cy - prior[1]) / (0.1 * prior[3]),
            math.log(w / prior[2]) / 0.2, math.log(h / prior[3]) / 0.2]


def test_detector_returns_the_true_boxes_in_frame_pixels():
    h, w = 64, 96
    p = priors(h, w).numpy().astype(np.float64)
    n = len(p)
    assert n == (8 * 12 + 4 * 6 + 2 * 3) * 2
    loc = torch.zeros(n, 4)
    conf = torch.tensor([[0.0, -5.0]]).repeat(n, 1)  # score 0.0067: under the 0.02 confidence threshold
    landms = torch.zeros(n, 10)
    faces = {  # prior index: (box in pixels, score, landmarks in pixels)
        77: ([10, 12, 34, 40], 0.99, [[16, 22], [28, 22], [22, 28], [17, 34], [27, 34]]),  # level 0, row 3, col 2
        212: ([50, 8, 90, 56], 0.8, [[60, 25], [80, 25], [70, 33], [62, 45], [78, 45]]),  # level 1, row 1, col 4
        76: ([11, 13, 35, 41], 0.9, [[0, 0]] * 5),  # a second, weaker box on face 0: removed by NMS
        100: ([60, 40, 70, 50], 0.5, [[0, 0]] * 5),  # under the 0.6 score threshold
    }
    for k, (box, score, pts) in faces.items():
        loc[k] = torch.tensor(_encode(box, p[k], w, h))
        conf[k] = torch.tensor([0.0, math.log(score / (1 - score))])
        rel = (np.asarray(pts, np.float64) / [w, h] - p[k, :2]) / (0.1 * p[k, 2:])
        landms[k] = torch.tensor(rel.reshape(-1))
    model = HandMade(loc, conf, landms)
    det = RetinaFaceDetector(model, batch_size=2)
    assert isinstance(det, Detector) and det.name == "retinaface"
    frames = np.zeros((3, h, w, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 20, 30  # R, G, B
    results = det.detect_landmarks(frames)
    assert len(results) == 3 and len(model.inputs) == 2  # batches of 2 frames
    for boxes, probs, points in results:
        np.testing.assert_allclose(boxes, [faces[77][0], faces[212][0]], atol=1e-3)
        np.testing.assert_allclose(probs, [0.99, 0.8], atol=1e-5)
        np.testing.assert_allclose(points, [faces[77][2], faces[212][2]], atol=1e-3)
        assert boxes.dtype == probs.dtype == points.dtype == np.float32
    # the network sees BGR minus (104, 117, 123), unscaled
    x = model.inputs[0]
    assert x.shape == (2, 3, h, w)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [30 - 104, 20 - 117, 10 - 123])
    # a lower score threshold lets the 0.5 box through; detect() drops the landmarks only
    det.score_threshold = 0.3
    (boxes, probs), = det.detect(frames[:1])
    np.testing.assert_allclose(probs, [0.99, 0.8, 0.5], atol=1e-5)
    assert det.detect(np.zeros((0, h, w, 3), np.uint8)) == []
    with pytest.raises(ValueError):
        det.detect(np.zeros((1, h, w, 3), np.float32))


# ---------------------------------------------------------------------------------------------------------------
# the network and its checkpoints


def test_mobilenet_layout_and_strict_load_with_and_without_module_prefix(tmp_path):
    model = build_retinaface("mobilenet0.25")
    state = _randomised(model)
    assert len(state) == 300
    assert state["ClassHead.0.conv1x1.weight"].shape == (4, 64, 1, 1)
    assert state["BboxHead.2.conv1x1.weight"].shape == (8, 64, 1, 1)
    assert state["LandmarkHead.1.conv1x1.weight"].shape == (20, 64, 1, 1)
    assert state["fpn.output3.0.weight"].shape == (64, 256, 1, 1)
    assert state["ssh1.conv7x7_3.0.weight"].shape == (16, 16, 3, 3)
    plain, wrapped = tmp_path / "mobilenet0.25_Final.pth", tmp_path / "wrapped.pth"
    torch.save(state, plain)
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in state.items())}, wrapped)
    for path in (plain, wrapped):
        loaded = load_retinaface(path).state_dict()
        assert list(loaded) == list(state)
        for k, v in state.items():
            assert torch.equal(loaded[k], v), k
    # the loaded network runs at any input size: one output per prior
    with torch.no_grad():
        loc, conf, landms = load_retinaface(plain)(torch.zeros(1, 3, 45, 70))
    n = len(priors(45, 70))
    assert loc.shape == (1, n, 4) and conf.shape == (1, n, 2) and landms.shape == (1, n, 10)


def test_resnet50_layout_and_strict_load_with_module_prefix(tmp_path, resnet50_model):
    state = _randomised(resnet50_model)
    assert state["body.conv1.weight"].shape == (64, 3, 7, 7)
    assert state["fpn.output1.0.weight"].shape == (256, 512, 1, 1)
    assert state["fpn.output3.0.weight"].shape == (256, 2048, 1, 1)
    assert state["ClassHead.0.conv1x1.weight"].shape == (4, 256, 1, 1)
    assert not any(k.startswith(("body.fc", "body.avgpool")) for k in state)
    path = tmp_path / "Resnet50_Final.pth"
    torch.save(OrderedDict(("module." + k, v) for k, v in state.items()), path)  # as trained on 4 GPUs
    model = load_retinaface(path, backbone="resnet50")
    assert model.config.name == "resnet50"
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    with torch.no_grad():
        loc, conf, landms = model(torch.zeros(1, 3, 40, 56))
    assert loc.shape[1] == conf.shape[1] == landms.shape[1] == len(priors(40, 56))
    with pytest.raises(RetinaFaceWeightsError, match="holds a resnet50 RetinaFace, not mobilenet0.25"):
        load_retinaface(path, backbone="mobilenet0.25")


def test_bad_weight_files_give_one_line_errors(tmp_path):
    state = _randomised(build_retinaface("mobilenet0.25"))
    cases = {}
    missing = OrderedDict(state)
    missing.pop("LandmarkHead.2.conv1x1.bias")
    cases["missing"] = (missing, "1 missing")
    extra = OrderedDict(state, **{"body.fc.weight": torch.zeros(1000, 256)})
    cases["extra"] = (extra, "1 unexpected")
    shape = OrderedDict(state, **{"ClassHead.0.conv1x1.weight": torch.zeros(6, 64, 1, 1)})
    cases["shape"] = (shape, "1 wrong shape")
    cases["other"] = ({"conv.weight": torch.zeros(1)}, "not a RetinaFace checkpoint")
    for name, (sd, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(sd, path)
        with pytest.raises(RetinaFaceWeightsError, match=message) as e:
            load_retinaface(path)
        assert "\n" not in str(e.value) and isinstance(e.value, FacetubesError)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RetinaFaceWeightsError, match="cannot read"):
        load_retinaface(garbage)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "optimizer": ExtractConfig()}, pickled)  # a class weights_only refuses
    with pytest.raises(RetinaFaceWeightsError, match="cannot read"):
        load_retinaface(pickled)
    with pytest.raises(RetinaFaceWeightsError, match="no such RetinaFace weights file"):
        load_retinaface(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------------------------------
# chosen by name


def _quiet_mobilenet(path):
    """A random-weight MobileNet file whose class head says 'no face' everywhere (bias 5 vs -5)."""
    state = _randomised(build_retinaface("mobilenet0.25"))
    for i in range(3):
        state[f"ClassHead.{i}.conv1x1.weight"].zero_()
        state[f"ClassHead.{i}.conv1x1.bias"].copy_(torch.tensor([5.0, -5.0] * 2))
    torch.save(state, path)
    return path


def test_registry_config_and_cli(tmp_path, capsys):
    from facetubes.cli import main
    from facetubes.synthetic import make_video

    assert {"mtcnn", "mtcnn-facenet", "retinaface"} <= set(list_detectors())
    weights = _quiet_mobilenet(tmp_path / "mobilenet0.25_Final.pth")
    det = make_detector("cpu", name="retinaface", weights=str(weights))
    assert isinstance(det, RetinaFaceDetector) and det.backbone == "mobilenet0.25"
    assert det.detect(np.zeros((1, 48, 64, 3), np.uint8))[0][0].shape == (0, 4)
    with pytest.raises(ConfigError, match="unknown detector"):
        make_detector(name="yolo")
    with pytest.raises(ConfigError, match="needs its weights file"):
        make_detector(name="retinaface")
    with pytest.raises(ConfigError, match="for retinaface"):
        make_detector(name="mtcnn", weights=str(weights))
    with pytest.raises(ConfigError, match="uses facenet-pytorch"):
        ExtractConfig(detector_weights="w.pth")
    with pytest.raises(ConfigError, match="needs detector_weights"):
        ExtractConfig(detector="retinaface")
    with pytest.raises(ConfigError, match="detector must be one of"):
        ExtractConfig(detector="yolo")
    cfg = ExtractConfig(detector="retinaface", detector_weights=str(weights))
    assert ExtractConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(RetinaFaceWeightsError):
        check_detector("retinaface", str(tmp_path / "absent.pth"))
    from facetubes.detect import DETECTORS, register_detector

    with pytest.raises(ConfigError, match="already registered"):
        register_detector("retinaface", lambda device, thresholds, weights: det)
    register_detector("test-detector", lambda device, thresholds, weights: det)
    try:  # a registered detector is usable by name, from the config too
        assert make_detector(name="test-detector") is det and ExtractConfig(detector="test-detector")
    finally:
        del DETECTORS["test-detector"]

    video = tmp_path / "v.mp4"
    make_video(video, "one", width=160, height=96, n_frames=20, seed=1)
    out = tmp_path / "out"
    assert main(["extract", str(video), "--out", str(out), "--detector", "retinaface", "-q"]) == 2
    assert "error: the retinaface detector needs" in capsys.readouterr().err
    assert main(["extract", str(video), "--out", str(out), "--detector", "retinaface", "--detector-weights",
                 str(tmp_path / "absent.pth"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no such RetinaFace weights file" in err and err.count("\n") == 1
    assert not (out / "v").exists()  # failed before any video
    assert main(["extract", str(video), "--out", str(out), "--detector", "retinaface", "--detector-weights",
                 str(weights), "--min-frames", "8", "-q"]) == 0
    import json

    m = json.loads((out / "v" / "tubes.json").read_text())
    assert m["detector"]["name"] == "retinaface" and m["status"] == "no_face"
    assert m["detector"]["settings"] == {"backbone": "mobilenet0.25", "score_threshold": 0.6,
                                         "confidence_threshold": 0.02, "nms_threshold": 0.4, "top_k": 5000,
                                         "keep_top_k": 750}
    assert m["config"]["detector"] == "retinaface" and m["config"]["detector_weights"] == str(weights)


def test_retinaface_in_the_pipeline_gives_boxes_and_landmarks_in_source_pixels(tmp_path):
    """A hand-made RetinaFace output at the detector input size the policy picks: the manifest has the box and
    the landmarks scaled back to the full-resolution frame."""
    import json

    from facetubes.detect import detector_scale, scaled_size
    from facetubes.landmarks import read_landmarks
    from facetubes.pipeline import extract_tubes
    from facetubes.synthetic import make_video

    video = tmp_path / "v.mp4"
    make_video(video, "one", width=320, height=240, n_frames=40, seed=4)
    w, h = scaled_size(320, 240, detector_scale(320, 240, detector_min_face=RetinaFaceDetector.min_face_size))
    assert (w, h) == (128, 96)  # faces >= 40 px must reach the 16 px anchor: scale 0.4
    p = priors(h, w).numpy().astype(np.float64)
    n = len(p)
    loc, conf, landms = torch.zeros(n, 4), torch.tensor([[0.0, -5.0]]).repeat(n, 1), torch.zeros(n, 10)
    k = (5 * 16 + 6) * 2 + 1  # level 0, row 5, column 6, min size 32
    box = [40.0, 30.0, 72.0, 66.0]  # detector pixels
    pts = np.array([[48, 42], [64, 42], [56, 50], [50, 58], [62, 58]], np.float64)
    loc[k] = torch.tensor(_encode(box, p[k], w, h))
    conf[k] = torch.tensor([0.0, 4.0])
    landms[k] = torch.tensor(((pts / [w, h] - p[k, :2]) / (0.1 * p[k, 2:])).reshape(-1))
    det = RetinaFaceDetector(HandMade(loc, conf, landms))
    m = extract_tubes(video, tmp_path / "out", ExtractConfig(min_frames=8, size=64), detector=det)
    assert m["detector"]["name"] == "retinaface" and abs(m["detector"]["scale"] - 0.4) < 1e-9
    (tube,) = m["tubes"]
    for b in tube["detections"]["boxes"]:
        np.testing.assert_allclose(b, np.asarray(box) / 0.4, atol=0.1)  # 100, 75, 180, 165
    frames, src = read_landmarks(m["tracks"][0], "landmarks")
    assert list(frames) == list(range(0, 40, 10))
    np.testing.assert_allclose(src, np.broadcast_to(pts / 0.4, src.shape), atol=0.1)
    assert json.loads((tmp_path / "out" / "v" / "tubes.json").read_text())["tubes"][0]["tube_landmarks"]


def test_predict_takes_the_detector_from_flags_or_the_ensemble_file():
    pytest.importorskip("infer")
    from facetubes.cli import build_parser
    from infer.cli import extract_config_from_args

    a = build_parser().parse_args(["predict", "v.mp4", "--ensemble", "e.yaml", "--detector", "retinaface",
                                   "--detector-weights", "w.pth"])
    cfg = extract_config_from_args(a)
    assert (cfg.detector, cfg.detector_weights) == ("retinaface", "w.pth")
    a = build_parser().parse_args(["predict", "v.mp4", "--ensemble", "e.yaml"])
    cfg = extract_config_from_args(a, {"detector": "retinaface", "detector_weights": "r50.pth"})
    assert (cfg.detector, cfg.detector_weights) == ("retinaface", "r50.pth")
    assert extract_config_from_args(a).detector == "mtcnn"
