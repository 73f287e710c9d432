"""Workers and fires as the camera sees them: projected figures, kit colours, and their drawing.

A worker is a camera-facing figure (legs, torso, vest, arms, head, helmet) whose level of detail
follows its height on screen; :class:`WorkerGeometry` projects all workers of a view at once and
also gives the boxes the ground truth is built from. A fire is flickering flames under a plume
of smoke puffs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.geometry import CameraView
from edge.sim.raster import NEAR_M, ONE, SHIFT, ellipse_poly, fixed_point, quad, rect
from edge.sim.shading import Lighting, bgr
from edge.sim.spec import SiteSpec
from edge.sim.world import HEAD_RADIUS_M, TORSO_BOTTOM_M, TORSO_TOP_M, WorkerState

# indices of a worker's kit colours (see PARTS)
VEST, SHIRT, PANTS, HELMET, HAIR, SKIN, STRIPE, SHADOW = range(8)
PARTS = ("vest", "shirt", "pants", "helmet", "hair", "skin", "stripe", "shadow")


@dataclass
class WorkerGeometry:
    """Projected worker figures for one view (arrays over all workers)."""

    foot_uv: np.ndarray
    top_v: np.ndarray
    scale: np.ndarray  # px per metre horizontally
    depth: np.ndarray
    in_front: np.ndarray
    onscreen: np.ndarray
    drawable: np.ndarray
    person_box: np.ndarray
    head_box: np.ndarray
    torso_box: np.ndarray

    @staticmethod
    def compute(
        cv: CameraView, xy: np.ndarray, heights: np.ndarray, crouch: np.ndarray
    ) -> WorkerGeometry:
        """Project workers standing at ``xy`` (N, 2) with ``heights`` (N,) into ``cv``."""
        n = len(xy)
        hm = heights * np.where(crouch, 0.93, 1.0)
        pts = np.concatenate(
            [
                np.stack([xy[:, 0], xy[:, 1], np.zeros(n)], -1),
                np.stack([xy[:, 0], xy[:, 1], hm], -1),
            ]
        )
        uv, z = cv.project(pts)
        foot, top = uv[:n], uv[n:]
        depth = z[:n]
        in_front = (depth > NEAR_M) & (z[n:] > NEAR_M)
        scale = cv.focal / np.maximum(depth, NEAR_M)
        sv = (foot[:, 1] - top[:, 1]) / hm
        # arms reach 0.31 m (+ the hand's swing) from the body axis; a crouching worker leans
        # 0.12 m to the right (see draw_worker)
        half = 0.34 * scale
        lean = np.where(crouch, 0.12 * scale, 0.0)
        person = np.stack([foot[:, 0] - half, top[:, 1], foot[:, 0] + half + lean, foot[:, 1]], -1)
        k = hm / 1.75
        head_c = foot[:, 1] - (hm - HEAD_RADIUS_M) * sv
        hr = HEAD_RADIUS_M * 1.35 * scale
        head_x = foot[:, 0] + 1.3 * lean  # the head leans furthest
        head = np.stack(
            [head_x - hr, head_c - hr, head_x + hr, head_c + 1.0 * HEAD_RADIUS_M * sv], -1
        )
        torso = np.stack(
            [
                foot[:, 0] - 0.25 * scale,
                foot[:, 1] - TORSO_TOP_M * k * sv,
                foot[:, 0] + 0.25 * scale + lean,
                foot[:, 1] - TORSO_BOTTOM_M * k * sv,
            ],
            -1,
        )
        margin = person[:, 2] - person[:, 0]
        onscreen = (
            (person[:, 2] + margin >= 0)
            & (person[:, 0] - margin <= cv.width)
            & (person[:, 3] >= 0)
            & (person[:, 1] <= cv.height)
        )
        drawable = in_front & onscreen & ((foot[:, 1] - top[:, 1]) >= 0.6)
        return WorkerGeometry(
            foot, top[:, 1], scale, depth, in_front, onscreen, drawable, person, head, torso
        )


def worker_palette(spec: SiteSpec, light: Lighting) -> np.ndarray:
    """Lit colours (N, parts, 3) of every worker's kit, before distance haze."""
    lit = (light.ambient + (1 - light.ambient) * 0.7) * light.exposure
    rows = []
    for w in spec.workers:
        parts = [
            w.vest_color,
            w.shirt_color,
            w.pants_color,
            w.helmet_color,
            w.hair_color,
            w.skin_color,
        ]
        colors = [bgr(c) * lit for c in parts]
        colors.append(np.array([200.0, 200, 200]) * light.exposure)
        colors.append(bgr(spec.ground.color) * 0.45 * light.exposure)
        rows.append(colors)
    return np.clip(np.array(rows, dtype=np.float64).reshape(-1, len(PARTS), 3), 0, 255)


def worker_colors(
    palette: np.ndarray, idx: np.ndarray, depth: np.ndarray, light: Lighting
) -> list[list[list[float]]]:
    """Hazed kit colours per worker, indexed by the part constants (VEST, SHIRT, …)."""
    a = np.asarray(light.haze_factor(depth))[:, None, None]
    return (palette[idx] * (1 - a) + light.sky_horizon * a).tolist()


def draw_worker(
    img: np.ndarray,
    geo: WorkerGeometry,
    workers: WorkerState,
    i: int,
    colors: list[list[float]],
    height_m: float,
) -> None:
    """Draw worker ``i``, ``height_m`` tall, with as much detail as its size on screen allows."""
    u, vf, vt, s = (
        float(geo.foot_uv[i, 0]),
        float(geo.foot_uv[i, 1]),
        float(geo.top_v[i]),
        float(geo.scale[i]),
    )
    height_px = vf - vt
    body = colors[VEST] if workers.vest[i] else colors[SHIRT]
    hh, hw = img.shape[:2]
    if height_px < 3.0:
        x0, x1 = int(u - 0.25 * s), int(u + 0.25 * s) + 1
        y0, y1 = int(vt), int(vf) + 1
        if x1 > 0 and y1 > 0 and x0 < hw and y0 < hh:
            img[max(y0, 0) : y1, max(x0, 0) : x1] = body
        return
    hm = height_m
    sv = height_px / hm  # px per metre vertically

    def y(m: float) -> float:
        return vf - m * sv

    if height_px < 9.0:
        half = max(0.5, 0.2 * s)
        rect(img, u - half, y(TORSO_BOTTOM_M * hm / 1.75), u + half, vf, colors[PANTS])
        rect(
            img,
            u - half - 0.3,
            y(TORSO_TOP_M * hm / 1.75),
            u + half + 0.3,
            y(TORSO_BOTTOM_M * hm / 1.75),
            body,
        )
        head = colors[HELMET] if workers.helmet[i] else colors[HAIR]
        rect(img, u - half * 0.7, vt, u + half * 0.7, y(hm - 2 * HEAD_RADIUS_M), head)
        return
    k = hm / 1.75
    lean = 0.12 * s if workers.crouch[i] else 0.0
    swing = 0.12 * math.sin(float(workers.phase[i])) * s if workers.moving[i] else 0.0
    # shadow
    cv2.ellipse(
        img,
        (int(u * ONE), int(vf * ONE)),
        (int(0.45 * s * ONE), int(0.12 * s * ONE)),
        0,
        0,
        360,
        colors[SHADOW],
        -1,
        shift=SHIFT,
    )
    # legs
    hip = y(TORSO_BOTTOM_M * k)
    for side in (-1, 1):
        x = u + side * 0.1 * s
        foot_x = x + side * swing
        quad(
            img,
            [
                (x - 0.07 * s, hip),
                (x + 0.07 * s, hip),
                (foot_x + 0.07 * s, vf),
                (foot_x - 0.07 * s, vf),
            ],
            colors[PANTS],
        )
    # torso + arms
    top = y(TORSO_TOP_M * k)
    quad(
        img,
        [
            (u - 0.22 * s + lean, top),
            (u + 0.22 * s + lean, top),
            (u + 0.21 * s, hip),
            (u - 0.21 * s, hip),
        ],
        colors[SHIRT],
    )
    for side in (-1, 1):
        sx = u + side * 0.26 * s + lean
        quad(
            img,
            [
                (sx - 0.05 * s, top + 1),
                (sx + 0.05 * s, top + 1),
                (sx + 0.05 * s - side * swing * 0.5, y(0.85 * k)),
                (sx - 0.05 * s - side * swing * 0.5, y(0.85 * k)),
            ],
            colors[SHIRT],
        )
    if workers.vest[i]:
        quad(
            img,
            [
                (u - 0.23 * s + lean, top + 0.03 * sv),
                (u + 0.23 * s + lean, top + 0.03 * sv),
                (u + 0.22 * s, y(0.95 * k)),
                (u - 0.22 * s, y(0.95 * k)),
            ],
            colors[VEST],
        )
        if height_px > 40:
            for band in (1.05, 1.22):
                yb = y(band * k)
                quad(
                    img,
                    [
                        (u - 0.22 * s + lean * 0.5, yb),
                        (u + 0.22 * s + lean * 0.5, yb),
                        (u + 0.22 * s + lean * 0.5, yb + 0.035 * sv),
                        (u - 0.22 * s + lean * 0.5, yb + 0.035 * sv),
                    ],
                    colors[STRIPE],
                )
    # head
    hc_y = y(hm - HEAD_RADIUS_M)
    hx = u + lean * 1.3
    r = HEAD_RADIUS_M * s
    cv2.circle(img, (int(hx * ONE), int(hc_y * ONE)), int(r * ONE), colors[SKIN], -1, shift=SHIFT)
    if workers.helmet[i]:
        cv2.ellipse(
            img,
            (int(hx * ONE), int((hc_y - 0.02 * sv) * ONE)),
            (int(1.3 * r * ONE), int(1.05 * r * ONE)),
            0,
            180,
            360,
            colors[HELMET],
            -1,
            shift=SHIFT,
        )
        cv2.ellipse(
            img,
            (int(hx * ONE), int((hc_y - 0.02 * sv) * ONE)),
            (int(1.55 * r * ONE), int(0.22 * r * ONE)),
            0,
            0,
            360,
            colors[HELMET],
            -1,
            shift=SHIFT,
        )
    else:
        cv2.ellipse(
            img,
            (int(hx * ONE), int((hc_y - 0.1 * r) * ONE)),
            (int(1.02 * r * ONE), int(0.95 * r * ONE)),
            0,
            180,
            360,
            colors[HAIR],
            -1,
            shift=SHIFT,
        )


def fire_polys(
    cv: CameraView, t: float, fire
) -> tuple[float, list[tuple[np.ndarray, tuple[float, float, float]]]]:
    """Depth of a fire's base and its polygons (smoke puffs, then flames), in drawing order."""
    base = np.array([fire.xy[0], fire.xy[1], 0.0])
    uv, z = cv.project(base)
    polys: list[tuple[np.ndarray, tuple[float, float, float]]] = []
    if z > NEAR_M:
        s = cv.focal / z
        up_uv, _ = cv.project(base + np.array([0, 0, 1.0]))
        up = float(uv[1] - up_uv[1])  # pixels per metre upwards
        size = fire.size_m * fire.intensity
        # smoke: puffs rising and widening, drifting with a slow wind
        for k in range(6):
            hgt = fire.plume_m * (0.25 + 0.75 * k / 5)
            rad = (0.35 + 0.25 * k) * size
            drift = 0.4 * k * math.sin(0.3 * t + k)
            cx = uv[0] + drift * s
            cy = uv[1] - hgt * up
            shade = 80 + 12 * k + 10 * math.sin(2.0 * t + k)
            polys.append((ellipse_poly(cx, cy, rad * s, rad * s * 0.8), (shade, shade, shade + 4)))
        # flames: flickering triangles
        for k in range(3):
            fw = size * (0.5 - 0.12 * k)
            fh = size * (1.1 + 0.3 * math.sin(9 * t + 2 * k)) * (1 - 0.2 * k)
            off = (k - 1) * size * 0.25
            tri = np.array(
                [
                    [uv[0] + (off - fw / 2) * s, uv[1]],
                    [uv[0] + (off + fw / 2) * s, uv[1]],
                    [uv[0] + off * s, uv[1] - fh * up],
                ]
            )
            color = ((20, 120, 250), (30, 180, 255), (120, 230, 255))[k]
            polys.append((fixed_point(tri), color))
    return float(z), polys
