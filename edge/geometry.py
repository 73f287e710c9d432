"""Pinhole geometry of a pole-mounted PTZ camera: world ↔ pan/tilt ↔ image.

World frame: x east, y north, z up, metres. A camera at ``position`` looks along yaw
``heading_deg + pan_deg`` (compass style: 0° = north, positive = clockwise seen from above, so a
positive pan turns right) and pitch ``tilt_deg`` (negative = down). The horizontal field of view is
``fov_h_1x_deg / zoom`` (the optical zoom of a PTZ block is specified that way), pixels are square.

The same functions serve the simulator (rendering, ground truth) and the edge agent (mapping its
detections to pan/tilt and to the ground plane), so both see one geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

#: Resolution at which "resolvable" is defined (DESIGN.md): pixel sizes are quoted for this width.
REFERENCE_WIDTH_PX = 1280
REFERENCE_HEIGHT_PX = 720


@dataclass(frozen=True)
class PTZPose:
    """Pan/tilt in degrees (pan relative to the mount heading), zoom as a factor (1×–30×)."""

    pan_deg: float
    tilt_deg: float
    zoom: float


def fov_h_deg(zoom: float, fov_h_1x_deg: float = 60.0) -> float:
    """Horizontal field of view at ``zoom``."""
    return fov_h_1x_deg / zoom


def focal_px(width_px: float, zoom: float, fov_h_1x_deg: float = 60.0) -> float:
    """Focal length in pixels for an image ``width_px`` wide."""
    return (width_px / 2.0) / math.tan(math.radians(fov_h_deg(zoom, fov_h_1x_deg)) / 2.0)


def fov_v_deg(zoom: float, width_px: float, height_px: float, fov_h_1x_deg: float = 60.0) -> float:
    """Vertical field of view for the given aspect ratio."""
    f = focal_px(width_px, zoom, fov_h_1x_deg)
    return math.degrees(2.0 * math.atan((height_px / 2.0) / f))


def direction(yaw_deg: np.ndarray | float, pitch_deg: np.ndarray | float) -> np.ndarray:
    """Unit direction vectors (..., 3) for compass yaw and pitch in degrees."""
    yaw = np.radians(yaw_deg)
    pitch = np.radians(pitch_deg)
    cp = np.cos(pitch)
    return np.stack([np.sin(yaw) * cp, np.cos(yaw) * cp, np.sin(pitch) * np.ones_like(yaw)], -1)


def yaw_pitch_of(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`direction` for (..., 3) vectors (not necessarily unit)."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    yaw = np.degrees(np.arctan2(x, y))
    pitch = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return yaw, pitch


def wrap_deg(angle):
    """Wrap degrees to [-180, 180); keeps scalars scalar."""
    wrapped = np.mod(np.asarray(angle, dtype=np.float64) + 180.0, 360.0) - 180.0
    return float(wrapped) if np.ndim(wrapped) == 0 else wrapped


@dataclass(frozen=True)
class CameraView:
    """One rendered view: mount, pose and image size, with projection helpers."""

    position: tuple[float, float, float]
    heading_deg: float
    pose: PTZPose
    width: int
    height: int
    fov_h_1x_deg: float = 60.0

    # --- derived quantities (cheap; computed on demand) ---------------------------------------
    @property
    def yaw_deg(self) -> float:
        return self.heading_deg + self.pose.pan_deg

    @cached_property
    def focal(self) -> float:
        return focal_px(self.width, self.pose.zoom, self.fov_h_1x_deg)

    @property
    def fov_h(self) -> float:
        return fov_h_deg(self.pose.zoom, self.fov_h_1x_deg)

    @property
    def fov_v(self) -> float:
        return fov_v_deg(self.pose.zoom, self.width, self.height, self.fov_h_1x_deg)

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Right, up and forward unit vectors in world coordinates."""
        psi = math.radians(self.yaw_deg)
        th = math.radians(self.pose.tilt_deg)
        sp, cp, st, ct = math.sin(psi), math.cos(psi), math.sin(th), math.cos(th)
        right = np.array([cp, -sp, 0.0])
        up = np.array([-sp * st, -cp * st, ct])
        fwd = np.array([sp * ct, cp * ct, st])
        return right, up, fwd

    def rotation(self) -> np.ndarray:
        """3×3 world→camera rotation: rows right, down, forward (OpenCV camera convention)."""
        return self._rotation

    @cached_property
    def _rotation(self) -> np.ndarray:
        r, u, f = self.basis()
        return np.stack([r, -u, f])

    @cached_property
    def _position(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)

    def intrinsics(self) -> np.ndarray:
        f = self.focal
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) → camera coordinates (x right, y down, z depth)."""
        return (np.asarray(points, dtype=np.float64) - self._position) @ self._rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) → pixels (..., 2) and depth (...); depth ≤ 0 is behind."""
        cam = self.to_camera(points)
        z = cam[..., 2]
        safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
        uv = cam[..., :2] * (self.focal / safe)[..., None]
        uv[..., 0] += self.width / 2.0
        uv[..., 1] += self.height / 2.0
        return uv, z

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) → world unit ray directions (..., 3)."""
        uv = np.asarray(uv, dtype=np.float64)
        f = self.focal
        x = (uv[..., 0] - self.width / 2.0) / f
        y = (uv[..., 1] - self.height / 2.0) / f
        cam = np.stack([x, y, np.ones_like(x)], -1)
        world = cam @ self.rotation()
        return world / np.linalg.norm(world, axis=-1, keepdims=True)

    def pixel_to_pan_tilt(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates → (pan_deg, tilt_deg) of the ray through them."""
        yaw, pitch = yaw_pitch_of(self.pixel_rays(uv))
        return np.asarray(wrap_deg(yaw - self.heading_deg)), pitch

    def pixel_to_ground(self, uv: np.ndarray, ground_z: float = 0.0) -> np.ndarray:
        """Pixel coordinates → ground-plane (x, y); NaN where the ray does not hit the ground."""
        rays = self.pixel_rays(uv)
        h = self.position[2] - ground_z
        dz = rays[..., 2]
        t = np.where(dz < -1e-6, h / np.maximum(-dz, 1e-9), np.nan)
        x = self.position[0] + t * rays[..., 0]
        y = self.position[1] + t * rays[..., 1]
        return np.stack([x, y], -1)

    def ground_homography(self) -> np.ndarray:
        """3×3 homography mapping ground-plane (x, y, 1) to homogeneous pixel coordinates."""
        k = self.intrinsics()
        r = self.rotation()
        cx, cy, cz = self.position
        # (x, y, 1) -> (x - cx, y - cy, -cz): the world point relative to the camera
        offset = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, -cz]])
        return k @ r @ offset

    def horizon_row(self) -> float:
        """Image row of the horizon (rows above it see sky); may lie outside the image."""
        return self.height / 2.0 + self.focal * math.tan(math.radians(self.pose.tilt_deg))


def pan_tilt_of_point(
    position: tuple[float, float, float], heading_deg: float, point: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (..., 3) → (pan_deg, tilt_deg, range_m) as seen from a mount."""
    v = np.asarray(point, dtype=np.float64) - np.asarray(position)
    yaw, pitch = yaw_pitch_of(v)
    return np.asarray(wrap_deg(yaw - heading_deg)), pitch, np.linalg.norm(v, axis=-1)


def zoom_for_size(
    range_m: np.ndarray | float,
    object_size_m: float,
    min_px: float,
    fov_h_1x_deg: float = 60.0,
    width_px: int = REFERENCE_WIDTH_PX,
) -> np.ndarray:
    """Smallest zoom at which an object ``object_size_m`` tall at ``range_m`` spans ``min_px``."""
    need_focal = min_px * np.asarray(range_m, dtype=np.float64) / object_size_m
    half_fov = np.arctan((width_px / 2.0) / need_focal)
    return fov_h_1x_deg / np.degrees(2.0 * half_fov)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even–odd rule, vectorised over points (..., 2) for one polygon (M, 2)."""
    x = points[..., 0][..., None]
    y = points[..., 1][..., None]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.logical_xor.reduce(crosses & (x < x_at), axis=-1)
