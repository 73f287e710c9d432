"""Procedural construction sites from a seed.

Every random choice comes from one ``numpy.random.Generator`` seeded with the site seed, so the
same seed gives the same site on every machine. Seeds ≥ 1000 are the held-out range: never train
on them (see ``HELD_OUT_SEED_MIN``).
"""

from __future__ import annotations

import math

import numpy as np

from edge.geometry import points_in_polygon
from edge.sim.spec import (
    AttributeEventSpec,
    CameraMountSpec,
    ExcursionSpec,
    FireSpec,
    GroundSpec,
    LightingSpec,
    MachineSpec,
    SiteSpec,
    StructureSpec,
    WaypointSpec,
    WorkerSpec,
)

HELD_OUT_SEED_MIN = 1000

#: Events per hour of site time, per hazard type (tuned so a 120 s episode sees ~3 hazards).
HAZARD_RATES_PER_H = {"no_helmet": 40.0, "no_vest": 30.0, "zone_intrusion": 20.0, "fire_smoke": 8.0}

HELMET_COLORS = [[245, 245, 240], [250, 210, 30], [255, 130, 20], [30, 80, 200], [220, 40, 40]]
VEST_COLORS = [[210, 255, 40], [255, 120, 20], [230, 250, 60]]
SHIRT_COLORS = [
    [60, 80, 140],
    [90, 90, 95],
    [230, 230, 225],
    [30, 30, 35],
    [150, 40, 40],
    [60, 110, 60],
    [120, 90, 60],
    [200, 200, 90],
    [70, 130, 180],
]
PANTS_COLORS = [[40, 45, 70], [30, 30, 30], [150, 130, 90], [90, 90, 90], [60, 60, 110]]
HAIR_COLORS = [[35, 25, 20], [70, 50, 30], [20, 20, 20], [120, 90, 50], [160, 150, 140]]
SKIN_COLORS = [[235, 200, 170], [200, 160, 130], [160, 115, 85], [110, 75, 55]]
MACHINE_COLORS = [[240, 180, 20], [245, 140, 20], [230, 200, 40]]


def _circle_polygon(center: np.ndarray, radius: float, sides: int = 12) -> list[list[float]]:
    angles = np.linspace(0, 2 * math.pi, sides, endpoint=False)
    return [
        [
            round(float(center[0] + radius * math.cos(a)), 2),
            round(float(center[1] + radius * math.sin(a)), 2),
        ]
        for a in angles
    ]


def _rect_polygon(center: np.ndarray, w: float, d: float, yaw_deg: float) -> list[list[float]]:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    out = []
    for dx, dy in ((-w / 2, -d / 2), (w / 2, -d / 2), (w / 2, d / 2), (-w / 2, d / 2)):
        # yaw is a compass rotation (clockwise): x' = x cos + y sin, y' = -x sin + y cos
        out.append(
            [
                round(float(center[0] + dx * c + dy * s), 2),
                round(float(center[1] - dx * s + dy * c), 2),
            ]
        )
    return out


def _schedule(rng: np.random.Generator, duration_s: float) -> list[list[float]]:
    """Alternating work / idle periods covering the horizon."""
    out, t = [], 0.0
    working = rng.random() < 0.65
    if not working:
        t += float(rng.uniform(0, 60))
    while t < duration_s:
        length = float(rng.uniform(90, 360))
        out.append([round(t, 2), round(min(duration_s, t + length), 2)])
        t += length + float(rng.uniform(20, 120))
    return out


def _choice(rng: np.random.Generator, items: list) -> list:
    return list(items[int(rng.integers(len(items)))])


def generate_site(seed: int, duration_s: float = 600.0, num_workers: int | None = None) -> SiteSpec:
    """A random but plausible construction site, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    width = float(rng.uniform(80, 130))
    depth = float(rng.uniform(70, 110))
    site_poly = np.array([[0, 0], [width, 0], [width, depth], [0, depth]], dtype=np.float64)

    # camera pole just outside a corner or an edge midpoint, looking at the site centre
    corner = int(rng.integers(6))
    candidates = [
        (-4.0, -4.0),
        (width + 4, -4.0),
        (width + 4, depth + 4),
        (-4.0, depth + 4),
        (width / 2, -5.0),
        (-5.0, depth / 2),
    ]
    cam_xy = np.array(candidates[corner])
    centre = np.array([width / 2, depth / 2])
    to_centre = centre - cam_xy
    heading = math.degrees(math.atan2(to_centre[0], to_centre[1])) + float(rng.uniform(-10, 10))
    camera = CameraMountSpec(
        position=[round(float(cam_xy[0]), 2), round(float(cam_xy[1]), 2)],
        height_m=round(float(rng.uniform(10, 18)), 2),
        heading_deg=round(heading, 2),
    )

    occupied: list[np.ndarray] = []  # footprints workers keep out of
    grid = _OccupancyGrid(width, depth, cam_xy)

    def occupy(poly: np.ndarray) -> None:
        occupied.append(poly)
        grid.add(poly)

    def free(p: np.ndarray, margin: float = 1.0) -> bool:
        return grid.free(p[None], margin)

    def sample_free(margin: float = 1.0, tries: int = 200) -> np.ndarray:
        for _ in range(tries):
            p = rng.uniform([0, 0], [width, depth])
            if free(p, margin):
                return p
        return centre.copy()

    ground = GroundSpec(
        color=[int(v) for v in rng.integers([135, 110, 80], [170, 140, 105])],
        surround_color=[int(v) for v in rng.integers([80, 105, 60], [110, 135, 85])],
    )
    # a site road through the site, a concrete pad and an excavation pit
    y_road = float(rng.uniform(0.25, 0.75) * depth)
    ground.roads.append(
        [[-30.0, round(y_road, 2)], [round(width + 30, 2), round(y_road + rng.uniform(-8, 8), 2)]]
    )

    structures: list[StructureSpec] = []
    for _ in range(int(rng.integers(1, 3))):
        for _try in range(50):
            w, d = float(rng.uniform(14, 28)), float(rng.uniform(10, 18))
            c = rng.uniform([w / 2 + 3, d / 2 + 3], [width - w / 2 - 3, depth - d / 2 - 3])
            poly = np.array(_rect_polygon(c, w + 4, d + 4, 0.0))
            if (
                free(c, 0)
                and abs(c[1] - y_road) > d / 2 + 5
                and all(not points_in_polygon(poly, o).any() for o in occupied)
            ):
                h = float(rng.uniform(6, 18))
                shade = int(rng.integers(150, 200))
                structures.append(
                    StructureSpec(
                        kind="building",
                        center=_r(c),
                        size_m=[round(w, 2), round(d, 2), round(h, 2)],
                        color=[shade, shade, shade - 5],
                    )
                )
                occupy(np.array(_rect_polygon(c, w, d, 0.0)))
                # scaffold along the face looking towards the camera
                face_y = c[1] - d / 2 - 0.9 if cam_xy[1] < c[1] else c[1] + d / 2 + 0.9
                sc = np.array([c[0], face_y])
                structures.append(
                    StructureSpec(
                        kind="scaffold",
                        center=_r(sc),
                        size_m=[round(w, 2), 1.5, round(h + 1.5, 2)],
                        color=[150, 150, 160],
                    )
                )
                occupy(np.array(_rect_polygon(sc, w, 1.5, 0.0)))
                ground.pads.append(_rect_polygon(c, w + 6, d + 6, 0.0))
                break
    for _ in range(int(rng.integers(2, 6))):
        kind = "container" if rng.random() < 0.5 else "pile"
        size = (
            [6.0, 2.5, 2.6]
            if kind == "container"
            else [float(rng.uniform(2, 5)), float(rng.uniform(2, 4)), float(rng.uniform(0.6, 1.8))]
        )
        c = sample_free(margin=size[0] / 2 + 1.5)
        yaw = float(rng.uniform(0, 180))
        color = (
            _choice(rng, [[60, 110, 160], [170, 70, 50], [80, 120, 80]])
            if kind == "container"
            else _choice(rng, [[120, 105, 90], [140, 90, 60], [90, 90, 95]])
        )
        structures.append(
            StructureSpec(
                kind=kind,
                center=_r(c),
                size_m=[round(v, 2) for v in size],
                yaw_deg=round(yaw, 1),
                color=color,
            )
        )
        occupy(np.array(_rect_polygon(c, size[0], size[1], yaw)))

    machines: list[MachineSpec] = []
    kinds = ["excavator"] + [k for k in ("crane", "truck") if rng.random() < 0.7]
    for mi, kind in enumerate(kinds):
        color = _choice(rng, MACHINE_COLORS)
        for _try in range(100):
            if kind == "excavator":
                c = sample_free(margin=9.0)
                zone = _circle_polygon(c, float(rng.uniform(7, 9)))
                route: list[list[float]] = []
            elif kind == "crane":
                c = sample_free(margin=7.0)
                zone = _rect_polygon(
                    c + rng.uniform(-3, 3, 2), 14.0, 14.0, float(rng.uniform(0, 90))
                )
                route = []
            else:
                c = np.array([float(rng.uniform(10, width - 30)), y_road])
                end = c + np.array([float(rng.uniform(15, 25)), 0.0])
                route = [_r(c), _r(end)]
                zone = _rect_polygon((c + end) / 2, float(np.linalg.norm(end - c)) + 10, 7.0, 0.0)
            zone_arr = np.array(zone)
            if grid.polygon_free(zone_arr) and not points_in_polygon(cam_xy[None], zone_arr)[0]:
                break
        if kind == "excavator":
            ground.pits.append(_circle_polygon(c, 5.0, 10))
        machines.append(
            MachineSpec(
                id=f"{kind}-{mi}",
                kind=kind,
                position=_r(c),
                yaw_deg=90.0 if kind == "truck" else round(float(rng.uniform(0, 360)), 1),
                color=color,
                zone=zone,
                working=_schedule(rng, duration_s),
                route=route,
            )
        )
        occupy(zone_arr)

    # work spots: crews cluster near structures and machines
    spots = [np.array(s.center) + rng.normal(0, 6, 2) for s in structures if s.kind == "building"]
    spots += [np.array(m.position) + rng.normal(0, 12, 2) for m in machines]
    spots += [sample_free() for _ in range(3)]
    num = int(num_workers if num_workers is not None else rng.integers(20, 41))
    workers: list[WorkerSpec] = []
    for wi in range(num):
        home = spots[int(rng.integers(len(spots)))]
        path: list[WaypointSpec] = []
        points: list[np.ndarray] = []
        for _ in range(int(rng.integers(2, 6))):
            for _try in range(60):
                p = home + rng.normal(0, 10, 2) if rng.random() < 0.8 else sample_free()
                if free(p) and (not points or grid.segment_free(points[-1], p)):
                    break
            else:
                continue
            points.append(p)
        # the path is a cycle: drop points until the closing segment is free too
        while len(points) > 1 and not grid.segment_free(points[-1], points[0]):
            points.pop()
        if not points:
            points = [sample_free()]
        for p in points:
            path.append(
                WaypointSpec(
                    xy=_r(p),
                    dwell_s=round(float(rng.uniform(5, 90)), 1),
                    activity="working" if rng.random() < 0.7 else "standing",
                )
            )
        workers.append(
            WorkerSpec(
                id=f"w{wi:02d}",
                height_m=round(float(np.clip(rng.normal(1.75, 0.07), 1.55, 1.95)), 2),
                helmet_color=_choice(rng, HELMET_COLORS),
                vest_color=_choice(rng, VEST_COLORS),
                shirt_color=_choice(rng, SHIRT_COLORS),
                pants_color=_choice(rng, PANTS_COLORS),
                hair_color=_choice(rng, HAIR_COLORS),
                skin_color=_choice(rng, SKIN_COLORS),
                speed_mps=round(float(rng.uniform(0.9, 1.5)), 2),
                phase_s=round(float(rng.uniform(0, 300)), 1),
                path=path,
            )
        )

    attribute_events: list[AttributeEventSpec] = []
    for kind in ("no_helmet", "no_vest"):
        for start in _poisson_times(rng, HAZARD_RATES_PER_H[kind], duration_s):
            wid = workers[int(rng.integers(num))].id
            end = min(duration_s + 60.0, start + float(rng.uniform(25, 150)))
            attribute_events.append(
                AttributeEventSpec(
                    type=kind, worker=wid, start_s=round(start, 2), end_s=round(end, 2)
                )
            )

    # zone intrusions: a worker walks into a working machine's zone and stays a while
    busy: dict[int, float] = {}
    for start in _poisson_times(rng, HAZARD_RATES_PER_H["zone_intrusion"], duration_s):
        if not machines:
            break
        mi = int(rng.integers(len(machines)))
        m = machines[mi]
        window = next(((s, e) for s, e in m.working if s <= start + 15 and start + 45 < e), None)
        if window is None:
            continue
        wi = int(rng.integers(num))
        if busy.get(wi, -1.0) > start:
            continue
        zone_xy = np.array(m.zone)
        centre_z = zone_xy.mean(axis=0)
        target = centre_z + (zone_xy[int(rng.integers(len(zone_xy)))] - centre_z) * float(
            rng.uniform(0.2, 0.6)
        )
        stay = float(rng.uniform(10, 45))
        workers[wi].excursions.append(
            ExcursionSpec(target=_r(target), leave_s=round(start, 2), stay_s=round(stay, 1))
        )
        busy[wi] = start + stay + 120.0

    fires: list[FireSpec] = []
    for start in _poisson_times(rng, HAZARD_RATES_PER_H["fire_smoke"], duration_s):
        p = sample_free(margin=2.0)
        end = min(duration_s + 60.0, start + float(rng.uniform(60, 300)))
        fires.append(
            FireSpec(
                position=_r(p),
                start_s=round(start, 2),
                end_s=round(end, 2),
                size_m=round(float(rng.uniform(0.8, 2.5)), 2),
            )
        )

    lighting = LightingSpec(
        sun_azimuth_deg=round(float(rng.uniform(0, 360)), 1),
        sun_elevation_deg=round(float(rng.uniform(15, 70)), 1),
        ambient=round(float(rng.uniform(0.4, 0.75)), 2),
        exposure=round(float(rng.uniform(0.8, 1.15)), 2),
        haze=round(float(rng.uniform(0.05, 0.35)), 2),
    )
    return SiteSpec(
        name=f"site-{seed}",
        seed=seed,
        size_m=[round(width, 2), round(depth, 2)],
        duration_s=duration_s,
        camera=camera,
        work_areas=[site_poly.tolist()],
        ground=ground,
        lighting=lighting,
        structures=structures,
        machines=machines,
        workers=workers,
        attribute_events=attribute_events,
        fires=fires,
    )


def _r(p: np.ndarray) -> list[float]:
    return [round(float(p[0]), 2), round(float(p[1]), 2)]


def _grow(poly: np.ndarray, margin: float) -> np.ndarray:
    """Scale a convex polygon about its centroid so its edges move out by about ``margin``."""
    c = poly.mean(axis=0)
    r = np.linalg.norm(poly - c, axis=1).mean()
    return c + (poly - c) * ((r + margin) / max(r, 1e-6))


class _OccupancyGrid:
    """Rasterised keep-out areas (0.25 m cells) so that free-space tests are lookups."""

    CELL_M = 0.25

    def __init__(self, width: float, depth: float, camera_xy: np.ndarray):
        self.width, self.depth = width, depth
        self.shape = (int(depth / self.CELL_M) + 1, int(width / self.CELL_M) + 1)
        self.mask = np.zeros(self.shape, dtype=np.uint8)
        self.camera_xy = camera_xy

    def add(self, poly: np.ndarray) -> None:
        import cv2

        pts = np.round(_grow(poly, 1.0) / self.CELL_M * 16).astype(np.int32)
        cv2.fillPoly(self.mask, [pts], 1, lineType=cv2.LINE_8, shift=4)

    def free(self, pts: np.ndarray, margin: float = 1.0) -> bool:
        x, y = pts[:, 0], pts[:, 1]
        inside = (
            (x >= margin) & (x <= self.width - margin) & (y >= margin) & (y <= self.depth - margin)
        )
        if not inside.all():
            return False
        if (np.hypot(x - self.camera_xy[0], y - self.camera_xy[1]) < 14.0).any():
            return False
        ix = np.clip((x / self.CELL_M).astype(int), 0, self.shape[1] - 1)
        iy = np.clip((y / self.CELL_M).astype(int), 0, self.shape[0] - 1)
        return not self.mask[iy, ix].any()

    def polygon_free(self, poly: np.ndarray) -> bool:
        """No keep-out cell lies under the polygon."""
        import cv2

        probe = np.zeros_like(self.mask)
        pts = np.round(np.asarray(poly) / self.CELL_M * 16).astype(np.int32)
        cv2.fillPoly(probe, [pts], 1, lineType=cv2.LINE_8, shift=4)
        return not (probe & self.mask).any()

    def segment_free(self, a: np.ndarray, b: np.ndarray) -> bool:
        n = max(2, int(math.dist(a, b) / 0.25))
        return self.free(a + (b - a) * np.linspace(0, 1, n)[:, None], margin=0.5)


def _poisson_times(rng: np.random.Generator, rate_per_h: float, duration_s: float) -> list[float]:
    out: list[float] = []
    t = 0.0
    while True:
        t += float(rng.exponential(3600.0 / rate_per_h))
        if t >= duration_s:
            return out
        out.append(t)
