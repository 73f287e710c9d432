"""Running a detector for evaluation: a torch checkpoint or an exported model, one interface.

Both paths share the edge's pre-processing (:func:`edge.perception.detector.make_input`) and
produce the same raw ``[1, 4 + classes, N]`` output, so a checkpoint and its export are scored by
exactly the same code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge.perception.detector import ModelDetector, make_input
from edge.perception.preprocess import Letterbox
from trainer.detect.evaluate import RawFn
from trainer.detect.model import DetectorConfig, SiteDetector


def load_checkpoint_model(path: Path, *, ema: bool = True) -> tuple[SiteDetector, dict[str, Any]]:
    """The detector in a training checkpoint (its EMA weights by default), in eval mode."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint: {exc}") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a SiteHawk detector checkpoint (no model_config/model)")
    model = SiteDetector(DetectorConfig.from_dict(ckpt["model_config"]))
    state = ckpt["ema"] if ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(state)
    model.eval()
    return model, ckpt


class TorchDetector:
    """A checkpoint run in torch eager mode (``inference_mode``)."""

    def __init__(self, model: SiteDetector):
        self.model = model.eval()
        self.input_h, self.input_w = model.cfg.input_size

    def raw(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        tensor, info = make_input(image, self.input_w, self.input_h)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(tensor))
        return out.numpy(), info


def load_raw_fn(
    path: Path, *, threads: int | None = None, weights: str = "ema"
) -> tuple[RawFn, list[str | None], dict[str, Any]]:
    """(raw function, class name per output class, description) for a ``.pt`` or model file."""
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix == ".pt":
        model, ckpt = load_checkpoint_model(path, ema=weights == "ema")
        if threads is not None:
            torch.set_num_threads(threads)
        det = TorchDetector(model)
        classes: list[str | None] = list(model.cfg.classes)
        return det.raw, classes, {"format": "torch", "step": ckpt.get("step"), "weights": weights}
    onnx_det = ModelDetector(path, threads=threads)
    return (
        onnx_det.raw,
        list(onnx_det.class_map),
        {"format": onnx_det.manifest.format, "sha256": onnx_det.manifest.sha256},
    )
