"""Scoring a detector with pycocotools: mAP@0.5, mAP@0.5:0.95, per class and per size bucket.

``sitehawk-train detector-eval --model PATH --seeds A-B --json OUT`` renders views of those sites
with the documented sampler (:mod:`trainer.detect.views`, recorded in the JSON), runs the model
— a torch checkpoint (``.pt``) or an exported ONNX model through the edge backend, the same
pre- and post-processing either way — and scores the detections with ``pycocotools.COCOeval``.

Size buckets go by each object's own box height in pixels of the 1280×720 frame: ``<16``,
``16-32``, ``32-64``, ``>=64``. COCOeval's area ranges are reused for this: for the bucketed run
the ``area`` of every ground-truth box and detection is set to its *height*, and the ranges are
the bucket limits. Up to 300 detections per image are scored (wide views hold ~100 objects).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.perception.detection import CLASSES
from edge.perception.detector import detections_from
from edge.perception.postprocess import DecodeConfig
from edge.perception.preprocess import Letterbox

SIZE_BUCKETS = {
    "<16": (0.0, 16.0),
    "16-32": (16.0, 32.0),
    "32-64": (32.0, 64.0),
    ">=64": (64.0, 1e9),
}
MAX_DETS = 300
#: Decoding for mAP: keep low-confidence detections (the precision–recall curve needs them).
EVAL_DECODE = DecodeConfig(conf=0.001, iou=0.6, max_det=MAX_DETS, max_candidates=3000)

RawFn = Callable[[np.ndarray], tuple[np.ndarray, Letterbox]]


def detect_for_coco(
    raw: RawFn, images: Iterable[tuple[int, np.ndarray]], class_names: list[str | None]
) -> list[dict[str, Any]]:
    """COCO result dicts for ``(image_id, BGR image)`` pairs."""
    out = []
    for image_id, image in images:
        output, info = raw(image)
        out += coco_results(image_id, output, info, class_names)
    return out


def coco_results(
    image_id: int, output: np.ndarray, info: Letterbox, class_names: list[str | None]
) -> list[dict[str, Any]]:
    """COCO result dicts (xywh in frame pixels) of one raw model output, decoded for mAP."""
    results = []
    for d in detections_from(output, info, class_names, EVAL_DECODE):
        x0, y0, x1, y1 = d.bbox
        results.append(
            {
                "image_id": image_id,
                "category_id": CLASSES.index(d.cls) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": d.score,
            }
        )
    return results


def _cocoeval(
    gt: dict[str, Any],
    dets: list[dict[str, Any]],
    by_height: bool,
    iou_thresholds: Sequence[float] | None = None,
) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = copy.deepcopy(gt)
    dets = copy.deepcopy(dets)
    if by_height:
        for a in gt["annotations"]:
            a["area"] = a["bbox"][3]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        if not dets:
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": []}
            coco_dt.createIndex()
        if by_height:
            for a in coco_dt.anns.values():
                a["area"] = a["bbox"][3]
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [10, 100, MAX_DETS]
        if iou_thresholds is not None:
            ev.params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
        if by_height:
            ev.params.areaRng = [[lo, hi - 1e-6] for lo, hi in SIZE_BUCKETS.values()]
            ev.params.areaRngLbl = list(SIZE_BUCKETS)
        ev.evaluate()
        ev.accumulate()
    return ev


def _ap(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def coco_metrics(gt: dict[str, Any], dets: list[dict[str, Any]]) -> dict[str, Any]:
    """``map50``, ``map50_95`` and ``per_class`` (``ap50``, ``ap50_95``, ``ap50_by_size``,
    ``ap10_by_size``).

    ``ap10_by_size`` is AP at IoU 0.1 per height bucket: whether the model finds the object at
    all. Its gap to ``ap50_by_size`` is what localisation costs (boxes placed or sized too
    loosely for IoU 0.5 — half a pixel of a 2-px wide worker at 320 px input).
    """
    ev = _cocoeval(gt, dets, by_height=False)
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    m = len(ev.params.maxDets) - 1
    ev_h = _cocoeval(gt, dets, by_height=True)
    prec_h = ev_h.eval["precision"]
    prec_10 = _cocoeval(gt, dets, by_height=True, iou_thresholds=[0.1]).eval["precision"]
    counts = _gt_counts(gt)
    per_class: dict[str, Any] = {}
    ap50s, ap5095s = [], []
    for k, cat_id in enumerate(ev.params.catIds):
        name = CLASSES[cat_id - 1]
        ap50 = _ap(prec[0, :, k, 0, m])
        ap5095 = _ap(prec[:, :, k, 0, m])
        by_size = {
            label: _ap(prec_h[0, :, k, a, m]) for a, label in enumerate(ev_h.params.areaRngLbl)
        }
        per_class[name] = {
            "ap50": ap50,
            "ap50_95": ap5095,
            "ap50_by_size": by_size,
            "ap10_by_size": {
                label: _ap(prec_10[0, :, k, a, m]) for a, label in enumerate(ev_h.params.areaRngLbl)
            },
            "num_gt": counts[name]["all"],
            "num_gt_by_size": {b: counts[name][b] for b in SIZE_BUCKETS},
        }
        if ap50 is not None:
            ap50s.append(ap50)
        if ap5095 is not None:
            ap5095s.append(ap5095)
    return {
        "map50": float(np.mean(ap50s)) if ap50s else 0.0,
        "map50_95": float(np.mean(ap5095s)) if ap5095s else 0.0,
        "per_class": per_class,
    }


def _gt_counts(gt: dict[str, Any]) -> dict[str, dict[str, int]]:
    counts = {name: {"all": 0, **{b: 0 for b in SIZE_BUCKETS}} for name in CLASSES}
    for a in gt["annotations"]:
        if a.get("iscrowd"):
            continue
        c = counts[CLASSES[a["category_id"] - 1]]
        c["all"] += 1
        h = a["bbox"][3]
        for b, (lo, hi) in SIZE_BUCKETS.items():
            if lo <= h < hi:
                c[b] += 1
    return counts


def format_table(metrics: dict[str, Any]) -> str:
    """A text table: one row per class, AP50 per size bucket."""
    head = f"{'class':<12}{'AP50':>7}{'AP50:95':>9}" + "".join(f"{b:>8}" for b in SIZE_BUCKETS)
    lines = [head, "-" * len(head)]

    def f(v: float | None) -> str:
        return "   -" if v is None else f"{v:.3f}"

    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<12}{f(row['ap50']):>7}{f(row['ap50_95']):>9}"
            + "".join(f"{f(row['ap50_by_size'][b]):>8}" for b in SIZE_BUCKETS)
        )
    lines.append(f"{'all':<12}{metrics['map50']:>7.3f}{metrics['map50_95']:>9.3f}")
    return "\n".join(lines)


def evaluate_model(
    model_path: Path,
    seeds: list[int],
    num: int,
    *,
    threads: int | None = None,
    progress: bool = True,
    weights: str = "ema",
    randomize: bool = False,
) -> dict[str, Any]:
    """Render ``num`` views of ``seeds``, run the model, and score it (the eval JSON).

    ``randomize``: the workers' helmets and vests taken off at random as in the training data
    (:func:`~trainer.detect.dataset.randomize_attributes`), recorded in the sampler.
    """
    from tqdm import tqdm

    from trainer.detect.dataset import VIEWS_PER_SITE, merge_views, render_views
    from trainer.detect.infer import load_raw_fn
    from trainer.detect.views import SAMPLER

    raw, class_names, info = load_raw_fn(model_path, threads=threads, weights=weights)
    views = list(
        tqdm(
            render_views(seeds, range(num), randomize=randomize),
            total=num,
            desc="render",
            disable=not progress,
        )
    )
    gt = merge_views(views)
    images = ((v.index + 1, v.image) for v in views)
    dets = detect_for_coco(
        raw, tqdm(images, total=num, desc="detect", disable=not progress), class_names
    )
    metrics = coco_metrics(gt, dets)
    return {
        **metrics,
        "sampler": {
            **SAMPLER.describe(),
            "views_per_site": VIEWS_PER_SITE,
            "attributes": "randomized" if randomize else "as-generated",
        },
        "seeds": [min(seeds), max(seeds)],
        "num_images": num,
        "num_detections": len(dets),
        "model": {"path": str(model_path), **info},
        "decode": {"conf": EVAL_DECODE.conf, "iou": EVAL_DECODE.iou, "max_det": MAX_DETS},
    }


def save_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
