"""Kinematics of the virtual PTZ head: speed limits, command latency, velocity and absolute moves.

Commands mirror ONVIF PTZ: :class:`ContinuousMove` (velocities with a timeout),
:class:`AbsoluteMove` (a target pose, reached at the axes' maximum speeds — the travel time is
paid), :class:`RelativeMove` and :class:`Stop`. A command issued at time ``t`` takes effect at
``t + latency_s``. Zoom moves in log space, so a zoom speed is "factor per second".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge.geometry import PTZPose
from firmware_config.camera import PTZLimitsSpec


@dataclass(frozen=True)
class ContinuousMove:
    """Velocities as fractions (−1…1) of each axis' maximum speed, for ``timeout_s``."""

    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    timeout_s: float = 1.0


@dataclass(frozen=True)
class AbsoluteMove:
    """Move to a pose; every axis travels at its maximum speed."""

    pan_deg: float
    tilt_deg: float
    zoom: float


@dataclass(frozen=True)
class RelativeMove:
    """Move by a pan/tilt offset (degrees) and a zoom factor."""

    pan_deg: float = 0.0
    tilt_deg: float = 0.0
    zoom_factor: float = 1.0


@dataclass(frozen=True)
class Stop:
    """Stop all axes where they are."""


PTZCommand = ContinuousMove | AbsoluteMove | RelativeMove | Stop


class PTZHead:
    """State of one PTZ head; advance it with :meth:`advance`, command it with :meth:`command`."""

    def __init__(self, limits: PTZLimitsSpec, pose: PTZPose | None = None):
        self.limits = limits
        start = pose or PTZPose(0.0, -20.0, 1.0)
        self.pan, self.tilt, self.log_zoom = self._clamp(
            start.pan_deg, start.tilt_deg, math.log(start.zoom)
        )
        self.t = 0.0
        self._pending: list[tuple[float, PTZCommand]] = []
        self._target: tuple[float, float, float] | None = None
        self._velocity = (0.0, 0.0, 0.0)
        self._velocity_until = 0.0
        self.travel_deg = 0.0  # total pan + tilt travel
        self.rate_dps = (0.0, 0.0)  # last pan/tilt speed, for motion blur

    @property
    def pose(self) -> PTZPose:
        return PTZPose(self.pan, self.tilt, math.exp(self.log_zoom))

    @property
    def moving(self) -> bool:
        return self._target is not None or self._velocity != (0.0, 0.0, 0.0) or bool(self._pending)

    def _clamp(self, pan: float, tilt: float, log_zoom: float) -> tuple[float, float, float]:
        lim = self.limits
        return (
            min(max(pan, lim.pan_min_deg), lim.pan_max_deg),
            min(max(tilt, lim.tilt_min_deg), lim.tilt_max_deg),
            min(max(log_zoom, 0.0), math.log(lim.zoom_max)),
        )

    def command(self, cmd: PTZCommand) -> None:
        """Queue a command; it takes effect after the head's latency."""
        self._pending.append((self.t + self.limits.latency_s, cmd))

    def _apply(self, cmd: PTZCommand, t: float) -> None:
        if isinstance(cmd, Stop):
            self._target, self._velocity = None, (0.0, 0.0, 0.0)
        elif isinstance(cmd, AbsoluteMove):
            self._velocity = (0.0, 0.0, 0.0)
            self._target = self._clamp(cmd.pan_deg, cmd.tilt_deg, math.log(max(cmd.zoom, 1e-3)))
        elif isinstance(cmd, RelativeMove):
            base = self._target or (self.pan, self.tilt, self.log_zoom)
            self._velocity = (0.0, 0.0, 0.0)
            self._target = self._clamp(
                base[0] + cmd.pan_deg,
                base[1] + cmd.tilt_deg,
                base[2] + math.log(max(cmd.zoom_factor, 1e-3)),
            )
        elif isinstance(cmd, ContinuousMove):
            self._target = None
            clip = lambda v: max(-1.0, min(1.0, v))  # noqa: E731
            self._velocity = (clip(cmd.pan), clip(cmd.tilt), clip(cmd.zoom))
            self._velocity_until = t + cmd.timeout_s
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"unknown PTZ command {cmd!r}")

    def advance(self, dt: float) -> None:
        """Move for ``dt`` seconds under the speed limits, applying commands as they come due."""
        end = self.t + dt
        start_pan, start_tilt = self.pan, self.tilt
        while self.t < end - 1e-12:
            due = min((t for t, _ in self._pending), default=math.inf)
            step_end = min(end, due)
            if self._velocity != (0.0, 0.0, 0.0):
                step_end = min(step_end, max(self._velocity_until, self.t))
            self._move(step_end - self.t)
            self.t = step_end
            if self._velocity != (0.0, 0.0, 0.0) and self.t >= self._velocity_until - 1e-12:
                self._velocity = (0.0, 0.0, 0.0)
            ready = [c for c in self._pending if c[0] <= self.t + 1e-12]
            if ready:
                self._pending = [c for c in self._pending if c[0] > self.t + 1e-12]
                for t_due, cmd in ready:
                    self._apply(cmd, t_due)
        moved = abs(self.pan - start_pan) + abs(self.tilt - start_tilt)
        self.travel_deg += moved
        self.rate_dps = (
            ((self.pan - start_pan) / dt, (self.tilt - start_tilt) / dt) if dt > 0 else (0.0, 0.0)
        )

    def _move(self, dt: float) -> None:
        if dt <= 0:
            return
        lim = self.limits
        if self._target is not None:
            tp, tt, tz = self._target
            self.pan = _approach(self.pan, tp, lim.pan_speed_dps * dt)
            self.tilt = _approach(self.tilt, tt, lim.tilt_speed_dps * dt)
            self.log_zoom = _approach(self.log_zoom, tz, lim.zoom_speed_lps * dt)
            if (self.pan, self.tilt, self.log_zoom) == (tp, tt, tz):
                self._target = None
        elif self._velocity != (0.0, 0.0, 0.0):
            vp, vt, vz = self._velocity
            self.pan, self.tilt, self.log_zoom = self._clamp(
                self.pan + vp * lim.pan_speed_dps * dt,
                self.tilt + vt * lim.tilt_speed_dps * dt,
                self.log_zoom + vz * lim.zoom_speed_lps * dt,
            )

    def travel_time_s(self, pose: PTZPose, start: PTZPose | None = None) -> float:
        """Seconds an absolute move from ``start`` (default: now) to ``pose`` takes."""
        return travel_time_s(self.limits, start or self.pose, pose)


def travel_time_s(limits: PTZLimitsSpec, a: PTZPose, b: PTZPose) -> float:
    """Latency plus the slowest axis' travel time between two poses."""
    return limits.latency_s + max(
        abs(b.pan_deg - a.pan_deg) / limits.pan_speed_dps,
        abs(b.tilt_deg - a.tilt_deg) / limits.tilt_speed_dps,
        abs(math.log(b.zoom) - math.log(a.zoom)) / limits.zoom_speed_lps,
    )


def _approach(value: float, target: float, step: float) -> float:
    if abs(target - value) <= step:
        return target
    return value + math.copysign(step, target - value)
