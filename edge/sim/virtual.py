"""A virtual PTZ camera on a virtual site: the simulator's one-stop facade."""

from __future__ import annotations

import math

import numpy as np

from edge.geometry import PTZPose, pan_tilt_of_point
from edge.sim.generate import generate_site
from edge.sim.ptz import PTZCommand, PTZHead
from edge.sim.render import Frame, FrameTruth, Renderer, Resolvability
from edge.sim.spec import SiteSpec
from edge.sim.world import Site


class VirtualSite:
    """Site + renderer + PTZ head + clock. ``capture`` renders what the camera sees now."""

    def __init__(
        self,
        spec: SiteSpec,
        *,
        resolvability: Resolvability | None = None,
        start_pose: PTZPose | None = None,
        start_t: float = 0.0,
    ):
        if not 0.0 <= start_t <= spec.duration_s:
            raise ValueError(
                f"start_t {start_t:g} s lies outside the site's 0..{spec.duration_s:g} s"
            )
        self.spec = spec
        self.site = Site(spec)
        self.renderer = Renderer(self.site, resolvability)
        self.head = PTZHead(spec.camera.limits, start_pose or self.home_pose())
        self.head.t = float(start_t)  # site time starts here (a resumed device, a later window)
        self.frame_index = 0

    @classmethod
    def from_seed(cls, seed: int, duration_s: float = 600.0, **kwargs) -> VirtualSite:
        return cls(generate_site(seed, duration_s=duration_s), **kwargs)

    @property
    def t(self) -> float:
        return self.head.t

    @property
    def pose(self) -> PTZPose:
        return self.head.pose

    def home_pose(self) -> PTZPose:
        """Zoom 1×, pointed at the centre of the work areas: the usual "home" preset."""
        pts = np.concatenate([np.asarray(a, dtype=np.float64) for a in self.spec.work_areas])
        centre = np.append(pts.mean(axis=0), 0.0)
        cam = self.spec.camera
        pan, tilt, _ = pan_tilt_of_point(
            (cam.position[0], cam.position[1], cam.height_m), cam.heading_deg, centre
        )
        lim = cam.limits
        return PTZPose(
            float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
            float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
            1.0,
        )

    def command(self, cmd: PTZCommand) -> None:
        self.head.command(cmd)

    def advance(self, dt: float) -> None:
        self.head.advance(dt)

    def capture(
        self, width: int, height: int, *, truth: bool = True, noise: bool = True
    ) -> tuple[Frame, FrameTruth | None]:
        """Render the current view at the current site time."""
        frame, gt = self.renderer.render(
            self.head.pose,
            self.head.t,
            width,
            height,
            index=self.frame_index,
            truth=truth,
            noise=noise,
            motion_dps=self.head.rate_dps,
        )
        self.frame_index += 1
        return frame, gt

    def mount(self) -> tuple[float, float, float]:
        cam = self.spec.camera
        return (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))


def required_zoom(
    range_m: float, size_m: float, min_px: float, limits_zoom_max: float, fov_1x: float = 60.0
) -> float:
    """Zoom at which an object of ``size_m`` at ``range_m`` spans ``min_px`` reference pixels."""
    half = math.atan((1280 / 2) / (min_px * range_m / size_m))
    return float(min(limits_zoom_max, max(1.0, fov_1x / math.degrees(2 * half))))
