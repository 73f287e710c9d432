"""Decoding a YOLO-format detector output and non-maximum suppression, in numpy.

SiteHawk's own detector and any YOLOv8 / YOLO11 ONNX export produce the same raw output:
``[1, 4 + C, N]`` — for each of N candidates a box ``cx, cy, w, h`` in input pixels and C class
scores that are already probabilities (sigmoid applied in the graph). :func:`decode` keeps each
candidate's best class above a confidence threshold and runs class-aware NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodeConfig:
    """Thresholds of :func:`decode`."""

    conf: float = 0.25  # minimum class score kept
    iou: float = 0.6  # NMS: a box overlapping a better one of its class more than this is dropped
    max_det: int = 300  # at most this many detections per image
    max_candidates: int = 3000  # the best this many candidates (by score) enter NMS


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre/size → (N, 4) corners."""
    half = boxes[:, 2:4] / 2.0
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with each of (N, 4) boxes (x_min, y_min, x_max, y_max)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, max_det: int | None = None
) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds ``iou``.
    Ties in score keep the earlier index.
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_det is not None and len(keep) >= max_det:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # shift each class into its own region of the plane (the torchvision trick)
    offset = classes.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
    return nms(boxes + offset, scores, iou, max_det)


def decode(
    output: np.ndarray, config: DecodeConfig = DecodeConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw ``[1, 4 + C, N]`` (or ``[4 + C, N]``) output → boxes (K, 4) xyxy, scores, classes.

    Boxes are in input pixels; the caller maps them back to the frame (un-letterbox).
    """
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 3:
        if out.shape[0] != 1:
            raise ValueError(f"expected batch 1, got output shape {list(out.shape)}")
        out = out[0]
    if out.ndim != 2 or out.shape[0] < 5:
        raise ValueError(f"expected an output [1, 4 + classes, N], got shape {list(output.shape)}")
    cls_scores = out[4:]
    classes = np.argmax(cls_scores, axis=0)
    scores = cls_scores[classes, np.arange(out.shape[1])]
    keep = np.flatnonzero(scores >= config.conf)
    if keep.size > config.max_candidates:
        keep = keep[np.argsort(-scores[keep], kind="stable")[: config.max_candidates]]
    boxes = cxcywh_to_xyxy(out[:4, keep].T)
    scores, classes = scores[keep], classes[keep]
    sel = batched_nms(boxes, scores, classes, config.iou, config.max_det)
    return boxes[sel], scores[sel], classes[sel]
