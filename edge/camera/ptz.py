"""The PTZ driver protocol: the ONVIF PTZ service calls the agent makes, whatever the camera.

A policy returns one command per control step (:mod:`edge.sim.ptz`'s ONVIF-shaped dataclasses:
:class:`~edge.sim.ptz.ContinuousMove`, :class:`~edge.sim.ptz.AbsoluteMove`,
:class:`~edge.sim.ptz.RelativeMove`, :class:`~edge.sim.ptz.Stop`); :func:`send_command` turns it
into the matching call on a :class:`PTZDriver`. The virtual camera's in-process driver
(:class:`edge.camera.virtual.VirtualPTZ`) implements the protocol today; an ONVIF controller
(SOAP over HTTP: ``ContinuousMove`` with a timeout, ``AbsoluteMove``, ``RelativeMove``, ``Stop``,
``GetStatus``) slots in beside it without the agent changing.

Units are the agent's, not ONVIF's normalised spaces: degrees relative to the mount heading,
zoom as an optical factor, velocities as fractions (−1…1) of each axis' maximum speed. Mapping
them onto a camera's generic spaces is the driver's job (it knows the camera's calibration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from edge.geometry import PTZPose
from edge.sim.ptz import AbsoluteMove, ContinuousMove, PTZCommand, RelativeMove, Stop


class PTZError(RuntimeError):
    """A PTZ call failed (camera unreachable, refused, or answered with an error).

    The message names the camera's URL and the operation. The agent logs and counts it and
    keeps processing frames: a camera that cannot be steered still sees hazards.
    """


@dataclass(frozen=True)
class PTZStatus:
    """ONVIF ``GetStatus``: where the head is and whether it is moving."""

    pose: PTZPose
    moving: bool


@runtime_checkable
class PTZDriver(Protocol):
    """The PTZ service of one camera (ONVIF PTZ, or the virtual camera's in-process head)."""

    def absolute_move(self, pan_deg: float, tilt_deg: float, zoom: float) -> None:
        """Move to a pose at the axes' maximum speeds."""
        ...

    def relative_move(
        self, pan_deg: float = 0.0, tilt_deg: float = 0.0, zoom_factor: float = 1.0
    ) -> None:
        """Move by a pan/tilt offset and a zoom factor."""
        ...

    def continuous_move(
        self, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0, timeout_s: float = 1.0
    ) -> None:
        """Move at fractions (−1…1) of the maximum speeds for at most ``timeout_s``."""
        ...

    def stop(self) -> None:
        """Stop all axes."""
        ...

    def get_status(self) -> PTZStatus:
        """The current pose and motion state."""
        ...


def send_command(driver: PTZDriver, command: PTZCommand) -> None:
    """Issue a policy's command as the matching driver call."""
    if isinstance(command, Stop):
        driver.stop()
    elif isinstance(command, AbsoluteMove):
        driver.absolute_move(command.pan_deg, command.tilt_deg, command.zoom)
    elif isinstance(command, RelativeMove):
        driver.relative_move(command.pan_deg, command.tilt_deg, command.zoom_factor)
    elif isinstance(command, ContinuousMove):
        driver.continuous_move(command.pan, command.tilt, command.zoom, command.timeout_s)
    else:
        raise TypeError(f"not a PTZ command: {command!r}")
