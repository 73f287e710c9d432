"""The site's solid things as boxes: structures, machine rigs, and the faces a camera sees.

Structures are one box each; machines are rigs of boxes posed at a site time (an excavator's
tracks, house, boom and arm; a crane's mast, jib and hook; a truck's cab and bed). A box is eight
world-space corners; :func:`face_lists` picks and colours the faces the fixed camera sees, far to
near, and scaffolds are drawn as a see-through grid (:func:`scaffold_payload`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.geometry import CameraView
from edge.sim.raster import fixed_point
from edge.sim.shading import Lighting, bgr
from edge.sim.spec import MachineSpec, SiteSpec
from edge.sim.world import Site

# box faces as corner indices (corners: bottom 0-3, top 4-7, counter-clockwise seen from above)
FACES = np.array([[0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7], [4, 5, 6, 7]])

_BOX_LOCAL = np.array(
    [
        [-0.5, -0.5, 0],
        [0.5, -0.5, 0],
        [0.5, 0.5, 0],
        [-0.5, 0.5, 0],
        [-0.5, -0.5, 1],
        [0.5, -0.5, 1],
        [0.5, 0.5, 1],
        [-0.5, 0.5, 1],
    ]
)

FaceList = list[tuple[np.ndarray, tuple[float, float, float]]]


def rotation(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Local→world rotation (columns: local x, y, z): local +y along compass yaw, pitched up."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy, cp, sp = math.cos(y), math.sin(y), math.cos(p), math.sin(p)
    # right = (cy, -sy, 0); fwd = (sy cp, cy cp, sp); up = right × fwd
    return np.array([[cy, sy * cp, -sy * sp], [-sy, cy * cp, -cy * sp], [0.0, sp, cp]])


def box_corners(base: np.ndarray, size: tuple[float, float, float], rot: np.ndarray) -> np.ndarray:
    """Corners (8, 3) of a box of ``size`` (w, d, h) standing on ``base`` (bottom centre)."""
    return base + (_BOX_LOCAL * size) @ rot.T


@dataclass
class Box:
    """One box of the scene, in world coordinates."""

    corners: np.ndarray  # (8, 3)
    color: np.ndarray  # BGR float
    kind: str  # building / scaffold / container / pile / machine
    owner: int = -1
    solid: bool = True  # blocks the line of sight (thin booms and cables do not)


def face_normals(corners: np.ndarray) -> np.ndarray:
    """Outward unit normals (B, 5, 3) of the side and top faces of boxes (B, 8, 3)."""
    ex = corners[:, 1] - corners[:, 0]
    ey = corners[:, 3] - corners[:, 0]
    ez = corners[:, 4] - corners[:, 0]
    ex = ex / np.linalg.norm(ex, axis=1, keepdims=True)
    ey = ey / np.linalg.norm(ey, axis=1, keepdims=True)
    ez = ez / np.linalg.norm(ez, axis=1, keepdims=True)
    return np.stack([-ey, ex, ey, -ex, ez], axis=1)


def static_boxes(spec: SiteSpec) -> list[Box]:
    """One box per structure of the site."""
    boxes = []
    for s in spec.structures:
        rot = rotation(s.yaw_deg)
        base = np.array([s.center[0], s.center[1], 0.0])
        corners = box_corners(base, (s.size_m[0], s.size_m[1], s.size_m[2]), rot)
        boxes.append(Box(corners, bgr(s.color), s.kind))
    return boxes


def face_lists(
    boxes: list[Box], cam_pos: tuple[float, float, float], light: Lighting
) -> list[FaceList]:
    """Per box: (corner indices, colour) of the faces the camera sees, far to near."""
    if not boxes:
        return []
    corners = np.stack([b.corners for b in boxes])  # (B, 8, 3)
    normals = face_normals(corners)  # (B, 5, 3)
    base = np.stack([b.color for b in boxes])  # (B, 3)
    centers = corners[:, FACES].mean(axis=2)  # (B, 5, 3)
    rel = centers - np.asarray(cam_pos)
    dist = np.sqrt((rel * rel).sum(axis=2))
    facing = (rel * normals).sum(axis=2) < 0
    lit = light.ambient + (1.0 - light.ambient) * np.maximum(0.0, normals @ light.sun) * 1.25
    haze = (light.haze * (1.0 - np.exp(-dist / 250.0)))[..., None]
    colors = np.clip(base[:, None, :] * (lit * light.exposure)[..., None], 0, 255)
    colors = (colors * (1 - haze) + light.sky_horizon * haze).tolist()
    order = np.argsort(-np.where(facing, dist, -1.0), axis=1).tolist()
    facing_l = facing.tolist()
    out = []
    for b in range(len(boxes)):
        out.append([(FACES[f], tuple(colors[b][f])) for f in order[b] if facing_l[b][f]])
    return out


def machine_sphere(m: MachineSpec) -> tuple[np.ndarray, float]:
    """A sphere that contains the machine in every pose it can take."""
    pts = np.array([m.position] + list(m.route), dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    reach = {"excavator": 11.0, "crane": 33.0, "truck": 5.0}[m.kind]
    height = {"excavator": 8.0, "crane": 31.0, "truck": 3.0}[m.kind]
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, height / 2])
    radius = float(np.linalg.norm(hi - lo) / 2 + math.hypot(reach, height / 2))
    return centre, radius


def sphere_in_view(cv: CameraView, centre: np.ndarray, radius: float) -> bool:
    """Conservative frustum test for a bounding sphere."""
    x, y, z = cv.to_camera(centre)
    if z < -radius:
        return False
    half_w = math.atan((cv.width / 2) / cv.focal)
    half_h = math.atan((cv.height / 2) / cv.focal)
    # distance from the sphere centre to each side plane of the frustum
    cw, sw, ch, sh = math.cos(half_w), math.sin(half_w), math.cos(half_h), math.sin(half_h)
    return (
        x * cw - z * sw <= radius
        and -x * cw - z * sw <= radius
        and y * ch - z * sh <= radius
        and -y * ch - z * sh <= radius
    )


def machine_boxes(
    site: Site,
    t: float,
    bounds: list[tuple[np.ndarray, float]],
    cv: CameraView | None = None,
) -> list[Box]:
    """Boxes of every machine at ``t``; with a view, only machines that can appear in it.

    ``bounds`` holds each machine's :func:`machine_sphere`.
    """
    out: list[Box] = []
    for mi, m in enumerate(site.spec.machines):
        if cv is not None:
            centre, radius = bounds[mi]
            if not sphere_in_view(cv, centre, radius):
                continue
        state = site.machine_at(mi, t)
        color = bgr(m.color)
        dark = np.array([45.0, 45.0, 50.0])
        base = np.array([state.xy[0], state.xy[1], 0.0])
        rot = rotation(state.yaw_deg)

        def add(
            b: np.ndarray, size: tuple[float, float, float], r: np.ndarray, c: np.ndarray
        ) -> None:
            solid = min(size) >= 1.0
            out.append(Box(box_corners(b, size, r), c, "machine", mi, solid))  # noqa: B023

        if m.kind == "excavator":
            add(base, (3.2, 4.6, 0.9), rot, dark)
            upper = rotation(state.yaw_deg + state.slew_deg)
            add(base + np.array([0, 0, 0.9]), (2.9, 3.6, 1.5), upper, color)
            fwd = upper[:, 1]
            boom_pitch = 25 + 25 * state.boom
            boom_rot = rotation(state.yaw_deg + state.slew_deg, boom_pitch)
            boom_base = base + np.array([0, 0, 1.9]) + fwd * 1.4
            # boxes stand on their bottom centre: offset by half their length to hinge them
            add(boom_base + boom_rot[:, 1] * 2.75, (0.5, 5.5, 0.5), boom_rot, color)
            tip = boom_base + boom_rot[:, 1] * 5.5
            arm_rot = rotation(state.yaw_deg + state.slew_deg, -70 + 20 * state.boom)
            add(tip + arm_rot[:, 1] * 1.5, (0.4, 3.0, 0.4), arm_rot, color)
        elif m.kind == "crane":
            add(base, (2.0, 2.0, 28.0), rot, color)
            jib = rotation(state.yaw_deg + state.slew_deg)
            top = base + np.array([0, 0, 28.0])
            add(top, (1.4, 2.5, 2.0), jib, color)
            add(top + jib[:, 1] * 15.0, (1.2, 28.0, 1.2), jib, color)
            add(top - jib[:, 1] * 6.0, (1.2, 10.0, 1.2), jib, color)
            add(
                top - jib[:, 1] * 9.0 - np.array([0, 0, 2.5]),
                (2.2, 3.0, 2.4),
                jib,
                np.array([140.0, 140, 140]),
            )
            hook_r = 8.0 + 18.0 * state.boom
            hook = top + jib[:, 1] * hook_r
            load_z = 3.0 + 20.0 * (1 - state.boom)
            add(np.array([hook[0], hook[1], load_z]), (0.08, 0.08, 28.0 - load_z), jib, dark)
            add(
                np.array([hook[0], hook[1], load_z - 1.2]),
                (2.5, 1.5, 1.2),
                jib,
                np.array([60.0, 110, 160]),
            )
        else:  # truck
            add(base + rot[:, 1] * 2.6, (2.5, 2.2, 2.9), rot, color)
            add(base - rot[:, 1] * 1.2, (2.5, 5.0, 1.2), rot, dark)
            add(
                base - rot[:, 1] * 1.2 + np.array([0, 0, 1.2]),
                (2.5, 5.0, 1.4),
                rot,
                color * 0.85,
            )
    return out


def scaffold_payload(cv: CameraView, box: Box, size: float, faces: list) -> tuple:
    """A scaffold is see-through: a 2 m grid of poles and ledgers, or an outline when small."""
    color = faces[0][1] if faces else (150.0, 150.0, 150.0)
    if size < 12:
        return ("lines", [p for p, _ in faces], color, True)
    c = box.corners
    n_u = max(1, int(np.linalg.norm(c[1] - c[0]) / 2.0))
    n_v = max(1, int(np.linalg.norm(c[4] - c[0]) / 2.0))
    fu = np.linspace(0.0, 1.0, n_u + 1)[:, None]
    fv = np.linspace(0.0, 1.0, n_v + 1)[:, None]
    segs = []
    for lo, hi, lo2, hi2 in ((0, 1, 4, 5), (3, 2, 7, 6)):  # the two long faces
        segs.append(np.stack([c[lo] + (c[hi] - c[lo]) * fu, c[lo2] + (c[hi2] - c[lo2]) * fu], 1))
        segs.append(np.stack([c[lo] + (c[lo2] - c[lo]) * fv, c[hi] + (c[hi2] - c[hi]) * fv], 1))
    uv, _ = cv.project(np.concatenate(segs))
    return ("lines", list(fixed_point(uv)), color, False)
