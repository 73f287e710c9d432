"""One interface for every PTZ policy, a registry by name, and the discrete action set.

A policy is reset with a :class:`PolicyContext` (what the device is configured with: the camera
mount and limits, the work areas to watch, the control rate) and then asked for one PTZ command
per control step with :meth:`Policy.act`. Policies are registered as lazy ``"module:Class"``
entry points (as gymnasium registers envs), so ``sitehawk-edge --help`` imports none of them.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edge.geometry import PTZPose, fov_h_deg
from edge.policy.observation import Observation
from edge.sim.ptz import PTZCommand, RelativeMove, Stop
from firmware_config.camera import CameraMountSpec


@dataclass(frozen=True)
class PolicyContext:
    """Configuration a policy may use: never ground truth."""

    camera: CameraMountSpec
    work_areas: list[list[list[float]]] = field(default_factory=list)  # ground polygons, metres
    control_hz: float = 5.0
    verify_head_px: float = 16.0  # reference pixels a head needs before it can be judged
    verify_smoke_px: float = 32.0

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def mount(self) -> tuple[float, float, float]:
        return (
            float(self.camera.position[0]),
            float(self.camera.position[1]),
            float(self.camera.height_m),
        )


@runtime_checkable
class Policy(Protocol):
    """A PTZ policy. ``act`` returns one command per control step."""

    name: str

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None: ...

    def act(self, obs: Observation) -> PTZCommand: ...


# --------------------------------------------------------------------------------- actions
DISCRETE_ACTIONS = ("stay", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")
#: Fraction of the current field of view one pan/tilt action moves (capped by the axis speed).
FOV_STEP = 0.5
#: Zoom factor of one zoom action (capped by the zoom speed).
ZOOM_STEP = 1.5


def discrete_to_command(
    action: int, pose: PTZPose, camera: CameraMountSpec, dt: float
) -> PTZCommand:
    """Map a discrete action to a relative move.

    Pan and tilt move by half the current field of view (so consecutive views overlap by half),
    but never further than the axis can travel in one control step; zoom changes by ×1.5 (or
    what the zoom motor manages in a step). ``stay`` stops the head.
    """
    lim = camera.limits
    name = DISCRETE_ACTIONS[int(action)]
    fov_h = fov_h_deg(pose.zoom, lim.fov_h_1x_deg)
    fov_v = math.degrees(2 * math.atan(math.tan(math.radians(fov_h / 2)) * 9 / 16))
    pan_step = min(FOV_STEP * fov_h, lim.pan_speed_dps * dt)
    tilt_step = min(FOV_STEP * fov_v, lim.tilt_speed_dps * dt)
    zoom_step = math.exp(min(math.log(ZOOM_STEP), lim.zoom_speed_lps * dt))
    if name == "stay":
        return Stop()
    if name == "pan_left":
        return RelativeMove(pan_deg=-pan_step)
    if name == "pan_right":
        return RelativeMove(pan_deg=pan_step)
    if name == "tilt_up":
        return RelativeMove(tilt_deg=tilt_step)
    if name == "tilt_down":
        return RelativeMove(tilt_deg=-tilt_step)
    if name == "zoom_in":
        return RelativeMove(zoom_factor=zoom_step)
    return RelativeMove(zoom_factor=1.0 / zoom_step)


# --------------------------------------------------------------------------------- registry
POLICIES: dict[str, str] = {
    "static_wide": "edge.policy.baselines:StaticWidePolicy",
    "patrol": "edge.policy.baselines:PatrolPolicy",
    "random": "edge.policy.baselines:RandomPolicy",
    "greedy": "edge.policy.baselines:GreedyPolicy",
    "learned": "edge.policy.learned:OnnxPolicy",
}


def make_policy(name: str, **kwargs) -> Policy:
    """Instantiate a registered policy by name."""
    try:
        entry = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
    module, _, cls = entry.partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
