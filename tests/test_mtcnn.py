"""FastMTCNN against facenet-pytorch's own detect_face, on frames with real faces (skimage's astronaut) pasted into
skimage's coffee photo; plus its building blocks against the torch ops they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("facenet_pytorch")

from facetubes.mtcnn import (FastMTCNN, _maxpool_ceil, area_crops, area_resize, min_nms,  # noqa: E402
                             pyramid_scales, summed_area_table)

THRESHOLDS = (0.6, 0.7, 0.7)


@pytest.fixture(autouse=True)
def one_thread():
    """Two intra-op threads on a shared 2-core machine are many times slower than one; restore afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_frame(width: int, height: int, faces=()) -> np.ndarray:
    """Coffee background with astronaut faces: ``faces`` = ``[(patch height, centre x, centre y), ...]``; the
    centre may lie near or outside the border (the patch is cut there)."""
    from skimage import data
    from skimage.transform import resize

    patch = data.astronaut()[20:230, 130:330]  # head and shoulders
    frame = resize(data.coffee(), (height, width), anti_aliasing=True, preserve_range=True).astype(np.uint8)
    for fh, cx, cy in faces:
        fw = int(round(fh * patch.shape[1] / patch.shape[0]))
        f = resize(patch, (fh, fw), anti_aliasing=True, preserve_range=True).astype(np.uint8)
        x0, y0 = cx - fw // 2, cy - fh // 2
        xs0, ys0, xs1, ys1 = max(0, x0), max(0, y0), min(width, x0 + fw), min(height, y0 + fh)
        if xs1 > xs0 and ys1 > ys0:
            frame[ys0:ys1, xs0:xs1] = f[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]
    return frame


SCENES = {  # name: (width, height, faces, faces expected)
    "two_faces_640x360": (640, 360, [(160, 200, 170), (90, 470, 120)], 2),
    "left_border_480x270": (480, 270, [(150, 20, 140), (70, 330, 90)], 2),  # one face cut by the left border
    "corner_320x240": (320, 240, [(120, 300, 200)], 1),  # cut by the right and bottom borders
    "three_sizes_512x288": (512, 288, [(60, 90, 80), (100, 260, 150), (150, 430, 170)], 3),
    "no_face_400x300": (400, 300, [], 0),
}


@pytest.fixture(scope="module")
def mtcnn():
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, post_process=False, device="cpu").eval()


@pytest.fixture(scope="module")
def fast(mtcnn):
    return FastMTCNN("cpu", mtcnn=mtcnn)


def reference(mtcnn, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """facenet-pytorch's batched detect_face on (N, H, W, 3) frames."""
    from facenet_pytorch.models.utils.detect_face import detect_face

    with torch.inference_mode():
        boxes, _ = detect_face(np.ascontiguousarray(frames), 20.0, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
                               list(THRESHOLDS), 0.709, torch.device("cpu"))
    out = []
    for b in boxes:
        b = np.asarray(b, np.float32).reshape(-1, 5)
        out.append((b[:, :4], b[:, 4]))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(a).double(), torch.from_numpy(b).double()).numpy()


def assert_same(ours, ref, *, min_iou=0.9, prob_tol=0.02):
    (b, p), (rb, rp) = ours, ref
    assert b.dtype == np.float32 and p.dtype == np.float32 and b.shape == (len(p), 4)
    assert len(b) == len(rb), f"{len(b)} faces vs facenet's {len(rb)}"
    if len(b) == 0:
        return
    iou = iou_matrix(rb, b)
    j = iou.argmax(1)
    assert len(set(j.tolist())) == len(j), "two reference faces matched the same box"
    assert iou.max(1).min() > min_iou, iou
    np.testing.assert_allclose(p[j], rp, atol=prob_tol)


@pytest.mark.parametrize("name", list(SCENES))
def test_same_faces_as_facenet(name, fast, mtcnn):
    w, h, faces, expected = SCENES[name]
    frame = make_frame(w, h, faces)
    ref = reference(mtcnn, frame[None])[0]
    assert len(ref[0]) == expected  # the scene is what we think it is
    ours = fast.detect(frame[None])
    assert len(ours) == 1
    assert_same(ours[0], ref)
    if expected:
        assert np.all(np.diff(ours[0][1]) <= 0), "boxes by decreasing probability"


def test_face_cut_by_the_border_keeps_its_box_outside(fast):
    for name, edge in [("left_border_480x270", "left"), ("corner_320x240", "right")]:
        w, h, faces, _ = SCENES[name]
        boxes, _ = fast.detect(make_frame(w, h, faces))[0]
        if edge == "left":
            assert boxes[:, 0].min() < 0
        else:
            assert boxes[:, 2].max() > w


def test_batch_of_mixed_frames(fast, mtcnn):
    names = ["two_faces_640x360", "no_face_400x300", "left_border_480x270"]
    frames = np.stack([make_frame(480, 270, SCENES[n][2]) for n in names])
    ref = reference(mtcnn, frames)
    ours = fast.detect(frames)
    assert len(ours) == 3
    for o, r in zip(ours, ref):
        assert_same(o, r)
    assert len(ours[1][0]) == 0
    # batched == one at a time, and the group/chunk loops change nothing
    tiny = FastMTCNN("cpu", mtcnn=mtcnn, chunk_bytes=1)
    for i, frame in enumerate(frames):
        for b, p in (fast.detect(frame[None])[0], tiny.detect(frame)[0]):
            np.testing.assert_allclose(b, ours[i][0], atol=1e-3)
            np.testing.assert_allclose(p, ours[i][1], atol=1e-6)


def test_api(fast, mtcnn):
    from facetubes.detect import Detector

    assert isinstance(fast, Detector) and fast.name == "mtcnn" and fast.min_face_size == 20.0
    w, h, faces, _ = SCENES["two_faces_640x360"]
    frame = make_frame(w, h, faces)
    assert fast.detect(np.zeros((0, h, w, 3), np.uint8)) == []
    (b0, p0), = fast.detect(np.zeros((1, 10, 10, 3), np.uint8))  # smaller than P-Net's 12 px window
    assert b0.shape == (0, 4) and p0.shape == (0,) and b0.dtype == p0.dtype == np.float32
    a = fast.detect(frame[None])[0]
    b = fast.detect(torch.from_numpy(frame))[0]  # a tensor, a single (H, W, 3) frame
    np.testing.assert_array_equal(a[0], b[0])
    (boxes, probs, points), = fast.detect_landmarks(frame[None])
    np.testing.assert_array_equal(boxes, a[0])
    assert points.shape == (len(boxes), 5, 2) and points.dtype == np.float32
    inside = ((points[..., 0] >= boxes[:, None, 0]) & (points[..., 0] <= boxes[:, None, 2])
              & (points[..., 1] >= boxes[:, None, 1]) & (points[..., 1] <= boxes[:, None, 3]))
    assert inside.all()  # eyes, nose and mouth corners lie in the face box
    old = fast.thresholds
    try:
        fast.thresholds = (0.6, 0.7, 1.0)  # settable; O-Net needs p > 1: nothing passes
        assert len(fast.detect(frame[None])[0][0]) == 0
    finally:
        fast.thresholds = old
    with pytest.raises(ValueError):
        fast.detect(np.zeros((1, 32, 32), np.uint8))
    with pytest.raises(ValueError):
        fast.detect(np.zeros((1, 32, 32, 3), np.float32))


def test_bilinear_pyramid_finds_the_same_faces(mtcnn):
    w, h, faces, _ = SCENES["three_sizes_512x288"]
    frame = make_frame(w, h, faces)
    ours = FastMTCNN("cpu", mtcnn=mtcnn, pyramid="bilinear").detect(frame[None])[0]
    assert_same(ours, reference(mtcnn, frame[None])[0], min_iou=0.7, prob_tol=0.05)


# -- building blocks ---------------------------------------------------------------------------------------------


def test_area_resize_and_crops_equal_interpolate_area():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 57, 83, 3), dtype=torch.uint8, generator=g)
    sat = summed_area_table(frames)
    x = frames.permute(0, 3, 1, 2).float()
    for size in [(40, 61), (12, 12), (57, 83), (90, 100)]:  # down, square, identity, up
        torch.testing.assert_close(area_resize(sat, *size), F.interpolate(x, size=size, mode="area"),
                                   atol=1e-3, rtol=0)
    boxes = [(0, 5, 0, 9), (3, 57, 10, 83), (20, 21, 30, 31), (1, 50, 2, 70), (30, 55, 60, 64)]
    for size in (24, 48):
        img = torch.tensor([0, 1, 1, 0, 1])
        r0, r1, c0, c1 = (torch.tensor(v) for v in zip(*boxes))
        got = area_crops(sat, img, (r0, r1), (c0, c1), size)
        for k, (a, b, c, d) in enumerate(boxes):
            i = int(img[k])
            want = F.interpolate(x[i:i + 1, :, a:b, c:d], size=(size, size), mode="area")[0]
            torch.testing.assert_close(got[k], want, atol=1e-3, rtol=0)


def test_summed_area_table_torch_and_numpy_paths():
    frames = torch.randint(0, 256, (2, 9, 11, 3), dtype=torch.uint8)
    want = F.pad(frames.long().cumsum(1).cumsum(2), (0, 0, 1, 0, 1, 0))
    for use_numpy in (True, False):  # numpy on CPU, torch on other devices
        sat = summed_area_table(frames, use_numpy=use_numpy)
        assert sat.dtype == torch.int32 and torch.equal(sat.long(), want)


@pytest.mark.parametrize("k,s", [(2, 2), (3, 2)])
def test_maxpool_equals_torch_ceil_mode(k, s):
    for shape in [(2, 5, 22, 22), (1, 3, 23, 21), (3, 2, 10, 9), (1, 1, 3, 4)]:
        x = torch.randn(shape)
        for t in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(_maxpool_ceil(t, k, s), F.max_pool2d(t, k, s, ceil_mode=True), atol=0, rtol=0)


def greedy_min_nms(boxes, scores, groups, t):
    """Plain reference: greedy NMS with intersection over the smaller area, +1 pixel areas."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        ok = True
        for j in keep:
            if groups[j] != groups[i]:
                continue
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + 1)
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + 1)
            ai = (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
            aj = (boxes[j, 2] - boxes[j, 0] + 1) * (boxes[j, 3] - boxes[j, 1] + 1)
            if iw * ih / min(ai, aj) > t:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_min_nms_equals_greedy():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(0, 60))
        xy = rng.uniform(0, 100, (n, 2))
        wh = rng.uniform(5, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.permutation(n).astype(np.float32)  # distinct
        groups = rng.integers(0, 3, n)
        got = min_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(groups), 0.7)
        assert got.tolist() == greedy_min_nms(boxes, scores, groups, 0.7)


def test_pyramid_scales():
    s = pyramid_scales(398, 710, 20.0, 0.709)
    assert s[0] == pytest.approx(0.6) and len(s) == 9
    assert 398 * s[-1] >= 12 > 398 * s[-1] * 0.709
    assert pyramid_scales(10, 10, 20.0, 0.709) == []
