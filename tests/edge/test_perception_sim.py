"""Simulated perception: size-dependent misses and confusions, false positives, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from edge.geometry import PTZPose
from edge.perception.detection import CLASSES
from edge.sim.generate import generate_site
from edge.sim.perception import SimPerceptionConfig, SimulatedPerception
from edge.sim.render import CLS_HEAD_BARE, CLS_HEAD_HELMET, CLS_PERSON, FrameTruth, Renderer
from edge.sim.world import Site

W, H = 1280, 720
NUM_FRAMES = 300


def _truth(
    heights_px: list[float],
    cls: int = CLS_PERSON,
    occluded: bool = False,
    visible: float = 1.0,
    width: int = W,
) -> FrameTruth:
    """One object per entry, laid out in a row, ``heights_px`` tall in reference pixels."""
    scale = width / 1280.0
    n = len(heights_px)
    boxes = []
    for k, h_ref in enumerate(heights_px):
        h = h_ref * scale
        x = 20.0 + k * (width - 40.0) / max(n, 1)
        boxes.append([x, 300.0 * scale, x + 0.4 * h, 300.0 * scale + h])
    return FrameTruth(
        t=0.0,
        width=width,
        height=int(720 * scale),
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.full(n, cls, dtype=np.int64),
        visible=np.full(n, visible, dtype=np.float32),
        occluded=np.full(n, occluded, dtype=bool),
        ref_height_px=np.array(heights_px, dtype=np.float64),
        owner=np.arange(n),
    )


def _recall(perception: SimulatedPerception, truth: FrameTruth, cls_name: str) -> float:
    hits = 0
    for frame in range(NUM_FRAMES):
        hits += sum(d.cls == cls_name and d.score > 0.25 for d in perception.detect(truth, frame))
    return hits / (NUM_FRAMES * len(truth.classes))


# ------------------------------------------------------------------ size-dependent misses
def test_small_objects_are_missed_more_than_big_ones() -> None:
    config = SimPerceptionConfig(false_positives_per_frame=0.0)
    perception = SimulatedPerception(seed=1, config=config)
    recalls = [_recall(perception, _truth([h] * 5), "person") for h in (3.0, 7.0, 12.0, 40.0)]
    assert recalls == sorted(recalls), recalls
    assert recalls[0] < 0.1
    assert recalls[-1] > 0.9
    assert recalls[-1] - recalls[0] > 0.8


def test_size_is_judged_in_reference_pixels_not_frame_pixels() -> None:
    config = SimPerceptionConfig(false_positives_per_frame=0.0)
    perception = SimulatedPerception(seed=2, config=config)
    # from 9 reference px up (below that a box in a 96-px frame is under 0.2 px wide, a floor the
    # simulator applies in frame pixels)
    for h in (9.0, 12.0, 30.0):
        big = _recall(perception, _truth([h] * 4, width=1280), "person")
        small = _recall(perception, _truth([h] * 4, width=96), "person")
        assert small == pytest.approx(big, abs=0.03), h


def test_occluded_and_mostly_outside_objects_are_never_detected() -> None:
    config = SimPerceptionConfig(false_positives_per_frame=0.0)
    perception = SimulatedPerception(seed=3, config=config)
    assert _recall(perception, _truth([60.0] * 4, occluded=True), "person") == 0.0
    assert _recall(perception, _truth([60.0] * 4, visible=0.2), "person") == 0.0
    assert _recall(perception, _truth([60.0] * 4, visible=1.0), "person") > 0.9


def test_small_heads_are_confused_more_often() -> None:
    config = SimPerceptionConfig(false_positives_per_frame=0.0)
    perception = SimulatedPerception(seed=4, config=config)

    def wrong_share(height: float) -> float:
        truth = _truth([height] * 6, cls=CLS_HEAD_HELMET)
        right = wrong = 0
        for frame in range(NUM_FRAMES):
            for d in perception.detect(truth, frame):
                right += d.cls == CLASSES[CLS_HEAD_HELMET]
                wrong += d.cls == CLASSES[CLS_HEAD_BARE]
        assert right + wrong > 0
        return wrong / (right + wrong)

    small, big = wrong_share(9.0), wrong_share(30.0)
    assert small > 0.15
    assert big < 0.05
    assert small > 3 * big


# ------------------------------------------------------------------ determinism
def test_deterministic_for_seed_and_frame() -> None:
    truth = _truth([4.0, 8.0, 10.0, 14.0, 30.0] * 3)
    a = SimulatedPerception(seed=5)
    b = SimulatedPerception(seed=5)
    runs_a = [a.detect(truth, frame) for frame in range(40)]
    runs_b = [b.detect(truth, frame) for frame in range(40)]
    assert runs_a == runs_b
    assert [a.detect(truth, frame) for frame in range(40)] == runs_a  # no hidden state
    assert len({tuple(r) for r in runs_a}) > 30  # frames differ from each other
    other = [SimulatedPerception(seed=6).detect(truth, frame) for frame in range(40)]
    assert other != runs_a


# ------------------------------------------------------------------ false positives
def test_false_positives_appear_over_many_frames() -> None:
    perception = SimulatedPerception(seed=7)
    empty = _truth([])
    counts = [len(perception.detect(empty, frame)) for frame in range(1000)]
    expected = SimPerceptionConfig().false_positives_per_frame * 1000
    assert 0.5 * expected < sum(counts) < 1.6 * expected
    classes = {d.cls for frame in range(1000) for d in perception.detect(empty, frame)}
    assert len(classes) >= 3
    for frame in range(200):
        for d in perception.detect(empty, frame):
            x0, y0, x1, y1 = d.bbox
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
            assert d.score < 0.6
    silent = SimulatedPerception(seed=7, config=SimPerceptionConfig(false_positives_per_frame=0))
    assert not any(silent.detect(empty, frame) for frame in range(200))


# ------------------------------------------------------------------ on rendered frames
def test_detections_on_rendered_frames_lie_inside_the_frame() -> None:
    site = Site(generate_site(8, duration_s=120.0))
    renderer = Renderer(site)
    perception = SimulatedPerception(seed=8)
    found = 0
    for k, pose in enumerate([PTZPose(0.0, -20.0, 1.0), PTZPose(10.0, -15.0, 4.0)]):
        for width, height in ((1280, 720), (96, 96)):
            _, truth = renderer.render(pose, 20.0, width, height, index=k)
            assert truth is not None
            for d in perception.detect(truth, k):
                x0, y0, x1, y1 = d.bbox
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
                assert d.cls in CLASSES and 0.0 < d.score < 1.0
                found += 1
    assert found > 0
