"""The detector's manifest (``sitehawk.detector/1``): what the edge needs to run a model file.

Written by ``sitehawk-export detector`` beside the model (``detector.onnx`` →
``detector.manifest.json``)::

    {
      "schema": "sitehawk.detector/1",
      "format": "onnx",                      # or "tensorrt" (a serialized engine)
      "file": "detector.onnx", "sha256": "…", "data_files": {},
      "inputs": [{"name": "images", "shape": [1, 3, 320, 320], "dtype": "float32"}],
      "outputs": [{"name": "output0", "shape": [1, 10, 8400], "dtype": "float32"}],
      "output_format": "yolo",               # [1, 4 + classes, N]: cx, cy, w, h, class scores
      "classes": ["person", "head_helmet", …],
      "preprocess": {"letterbox": true, "pad_value": 114, "color": "rgb", "scale": 0.00392…},
      "decode": {"conf": 0.25, "iou": 0.6, "max_det": 300, "max_candidates": 3000},
      "params": 1234567, "flops": 1.2e9,
      "source": "runs/detector/last.pt", "versions": {"torch": "2.13.0", …}
    }

A YOLOv8/YOLO11 ONNX export without a SiteHawk manifest is read from the model's own metadata
instead (:func:`yolo_manifest`).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from firmware_config.manifest import ModelManifestBase, ModelManifestError, TensorSpec

DETECTOR_SCHEMA = "sitehawk.detector/1"


class DetectorModelError(ModelManifestError):
    """A detector model or manifest that cannot be used (names the file and the mismatch)."""


class PreprocessSpec(BaseModel):
    """How a frame becomes the input tensor."""

    model_config = ConfigDict(extra="forbid")

    letterbox: bool = True
    pad_value: int = Field(114, ge=0, le=255)
    color: Literal["rgb", "bgr"] = "rgb"
    scale: float = Field(1.0 / 255.0, gt=0)


class DecodeSpec(BaseModel):
    """Default thresholds of the decoder (the device config may override them)."""

    model_config = ConfigDict(extra="forbid")

    conf: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.6, gt=0.0, le=1.0)
    max_det: int = Field(300, ge=1)
    max_candidates: int = Field(3000, ge=1)


class DetectorManifest(ModelManifestBase):
    """The manifest beside a detector model file."""

    schema_: Literal["sitehawk.detector/1"] = Field("sitehawk.detector/1", alias="schema")
    format: Literal["onnx", "tensorrt"] = "onnx"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    output_format: Literal["yolo"] = "yolo"
    classes: list[str] = Field(min_length=1, description="class names in output order")
    preprocess: PreprocessSpec = Field(default_factory=PreprocessSpec)
    decode: DecodeSpec = Field(default_factory=DecodeSpec)
    params: int | None = Field(None, description="number of parameters")
    flops: float | None = Field(None, description="FLOPs of one forward pass at batch 1")
    parity: dict[str, Any] | None = Field(
        None, description="the exporter's torch-vs-runtime check (frames, max_abs_diff, …)"
    )
    quantization: dict[str, Any] | None = Field(
        None, description="how an int8 model was quantised (null: not quantised)"
    )

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the input image."""
        shape = self.inputs[0].shape
        return int(shape[2]), int(shape[3])


def check_detector_manifest(path: Path, manifest: DetectorManifest) -> None:
    """Shapes the decoder relies on: one NCHW image input, one [1, 4 + classes, N] output."""
    from firmware_config.manifest import manifest_path

    mpath = manifest_path(path)
    if len(manifest.inputs) != 1:
        raise DetectorModelError(f"{mpath}:inputs: expected one image input")
    shape = manifest.inputs[0].shape
    if len(shape) != 4 or shape[1] != 3 or min(shape[2:]) < 1:
        raise DetectorModelError(f"{mpath}:inputs.0.shape: {shape}, expected [1, 3, height, width]")
    if len(manifest.outputs) != 1:
        raise DetectorModelError(f"{mpath}:outputs: expected one output [1, 4 + classes, N]")
    out = manifest.outputs[0].shape
    if len(out) != 3 or out[1] != 4 + len(manifest.classes):
        raise DetectorModelError(
            f"{mpath}:outputs.0.shape: {out} does not fit {len(manifest.classes)} classes "
            f"(expected [1, {4 + len(manifest.classes)}, N])"
        )


def yolo_manifest(path: Path, session: Any, sha256: str) -> DetectorManifest:
    """A manifest for a YOLOv8/YOLO11-format ONNX model from its own graph and metadata.

    Ultralytics writes ``names`` (a dict literal ``{0: 'person', …}``) into the model's
    metadata; without it the class names are ``class0``, ``class1``, … (map them explicitly).
    """
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise DetectorModelError(
            f"{path}: expected one image input and a [1, 4 + classes, N] output, got inputs "
            f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
        )
    in_shape = [d if isinstance(d, int) else -1 for d in inputs[0].shape]
    out_shape = [d if isinstance(d, int) else -1 for d in outputs[0].shape]
    if len(in_shape) != 4 or in_shape[1] != 3 or min(in_shape[2:]) < 1:
        raise DetectorModelError(
            f"{path}: input {inputs[0].name!r} has shape {inputs[0].shape}; a detector needs a "
            "fixed [1, 3, height, width] image input (export it with a fixed imgsz)"
        )
    if len(out_shape) != 3 or out_shape[1] < 5:
        raise DetectorModelError(
            f"{path}: output {outputs[0].name!r} has shape {outputs[0].shape}, not the YOLO "
            "detection format [1, 4 + classes, N]"
        )
    num_classes = out_shape[1] - 4
    meta = session.get_modelmeta().custom_metadata_map
    classes = [f"class{i}" for i in range(num_classes)]
    if "names" in meta:
        try:
            names = ast.literal_eval(meta["names"])
            ordered = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else names
            classes = [str(n) for n in ordered]
        except (ValueError, SyntaxError) as exc:
            raise DetectorModelError(f"{path}: metadata 'names' is not readable: {exc}") from None
        if len(classes) != num_classes:
            raise DetectorModelError(
                f"{path}: metadata names {len(classes)} classes but the output has "
                f"{num_classes} ({outputs[0].shape})"
            )
    return DetectorManifest.model_validate(
        {
            "schema": DETECTOR_SCHEMA,
            "format": "onnx",
            "file": path.name,
            "sha256": sha256,
            "inputs": [{"name": inputs[0].name, "shape": [1, *in_shape[1:]]}],
            "outputs": [{"name": outputs[0].name, "shape": [1, *out_shape[1:]]}],
            "classes": classes,
            "source": meta.get("description") or meta.get("author") or "YOLO-format ONNX model",
        }
    )
