"""Video frame sources: a video file and an RTSP stream, decoded by OpenCV's FFmpeg backend.

:class:`VideoSource` is the :class:`~edge.camera.source.FrameSource` of every camera that is not
the virtual site:

* **file** (any path FFmpeg reads): frames as fast as the agent takes them, ``t`` = the frame's
  timestamp in the file (``CAP_PROP_POS_MSEC``), :class:`~edge.camera.source.SourceEnded`
  after the last one.
* **RTSP** (``rtsp://`` / ``rtsps://``): over TCP (``OPENCV_FFMPEG_CAPTURE_OPTIONS=
  "rtsp_transport;tcp"``: no smeared frames from lost UDP packets), open and read timeouts so a
  dead camera never blocks the agent for long, ``t`` = the machine's monotonic clock. A stream
  that fails to open or stops delivering is released and reopened with exponential backoff
  (``reconnect_min_s`` doubling to ``reconnect_max_s``); while it is down ``read`` waits at most
  ``max_wait_s`` and returns None (the agent counts it as a missing frame). ``reconnects`` and
  ``problems`` count what happened; every outage is logged with the URL (password masked).
* A decoded frame that is empty or not an image is skipped and counted (``problems``: ``empty``);
  any other defect reaches the agent's :func:`~edge.camera.source.frame_problem` check, which
  skips and counts it by reason.
* The pose: ``GetStatus`` of the camera's PTZ driver (an ONVIF camera), polled at most every
  ``pose_max_age_s``; a fixed ``pose`` for a camera without PTZ. A failed status query skips the
  frame (``problems``: ``pose``): a frame at an unknown pose would put hazards in the wrong
  place.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from edge.camera.ptz import PTZDriver, PTZError
from edge.camera.source import Frame, SourceEnded
from edge.geometry import PTZPose

log = logging.getLogger(__name__)

RTSP_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_OPTIONS = "rtsp_transport;tcp"
_env_lock = threading.Lock()


def is_stream_url(url: str) -> bool:
    """True for a network stream (rtsp/rtsps/http), False for a file path."""
    return urllib.parse.urlsplit(str(url)).scheme in ("rtsp", "rtsps", "http", "https")


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and errors)."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.password is None:
        return str(url)
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def open_capture(url: str, *, timeout_s: float = 5.0) -> Any:
    """An OpenCV FFmpeg capture of ``url`` (RTSP over TCP), with open/read timeouts."""
    import cv2

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000),
    ]  # fmt: skip
    if not is_stream_url(url):
        return cv2.VideoCapture(str(url), cv2.CAP_FFMPEG, params)
    # FFmpeg reads its options from the environment when the capture opens
    with _env_lock:
        previous = os.environ.get(RTSP_OPTIONS_ENV)
        os.environ[RTSP_OPTIONS_ENV] = RTSP_OPTIONS
        try:
            return cv2.VideoCapture(str(url), cv2.CAP_FFMPEG, params)
        finally:
            if previous is None:
                os.environ.pop(RTSP_OPTIONS_ENV, None)
            else:
                os.environ[RTSP_OPTIONS_ENV] = previous


class VideoSource:
    """A video file or an RTSP stream as a frame source (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        camera_id: str = "cam0",
        ptz: PTZDriver | None = None,
        pose: PTZPose | None = None,
        timeout_s: float = 5.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        max_wait_s: float = 1.0,
        pose_max_age_s: float = 0.1,
        opener: Callable[[str], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if ptz is None and pose is None:
            pose = PTZPose(0.0, 0.0, 1.0)
        if reconnect_min_s <= 0 or reconnect_max_s < reconnect_min_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        self.url = str(url)
        self.camera_id = camera_id
        self.is_stream = is_stream_url(self.url)
        self.ptz = ptz
        self.fixed_pose = pose
        self.timeout_s = timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self.max_wait_s = max_wait_s
        self.pose_max_age_s = pose_max_age_s
        self._opener = opener or (lambda u: open_capture(u, timeout_s=timeout_s))
        self._monotonic, self._sleep = monotonic, sleep
        self._capture: Any = None
        self._next_open_t = -math.inf
        self._backoff_s = reconnect_min_s
        self._pose: tuple[float, PTZPose] | None = None  # (when polled, pose)
        self._closed = False
        self._ever_opened = False
        self.num_frames = 0
        self.reconnects = 0
        self.problems: Counter[str] = Counter()

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    # ------------------------------------------------------------------ capture
    def _open(self) -> bool:
        """Open the capture now if its backoff allows; True when it is open."""
        if self._capture is not None:
            return True
        now = self._monotonic()
        if now < self._next_open_t:
            self._sleep(min(self._next_open_t - now, self.max_wait_s))
            if self._monotonic() < self._next_open_t:
                return False
        capture = self._opener(self.url)
        if capture is not None and capture.isOpened():
            self._capture = capture
            if self._ever_opened:
                self.reconnects += 1
                log.warning("camera %s: stream %s is back", self.camera_id, self.masked_url)
            self._ever_opened = True
            self._backoff_s = self.reconnect_min_s
            return True
        if capture is not None:
            capture.release()
        if not self.is_stream:
            raise SourceEnded(f"camera {self.camera_id}: cannot open video file {self.url}")
        self.problems["open_failed"] += 1
        self._schedule_reconnect(f"cannot open {self.masked_url}")
        return False

    def _schedule_reconnect(self, why: str) -> None:
        log.warning("camera %s: %s; reconnecting in %.1f s", self.camera_id, why, self._backoff_s)
        self._next_open_t = self._monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.reconnect_max_s)

    def _drop(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def read(self) -> Frame | None:
        """The next frame; None while a stream reconnects or for a skipped frame."""
        if self._closed:
            raise SourceEnded(f"camera {self.camera_id}: source closed")
        if not self._open():
            return None
        ok, image = self._capture.read()
        if not ok:
            self._drop()
            if not self.is_stream:
                raise SourceEnded(f"camera {self.camera_id}: end of video file {self.url}")
            self.problems["stream_lost"] += 1
            self._schedule_reconnect(f"stream {self.masked_url} stopped delivering frames")
            return None
        if not isinstance(image, np.ndarray) or image.size == 0:
            self.problems["empty"] += 1
            return None
        # a stream's frames are stamped on arrival, a file's with their time in the file
        t = self._monotonic() if self.is_stream else self._capture.get(_pos_msec()) / 1000.0
        pose = self._current_pose()
        if pose is None:
            self.problems["pose"] += 1
            return None
        index = self.num_frames
        self.num_frames += 1
        return Frame(image, t, pose, index)

    def _current_pose(self) -> PTZPose | None:
        if self.ptz is None:
            return self.fixed_pose
        now = self._monotonic()
        if self._pose is not None and now - self._pose[0] < self.pose_max_age_s:
            return self._pose[1]
        try:
            pose = self.ptz.get_status().pose
        except PTZError as exc:
            log.warning("camera %s: no pose for this frame: %s", self.camera_id, exc)
            return None
        self._pose = (now, pose)
        return pose

    def close(self) -> None:
        """Release the capture (idempotent)."""
        self._closed = True
        self._drop()


def _pos_msec() -> int:
    import cv2

    return int(cv2.CAP_PROP_POS_MSEC)
