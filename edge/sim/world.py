"""The site as a function of time: where every worker, machine and fire is at site time ``t``.

:class:`Site` compiles a :class:`~edge.sim.spec.SiteSpec` into arrays once, so that querying the
state at any time is a handful of vectorised numpy operations (the renderer asks for it every
frame). The hazard events — the ground truth the evaluation scores against — are derived here from
the same kinematics the renderer draws, so they cannot disagree with what the camera shows.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from edge.geometry import points_in_polygon
from edge.sim.spec import HAZARD_TYPES, MachineSpec, SiteSpec

__all__ = ["HazardEvent", "Site", "points_in_polygon"]

#: Body proportions in metres for a 1.75 m worker (scaled by height).
HEAD_RADIUS_M = 0.115
TORSO_BOTTOM_M = 0.85
TORSO_TOP_M = 1.45
INTRUSION_SAMPLE_S = 0.25


@dataclass(frozen=True)
class HazardEvent:
    """One hazard of the ground truth: what, when, and who or where."""

    id: str
    type: str
    start_s: float
    end_s: float
    worker: int | None = None  # index into Site.worker_ids
    machine: int | None = None  # index into spec.machines (zone_intrusion)
    fire: int | None = None  # index into spec.fires

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass
class WorkerState:
    """All workers at one instant (arrays of length N)."""

    xy: np.ndarray  # (N, 2)
    moving: np.ndarray  # (N,) bool
    crouch: np.ndarray  # (N,) bool, working at a waypoint
    phase: np.ndarray  # (N,) walking phase, radians
    helmet: np.ndarray  # (N,) bool
    vest: np.ndarray  # (N,) bool


@dataclass
class MachineState:
    """One machine at one instant."""

    working: bool
    xy: tuple[float, float]
    yaw_deg: float
    slew_deg: float  # upper structure / jib angle relative to yaw
    boom: float  # 0..1 arm / hook motion


@dataclass
class FireState:
    index: int
    xy: tuple[float, float]
    size_m: float
    intensity: float  # 0..1 ramp-in
    plume_m: float  # smoke column height


def _interval_arrays(intervals: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    if not intervals:
        return np.zeros(0), np.zeros(0)
    arr = np.array(sorted(intervals), dtype=np.float64)
    return arr[:, 0], arr[:, 1]


class Site:
    """A compiled site: query it at any site time."""

    def __init__(self, spec: SiteSpec):
        self.spec = spec
        self.worker_ids = [w.id for w in spec.workers]
        self.num_workers = len(spec.workers)
        self.heights = np.array([w.height_m for w in spec.workers], dtype=np.float64)
        self.base_helmet = np.array([w.helmet for w in spec.workers], dtype=bool)
        self.base_vest = np.array([w.vest for w in spec.workers], dtype=bool)
        self._compile_paths()
        self._compile_excursions()
        self._compile_attribute_events()
        self.zones = [np.array(m.zone, dtype=np.float64) for m in spec.machines]
        self._work = [_interval_arrays(m.working) for m in spec.machines]
        # plain lists: machine queries run every frame and bisect beats numpy on tiny arrays
        self._work_lists = [(list(s), list(e)) for s, e in self._work]
        self._work_cum = [[0.0, *np.cumsum(e - s).tolist()][: len(s)] for s, e in self._work]
        self._routes = []
        for m in spec.machines:
            route = [tuple(p) for p in (m.route if len(m.route) >= 2 else [m.position, m.position])]
            seg = [math.dist(a, b) for a, b in zip(route[:-1], route[1:], strict=True)]
            self._routes.append((route, [0.0, *np.cumsum(seg).tolist()]))
        self.hazards = self._derive_hazards()

    # ------------------------------------------------------------------ compile
    def _compile_paths(self) -> None:
        """Keyframes (time, position) of each worker's cyclic path, padded to one array."""
        frames_t: list[list[float]] = []
        frames_p: list[list[list[float]]] = []
        frames_crouch: list[list[bool]] = []
        for w in self.spec.workers:
            t = 0.0
            ts, ps, cr = [], [], []
            pts = [wp.xy for wp in w.path]
            for i, wp in enumerate(w.path):
                ts.append(t)
                ps.append(list(wp.xy))
                cr.append(wp.activity == "working")
                t += wp.dwell_s
                ts.append(t)
                ps.append(list(wp.xy))
                cr.append(False)
                nxt = pts[(i + 1) % len(pts)]
                t += math.dist(wp.xy, nxt) / w.speed_mps
            ts.append(max(t, 1e-6))
            ps.append(list(pts[0]))
            cr.append(False)
            frames_t.append(ts)
            frames_p.append(ps)
            frames_crouch.append(cr)
        n = self.num_workers
        m = max((len(t) for t in frames_t), default=1)
        self._kt = np.full((n, m), np.inf)
        self._kp = np.zeros((n, m, 2))
        self._kc = np.zeros((n, m), dtype=bool)
        for i in range(n):
            k = len(frames_t[i])
            self._kt[i, :k] = frames_t[i]
            self._kp[i, :k] = frames_p[i]
            self._kp[i, k:] = frames_p[i][-1]
            self._kc[i, :k] = frames_crouch[i]
        self._cycle = np.array([t[-1] for t in frames_t]) if n else np.zeros(0)
        self._phase0 = np.array([w.phase_s for w in self.spec.workers], dtype=np.float64)
        self._speed = np.array([w.speed_mps for w in self.spec.workers], dtype=np.float64)

    def _path_xy(self, t: float, idx: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Positions on the cyclic paths (ignoring excursions)."""
        kt, kp, kc = self._kt, self._kp, self._kc
        cycle, phase0 = self._cycle, self._phase0
        if idx is not None:
            kt, kp, kc, cycle, phase0 = kt[idx], kp[idx], kc[idx], cycle[idx], phase0[idx]
        tau = np.mod(t + phase0, cycle)
        seg = np.clip((kt <= tau[:, None]).sum(axis=1) - 1, 0, kt.shape[1] - 2)
        rows = np.arange(len(seg))
        t0, t1 = kt[rows, seg], kt[rows, seg + 1]
        p0, p1 = kp[rows, seg], kp[rows, seg + 1]
        span = np.where(np.isfinite(t1), t1 - t0, 1.0)
        frac = np.clip(np.where(span > 1e-9, (tau - t0) / np.maximum(span, 1e-9), 0.0), 0.0, 1.0)
        xy = p0 + (p1 - p0) * frac[:, None]
        moving = np.any(np.abs(p1 - p0) > 1e-6, axis=1) & np.isfinite(t1)
        return xy, moving, kc[rows, seg] & ~moving

    def _compile_excursions(self) -> None:
        rows = []
        for wi, w in enumerate(self.spec.workers):
            for ex in w.excursions:
                start = self._path_xy(ex.leave_s, np.array([wi]))[0][0]
                target = np.array(ex.target, dtype=np.float64)
                t_arrive = ex.leave_s + float(np.linalg.norm(target - start)) / w.speed_mps
                t_depart = t_arrive + ex.stay_s
                back = self._path_xy(t_depart, np.array([wi]))[0][0]
                t_return = t_depart + float(np.linalg.norm(back - target)) / w.speed_mps
                back = self._path_xy(t_return, np.array([wi]))[0][0]
                rows.append((wi, ex.leave_s, t_arrive, t_depart, t_return, *start, *target, *back))
        self._ex = np.array(rows, dtype=np.float64).reshape(-1, 11)

    def _compile_attribute_events(self) -> None:
        index = {wid: i for i, wid in enumerate(self.worker_ids)}
        rows = [
            (index[e.worker], 0 if e.type == "no_helmet" else 1, e.start_s, e.end_s)
            for e in self.spec.attribute_events
        ]
        self._attr = np.array(rows, dtype=np.float64).reshape(-1, 4)

    # ------------------------------------------------------------------ queries
    def workers_at(self, t: float) -> WorkerState:
        """Every worker's position, motion and kit at site time ``t``."""
        if self.num_workers == 0:
            empty = np.zeros(0, dtype=bool)
            return WorkerState(np.zeros((0, 2)), empty, empty, np.zeros(0), empty, empty)
        xy, moving, crouch = self._path_xy(t)
        if len(self._ex):
            ex = self._ex
            active = (ex[:, 1] <= t) & (t < ex[:, 4])
            for row in ex[active]:
                wi = int(row[0])
                t_leave, t_arrive, t_depart, t_return = row[1:5]
                start, target, back = row[5:7], row[7:9], row[9:11]
                if t < t_arrive:
                    f = (t - t_leave) / max(t_arrive - t_leave, 1e-9)
                    xy[wi] = start + (target - start) * f
                    moving[wi], crouch[wi] = True, False
                elif t < t_depart:
                    xy[wi] = target
                    moving[wi], crouch[wi] = False, False
                else:
                    f = (t - t_depart) / max(t_return - t_depart, 1e-9)
                    xy[wi] = target + (back - target) * f
                    moving[wi], crouch[wi] = True, False
        helmet = self.base_helmet.copy()
        vest = self.base_vest.copy()
        if len(self._attr):
            a = self._attr
            on = (a[:, 2] <= t) & (t < a[:, 3])
            helmet[a[on & (a[:, 1] == 0), 0].astype(int)] = False
            vest[a[on & (a[:, 1] == 1), 0].astype(int)] = False
        phase = (t * self._speed * 4.0 + np.arange(self.num_workers)) % (2 * math.pi)
        return WorkerState(xy, moving, crouch, phase, helmet, vest)

    def machine_working(self, index: int, t: float) -> bool:
        starts, ends = self._work_lists[index]
        i = bisect.bisect_right(starts, t) - 1
        return i >= 0 and t < ends[i]

    def _work_time(self, index: int, t: float) -> float:
        """Seconds the machine has worked up to ``t`` (drives its motion continuously)."""
        starts, ends = self._work_lists[index]
        i = bisect.bisect_right(starts, t) - 1
        if i < 0:
            return 0.0
        return self._work_cum[index][i] + min(t, ends[i]) - starts[i]

    def machine_at(self, index: int, t: float) -> MachineState:
        m: MachineSpec = self.spec.machines[index]
        w = self._work_time(index, t)
        working = self.machine_working(index, t)
        xy = (float(m.position[0]), float(m.position[1]))
        yaw = m.yaw_deg
        if m.kind == "excavator":
            slew = 70.0 * math.sin(2 * math.pi * w / 14.0)
            boom = 0.5 + 0.5 * math.sin(2 * math.pi * w / 7.0)
        elif m.kind == "crane":
            slew = 100.0 * math.sin(2 * math.pi * w / 60.0)
            boom = 0.5 + 0.5 * math.sin(2 * math.pi * w / 20.0)
        else:  # truck: back and forth along its route at 3 m/s
            slew, boom = 0.0, 0.0
            route, cum = self._routes[index]
            total = cum[-1]
            if total > 1e-6:
                s = (w * 3.0) % (2 * total)
                s = s if s <= total else 2 * total - s
                k = min(max(bisect.bisect_left(cum, s) - 1, 0), len(route) - 2)
                f = (s - cum[k]) / max(cum[k + 1] - cum[k], 1e-9)
                (x0, y0), (x1, y1) = route[k], route[k + 1]
                xy = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f)
                yaw = math.degrees(math.atan2(x1 - x0, y1 - y0))
        return MachineState(working, xy, yaw, slew, boom)

    def zone_active(self, index: int, t: float) -> bool:
        """A machine's exclusion zone is active while the machine works."""
        return self.machine_working(index, t)

    def fires_at(self, t: float) -> list[FireState]:
        out = []
        for i, f in enumerate(self.spec.fires):
            if f.start_s <= t < f.end_s:
                age = t - f.start_s
                out.append(
                    FireState(
                        i,
                        (float(f.position[0]), float(f.position[1])),
                        f.size_m,
                        min(1.0, 0.3 + age / 5.0),
                        f.size_m * (1.5 + 2.5 * min(1.0, age / 20.0)),
                    )
                )
        return out

    def active_hazards(self, t: float) -> list[HazardEvent]:
        return [h for h in self.hazards if h.active(t)]

    # ------------------------------------------------------------------ ground truth
    def _derive_hazards(self) -> list[HazardEvent]:
        events: list[tuple[str, float, float, int | None, int | None, int | None]] = []
        horizon = self.spec.duration_s
        for w in np.flatnonzero(~self.base_helmet):
            events.append(("no_helmet", 0.0, horizon, int(w), None, None))
        for w in np.flatnonzero(~self.base_vest):
            events.append(("no_vest", 0.0, horizon, int(w), None, None))
        for row in self._attr:
            kind = "no_helmet" if row[1] == 0 else "no_vest"
            events.append((kind, float(row[2]), float(row[3]), int(row[0]), None, None))
        for fire_index, f in enumerate(self.spec.fires):
            events.append(("fire_smoke", f.start_s, f.end_s, None, None, fire_index))
        events.extend(self._derive_intrusions())
        events.sort(key=lambda e: (e[1], HAZARD_TYPES.index(e[0])))
        counts: dict[str, int] = {}
        out: list[HazardEvent] = []
        for kind, start, end, wi, mi, fi in events:
            counts[kind] = counts.get(kind, 0) + 1
            out.append(HazardEvent(f"{kind}-{counts[kind]}", kind, start, end, wi, mi, fi))
        return out

    def _derive_intrusions(self) -> list[tuple[str, float, float, int | None, int | None, None]]:
        """Intervals in which a worker stands inside an active zone, sampled finely."""
        if not self.zones or self.num_workers == 0:
            return []
        times = np.arange(0.0, self.spec.duration_s, INTRUSION_SAMPLE_S)
        positions = np.stack([self.workers_at(float(t)).xy for t in times])  # (T, N, 2)
        out: list[tuple[str, float, float, int | None, int | None, None]] = []
        for mi, zone in enumerate(self.zones):
            starts, ends = self._work[mi]
            active = np.zeros(len(times), dtype=bool)
            for s, e in zip(starts, ends, strict=True):
                active |= (times >= s) & (times < e)
            inside = points_in_polygon(positions, zone) & active[:, None]  # (T, N)
            for wi in range(self.num_workers):
                col = inside[:, wi]
                if not col.any():
                    continue
                edges = np.diff(np.concatenate([[0], col.astype(np.int8), [0]]))
                for s_idx, e_idx in zip(
                    np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True
                ):
                    start, end = float(times[s_idx]), float(times[e_idx - 1] + INTRUSION_SAMPLE_S)
                    if end - start >= 1.0:
                        out.append(("zone_intrusion", start, end, wi, mi, None))
        return out
