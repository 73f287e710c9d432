"""The oracle: a PTZ policy that knows where every active hazard is — the reference floor.

It reads ground truth through the :class:`~trainer.envs.episode.SearchEpisode` it is bound to
(``oracle.bind(episode)`` after every ``episode.reset()``): which hazards are active and not yet
confirmed, and where their worker or fire is. It plans a near-optimal route — the order of the next
few hazards that minimises their summed time to detection, by absolute-move travel time — and
moves onto each with the zoom that makes it resolvable (from the true range, with a margin),
re-aiming every step as the target moves; a hazard hidden behind a structure (checked with a tiny
ground-truth render) waits until it steps out. No device can do better than this with the same head,
so it bounds what a learned policy can gain.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from edge.geometry import PTZPose, pan_tilt_of_point, zoom_for_size
from edge.policy.base import PolicyContext
from edge.policy.observation import Observation
from edge.sim.ptz import AbsoluteMove, PTZCommand, travel_time_s
from edge.sim.world import HEAD_RADIUS_M, TORSO_BOTTOM_M, TORSO_TOP_M, HazardEvent
from trainer.envs.episode import SearchEpisode

#: Vertical extent the renderer gives a head box (it draws ≈ 0.27 m; a little less is safe).
HEAD_BOX_M = 0.26


@dataclass
class OraclePolicy:
    """Ground-truth route planner: visit pending hazards in the order that detects them soonest."""

    name: str = "oracle"
    zoom_margin: float = 1.1  # the hazard must span the resolvability threshold × this
    lookahead: int = 4  # hazards per planned ordering
    num_candidates: int = 6  # nearest pending hazards the orderings are drawn from
    stuck_s: float = 1.0  # at a visible target this long without a confirmation: skip it ...
    retry_s: float = 5.0  # ... for this long, then try again
    _episode: SearchEpisode | None = field(default=None, init=False, repr=False)

    def bind(self, episode: SearchEpisode) -> None:
        """Read ground truth from ``episode`` (call after each ``episode.reset()``)."""
        self._episode = episode
        self._goal: str | None = None
        self._pending_ids: frozenset[str] = frozenset()
        self._at_goal_since: float | None = None
        self._blocked: dict[str, float] = {}

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Remember the camera; the ground truth comes from :meth:`bind`."""
        self.ctx = ctx
        self._goal = None
        self._pending_ids = frozenset()
        self._at_goal_since = None
        self._blocked = {}

    # ------------------------------------------------------------------ ground truth
    def _events(self) -> dict[str, HazardEvent]:
        ep = self._episode
        assert ep is not None and ep.virtual is not None, "bind(episode) after episode.reset()"
        return {h.id: h for h in ep.virtual.site.hazards}

    def pose_for(self, event: HazardEvent, t: float) -> PTZPose:
        """Where to point, and how far to zoom, to resolve ``event`` at site time ``t``."""
        ep = self._episode
        assert ep is not None and ep.virtual is not None
        site = ep.virtual.site
        res = ep.config.resolvability
        if event.fire is not None:
            fire = next((f for f in site.fires_at(t) if f.index == event.fire), None)
            spec = site.spec.fires[event.fire]
            xy = fire.xy if fire is not None else (spec.position[0], spec.position[1])
            reach = fire.size_m * 1.6 * fire.intensity if fire is not None else spec.size_m
            size_m = (fire.plume_m if fire is not None else spec.size_m * 1.5) + reach
            # the box runs from the ground to the plume top; aim at its middle
            aim = np.array([xy[0], xy[1], size_m / 2])
            need_px = res.smoke_px
        else:
            assert event.worker is not None
            wi = event.worker
            xy = site.workers_at(t).xy[wi]
            h = float(site.heights[wi])
            k = h / 1.75
            if event.type == "no_helmet":
                aim, size_m, need_px = (
                    np.array([xy[0], xy[1], h - HEAD_RADIUS_M]),
                    HEAD_BOX_M,
                    res.head_px,
                )
            elif event.type == "no_vest":
                mid = (TORSO_BOTTOM_M + TORSO_TOP_M) / 2 * k
                size_m = (TORSO_TOP_M - TORSO_BOTTOM_M) * k
                aim, need_px = np.array([xy[0], xy[1], mid]), res.torso_px
            else:  # zone_intrusion: the whole person, crouching a little
                aim, size_m, need_px = np.array([xy[0], xy[1], h / 2]), 0.93 * h, res.person_px
        cam = self.ctx.camera
        lim = cam.limits
        pan, tilt, rng = pan_tilt_of_point(self.ctx.mount, float(cam.heading_deg), aim)
        zoom = float(
            zoom_for_size(float(rng), size_m, need_px * self.zoom_margin, lim.fov_h_1x_deg)
        )
        return PTZPose(
            float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
            float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
            float(np.clip(zoom, 1.0, lim.zoom_max)),
        )

    def _pending(self, t: float) -> list[HazardEvent]:
        """Active hazards not confirmed yet."""
        ep = self._episode
        assert ep is not None
        events = self._events()
        return [
            events[hid]
            for hid, rec in ep.hazards.items()
            if rec.confirmed_s is None and events[hid].active(t)
        ]

    def resolvable_at(self, event: HazardEvent, pose: PTZPose, t: float) -> bool:
        """Would ``event`` be resolvable in a view at ``pose`` now? (Ground truth of a tiny
        render: a worker behind a building is not worth the trip until it steps out.)"""
        ep = self._episode
        assert ep is not None and ep.virtual is not None
        _, truth = ep.virtual.renderer.render(pose, t, 16, 16, truth=True, noise=False)
        assert truth is not None
        return any(h.id == event.id and h.resolvable for h in truth.hazards)

    # ------------------------------------------------------------------ planning
    def _plan(self, pose: PTZPose, pending: list[HazardEvent], t: float) -> str:
        """The first hazard of the ordering that minimises the summed arrival times."""
        lim = self.ctx.camera.limits
        poses = {ev.id: self.pose_for(ev, t) for ev in pending}
        nearest = sorted(pending, key=lambda ev: travel_time_s(lim, pose, poses[ev.id]))
        pool = nearest[: self.num_candidates]
        depth = min(self.lookahead, len(pool))
        best_cost, best_first = math.inf, pool[0].id
        for order in itertools.permutations(pool, depth):
            clock, cost, here = 0.0, 0.0, pose
            for ev in order:
                clock += travel_time_s(lim, here, poses[ev.id]) + self.ctx.dt
                cost += clock
                here = poses[ev.id]
                if cost >= best_cost:
                    break
            if cost < best_cost:
                best_cost, best_first = cost, order[0].id
        return best_first

    def act(self, obs: Observation) -> PTZCommand:
        """Aim at the planned hazard, where it will be when the head gets there."""
        t = obs.t
        pending = self._pending(t)
        if not pending:
            self._goal, self._pending_ids = None, frozenset()
            home = self._home()
            return AbsoluteMove(home.pan_deg, home.tilt_deg, home.zoom)
        poses = {ev.id: self.pose_for(ev, t) for ev in pending}
        visible = [
            ev
            for ev in pending
            if self._blocked.get(ev.id, -1.0) <= t and self.resolvable_at(ev, poses[ev.id], t)
        ]
        # all hidden: wait in front of the nearest one, it may step out any moment
        candidates = visible or pending
        ids = frozenset(ev.id for ev in candidates)
        goal = self._goal
        if goal is None or goal not in ids or ids != self._pending_ids:
            goal = self._plan(obs.pose, candidates, t)
            if goal != self._goal:
                self._at_goal_since = None
            self._goal = goal
        self._pending_ids = ids
        event = self._events()[goal]
        lim = self.ctx.camera.limits
        # lead the target: where it will be when the head arrives (one refinement is plenty)
        target = self.pose_for(event, t + travel_time_s(lim, obs.pose, poses[goal]))
        if visible and travel_time_s(lim, obs.pose, target) <= lim.latency_s + self.ctx.dt:
            if self._at_goal_since is None:
                self._at_goal_since = t
            elif t - self._at_goal_since >= self.stuck_s:
                # in front of it and still not confirmed (e.g. cut by the frame edge): try the
                # others first, come back later
                self._blocked[goal] = t + self.retry_s
                self._goal, self._at_goal_since = None, None
        return AbsoluteMove(target.pan_deg, target.tilt_deg, target.zoom)

    def _home(self) -> PTZPose:
        ep = self._episode
        assert ep is not None and ep.virtual is not None
        return ep.virtual.home_pose()
