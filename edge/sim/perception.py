"""Simulated perception: ground truth turned into detections with resolution-dependent errors.

Lets the agent and the RL environment run before a detector is trained, with the failure modes a
real detector has: small objects are missed, heads are confused (helmet vs bare) when they are only
a few pixels tall, boxes jitter, and false positives appear. Sizes are judged in 1280×720
reference pixels, so a 96×96 observation and a full-HD frame of the same view behave alike.
Deterministic for a (seed, frame index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.perception.detection import CLASSES, Detection
from edge.sim.render import CLS_HEAD_BARE, CLS_HEAD_HELMET, FrameTruth


@dataclass(frozen=True)
class SimPerceptionConfig:
    """Detection-rate curves (logistic in reference pixel height) and false-positive rate."""

    half_rate_px: tuple[float, ...] = (9.0, 7.0, 7.0, 8.0, 10.0, 14.0)  # per class: 50 % recall
    slope_px: float = 2.0
    head_confusion_px: float = 11.0  # heads this tall are classified right 75 % of the time
    max_recall: float = 0.97
    box_jitter: float = 0.06  # box coordinate noise, as a fraction of box size
    false_positives_per_frame: float = 0.08
    min_visible: float = 0.35


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class SimulatedPerception:
    """Turns a :class:`FrameTruth` into a list of :class:`Detection`."""

    def __init__(self, seed: int = 0, config: SimPerceptionConfig | None = None):
        self.seed = seed
        self.config = config or SimPerceptionConfig()

    def detect(self, truth: FrameTruth, frame_index: int) -> list[Detection]:
        cfg = self.config
        rng = np.random.default_rng((self.seed * 7_919 + frame_index) & 0x7FFFFFFF)
        n = len(truth.classes)
        out: list[Detection] = []
        if n:
            size = truth.ref_height_px
            half = np.asarray(cfg.half_rate_px)[truth.classes]
            p = cfg.max_recall * _sigmoid((size - half) / cfg.slope_px)
            p = np.where(
                truth.occluded | (truth.visible < cfg.min_visible),
                0.0,
                p * np.minimum(1.0, truth.visible / 0.7),
            )
            hit = rng.random(n) < p
            cls = truth.classes.copy()
            heads = (cls == CLS_HEAD_HELMET) | (cls == CLS_HEAD_BARE)
            right = 0.5 + 0.5 * _sigmoid((size - cfg.head_confusion_px) / cfg.slope_px * 1.2)
            flip = heads & (rng.random(n) > right)
            cls[flip] = np.where(cls[flip] == CLS_HEAD_HELMET, CLS_HEAD_BARE, CLS_HEAD_HELMET)
            score = np.clip(
                0.3 + 0.65 * _sigmoid((size - half) / cfg.slope_px) + rng.normal(0, 0.06, n),
                0.05,
                0.99,
            )
            score[flip] *= 0.8
            boxes = truth.boxes.astype(np.float64)
            wh = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, -1)
            boxes = boxes + rng.normal(0, cfg.box_jitter, (n, 4)) * wh
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, truth.width)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, truth.height)
            for k in np.flatnonzero(hit):
                b = boxes[k]
                # keep sub-pixel boxes of small frames: sizes are judged in reference pixels
                if b[2] > b[0] and b[3] > b[1]:
                    out.append(
                        Detection(
                            CLASSES[int(cls[k])],
                            float(score[k]),
                            (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                        )
                    )
        for _ in range(int(rng.poisson(cfg.false_positives_per_frame))):
            c = int(rng.choice(len(CLASSES), p=[0.35, 0.15, 0.2, 0.15, 0.05, 0.1]))
            h = float(rng.uniform(6, 24)) * truth.width / 1280.0
            w = h * (0.45 if c == 0 else 1.0)
            x = float(rng.uniform(0, truth.width - w))
            y = float(rng.uniform(0, truth.height - h))
            out.append(Detection(CLASSES[c], float(rng.uniform(0.25, 0.55)), (x, y, x + w, y + h)))
        return out
