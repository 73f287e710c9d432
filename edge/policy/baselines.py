"""The baseline PTZ policies every PTZ user knows, tuned to be honest opponents for a learned one.

* :class:`StaticWidePolicy` — one wide (1×) view that frames the work areas, then never moves.
* :class:`PatrolPolicy` — a guard tour as a good integrator configures it: presets that together
  show every place a worker can be at verifying zoom, visited in a shortest-tour order, each held
  just long enough to verify.
* :class:`RandomPolicy` — uniform random discrete actions.
* :class:`GreedyPolicy` — what PTZ autotrackers do: from a wide view, zoom on the nearest
  unverified detection, chain to the next one, back to wide when none are left.

All of them see only what a device has (the :class:`~edge.policy.base.PolicyContext` and the
:class:`~edge.policy.observation.Observation`), move the head with the ONVIF-style commands of
:mod:`edge.sim.ptz`, and pay the travel time like everyone else.

Tuning — ``sitehawk-train tune-baselines --seeds 0-59`` (grids: ``trainer.cli.TUNING_GRIDS``).
A grid search over each policy's most consequential dataclass fields, on *training* seeds only
(< 1000; the held-out seeds ≥ 1000 never picked anything), 120 s episodes, simulated perception,
16:9 frames, ranked by ``ttd_mean_s`` (mean time to detection; a missed hazard counts as onset →
episode end). Every combination sees the same sites, so comparisons are paired. 20 seeds hold only
~45 hazards, which left the ranking inside the noise (±1.5 s), so the defaults come from seeds
0-59 (177 hazards; the oracle misses 28 of them too — hidden behind structures, or starting
seconds before the end — which sets the floor: the oracle scores 10.9 s, static_wide 44.6 s).

* patrol: zoom_margin {1.0, 1.1} × band_ratio {1.15, 1.4, 2.0} × edge_margin {0.02, 0.05}
  → 1.0 / 1.4 / 0.02, ttd_mean 13.3 s (grid range 13.3–16.2 s). A first round on square
  frames showed ``dwell_steps`` 2 always behind 1 (+1–2 s): the arrival frame is what verifies.
* greedy: recheck_s {15, 25} × verify_timeout_s {0, 0.2} × wide_dwell_steps {1, 2}
  → 15 / 0.2 / 1, ttd_mean 11.5 s (range 11.5–12.3 s). Earlier rounds fixed zoom_margin 1.3
  (1.1 lost ~0.8 s: range estimates from a 1× view are rough) and the memory in ground metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
from edge.policy.base import DISCRETE_ACTIONS, PolicyContext, discrete_to_command
from edge.policy.observation import Observation, Target
from edge.sim.ptz import AbsoluteMove, PTZCommand, RelativeMove, Stop
from firmware_config.camera import CameraMountSpec

__all__ = [
    "FRAME_ASPECT",
    "HEAD_SIZE_M",
    "PERSON_TOP_M",
    "GreedyPolicy",
    "PatrolPlan",
    "PatrolPolicy",
    "RandomPolicy",
    "StaticWidePolicy",
    "covers",
    "person_points",
    "plan_patrol",
    "shortest_tour",
    "travel_time_matrix",
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
#: Vertical extent of smoke worth verifying; the plume grows past it within seconds.
SMOKE_SIZE_M = 2.0
#: A relative move of nothing: "keep doing what you are doing" (an AbsoluteMove in flight goes on).
HOLD = RelativeMove()
#: Pose differences below these count as "arrived" (the head stops exactly on its target).
_ARRIVE_DEG = 0.05
_ARRIVE_LOG_ZOOM = 0.005


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


def _travel_s(camera: CameraMountSpec, a: PTZPose, b: PTZPose) -> float:
    lim = camera.limits
    return lim.latency_s + max(
        abs(b.pan_deg - a.pan_deg) / lim.pan_speed_dps,
        abs(b.tilt_deg - a.tilt_deg) / lim.tilt_speed_dps,
        abs(math.log(b.zoom) - math.log(a.zoom)) / lim.zoom_speed_lps,
    )


def _arrived(pose: PTZPose, target: PTZPose) -> bool:
    return (
        abs(pose.pan_deg - target.pan_deg) < _ARRIVE_DEG
        and abs(pose.tilt_deg - target.tilt_deg) < _ARRIVE_DEG
        and abs(math.log(pose.zoom) - math.log(target.zoom)) < _ARRIVE_LOG_ZOOM
    )


def _clamp_pose(camera: CameraMountSpec, pan: float, tilt: float, zoom: float) -> PTZPose:
    lim = camera.limits
    return PTZPose(
        float(min(max(pan, lim.pan_min_deg), lim.pan_max_deg)),
        float(min(max(tilt, lim.tilt_min_deg), lim.tilt_max_deg)),
        float(min(max(zoom, 1.0), lim.zoom_max)),
    )


def _angles(camera: CameraMountSpec, xy: np.ndarray, height_m: float) -> tuple[np.ndarray, ...]:
    """Pan, tilt and slant range (each (N,)) of points ``height_m`` above ``xy``."""
    mount = (float(camera.position[0]), float(camera.position[1]), float(camera.height_m))
    pan, tilt, rng = pan_tilt_of_point(
        mount, float(camera.heading_deg), person_points(xy, height_m)
    )
    return np.atleast_1d(pan), np.atleast_1d(tilt), np.atleast_1d(rng)


def _vertical_fov_deg(fov_h: float, aspect: float) -> float:
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
        return [_clamp_pose(camera, 0.0, -20.0, zoom)]
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
    pan, tilt, _ = _angles(camera, xy, PERSON_AIM_M)
    fov_h = fov_h_deg(zoom, lim.fov_h_1x_deg)
    fov_v = _vertical_fov_deg(fov_h, aspect)
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
    return _clamp_pose(camera, float(best[0]), float(best[1]), zoom)


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
    pan, tilt_foot, _ = _angles(camera, xy, 0.0)
    _, tilt_top, _ = _angles(camera, xy, PERSON_TOP_M)
    _, _, rng_head = _angles(camera, xy, PERSON_TOP_M - 0.15)
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
            _vertical_fov_deg(fov_h, aspect),
            edge_margin,
        )
        progress = False
        for pan_c, tilt_c in centres:
            pose = _clamp_pose(camera, pan_c, tilt_c, zoom)
            shown = left & (need <= pose.zoom + 1e-9)
            shown[shown] = covers(camera, pose, xy[shown], aspect=aspect, edge_margin=edge_margin)
            if shown.any():
                presets.append(pose)
                left &= ~shown
                progress = True
        if not progress:
            # the band tiling missed them all (approximations at steep tilt): one view each
            for i in np.flatnonzero(band & left):
                p, t, _ = _angles(camera, xy[i : i + 1], PERSON_AIM_M)
                pose = _clamp_pose(camera, float(p[0]), float(t[0]), float(need[i]))
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
        presets = [_clamp_pose(camera, 0.0, -20.0, 1.0)]
    dist = travel_time_matrix(camera, presets)
    first = 0
    if start is not None:
        first = int(np.argmin([_travel_s(camera, start, p) for p in presets]))
    order = shortest_tour(dist, first)
    tour = [presets[i] for i in order]
    loop = order + order[:1]
    tour_s = float(
        sum(dist[a, b] for a, b in zip(loop[:-1], loop[1:], strict=True))
    ) + dwell_s * len(tour)
    return PatrolPlan(tour, xy, need, uncovered, tour_s)


# ------------------------------------------------------------------------------- policies
@dataclass
class StaticWidePolicy:
    """Zoom 1×, aimed to show as much of the work areas as one view can; then it never moves."""

    name: str = "static_wide"
    aspect: float = FRAME_ASPECT  # frame height / width of the camera's stream

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Frame the work areas from the mount (a grid search over pan and tilt at 1×)."""
        self.ctx = ctx
        self.pose = wide_presets(ctx.camera, ctx.work_areas, zoom=1.0, aspect=self.aspect)[0]
        self._there = False

    def act(self, obs: Observation) -> PTZCommand:
        """Move to the wide pose once, then Stop forever."""
        if self._there or _arrived(obs.pose, self.pose):
            self._there = True
            return Stop()
        return AbsoluteMove(self.pose.pan_deg, self.pose.tilt_deg, self.pose.zoom)


@dataclass
class PatrolPolicy:
    """A guard tour: verifying-zoom presets covering every worker place, in a shortest-tour order.

    Each preset is held until the head has arrived and ``dwell_steps`` frames were captured there
    (the arrival frame counts), so a tour costs its travel plus about one control step per preset.
    """

    name: str = "patrol"
    dwell_steps: int = 1  # frames captured at each preset, the arrival frame included
    spacing_m: float = 3.0  # ground grid on which the work areas are sampled
    zoom_margin: float = 1.0  # heads must span verify_head_px × this (tuned: no slack needed)
    band_ratio: float = 1.4  # one zoom serves points needing between zoom/band_ratio and zoom
    edge_margin: float = 0.02  # share of the frame kept free on each side (people move)
    aspect: float = FRAME_ASPECT  # frame height / width of the camera's stream
    stuck_s: float = 3.0  # move on if the head has not arrived this long after the expected time
    plan: PatrolPlan | None = field(default=None, init=False, repr=False)

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Plan the presets and the tour for this camera and these work areas."""
        self.ctx = ctx
        self.plan = plan_patrol(
            ctx.camera,
            ctx.work_areas,
            verify_head_px=ctx.verify_head_px,
            spacing_m=self.spacing_m,
            zoom_margin=self.zoom_margin,
            band_ratio=self.band_ratio,
            edge_margin=self.edge_margin,
            aspect=self.aspect,
            dwell_s=self.dwell_steps * ctx.dt,
        )
        self._index = -1
        self._frames_there = 0
        self._deadline = -math.inf

    @property
    def presets(self) -> list[PTZPose]:
        """The tour's presets, in visiting order."""
        assert self.plan is not None, "call reset() first"
        return self.plan.presets

    def _go(self, obs: Observation, index: int) -> PTZCommand:
        presets = self.presets
        self._index = index % len(presets)
        self._frames_there = 0
        target = presets[self._index]
        self._deadline = obs.t + _travel_s(self.ctx.camera, obs.pose, target) + self.stuck_s
        return AbsoluteMove(target.pan_deg, target.tilt_deg, target.zoom)

    def act(self, obs: Observation) -> PTZCommand:
        """Hold the current preset until it has been seen, then move to the next one."""
        presets = self.presets
        if self._index < 0:  # start the tour at the preset nearest to where the head is
            near = int(np.argmin([_travel_s(self.ctx.camera, obs.pose, p) for p in presets]))
            return self._go(obs, near)
        if _arrived(obs.pose, presets[self._index]):
            self._frames_there += 1
        if self._frames_there >= self.dwell_steps or obs.t > self._deadline:
            return self._go(obs, self._index + 1)
        return HOLD


@dataclass
class RandomPolicy:
    """Uniform random discrete actions (the RL action set), from a seeded generator."""

    name: str = "random"

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Seed the generator; the same seed gives the same action sequence."""
        self.ctx = ctx
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Observation) -> PTZCommand:
        """One uniformly drawn action of :data:`~edge.policy.base.DISCRETE_ACTIONS`."""
        action = int(self.rng.integers(len(DISCRETE_ACTIONS)))
        return discrete_to_command(action, obs.pose, self.ctx.camera, self.ctx.dt)


@dataclass
class _Candidate:
    """An unverified detection: where to point (pan/tilt), and where it stands (ground)."""

    pan_deg: float
    tilt_deg: float  # aim point (the middle of the person / the smoke)
    zoom: float  # zoom that makes it verifiable
    xy: tuple[float, float]  # estimated ground position, metres
    t_seen: float
    kind: str


@dataclass
class _Checked:
    """A ground place looked at with verifying resolution, and when."""

    xy: tuple[float, float]
    t: float


@dataclass
class GreedyPolicy:
    """The PTZ autotracker: zoom on the nearest unverified detection, chain, then back to wide.

    From a wide preset it collects unverified candidates (people and smoke too small to judge),
    remembers them for ``memory_s`` so zooming in does not lose them, and visits the nearest one
    (by absolute-move time) at the zoom that makes it verifiable (from its estimated range). It
    holds there until a verified detection shows up near it, or ``verify_timeout_s`` after
    arrival; the place then counts as checked for ``recheck_s`` (people move and hazards start at
    any time, so checks expire). Candidates a settled view shows at verifying zoom are checked on
    the way. With nothing left it returns to wide; when one wide view cannot hold the work areas
    it cycles through up to ``max_wide_views`` of them.

    Candidates are pointed at in pan/tilt but compared on the ground (metres, from the flat-ground
    estimate of each detection): near the horizon one degree of tilt spans tens of metres, so
    "the same place" in angles would merge whole crews.
    """

    name: str = "greedy"
    zoom_margin: float = 1.3  # heads must span verify_head_px × this: range estimates are rough
    wide_zoom: float = 1.0
    max_wide_views: int = 3
    wide_dwell_steps: int = 1  # frames at a wide preset before acting on what it found
    memory_s: float = 8.0  # how long an unverified candidate is remembered
    recheck_s: float = 15.0  # how long a checked place stays checked
    verify_timeout_s: float = 0.2  # give up on a candidate this long after arriving
    checked_radius_m: float = 1.5  # a new detection this close to a checked place is not new
    merge_radius_m: float = 1.5  # detections this close are one candidate
    min_score: float = 0.3  # ignore weaker detections (most false positives)
    area_margin_m: float = 3.0  # detections farther than this outside the work areas are ignored
    aspect: float = FRAME_ASPECT  # frame height / width of the camera's stream
    stuck_s: float = 3.0  # abandon a move that has not arrived this long after the expected time

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Place the wide presets and forget everything."""
        self.ctx = ctx
        self.wides = wide_presets(
            ctx.camera,
            ctx.work_areas,
            zoom=self.wide_zoom,
            max_views=self.max_wide_views,
            aspect=self.aspect,
        )
        self.areas = [np.asarray(a, dtype=np.float64) for a in ctx.work_areas]
        self.candidates: list[_Candidate] = []
        self.checked: list[_Checked] = []
        self._wide_index = -1
        self._mode = "start"
        self._goal: PTZPose | None = None
        self._goal_cand: _Candidate | None = None
        self._arrived_t: float | None = None
        self._frames_there = 0
        self._deadline = math.inf

    # ------------------------------------------------------------------ memory
    def _is_checked(self, xy: tuple[float, float]) -> bool:
        r2 = self.checked_radius_m**2
        return any((c.xy[0] - xy[0]) ** 2 + (c.xy[1] - xy[1]) ** 2 <= r2 for c in self.checked)

    def _mark_checked(self, xy: tuple[float, float], t: float) -> None:
        self.checked.append(_Checked(xy, t))
        r2 = self.checked_radius_m**2
        self.candidates = [
            c for c in self.candidates if (c.xy[0] - xy[0]) ** 2 + (c.xy[1] - xy[1]) ** 2 > r2
        ]

    def _in_work_area(self, xy: tuple[float, float]) -> bool:
        """Inside a work area or within ``area_margin_m`` of one (false positives on the
        skyline would otherwise send the head to 30× on nothing)."""
        p = np.asarray(xy, dtype=np.float64)
        for poly in self.areas:
            if points_in_polygon(p[None], poly)[0]:
                return True
            a, b = poly, np.roll(poly, -1, axis=0)
            ab = b - a
            f = np.clip(((p - a) * ab).sum(axis=1) / np.maximum((ab * ab).sum(axis=1), 1e-9), 0, 1)
            if float(np.min(np.linalg.norm(a + ab * f[:, None] - p, axis=1))) <= self.area_margin_m:
                return True
        return not self.areas

    def _aim(self, tg: Target) -> tuple[float, float, float, float] | None:
        """Pan, tilt, zoom and range to verify a target, from its ground position."""
        if tg.ground_xy is None or not math.isfinite(tg.range_m):
            return None  # above the horizon: nothing a flat-ground range estimate can place
        if not self._in_work_area(tg.ground_xy):
            return None
        xy = np.array([tg.ground_xy], dtype=np.float64)
        if tg.kind == "fire_smoke":
            size_m, px, aim_m = SMOKE_SIZE_M, self.ctx.verify_smoke_px, SMOKE_SIZE_M / 2
        else:
            size_m, px, aim_m = HEAD_SIZE_M, self.ctx.verify_head_px, PERSON_AIM_M
        pan, tilt, rng = _angles(self.ctx.camera, xy, aim_m)
        lim = self.ctx.camera.limits
        zoom = float(zoom_for_size(float(rng[0]), size_m, px * self.zoom_margin, lim.fov_h_1x_deg))
        return float(pan[0]), float(tilt[0]), min(max(zoom, 1.0), lim.zoom_max), float(rng[0])

    def _ingest(self, obs: Observation) -> None:
        t = obs.t
        self.checked = [c for c in self.checked if t - c.t < self.recheck_s]
        self.candidates = [c for c in self.candidates if t - c.t_seen < self.memory_s]
        m2 = self.merge_radius_m**2
        for tg in obs.targets:
            if tg.score < self.min_score:
                continue
            aim = self._aim(tg)
            if aim is None or tg.ground_xy is None:
                continue
            xy = tg.ground_xy
            if tg.verified:
                self._mark_checked(xy, t)
                continue
            if self._is_checked(xy):
                continue
            pan, tilt, zoom, _ = aim
            for c in self.candidates:
                if (c.xy[0] - xy[0]) ** 2 + (c.xy[1] - xy[1]) ** 2 <= m2:
                    c.pan_deg, c.tilt_deg, c.zoom, c.xy, c.t_seen = pan, tilt, zoom, xy, t
                    break
            else:
                self.candidates.append(_Candidate(pan, tilt, zoom, xy, t, tg.kind))
        # whatever the current (settled) view shows at verifying zoom has been looked at
        if self._settled(obs):
            fov_h = fov_h_deg(obs.pose.zoom, self.ctx.camera.limits.fov_h_1x_deg)
            half_h = 0.45 * fov_h
            half_v = 0.45 * _vertical_fov_deg(fov_h, self.aspect)
            for c in list(self.candidates):
                if c is self._goal_cand:
                    continue  # the goal waits for a verified detection (or its timeout)
                if (
                    c.zoom <= obs.pose.zoom * 1.05
                    and abs(c.pan_deg - obs.pose.pan_deg) <= half_h
                    and abs(c.tilt_deg - obs.pose.tilt_deg) <= half_v
                ):
                    self._mark_checked(c.xy, t)

    def _settled(self, obs: Observation) -> bool:
        return self._goal is not None and _arrived(obs.pose, self._goal)

    # ------------------------------------------------------------------ decisions
    def _move(self, obs: Observation, goal: PTZPose) -> PTZCommand:
        self._goal = goal
        self._arrived_t = None
        self._frames_there = 0
        self._deadline = obs.t + _travel_s(self.ctx.camera, obs.pose, goal) + self.stuck_s
        return AbsoluteMove(goal.pan_deg, goal.tilt_deg, goal.zoom)

    def _next(self, obs: Observation) -> PTZCommand:
        """Chain to the nearest remembered candidate, or go back to a wide view."""
        if self.candidates:
            poses = [
                _clamp_pose(self.ctx.camera, c.pan_deg, c.tilt_deg, c.zoom) for c in self.candidates
            ]
            times = [_travel_s(self.ctx.camera, obs.pose, p) for p in poses]
            k = int(np.argmin(times))
            self._mode = "check"
            self._goal_cand = self.candidates[k]
            return self._move(obs, poses[k])
        self._mode = "wide"
        self._goal_cand = None
        self._wide_index = (self._wide_index + 1) % len(self.wides)
        return self._move(obs, self.wides[self._wide_index])

    def act(self, obs: Observation) -> PTZCommand:
        """One control step of the autotracker."""
        self._ingest(obs)
        if self._mode == "start" or self._goal is None:
            self._mode = "wide"
            self._wide_index = 0
            return self._move(obs, self.wides[0])
        if _arrived(obs.pose, self._goal):
            if self._arrived_t is None:
                self._arrived_t = obs.t
            self._frames_there += 1
        elif obs.t > self._deadline:  # the head never got there: do not wait forever
            return self._next(obs)
        if self._arrived_t is None:
            return HOLD
        if self._mode == "wide":
            if self._frames_there < self.wide_dwell_steps:
                return HOLD
            if self.candidates or len(self.wides) > 1:
                return self._next(obs)
            return HOLD
        # checking one candidate: done once it is gone (verified / seen), or on timeout
        cand = self._goal_cand
        if cand is not None and cand in self.candidates:
            if obs.t - self._arrived_t < self.verify_timeout_s:
                return HOLD
            self._mark_checked(cand.xy, obs.t)
        return self._next(obs)
