"""Detector export: ONNX + manifest, parity torch vs ONNX Runtime, int8, scoring either alike."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny detector trained for a few steps on a few rendered views."""
    from trainer.detect.train import Recipe, train

    root = tmp_path_factory.mktemp("detx")
    recipe = replace(
        Recipe.load("tiny"), train_data=str(root / "train"), val_data=str(root / "val")
    )
    return train(recipe, root / "run", progress=False)


def test_export_writes_onnx_and_manifest_with_parity(checkpoint: Path, tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector
    from export.detector import export_detector
    from firmware_config.manifest import manifest_path, sha256_of
    from trainer.detect.dataset import render_views
    from trainer.detect.infer import TorchDetector, load_checkpoint_model

    out = tmp_path / "models" / "detector.onnx"
    summary = export_detector(checkpoint, out, parity=6)
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["schema"] == "sitehawk.detector/1"
    assert manifest["sha256"] == sha256_of(out)
    assert manifest["inputs"] == [{"name": "images", "shape": [1, 3, 320, 320], "dtype": "float32"}]
    # the tiny recipe has the shipped layout: a person box group beside the shared one, DFL box
    assert manifest["outputs"][0]["shape"] == [1, 10, 2 * 8400]
    assert manifest["classes"][:3] == ["person", "head_helmet", "head_bare"]
    assert manifest["parity"]["frames"] == 6 and manifest["parity"]["mismatched_frames"] == 0
    assert manifest["parity"]["max_abs_diff"] < 1e-3
    assert manifest["source"].startswith(f"{checkpoint} (ema weights, step ")
    assert "torch" in manifest["versions"]
    assert summary["params"] == manifest["params"] > 0
    # the edge backend runs it and agrees with torch on a frame it has not seen
    det = ModelDetector(out)
    model, _ = load_checkpoint_model(checkpoint)
    (view,) = list(render_views([1003], [5]))
    raw_t, _ = TorchDetector(model).raw(view.image)
    raw_o, _ = det.raw(view.image)
    np.testing.assert_allclose(raw_o, raw_t, atol=1e-3, rtol=1e-4)
    # the class names travel in the model's metadata too (YOLO tooling reads them)
    onnx = pytest.importorskip("onnx")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["names"].startswith("{0: 'person'")


def test_checkpoint_and_export_score_alike(checkpoint: Path, tmp_path: Path) -> None:
    from export.detector import export_detector
    from trainer.detect.evaluate import evaluate_model

    out = tmp_path / "d.onnx"
    export_detector(checkpoint, out, parity=0)
    a = evaluate_model(checkpoint, [1000, 1001], 8, progress=False)
    b = evaluate_model(out, [1000, 1001], 8, progress=False)
    for key in ("map50", "map50_95", "per_class", "sampler"):
        assert key in a
    assert a["model"]["format"] == "torch" and b["model"]["format"] == "onnx"
    assert a["map50"] == pytest.approx(b["map50"], abs=1e-3)
    row = a["per_class"]["head_bare"]
    assert set(row) >= {"ap50", "ap50_95", "ap50_by_size"}
    assert list(row["ap50_by_size"]) == ["<16", "16-32", "32-64", ">=64"]


def test_a_bad_checkpoint_or_target_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    from export.detector import export_detector

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"x\.pt: not a readable torch checkpoint"):
        export_detector(bad, tmp_path / "d.onnx")
    with pytest.raises(ValueError, match=r"\.onnx file"):
        export_detector(bad, tmp_path / "d.engine")
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.slow
def test_int8_export_runs_in_the_edge_backend(checkpoint: Path, tmp_path: Path) -> None:
    from edge.perception.detector import ModelDetector
    from export.detector import export_detector

    out = tmp_path / "d.onnx"
    summary = export_detector(checkpoint, out, parity=2, int8=True, calib_frames=4)
    q = Path(summary["int8"]["onnx"])
    det = ModelDetector(q)
    assert det.manifest.quantization is not None
    assert det.manifest.quantization["format"] == "QDQ"
    out_q, _ = det.raw(np.zeros((720, 1280, 3), dtype=np.uint8))
    assert out_q.shape == (1, 10, 2 * 8400)  # the tiny recipe: two box groups
