"""The VLM gate asks only about views the model can judge (edge/alerts/vlm_gate.py
``unanswerable``): not an object cut by the frame's edge, not a crop far below the model's input
size, not a frame the camera's motion smears. It answers ``NotYet`` and the alert manager asks
again on later frames; an alert that never gets such a view goes out unasked (``vlm: null``) —
never suppressed on a view that cannot show the hazard."""

from __future__ import annotations

import io
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.alerts.manager import LookTarget, NotYet
from edge.alerts.rules import HazardObservation
from edge.alerts.vlm_gate import (
    LOOK_CROP_MODEL_SCALES,
    WorkerVlmGate,
    _window,
    look_pose,
    unanswerable,
)
from edge.geometry import PTZPose, fov_v_deg

SHAPE = (720, 1280, 3)


@pytest.mark.parametrize("hazard", ["no_helmet", "no_vest", "fire_smoke", "zone_intrusion"])
def test_an_object_cut_by_the_frames_edge_is_asked_about_only_where_the_cut_hides_nothing(
    hazard: str,
) -> None:
    inside = (0.45, 0.3, 0.5, 0.6)  # 216 px tall, well inside
    assert unanswerable(SHAPE, inside, hazard, 96) is None
    top, bottom, left = (0.45, 0.0, 0.5, 0.3), (0.45, 0.7, 0.5, 1.0), (0.0, 0.3, 0.05, 0.6)
    near_bottom = (0.45, 0.7, 0.5, 0.9985)  # 1 px from the bottom edge
    hides = {  # which cuts can hide what the question is about
        "no_helmet": (top, left),  # legs out of view: the head still shows
        "no_vest": (top, bottom, left, near_bottom),
        "zone_intrusion": (top, bottom, left, near_bottom),
        "fire_smoke": (),  # flames partly in view are still flames
    }[hazard]
    for cut in (top, bottom, left, near_bottom):
        why = unanswerable(SHAPE, cut, hazard, 96)
        assert ("edge" in (why or "")) == (cut in hides), (hazard, cut, why)


def test_a_worker_cut_at_the_bottom_gets_a_head_crop_of_their_height_from_the_box_width() -> None:
    # a worker 216 px tall and 93 px wide (aspect 0.43): whole, and with the legs out of view
    whole = (0.45, 0.3, 0.45 + 93 / 1280, 0.6)
    legs_out = (0.45, 0.85, 0.45 + 93 / 1280, 1.0)  # 108 px above the bottom edge
    cx, _, side = _window(SHAPE, whole, "no_helmet")
    cx_cut, cy_cut, side_cut = _window(SHAPE, legs_out, "no_helmet")
    assert side_cut == pytest.approx(side, rel=0.01) and cx_cut == pytest.approx(cx)
    assert cy_cut == pytest.approx(0.85 * 720 + 216 * 0.3 / 1.75, rel=0.01)  # head, not hips
    assert unanswerable(SHAPE, legs_out, "no_helmet", 96) is None
    assert "edge" in (unanswerable(SHAPE, legs_out, "no_vest", 96) or "")


def test_a_crop_under_the_models_input_is_not_asked_about() -> None:
    # a 53 px tall worker: head and shoulders are a 30 px crop, the whole worker a 66 px one —
    # both would be blown up for a 96 px model, which learnt from views rendered at its size
    small = (0.5, 0.4, 0.51, 0.4 + 53 / 720)
    assert "crop" in (unanswerable(SHAPE, small, "no_helmet", 96) or "")
    assert "crop" in (unanswerable(SHAPE, small, "no_vest", 96) or "")
    # an 80 px worker: the whole worker is a 100 px crop (asked), the head a 46 px one (not)
    medium = (0.5, 0.4, 0.52, 0.4 + 80 / 720)
    assert unanswerable(SHAPE, medium, "no_vest", 96) is None
    assert "crop" in (unanswerable(SHAPE, medium, "no_helmet", 96) or "")
    assert unanswerable(SHAPE, medium, "no_vest", 160) is not None


def test_a_view_smeared_by_the_cameras_motion_is_not_asked_about_yet() -> None:
    worker = (0.45, 0.3, 0.5, 0.6)  # 216 px tall: head and shoulders are a 123 px crop
    assert unanswerable(SHAPE, worker, "no_helmet", 96, blur_px=3.0) is None  # 2.3 model px
    assert "motion" in (unanswerable(SHAPE, worker, "no_helmet", 96, blur_px=6.0) or "")
    # the wider zone view (4 heights of a 36 px worker: 144 px) takes more: 4 px → 2.7 model px
    zone_worker = (0.49, 0.45, 0.5, 0.5)
    assert unanswerable(SHAPE, zone_worker, "zone_intrusion", 96, 4.0) is None
    assert "motion" in (unanswerable(SHAPE, zone_worker, "zone_intrusion", 96, 6.0) or "")


def test_a_model_trained_on_gate_views_is_asked_about_them() -> None:
    """A manifest's ``trained_views`` (a model trained with ``--gate-views``): it learnt to doubt
    what a smeared or cut view cannot show, so the gate asks within what it saw."""
    worker = (0.45, 0.3, 0.5, 0.6)  # a 123 px head-and-shoulders crop
    cut = (0.45, 0.0, 0.5, 0.3)
    trained: dict[str, Any] = {"max_blur_model_px": 24.0, "partly_out_of_view": True}
    assert unanswerable(SHAPE, cut, "no_helmet", 96, **trained) is None
    assert unanswerable(SHAPE, worker, "no_helmet", 96, blur_px=25.0, **trained) is None
    assert "motion" in (unanswerable(SHAPE, worker, "no_helmet", 96, 40.0, **trained) or "")
    small = (0.5, 0.4, 0.51, 0.4 + 53 / 720)  # never below half the model's input
    assert "crop" in (unanswerable(SHAPE, small, "no_helmet", 96, **trained) or "")


class _Worker:
    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, image: np.ndarray, question: str) -> Any:
        self.submitted.append((image.shape, question))
        return object()


def test_the_gate_does_not_ask_yet_and_counts_it() -> None:
    worker = _Worker()
    gate = WorkerVlmGate(worker)  # type: ignore[arg-type]
    frame = np.zeros(SHAPE, dtype=np.uint8)
    pose = PTZPose(0.0, 0.0, 4.0)

    def obs(bbox: tuple[float, float, float, float]) -> HazardObservation:
        return HazardObservation("no_helmet", "p1", 0.0, 0.0, bbox, None, 0.9, size_deg=2.0)

    not_yet = gate(obs((0.7, 0.0, 0.73, 0.2)), frame, pose)  # head above the frame
    assert isinstance(not_yet, NotYet) and "edge" in not_yet.reason
    assert isinstance(gate(obs((0.45, 0.3, 0.5, 0.6)), frame, pose, 20.0), NotYet)  # smeared
    assert worker.submitted == []
    assert gate.stats()["not_yet"] == 2 and gate.stats()["asked"] == 0
    assert gate(obs((0.45, 0.3, 0.5, 0.6)), frame, pose, 1.0) is not None
    assert worker.submitted == [((96, 96, 3), "is the worker in the centre wearing a hard hat?")]
    assert gate.stats()["asked"] == 1


@pytest.mark.parametrize("hazard", ["no_helmet", "no_vest", "fire_smoke"])
def test_a_look_frames_the_questions_crop_at_twice_the_models_input(hazard: str) -> None:
    """The pose a waiting hazard's look steers to: the crop centred, 2 × 96 px of the frame."""
    target = LookTarget(hazard, "p1", 30.0, -12.0, 1.5, "cut", 0.0)
    pose = look_pose(target, fov_h_1x_deg=60.0, zoom_max=30.0, width_px=1280, height_px=720)
    # the crop, placed by the framing the gate cuts (_window) for an object at the new pose
    deg_per_px = fov_v_deg(pose.zoom, 1280, 720, 60.0) / 720
    h = 1.5 / deg_per_px / 720  # the object's height as a share of the frame
    cy = 0.5 + (pose.tilt_deg - target.tilt_deg) / deg_per_px / 720  # its centre, rows down
    w = 0.4 * h * 720 / 1280
    bbox = (0.5 - w / 2, cy - h / 2, 0.5 + w / 2, cy + h / 2)
    x, y, side = _window(SHAPE, bbox, hazard)
    assert side == pytest.approx(LOOK_CROP_MODEL_SCALES * 96, rel=0.02)
    assert (x, y) == (pytest.approx(640), pytest.approx(360, abs=1))
    assert unanswerable(SHAPE, bbox, hazard, 96) is None
    assert pose.pan_deg == 30.0 and (pose.tilt_deg > -12.0) == (hazard == "no_helmet")


def test_a_look_stays_within_the_zoom_range() -> None:
    huge = LookTarget("no_vest", "p1", 0.0, 0.0, 40.0, "cut", 0.0)
    tiny = LookTarget("no_vest", "p1", 0.0, 0.0, 0.01, "small", 0.0)
    assert look_pose(huge, 60.0, 30.0, 1280, 720).zoom == pytest.approx(1.0)
    assert look_pose(tiny, 60.0, 30.0, 1280, 720).zoom == 30.0


def _seed7_waits(look: bool) -> tuple[dict[str, int], int, list[float]]:
    """Seed 7's built-in site for 100 s (a no_vest event ripe at ~73 s, a no_helmet one at ~92 s)
    with a gate that can judge a worker only once the question's crop is 150 px or more of the
    frame — more than the greedy policy's own zoom gives it. Returns the manager's wait counts,
    the control steps that looked, and the crop sides the gate was finally asked about."""
    from edge.console import RunConsole
    from edge.runner import RunOptions, prepare

    asked: list[float] = []

    def gate(obs: HazardObservation, frame: np.ndarray, pose: PTZPose, blur_px: float) -> Any:
        side = _window(frame.shape, obs.bbox, obs.type)[2]
        reason = unanswerable(frame.shape, obs.bbox, obs.type, 96, blur_px)
        if reason is not None or side < 150:
            return NotYet(reason or f"crop {side:.0f} px")
        asked.append(side)
        return {
            "question": "?",
            "answer": "no",
            "confirmed": True,
            "latency_ms": 1.0,
            "error": None,
        }

    with tempfile.TemporaryDirectory(prefix="sitehawk-look-") as tmp_name:
        tmp = Path(tmp_name)
        opts = RunOptions(
            config=None, seed=7, duration_s=100.0, policy="greedy", out=tmp / "run",
            outbox=tmp / "outbox.sqlite3", start_s=0.0, report=False, perception="sim", vlm=None,
        )  # fmt: skip
        run = prepare(opts, RunConsole(file=io.StringIO(), live=False))
        (cam,) = run.agent.cameras
        cam.manager.vlm_gate, cam.look = gate, look
        for hazard in ("no_helmet", "no_vest"):
            rule = cam.manager.rules[hazard]
            cam.manager.rules[hazard] = replace(rule, require_vlm=True)
        try:
            run.agent.run(100.0)
        finally:
            run.agent.stop()
            run.outbox.close()
    return dict(cam.manager.vlm_counts), cam.num_looks, asked


def test_a_waiting_hazard_steers_the_camera_until_the_gate_can_ask() -> None:
    """With ``vlm.look`` the camera goes to a hazard the gate cannot judge yet (centred, zoomed to
    the question's framing) and the gate gets its view; without, the events go out unasked."""
    counts, looks, asked = _seed7_waits(look=True)
    assert looks > 0 and counts["waited"] >= 1
    assert counts.get("unasked_after_wait", 0) + counts.get("unasked_out_of_view", 0) == 0
    assert len(asked) >= counts["waited"] and min(asked) >= 150  # every waiting one, up close
    counts_off, looks_off, asked_off = _seed7_waits(look=False)
    unasked_off = counts_off.get("unasked_after_wait", 0) + counts_off.get("unasked_out_of_view", 0)
    assert looks_off == 0 and len(asked_off) < counts_off["waited"] and unasked_off >= 1


def test_the_zone_question_is_asked_only_near_the_zones_boundary() -> None:
    """A worker deep inside a zone is inside whatever the ground position's error, and the zone
    view would not show the line: the alert goes out unasked (None), counted."""
    from edge.vlm.questions import ZONE_ASK_MAX_BOUNDARY_M

    worker = _Worker()
    gate = WorkerVlmGate(worker)  # type: ignore[arg-type]
    frame = np.zeros(SHAPE, dtype=np.uint8)

    def obs(boundary_m: float | None) -> HazardObservation:
        return HazardObservation(
            "zone_intrusion", "z1/p1", 0.0, 0.0, (0.49, 0.45, 0.5, 0.5), (1.0, 2.0), 0.9,
            size_deg=2.0, zone_id="z1", boundary_m=boundary_m,
        )  # fmt: skip

    assert gate(obs(ZONE_ASK_MAX_BOUNDARY_M + 0.5), frame, PTZPose(0.0, 0.0, 4.0)) is None
    assert worker.submitted == [] and gate.stats()["not_asked_deep_inside"] == 1
    for near in (ZONE_ASK_MAX_BOUNDARY_M - 0.5, None):  # near the line, or not known
        assert gate(obs(near), frame, PTZPose(0.0, 0.0, 4.0)) is not None
    assert len(worker.submitted) == 2


def test_a_worker_whose_crop_would_be_off_centre_is_not_asked_about_yet() -> None:
    """Near the frame's edge (not touching it) the question's window would shift to stay inside,
    leaving the worker off the centre the question asks about: not asked (the look centres it);
    a fire's view may shift."""
    near_right = (0.955, 0.3, 0.985, 0.6)  # 25 px from the edge: both crops would shift
    for hazard in ("no_vest", "no_helmet"):
        reason = unanswerable(SHAPE, near_right, hazard, 96)
        assert reason is not None and "centred" in reason, hazard
        assert unanswerable(SHAPE, (0.45, 0.3, 0.48, 0.6), hazard, 96) is None
    assert unanswerable(SHAPE, near_right, "fire_smoke", 96) is None


@pytest.mark.parametrize("hazard", ["no_helmet", "no_vest", "zone_intrusion"])
def test_a_box_that_does_not_show_one_worker_is_not_asked_about_yet(hazard: str) -> None:
    """Two heads in the worker's box (workers one behind the other: the crop's centre falls
    between them) or, for the helmet and vest questions, none (a legs-only box) is NotYet; one
    head, or a count nobody made, is asked."""
    worker = _Worker()
    gate = WorkerVlmGate(worker)  # type: ignore[arg-type]
    frame = np.zeros(SHAPE, dtype=np.uint8)

    def ask(heads: int | None) -> object:
        obs = HazardObservation(
            hazard, "p1", 0.0, 0.0, (0.45, 0.3, 0.5, 0.6), (1.0, 2.0), 0.9,
            size_deg=2.0, boundary_m=1.0, heads_in_box=heads,
        )  # fmt: skip
        return gate(obs, frame, PTZPose(0.0, 0.0, 4.0))

    two = ask(2)
    assert isinstance(two, NotYet) and "2 heads" in two.reason
    none = ask(0)
    if hazard == "zone_intrusion":  # the feet decide, and they show
        assert not isinstance(none, NotYet)
    else:
        assert isinstance(none, NotYet) and "no head" in none.reason
    for heads in (1, None):
        assert not isinstance(ask(heads), NotYet)
    assert len(worker.submitted) == 2 + (hazard == "zone_intrusion")
