"""Resolvability: a hazard can be verified once its part spans enough 1280×720 reference pixels.

Each test builds a tiny site by hand (one worker and one hazard, or one fire), points the camera at
the part that matters and picks the zoom at which that part is exactly at the threshold: just below
it the hazard is not resolvable, just above it it is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.geometry import REFERENCE_WIDTH_PX, PTZPose, focal_px, pan_tilt_of_point
from edge.sim.generate import generate_site
from edge.sim.render import HazardView, Renderer, Resolvability
from edge.sim.spec import (
    AttributeEventSpec,
    CameraMountSpec,
    FireSpec,
    MachineSpec,
    SiteSpec,
    WaypointSpec,
    WorkerSpec,
)
from edge.sim.world import HEAD_RADIUS_M, TORSO_BOTTOM_M, TORSO_TOP_M, Site

CAM_XYZ = (0.0, -5.0, 10.0)
T = 30.0  # site time of every render: fires have grown to full size by then
W, H = REFERENCE_WIDTH_PX, 720
WORKER_H = 1.75


def _site(hazard: str, xy: tuple[float, float]) -> SiteSpec:
    """A bare site with one standing worker (or one fire) at ``xy`` and one hazard."""
    worker = WorkerSpec(
        id="w0",
        height_m=WORKER_H,
        path=[WaypointSpec(xy=list(xy), dwell_s=100, activity="standing")],
    )
    events, fires, machines = [], [], []
    if hazard in ("no_helmet", "no_vest"):
        events = [AttributeEventSpec(type=hazard, worker="w0", start_s=0.0, end_s=60.0)]
    elif hazard == "fire_smoke":
        fires = [FireSpec(position=list(xy), start_s=0.0, end_s=60.0, size_m=0.3)]
    else:  # zone_intrusion: the worker stands inside a working excavator's zone
        x, y = xy
        machines = [
            MachineSpec(
                id="excavator-0",
                kind="excavator",
                position=[x + 14.0, y],
                zone=[[x - 6, y - 6], [x + 20, y - 6], [x + 20, y + 6], [x - 6, y + 6]],
                working=[[0.0, 60.0]],
            )
        ]
    return SiteSpec(
        size_m=[80.0, 220.0],
        duration_s=60.0,
        camera=CameraMountSpec(position=list(CAM_XYZ[:2]), height_m=CAM_XYZ[2], heading_deg=0.0),
        work_areas=[[[-40.0, 0.0], [40.0, 0.0], [40.0, 220.0], [-40.0, 220.0]]],
        machines=machines,
        workers=[worker] if hazard != "fire_smoke" else [],
        attribute_events=events,
        fires=fires,
    )


#: hazard type → (where the subject stands, height of the part to aim at, the threshold field)
CASES = {
    "no_helmet": ((2.0, 50.0), WORKER_H - HEAD_RADIUS_M, "head_px"),
    "no_vest": ((-3.0, 90.0), (TORSO_BOTTOM_M + TORSO_TOP_M) / 2, "torso_px"),
    "zone_intrusion": ((0.0, 160.0), WORKER_H / 2, "person_px"),
    "fire_smoke": ((4.0, 120.0), 0.9, "smoke_px"),
}


def _hazard_view(renderer: Renderer, pose: PTZPose, width: int = W, height: int = H) -> HazardView:
    _, truth = renderer.render(pose, T, width, height)
    assert truth is not None
    assert len(truth.hazards) == 1, truth.hazards
    return truth.hazards[0]


def _aim(xy: tuple[float, float], part_z: float, zoom: float) -> PTZPose:
    pan, tilt, _ = pan_tilt_of_point(CAM_XYZ, 0.0, np.array([xy[0], xy[1], part_z]))
    return PTZPose(float(pan), float(tilt), zoom)


def _zoom_for_focal(focal: float) -> float:
    return 60.0 / math.degrees(2 * math.atan((W / 2) / focal))


def _threshold_zoom(renderer: Renderer, xy: tuple[float, float], z: float, need: float) -> float:
    """The zoom at which the part spans exactly ``need`` reference px (size ∝ focal length)."""
    size_1x = _hazard_view(renderer, _aim(xy, z, 1.0)).size_ref_px
    assert size_1x > 0
    zoom = _zoom_for_focal(focal_px(W, 1.0) * need / size_1x)
    assert 1.05 < zoom < 25.0, "test geometry: the threshold must be reachable by zooming"
    return zoom


@pytest.mark.parametrize("hazard", list(CASES))
def test_resolvable_flips_at_the_threshold(hazard: str) -> None:
    xy, part_z, field = CASES[hazard]
    res = Resolvability()
    need = getattr(res, field)
    assert need == (32.0 if hazard == "fire_smoke" else 16.0)  # the documented defaults
    renderer = Renderer(Site(_site(hazard, xy)), res)
    zoom = _threshold_zoom(renderer, xy, part_z, need)
    f = focal_px(W, zoom)
    below = _hazard_view(renderer, _aim(xy, part_z, _zoom_for_focal(f * 0.97)))
    above = _hazard_view(renderer, _aim(xy, part_z, _zoom_for_focal(f * 1.03)))
    assert below.type == above.type == hazard
    assert below.size_ref_px == pytest.approx(need * 0.97, rel=1e-3)
    assert above.size_ref_px == pytest.approx(need * 1.03, rel=1e-3)
    assert below.in_view and above.in_view
    assert not below.resolvable
    assert above.resolvable


def test_thresholds_are_configurable() -> None:
    xy, part_z, _ = CASES["no_helmet"]
    spec = _site("no_helmet", xy)
    default = Renderer(Site(spec))
    zoom_16 = _threshold_zoom(default, xy, part_z, 16.0)
    pose = _aim(xy, part_z, _zoom_for_focal(focal_px(W, zoom_16) * 20.0 / 16.0))  # a 20 px head
    assert _hazard_view(default, pose).size_ref_px == pytest.approx(20.0, rel=1e-3)
    assert _hazard_view(default, pose).resolvable
    strict = Renderer(Site(spec), Resolvability(head_px=24.0))
    assert not _hazard_view(strict, pose).resolvable
    lenient = Renderer(Site(spec), Resolvability(head_px=8.0))
    assert _hazard_view(lenient, _aim(xy, part_z, 1.0 + 0.5 * (zoom_16 - 1.0))).resolvable
    # the torso threshold does not govern a helmet hazard
    assert _hazard_view(Renderer(Site(spec), Resolvability(torso_px=500.0)), pose).resolvable


def test_a_part_mostly_outside_the_frame_is_not_resolvable() -> None:
    xy, part_z, _ = CASES["no_helmet"]
    renderer = Renderer(Site(_site("no_helmet", xy)))
    centred = _aim(xy, part_z, 8.0)
    assert _hazard_view(renderer, centred).resolvable
    fov = 60.0 / 8.0
    # pan left step by step: the head slides out through the right edge
    partial = None
    for offset in np.linspace(0.40, 0.60, 41) * fov:
        view = _hazard_view(renderer, PTZPose(centred.pan_deg - offset, centred.tilt_deg, 8.0))
        assert view.bbox is not None
        x0, _, x1, _ = view.bbox
        shown = (min(x1, W) - max(x0, 0)) / (x1 - x0)
        if 0.15 < shown < 0.5:  # under Resolvability.min_visible = 0.6
            partial = view
            break
    assert partial is not None, "no pose put the head half outside the frame"
    assert partial.size_ref_px > 16.0 and partial.in_view and not partial.resolvable
    gone = PTZPose(centred.pan_deg - fov, centred.tilt_deg, centred.zoom)
    assert not _hazard_view(renderer, gone).in_view


@pytest.mark.parametrize("small", [(320, 180), (96, 96)])
@pytest.mark.parametrize("hazard", list(CASES))
def test_render_size_does_not_change_resolvability(small: tuple[int, int], hazard: str) -> None:
    xy, part_z, field = CASES[hazard]
    renderer = Renderer(Site(_site(hazard, xy)))
    zoom = _threshold_zoom(renderer, xy, part_z, getattr(Resolvability(), field))
    for factor in (0.8, 0.97, 1.03, 1.5):
        pose = _aim(xy, part_z, _zoom_for_focal(focal_px(W, zoom) * factor))
        big = _hazard_view(renderer, pose)
        little = _hazard_view(renderer, pose, *small)
        assert little.size_ref_px == pytest.approx(big.size_ref_px, rel=1e-6)
        assert (little.in_view, little.resolvable) == (big.in_view, big.resolvable), factor
        assert big.resolvable == (factor > 1)


def test_render_size_does_not_change_resolvability_on_a_generated_site() -> None:
    spec = generate_site(2, duration_s=600.0)
    renderer = Renderer(Site(spec))
    rng = np.random.default_rng(0)
    compared = resolvable = 0
    for hz in renderer.site.hazards[:12]:
        t = (hz.start_s + min(hz.end_s, spec.duration_s)) / 2
        # aim at the hazard's subject (the test may read ground truth; the agent may not)
        if hz.fire is not None:
            x, y = spec.fires[hz.fire].position
        else:
            assert hz.worker is not None
            x, y = renderer.site.workers_at(t).xy[hz.worker]
        cam = spec.camera
        pan, tilt, _ = pan_tilt_of_point(
            (cam.position[0], cam.position[1], cam.height_m), cam.heading_deg, np.array([x, y, 1.0])
        )
        for zoom in (1.0, 3.0, 8.0, 20.0):
            pose = PTZPose(float(pan) + rng.uniform(-1, 1) / zoom, float(tilt), zoom)
            _, big = renderer.render(pose, t, 1280, 720)
            _, little = renderer.render(pose, t, 320, 180)
            assert big is not None and little is not None
            for a, b in zip(big.hazards, little.hazards, strict=True):
                assert a.id == b.id
                assert b.size_ref_px == pytest.approx(a.size_ref_px, rel=1e-6, abs=1e-9)
                assert (a.in_view, a.resolvable) == (b.in_view, b.resolvable), (a, b)
                compared += 1
                resolvable += a.resolvable
    assert compared > 20 and resolvable > 0
