"""WorldTracker: tracks in pan/tilt survive pans and zooms; evidence only at judging resolution.

Detections are synthesised from the geometry: a fixed world point is projected into the camera
view of each pose (edge.geometry), exactly as a detector would see it there.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge.alerts
from edge.alerts.tracker import TrackerConfig, WorldTracker
from edge.geometry import CameraView, PTZPose, pan_tilt_of_point
from edge.perception.detection import Detection
from firmware_config.camera import CameraMountSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
MOUNT = CameraMountSpec(position=[0.0, 0.0], height_m=10.0, heading_deg=0.0)
POLE = (0.0, 0.0, 10.0)
W, H = 1280, 720
#: What the agent must never read (the same list as tests/edge/test_observation.py; the PTZ
#: kinematics in edge.sim.ptz are not ground truth).
GROUND_TRUTH_MODULES = (
    "edge.sim.world",
    "edge.sim.render",
    "edge.sim.generate",
    "edge.sim.perception",
    "edge.sim.virtual",
    "trainer",
)


def _view(pose: PTZPose, w: int = W, h: int = H) -> CameraView:
    return CameraView(POLE, 0.0, pose, w, h)


def _aim(xy: tuple[float, float], zoom: float, d_pan: float = 0.0, z_m: float = 0.9) -> PTZPose:
    """A pose looking at the body centre of someone standing at ``xy`` (offset by ``d_pan``)."""
    pan, tilt, _ = pan_tilt_of_point(POLE, 0.0, np.array([xy[0], xy[1], z_m]))
    return PTZPose(float(pan) + d_pan, float(tilt), zoom)


def _clip(box: tuple[float, ...], w: int, h: int) -> tuple[float, float, float, float]:
    return (
        min(max(box[0], 0.0), w),
        min(max(box[1], 0.0), h),
        min(max(box[2], 0.0), w),
        min(max(box[3], 0.0), h),
    )


def person_detections(
    pose: PTZPose,
    xy: tuple[float, float],
    *,
    helmet: bool = True,
    vest: bool = True,
    score: float = 0.9,
    w: int = W,
    h: int = H,
) -> list[Detection]:
    """Person, head and (optionally) vest boxes of a 1.75 m worker at ``xy`` seen from ``pose``."""
    uv, depth = _view(pose, w, h).project(np.array([[xy[0], xy[1], 0.0], [xy[0], xy[1], 1.75]]))
    if (depth <= 0).any():
        return []
    (u, foot), (_, top) = uv
    hp = foot - top
    person = (u - 0.17 * hp, top, u + 0.17 * hp, foot)
    if person[2] <= 0 or person[0] >= w or person[3] <= 0 or person[1] >= h:
        return []
    dets = [Detection("person", score, _clip(person, w, h))]
    head = (u - 0.08 * hp, top - 0.01 * hp, u + 0.08 * hp, top + 0.15 * hp)
    dets.append(Detection("head_helmet" if helmet else "head_bare", score, _clip(head, w, h)))
    if vest:
        torso = (u - 0.15 * hp, top + 0.17 * hp, u + 0.15 * hp, top + 0.51 * hp)
        dets.append(Detection("vest", score, _clip(torso, w, h)))
    return dets


def _people(tracker: WorldTracker) -> list:
    return [tr for tr in tracker.tracks if tr.kind == "person"]


WORKER = (6.0, 40.0)
#: A camera tour around the worker: wide, panned to both sides, zoomed in and out.
TOUR = [
    _aim(WORKER, 1.0),
    _aim(WORKER, 1.0, d_pan=-20.0),
    _aim(WORKER, 2.0, d_pan=6.0),
    _aim(WORKER, 5.0, d_pan=-1.5),
    _aim(WORKER, 8.0),
    _aim(WORKER, 12.0, d_pan=0.8),
    _aim(WORKER, 3.0, d_pan=8.0),
    _aim(WORKER, 1.0, d_pan=25.0),
]


# ------------------------------------------------------------------ one track through pans/zooms
def test_person_keeps_one_track_while_the_camera_pans_and_zooms() -> None:
    tracker = WorldTracker(MOUNT)
    t = 0.0
    pixel_centres = []
    for pose in TOUR:
        for _ in range(5):
            dets = person_detections(pose, WORKER)
            assert dets, pose
            pixel_centres.append(dets[0].center)
            tracker.update(dets, pose, W, H, t)
            t += 0.1
        people = _people(tracker)
        assert len(people) == 1, (pose, people)
    track = _people(tracker)[0]
    assert track.hits == 5 * len(TOUR) and track.confirmed
    # not vacuous: in pixels the worker jumped all over the frame
    us = [c[0] for c in pixel_centres]
    assert max(us) - min(us) > W / 2
    # the track sits where the worker is
    pan, tilt, _ = pan_tilt_of_point(POLE, 0.0, np.array([*WORKER, 0.875]))
    # (the box centre is not exactly the body centre's projection off the optical axis)
    assert track.pan_deg == pytest.approx(float(pan), abs=0.2)
    assert track.tilt_deg == pytest.approx(float(tilt), abs=0.2)
    assert track.ground_xy == pytest.approx(WORKER, abs=0.05)


def test_two_people_side_by_side_keep_their_own_tracks() -> None:
    other = (WORKER[0] + 2.5, WORKER[1])
    tracker = WorldTracker(MOUNT)
    ids = None
    for k, pose in enumerate(TOUR * 2):
        dets = person_detections(pose, WORKER) + person_detections(pose, other, helmet=False)
        tracker.update(dets, pose, W, H, 0.1 * k)
        people = sorted(_people(tracker), key=lambda tr: tr.pan_deg)
        assert len(people) == 2
        if ids is None:
            ids = [tr.id for tr in people]
        assert [tr.id for tr in people] == ids
    left, right = sorted(_people(tracker), key=lambda tr: tr.pan_deg)
    assert left.helmet.missing == 0 and left.helmet.worn > 0
    assert right.helmet.worn == 0 and right.helmet.missing > 0


def test_track_ids_are_unique_across_tracker_instances() -> None:
    pose = _aim(WORKER, 5.0)
    a, b = WorldTracker(MOUNT), WorldTracker(MOUNT)
    a.update(person_detections(pose, WORKER), pose, W, H, 0.0)
    b.update(person_detections(pose, WORKER), pose, W, H, 0.0)
    assert _people(a)[0].id != _people(b)[0].id


# ------------------------------------------------------------------ attribute evidence
def test_helmet_evidence_accumulates_only_at_judging_resolution() -> None:
    tracker = WorldTracker(MOUNT)
    # 40 m away at 1x the worker is ~49 reference px tall: head ~7 px, far below 16
    wide = _aim(WORKER, 1.0)
    for k in range(20):
        tracker.update(person_detections(wide, WORKER, helmet=False), wide, W, H, 0.1 * k)
    (track,) = _people(tracker)
    assert track.size_ref_px < 16 / 0.15
    assert track.helmet.num_judged == 0 and track.helmet.missing == 0 and track.helmet.worn == 0
    # 4x: head ~29 px: every frame counts, weighted by the score
    close = _aim(WORKER, 4.0)
    for k in range(10):
        dets = person_detections(close, WORKER, helmet=False, score=0.8)
        tracker.update(dets, close, W, H, 2.0 + 0.1 * k)
    (same,) = _people(tracker)
    assert same is track
    assert track.helmet.num_judged == 10
    assert track.helmet.worn == 0
    # ten frames of 0.8, decayed by at most 1 s of the 15 s half-life
    assert 0.8 * 10 * 0.95 < track.helmet.missing <= 8.0
    assert track.helmet.missing_probability() > 0.85


def test_judging_size_is_in_reference_pixels_not_frame_pixels() -> None:
    # the same view at 320x180: boxes 4x smaller in pixels, the same in reference pixels
    results = []
    for w, h in ((W, H), (320, 180)):
        tracker = WorldTracker(MOUNT)
        for zoom in (1.0, 4.0):
            pose = _aim(WORKER, zoom)
            for k in range(5):
                dets = person_detections(pose, WORKER, helmet=False, w=w, h=h)
                tracker.update(dets, pose, w, h, zoom * 10 + 0.1 * k)
        results.append(_people(tracker)[0].helmet.num_judged)
    assert results == [5, 5]


def test_vest_evidence_needs_a_resolvable_uncut_torso() -> None:
    pose = _aim(WORKER, 4.0)
    with_vest, without = WorldTracker(MOUNT), WorldTracker(MOUNT)
    for k in range(10):
        with_vest.update(person_detections(pose, WORKER, vest=True), pose, W, H, 0.1 * k)
        without.update(person_detections(pose, WORKER, vest=False), pose, W, H, 0.1 * k)
    assert _people(with_vest)[0].vest.worn > 0 and _people(with_vest)[0].vest.missing == 0
    assert _people(without)[0].vest.missing > 0 and _people(without)[0].vest.worn == 0
    assert _people(without)[0].vest.missing_probability() > 0.85
    # wide: torso too small to judge; cut by the frame's bottom edge: absence means nothing
    wide = _aim(WORKER, 1.0)
    tracker = WorldTracker(MOUNT)
    for k in range(10):
        tracker.update(person_detections(wide, WORKER, vest=False), wide, W, H, 0.1 * k)
    low = PTZPose(wide.pan_deg, wide.tilt_deg + 0.9, 12.0)  # feet below the frame
    dets = person_detections(low, WORKER, vest=False)
    assert dets[0].bbox[3] == H  # really cut
    for k in range(10):
        tracker.update(dets, low, W, H, 1.0 + 0.1 * k)
    assert _people(tracker)[0].vest.missing == 0


def test_a_person_track_counts_the_heads_inside_its_box() -> None:
    """One worker: one head; a box spanning a worker and a second head (one behind the other):
    two; a legs-only box (no head detected): none — what the VLM gate reads."""
    pose = _aim(WORKER, 4.0)
    tracker = WorldTracker(MOUNT)
    dets = person_detections(pose, WORKER)
    for k in range(5):
        tracker.update(dets, pose, W, H, 0.1 * k)
    (track,) = _people(tracker)
    assert track.heads_in_box == 1
    person, head = dets[0], dets[1]
    dy = 0.3 * person.height  # a second head a third of the way down the box
    second = Detection(
        "head_bare", 0.9, (head.bbox[0], head.bbox[1] + dy, head.bbox[2], head.bbox[3] + dy)
    )
    tracker.update([*dets, second], pose, W, H, 0.5)
    assert track.heads_in_box == 2
    tracker.update([d for d in dets if d.cls != "head_helmet"], pose, W, H, 0.6)
    assert track.heads_in_box == 0


def test_evidence_fades_so_a_removed_helmet_shows() -> None:
    pose = _aim(WORKER, 4.0)
    tracker = WorldTracker(MOUNT)
    t = 0.0
    for _ in range(100):  # 10 s with a helmet
        tracker.update(person_detections(pose, WORKER, helmet=True), pose, W, H, t)
        t += 0.1
    (track,) = _people(tracker)
    assert track.helmet.missing_probability() < 0.05
    for _ in range(100):  # then 10 s without
        tracker.update(person_detections(pose, WORKER, helmet=False), pose, W, H, t)
        t += 0.1
    assert track.helmet.missing_probability() > 0.5


# ------------------------------------------------------------------ lifetime
def test_out_of_view_track_is_kept_and_in_view_unseen_track_dies() -> None:
    cfg = TrackerConfig()
    tracker = WorldTracker(MOUNT, cfg)
    here = _aim(WORKER, 4.0)
    for k in range(5):
        tracker.update(person_detections(here, WORKER), here, W, H, 0.1 * k)
    (track,) = _people(tracker)
    # the camera looks elsewhere for 30 s: out of view, not "unseen"
    away = _aim(WORKER, 4.0, d_pan=60.0)
    t = 0.5
    while t < 30.5:
        tracker.update([], away, W, H, t)
        t += 0.5
    assert _people(tracker) == [track]
    assert track.unseen_in_view_s == 0.0
    # back on the spot, and the worker is gone: dies after lost_in_view_s
    t_back = t
    while _people(tracker):
        tracker.update([], here, W, H, t)
        t += 0.1
        assert t - t_back < cfg.lost_in_view_s + 0.5
    assert t - t_back >= cfg.lost_in_view_s


def test_a_track_too_small_to_detect_is_not_unseen_and_ages_out_later() -> None:
    # at 1x the worker is ~49 reference px tall: with detectable_px=60 a miss says nothing
    tracker = WorldTracker(MOUNT, TrackerConfig(out_of_view_s=20.0, detectable_px=60.0))
    here = _aim(WORKER, 4.0)
    for k in range(5):
        tracker.update(person_detections(here, WORKER), here, W, H, 0.1 * k)
    wide = PTZPose(here.pan_deg, here.tilt_deg, 1.0)
    t = 0.5
    while t < 10.0:
        tracker.update([], wide, W, H, t)
        t += 0.5
    assert len(_people(tracker)) == 1
    assert _people(tracker)[0].unseen_in_view_s == 0.0
    while t < 21.0:
        tracker.update([], wide, W, H, t)
        t += 0.5
    assert _people(tracker) == []


def test_single_false_positive_never_confirms() -> None:
    tracker = WorldTracker(MOUNT)
    pose = _aim(WORKER, 1.0)
    tracker.update([Detection("person", 0.4, (100, 100, 110, 130))], pose, W, H, 0.0)
    assert len(_people(tracker)) == 1 and not _people(tracker)[0].confirmed
    for k in range(1, 20):
        tracker.update([], pose, W, H, 0.1 * k)
    assert _people(tracker) == []


# ------------------------------------------------------------------ machines
def _machine_box(pose: PTZPose, xy: tuple[float, float], arm_m: float) -> Detection:
    """A 4 m wide, 3 m tall machine whose arm reaches ``arm_m`` to the right and up."""
    x, y = xy
    pts = np.array(
        [[x - 2, y, 0], [x + 2 + arm_m, y, 0], [x - 2, y, 3.0], [x + 2, y, 3.0 + 0.5 * arm_m]]
    )
    uv, _ = _view(pose).project(pts)
    return Detection(
        "machine", 0.9, (uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max())
    )


@pytest.mark.parametrize("working", [False, True])
def test_machine_moving_from_box_change_not_from_jitter_or_camera_motion(working: bool) -> None:
    rng = np.random.default_rng(3)
    xy = (-10.0, 50.0)
    tracker = WorldTracker(MOUNT)
    t = 0.0
    poses = [_aim(xy, 3.0, d_pan=d, z_m=2.0) for d in (-1.5, 0.0, 1.5)]
    for k in range(150):  # 15 s at 10 fps, the camera drifting between three poses
        pose = poses[(k // 20) % 3]
        arm = 2.0 + (1.5 * math.sin(2 * math.pi * t / 7.0) if working else 0.0)
        det = _machine_box(pose, xy, arm)
        size = np.array([det.width, det.height, det.width, det.height])
        noisy = np.asarray(det.bbox) + rng.normal(0, 0.03, 4) * size
        x0, y0, x1, y1 = (float(v) for v in noisy)
        tracker.update([Detection("machine", 0.9, (x0, y0, x1, y1))], pose, W, H, t)
        t += 0.1
    (machine,) = [tr for tr in tracker.tracks if tr.kind == "machine"]
    assert machine.moving is working, machine.motion
    assert machine.ground_xy is not None
    assert math.dist(machine.ground_xy, xy) < 3.0


# ------------------------------------------------------------------ no ground truth
def test_alerts_package_imports_no_simulator_ground_truth(
    assert_no_ground_truth_imported: Any,
) -> None:
    package_dir = Path(inspect.getfile(edge.alerts)).parent
    for path in sorted(package_dir.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith(GROUND_TRUTH_MODULES)]
            assert not bad, f"{path.name} imports {bad}"
    assert_no_ground_truth_imported(
        "edge.alerts.tracker", "edge.alerts.rules", "edge.alerts.manager"
    )
