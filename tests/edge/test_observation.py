"""The observation builder sees only frames, detections, the pose and the time — never ground truth.

Also the behaviour of its pan–tilt maps: staleness, unverified candidates and verified hazards.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge.policy.observation as observation_module
from edge.geometry import CameraView, PTZPose
from edge.perception.detection import Detection
from edge.policy.observation import (
    MAP_CHANNELS,
    ObservationBuilder,
    ObservationConfig,
    observation_space_shapes,
)
from edge.sim.generate import generate_site
from edge.sim.render import Renderer
from edge.sim.world import Site
from firmware_config.camera import CameraMountSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUND_TRUTH_MODULES = (
    "edge.sim.world",
    "edge.sim.render",
    "edge.sim.generate",
    "edge.sim.perception",
    "edge.sim.virtual",
    "trainer",
)
CAMERA = CameraMountSpec(position=[0.0, 0.0], height_m=12.0, heading_deg=30.0)
W, H = 1280, 720
WIDE = PTZPose(0.0, -15.0, 1.0)
STALENESS, CANDIDATES, HAZARDS = range(3)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# ------------------------------------------------------------------ (a) no ground truth, statically
def test_observation_module_imports_no_simulator_ground_truth() -> None:
    imported = _imported_modules(Path(inspect.getfile(observation_module)))
    assert imported, "the ast walk found no imports at all"
    bad = sorted(
        name
        for name in imported
        if any(name == m or name.startswith(m + ".") for m in GROUND_TRUTH_MODULES)
    )
    assert not bad, f"edge/policy/observation.py imports {bad}"


def test_observation_module_pulls_in_no_ground_truth_transitively(
    assert_no_ground_truth_imported: Any,
) -> None:
    assert_no_ground_truth_imported("edge.policy.observation")


def test_update_takes_only_image_detections_pose_and_time() -> None:
    params = list(inspect.signature(ObservationBuilder.update).parameters)
    assert params == ["self", "image", "detections", "pose", "t"]
    init = list(inspect.signature(ObservationBuilder.__init__).parameters)
    assert init == ["self", "camera", "config"]  # calibration and shapes: configuration only


# ------------------------------------------------------------ (b) no ground truth, by behaviour
def _person(u: float, foot_v: float, height_px: float, score: float = 0.9) -> Detection:
    return Detection(
        "person", score, (u - 0.2 * height_px, foot_v - height_px, u + 0.2 * height_px, foot_v)
    )


def _head(person: Detection, cls: str, score: float = 0.9) -> Detection:
    x0, y0, x1, y1 = person.bbox
    h = y1 - y0
    return Detection(cls, score, (x0 + 0.3 * (x1 - x0), y0, x1 - 0.3 * (x1 - x0), y0 + 0.15 * h))


def _vest(person: Detection) -> Detection:
    x0, y0, x1, y1 = person.bbox
    h = y1 - y0
    return Detection(
        "vest", 0.9, (x0 + 0.1 * (x1 - x0), y0 + 0.2 * h, x1 - 0.1 * (x1 - x0), y0 + 0.5 * h)
    )


def _script() -> list[tuple[np.ndarray, list[Detection], PTZPose, float]]:
    rng = np.random.default_rng(0)
    big = _person(400.0, 600.0, 220.0)
    return [
        (rng.integers(0, 255, (H, W, 3), dtype=np.uint8), [], WIDE, 0.0),
        (
            rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
            [_person(900.0, 500.0, 30.0, 0.6), Detection("fire_smoke", 0.7, (100, 200, 130, 240))],
            PTZPose(10.0, -12.0, 1.0),
            0.2,
        ),
        (
            rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
            [big, _head(big, "head_bare")],
            PTZPose(10.0, -12.0, 6.0),
            1.4,
        ),
        (rng.integers(0, 255, (H, W, 3), dtype=np.uint8), [], PTZPose(-40.0, -20.0, 2.0), 9.0),
    ]


def test_two_different_sites_give_identical_observations_from_identical_inputs() -> None:
    site_a = generate_site(1, duration_s=120.0)
    site_b = generate_site(2, duration_s=120.0).model_copy(update={"camera": site_a.camera})
    assert site_a != site_b and site_a.workers != site_b.workers
    builder_a = ObservationBuilder(site_a.camera)
    builder_b = ObservationBuilder(site_b.camera)
    for image, detections, pose, t in _script():
        obs_a = builder_a.update(image, detections, pose, t)
        obs_b = builder_b.update(image.copy(), list(detections), pose, t)
        for key, value in obs_a.as_dict().items():
            assert value.tobytes() == obs_b.as_dict()[key].tobytes(), key
        assert obs_a.targets == obs_b.targets
    # not vacuous: other detections give another observation
    builder_c = ObservationBuilder(site_a.camera)
    for image, _, pose, t in _script():
        obs_c = builder_c.update(image, [], pose, t)
    assert obs_c.maps.tobytes() != obs_a.maps.tobytes()


def test_rendered_sites_differ_only_through_the_frame() -> None:
    # the same hand-made detections over frames of two different sites: maps and ptz agree,
    # only the view (the pixels) differs
    site_a = generate_site(3, duration_s=120.0)
    site_b = generate_site(4, duration_s=120.0).model_copy(update={"camera": site_a.camera})
    ren_a, ren_b = Renderer(Site(site_a)), Renderer(Site(site_b))
    builder_a, builder_b = ObservationBuilder(site_a.camera), ObservationBuilder(site_b.camera)
    for k, (_, detections, pose, t) in enumerate(_script()):
        frame_a, _ = ren_a.render(pose, t, 320, 180, index=k, truth=False)
        frame_b, _ = ren_b.render(pose, t, 320, 180, index=k, truth=False)
        scaled = [Detection(d.cls, d.score, tuple(v / 4 for v in d.bbox)) for d in detections]  # type: ignore[arg-type]
        obs_a = builder_a.update(frame_a.image, scaled, pose, t)
        obs_b = builder_b.update(frame_b.image, scaled, pose, t)
        assert np.array_equal(obs_a.maps, obs_b.maps) and np.array_equal(obs_a.ptz, obs_b.ptz)
        assert not np.array_equal(obs_a.view, obs_b.view)


# ------------------------------------------------------------------ shapes and the view
def test_shapes_ranges_and_rgb_view() -> None:
    cfg = ObservationConfig()
    builder = ObservationBuilder(CAMERA, cfg)
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[..., 0] = 255  # blue in OpenCV's BGR
    obs = builder.update(image, [], WIDE, 0.0)
    shapes = observation_space_shapes(cfg)
    assert obs.view.shape == shapes["view"] == (96, 96, 3) and obs.view.dtype == np.uint8
    assert obs.ptz.shape == shapes["ptz"] and obs.ptz.dtype == np.float32
    assert obs.maps.shape == shapes["maps"] == (len(MAP_CHANNELS), 14, 68)
    assert obs.maps.dtype == np.float32
    assert (obs.view[..., 2] == 255).all() and (obs.view[..., :2] == 0).all()  # RGB now
    assert obs.maps.min() >= 0.0 and obs.maps.max() <= 1.0
    lim = CAMERA.limits
    corners = [
        PTZPose(lim.pan_min_deg, lim.tilt_min_deg, 1.0),
        PTZPose(lim.pan_max_deg, lim.tilt_max_deg, lim.zoom_max),
    ]
    assert builder.normalised_pose(corners[0]) == pytest.approx([-1, -1, -1])
    assert builder.normalised_pose(corners[1]) == pytest.approx([1, 1, 1])


# ------------------------------------------------------------------ map channels
def _expected_cell(
    builder: ObservationBuilder, pose: PTZPose, uv: tuple[float, float]
) -> tuple[int, int]:
    """Grid cell of a pixel, computed here from the geometry and the documented grid layout."""
    view = CameraView(
        (CAMERA.position[0], CAMERA.position[1], CAMERA.height_m), CAMERA.heading_deg, pose, W, H
    )
    pan, tilt = view.pixel_to_pan_tilt(np.array([uv]))
    lim, cfg = CAMERA.limits, builder.config
    col = math.floor(
        (float(pan[0]) - lim.pan_min_deg) / (lim.pan_max_deg - lim.pan_min_deg) * cfg.grid_w
    )
    row = math.floor(
        (lim.tilt_max_deg - float(tilt[0])) / (lim.tilt_max_deg - lim.tilt_min_deg) * cfg.grid_h
    )
    return row, col


def test_a_verified_bare_head_lights_the_hazard_channel_in_its_cell() -> None:
    builder = ObservationBuilder(CAMERA)
    pose = PTZPose(-20.0, -25.0, 4.0)
    person = _person(300.0, 650.0, 200.0, score=0.85)  # head 30 reference px: verifiable
    obs = builder.update(
        np.zeros((H, W, 3), np.uint8), [person, _head(person, "head_bare")], pose, 0.0
    )
    row, col = _expected_cell(builder, pose, (300.0, 650.0))
    hazards = obs.maps[HAZARDS]
    assert hazards[row, col] == pytest.approx(0.85)
    assert np.count_nonzero(hazards) == 1
    assert [t.hazard for t in obs.targets] == ["no_helmet"]
    assert obs.maps[CANDIDATES, row, col] == 0.0  # verified: not a candidate


def test_helmet_and_vest_mean_no_hazard_and_a_missing_vest_is_one() -> None:
    pose = PTZPose(-20.0, -25.0, 4.0)
    person = _person(700.0, 600.0, 200.0)
    safe = ObservationBuilder(CAMERA).update(
        np.zeros((H, W, 3), np.uint8),
        [person, _head(person, "head_helmet"), _vest(person)],
        pose,
        0.0,
    )
    assert not safe.maps[HAZARDS].any() and [t.hazard for t in safe.targets] == [None]
    no_vest = ObservationBuilder(CAMERA).update(
        np.zeros((H, W, 3), np.uint8), [person, _head(person, "head_helmet")], pose, 0.0
    )
    assert [t.hazard for t in no_vest.targets] == ["no_vest"]
    assert no_vest.maps[HAZARDS].max() == pytest.approx(0.9)


def test_verified_smoke_is_a_hazard_and_small_smoke_a_candidate() -> None:
    pose = PTZPose(5.0, -20.0, 1.0)
    big = Detection("fire_smoke", 0.8, (600.0, 400.0, 640.0, 450.0))  # 50 px ≥ 32
    small = Detection("fire_smoke", 0.6, (200.0, 500.0, 215.0, 520.0))  # 20 px
    obs = ObservationBuilder(CAMERA).update(np.zeros((H, W, 3), np.uint8), [big, small], pose, 0.0)
    assert [(t.kind, t.verified, t.hazard) for t in obs.targets] == [
        ("fire_smoke", True, "fire_smoke"),
        ("fire_smoke", False, None),
    ]
    row, col = _expected_cell(ObservationBuilder(CAMERA), pose, (620.0, 450.0))
    assert obs.maps[HAZARDS, row, col] == pytest.approx(0.8)
    row, col = _expected_cell(ObservationBuilder(CAMERA), pose, (207.5, 520.0))
    assert obs.maps[CANDIDATES, row, col] == pytest.approx(0.6)


def test_candidates_fade_and_clear_when_the_cell_is_seen_at_verifying_zoom() -> None:
    builder = ObservationBuilder(CAMERA)
    far = _person(800.0, 420.0, 24.0, score=0.7)  # far away: head 3.6 px, unverifiable
    obs = builder.update(np.zeros((H, W, 3), np.uint8), [far], WIDE, 0.0)
    row, col = _expected_cell(builder, WIDE, (800.0, 420.0))
    assert obs.maps[CANDIDATES, row, col] == pytest.approx(0.7)
    assert not obs.maps[HAZARDS].any()
    # the wide view does not verify that far cell, so the candidate survives, fading
    assert not builder.verifying_mask(WIDE, aspect=H / W)[row, col]
    half_life = builder.config.half_life_s
    obs = builder.update(np.zeros((H, W, 3), np.uint8), [], WIDE, half_life)
    assert obs.maps[CANDIDATES, row, col] == pytest.approx(0.35, rel=1e-4)
    # look at that cell at high zoom, with nothing detected: the candidate is cleared
    close = PTZPose(float(builder.pan_centres[col]), float(builder.tilt_centres[row]), 20.0)
    assert builder.verifying_mask(close, aspect=H / W)[row, col]
    obs = builder.update(np.zeros((H, W, 3), np.uint8), [], close, half_life + 2.0)
    assert obs.maps[CANDIDATES, row, col] == 0.0
    assert obs.maps[STALENESS, row, col] == 0.0


def test_staleness_grows_with_time_until_the_cell_is_seen_again() -> None:
    builder = ObservationBuilder(CAMERA)
    stale_s = builder.config.stale_s
    close = PTZPose(float(builder.pan_centres[20]), float(builder.tilt_centres[10]), 10.0)
    elsewhere = PTZPose(float(builder.pan_centres[50]), float(builder.tilt_centres[6]), 10.0)
    seen = builder.verifying_mask(close, aspect=H / W)
    assert seen[10, 20] and seen.sum() < seen.size / 4
    image = np.zeros((H, W, 3), np.uint8)
    obs = builder.update(image, [], close, 0.0)
    ground = builder.ground_rows
    assert (obs.maps[STALENESS][seen] == 0.0).all()
    assert (obs.maps[STALENESS][~seen & ground[:, None]] == 1.0).all()  # never seen
    assert (obs.maps[STALENESS][~ground] == 0.0).all()  # sky rows carry no staleness
    values = []
    for t in (stale_s / 4, stale_s / 2, stale_s, 2 * stale_s):
        values.append(float(builder.update(image, [], elsewhere, t).maps[STALENESS, 10, 20]))
    assert values == pytest.approx([0.25, 0.5, 1.0, 1.0])
    obs = builder.update(image, [], close, 2 * stale_s + 1)
    assert obs.maps[STALENESS, 10, 20] == 0.0


def test_reset_forgets_everything() -> None:
    builder = ObservationBuilder(CAMERA)
    person = _person(300.0, 650.0, 200.0)
    builder.update(np.zeros((H, W, 3), np.uint8), [person, _head(person, "head_bare")], WIDE, 0.0)
    builder.reset()
    fresh = ObservationBuilder(CAMERA)
    image = np.zeros((H, W, 3), np.uint8)
    assert np.array_equal(
        builder.update(image, [], WIDE, 5.0).maps, fresh.update(image, [], WIDE, 5.0).maps
    )
