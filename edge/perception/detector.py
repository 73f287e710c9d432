"""The model detector: letterbox → inference backend → YOLO decode + NMS → typed detections.

Runs SiteHawk's exported detector (a ``sitehawk.detector/1`` manifest beside the model) or any
YOLOv8/YOLO11-format ONNX detector (class names from the model's metadata, mapped onto SiteHawk's
classes by :mod:`edge.perception.classmap`). Implements the agent's
:class:`~edge.perception.backend.Detector` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.camera.source import Frame
from edge.onnx_io import check_session_io, open_session
from edge.perception.classmap import build_class_map
from edge.perception.detection import Detection
from edge.perception.engines import OnnxRuntimeEngine, make_engine
from edge.perception.manifest import (
    DetectorManifest,
    DetectorModelError,
    PreprocessSpec,
    check_detector_manifest,
    yolo_manifest,
)
from edge.perception.postprocess import DecodeConfig, decode
from edge.perception.preprocess import Letterbox, letterbox
from firmware_config.manifest import (
    check_model_file,
    load_manifest_file,
    manifest_path,
    sha256_of,
)

#: File suffixes of serialized TensorRT engines (run with the ``tensorrt`` backend by default).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def make_input(
    image: np.ndarray, input_w: int, input_h: int, spec: PreprocessSpec | None = None
) -> tuple[np.ndarray, Letterbox]:
    """BGR frame → (1, 3, H, W) float32 input as ``spec`` says, and the letterbox used."""
    spec = spec or PreprocessSpec()
    canvas, info = letterbox(image, input_w, input_h, spec.pad_value)
    if spec.color == "rgb":
        canvas = canvas[..., ::-1]
    tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(spec.scale)
    return np.ascontiguousarray(tensor), info


def detections_from(
    out: np.ndarray,
    info: Letterbox,
    class_names: Sequence[str | None],
    config: DecodeConfig,
) -> list[Detection]:
    """Raw YOLO-format output → detections in frame pixels (classes mapped to None dropped)."""
    boxes, scores, classes = decode(out, config)
    result = []
    for box, score, cls in zip(info.to_frame(boxes), scores, classes, strict=True):
        name = class_names[int(cls)]
        x0, y0, x1, y1 = (float(v) for v in box)
        if name is None or x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        result.append(Detection(name, float(score), (x0, y0, x1, y1)))
    return result


class ModelDetector:
    """A detector model file run by an inference backend."""

    name = "detector"

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str | None = None,
        class_map: Mapping[str, str | None] | None = None,
        decode_config: DecodeConfig | None = None,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorModelError(f"{self.path}: no such model file")
        is_engine = self.path.suffix in ENGINE_SUFFIXES
        self.backend = backend or ("tensorrt" if is_engine else "onnxruntime")
        if manifest_path(self.path).is_file():
            self.manifest = load_manifest_file(self.path, DetectorManifest, DetectorModelError)
            check_model_file(self.path, self.manifest, DetectorModelError)
            check_detector_manifest(self.path, self.manifest)
            self.engine = make_engine(self.backend, self.path, providers=providers, threads=threads)
            if isinstance(self.engine, OnnxRuntimeEngine):
                check_session_io(
                    self.engine.session,
                    self.path,
                    self.manifest.inputs,
                    [self.manifest.outputs[0].name],
                    DetectorModelError,
                )
        elif self.backend == "onnxruntime":
            session = open_session(self.path, DetectorModelError, providers, threads)
            self.manifest = yolo_manifest(self.path, session, sha256_of(self.path))
            self.engine = OnnxRuntimeEngine(self.path, session=session)
        else:
            raise DetectorModelError(
                f"{self.path}: no manifest beside it ({manifest_path(self.path).name}); a "
                "TensorRT engine needs the manifest of the ONNX model it was built from"
            )
        try:
            self.class_map = build_class_map(self.manifest.classes, class_map)
        except ValueError as exc:
            raise DetectorModelError(f"{self.path}: {exc}") from None
        if not any(self.class_map):
            raise DetectorModelError(
                f"{self.path}: none of the model's classes {self.manifest.classes} maps onto "
                "SiteHawk's classes; give a class map"
            )
        d = self.manifest.decode
        self.decode_config = decode_config or DecodeConfig(
            d.conf, d.iou, d.max_det, d.max_candidates
        )
        self.input_h, self.input_w = self.manifest.input_hw
        self._out_rows = 4 + len(self.manifest.classes)

    @property
    def models(self) -> Mapping[str, str]:
        return {self.path.stem: self.manifest.sha256}

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """BGR frame → the model's input tensor and the letterbox used."""
        return make_input(image, self.input_w, self.input_h, self.manifest.preprocess)

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The model's raw output ``[1, 4 + classes, N]`` for a BGR frame, and the letterbox."""
        tensor, info = self.preprocess(image)
        out = self.engine.run(tensor)
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] != self._out_rows:
            raise DetectorModelError(
                f"{self.path}: output shape {list(out.shape)} does not match the manifest's "
                f"{len(self.manifest.classes)} classes (expected [1, {self._out_rows}, N])"
            )
        return out, info

    def detect_image(
        self, image: np.ndarray, decode_config: DecodeConfig | None = None
    ) -> list[Detection]:
        """Detections in ``image``'s pixel coordinates."""
        out, info = self.raw(image)
        return detections_from(out, info, self.class_map, decode_config or self.decode_config)

    def detect(self, frame: Frame) -> list[Detection]:
        return self.detect_image(frame.image)

    def close(self) -> None:
        self.engine.close()
