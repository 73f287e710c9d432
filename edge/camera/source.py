"""Frames and frame sources: what every camera (virtual, file, RTSP) hands the agent.

A :class:`FrameSource` delivers :class:`Frame` objects — a BGR image, the camera's timestamp and
the PTZ pose the image was taken at — and nothing else: no ground truth, no simulator objects.
:func:`frame_problem` is the agent's check that a delivered frame is usable; a corrupt frame is
skipped and counted, never passed on (DESIGN.md, "Rules that hold everywhere").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edge.geometry import PTZPose


@dataclass(frozen=True)
class Frame:
    """One camera frame: the image, when it was taken, and where the camera pointed."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    t: float  # the camera's clock in seconds (site time on the virtual site; monotonic on a device)
    pose: PTZPose  # the pose the image was taken at
    index: int  # frame counter of the source

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@runtime_checkable
class FrameSource(Protocol):
    """Delivers frames; ``read`` returns None when no usable frame came this time."""

    camera_id: str

    def read(self) -> Frame | None:
        """The next frame, or None (a dropped or undecodable frame, a stream reconnecting)."""
        ...

    def close(self) -> None:
        """Release the camera (idempotent)."""
        ...


class SourceEnded(Exception):
    """Raised by ``read`` of a finite source (a video file) after its last frame."""


def frame_problem(frame: object) -> str | None:
    """Why ``frame`` cannot be processed (a short reason, used as a counter key), or None.

    Checks what every later stage relies on: a :class:`Frame` holding an (H, W, 3) uint8 image
    of at least 2×2 pixels, a finite timestamp and a pose.
    """
    if frame is None:
        return "missing"
    if not isinstance(frame, Frame):
        return "type"
    image = frame.image
    if not isinstance(image, np.ndarray):
        return "no_image"
    if image.dtype != np.uint8:
        return "dtype"
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        return "shape"
    if not np.isfinite(frame.t) or not isinstance(frame.pose, PTZPose):
        return "metadata"
    return None
