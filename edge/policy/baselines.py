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
The geometry they plan with (worker places, coverage, wide views, the patrol tour) is
:mod:`edge.policy.coverage`; its public names are importable from here too.

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

from edge.geometry import PTZPose, fov_h_deg, points_in_polygon, zoom_for_size
from edge.policy.base import DISCRETE_ACTIONS, PolicyContext, discrete_to_command
from edge.policy.coverage import (
    FRAME_ASPECT,
    HEAD_SIZE_M,
    PERSON_AIM_M,
    PERSON_TOP_M,
    PatrolPlan,
    clamp_pose,
    covers,
    person_points,
    plan_patrol,
    point_angles,
    shortest_tour,
    travel_s,
    travel_time_matrix,
    vertical_fov_deg,
    wide_presets,
    work_area_points,
)
from edge.policy.observation import Observation, Target
from edge.sim.ptz import AbsoluteMove, PTZCommand, RelativeMove, Stop

# The coverage names listed here are re-exported from edge.policy.coverage.
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

#: Vertical extent of smoke worth verifying; the plume grows past it within seconds.
SMOKE_SIZE_M = 2.0
#: A relative move of nothing: "keep doing what you are doing" (an AbsoluteMove in flight goes on).
HOLD = RelativeMove()
#: Pose differences below these count as "arrived" (the head stops exactly on its target).
_ARRIVE_DEG = 0.05
_ARRIVE_LOG_ZOOM = 0.005


def _arrived(pose: PTZPose, target: PTZPose) -> bool:
    return (
        abs(pose.pan_deg - target.pan_deg) < _ARRIVE_DEG
        and abs(pose.tilt_deg - target.tilt_deg) < _ARRIVE_DEG
        and abs(math.log(pose.zoom) - math.log(target.zoom)) < _ARRIVE_LOG_ZOOM
    )


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
        self._deadline = obs.t + travel_s(self.ctx.camera, obs.pose, target) + self.stuck_s
        return AbsoluteMove(target.pan_deg, target.tilt_deg, target.zoom)

    def act(self, obs: Observation) -> PTZCommand:
        """Hold the current preset until it has been seen, then move to the next one."""
        presets = self.presets
        if self._index < 0:  # start the tour at the preset nearest to where the head is
            near = int(np.argmin([travel_s(self.ctx.camera, obs.pose, p) for p in presets]))
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
        pan, tilt, rng = point_angles(self.ctx.camera, xy, aim_m)
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
            half_v = 0.45 * vertical_fov_deg(fov_h, self.aspect)
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
        self._deadline = obs.t + travel_s(self.ctx.camera, obs.pose, goal) + self.stuck_s
        return AbsoluteMove(goal.pan_deg, goal.tilt_deg, goal.zoom)

    def _next(self, obs: Observation) -> PTZCommand:
        """Chain to the nearest remembered candidate, or go back to a wide view."""
        if self.candidates:
            poses = [
                clamp_pose(self.ctx.camera, c.pan_deg, c.tilt_deg, c.zoom) for c in self.candidates
            ]
            times = [travel_s(self.ctx.camera, obs.pose, p) for p in poses]
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
