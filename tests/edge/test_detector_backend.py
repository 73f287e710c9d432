"""The edge detector backend: letterbox, YOLO decoding, NMS, class maps, model loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.perception.classmap import build_class_map, map_class
from edge.perception.postprocess import DecodeConfig, batched_nms, box_iou, decode, nms
from edge.perception.preprocess import letterbox, shrink


# ----------------------------------------------------------------------------- NMS, decoding
def test_box_iou_hand_computed() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    b = np.array([[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    # overlap 5×5 = 25, union 100 + 100 − 25 = 175
    np.testing.assert_allclose(box_iou(a, b), [25 / 175, 1.0, 0.0])


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # 0: score 0.9
            [1, 1, 11, 11],  # 1: IoU with 0 = 81/119 = 0.68 → dropped at 0.5
            [0, 0, 10, 5],  # 2: IoU with 0 = 0.5 exactly → kept (drop only above)
            [50, 50, 60, 60],  # 3: alone
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.3], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.5, max_det=2).tolist() == [0, 2]


def test_batched_nms_never_suppresses_across_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert batched_nms(boxes, scores, np.array([0, 1]), 0.5, 10).tolist() == [0, 1]
    assert batched_nms(boxes, scores, np.array([2, 2]), 0.5, 10).tolist() == [0]


def test_decode_yolo_output_hand_computed() -> None:
    # 3 candidates, 2 classes: rows cx, cy, w, h, p(class0), p(class1)
    out = np.array(
        [
            [[100.0, 102.0, 300.0], [50.0, 50.0, 60.0], [20.0, 20.0, 10.0], [10.0, 10.0, 4.0]]
            + [[0.9, 0.8, 0.1], [0.05, 0.1, 0.2]]
        ],
        dtype=np.float32,
    )
    boxes, scores, classes = decode(out, DecodeConfig(conf=0.15, iou=0.5))
    # candidate 1 overlaps candidate 0 (IoU 18×10/(200+200−180) = 0.82) → suppressed
    assert classes.tolist() == [0, 1]
    np.testing.assert_allclose(scores, [0.9, 0.2], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[90, 45, 110, 55], [295, 58, 305, 62]])


def test_decode_rejects_a_wrong_layout() -> None:
    with pytest.raises(ValueError, match="batch 1"):
        decode(np.zeros((2, 10, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[1, 4 \+ classes, N\]"):
        decode(np.zeros((1, 3, 5), dtype=np.float32))


# ------------------------------------------------------------------------------- letterbox
def test_letterbox_maps_boxes_both_ways() -> None:
    image = np.zeros((720, 1280, 3), dtype=np.uint8)
    canvas, info = letterbox(image, 320, 320)
    assert canvas.shape == (320, 320, 3)
    # two pyrDown halvings shift the picture by 0.25 + 0.125 input px (see below)
    assert (info.scale, info.pad_x, info.pad_y) == (0.25, 0.375, 70.375)
    assert canvas[0, 0].tolist() == [114, 114, 114] and canvas[160, 160].tolist() == [0, 0, 0]
    frame_boxes = np.array([[100.0, 200.0, 300.0, 400.0]])
    back = info.to_frame(info.to_input(frame_boxes))
    np.testing.assert_allclose(back, frame_boxes, atol=1e-4)
    np.testing.assert_allclose(info.to_input(frame_boxes), [[25.375, 120.375, 75.375, 170.375]])


@pytest.mark.parametrize(
    ("frame", "size"), [((720, 1280), 320), ((480, 640), 320), ((700, 1000), 256)]
)
def test_the_letterbox_maps_a_shapes_centre_to_where_the_shrink_puts_it(
    frame: tuple[int, int], size: int
) -> None:
    """A bright square's intensity centroid in the input, mapped back, is its centre in the
    frame (pixel k covering [k, k + 1)): the pyramid's sub-pixel shift is in the pads."""
    h, w = frame
    for x0, y0 in ((400, 200), (101, 333)):
        image = np.zeros((h, w, 3), dtype=np.uint8)
        image[y0 : y0 + 24, x0 : x0 + 24] = 255
        canvas, info = letterbox(image, size, size)
        weight = canvas[..., 0].astype(np.float64) * (canvas[..., 0] != 114)
        ys, xs = np.mgrid[: canvas.shape[0], : canvas.shape[1]]
        cx = float((weight * (xs + 0.5)).sum() / weight.sum())
        cy = float((weight * (ys + 0.5)).sum() / weight.sum())
        back = info.to_frame(np.array([[cx, cy, cx, cy]]))[0]
        np.testing.assert_allclose(back[:2], [x0 + 12, y0 + 12], atol=0.15 / info.scale)


def test_shrink_keeps_every_small_object_where_a_bilinear_resize_drops_some() -> None:
    import cv2

    sums, naive_sums = [], []
    for off in range(4):  # a 2×2 px object at each offset of the 4-px sampling grid
        image = np.zeros((720, 1280, 3), dtype=np.uint8)
        image[400 + off : 402 + off, 600 + off : 602 + off] = 255
        sums.append(int(shrink(image, 320, 180)[..., 0].astype(int).sum()))
        naive = cv2.resize(image, (320, 180), interpolation=cv2.INTER_LINEAR)
        naive_sums.append(int(naive[..., 0].astype(int).sum()))
    # the pyramid keeps its energy (4 × 255 / 16 ≈ 64) at every offset
    assert all(50 <= v <= 80 for v in sums), sums
    assert min(naive_sums) == 0 and max(naive_sums) >= 3 * 64  # skipped, or blown up


# ------------------------------------------------------------------------------- class maps
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Hardhat", "head_helmet"),
        ("NO-Hardhat", "head_bare"),
        ("no_helmet", "head_bare"),
        ("Person", "person"),
        ("Safety Vest", "vest"),
        ("NO-Safety Vest", None),  # no SiteHawk class: a missing vest is inferred per person
        ("machinery", "machine"),
        ("Safety Cone", None),
        ("fire", "fire_smoke"),
    ],
)
def test_class_names_map_onto_sitehawk_classes(name: str, expected: str | None) -> None:
    assert map_class(name) == expected


def test_class_map_overrides_are_checked() -> None:
    names = ["Hardhat", "NO-Hardhat", "Safety Cone"]
    assert build_class_map(names, {"Safety Cone": "machine"}) == [
        "head_helmet",
        "head_bare",
        "machine",
    ]
    with pytest.raises(ValueError, match="not classes of the model"):
        build_class_map(names, {"Helmet": "head_helmet"})
    with pytest.raises(ValueError, match="not one of"):
        build_class_map(names, {"Hardhat": "hat"})


# --------------------------------------------------------------------- ONNX models (onnx pkg)
YOLO_NAMES = {0: "Hardhat", 1: "NO-Hardhat", 2: "Person", 3: "Safety Cone"}


def _yolo_model(path: Path, candidates: np.ndarray, size: int = 640, names: bool = True) -> None:
    """A YOLOv8-format ONNX model whose output is ``candidates`` whatever the image."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    const = numpy_helper.from_array(candidates.astype(np.float32), "cands")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["cands", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(candidates.shape))],
        initializer=[const, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if names:
        model.metadata_props.add(key="names", value=repr(YOLO_NAMES))
    onnx.save(model, str(path))


def _candidates() -> np.ndarray:
    # 2 candidates in a 640×640 input: a NO-Hardhat head and a Safety Cone (unmapped)
    c = np.zeros((1, 4 + len(YOLO_NAMES), 2), dtype=np.float32)
    c[0, :4, 0] = [320, 320, 100, 50]
    c[0, 4 + 1, 0] = 0.8
    c[0, :4, 1] = [100, 200, 20, 20]
    c[0, 4 + 3, 1] = 0.9
    return c


def test_a_yolo_format_onnx_model_is_decoded_with_its_metadata(tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector

    path = tmp_path / "hardhat.onnx"
    _yolo_model(path, _candidates())
    det = ModelDetector(path)
    assert det.manifest.classes == list(YOLO_NAMES.values())
    assert det.class_map == ["head_helmet", "head_bare", "person", None]
    dets = det.detect_image(np.zeros((720, 1280, 3), dtype=np.uint8))
    # 1280×720 → scale 0.5, pad_y 140, one pyrDown (the picture 0.25 input px right and down):
    # (270, 295, 370, 345) → (539.5, 309.5, 739.5, 409.5)
    assert len(dets) == 1
    assert dets[0].cls == "head_bare" and dets[0].score == pytest.approx(0.8)
    np.testing.assert_allclose(dets[0].bbox, (539.5, 309.5, 739.5, 409.5), atol=1e-3)
    # an explicit class map can take the cone in
    det2 = ModelDetector(path, class_map={"Safety Cone": "machine"})
    assert sorted(d.cls for d in det2.detect_image(np.zeros((720, 1280, 3), np.uint8))) == [
        "head_bare",
        "machine",
    ]


def test_a_yolo_model_without_names_needs_a_class_map(tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector
    from edge.perception.manifest import DetectorModelError

    path = tmp_path / "anon.onnx"
    _yolo_model(path, _candidates(), names=False)
    with pytest.raises(DetectorModelError, match="none of the model's classes"):
        ModelDetector(path)
    det = ModelDetector(path, class_map={"class1": "head_bare"})
    assert [d.cls for d in det.detect_image(np.zeros((720, 1280, 3), np.uint8))] == ["head_bare"]


def _with_manifest(tmp_path: Path, **changes: object) -> Path:
    from firmware_config.manifest import manifest_path, sha256_of

    path = tmp_path / "detector.onnx"
    _yolo_model(path, _candidates())
    manifest = {
        "schema": "sitehawk.detector/1",
        "file": path.name,
        "sha256": sha256_of(path),
        "inputs": [{"name": "images", "shape": [1, 3, 640, 640]}],
        "outputs": [{"name": "output0", "shape": [1, 8, 2]}],
        "classes": list(YOLO_NAMES.values()),
    }
    manifest.update(changes)  # type: ignore[arg-type]
    manifest_path(path).write_text(json.dumps(manifest))
    return path


def test_a_manifest_model_loads_and_mismatches_name_the_file(tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector
    from edge.perception.manifest import DetectorModelError

    assert ModelDetector(_with_manifest(tmp_path)).manifest.classes[1] == "NO-Hardhat"
    cases = [
        ({"sha256": "0" * 64}, r"detector\.manifest\.json:sha256: .* does not match"),
        ({"classes": ["a", "b"]}, r"outputs\.0\.shape: \[1, 8, 2\] does not fit 2 classes"),
        (
            {"inputs": [{"name": "images", "shape": [1, 3, 320, 320]}]},
            r"inputs\.0\.shape: \[1, 3, 320, 320\], but .*detector\.onnx takes \[1, 3, 640, 640\]",
        ),
        ({"inputs": [{"name": "image", "shape": [1, 3, 640, 640]}]}, r"inputs\.0\.name: 'image'"),
        ({"format": "pytorch"}, r"detector\.manifest\.json:format"),
    ]
    for change, pattern in cases:
        with pytest.raises(DetectorModelError, match=pattern):
            ModelDetector(_with_manifest(tmp_path, **change))


def test_a_corrupt_or_missing_model_file_is_named(tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector
    from edge.perception.manifest import DetectorModelError
    from firmware_config.manifest import manifest_path, sha256_of

    with pytest.raises(DetectorModelError, match=r"nope\.onnx: no such model file"):
        ModelDetector(tmp_path / "nope.onnx")
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(DetectorModelError, match=r"broken\.onnx: ONNX Runtime cannot load it"):
        ModelDetector(path)  # no manifest: read as a YOLO model
    good = _with_manifest(tmp_path)
    raw = json.loads(manifest_path(good).read_text())
    good.write_bytes(b"garbage")
    raw["sha256"] = sha256_of(good)
    manifest_path(good).write_text(json.dumps(raw))
    with pytest.raises(DetectorModelError, match=r"detector\.onnx: ONNX Runtime cannot load it"):
        ModelDetector(good)


def test_the_tensorrt_backend_says_what_is_missing(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - a machine with TensorRT
        pytest.skip("TensorRT is installed here")
    from edge.perception.detector import ModelDetector
    from edge.perception.manifest import DetectorModelError
    from firmware_config.manifest import manifest_path

    onnx_path = _with_manifest(tmp_path)
    engine = tmp_path / "detector.engine"
    engine.write_bytes(b"serialized engine")
    raw = json.loads(manifest_path(onnx_path).read_text())
    from firmware_config.manifest import sha256_of

    raw.update(file=engine.name, sha256=sha256_of(engine), format="tensorrt")
    manifest_path(engine).write_text(json.dumps(raw))
    with pytest.raises(DetectorModelError, match=r"detector\.engine: the tensorrt backend needs"):
        ModelDetector(engine)
