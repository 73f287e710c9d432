"""Coverage geometry and tour planning for PTZ presets, from what a device knows.

Where a worker can stand in the work areas, which of them a pose shows whole and big enough to
verify (the pinhole model of :class:`~edge.geometry.CameraView`), how long the head takes between
poses, wide views that frame the work areas, and the patrol planner: verifying-zoom presets that
together show every worker place, in a short closed tour (nearest neighbour + 2-opt). Used by the
baseline policies of :mod:`edge.policy.baselines`; reads only the camera mount and the configured
work areas, never the simulator's ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.geometry import (
    REFERENCE_HEIGHT_PX,
    REFERENCE_WIDTH_PX,
    CameraView,
    PTZPose,
    fov_h_deg,
    pan_tilt_of_point,
    points_in_polygon,
    zoom_for_size,
)
from firmware_config.camera import CameraMountSpec

__all__ = [
    "FRAME_ASPECT",
    "HEAD_SIZE_M",
    "PERSON_AIM_M",
    "PERSON_TOP_M",
    "PatrolPlan",
    "clamp_pose",
    "covers",
    "person_points",
    "plan_patrol",
    "point_angles",
    "shortest_tour",
    "travel_s",
    "travel_time_matrix",
    "vertical_fov_deg",
    "wide_presets",
    "work_area_points",
]

#: Frame height / width of a PTZ stream (16:9, as the device and the episodes deliver it).
FRAME_ASPECT = REFERENCE_HEIGHT_PX / REFERENCE_WIDTH_PX
#: Height of a head (with helmet) that must span ``verify_head_px`` reference pixels (≈ 0.26 m).
HEAD_SIZE_M = 0.26
#: Tallest worker the coverage plans for (the generator draws 1.55–1.95 m).
PERSON_TOP_M = 1.95
#: Aim height on a person: the middle of the body, so head and feet both stay in the frame.
PERSON_AIM_M = 0.95


# ------------------------------------------------------------------------------- geometry helpers
def work_area_points(work_areas: list[list[list[float]]], spacing_m: float) -> np.ndarray:
    """Ground points (N, 2) where a worker can stand: a grid inside each polygon plus its border."""
    out: list[np.ndarray] = []
    for area in work_areas:
        poly = np.asarray(area, dtype=np.float64)
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        xs = np.arange(lo[0] + spacing_m / 2, hi[0], spacing_m)
        ys = np.arange(lo[1] + spacing_m / 2, hi[1], spacing_m)
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        if len(grid):
            out.append(grid[points_in_polygon(grid, poly)])
        # the border: the grid alone would leave the outermost half-cell unchecked
        ring = np.concatenate([poly, poly[:1]])
        for a, b in zip(ring[:-1], ring[1:], strict=True):
            n = max(1, int(math.ceil(float(np.linalg.norm(b - a)) / spacing_m)))
            out.append(a + (b - a) * (np.arange(n) / n)[:, None])
    return np.concatenate(out) if out else np.zeros((0, 2))


def person_points(xy: np.ndarray, height_m: float) -> np.ndarray:
    """3-D points (N, 3) at ``height_m`` above the ground points ``xy`` (N, 2)."""
    return np.concatenate([xy, np.full((len(xy), 1), height_m)], axis=1)


def _view(camera: CameraMountSpec, pose: PTZPose, aspect: float) -> CameraView:
    """The camera's view at reference resolution (1280 wide) for a frame of the given aspect."""
    return CameraView(
        (float(camera.position[0]), float(camera.position[1]), float(camera.height_m)),
        float(camera.heading_deg),
        pose,
        REFERENCE_WIDTH_PX,
        max(1, int(round(REFERENCE_WIDTH_PX * aspect))),
        camera.limits.fov_h_1x_deg,
    )


def covers(
    camera: CameraMountSpec,
    pose: PTZPose,
    xy: np.ndarray,
    *,
    aspect: float = FRAME_ASPECT,
    edge_margin: float = 0.0,
    min_head_px: float = 0.0,
) -> np.ndarray:
    """Which workers standing at ``xy`` (N, 2) a view at ``pose`` shows whole and big enough.

    A worker is covered when both the feet and the top of the head of a tall worker project inside
    the frame shrunk by ``edge_margin`` (a fraction of each side) and the head spans at least
    ``min_head_px`` reference pixels (judged at the slant range, which never overstates it).
    """
    view = _view(camera, pose, aspect)
    feet = person_points(xy, 0.0)
    tops = person_points(xy, PERSON_TOP_M)
    ok = np.ones(len(xy), dtype=bool)
    mx, my = edge_margin * view.width, edge_margin * view.height
    for pts in (feet, tops):
        uv, z = view.project(pts)
        ok &= (z > 0.5) & (uv[:, 0] >= mx) & (uv[:, 0] <= view.width - mx)
        ok &= (uv[:, 1] >= my) & (uv[:, 1] <= view.height - my)
    if min_head_px > 0:
        rng = np.linalg.norm(person_points(xy, PERSON_TOP_M - 0.15) - view.position, axis=1)
        ok &= view.focal * HEAD_SIZE_M / np.maximum(rng, 1e-6) >= min_head_px
    return ok


def travel_time_matrix(camera: CameraMountSpec, poses: list[PTZPose]) -> np.ndarray:
    """Pairwise absolute-move times (P, P) between poses, latency included (see ``ptz.py``)."""
    lim = camera.limits
    arr = np.array([[p.pan_deg, p.tilt_deg, math.log(p.zoom)] for p in poses]).reshape(-1, 3)
    d = np.abs(arr[:, None, :] - arr[None, :, :])
    axis_s = d / np.array([lim.pan_speed_dps, lim.tilt_speed_dps, lim.zoom_speed_lps])
    out: np.ndarray = lim.latency_s + axis_s.max(axis=-1)
    np.fill_diagonal(out, 0.0)
    return out


def travel_s(camera: CameraMountSpec, a: PTZPose, b: PTZPose) -> float:
    """Absolute-move time from pose ``a`` to pose ``b``, latency included (see ``ptz.py``)."""
    lim = camera.limits
    return lim.latency_s + max(
        abs(b.pan_deg - a.pan_deg) / lim.pan_speed_dps,
        abs(b.tilt_deg - a.tilt_deg) / lim.tilt_speed_dps,
        abs(math.log(b.zoom) - math.log(a.zoom)) / lim.zoom_speed_lps,
    )


def clamp_pose(camera: CameraMountSpec, pan: float, tilt: float, zoom: float) -> PTZPose:
    """The pose (pan, tilt, zoom) clamped to the head's limits (zoom at least 1×)."""
    lim = camera.limits
    return PTZPose(
        float(min(max(pan, lim.pan_min_deg), lim.pan_max_deg)),
        float(min(max(tilt, lim.tilt_min_deg), lim.tilt_max_deg)),
        float(min(max(zoom, 1.0), lim.zoom_max)),
    )


def point_angles(
    camera: CameraMountSpec, xy: np.ndarray, height_m: float
) -> tuple[np.ndarray, ...]:
    """Pan, tilt and slant range (each (N,)) of points ``height_m`` above ``xy``."""
    mount = (float(camera.position[0]), float(camera.position[1]), float(camera.height_m))
    pan, tilt, rng = pan_tilt_of_point(
        mount, float(camera.heading_deg), person_points(xy, height_m)
    )
    return np.atleast_1d(pan), np.atleast_1d(tilt), np.atleast_1d(rng)


def vertical_fov_deg(fov_h: float, aspect: float) -> float:
    """Vertical field of view, degrees, of a frame ``fov_h`` degrees wide with this aspect."""
    return math.degrees(2 * math.atan(math.tan(math.radians(fov_h / 2)) * aspect))


def wide_presets(
    camera: CameraMountSpec,
    work_areas: list[list[list[float]]],
    *,
    zoom: float = 1.0,
    max_views: int = 1,
    aspect: float = FRAME_ASPECT,
    spacing_m: float = 4.0,
    min_gain: float = 0.05,
) -> list[PTZPose]:
    """Up to ``max_views`` wide views at ``zoom`` that together show as much of the work areas as
    they can (greedy max coverage): each view is placed by a grid search over pan and tilt to
    show the most workers not yet shown, and a view adding less than ``min_gain`` of them is not
    worth its travel. Returned in pan order, so cycling through them sweeps across the site.
    """
    xy = work_area_points(work_areas, spacing_m)
    if not len(xy):
        return [clamp_pose(camera, 0.0, -20.0, zoom)]
    left = np.ones(len(xy), dtype=bool)
    out: list[PTZPose] = []
    while left.any() and len(out) < max(1, max_views):
        pose = _frame_points(camera, xy[left], zoom, aspect)
        shown = left & covers(camera, pose, xy, aspect=aspect)
        if out and shown.sum() < min_gain * len(xy):
            break
        out.append(pose)
        left &= ~shown
        if not shown.any():
            break
    return sorted(out, key=lambda p: p.pan_deg)


def _coverage_counts(
    camera: CameraMountSpec,
    pans: np.ndarray,
    tilts: np.ndarray,
    zoom: float,
    xy: np.ndarray,
    aspect: float,
) -> np.ndarray:
    """How many workers at ``xy`` each pose (pans[i], tilts[i]) shows whole: :func:`covers`,
    vectorised over poses (the basis is the one of :meth:`CameraView.basis`)."""
    mount = np.array([camera.position[0], camera.position[1], camera.height_m], dtype=np.float64)
    width = float(REFERENCE_WIDTH_PX)
    height = float(max(1, int(round(REFERENCE_WIDTH_PX * aspect))))
    focal = (width / 2) / math.tan(math.radians(fov_h_deg(zoom, camera.limits.fov_h_1x_deg)) / 2)
    psi = np.radians(camera.heading_deg + pans)[:, None]
    th = np.radians(tilts)[:, None]
    sp, cp, st, ct = np.sin(psi), np.cos(psi), np.sin(th), np.cos(th)
    ok = np.ones((len(pans), len(xy)), dtype=bool)
    for h in (0.0, PERSON_TOP_M):
        v = person_points(xy, h) - mount  # (N, 3)
        x = v[:, 0] * cp - v[:, 1] * sp
        y = v[:, 0] * sp * st + v[:, 1] * cp * st - v[:, 2] * ct
        z = v[:, 0] * sp * ct + v[:, 1] * cp * ct + v[:, 2] * st
        safe = np.where(z > 0.5, z, 1.0)
        u = focal * x / safe + width / 2
        w = focal * y / safe + height / 2
        ok &= (z > 0.5) & (u >= 0) & (u <= width) & (w >= 0) & (w <= height)
    counts: np.ndarray = ok.sum(axis=1)
    return counts


def _frame_points(camera: CameraMountSpec, xy: np.ndarray, zoom: float, aspect: float) -> PTZPose:
    """The pose at ``zoom`` showing the most workers at ``xy`` whole (ties: nearest the median),
    by a coarse grid search over pan and tilt refined at 0.5°."""
    lim = camera.limits
    pan, tilt, _ = point_angles(camera, xy, PERSON_AIM_M)
    fov_h = fov_h_deg(zoom, lim.fov_h_1x_deg)
    fov_v = vertical_fov_deg(fov_h, aspect)
    centre = np.array([float(np.median(pan)), float(np.median(tilt))])
    lo = np.array(
        [max(lim.pan_min_deg, pan.min() - fov_h / 2), max(lim.tilt_min_deg, tilt.min() - fov_v / 2)]
    )
    hi = np.array(
        [min(lim.pan_max_deg, pan.max() + fov_h / 2), min(lim.tilt_max_deg, tilt.max() + fov_v / 2)]
    )
    step = max(0.5, fov_h / 20)
    best = np.clip(centre, lo, hi)
    while True:
        ps = np.arange(lo[0], hi[0] + 1e-9, step)
        ts = np.arange(lo[1], hi[1] + 1e-9, step)
        grid = np.stack(np.meshgrid(ps, ts), -1).reshape(-1, 2)
        counts = _coverage_counts(camera, grid[:, 0], grid[:, 1], zoom, xy, aspect)
        off = np.abs(grid - centre).sum(axis=1)
        best = grid[np.lexsort((off, -counts))[0]]
        if step <= 0.5:
            break
        lo, hi = np.maximum(lo, best - step), np.minimum(hi, best + step)
        step = max(0.5, step / 4)
    return clamp_pose(camera, float(best[0]), float(best[1]), zoom)


# ------------------------------------------------------------------------------- patrol planning
@dataclass
class PatrolPlan:
    """Patrol presets in tour order, the sampled worker places and which of them are covered."""

    presets: list[PTZPose]
    points: np.ndarray  # (N, 2) sampled work-area points
    need_zoom: np.ndarray  # (N,) zoom each point needs to verify a head (with the margin)
    uncovered: np.ndarray  # (N,) bool: points no preset can show (should be none)
    tour_s: float  # one round of the tour: travel plus dwell


def _tile_band(
    pan: np.ndarray,
    tilt_foot: np.ndarray,
    tilt_top: np.ndarray,
    fov_h: float,
    fov_v: float,
    edge_margin: float,
) -> list[tuple[float, float]]:
    """Pan/tilt centres of views of one zoom that hold every person interval of a band.

    Rows: greedy interval cover in tilt (each person spans ``tilt_foot``…``tilt_top``); inside a
    row, greedy interval cover in pan. Views are placed only where there are people, so empty
    stretches of sky or ground cost nothing.
    """
    usable_v = fov_v * (1 - 2 * edge_margin)
    usable_h = fov_h * (1 - 2 * edge_margin)
    left = np.ones(len(pan), dtype=bool)
    centres: list[tuple[float, float]] = []
    while left.any():
        top = float(tilt_top[left].max())
        row = left & (tilt_foot >= top - usable_v)
        if not row.any():  # a person taller than the view: take the highest one alone
            row = left & (tilt_top >= top)
        bottom = float(tilt_foot[row].min())
        tilt_c = (top + max(bottom, top - usable_v)) / 2
        order = np.flatnonzero(row)[np.argsort(pan[row])]
        i = 0
        while i < len(order):
            start = pan[order[i]]
            j = i
            while j + 1 < len(order) and pan[order[j + 1]] - start <= usable_h:
                j += 1
            centres.append(((float(start) + float(pan[order[j]])) / 2, tilt_c))
            i = j + 1
        left &= ~row
    return centres


def _two_opt(dist: np.ndarray, tour: list[int], max_passes: int = 50) -> list[int]:
    """Improve a closed tour with 2-opt moves (segment reversals) until no move helps."""
    n = len(tour)
    if n < 4:
        return tour
    t = np.array(tour)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 2):
            a, b = t[i], t[i + 1]
            js = np.arange(i + 2, n if i > 0 else n - 1)
            c, d = t[js], t[(js + 1) % n]
            delta = dist[a, c] + dist[b, d] - dist[a, b] - dist[c, d]
            k = int(np.argmin(delta))
            if delta[k] < -1e-9:
                j = int(js[k])
                t[i + 1 : j + 1] = t[i + 1 : j + 1][::-1]
                improved = True
        if not improved:
            break
    return [int(v) for v in t]


def shortest_tour(dist: np.ndarray, start: int = 0) -> list[int]:
    """A short closed tour: nearest neighbour from ``start``, then 2-opt."""
    n = len(dist)
    if n == 0:
        return []
    tour = [start]
    free = np.ones(n, dtype=bool)
    free[start] = False
    while free.any():
        cand = np.flatnonzero(free)
        nxt = int(cand[np.argmin(dist[tour[-1], cand])])
        tour.append(nxt)
        free[nxt] = False
    return _two_opt(dist, tour)


def plan_patrol(
    camera: CameraMountSpec,
    work_areas: list[list[list[float]]],
    *,
    verify_head_px: float = 16.0,
    spacing_m: float = 3.0,
    zoom_margin: float = 1.0,
    band_ratio: float = 1.4,
    edge_margin: float = 0.02,
    aspect: float = FRAME_ASPECT,
    dwell_s: float = 0.2,
    start: PTZPose | None = None,
) -> PatrolPlan:
    """Presets that show every sampled work-area point at verifying zoom, in a short tour order.

    Points are grouped into zoom bands (the farthest unassigned point sets the band's zoom; every
    point needing at least ``1/band_ratio`` of it joins), each band is tiled with
    :func:`_tile_band`, and every preset is checked exactly through the pinhole model: what a
    preset really shows (at its zoom or less) is taken off the list, and whatever the tiling
    missed goes round again. The tour is nearest neighbour + 2-opt on absolute-move times.
    """
    lim = camera.limits
    xy = work_area_points(work_areas, spacing_m)
    pan, tilt_foot, _ = point_angles(camera, xy, 0.0)
    _, tilt_top, _ = point_angles(camera, xy, PERSON_TOP_M)
    _, _, rng_head = point_angles(camera, xy, PERSON_TOP_M - 0.15)
    need = np.clip(
        zoom_for_size(rng_head, HEAD_SIZE_M, verify_head_px * zoom_margin, lim.fov_h_1x_deg),
        1.0,
        lim.zoom_max,
    )
    left = np.ones(len(xy), dtype=bool)
    uncovered = np.zeros(len(xy), dtype=bool)
    presets: list[PTZPose] = []
    while left.any():
        zoom = float(need[left].max())
        band = left & (need >= zoom / band_ratio)
        fov_h = fov_h_deg(zoom, lim.fov_h_1x_deg)
        centres = _tile_band(
            pan[band],
            tilt_foot[band],
            tilt_top[band],
            fov_h,
            vertical_fov_deg(fov_h, aspect),
            edge_margin,
        )
        progress = False
        for pan_c, tilt_c in centres:
            pose = clamp_pose(camera, pan_c, tilt_c, zoom)
            shown = left & (need <= pose.zoom + 1e-9)
            shown[shown] = covers(camera, pose, xy[shown], aspect=aspect, edge_margin=edge_margin)
            if shown.any():
                presets.append(pose)
                left &= ~shown
                progress = True
        if not progress:
            # the band tiling missed them all (approximations at steep tilt): one view each
            for i in np.flatnonzero(band & left):
                p, t, _ = point_angles(camera, xy[i : i + 1], PERSON_AIM_M)
                pose = clamp_pose(camera, float(p[0]), float(t[0]), float(need[i]))
                shown = left & (need <= pose.zoom + 1e-9)
                shown[shown] = covers(
                    camera, pose, xy[shown], aspect=aspect, edge_margin=edge_margin
                )
                if shown[i]:
                    presets.append(pose)
                    left &= ~shown
                else:  # out of the head's reach: report, never loop forever
                    uncovered[i] = True
                    left[i] = False
    if not presets:
        presets = [clamp_pose(camera, 0.0, -20.0, 1.0)]
    dist = travel_time_matrix(camera, presets)
    first = 0
    if start is not None:
        first = int(np.argmin([travel_s(camera, start, p) for p in presets]))
    order = shortest_tour(dist, first)
    tour = [presets[i] for i in order]
    loop = order + order[:1]
    tour_s = float(
        sum(dist[a, b] for a, b in zip(loop[:-1], loop[1:], strict=True))
    ) + dwell_s * len(tour)
    return PatrolPlan(tour, xy, need, uncovered, tour_s)
