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

This module is the :class:`Renderer` itself: ground, sky, draw order and post-processing. What
it draws comes from :mod:`edge.sim.boxes` (structures and machines) and :mod:`edge.sim.figures`
(workers and fires), lit by :mod:`edge.sim.shading` and rasterised with the conventions of
:mod:`edge.sim.raster`; the ground truth comes from :mod:`edge.sim.truth`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.geometry import CameraView, PTZPose
from edge.perception.detection import CLASSES
from edge.sim.boxes import face_lists, machine_boxes, machine_sphere, scaffold_payload, static_boxes
from edge.sim.figures import WorkerGeometry, draw_worker, fire_polys, worker_colors, worker_palette
from edge.sim.raster import NEAR_M, ONE, SHIFT, fixed_point
from edge.sim.shading import Lighting, bgr
from edge.sim.truth import (
    CLS_FIRE,
    CLS_HEAD_BARE,
    CLS_HEAD_HELMET,
    CLS_MACHINE,
    CLS_PERSON,
    CLS_VEST,
    FrameTruth,
    HazardView,
    Resolvability,
    TruthBuilder,
)
from edge.sim.world import Site

__all__ = [
    "CLASSES",
    "CLS_FIRE",
    "CLS_HEAD_BARE",
    "CLS_HEAD_HELMET",
    "CLS_MACHINE",
    "CLS_PERSON",
    "CLS_VEST",
    "Frame",
    "FrameTruth",
    "HazardView",
    "Renderer",
    "Resolvability",
]

TEXTURE_RES_M = 0.1
#: The hatched band painted along the inside of every exclusion zone's boundary: its width and
#: the period of its diagonal yellow stripes (half of each period painted), in metres.
ZONE_BAND_M = 1.2
ZONE_STRIPE_PERIOD_M = 0.8
ZONE_PAINT_BGR = (20, 210, 250)
TEXTURE_MARGIN_M = 45.0
MIP_LEVELS = 6


@dataclass
class Frame:
    """A rendered camera frame."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    t: float
    pose: PTZPose
    index: int


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
        self.light = Lighting.from_spec(self.spec.lighting)
        seed = self.spec.seed if self.spec.seed is not None else 0
        rng = np.random.default_rng(seed + 7919)
        self.noise_level = int(rng.integers(3))
        self.focus_blur = float(rng.uniform(0.0, 0.8))
        self._build_texture()
        self._static = static_boxes(self.spec)
        self._static_faces = face_lists(self._static, self.cam_pos, self.light)
        self._static_corners = (
            np.concatenate([b.corners for b in self._static]) if self._static else np.zeros((0, 3))
        )
        self._worker_lit = worker_palette(self.spec, self.light)
        self._machine_bounds = [machine_sphere(m) for m in self.spec.machines]
        self._truth_builder = TruthBuilder(site, self._static)

    # ------------------------------------------------------------------ ground
    def _build_texture(self) -> None:
        spec, light = self.spec, self.light
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
            return np.round(out * ONE).astype(np.int32)

        surround = bgr(spec.ground.surround_color)
        earth = bgr(spec.ground.color)
        tex = np.empty((height_px, width_px, 3), dtype=np.float32)
        tex[:] = surround
        site_poly = to_px([[0, 0], [w_site, 0], [w_site, d_site], [0, d_site]])
        mask = np.zeros((height_px, width_px), dtype=np.uint8)
        cv2.fillPoly(mask, [site_poly], 1, shift=SHIFT)
        tex[mask.astype(bool)] = earth
        for pad in spec.ground.pads:
            cv2.fillPoly(tex, [to_px(pad)], (175, 178, 180), shift=SHIFT)
        for pit in spec.ground.pits:
            cv2.fillPoly(tex, [to_px(pit)], tuple(float(v) for v in earth * 0.7), shift=SHIFT)
        for road in spec.ground.roads:
            cv2.polylines(
                tex,
                [to_px(road)],
                False,
                (135, 138, 140),
                thickness=int(spec.ground.road_width_m / r),
                shift=SHIFT,
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
        # exclusion zones: a painted yellow boundary with a hatched "keep clear" band on its
        # inside (so a view of one stretch of line shows which side is the zone), cones at the
        # corners
        for m_spec in spec.machines:
            _paint_zone_band(tex, to_px(m_spec.zone), r)
            zone = to_px(m_spec.zone + [m_spec.zone[0]])
            cv2.polylines(tex, [zone], True, ZONE_PAINT_BGR, thickness=3, shift=SHIFT)
            for corner in m_spec.zone:
                c = to_px([corner])[0]
                cv2.circle(tex, (int(c[0]), int(c[1])), 3 * ONE, (0, 90, 250), -1, shift=SHIFT)
        # site fence
        cv2.polylines(tex, [site_poly], True, (90, 100, 105), thickness=2, shift=SHIFT)
        # light and haze (the camera never moves, so distance haze is a property of the texel);
        # haze varies slowly: compute it on a coarse grid and interpolate
        step = 16
        gx = self.tex_x0 + (np.arange(0, width_px, step) + 0.5) * r - self.cam_pos[0]
        gy = self.tex_y1 - (np.arange(0, height_px, step) + 0.5) * r - self.cam_pos[1]
        dist = np.sqrt(gy[:, None] ** 2 + gx[None, :] ** 2 + self.cam_pos[2] ** 2)
        haze = cv2.resize(
            np.asarray(light.haze_factor(dist), dtype=np.float32),
            (width_px, height_px),
            interpolation=cv2.INTER_LINEAR,
        )
        ground_light = light.ambient + (1 - light.ambient) * max(0.0, float(light.sun[2]))
        gain = cv2.multiply(factor, 1.0 - haze, scale=ground_light * light.exposure)
        lit = cv2.multiply(tex, cv2.merge([gain, gain, gain]))
        sky = light.sky_horizon.astype(np.float32)
        lit = lit + cv2.merge([haze * sky[0], haze * sky[1], haze * sky[2]])
        base: np.ndarray = np.clip(lit, 0, 255).astype(np.uint8)
        self.tex_levels: list[np.ndarray] = [base]
        for _ in range(MIP_LEVELS - 1):
            self.tex_levels.append(cv2.pyrDown(self.tex_levels[-1]))
        far = (
            surround * ground_light * light.exposure * (1 - light.haze)
            + light.sky_horizon * light.haze
        )
        self.far_color = tuple(float(v) for v in np.clip(far, 0, 255))

    def _texture_matrix(self, level: int) -> np.ndarray:
        """Texel (column, row, 1) at a mip level → ground (x, y, 1)."""
        r = TEXTURE_RES_M * (1 << level)
        return np.array([[r, 0.0, self.tex_x0 + r / 2], [0.0, -r, self.tex_y1 - r / 2], [0, 0, 1]])

    # ------------------------------------------------------------------ rendering
    def view(self, pose: PTZPose, width: int, height: int) -> CameraView:
        """The pinhole camera of this site's mount at ``pose``, for a ``width``×``height`` image."""
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
        geo = WorkerGeometry.compute(cv, workers.xy, self.site.heights, workers.crouch)
        machines = machine_boxes(self.site, t, self._machine_bounds, cv)
        fires = self.site.fires_at(t)
        machine_uv, box_in_view = self._draw_objects(img, cv, t, workers, geo, machines, fires)
        if noise:
            self._post(img, cv, index, motion_dps)
        frame = Frame(img, t, pose, index)
        if not truth:
            return frame, None
        return frame, self._truth_builder.frame_truth(
            cv, t, self.res, workers, geo, machines, machine_uv, box_in_view, fires
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
            colors = (self.light.sky_horizon * (1 - a) + self.light.sky_zenith * a).astype(np.uint8)
            img[:rows] = colors[:, None, :]
        return img

    def _draw_objects(
        self, img, cv, t, workers, geo, machines, fires
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """Draw everything far to near.

        Returns the machine corners' projection (uv, z) and, for every box (static, then
        machine parts), whether it can reach into the view — only those can hide anything in it.
        """
        items: list[tuple[float, int, object]] = []
        boxes = self._static + machines
        n_static = len(self._static)
        machine_faces = face_lists(machines, self.cam_pos, self.light)
        machine_uv = (np.zeros((0, 8, 2)), np.zeros((0, 8)))
        in_view = np.zeros(len(self._static) + len(machines), dtype=bool)
        if boxes:
            corners = np.concatenate([self._static_corners] + [b.corners for b in machines])
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
            pts_all = fixed_point(uv)
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
                            scaffold_payload(cv, box, float(size[bi]), faces),
                        )
                    )
                else:
                    items.append((float(depth[bi]), 0, faces))
        vis = np.flatnonzero(geo.drawable)
        if len(vis):
            palette = worker_colors(self._worker_lit, vis, geo.depth[vis], self.light)
            for k, i in enumerate(vis):
                wi = int(i)
                height_m = self.spec.workers[wi].height_m
                items.append((float(geo.depth[i]), 1, (wi, palette[k], height_m)))
        for fire in fires:
            fire_depth, polys = fire_polys(cv, t, fire)
            items.append((fire_depth, 2, ("fire", polys)))
        items.sort(key=lambda it: -it[0])
        for _depth, kind, payload in items:
            if kind == 0:
                for poly, color in payload:  # type: ignore[attr-defined]
                    cv2.fillConvexPoly(img, poly, color, lineType=cv2.LINE_8, shift=SHIFT)
            elif kind == 1:
                draw_worker(img, geo, workers, *payload)  # type: ignore[misc]
            elif kind == 2:
                self._draw_misc(img, payload)  # type: ignore[arg-type]
        return machine_uv, in_view

    def _draw_misc(self, img: np.ndarray, payload: tuple) -> None:
        """Draw a scaffold's lines or a fire's polygons."""
        if payload[0] == "lines":
            _, polys, color, closed = payload
            cv2.polylines(img, polys, closed, color, 1, shift=SHIFT)
            return
        for poly, color in payload[1]:
            cv2.fillPoly(img, [poly], color, lineType=cv2.LINE_8, shift=SHIFT)

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

    @property
    def camera_position(self) -> tuple[float, float, float]:
        """The camera's position in site metres (x, y, height)."""
        return self.cam_pos


def _grain(rng: np.random.Generator) -> np.ndarray:
    g = rng.normal(0, 1, (256, 256)).astype(np.float32)
    return cv2.GaussianBlur(g, (3, 3), 0.8)


def _paint_zone_band(tex: np.ndarray, polygon_px: np.ndarray, res_m: float) -> None:
    """Paint diagonal stripes on the band ``ZONE_BAND_M`` wide inside a zone's boundary.

    ``polygon_px`` is the zone in texture pixels (fixed point, ``SHIFT`` bits); the band is the
    zone minus the zone eroded by the band's width, worked on the zone's bounding box only.
    """
    pts = polygon_px.astype(np.float64) / ONE
    band = int(round(ZONE_BAND_M / res_m))
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    h, w = tex.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    inside = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    offset = np.array([x0, y0]) * ONE
    cv2.fillPoly(inside, [polygon_px - offset], 1, shift=SHIFT)
    # pad before eroding so the zone's edge at the bounding box counts as an edge
    core = cv2.erode(
        cv2.copyMakeBorder(inside, band, band, band, band, cv2.BORDER_CONSTANT, value=0),
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)),
    )[band:-band, band:-band]
    ys, xs = np.mgrid[y0:y1, x0:x1]
    period = ZONE_STRIPE_PERIOD_M / res_m
    stripes = ((xs + ys) % period) < period / 2
    paint = inside.astype(bool) & ~core.astype(bool) & stripes
    tex[y0:y1, x0:x1][paint] = ZONE_PAINT_BGR
