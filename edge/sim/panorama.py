"""The panorama of everything a PTZ camera can see, and camera footprints drawn on it.

A :class:`Panorama` is an equirectangular image in the head's own angles: x is linear in pan,
y is linear in tilt (up = top), with square pixels of ``px_per_deg`` in both. It is built by
rendering tiles — narrow vertical strips, split into tilt bands when the tilt range is tall —
through the pinhole :class:`~edge.sim.render.Renderer`, and resampling each tile exactly onto the
pan/tilt grid (``cv2.remap``), so tiles meet without seams or keystone distortion.

Build it once per site and time; a camera's footprint (the outline of the view at a
:class:`~edge.geometry.PTZPose`) is then a polyline drawn on a copy, cheap enough for every frame
of a video.

Pixel convention: continuous coordinates, pixel ``(i, j)`` covers ``[i, i+1) × [j, j+1)`` — the
same as the renderer's image coordinates — so the left edge of the image is ``pan_range[0]`` and
the top edge ``tilt_range[1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

from edge.geometry import REFERENCE_WIDTH_PX, CameraView, PTZPose, direction, wrap_deg
from edge.sim.render import Renderer
from edge.sim.world import Site

__all__ = ["HAZARD_COLORS", "Panorama", "render_panorama", "visible_pan_range"]

#: Site content within this many degrees of the panorama's side edges is not cut off.
PAN_MARGIN_DEG = 8.0
#: BGR colour of each hazard type's marks (panorama, plan view, legends).
HAZARD_COLORS: dict[str, tuple[int, int, int]] = {
    "no_helmet": (60, 60, 255),
    "no_vest": (0, 150, 255),
    "zone_intrusion": (255, 70, 220),
    "fire_smoke": (0, 230, 255),
}
WORKER_OK_COLOR = (110, 230, 110)


@dataclass
class Panorama:
    """An equirectangular pan/tilt image of the camera's surroundings at site time ``t``."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    t: float
    pan_range: tuple[float, float]  # degrees, relative to the mount heading
    tilt_range: tuple[float, float]  # degrees, negative = down
    px_per_deg: float
    mount: tuple[float, float, float]  # camera position (x, y, z), site metres
    heading_deg: float
    fov_h_1x_deg: float = 60.0

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    # ------------------------------------------------------------------ mapping
    def to_pixel(self, pan_deg: ArrayLike, tilt_deg: ArrayLike) -> tuple[Any, Any]:
        """(pan, tilt) in degrees → panorama pixel (x, y); arrays broadcast, scalars stay scalar.

        Pan is unwrapped towards the middle of the panorama, so a pan of -190° and 170° map to the
        same place.
        """
        mid = (self.pan_range[0] + self.pan_range[1]) / 2.0
        pan = mid + np.asarray(wrap_deg(np.asarray(pan_deg, dtype=np.float64) - mid))
        x = (pan - self.pan_range[0]) * self.px_per_deg
        y = (self.tilt_range[1] - np.asarray(tilt_deg, dtype=np.float64)) * self.px_per_deg
        if np.ndim(x) == 0 and np.ndim(y) == 0:
            return float(x), float(y)
        return x, y

    def to_pan_tilt(self, x: ArrayLike, y: ArrayLike) -> tuple[Any, Any]:
        """Panorama pixel (x, y) → (pan, tilt) in degrees; the inverse of :meth:`to_pixel`."""
        pan = self.pan_range[0] + np.asarray(x, dtype=np.float64) / self.px_per_deg
        tilt = self.tilt_range[1] - np.asarray(y, dtype=np.float64) / self.px_per_deg
        if np.ndim(pan) == 0 and np.ndim(tilt) == 0:
            return float(pan), float(tilt)
        return pan, tilt

    def world_to_pixel(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) in site metres → panorama pixels (..., 2) and range (...), m."""
        v = np.asarray(points, dtype=np.float64) - np.asarray(self.mount)
        yaw = np.degrees(np.arctan2(v[..., 0], v[..., 1]))
        tilt = np.degrees(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])))
        x, y = self.to_pixel(np.asarray(wrap_deg(yaw - self.heading_deg)), tilt)
        return np.stack(np.broadcast_arrays(x, y), -1), np.linalg.norm(v, axis=-1)

    # ------------------------------------------------------------------ footprints
    def view(self, pose: PTZPose, width: int = 1280, height: int = 720) -> CameraView:
        """The camera view at ``pose`` (image size sets the aspect ratio of the footprint)."""
        return CameraView(self.mount, self.heading_deg, pose, width, height, self.fov_h_1x_deg)

    def footprint(
        self, pose: PTZPose, width: int = 1280, height: int = 720, points_per_edge: int = 16
    ) -> np.ndarray:
        """Outline (N, 2) in panorama pixels of what a ``width``×``height`` view at ``pose`` sees.

        The image border is sampled along each edge and mapped through pan/tilt, so the outline
        bends the way a tilted view really does (wider at the top when looking down).
        """
        cv = self.view(pose, width, height)
        s = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
        w, h = float(width), float(height)
        border = np.concatenate(
            [
                np.stack([s * w, np.zeros_like(s)], -1),  # top, left → right
                np.stack([np.full_like(s, w), s * h], -1),  # right, top → bottom
                np.stack([(1 - s) * w, np.full_like(s, h)], -1),  # bottom, right → left
                np.stack([np.zeros_like(s), (1 - s) * h], -1),  # left, bottom → top
            ]
        )
        pan, tilt = cv.pixel_to_pan_tilt(border)
        # keep the outline in one piece around the pose, then place it like to_pixel does
        pan = pose.pan_deg + np.asarray(wrap_deg(pan - pose.pan_deg))
        x, y = self.to_pixel(pan, tilt)
        return np.stack([x, y], -1)

    def draw_footprint(
        self,
        image: np.ndarray,
        pose: PTZPose,
        *,
        color: tuple[int, int, int] = (0, 255, 255),
        thickness: int = 2,
        label: str | None = None,
        width: int = 1280,
        height: int = 720,
    ) -> np.ndarray:
        """Draw the footprint of ``pose`` (and an optional label) onto ``image`` in place.

        ``image`` must have the panorama's size (the panorama itself, a copy, or an annotated
        version of it). Returns ``image``.
        """
        poly = self.footprint(pose, width, height)
        pts = np.round(poly * 16).astype(np.int32)
        cv2.polylines(image, [pts], True, color, thickness, cv2.LINE_AA, shift=4)
        cx, cy = self.to_pixel(pose.pan_deg, pose.tilt_deg)
        r = max(3, thickness + 2)
        cv2.line(image, (int(cx) - r, int(cy)), (int(cx) + r, int(cy)), color, 1, cv2.LINE_AA)
        cv2.line(image, (int(cx), int(cy) - r), (int(cx), int(cy) + r), color, 1, cv2.LINE_AA)
        if label:
            x0, y0 = poly.min(axis=0)
            scale = max(0.35, min(0.6, self.height / 1400))
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            tx = int(np.clip(x0, 0, max(self.width - tw - 4, 0)))
            ty = int(np.clip(y0 - 4, th + 2, self.height - 2))
            cv2.rectangle(image, (tx, ty - th - 3), (tx + tw + 4, ty + base - 1), color, -1)
            cv2.putText(
                image,
                label,
                (tx + 2, ty - 1),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        return image

    def with_footprint(self, pose: PTZPose, **kwargs: Any) -> np.ndarray:
        """A copy of the panorama with the footprint of ``pose`` drawn on it (one video frame)."""
        return self.draw_footprint(self.image.copy(), pose, **kwargs)

    def resized(self, width_px: int) -> Panorama:
        """The same panorama at another width (area-averaged when shrinking: anti-aliased)."""
        scale = width_px / self.width
        height_px = max(1, int(round(self.height * scale)))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        image = cv2.resize(self.image, (width_px, height_px), interpolation=interp)
        ppd = self.px_per_deg * scale
        # keep the pan range exact; the tilt range follows the rounded height
        tilt0 = self.tilt_range[1] - height_px / ppd
        return Panorama(
            image,
            self.t,
            self.pan_range,
            (tilt0, self.tilt_range[1]),
            ppd,
            self.mount,
            self.heading_deg,
            self.fov_h_1x_deg,
        )

    # ------------------------------------------------------------------ ground-truth marks
    def worker_boxes(self, site: Site) -> np.ndarray:
        """Panorama boxes (N, 4) x_min, y_min, x_max, y_max of every worker at this time."""
        workers = site.workers_at(self.t)
        n = len(workers.xy)
        foot = np.concatenate([workers.xy, np.zeros((n, 1))], axis=1)
        top = foot + np.stack([np.zeros(n), np.zeros(n), site.heights], -1)
        uv, rng = self.world_to_pixel(np.concatenate([foot, top]))
        half = np.degrees(np.arctan2(0.35, np.maximum(rng[:n], 0.5))) * self.px_per_deg
        x = uv[:n, 0]
        return np.stack([x - half, uv[n:, 1], x + half, uv[:n, 1]], -1)

    def annotate(
        self, site: Site, image: np.ndarray | None = None, *, label_scale: float = 0.45
    ) -> np.ndarray:
        """Mark workers (thin green boxes), active exclusion zones (red outlines) and each active
        hazard (a box in its type's colour, labelled with the hazard id) on a copy of the image.

        Marks come from the simulator's ground truth projected through the mount geometry: this
        is a picture for people, never an input to the agent.
        """
        out = self.image.copy() if image is None else image
        t = self.t
        for mi, zone in enumerate(site.zones):
            if not site.zone_active(mi, t):
                continue
            ring = np.concatenate([zone, zone[:1]])
            seg = np.linalg.norm(np.diff(ring, axis=0), axis=1)
            dense = [
                ring[k] + (ring[k + 1] - ring[k]) * f[:, None]
                for k in range(len(seg))
                for f in [np.linspace(0.0, 1.0, max(2, int(seg[k])), endpoint=False)]
            ]
            pts = np.concatenate(dense + [ring[:1]])
            uv, _ = self.world_to_pixel(np.concatenate([pts, np.zeros((len(pts), 1))], axis=1))
            poly = np.round(uv * 16).astype(np.int32)
            cv2.polylines(out, [poly], False, (40, 40, 230), 2, cv2.LINE_AA, shift=4)
        boxes = self.worker_boxes(site)
        labels: dict[int, list[str]] = {}
        for hz in site.active_hazards(t):
            if hz.worker is not None:
                labels.setdefault(hz.worker, []).append(hz.id)
        for wi, box in enumerate(boxes):
            if wi in labels:
                continue
            _box(out, box, WORKER_OK_COLOR, 1, pad=1.0)
        for wi, ids in labels.items():
            color = HAZARD_COLORS[ids[0].rsplit("-", 1)[0]]
            _box(out, boxes[wi], color, 2, pad=3.0)
            _label(out, ", ".join(ids), boxes[wi], color, label_scale)
        for fire in site.fires_at(t):
            hz_ids = [h.id for h in site.active_hazards(t) if h.fire == fire.index]
            base = np.array([fire.xy[0], fire.xy[1], 0.0])
            r = fire.size_m
            pts = base + np.array(
                [[-r, 0, 0], [r, 0, 0], [0, -r, 0], [0, r, 0], [0, 0, fire.plume_m + r]]
            )
            uv, _ = self.world_to_pixel(pts)
            box = np.array([*uv.min(axis=0), *uv.max(axis=0)])
            _box(out, box, HAZARD_COLORS["fire_smoke"], 2, pad=3.0)
            _label(out, ", ".join(hz_ids) or "fire", box, HAZARD_COLORS["fire_smoke"], label_scale)
        return out


def visible_pan_range(
    renderer: Renderer, margin_deg: float = PAN_MARGIN_DEG
) -> tuple[float, float]:
    """Pan interval (degrees from the mount heading) that holds the whole site, within the limits.

    The site's corners, structures and machine reach are measured from the pole; a pole inside
    the site (or a site wider than 180° from it) gets the head's full pan range.
    """
    spec = renderer.spec
    lim = spec.camera.limits
    w, d = spec.size_m
    cam = np.asarray(renderer.cam_pos[:2])
    points = [np.array([[0.0, 0.0], [w, 0.0], [w, d], [0.0, d]])]
    points += [np.asarray(s.center, dtype=np.float64)[None] for s in spec.structures]
    for m in spec.machines:
        reach = {"excavator": 11.0, "crane": 33.0, "truck": 5.0}[m.kind]
        base = np.asarray([m.position] + list(m.route), dtype=np.float64)
        ring = np.array([[reach, 0.0], [-reach, 0.0], [0.0, reach], [0.0, -reach]])
        points.append((base[:, None, :] + ring[None]).reshape(-1, 2))
    pts = np.concatenate(points)
    inside = -2.0 <= cam[0] <= w + 2.0 and -2.0 <= cam[1] <= d + 2.0
    if inside:
        return float(lim.pan_min_deg), float(lim.pan_max_deg)
    v = pts - cam
    pans = np.degrees(np.arctan2(v[:, 0], v[:, 1])) - renderer.heading
    centre = np.array([w / 2.0, d / 2.0]) - cam
    mid = float(wrap_deg(math.degrees(math.atan2(centre[0], centre[1])) - renderer.heading))
    rel = np.asarray(wrap_deg(pans - mid))
    lo, hi = mid + float(rel.min()) - margin_deg, mid + float(rel.max()) + margin_deg
    if hi - lo >= 180.0 + 2 * margin_deg:
        return float(lim.pan_min_deg), float(lim.pan_max_deg)
    return max(lo, float(lim.pan_min_deg)), min(hi, float(lim.pan_max_deg))


def render_panorama(
    renderer: Renderer,
    t: float,
    *,
    pan_range: tuple[float, float] | None = None,
    tilt_range: tuple[float, float] | None = None,
    width_px: int | None = None,
    strip_deg: float = 6.0,
    band_deg: float = 36.0,
    noise: bool = False,
) -> Panorama:
    """Render the panorama of the site at time ``t`` through the pinhole renderer.

    ``pan_range`` defaults to :func:`visible_pan_range`, ``tilt_range`` to the head's tilt limits.
    ``width_px`` defaults to the resolution of a 1× view (1280 px per 60°). Tiles are at most
    ``strip_deg`` wide and ``band_deg`` tall, so each one picks its own ground texture level.
    """
    lim = renderer.spec.camera.limits
    if pan_range is None:
        pan_range = visible_pan_range(renderer)
    if tilt_range is None:
        tilt_range = (float(lim.tilt_min_deg), float(lim.tilt_max_deg))
    p0, p1 = float(pan_range[0]), float(pan_range[1])
    t0, t1 = float(tilt_range[0]), float(tilt_range[1])
    if not (p1 > p0 and t1 > t0):
        raise ValueError(f"empty panorama range: pan {pan_range}, tilt {tilt_range}")
    if not (t0 > -90.0 and t1 < 90.0):
        raise ValueError(f"tilt_range must lie within (-90, 90) degrees, got {tilt_range}")
    if width_px is None:
        width_px = int(round((p1 - p0) * REFERENCE_WIDTH_PX / renderer.fov_1x))
    ppd = width_px / (p1 - p0)
    height_px = max(1, int(round((t1 - t0) * ppd)))
    image = np.empty((height_px, width_px, 3), dtype=np.uint8)
    num_cols = max(1, math.ceil((p1 - p0) / strip_deg))
    num_rows = max(1, math.ceil((t1 - t0) / band_deg))
    col_edges = np.round(np.linspace(0, width_px, num_cols + 1)).astype(int)
    row_edges = np.round(np.linspace(0, height_px, num_rows + 1)).astype(int)
    index = 0
    for r in range(num_rows):
        ya, yb = int(row_edges[r]), int(row_edges[r + 1])
        if yb <= ya:
            continue
        for c in range(num_cols):
            xa, xb = int(col_edges[c]), int(col_edges[c + 1])
            if xb <= xa:
                continue
            image[ya:yb, xa:xb] = _render_tile(
                renderer, t, (xa, xb), (ya, yb), p0, t1, ppd, index, noise
            )
            index += 1
    # pixels are square: the bottom edge is where the rounded height puts it (< ½ px off t0)
    return Panorama(
        image,
        float(t),
        (p0, p1),
        (t1 - height_px / ppd, t1),
        ppd,
        renderer.cam_pos,
        renderer.heading,
        renderer.fov_1x,
    )


def _render_tile(
    renderer: Renderer,
    t: float,
    cols: tuple[int, int],
    rows: tuple[int, int],
    pan0: float,
    tilt1: float,
    ppd: float,
    index: int,
    noise: bool,
) -> np.ndarray:
    """Render one pinhole view covering a panorama tile and resample it onto the pan/tilt grid."""
    xa, xb = cols
    ya, yb = rows
    pans = pan0 + (np.arange(xa, xb) + 0.5) / ppd
    tilts = tilt1 - (np.arange(ya, yb) + 0.5) / ppd
    pan_c = pan0 + (xa + xb) / 2.0 / ppd
    tilt_c = tilt1 - (ya + yb) / 2.0 / ppd
    # rays through the tile's border pixels, in a camera at the tile centre, give the pinhole
    # image extent that covers it
    edge_p = np.concatenate([pans[[0, -1]].repeat(len(tilts)), np.tile(pans, 2)])
    edge_t = np.concatenate([np.tile(tilts, 2), tilts[[0, -1]].repeat(len(pans))])
    focal = ppd * 180.0 / math.pi  # pinhole px/rad at the image centre = panorama px/rad
    probe = CameraView(renderer.cam_pos, renderer.heading, PTZPose(pan_c, tilt_c, 1.0), 2, 2)
    rot = probe.rotation()
    cam = direction(renderer.heading + edge_p, edge_t) @ rot.T
    half_w = float(np.abs(cam[:, 0] / cam[:, 2]).max()) * focal + 2.0
    half_h = float(np.abs(cam[:, 1] / cam[:, 2]).max()) * focal + 2.0
    width, height = int(math.ceil(2 * half_w)), int(math.ceil(2 * half_h))
    fov_h = math.degrees(2.0 * math.atan((width / 2.0) / focal))
    pose = PTZPose(pan_c, tilt_c, renderer.fov_1x / fov_h)
    frame, _ = renderer.render(pose, t, width, height, index=index, truth=False, noise=noise)
    view = renderer.view(pose, width, height)
    grid = direction(renderer.heading + pans[None, :], tilts[:, None]) @ view.rotation().T
    f = view.focal
    map_x = (grid[..., 0] / grid[..., 2] * f + width / 2.0 - 0.5).astype(np.float32)
    map_y = (grid[..., 1] / grid[..., 2] * f + height / 2.0 - 0.5).astype(np.float32)
    return cv2.remap(frame.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _box(
    img: np.ndarray, box: np.ndarray, color: tuple[int, int, int], thickness: int, pad: float
) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    cv2.rectangle(
        img,
        (int(round((x0 - pad) * 16)), int(round((y0 - pad) * 16))),
        (int(round((x1 + pad) * 16)), int(round((y1 + pad) * 16))),
        color,
        thickness,
        cv2.LINE_AA,
        shift=4,
    )


def _label(
    img: np.ndarray, text: str, box: np.ndarray, color: tuple[int, int, int], scale: float
) -> None:
    """A filled tag with ``text`` just above ``box`` (below it when there is no room)."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    h, w = img.shape[:2]
    x = int(np.clip(box[0] - 3, 0, max(w - tw - 6, 0)))
    y = int(box[1] - 5)
    if y - th - base < 0:
        y = int(box[3] + th + 8)
    y = int(np.clip(y, th + 3, h - base - 1))
    cv2.rectangle(img, (x, y - th - 3), (x + tw + 5, y + base - 1), color, -1)
    cv2.putText(
        img, text, (x + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
    )
