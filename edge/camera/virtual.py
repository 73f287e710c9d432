"""The virtual PTZ camera: the simulated site as a frame source, a PTZ driver and a detector.

This module (with :mod:`edge.sim`) is the only place where the agent's inputs meet the simulator.
The agent gets three ordinary parts from it and nothing else:

* :class:`VirtualCamera` — a :class:`~edge.camera.source.FrameSource`: each ``read`` advances the
  site by ``1 / frame_rate_hz`` seconds of *site* time and renders the view (1280×720 by default)
  at the head's pose. As fast as it can, or paced to the wall clock with ``realtime=True``.
* :class:`VirtualPTZ` — its in-process :class:`~edge.camera.ptz.PTZDriver`: the same calls an
  ONVIF camera takes, applied to the simulated head (speed limits and latency included).
* :class:`SiteClock` — the agent's wall clock on a site that may run faster than real time.
* :class:`SimulatedDetector` — a detector *backend* bound to this camera: it looks up the ground
  truth the camera rendered with the frame it is given and turns it into detections with
  :class:`~edge.sim.perception.SimulatedPerception`'s resolution-dependent errors.

Ground truth never leaves this module: the agent sees :class:`~edge.camera.source.Frame` objects
(image, time, pose) and :class:`~edge.perception.detection.Detection` lists, exactly what a real
camera and a real detector give it. Swapping the simulated detector for a trained one needs no
change in the agent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

from edge.camera.ptz import PTZStatus
from edge.camera.source import Frame, SourceEnded
from edge.geometry import PTZPose
from edge.perception.detection import Detection
from edge.sim.perception import SimulatedPerception
from edge.sim.ptz import AbsoluteMove, ContinuousMove, RelativeMove, Stop
from edge.sim.render import FrameTruth
from edge.sim.virtual import VirtualSite

DEFAULT_FRAME_SIZE = (1280, 720)


class VirtualPTZ:
    """The virtual camera's PTZ service, with the ONVIF calls of :class:`PTZDriver`.

    Thread-safe: the virtual camera's ONVIF service (:mod:`edge.camera.onvif_server`) calls it
    from its HTTP threads while the agent reads frames; both hold the camera's ``lock``.
    """

    def __init__(self, site: VirtualSite, lock: threading.RLock | None = None):
        self._site = site
        self.lock = lock or threading.RLock()
        self.num_commands = 0

    def absolute_move(self, pan_deg: float, tilt_deg: float, zoom: float) -> None:
        self._command(AbsoluteMove(pan_deg, tilt_deg, zoom))

    def relative_move(
        self, pan_deg: float = 0.0, tilt_deg: float = 0.0, zoom_factor: float = 1.0
    ) -> None:
        self._command(RelativeMove(pan_deg, tilt_deg, zoom_factor))

    def continuous_move(
        self, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0, timeout_s: float = 1.0
    ) -> None:
        self._command(ContinuousMove(pan, tilt, zoom, timeout_s))

    def stop(self) -> None:
        self._command(Stop())

    def get_status(self) -> PTZStatus:
        with self.lock:
            return PTZStatus(self._site.pose, self._site.head.moving)

    def _command(self, command: AbsoluteMove | RelativeMove | ContinuousMove | Stop) -> None:
        with self.lock:
            self.num_commands += 1
            self._site.command(command)


class VirtualCamera:
    """A PTZ camera on the virtual site, delivering frames at ``frame_rate_hz`` of site time."""

    def __init__(
        self,
        site: VirtualSite,
        *,
        camera_id: str = "cam0",
        frame_rate_hz: float = 10.0,
        size: tuple[int, int] = DEFAULT_FRAME_SIZE,
        realtime: bool = False,
        noise: bool = True,
        end_t: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be positive, got {frame_rate_hz:g}")
        width, height = size
        if width < 16 or height < 16:
            raise ValueError(f"frame size must be at least 16x16 pixels, got {width}x{height}")
        self.site = site
        self.camera_id = camera_id
        self.frame_rate_hz = float(frame_rate_hz)
        self.size = (int(width), int(height))
        self.realtime = realtime
        self.noise = noise
        #: Site time after which ``read`` raises :class:`SourceEnded` (default: the site's end).
        self.end_t = float(site.spec.duration_s if end_t is None else end_t)
        #: Held while the site advances and renders, and by every PTZ call (ONVIF threads).
        self.lock = threading.RLock()
        self.ptz = VirtualPTZ(site, self.lock)
        self.num_frames = 0
        self._monotonic, self._sleep = monotonic, sleep
        self._pace_origin: tuple[float, float] | None = None  # (wall, site) at the first frame
        self._truth: tuple[int, FrameTruth] | None = None
        self._closed = False

    @property
    def t(self) -> float:
        """The site time of the next frame's capture (after the pending advance)."""
        return self.site.t + (1.0 / self.frame_rate_hz if self.num_frames else 0.0)

    @property
    def pose(self) -> PTZPose:
        return self.site.pose

    def read(self) -> Frame | None:
        """Advance the site by one frame period (not before the first frame) and render."""
        if self._closed:
            raise SourceEnded(f"virtual camera {self.camera_id} is closed")
        if self.t > self.end_t + 1e-9:
            raise SourceEnded(
                f"virtual site {self.site.spec.name!r} ends at {self.end_t:g} s of site time"
            )
        if self.realtime:
            self._pace(1.0 / self.frame_rate_hz if self.num_frames else 0.0)
        with self.lock:
            if self.num_frames:
                self.site.advance(1.0 / self.frame_rate_hz)
            sim_frame, truth = self.site.capture(*self.size, truth=True, noise=self.noise)
        assert truth is not None
        self._truth = (sim_frame.index, truth)
        self.num_frames += 1
        return Frame(sim_frame.image, sim_frame.t, sim_frame.pose, sim_frame.index)

    def _pace(self, step_s: float) -> None:
        """Sleep until the wall clock has caught up with the site clock after ``step_s``."""
        now = self._monotonic()
        if self._pace_origin is None:
            self._pace_origin = (now, self.site.t + step_s)
            return
        wall0, site0 = self._pace_origin
        wait_s = (self.site.t + step_s - site0) - (now - wall0)
        if wait_s > 0:
            self._sleep(wait_s)

    def truth_for(self, frame: Frame) -> FrameTruth:
        """The ground truth rendered with ``frame`` (the simulated detector's input only)."""
        if self._truth is None or self._truth[0] != frame.index:
            raise ValueError(
                f"frame {frame.index} is not the latest frame of virtual camera {self.camera_id}: "
                "the simulated detector runs on each frame as it is read"
            )
        return self._truth[1]

    def close(self) -> None:
        self._closed = True
        self._truth = None


class SiteClock:
    """The agent's clock on the virtual site: wall time that advances with *site* time.

    ``now()`` is the wall-clock time at which the clock was made plus the site time elapsed since
    then, so message timestamps (``first_seen`` → ``ts``) span the site's dwell and cool-down
    even when the site runs faster than real time (with ``realtime`` the two clocks agree).
    ``monotonic()`` stays the machine's: frame rates and telemetry intervals are real.
    """

    def __init__(self, camera: VirtualCamera, wall_start: datetime | None = None):
        self.camera = camera
        self.wall_start = wall_start or datetime.now(timezone.utc)
        self.site_start = camera.site.t

    def now(self) -> datetime:
        return self.wall_start + timedelta(seconds=self.camera.site.t - self.site_start)

    def monotonic(self) -> float:
        return time.monotonic()


class SimulatedDetector:
    """Simulated perception as a detector backend, bound to one :class:`VirtualCamera`."""

    name = "simulated"

    def __init__(self, camera: VirtualCamera, seed: int = 0):
        self.camera = camera
        self.perception = SimulatedPerception(seed)

    @property
    def models(self) -> Mapping[str, str]:
        return {}  # no model file takes part

    def detect(self, frame: Frame) -> list[Detection]:
        return self.perception.detect(self.camera.truth_for(frame), frame.index)

    def close(self) -> None:
        pass
