"""Pinhole PTZ geometry: FOV vs zoom, pointing, off-centre projection, and the inverse maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.geometry import (
    CameraView,
    PTZPose,
    focal_px,
    fov_h_deg,
    fov_v_deg,
    pan_tilt_of_point,
    zoom_for_size,
)

W, H = 1280, 720
MOUNTS = [  # (position, heading_deg)
    ((0.0, 0.0, 12.0), 0.0),
    ((-4.0, -4.0, 15.0), 45.0),
    ((105.0, -4.0, 10.5), -38.0),
    ((50.0, 95.0, 18.0), 172.0),
    ((-5.0, 40.0, 11.0), 95.0),
]


def _view(
    pan: float,
    tilt: float,
    zoom: float,
    position: tuple[float, float, float] = (0.0, 0.0, 10.0),
    heading: float = 0.0,
    width: int = W,
    height: int = H,
) -> CameraView:
    return CameraView(position, heading, PTZPose(pan, tilt, zoom), width, height)


def _hand_projection(
    d_pan_deg: float, elev_deg: float, tilt_deg: float, focal: float
) -> tuple[float, float]:
    """Pixel of a direction ``d_pan`` right of the optical axis' azimuth at elevation ``elev``,
    for a camera tilted by ``tilt``: rotate into the camera frame by hand, then x = f·X/Z."""
    a, b, t = (math.radians(v) for v in (d_pan_deg, elev_deg, tilt_deg))
    right = math.cos(b) * math.sin(a)
    ahead = math.cos(b) * math.cos(a)  # horizontal, along the camera's azimuth
    up = math.sin(b)
    depth = ahead * math.cos(t) + up * math.sin(t)
    up_cam = -ahead * math.sin(t) + up * math.cos(t)
    return W / 2 + focal * right / depth, H / 2 - focal * up_cam / depth


# ------------------------------------------------------------------ field of view
@pytest.mark.parametrize("zoom", [1.0, 1.5, 3.0, 7.5, 15.0])
def test_zoom_2x_halves_the_fov(zoom: float) -> None:
    assert fov_h_deg(2 * zoom) == pytest.approx(fov_h_deg(zoom) / 2)
    assert fov_h_deg(zoom) == pytest.approx(60.0 / zoom)
    # the vertical FOV shrinks too (not exactly by half: tan is not linear)
    assert fov_v_deg(2 * zoom, W, H) < fov_v_deg(zoom, W, H) * 0.51
    # the same, measured: the angle between the rays through the left and right image edges
    for z, expected in ((zoom, fov_h_deg(zoom)), (2 * zoom, fov_h_deg(zoom) / 2)):
        view = _view(0.0, 0.0, z)
        pans, _ = view.pixel_to_pan_tilt(np.array([[0.0, H / 2], [float(W), H / 2]]))
        assert pans[1] - pans[0] == pytest.approx(expected, rel=1e-9)
        assert view.fov_h == pytest.approx(expected)


@pytest.mark.parametrize("zoom", [1.0, 2.0, 4.0, 30.0])
def test_points_at_half_the_fov_land_on_the_image_edges(zoom: float) -> None:
    pos = (0.0, 0.0, 10.0)
    view = _view(0.0, 0.0, zoom, pos)
    half = fov_h_deg(zoom) / 2
    pts = [
        np.array(pos) + 100 * np.array([math.sin(math.radians(a)), math.cos(math.radians(a)), 0])
        for a in (-half, half, half / 2)
    ]
    uv, depth = view.project(np.array(pts))
    assert (depth > 0).all()
    assert uv[0] == pytest.approx([0.0, H / 2], abs=1e-6)
    assert uv[1] == pytest.approx([W, H / 2], abs=1e-6)
    # a point at half of half the FOV at 1× would sit inside; after 2× zoom it sits at the edge
    wider = _view(0.0, 0.0, 2 * zoom, pos).project(pts[2][None])[0][0]
    assert wider[0] == pytest.approx(W, abs=1e-6)


def test_focal_length_is_consistent_with_fov() -> None:
    for zoom in (1.0, 2.0, 30.0):
        f = focal_px(W, zoom)
        assert 2 * math.degrees(math.atan(W / 2 / f)) == pytest.approx(fov_h_deg(zoom))
        assert focal_px(W, 2 * zoom) > 2 * f  # tan(θ/2) shrinks faster than θ


# ------------------------------------------------------------------ pointing
@pytest.mark.parametrize(("position", "heading"), MOUNTS)
@pytest.mark.parametrize("zoom", [1.0, 5.0, 30.0])
def test_point_projects_to_the_image_centre_when_the_camera_points_at_it(
    position: tuple[float, float, float], heading: float, zoom: float
) -> None:
    rng = np.random.default_rng(int(heading * 10) % 1000)
    points = np.column_stack(
        [rng.uniform(0, 120, 8), rng.uniform(0, 100, 8), rng.uniform(0.0, 3.0, 8)]
    )
    for p in points:
        pan, tilt, range_m = pan_tilt_of_point(position, heading, p)
        view = CameraView(position, heading, PTZPose(float(pan), float(tilt), zoom), W, H)
        uv, depth = view.project(p)
        assert uv == pytest.approx([W / 2, H / 2], abs=1e-6)
        assert float(depth) == pytest.approx(float(range_m))
        assert -180.0 <= float(pan) < 180.0


def test_pan_is_relative_to_heading_and_positive_pan_turns_right() -> None:
    pos = (0.0, 0.0, 10.0)
    east = np.array([100.0, 0.0, 10.0])
    pan, tilt, _ = pan_tilt_of_point(pos, 0.0, east)  # facing north, east is to the right
    assert float(pan) == pytest.approx(90.0) and float(tilt) == pytest.approx(0.0)
    pan, _, _ = pan_tilt_of_point(pos, 90.0, east)  # facing east
    assert float(pan) == pytest.approx(0.0)
    ground = np.array([0.0, 10.0, 0.0])  # 10 m ahead, 10 m below: 45° down
    _, tilt, _ = pan_tilt_of_point(pos, 0.0, ground)
    assert float(tilt) == pytest.approx(-45.0)
    # a point right of the optical axis lands right of the centre, a higher one above it
    view = _view(0.0, 0.0, 1.0, pos)
    uv, _ = view.project(np.array([[5.0, 50.0, 10.0], [0.0, 50.0, 15.0]]))
    assert uv[0, 0] > W / 2 and uv[1, 1] < H / 2


# ------------------------------------------------------------------ off-centre
@pytest.mark.parametrize("zoom", [1.0, 3.0])
@pytest.mark.parametrize("d_pan", [-20.0, -5.0, 3.0, 12.0])
def test_off_centre_point_at_tilt_zero_lands_at_f_tan_dpan(zoom: float, d_pan: float) -> None:
    d_pan = d_pan / zoom  # stay inside the view
    pos, heading, pan = (10.0, -5.0, 12.0), 30.0, 15.0
    yaw = math.radians(heading + pan + d_pan)
    point = np.array(pos) + 80.0 * np.array([math.sin(yaw), math.cos(yaw), 0.0])
    view = CameraView(pos, heading, PTZPose(pan, 0.0, zoom), W, H)
    (u, v), _ = view.project(point)
    f = (W / 2) / math.tan(math.radians(60.0 / zoom / 2))
    assert u == pytest.approx(W / 2 + f * math.tan(math.radians(d_pan)), abs=1e-6)
    assert v == pytest.approx(H / 2, abs=1e-6)


@pytest.mark.parametrize("zoom", [1.0, 2.5])
@pytest.mark.parametrize("d_tilt", [-12.0, 4.0, 10.0])
def test_off_centre_point_straight_ahead_lands_at_f_tan_dtilt(zoom: float, d_tilt: float) -> None:
    d_tilt = d_tilt / zoom
    pos, heading, tilt = (0.0, 0.0, 15.0), -60.0, -25.0
    yaw, pitch = math.radians(heading), math.radians(tilt + d_tilt)
    direction = np.array(
        [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)]
    )
    view = CameraView(pos, heading, PTZPose(0.0, tilt, zoom), W, H)
    (u, v), _ = view.project(np.array(pos) + 30.0 * direction)
    f = focal_px(W, zoom)
    assert u == pytest.approx(W / 2, abs=1e-6)
    assert v == pytest.approx(H / 2 - f * math.tan(math.radians(d_tilt)), abs=1e-6)


@pytest.mark.parametrize("tilt", [-50.0, -20.0, 0.0, 8.0])
def test_off_centre_point_in_pan_and_tilt_matches_a_hand_computed_pinhole(tilt: float) -> None:
    pos, heading, pan, zoom = (3.0, 4.0, 14.0), 120.0, -35.0, 2.0
    view = CameraView(pos, heading, PTZPose(pan, tilt, zoom), W, H)
    f = focal_px(W, zoom)
    for d_pan, elev in ((6.0, tilt + 4.0), (-9.0, tilt - 3.0), (2.0, tilt + 7.0)):
        yaw, pitch = math.radians(heading + pan + d_pan), math.radians(elev)
        direction = np.array(
            [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)]
        )
        (u, v), _ = view.project(np.array(pos) + 40.0 * direction)
        expected = _hand_projection(d_pan, elev, tilt, f)
        assert (u, v) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ inverse maps
@pytest.mark.parametrize(("position", "heading"), MOUNTS)
def test_pixel_to_pan_tilt_and_pixel_to_ground_invert_project(
    position: tuple[float, float, float], heading: float
) -> None:
    rng = np.random.default_rng(7)
    view = CameraView(position, heading, PTZPose(12.0, -28.0, 1.7), 640, 360)
    uv = np.column_stack([rng.uniform(0, 640, 50), rng.uniform(0, 360, 50)])
    ground = view.pixel_to_ground(uv)
    hit = np.isfinite(ground[:, 0])
    assert hit.all()  # looking 28° down, the whole view sees ground
    points = np.column_stack([ground, np.zeros(len(ground))])
    back, depth = view.project(points)
    assert back == pytest.approx(uv, abs=1e-6)
    assert (depth > 0).all()
    pans, tilts = view.pixel_to_pan_tilt(uv)
    pans_w, tilts_w, _ = pan_tilt_of_point(position, heading, points)
    assert pans == pytest.approx(pans_w, abs=1e-9)
    assert tilts == pytest.approx(tilts_w, abs=1e-9)
    # and the other way: from world points to pixels and back to pan/tilt
    pts = np.column_stack(
        [rng.uniform(-20, 120, 30), rng.uniform(-20, 110, 30), rng.uniform(0, 5, 30)]
    )
    uv2, depth2 = view.project(pts)
    front = depth2 > 0
    p2, t2 = view.pixel_to_pan_tilt(uv2[front])
    pw, tw, _ = pan_tilt_of_point(position, heading, pts[front])
    assert np.abs((p2 - pw + 180) % 360 - 180).max() < 1e-9
    assert t2 == pytest.approx(tw, abs=1e-9)


def test_pixel_to_ground_is_nan_above_the_horizon() -> None:
    view = _view(0.0, 5.0, 1.0)
    horizon = view.horizon_row()
    assert 0 < horizon < H
    ground = view.pixel_to_ground(np.array([[W / 2, horizon - 20.0], [W / 2, horizon + 20.0]]))
    assert np.isnan(ground[0]).all() and np.isfinite(ground[1]).all()
    far, _ = view.project(np.array([[0.0, 1e6, 10.0]]))  # a point at eye level, far away
    assert far[0, 1] == pytest.approx(horizon, abs=1e-3)


@pytest.mark.parametrize(("position", "heading"), MOUNTS)
def test_ground_homography_agrees_with_project(
    position: tuple[float, float, float], heading: float
) -> None:
    view = CameraView(position, heading, PTZPose(-7.0, -33.0, 3.0), W, H)
    rng = np.random.default_rng(3)
    xy = np.column_stack([rng.uniform(-10, 130, 40), rng.uniform(-10, 110, 40)])
    hom = view.ground_homography() @ np.column_stack([xy, np.ones(len(xy))]).T
    uv_h = (hom[:2] / hom[2]).T
    uv_p, depth = view.project(np.column_stack([xy, np.zeros(len(xy))]))
    front = depth > 0.1
    assert front.any()
    assert uv_h[front] == pytest.approx(uv_p[front], rel=1e-9, abs=1e-6)
    assert np.sign(hom[2][front]).tolist() == [1.0] * int(front.sum())


def test_zoom_for_size_gives_exactly_the_requested_pixels() -> None:
    for range_m, size_m, min_px in ((60.0, 0.25, 16.0), (120.0, 1.75, 16.0), (35.0, 3.0, 32.0)):
        zoom = float(zoom_for_size(range_m, size_m, min_px))
        assert focal_px(W, zoom) * size_m / range_m == pytest.approx(min_px)
