"""Render any PTZ view of a site from its 3-D description, with per-frame ground truth.

Every frame is drawn from the scene through the pinhole model of :mod:`edge.geometry` at the
requested size — never cropped from a panorama, so a 30× view is as sharp as a 1× view:

* the ground is a texture in site metres, mapped into the image by the ground-plane homography
  (one ``cv2.warpPerspective``; a mip level is chosen so far ground does not alias); distance haze
  is baked into the texture, since the camera never leaves its pole;
* the sky above the horizon is a gradient by elevation;
* structures and machines are boxes (back faces culled, faces shaded by the sun), workers are
  camera-facing figures with legs, torso, vest, arms, head and helmet, fire is flame and a smoke
  plume; everything is drawn far to near (painter's algorithm) with a level of detail chosen by
  on-screen size;
* sensor noise comes from precomputed noise textures (a random window per frame) and blur from
  lens softness and camera motion.

Ground truth (:class:`FrameTruth`) is computed from the same projected geometry: boxes of the six
detector classes and, per active hazard, whether it is *resolvable* in this view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.geometry import REFERENCE_WIDTH_PX, CameraView, PTZPose
from edge.perception.detection import CLASSES
from edge.sim.world import HEAD_RADIUS_M, TORSO_BOTTOM_M, TORSO_TOP_M, Site

__all__ = ["CLASSES", "Frame", "FrameTruth", "HazardView", "Renderer", "Resolvability"]
CLS_PERSON, CLS_HEAD_HELMET, CLS_HEAD_BARE, CLS_VEST, CLS_MACHINE, CLS_FIRE = range(6)

NEAR_M = 0.5
# indices of a worker's kit colours (see Renderer._PARTS)
_VEST, _SHIRT, _PANTS, _HELMET, _HAIR, _SKIN, _STRIPE, _SHADOW = range(8)
TEXTURE_RES_M = 0.1
TEXTURE_MARGIN_M = 45.0
MIP_LEVELS = 6
_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_ONE = 1 << _SHIFT
SKY_ZENITH_BGR = np.array([200.0, 150.0, 95.0])
SKY_HORIZON_BGR = np.array([235.0, 215.0, 195.0])

# box faces as corner indices (corners: bottom 0-3, top 4-7, counter-clockwise seen from above)
_FACES = np.array([[0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7], [4, 5, 6, 7]])


@dataclass(frozen=True)
class Resolvability:
    """Pixel sizes, in a 1280×720 rendering of the view, at which a hazard can be verified."""

    head_px: float = 16.0
    torso_px: float = 16.0
    person_px: float = 16.0
    smoke_px: float = 32.0
    min_visible: float = 0.6


@dataclass
class HazardView:
    """One active hazard as seen in one frame."""

    id: str
    type: str
    in_view: bool
    resolvable: bool
    size_ref_px: float  # the relevant part's height in 1280×720 reference pixels
    bbox: tuple[float, float, float, float] | None


@dataclass
class FrameTruth:
    """Ground truth of one rendered frame (pixel boxes are in that frame's coordinates)."""

    t: float
    width: int
    height: int
    boxes: np.ndarray  # (K, 4) float32 x_min, y_min, x_max, y_max (not clipped)
    classes: np.ndarray  # (K,) int, index into CLASSES
    visible: np.ndarray  # (K,) fraction of the box inside the frame
    occluded: np.ndarray  # (K,) bool: hidden behind a structure or machine
    ref_height_px: np.ndarray  # (K,) box height in reference (1280-wide) pixels
    owner: np.ndarray  # (K,) index of the worker / machine / fire the box belongs to
    hazards: list[HazardView] = field(default_factory=list)


@dataclass
class Frame:
    """A rendered camera frame."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    t: float
    pose: PTZPose
    index: int


# ---------------------------------------------------------------------------------------------
def _rotation(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Local→world rotation (columns: local x, y, z): local +y along compass yaw, pitched up."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy, cp, sp = math.cos(y), math.sin(y), math.cos(p), math.sin(p)
    # right = (cy, -sy, 0); fwd = (sy cp, cy cp, sp); up = right × fwd
    return np.array([[cy, sy * cp, -sy * sp], [-sy, cy * cp, -cy * sp], [0.0, sp, cp]])


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


def box_corners(base: np.ndarray, size: tuple[float, float, float], rot: np.ndarray) -> np.ndarray:
    """Corners (8, 3) of a box of ``size`` (w, d, h) standing on ``base`` (bottom centre)."""
    return base + (_BOX_LOCAL * size) @ rot.T


@dataclass
class _Box:
    corners: np.ndarray  # (8, 3)
    color: np.ndarray  # BGR float
    kind: str  # building / scaffold / container / pile / machine
    owner: int = -1
    solid: bool = True  # blocks the line of sight (thin booms and cables do not)


class _Noise:
    """Precomputed sensor-noise textures; a frame takes a random window."""

    SIZE = (800, 1400)

    def __init__(self) -> None:
        rng = np.random.default_rng(12345)
        base = rng.normal(0.0, 1.0, (*self.SIZE, 3)).astype(np.float32)
        self.levels = []
        for sigma in (2.0, 4.0, 7.0):
            n = base * sigma
            self.levels.append(
                (np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8))
            )


_NOISE: _Noise | None = None


def _noise() -> _Noise:
    global _NOISE
    if _NOISE is None:
        _NOISE = _Noise()
    return _NOISE


class Renderer:
    """Draws views of one site. Build once per site (the ground texture takes ~0.1 s)."""

    def __init__(self, site: Site, resolvability: Resolvability | None = None):
        self.site = site
        self.spec = site.spec
        self.res = resolvability or Resolvability()
        cam = self.spec.camera
        self.cam_pos = (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))
        self.heading = float(cam.heading_deg)
        self.fov_1x = float(cam.limits.fov_h_1x_deg)
        light = self.spec.lighting
        self.sun = np.array(
            [
                math.sin(math.radians(light.sun_azimuth_deg))
                * math.cos(math.radians(light.sun_elevation_deg)),
                math.cos(math.radians(light.sun_azimuth_deg))
                * math.cos(math.radians(light.sun_elevation_deg)),
                math.sin(math.radians(light.sun_elevation_deg)),
            ]
        )
        self.ambient = light.ambient
        self.exposure = light.exposure
        self.haze = light.haze
        seed = self.spec.seed if self.spec.seed is not None else 0
        rng = np.random.default_rng(seed + 7919)
        self.noise_level = int(rng.integers(3))
        self.focus_blur = float(rng.uniform(0.0, 0.8))
        self.sky_zenith = SKY_ZENITH_BGR * self.exposure
        self.sky_horizon = SKY_HORIZON_BGR * self.exposure
        self._build_texture()
        self._static = self._static_boxes()
        self._static_faces = self._face_lists(self._static)
        self._static_corners = (
            np.concatenate([b.corners for b in self._static]) if self._static else np.zeros((0, 3))
        )
        self._worker_lit = self._worker_palette()
        self._machine_bounds = [self._machine_sphere(m) for m in self.spec.machines]
        self._occluder_idx = np.array(
            [i for i, b in enumerate(self._static) if b.kind in ("building", "container")],
            dtype=int,
        )
        occluders = [self._static[i].corners for i in self._occluder_idx]
        self._static_occluders = _box_frames(
            np.stack(occluders) if occluders else np.zeros((0, 8, 3))
        )

    # ------------------------------------------------------------------ colours
    def _bgr(self, rgb: list[int]) -> np.ndarray:
        return np.array([rgb[2], rgb[1], rgb[0]], dtype=np.float64)

    def _shade(self, color: np.ndarray, normal: np.ndarray) -> np.ndarray:
        light = self.ambient + (1.0 - self.ambient) * max(0.0, float(normal @ self.sun)) * 1.25
        return np.clip(color * light * self.exposure, 0, 255)

    def _haze_factor(self, dist_m: float | np.ndarray) -> float | np.ndarray:
        return self.haze * (1.0 - np.exp(-np.asarray(dist_m) / 250.0))

    def _hazed(self, color: np.ndarray, dist_m: float) -> tuple[float, float, float]:
        a = float(self._haze_factor(dist_m))
        c = color * (1 - a) + self.sky_horizon * a
        return (float(c[0]), float(c[1]), float(c[2]))

    # ------------------------------------------------------------------ ground
    def _build_texture(self) -> None:
        spec = self.spec
        w_site, d_site = spec.size_m
        xs = [0.0, w_site, self.cam_pos[0]]
        ys = [0.0, d_site, self.cam_pos[1]]
        m = TEXTURE_MARGIN_M
        self.tex_x0, self.tex_y1 = min(xs) - m, max(ys) + m
        x1, y0 = max(xs) + m, min(ys) - m
        r = TEXTURE_RES_M
        width_px, height_px = int((x1 - self.tex_x0) / r), int((self.tex_y1 - y0) / r)
        seed = spec.seed if spec.seed is not None else 0
        rng = np.random.default_rng(seed + 31)

        def to_px(points: list[list[float]]) -> np.ndarray:
            p = np.asarray(points, dtype=np.float64)
            out = np.stack([(p[:, 0] - self.tex_x0) / r, (self.tex_y1 - p[:, 1]) / r], -1)
            return np.round(out * _ONE).astype(np.int32)

        surround = self._bgr(spec.ground.surround_color)
        earth = self._bgr(spec.ground.color)
        tex = np.empty((height_px, width_px, 3), dtype=np.float32)
        tex[:] = surround
        site_poly = to_px([[0, 0], [w_site, 0], [w_site, d_site], [0, d_site]])
        mask = np.zeros((height_px, width_px), dtype=np.uint8)
        cv2.fillPoly(mask, [site_poly], 1, shift=_SHIFT)
        tex[mask.astype(bool)] = earth
        for pad in spec.ground.pads:
            cv2.fillPoly(tex, [to_px(pad)], (175, 178, 180), shift=_SHIFT)
        for pit in spec.ground.pits:
            cv2.fillPoly(tex, [to_px(pit)], tuple(float(v) for v in earth * 0.7), shift=_SHIFT)
        for road in spec.ground.roads:
            cv2.polylines(
                tex,
                [to_px(road)],
                False,
                (135, 138, 140),
                thickness=int(spec.ground.road_width_m / r),
                shift=_SHIFT,
            )
        # low-frequency blotches and fine grain
        blotch = cv2.resize(
            rng.normal(0, 1, (height_px // 64 + 2, width_px // 64 + 2)).astype(np.float32),
            (width_px, height_px),
            interpolation=cv2.INTER_LINEAR,
        )
        grain = np.tile(_grain(rng), (height_px // 256 + 1, width_px // 256 + 1))[
            :height_px, :width_px
        ]
        factor = cv2.addWeighted(blotch, 0.08, np.ascontiguousarray(grain), 0.07, 1.0)
        # exclusion zones: painted yellow/black boundary and cones at the corners
        for m_spec in spec.machines:
            zone = to_px(m_spec.zone + [m_spec.zone[0]])
            cv2.polylines(tex, [zone], True, (20, 210, 250), thickness=3, shift=_SHIFT)
            for corner in m_spec.zone:
                c = to_px([corner])[0]
                cv2.circle(tex, (int(c[0]), int(c[1])), 3 * _ONE, (0, 90, 250), -1, shift=_SHIFT)
        # site fence
        cv2.polylines(tex, [site_poly], True, (90, 100, 105), thickness=2, shift=_SHIFT)
        # light and haze (the camera never moves, so distance haze is a property of the texel);
        # haze varies slowly: compute it on a coarse grid and interpolate
        step = 16
        gx = self.tex_x0 + (np.arange(0, width_px, step) + 0.5) * r - self.cam_pos[0]
        gy = self.tex_y1 - (np.arange(0, height_px, step) + 0.5) * r - self.cam_pos[1]
        dist = np.sqrt(gy[:, None] ** 2 + gx[None, :] ** 2 + self.cam_pos[2] ** 2)
        haze = cv2.resize(
            np.asarray(self._haze_factor(dist), dtype=np.float32),
            (width_px, height_px),
            interpolation=cv2.INTER_LINEAR,
        )
        ground_light = self.ambient + (1 - self.ambient) * max(0.0, float(self.sun[2]))
        gain = cv2.multiply(factor, 1.0 - haze, scale=ground_light * self.exposure)
        lit = cv2.multiply(tex, cv2.merge([gain, gain, gain]))
        sky = self.sky_horizon.astype(np.float32)
        lit = lit + cv2.merge([haze * sky[0], haze * sky[1], haze * sky[2]])
        base: np.ndarray = np.clip(lit, 0, 255).astype(np.uint8)
        self.tex_levels: list[np.ndarray] = [base]
        for _ in range(MIP_LEVELS - 1):
            self.tex_levels.append(cv2.pyrDown(self.tex_levels[-1]))
        far = (
            surround * ground_light * self.exposure * (1 - self.haze) + self.sky_horizon * self.haze
        )
        self.far_color = tuple(float(v) for v in np.clip(far, 0, 255))

    def _texture_matrix(self, level: int) -> np.ndarray:
        """Texel (column, row, 1) at a mip level → ground (x, y, 1)."""
        r = TEXTURE_RES_M * (1 << level)
        return np.array([[r, 0.0, self.tex_x0 + r / 2], [0.0, -r, self.tex_y1 - r / 2], [0, 0, 1]])

    # ------------------------------------------------------------------ static boxes
    def _static_boxes(self) -> list[_Box]:
        boxes = []
        for s in self.spec.structures:
            rot = _rotation(s.yaw_deg)
            base = np.array([s.center[0], s.center[1], 0.0])
            corners = box_corners(base, (s.size_m[0], s.size_m[1], s.size_m[2]), rot)
            boxes.append(_Box(corners, self._bgr(s.color), s.kind))
        return boxes

    def _face_lists(
        self, boxes: list[_Box]
    ) -> list[list[tuple[np.ndarray, tuple[float, float, float]]]]:
        """Per box: (corner indices, colour) of the faces the camera sees, far to near."""
        if not boxes:
            return []
        corners = np.stack([b.corners for b in boxes])  # (B, 8, 3)
        normals = _face_normals(corners)  # (B, 5, 3)
        base = np.stack([b.color for b in boxes])  # (B, 3)
        centers = corners[:, _FACES].mean(axis=2)  # (B, 5, 3)
        rel = centers - np.asarray(self.cam_pos)
        dist = np.sqrt((rel * rel).sum(axis=2))
        facing = (rel * normals).sum(axis=2) < 0
        light = self.ambient + (1.0 - self.ambient) * np.maximum(0.0, normals @ self.sun) * 1.25
        haze = (self.haze * (1.0 - np.exp(-dist / 250.0)))[..., None]
        colors = np.clip(base[:, None, :] * (light * self.exposure)[..., None], 0, 255)
        colors = (colors * (1 - haze) + self.sky_horizon * haze).tolist()
        order = np.argsort(-np.where(facing, dist, -1.0), axis=1).tolist()
        facing_l = facing.tolist()
        out = []
        for b in range(len(boxes)):
            out.append([(_FACES[f], tuple(colors[b][f])) for f in order[b] if facing_l[b][f]])
        return out

    @staticmethod
    def _machine_sphere(m) -> tuple[np.ndarray, float]:
        """A sphere that contains the machine in every pose it can take."""
        pts = np.array([m.position] + list(m.route), dtype=np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        reach = {"excavator": 11.0, "crane": 33.0, "truck": 5.0}[m.kind]
        height = {"excavator": 8.0, "crane": 31.0, "truck": 3.0}[m.kind]
        centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, height / 2])
        radius = float(np.linalg.norm(hi - lo) / 2 + math.hypot(reach, height / 2))
        return centre, radius

    def _machine_boxes(self, t: float, cv: CameraView | None = None) -> list[_Box]:
        """Boxes of every machine at ``t``; with a view, only machines that can appear in it."""
        out: list[_Box] = []
        for mi, m in enumerate(self.spec.machines):
            if cv is not None:
                centre, radius = self._machine_bounds[mi]
                if not _sphere_in_view(cv, centre, radius):
                    continue
            state = self.site.machine_at(mi, t)
            color = self._bgr(m.color)
            dark = np.array([45.0, 45.0, 50.0])
            base = np.array([state.xy[0], state.xy[1], 0.0])
            rot = _rotation(state.yaw_deg)

            def add(
                b: np.ndarray, size: tuple[float, float, float], r: np.ndarray, c: np.ndarray
            ) -> None:
                solid = min(size) >= 1.0
                out.append(_Box(box_corners(b, size, r), c, "machine", mi, solid))  # noqa: B023

            if m.kind == "excavator":
                add(base, (3.2, 4.6, 0.9), rot, dark)
                upper = _rotation(state.yaw_deg + state.slew_deg)
                add(base + np.array([0, 0, 0.9]), (2.9, 3.6, 1.5), upper, color)
                fwd = upper[:, 1]
                boom_pitch = 25 + 25 * state.boom
                boom_rot = _rotation(state.yaw_deg + state.slew_deg, boom_pitch)
                boom_base = base + np.array([0, 0, 1.9]) + fwd * 1.4
                # boxes stand on their bottom centre: offset by half their length to hinge them
                add(boom_base + boom_rot[:, 1] * 2.75, (0.5, 5.5, 0.5), boom_rot, color)
                tip = boom_base + boom_rot[:, 1] * 5.5
                arm_rot = _rotation(state.yaw_deg + state.slew_deg, -70 + 20 * state.boom)
                add(tip + arm_rot[:, 1] * 1.5, (0.4, 3.0, 0.4), arm_rot, color)
            elif m.kind == "crane":
                add(base, (2.0, 2.0, 28.0), rot, color)
                jib = _rotation(state.yaw_deg + state.slew_deg)
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

    # ------------------------------------------------------------------ rendering
    def view(self, pose: PTZPose, width: int, height: int) -> CameraView:
        return CameraView(self.cam_pos, self.heading, pose, width, height, self.fov_1x)

    def render(
        self,
        pose: PTZPose,
        t: float,
        width: int,
        height: int,
        *,
        index: int = 0,
        truth: bool = True,
        noise: bool = True,
        motion_dps: tuple[float, float] = (0.0, 0.0),
    ) -> tuple[Frame, FrameTruth | None]:
        """Draw the view at ``pose`` at site time ``t``; optionally with its ground truth."""
        cv = self.view(pose, width, height)
        img = self._draw_ground_and_sky(cv)
        workers = self.site.workers_at(t)
        geo = _WorkerGeometry.compute(cv, workers.xy, self.site.heights, workers.crouch)
        machine_boxes = self._machine_boxes(t, cv)
        fires = self.site.fires_at(t)
        machine_uv, box_in_view = self._draw_objects(img, cv, t, workers, geo, machine_boxes, fires)
        if noise:
            self._post(img, cv, index, motion_dps)
        frame = Frame(img, t, pose, index)
        if not truth:
            return frame, None
        return frame, self._truth(
            cv, t, workers, geo, machine_boxes, machine_uv, box_in_view, fires
        )

    def _draw_ground_and_sky(self, cv: CameraView) -> np.ndarray:
        w, h = cv.width, cv.height
        f = cv.focal
        h_row = cv.horizon_row()
        # mip level from the ground footprint of a pixel two thirds down the image
        row = max(h_row + 1.0, h * 0.66)
        pitch = math.radians(cv.pose.tilt_deg) - math.atan((row - h / 2) / f)
        if pitch < -1e-3:
            dist = self.cam_pos[2] / math.sin(-pitch)
            footprint = dist / f / TEXTURE_RES_M
            level = int(np.clip(math.floor(math.log2(max(footprint, 1.0))), 0, MIP_LEVELS - 1))
        else:
            level = MIP_LEVELS - 1
        hmat = cv.ground_homography() @ self._texture_matrix(level)
        img = cv2.warpPerspective(
            self.tex_levels[level],
            hmat,
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self.far_color,
        )
        if h_row > 0:
            rows = int(min(h, math.ceil(h_row)))
            r = np.arange(rows, dtype=np.float64)
            elev = cv.pose.tilt_deg + np.degrees(np.arctan((h / 2 - r) / f))
            a = np.clip(elev / 35.0, 0.0, 1.0)[:, None]
            colors = (self.sky_horizon * (1 - a) + self.sky_zenith * a).astype(np.uint8)
            img[:rows] = colors[:, None, :]
        return img

    def _draw_objects(
        self, img, cv, t, workers, geo, machine_boxes, fires
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Draw everything far to near.

        Returns the machine corners' projection (uv, z) and, for every box (static, then
        machine parts), whether it can reach into the view — only those can hide anything in it.
        """
        items: list[tuple[float, int, object]] = []
        boxes = self._static + machine_boxes
        n_static = len(self._static)
        machine_faces = self._face_lists(machine_boxes)
        machine_uv = (np.zeros((0, 8, 2)), np.zeros((0, 8)))
        in_view = np.zeros(len(self._static) + len(machine_boxes), dtype=bool)
        if boxes:
            corners = np.concatenate([self._static_corners] + [b.corners for b in machine_boxes])
            uv, z = cv.project(corners)
            uv = uv.reshape(-1, 8, 2)
            z = z.reshape(-1, 8)
            lo, hi = uv.min(axis=1), uv.max(axis=1)
            size = (hi - lo).max(axis=1)
            keep = (
                (z > NEAR_M).all(axis=1)
                & (hi[:, 0] >= 0)
                & (lo[:, 0] <= cv.width)
                & (hi[:, 1] >= 0)
                & (lo[:, 1] <= cv.height)
                & (size >= 0.7)
            )
            machine_uv = (uv[n_static:], z[n_static:])
            # conservative: overlapping the frame, or straddling the camera's near plane
            overlaps = (hi[:, 0] >= 0) & (lo[:, 0] <= cv.width) & (hi[:, 1] >= 0)
            overlaps &= lo[:, 1] <= cv.height
            in_view = (overlaps & (z > 0).any(axis=1)) | (
                (z <= NEAR_M).any(axis=1) & (z > 0).any(axis=1)
            )
            pts_all = _fixed_point(uv)
            depth = z.mean(axis=1)
            for bi in np.flatnonzero(keep):
                box = boxes[bi]
                pts = pts_all[bi]
                face_list = (
                    self._static_faces[bi] if bi < n_static else machine_faces[bi - n_static]
                )
                faces = [(pts[idx], color) for idx, color in face_list]
                if box.kind == "scaffold":
                    items.append(
                        (
                            float(depth[bi]),
                            2,
                            self._scaffold_payload(cv, box, float(size[bi]), faces),
                        )
                    )
                else:
                    items.append((float(depth[bi]), 0, faces))
        vis = np.flatnonzero(geo.drawable)
        if len(vis):
            palette = self._worker_colors(vis, geo.depth[vis])
            for k, i in enumerate(vis):
                items.append((float(geo.depth[i]), 1, (int(i), palette[k])))
        for fire in fires:
            items.append(self._fire_item(cv, t, fire))
        items.sort(key=lambda it: -it[0])
        for _depth, kind, payload in items:
            if kind == 0:
                for poly, color in payload:  # type: ignore[attr-defined]
                    cv2.fillConvexPoly(img, poly, color, lineType=cv2.LINE_8, shift=_SHIFT)
            elif kind == 1:
                self._draw_worker(img, geo, workers, *payload)  # type: ignore[misc]
            elif kind == 2:
                self._draw_misc(img, payload)  # type: ignore[arg-type]
        return machine_uv, in_view

    def _scaffold_payload(self, cv: CameraView, box: _Box, size: float, faces: list) -> tuple:
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
            segs.append(
                np.stack([c[lo] + (c[hi] - c[lo]) * fu, c[lo2] + (c[hi2] - c[lo2]) * fu], 1)
            )
            segs.append(np.stack([c[lo] + (c[lo2] - c[lo]) * fv, c[hi] + (c[hi2] - c[hi]) * fv], 1))
        uv, _ = cv.project(np.concatenate(segs))
        return ("lines", list(_fixed_point(uv)), color, False)

    def _draw_misc(self, img: np.ndarray, payload: tuple) -> None:
        if payload[0] == "lines":
            _, polys, color, closed = payload
            cv2.polylines(img, polys, closed, color, 1, shift=_SHIFT)
            return
        for poly, color in payload[1]:
            cv2.fillPoly(img, [poly], color, lineType=cv2.LINE_8, shift=_SHIFT)

    def _fire_item(self, cv: CameraView, t: float, fire) -> tuple[float, int, object]:
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
                polys.append(
                    (_ellipse_poly(cx, cy, rad * s, rad * s * 0.8), (shade, shade, shade + 4))
                )
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
                polys.append((_fixed_point(tri), color))
        return float(z), 2, ("fire", polys)

    def _draw_worker(
        self, img: np.ndarray, geo: _WorkerGeometry, workers, i: int, colors: list[list[float]]
    ) -> None:
        w = self.spec.workers[i]
        u, vf, vt, s = (
            float(geo.foot_uv[i, 0]),
            float(geo.foot_uv[i, 1]),
            float(geo.top_v[i]),
            float(geo.scale[i]),
        )
        height_px = vf - vt
        body = colors[_VEST] if workers.vest[i] else colors[_SHIRT]
        hh, hw = img.shape[:2]
        if height_px < 3.0:
            x0, x1 = int(u - 0.25 * s), int(u + 0.25 * s) + 1
            y0, y1 = int(vt), int(vf) + 1
            if x1 > 0 and y1 > 0 and x0 < hw and y0 < hh:
                img[max(y0, 0) : y1, max(x0, 0) : x1] = body
            return
        hm = w.height_m
        sv = height_px / hm  # px per metre vertically

        def y(m: float) -> float:
            return vf - m * sv

        if height_px < 9.0:
            half = max(0.5, 0.2 * s)
            _rect(img, u - half, y(TORSO_BOTTOM_M * hm / 1.75), u + half, vf, colors[_PANTS])
            _rect(
                img,
                u - half - 0.3,
                y(TORSO_TOP_M * hm / 1.75),
                u + half + 0.3,
                y(TORSO_BOTTOM_M * hm / 1.75),
                body,
            )
            head = colors[_HELMET] if workers.helmet[i] else colors[_HAIR]
            _rect(img, u - half * 0.7, vt, u + half * 0.7, y(hm - 2 * HEAD_RADIUS_M), head)
            return
        k = hm / 1.75
        lean = 0.12 * s if workers.crouch[i] else 0.0
        swing = 0.12 * math.sin(float(workers.phase[i])) * s if workers.moving[i] else 0.0
        # shadow
        cv2.ellipse(
            img,
            (int(u * _ONE), int(vf * _ONE)),
            (int(0.45 * s * _ONE), int(0.12 * s * _ONE)),
            0,
            0,
            360,
            colors[_SHADOW],
            -1,
            shift=_SHIFT,
        )
        # legs
        hip = y(TORSO_BOTTOM_M * k)
        for side in (-1, 1):
            x = u + side * 0.1 * s
            foot_x = x + side * swing
            _quad(
                img,
                [
                    (x - 0.07 * s, hip),
                    (x + 0.07 * s, hip),
                    (foot_x + 0.07 * s, vf),
                    (foot_x - 0.07 * s, vf),
                ],
                colors[_PANTS],
            )
        # torso + arms
        top = y(TORSO_TOP_M * k)
        _quad(
            img,
            [
                (u - 0.22 * s + lean, top),
                (u + 0.22 * s + lean, top),
                (u + 0.21 * s, hip),
                (u - 0.21 * s, hip),
            ],
            colors[_SHIRT],
        )
        for side in (-1, 1):
            sx = u + side * 0.26 * s + lean
            _quad(
                img,
                [
                    (sx - 0.05 * s, top + 1),
                    (sx + 0.05 * s, top + 1),
                    (sx + 0.05 * s - side * swing * 0.5, y(0.85 * k)),
                    (sx - 0.05 * s - side * swing * 0.5, y(0.85 * k)),
                ],
                colors[_SHIRT],
            )
        if workers.vest[i]:
            _quad(
                img,
                [
                    (u - 0.23 * s + lean, top + 0.03 * sv),
                    (u + 0.23 * s + lean, top + 0.03 * sv),
                    (u + 0.22 * s, y(0.95 * k)),
                    (u - 0.22 * s, y(0.95 * k)),
                ],
                colors[_VEST],
            )
            if height_px > 40:
                for band in (1.05, 1.22):
                    yb = y(band * k)
                    _quad(
                        img,
                        [
                            (u - 0.22 * s + lean * 0.5, yb),
                            (u + 0.22 * s + lean * 0.5, yb),
                            (u + 0.22 * s + lean * 0.5, yb + 0.035 * sv),
                            (u - 0.22 * s + lean * 0.5, yb + 0.035 * sv),
                        ],
                        colors[_STRIPE],
                    )
        # head
        hc_y = y(hm - HEAD_RADIUS_M)
        hx = u + lean * 1.3
        r = HEAD_RADIUS_M * s
        cv2.circle(
            img, (int(hx * _ONE), int(hc_y * _ONE)), int(r * _ONE), colors[_SKIN], -1, shift=_SHIFT
        )
        if workers.helmet[i]:
            cv2.ellipse(
                img,
                (int(hx * _ONE), int((hc_y - 0.02 * sv) * _ONE)),
                (int(1.3 * r * _ONE), int(1.05 * r * _ONE)),
                0,
                180,
                360,
                colors[_HELMET],
                -1,
                shift=_SHIFT,
            )
            cv2.ellipse(
                img,
                (int(hx * _ONE), int((hc_y - 0.02 * sv) * _ONE)),
                (int(1.55 * r * _ONE), int(0.22 * r * _ONE)),
                0,
                0,
                360,
                colors[_HELMET],
                -1,
                shift=_SHIFT,
            )
        else:
            cv2.ellipse(
                img,
                (int(hx * _ONE), int((hc_y - 0.1 * r) * _ONE)),
                (int(1.02 * r * _ONE), int(0.95 * r * _ONE)),
                0,
                180,
                360,
                colors[_HAIR],
                -1,
                shift=_SHIFT,
            )

    _PARTS = ("vest", "shirt", "pants", "helmet", "hair", "skin", "stripe", "shadow")

    def _worker_palette(self) -> np.ndarray:
        """Lit colours (N, parts, 3) of every worker's kit, before distance haze."""
        lit = (self.ambient + (1 - self.ambient) * 0.7) * self.exposure
        rows = []
        for w in self.spec.workers:
            parts = [
                w.vest_color,
                w.shirt_color,
                w.pants_color,
                w.helmet_color,
                w.hair_color,
                w.skin_color,
            ]
            colors = [self._bgr(c) * lit for c in parts]
            colors.append(np.array([200.0, 200, 200]) * self.exposure)
            colors.append(self._bgr(self.spec.ground.color) * 0.45 * self.exposure)
            rows.append(colors)
        return np.clip(np.array(rows, dtype=np.float64).reshape(-1, len(self._PARTS), 3), 0, 255)

    def _worker_colors(self, idx: np.ndarray, depth: np.ndarray) -> list[list[list[float]]]:
        """Hazed kit colours per worker, indexed by the part constants (_VEST, _SHIRT, …)."""
        a = np.asarray(self._haze_factor(depth))[:, None, None]
        return (self._worker_lit[idx] * (1 - a) + self.sky_horizon * a).tolist()

    def _post(
        self, img: np.ndarray, cv: CameraView, index: int, motion_dps: tuple[float, float]
    ) -> None:
        h, w = img.shape[:2]
        px_per_deg = cv.width / cv.fov_h
        blur_u = abs(motion_dps[0]) * px_per_deg / 60.0  # 1/60 s exposure
        blur_v = abs(motion_dps[1]) * px_per_deg / 60.0
        if blur_u >= 1.5 or blur_v >= 1.5:
            ku, kv = int(min(blur_u, 40)) | 1, int(min(blur_v, 40)) | 1
            cv2.blur(img, (ku, kv), dst=img)
        elif self.focus_blur > 0.5 and w >= 320:
            cv2.GaussianBlur(img, (3, 3), self.focus_blur, dst=img)
        noise = _noise()
        pos, neg = noise.levels[self.noise_level]
        if h <= noise.SIZE[0] and w <= noise.SIZE[1]:
            # a cheap deterministic hash of (site, frame) picks the noise window
            key = ((self.spec.seed or 0) * 2_654_435_761 + index * 40_503 + 12_345) & 0xFFFFFFFF
            key = (key ^ (key >> 15)) * 2_246_822_519 & 0xFFFFFFFF
            y0 = key % (noise.SIZE[0] - h + 1)
            x0 = (key >> 11) % (noise.SIZE[1] - w + 1)
            cv2.add(img, pos[y0 : y0 + h, x0 : x0 + w], dst=img)
            cv2.subtract(img, neg[y0 : y0 + h, x0 : x0 + w], dst=img)

    # ------------------------------------------------------------------ ground truth
    def _truth(
        self, cv, t, workers, geo, machine_boxes, machine_uv, box_in_view, fires
    ) -> FrameTruth:
        ref = REFERENCE_WIDTH_PX / cv.width
        boxes: list[np.ndarray] = []
        classes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        n = len(workers.xy)
        idx = np.flatnonzero(geo.in_front & geo.onscreen)
        occ_head = np.zeros(n, dtype=bool)
        occ_torso = np.zeros(n, dtype=bool)
        if len(idx):
            hm = self.site.heights[idx]
            x, y_ = workers.xy[idx, 0], workers.xy[idx, 1]
            head_pts = np.stack([x, y_, hm - HEAD_RADIUS_M], -1)
            torso_pts = np.stack([x, y_, hm * (TORSO_BOTTOM_M + TORSO_TOP_M) / 2 / 1.75], -1)
            # only boxes that reach into the view can hide a point in it
            n_static = len(self._static)
            pick = box_in_view[self._occluder_idx]
            frames: _Frames = tuple(a[pick] for a in self._static_occluders)
            solid = [
                b.corners
                for k, b in enumerate(machine_boxes)
                if b.solid and box_in_view[n_static + k]
            ]
            if solid:
                frames = _concat_frames(frames, _box_frames(np.stack(solid)))
            occ = _occluded(np.asarray(cv.position), np.concatenate([head_pts, torso_pts]), frames)
            occ_head[idx] = occ[: len(idx)]
            occ_torso[idx] = occ[len(idx) :]
            person = geo.person_box[idx]
            head = geo.head_box[idx]
            torso = geo.torso_box[idx]
            boxes += [person, head]
            classes += [
                np.full(len(idx), CLS_PERSON),
                np.where(workers.helmet[idx], CLS_HEAD_HELMET, CLS_HEAD_BARE),
            ]
            owners += [idx, idx]
            vest_idx = workers.vest[idx]
            boxes.append(torso[vest_idx])
            classes.append(np.full(int(vest_idx.sum()), CLS_VEST))
            owners.append(idx[vest_idx])
        machine_visible = self._machine_truth(cv, machine_boxes, machine_uv, boxes, classes, owners)
        fire_boxes = {}
        for fire in fires:
            fb = self._fire_box(cv, fire)
            if fb is not None:
                fire_boxes[fire.index] = fb
                boxes.append(fb[None])
                classes.append(np.array([CLS_FIRE]))
                owners.append(np.array([fire.index]))
        all_boxes = (
            np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
        )
        all_cls = np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64)
        all_own = np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)
        visible = _visible_fraction(all_boxes, cv.width, cv.height)
        is_machine = all_cls == CLS_MACHINE
        if is_machine.any():
            # clipped machine boxes are fully "inside"; report the share of the machine shown
            visible[is_machine] = np.asarray(machine_visible, dtype=np.float32)
        occluded = np.zeros(len(all_cls), dtype=bool)
        is_worker = (all_cls == CLS_PERSON) | (all_cls == CLS_VEST)
        occluded[is_worker] = occ_torso[all_own[is_worker]]
        is_head = (all_cls == CLS_HEAD_HELMET) | (all_cls == CLS_HEAD_BARE)
        occluded[is_head] = occ_head[all_own[is_head]]
        keep = visible > 0
        ref_h = (all_boxes[:, 3] - all_boxes[:, 1]) * ref
        hazards = self._hazard_views(cv, t, workers, geo, occ_head, occ_torso, fire_boxes, ref)
        return FrameTruth(
            t,
            cv.width,
            cv.height,
            all_boxes[keep],
            all_cls[keep],
            visible[keep],
            occluded[keep],
            ref_h[keep],
            all_own[keep],
            hazards,
        )

    @staticmethod
    def _machine_truth(cv, machine_boxes, machine_uv, boxes, classes, owners) -> list[float]:
        """Append one box per machine in the frame; return the share of each machine shown.

        A machine's box is the union of its parts that are in the frame: an articulated crane's
        full extent would cover half the sky while only its mast is visible.
        """
        uv, z = machine_uv
        if not len(machine_boxes):
            return []
        owner = np.array([b.owner for b in machine_boxes])
        part = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)  # (P, 4)
        clipped = np.empty_like(part)
        clipped[:, 0::2] = np.clip(part[:, 0::2], 0, cv.width)
        clipped[:, 1::2] = np.clip(part[:, 1::2], 0, cv.height)
        shown = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        behind = (z <= NEAR_M).any(axis=1)
        area_part = np.maximum(part[:, 2] - part[:, 0], 0) * np.maximum(part[:, 3] - part[:, 1], 0)
        area_clip = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) * shown
        fractions: list[float] = []
        if not (shown & ~behind).any():
            return fractions
        for mi in sorted(set(owner[shown].tolist())):
            mine = owner == mi
            if behind[mine].any() or not shown[mine].any():
                continue
            c = clipped[mine & shown]
            boxes.append(np.array([[c[:, 0].min(), c[:, 1].min(), c[:, 2].max(), c[:, 3].max()]]))
            classes.append(np.array([CLS_MACHINE]))
            owners.append(np.array([mi]))
            fractions.append(float(area_clip[mine].sum() / max(area_part[mine].sum(), 1e-9)))
        return fractions

    def _fire_box(self, cv: CameraView, fire) -> np.ndarray | None:
        base = np.array([fire.xy[0], fire.xy[1], 0.0])
        r = fire.size_m * (0.35 + 0.25 * 5) * fire.intensity
        pts = np.array(
            [
                base + [-r, 0, 0],
                base + [r, 0, 0],
                base + [0, -r, 0],
                base + [0, r, 0],
                base + [-r, 0, fire.plume_m + r],
                base + [r, 0, fire.plume_m + r],
            ]
        )
        uv, z = cv.project(pts)
        if (z <= NEAR_M).any():
            return None
        return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])

    def _hazard_views(self, cv, t, workers, geo, occ_head, occ_torso, fire_boxes, ref):
        out = []
        th = self.res
        for hz in self.site.active_hazards(t):
            box = None
            size = 0.0
            occluded = False
            if hz.type == "fire_smoke":
                fb = fire_boxes.get(hz.fire)
                if fb is not None:
                    box = fb
                    size = float(fb[3] - fb[1]) * ref
                need = th.smoke_px
            else:
                wi = hz.worker
                if wi is None or not geo.in_front[wi]:
                    box = None
                elif hz.type == "no_helmet":
                    box, occluded, need = geo.head_box[wi], bool(occ_head[wi]), th.head_px
                elif hz.type == "no_vest":
                    box, occluded, need = geo.torso_box[wi], bool(occ_torso[wi]), th.torso_px
                else:
                    box, occluded, need = geo.person_box[wi], bool(occ_torso[wi]), th.person_px
                if box is not None:
                    size = float(box[3] - box[1]) * ref
                need = {"no_helmet": th.head_px, "no_vest": th.torso_px}.get(hz.type, th.person_px)
            if box is None:
                out.append(HazardView(hz.id, hz.type, False, False, 0.0, None))
                continue
            frac = _visible_fraction_of(box, cv.width, cv.height)
            in_view = frac > 0 and not occluded
            resolvable = in_view and frac >= th.min_visible and size >= need
            out.append(HazardView(hz.id, hz.type, in_view, resolvable, size, _as_box(box)))
        return out

    @property
    def camera_position(self) -> tuple[float, float, float]:
        return self.cam_pos


@dataclass
class _WorkerGeometry:
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
    ) -> _WorkerGeometry:
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
        half = 0.3 * scale
        person = np.stack([foot[:, 0] - half, top[:, 1], foot[:, 0] + half, foot[:, 1]], -1)
        k = hm / 1.75
        head_c = foot[:, 1] - (hm - HEAD_RADIUS_M) * sv
        hr = HEAD_RADIUS_M * 1.35 * scale
        head = np.stack(
            [foot[:, 0] - hr, head_c - hr, foot[:, 0] + hr, head_c + 1.0 * HEAD_RADIUS_M * sv], -1
        )
        torso = np.stack(
            [
                foot[:, 0] - 0.27 * scale,
                foot[:, 1] - TORSO_TOP_M * k * sv,
                foot[:, 0] + 0.27 * scale,
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
        return _WorkerGeometry(
            foot, top[:, 1], scale, depth, in_front, onscreen, drawable, person, head, torso
        )


def _sphere_in_view(cv: CameraView, centre: np.ndarray, radius: float) -> bool:
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


def _face_normals(corners: np.ndarray) -> np.ndarray:
    """Outward unit normals (B, 5, 3) of the side and top faces of boxes (B, 8, 3)."""
    ex = corners[:, 1] - corners[:, 0]
    ey = corners[:, 3] - corners[:, 0]
    ez = corners[:, 4] - corners[:, 0]
    ex = ex / np.linalg.norm(ex, axis=1, keepdims=True)
    ey = ey / np.linalg.norm(ey, axis=1, keepdims=True)
    ez = ez / np.linalg.norm(ez, axis=1, keepdims=True)
    return np.stack([-ey, ex, ey, -ex, ez], axis=1)


def _fixed_point(uv: np.ndarray) -> np.ndarray:
    """Pixel coordinates → cv2's fixed point (``shift`` bits), clipped so int32 cannot overflow.

    At 30× zoom a corner just beside the camera's axis projects millions of pixels away; the
    clip moves such far-off vertices along the image plane, which leaves what is drawn inside the
    frame all but unchanged.
    """
    return np.round(np.clip(np.nan_to_num(uv), -1e6, 1e6) * _ONE).astype(np.int32)


def _as_box(box: np.ndarray) -> tuple[float, float, float, float]:
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _visible_fraction_of(box, width: int, height: int) -> float:
    """Scalar version of :func:`_visible_fraction` for one box (no array overhead)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    w = max(min(x1, width) - max(x0, 0.0), 0.0)
    h = max(min(y1, height) - max(y0, 0.0), 0.0)
    return w * h / area


def _visible_fraction(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.float32)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 3], 0, height)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return (np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0) / area).astype(np.float32)


_Frames = tuple[np.ndarray, np.ndarray, np.ndarray]


def _box_frames(boxes: np.ndarray) -> _Frames:
    """Origin (B, 3), unit axes (B, 3, 3) and edge lengths (B, 3) of boxes (B, 8, 3)."""
    origin = boxes[:, 0]
    axes = np.stack([boxes[:, 1] - origin, boxes[:, 3] - origin, boxes[:, 4] - origin], 1)
    lengths = np.linalg.norm(axes, axis=2)
    return origin, axes / np.maximum(lengths[..., None], 1e-9), lengths


def _concat_frames(a: _Frames, b: _Frames) -> _Frames:
    return (
        np.concatenate([a[0], b[0]]),
        np.concatenate([a[1], b[1]]),
        np.concatenate([a[2], b[2]]),
    )


def _occluded(cam: np.ndarray, points: np.ndarray, frames: _Frames) -> np.ndarray:
    """Is the segment camera → point blocked by any box? Slab test, vectorised over boxes."""
    origin, unit, lengths = frames
    if not len(points) or not len(origin):
        return np.zeros(len(points), dtype=bool)
    s = ((cam - origin)[:, None, :] @ unit.transpose(0, 2, 1))[:, 0]  # (B, 3) camera, box coords
    e = (points[None] - origin[:, None]) @ unit.transpose(0, 2, 1)  # (B, P, 3)
    d = e - s[:, None]
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0 = -s[:, None] / d
    t1 = (lengths - s)[:, None] / d
    enter = np.minimum(t0, t1).max(axis=2)
    leave = np.maximum(t0, t1).min(axis=2)
    return ((enter <= leave) & (leave > 0) & (enter < 0.97)).any(axis=0)


def _grain(rng: np.random.Generator) -> np.ndarray:
    g = rng.normal(0, 1, (256, 256)).astype(np.float32)
    return cv2.GaussianBlur(g, (3, 3), 0.8)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color) -> None:
    h, w = img.shape[:2]
    a, b = max(int(round(x0)), 0), min(int(round(x1)) + 1, w)
    c, d = max(int(round(y0)), 0), min(int(round(y1)) + 1, h)
    if a < b and c < d:
        img[c:d, a:b] = color


def _quad(img: np.ndarray, pts: list[tuple[float, float]], color) -> None:
    arr = _fixed_point(np.array(pts))
    cv2.fillConvexPoly(img, arr, color, lineType=cv2.LINE_8, shift=_SHIFT)


def _ellipse_poly(cx: float, cy: float, rx: float, ry: float, n: int = 12) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.round(np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], -1) * _ONE).astype(
        np.int32
    )
