"""Exporting the detector: torch checkpoint → ONNX + manifest, parity-checked against ORT.

``sitehawk-export detector CKPT --out models/detector.onnx`` writes

* ``detector.onnx`` — one file (no external data), fixed input ``images [1, 3, 320, 320]``,
  output ``output0 [1, 4 + classes, N]`` in the YOLO format (N = 8400 per box group at
  320×320: trainer/detect/model.py), class names also in the model's metadata (``names``, as
  Ultralytics writes them) so other YOLO tooling reads it too;
* ``detector.manifest.json`` — ``sitehawk.detector/1`` (:mod:`edge.perception.manifest`), with
  the parity result under ``parity``;
* with ``--int8``: ``detector.int8.onnx`` + manifest — static QDQ quantisation (per-channel
  weights, activations calibrated on rendered training views) with ONNX Runtime's quantiser.

Parity: on rendered frames (validation sites) the torch model and the ONNX model through the
edge's own :class:`~edge.perception.detector.ModelDetector` must agree: the max abs difference
of the raw outputs is reported, and the detections after NMS must be the same (classes equal,
boxes and scores within 1e-3). A mismatch fails the export and removes the written files.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.perception.detector import ModelDetector, make_input
from edge.perception.manifest import DETECTOR_SCHEMA, DetectorManifest
from edge.perception.postprocess import DecodeConfig
from firmware_config.manifest import manifest_path, sha256_of, write_manifest_file
from trainer.detect.infer import TorchDetector, load_checkpoint_model
from trainer.detect.model import DetectorConfig, SiteDetector, count_flops, count_params

INPUT_NAME = "images"
OUTPUT_NAME = "output0"
#: Parity tolerance on boxes (input pixels) and scores of the detections after NMS.
PARITY_TOL = 1e-3
PARITY_SEEDS = list(range(800, 1000))  # validation sites
CALIB_SEEDS = list(range(0, 800))  # training sites


class ExportError(RuntimeError):
    """An export that failed its checks (the written files are removed)."""


@dataclass
class ParityResult:
    frames: int
    max_abs_diff: float
    detections: int
    mismatched_frames: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "max_abs_diff": self.max_abs_diff,
            "detections": self.detections,
            "mismatched_frames": self.mismatched_frames,
            "tolerance": PARITY_TOL,
        }


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def export_onnx(model: SiteDetector, out: Path) -> None:
    """Write the ONNX graph of ``model`` (one file) with YOLO-style class metadata."""
    import onnx

    h, w = model.cfg.input_size
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, h, w),),
        str(out),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    proto = onnx.load(str(out))
    meta = {
        "names": repr(dict(enumerate(model.cfg.classes))),
        "imgsz": repr([h, w]),
        "task": "detect",
        "description": "SiteHawk hazard detector (YOLO-format output)",
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(out))


def build_manifest(
    model: SiteDetector, path: Path, source: str, extra: dict[str, Any] | None = None
) -> DetectorManifest:
    h, w = model.cfg.input_size
    n = sum((h // s) * (w // s) for s in model.cfg.strides) * len(model.cfg.box_groups)
    return DetectorManifest.model_validate(
        {
            "schema": DETECTOR_SCHEMA,
            "format": "onnx",
            "file": path.name,
            "sha256": sha256_of(path),
            "inputs": [{"name": INPUT_NAME, "shape": [1, 3, h, w]}],
            "outputs": [{"name": OUTPUT_NAME, "shape": [1, 4 + len(model.cfg.classes), n]}],
            "classes": list(model.cfg.classes),
            "params": count_params(model),
            "flops": count_flops(model, h, w),
            "source": source,
            "versions": _versions(),
            **(extra or {}),
        }
    )


def parity_frames(num: int, seeds: list[int] = PARITY_SEEDS) -> list[np.ndarray]:
    """``num`` rendered 1280×720 frames of validation sites (the view sampler's)."""
    from trainer.detect.dataset import render_views

    return [rv.image for rv in render_views(seeds, range(num), randomize=False)]


def check_parity(
    torch_det: TorchDetector, onnx_det: ModelDetector, frames: list[np.ndarray]
) -> ParityResult:
    """Raw-output difference and detection equality of torch vs ONNX Runtime."""
    cfg = DecodeConfig(conf=0.25, iou=0.6, max_det=300)
    max_diff, total, bad = 0.0, 0, 0
    from edge.perception.postprocess import decode

    for image in frames:
        out_t, _ = torch_det.raw(image)
        out_o, _ = onnx_det.raw(image)
        max_diff = max(max_diff, float(np.max(np.abs(out_t - out_o))))
        bt, st, ct = decode(out_t, cfg)
        bo, so, co = decode(out_o, cfg)
        total += len(bt)
        same = (
            len(bt) == len(bo)
            and np.array_equal(ct, co)
            and np.allclose(bt, bo, atol=PARITY_TOL, rtol=0)
            and np.allclose(st, so, atol=PARITY_TOL, rtol=0)
        )
        bad += not same
    return ParityResult(len(frames), max_diff, total, bad)


def _output_convs(path: Path, cfg: DetectorConfig) -> list[str]:
    """Names of the Conv nodes that make the outputs: the heads' box convs (4 channels per box
    group, or 4 × bins for a DFL box), their class convs, and the DFL box's expectation."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    channels = {cfg.box_channels * len(cfg.box_groups), cfg.num_classes}
    if cfg.box_bins:
        channels.add(2)  # edge_distances: numerator and denominator
    return [
        n.name
        for n in graph.node
        if n.op_type == "Conv" and shapes.get(n.input[1], [0])[0] in channels
    ]


def quantize_int8(
    fp32: Path, out: Path, model: SiteDetector, calib_frames: int = 64, progress: bool = True
) -> dict[str, Any]:
    """Static QDQ int8 quantisation of ``fp32`` calibrated on rendered training views."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from trainer.detect.dataset import render_views

    h, w = model.cfg.input_size
    images = [
        make_input(rv.image, w, h)[0]
        for rv in render_views(CALIB_SEEDS, range(0, calib_frames * 7, 7), randomize=True)
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    pre = out.with_suffix(".pre.onnx")
    # ONNX's own shape inference and graph optimisation only: onnxruntime's symbolic shape
    # inference fails on the DFL box's ReduceMax (opset 18, axes as an input)
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    # The heads' last 1×1 convolutions (box channels, one per class) and the DFL box's
    # expectation stay fp32: their outputs become pixel coordinates and scores, where 8-bit
    # steps would move a 4-px box by a pixel.
    excluded = _output_convs(pre, model.cfg)
    try:
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        pre.unlink(missing_ok=True)
    return {
        "format": "QDQ",
        "quantized_ops": ["Conv"],
        "fp32_nodes": excluded,
        "weights": "int8 per-channel",
        "activations": "uint8 per-tensor (MinMax)",
        "calibration_frames": len(images),
        "calibration_seeds": [CALIB_SEEDS[0], CALIB_SEEDS[-1]],
    }


def export_detector(
    ckpt: Path,
    out: Path,
    *,
    parity: int = 50,
    int8: bool = False,
    calib_frames: int = 64,
    progress: bool = True,
    weights: str = "ema",
) -> dict[str, Any]:
    """Export ``ckpt`` to ``out`` (+ manifest, parity, optional int8); returns a summary.

    ``weights``: the checkpoint's EMA weights (``ema``, the default) or its raw ``model`` weights.
    """
    if out.suffix != ".onnx":
        raise ValueError(f"--out {out}: the exported model is an .onnx file")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    model, ckpt_data = load_checkpoint_model(ckpt, ema=weights == "ema")
    source = f"{ckpt} ({weights} weights, step {ckpt_data.get('step')})"
    written = [out, manifest_path(out)]
    try:
        export_onnx(model, out)
        manifest = build_manifest(model, out, source)
        write_manifest_file(out, manifest)
        frames = parity_frames(parity) if parity > 0 else []
        result = check_parity(TorchDetector(model), ModelDetector(out), frames)
        if result.mismatched_frames:
            raise ExportError(
                f"parity: {result.mismatched_frames} of {result.frames} frames give other "
                f"detections in ONNX Runtime than in torch (max abs diff "
                f"{result.max_abs_diff:.2e})"
            )
        manifest = manifest.model_copy(update={"parity": result.as_dict()})
        write_manifest_file(out, manifest)
        summary: dict[str, Any] = {
            "onnx": str(out),
            "manifest": str(manifest_path(out)),
            "parity": result.as_dict(),
            "params": manifest.params,
            "flops": manifest.flops,
            "step": ckpt_data.get("step"),
        }
        if int8:
            q = out.with_name(f"{out.stem}.int8.onnx")
            written += [q, manifest_path(q)]
            quant = quantize_int8(out, q, model, calib_frames, progress)
            qm = build_manifest(model, q, source, {"quantization": quant})
            write_manifest_file(q, qm)
            summary["int8"] = {"onnx": str(q), "quantization": quant}
        return summary
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
