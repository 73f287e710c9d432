"""The policy's observation, built on the device from what the device has.

Inputs are only the camera frame, the detections found in it, the camera pose, the time and the
camera's calibration (mount position, height, heading, limits: configuration, not ground truth).
The gym environment (``trainer/envs``) uses this same builder, so a policy is trained on exactly
the observation the device computes.

Observation (``sitehawk.obs/1``):

* ``view`` — uint8 (S, S, 3) RGB, the frame resized to S×S (S = 96 by default);
* ``ptz`` — float32[3] in [-1, 1]: pan over its range, tilt over its range, log-zoom over its range;
* ``maps`` — float32[3, H, W] on a pan–tilt grid covering the head's whole range
  (rows: tilt from the top limit down, columns: pan from the left limit):

  0. *staleness* — time since the cell was last seen at verifying resolution, / ``stale_s``,
     capped at 1 (1 = never or long ago; cells whose rays never reach the ground are 0);
  1. *candidates* — unverified detections (people and smoke too small to judge), their score,
     fading with ``half_life_s``; cleared when the cell is seen at verifying resolution;
  2. *hazards* — hazards the detections show at verifying resolution (bare head, person without
     vest, smoke big enough), fading with ``half_life_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.geometry import REFERENCE_WIDTH_PX, CameraView, PTZPose, focal_px
from edge.perception.detection import Detection
from firmware_config.camera import CameraMountSpec

OBS_SCHEMA = "sitehawk.obs/1"
MAP_CHANNELS = ("staleness", "candidates", "hazards")

#: Body-part sizes used to judge resolution from a person box (fractions of person height).
HEAD_FRACTION = 0.15
TORSO_FRACTION = 0.34


@dataclass(frozen=True)
class ObservationConfig:
    """Shape and time constants of the observation; part of a trained policy's manifest."""

    view_size: int = 96
    grid_h: int = 14
    grid_w: int = 68
    stale_s: float = 60.0
    half_life_s: float = 10.0
    verify_head_px: float = 16.0  # reference (1280-wide) pixels a head needs to be judged
    verify_smoke_px: float = 32.0
    max_range_m: float = 250.0
    person_height_m: float = 1.75


@dataclass(frozen=True)
class Target:
    """A detection placed in the world: where to point, how far, and what is known about it."""

    kind: str  # "person" or "fire_smoke"
    pan_deg: float
    tilt_deg: float
    range_m: float  # slant range estimated on the flat-ground model (nan if the ray misses)
    ground_xy: tuple[float, float] | None
    score: float
    size_ref_px: float  # the part that must be judged (head / smoke), in reference pixels
    verified: bool  # seen at verifying resolution in this frame
    hazard: str | None  # "no_helmet" / "no_vest" / "fire_smoke" when verified and hazardous


@dataclass
class Observation:
    """What a policy sees at one control step."""

    view: np.ndarray
    ptz: np.ndarray
    maps: np.ndarray
    pose: PTZPose
    t: float
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The gym/ONNX observation: ``view``, ``ptz``, ``maps``."""
        return {"view": self.view, "ptz": self.ptz, "maps": self.maps}


def _iou_contains(inner: tuple[float, ...], outer: tuple[float, ...]) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    x0, y0 = max(inner[0], outer[0]), max(inner[1], outer[1])
    x1, y1 = min(inner[2], outer[2]), min(inner[3], outer[3])
    area = max((inner[2] - inner[0]) * (inner[3] - inner[1]), 1e-9)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / area


class ObservationBuilder:
    """Keeps the pan–tilt memory of one camera and turns each frame into an :class:`Observation`."""

    def __init__(self, camera: CameraMountSpec, config: ObservationConfig | None = None):
        self.camera = camera
        self.config = config or ObservationConfig()
        cfg, lim = self.config, camera.limits
        self.position = (
            float(camera.position[0]),
            float(camera.position[1]),
            float(camera.height_m),
        )
        # cell centres
        self.pan_centres = (
            lim.pan_min_deg
            + (np.arange(cfg.grid_w) + 0.5) * (lim.pan_max_deg - lim.pan_min_deg) / cfg.grid_w
        )
        self.tilt_centres = (
            lim.tilt_max_deg
            - (np.arange(cfg.grid_h) + 0.5) * (lim.tilt_max_deg - lim.tilt_min_deg) / cfg.grid_h
        )
        down = np.radians(-self.tilt_centres)
        with np.errstate(divide="ignore"):
            rng = np.where(down > 1e-3, camera.height_m / np.sin(np.maximum(down, 1e-3)), np.inf)
        self.cell_range_m = rng  # slant range to the ground per tilt row
        self.ground_rows = rng <= cfg.max_range_m
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self.last_seen = np.full((cfg.grid_h, cfg.grid_w), -np.inf)
        self.candidates = np.zeros((cfg.grid_h, cfg.grid_w), dtype=np.float32)
        self.hazards = np.zeros((cfg.grid_h, cfg.grid_w), dtype=np.float32)
        self._t_prev: float | None = None

    # ------------------------------------------------------------------ grid helpers
    def cell_of(self, pan_deg: float, tilt_deg: float) -> tuple[int, int]:
        lim, cfg = self.camera.limits, self.config
        col = int((pan_deg - lim.pan_min_deg) / (lim.pan_max_deg - lim.pan_min_deg) * cfg.grid_w)
        row = int(
            (lim.tilt_max_deg - tilt_deg) / (lim.tilt_max_deg - lim.tilt_min_deg) * cfg.grid_h
        )
        return min(max(row, 0), cfg.grid_h - 1), min(max(col, 0), cfg.grid_w - 1)

    def normalised_pose(self, pose: PTZPose) -> np.ndarray:
        lim = self.camera.limits
        return np.array(
            [
                2 * (pose.pan_deg - lim.pan_min_deg) / (lim.pan_max_deg - lim.pan_min_deg) - 1,
                2 * (pose.tilt_deg - lim.tilt_min_deg) / (lim.tilt_max_deg - lim.tilt_min_deg) - 1,
                # a fixed-zoom camera (zoom_max 1) sits at -1
                2 * math.log(pose.zoom) / max(math.log(lim.zoom_max), 1e-9) - 1,
            ],
            dtype=np.float32,
        )

    def verifying_mask(self, pose: PTZPose, aspect: float = 9 / 16) -> np.ndarray:
        """Cells inside the current view where a person's head would be ≥ ``verify_head_px``."""
        cfg, lim = self.config, self.camera.limits
        fov_h = lim.fov_h_1x_deg / pose.zoom
        fov_v = math.degrees(2 * math.atan(math.tan(math.radians(fov_h / 2)) * aspect))
        in_pan = np.abs(self.pan_centres - pose.pan_deg) <= fov_h / 2
        in_tilt = np.abs(self.tilt_centres - pose.tilt_deg) <= fov_v / 2
        f_ref = focal_px(REFERENCE_WIDTH_PX, pose.zoom, lim.fov_h_1x_deg)
        head_px = f_ref * cfg.person_height_m * HEAD_FRACTION / self.cell_range_m
        ok_rows = in_tilt & (head_px >= cfg.verify_head_px) & self.ground_rows
        return ok_rows[:, None] & in_pan[None, :]

    # ------------------------------------------------------------------ main entry
    def update(
        self, image: np.ndarray, detections: list[Detection], pose: PTZPose, t: float
    ) -> Observation:
        """Fold one frame into the memory and return the observation."""
        cfg = self.config
        h, w = image.shape[:2]
        if self._t_prev is not None and t > self._t_prev:
            decay = 0.5 ** ((t - self._t_prev) / cfg.half_life_s)
            self.candidates *= decay
            self.hazards *= decay
        self._t_prev = t
        seen = self.verifying_mask(pose, aspect=h / w)
        self.last_seen[seen] = t
        self.candidates[seen] = 0.0
        targets = self.targets(detections, pose, w, h)
        for tg in targets:
            r, c = self.cell_of(tg.pan_deg, tg.tilt_deg)
            if tg.hazard is not None:
                self.hazards[r, c] = max(self.hazards[r, c], tg.score)
            elif not tg.verified:
                self.candidates[r, c] = max(self.candidates[r, c], tg.score)
        staleness = np.clip((t - self.last_seen) / cfg.stale_s, 0.0, 1.0).astype(np.float32)
        staleness[~self.ground_rows] = 0.0
        maps = np.stack([staleness, self.candidates, self.hazards]).astype(np.float32)
        if (h, w) == (cfg.view_size, cfg.view_size):
            view = image
        else:
            # a big device frame is averaged down (INTER_AREA: slow, but once per control step,
            # and without the aliasing INTER_LINEAR gives at 10×); small frames interpolate
            big = w > 2 * cfg.view_size or h > 2 * cfg.view_size
            interp = cv2.INTER_AREA if big else cv2.INTER_LINEAR
            view = cv2.resize(image, (cfg.view_size, cfg.view_size), interpolation=interp)
        view = np.ascontiguousarray(view[..., ::-1])  # BGR → RGB
        return Observation(view, self.normalised_pose(pose), maps, pose, t, targets)

    def targets(
        self, detections: list[Detection], pose: PTZPose, width: int, height: int
    ) -> list[Target]:
        """People and smoke found in this frame, placed in pan/tilt and on the ground."""
        cfg = self.config
        if not detections:
            return []
        view = CameraView(
            self.position,
            float(self.camera.heading_deg),
            pose,
            width,
            height,
            self.camera.limits.fov_h_1x_deg,
        )
        ref = REFERENCE_WIDTH_PX / width
        people = [d for d in detections if d.cls == "person"]
        heads = [d for d in detections if d.cls in ("head_helmet", "head_bare")]
        vests = [d for d in detections if d.cls == "vest"]
        smoke = [d for d in detections if d.cls == "fire_smoke"]
        out: list[Target] = []
        # a bare head with no person box around it still deserves a look
        lone_heads = [
            hd for hd in heads if not any(_iou_contains(hd.bbox, p.bbox) > 0.5 for p in people)
        ]
        points = [((p.bbox[0] + p.bbox[2]) / 2, p.bbox[3]) for p in people]
        points += [hd.center for hd in lone_heads]
        points += [((s.bbox[0] + s.bbox[2]) / 2, s.bbox[3]) for s in smoke]
        if not points:
            return []
        uv = np.array(points)
        pans, tilts = view.pixel_to_pan_tilt(uv)
        ground = view.pixel_to_ground(uv)
        for k, p in enumerate(people):
            head_px = p.height * ref * HEAD_FRACTION
            verified = head_px >= cfg.verify_head_px
            hazard = None
            if verified:
                mine = [hd for hd in heads if _iou_contains(hd.bbox, p.bbox) > 0.5]
                if any(hd.cls == "head_bare" for hd in mine) and not any(
                    hd.cls == "head_helmet" and hd.score > 0.8 for hd in mine
                ):
                    hazard = "no_helmet"
                elif not any(_iou_contains(v.bbox, p.bbox) > 0.5 for v in vests):
                    hazard = "no_vest"
            out.append(
                self._target(
                    "person", pans[k], tilts[k], ground[k], p.score, head_px, verified, hazard, pose
                )
            )
        base = len(people)
        for k, hd in enumerate(lone_heads):
            size = hd.height * ref
            verified = size >= cfg.verify_head_px
            hazard = "no_helmet" if verified and hd.cls == "head_bare" else None
            out.append(
                self._target(
                    "person",
                    pans[base + k],
                    tilts[base + k],
                    ground[base + k],
                    hd.score,
                    size,
                    verified,
                    hazard,
                    pose,
                )
            )
        base += len(lone_heads)
        for k, s in enumerate(smoke):
            size = s.height * ref
            verified = size >= cfg.verify_smoke_px
            out.append(
                self._target(
                    "fire_smoke",
                    pans[base + k],
                    tilts[base + k],
                    ground[base + k],
                    s.score,
                    size,
                    verified,
                    "fire_smoke" if verified else None,
                    pose,
                )
            )
        return out

    def _target(self, kind, pan, tilt, ground, score, size, verified, hazard, pose) -> Target:
        gx, gy = float(ground[0]), float(ground[1])
        if math.isfinite(gx):
            rng = math.dist((gx, gy, 0.0), self.position)
            gxy: tuple[float, float] | None = (gx, gy)
        else:
            rng, gxy = math.nan, None
        return Target(
            kind,
            float(pan),
            float(tilt),
            rng,
            gxy,
            float(score),
            float(size),
            bool(verified),
            hazard,
        )


def observation_space_shapes(config: ObservationConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the three observation arrays (for gym spaces and ONNX manifests)."""
    return {
        "view": (config.view_size, config.view_size, 3),
        "ptz": (3,),
        "maps": (len(MAP_CHANNELS), config.grid_h, config.grid_w),
    }
