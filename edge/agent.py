"""The edge agent: one loop per camera from frames to alerts, and from observations to PTZ moves.

Per frame of each camera (:class:`CameraLoop`, one state object per camera)::

    source.read() ─► detector ─► WorldTracker ─► HazardRules ─► AlertManager ─► outbox
                        │                                                 (and alerts.jsonl)
                        └─ every control period: ObservationBuilder ─► policy ─► PTZ driver

* The agent sees only what a device has: :class:`~edge.camera.source.Frame` objects (image,
  time, pose), the detector's detections, the camera's mount and the configuration. It never
  imports the simulator (a test checks its imports); the virtual camera and the simulated
  detector are injected like any other source and backend.
* The alert manager's raise/clear and the outbox puts of its messages (snapshot, then alert)
  happen in one SQLite transaction, so a crash leaves both or neither. Each emitted alert is also
  appended to the alert log (``alerts.jsonl``) byte for byte as published, after the commit.
  Without an MQTT link nothing is queued (``mqtt: null`` means "alerts only written locally"),
  but ``seq`` and the open events still live in the outbox database, so a restart raises no open
  event again.
* Timing of hazard events (dwell, cool-down) and of the policy's control period runs on the
  frames' clock (site time on the virtual site, which may run faster than real time); message
  timestamps and telemetry intervals on the wall clock (:class:`Clock`).
* Each stage is timed (:data:`~edge.telemetry.STAGES`); telemetry (QoS 0, never queued) goes out
  through the link every ``telemetry_interval_s``.

Lifecycle: construct (no I/O), :meth:`Agent.start` (boot count, link, alert log, policy reset),
:meth:`Agent.run` (or :meth:`Agent.step`), :meth:`Agent.stop` (the alerts the VLM held back —
:meth:`AlertManager.flush` —, final ``stopped`` status, drain, close). Callers watch it through
the ``on_alert`` / ``on_frame`` / ``on_telemetry`` hooks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from edge import __version__
from edge.alerts.manager import AlertManager, Emitted, VlmGate
from edge.alerts.rules import HazardRules, HazardRuleSpec, ZoneSpec
from edge.alerts.schema import AlertMessage
from edge.alerts.tracker import WorldTracker
from edge.alerts.vlm_gate import look_pose
from edge.camera.ptz import PTZDriver, PTZError, send_command
from edge.camera.source import Frame, FrameSource, SourceEnded, frame_problem
from edge.geometry import PTZPose
from edge.mqtt.client import MqttLink
from edge.mqtt.contract import DEFAULT_TOPIC_PREFIX, StatusInfo, StatusState, Topics
from edge.mqtt.contract import status_payload as _status_payload
from edge.mqtt.outbox import Outbox
from edge.perception.backend import Detector
from edge.perception.detection import Detection
from edge.policy.base import Policy, PolicyContext
from edge.policy.observation import ObservationBuilder, ObservationConfig
from edge.sim.ptz import AbsoluteMove, PTZCommand
from edge.telemetry import RateMeter, StageTimings, read_temperatures
from firmware_config.camera import CameraMountSpec

log = logging.getLogger(__name__)

#: At stop, how long the alert manager waits for VLM answers still in flight before the events
#: that asked go out as timeouts (:meth:`AlertManager.flush`).
STOP_VLM_WAIT_S = 2.0


class Clock(Protocol):
    """Wall clock for message timestamps, monotonic clock for intervals and frame rates."""

    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds, never going back."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class AgentSettings:
    """What the agent as a whole is configured with (from a DeviceConfig: edge.device_setup)."""

    site_id: str
    device_id: str
    rules: Mapping[str, HazardRuleSpec] = field(default_factory=dict)  # by hazard type
    zones: Sequence[ZoneSpec] = ()
    timezone: str = "UTC"  # IANA name, for zone schedules
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    telemetry_interval_s: float = 5.0
    agent_version: str = __version__
    models: Mapping[str, str] = field(default_factory=dict)  # policy/VLM files: name -> sha256
    alert_log: Path | None = None  # alerts.jsonl: every emitted alert as published
    timing_window: int = 600  # frames the latency percentiles cover
    vlm_max_wait_s: float = 3.0  # a ripe hazard waits this long for a view the VLM can judge
    # while one waits, steer the camera to it instead of following the policy
    vlm_look: bool = True


@dataclass
class CameraSetup:
    """The injected parts of one camera loop."""

    camera_id: str
    mount: CameraMountSpec
    source: FrameSource
    detector: Detector
    ptz: PTZDriver | None = None  # None: a fixed camera; no policy steers it
    policy: Policy | None = None
    policy_context: PolicyContext | None = None
    policy_seed: int | None = None
    observation: ObservationConfig | None = None  # the policy's (a learned one brings its own)


@dataclass(frozen=True)
class AlertRecord:
    """One emitted alert: the message, its exact published bytes, evidence, when and where."""

    camera_id: str
    alert: AlertMessage
    payload: bytes
    snapshot_jpeg: bytes | None
    t: float  # the frame's time (site time on the virtual site)
    pose: PTZPose  # the camera pose of that frame


@dataclass(frozen=True)
class FrameReport:
    """What one processed frame did (for the ``on_frame`` hooks)."""

    camera_id: str
    t: float
    pose: PTZPose
    num_detections: int
    num_tracks: int
    alerts: list[AlertRecord]
    command: PTZCommand | None  # the policy's command, on control steps


class CameraLoop:
    """The state of one camera: tracker, rules, alert manager, observation memory, timings."""

    def __init__(
        self,
        setup: CameraSetup,
        settings: AgentSettings,
        outbox: Outbox,
        topics: Topics,
        vlm_gate: VlmGate | None = None,
    ):
        if (setup.policy is None) != (setup.policy_context is None):
            raise ValueError(f"camera {setup.camera_id}: give both policy and policy_context")
        if setup.policy is not None and setup.ptz is None:
            raise ValueError(f"camera {setup.camera_id}: a policy needs a PTZ driver to steer")
        self.setup = setup
        self.camera_id = setup.camera_id
        self.alert_topic = topics.alert
        self.tracker = WorldTracker(setup.mount)
        self.rules = HazardRules(
            dict(settings.rules), list(settings.zones), timezone=ZoneInfo(settings.timezone)
        )
        self.models = {**dict(settings.models), **dict(setup.detector.models)}
        self.manager = AlertManager(
            outbox.state,
            site_id=settings.site_id,
            device_id=settings.device_id,
            camera_id=setup.camera_id,
            snapshot_topic=topics.snapshot,
            agent_version=settings.agent_version,
            rules=dict(settings.rules),
            models=self.models,
            vlm_gate=vlm_gate,
            vlm_max_wait_s=settings.vlm_max_wait_s,
            fov_h_1x_deg=setup.mount.limits.fov_h_1x_deg,
        )
        self.builder = (
            ObservationBuilder(setup.mount, setup.observation) if setup.policy is not None else None
        )
        self.timings = StageTimings(window=settings.timing_window)
        self.rate = RateMeter()
        self.num_frames = 0
        self.skipped: Counter[str] = Counter()  # corrupt or missing frames, by reason
        self.num_commands = 0
        self.look = settings.vlm_look and vlm_gate is not None
        self.num_looks = 0  # control steps that looked at a waiting hazard instead
        self.ptz_errors = 0  # commands the camera did not take (unreachable, refused)
        self.ended = False
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.last_period_s = 0.0
        self.last_pose: PTZPose | None = None
        self._next_control_t: float | None = None

    def start(self) -> None:
        if self.setup.policy is not None:
            assert self.setup.policy_context is not None
            self.setup.policy.reset(self.setup.policy_context, seed=self.setup.policy_seed)

    def elapsed_s(self, since_t: float | None) -> float:
        """Frame time covered since the frame at ``since_t`` (one frame period included)."""
        if since_t is None or self.last_t is None:
            return 0.0
        return self.last_t - since_t + self.last_period_s

    def step(
        self, outbox: Outbox, clock: Clock, publish: bool, timings: StageTimings
    ) -> FrameReport | None:
        """Process one frame; None when the source gave no usable frame (counted)."""
        t_start = time.perf_counter()
        frame = self.setup.source.read()
        t_read = time.perf_counter()
        problem = frame_problem(frame)
        if problem is not None:
            self.skipped[problem] += 1
            log.warning("camera %s: skipped a corrupt frame (%s)", self.camera_id, problem)
            return None
        assert isinstance(frame, Frame)
        stamps = [("capture", t_start, t_read)]

        detections = self.setup.detector.detect(frame)
        t_detect = time.perf_counter()
        tracks = self.tracker.update(detections, frame.pose, frame.width, frame.height, frame.t)
        t_track = time.perf_counter()
        t_wall = clock.now()
        observations = self.rules.update(tracks, t_wall)
        t_rules = time.perf_counter()
        with outbox.transaction():  # raise/clear and their queued messages: one commit
            emitted = self.manager.update(
                observations, t_wall, frame.image, frame.pose, t_site=frame.t
            )
            records = self._queue(emitted, outbox, publish, frame.t, frame.pose)
        t_alerts = time.perf_counter()
        command = self._control(frame, detections)
        t_policy = time.perf_counter()
        stamps += [
            ("detect", t_read, t_detect),
            ("track", t_detect, t_track),
            ("rules", t_track, t_rules),
            ("alerts", t_rules, t_alerts),
            ("policy", t_alerts, t_policy),
            ("total", t_start, t_policy),
        ]
        for stage, begin, end in stamps:
            self.timings.add(stage, end - begin)
            timings.add(stage, end - begin)
        self.rate.tick(clock.monotonic())
        self.num_frames += 1
        if self.last_t is not None and frame.t > self.last_t:
            self.last_period_s = frame.t - self.last_t
        if self.first_t is None:
            self.first_t = frame.t
        self.last_t, self.last_pose = frame.t, frame.pose
        return FrameReport(
            self.camera_id, frame.t, frame.pose, len(detections), len(tracks), records, command
        )

    def _queue(
        self, emitted: list[Emitted], outbox: Outbox, publish: bool, t: float, pose: PTZPose
    ) -> list[AlertRecord]:
        """Queue the manager's messages (snapshot first, then alert) and record them."""
        records = []
        for e in emitted:
            payload = json.dumps(e.alert, separators=(",", ":")).encode()
            if publish:
                if e.snapshot_jpeg is not None:
                    outbox.put(e.snapshot_topic, e.snapshot_jpeg, kind="snapshot")
                outbox.put(self.alert_topic, payload, kind="alert")
            records.append(AlertRecord(self.camera_id, e.alert, payload, e.snapshot_jpeg, t, pose))
        return records

    def flush(
        self, outbox: Outbox, clock: Clock, publish: bool, wait_s: float
    ) -> list[AlertRecord]:
        """The agent stops: queue what the alert manager held back for the VLM
        (:meth:`AlertManager.flush`), timed at the last frame."""
        if self.last_t is None or self.last_pose is None:
            return []
        with outbox.transaction():
            emitted = self.manager.flush(clock.now(), t_site=self.last_t, wait_s=wait_s)
            return self._queue(emitted, outbox, publish, self.last_t, self.last_pose)

    def _control(self, frame: Frame, detections: list[Detection]) -> PTZCommand | None:
        """On a control step: observation → policy → PTZ command."""
        policy, ctx = self.setup.policy, self.setup.policy_context
        if policy is None or ctx is None or self.builder is None:
            return None
        due = self._next_control_t
        if due is not None and frame.t < due - 1e-6:
            return None
        period = ctx.dt
        # the next step one period after this one's schedule (no drift), never in the past
        self._next_control_t = (frame.t if due is None else due) + period
        if self._next_control_t <= frame.t:
            self._next_control_t = frame.t + period
        obs = self.builder.update(frame.image, detections, frame.pose, frame.t)
        command = policy.act(obs)  # asked even when overridden: it keeps its own state
        look = self._look(frame) if self.look else None
        if look is not None:
            command = look
        assert self.setup.ptz is not None
        try:
            send_command(self.setup.ptz, command)
        except PTZError as exc:
            # a camera that cannot be steered still delivers frames: keep processing them
            self.ptz_errors += 1
            log.warning("camera %s: PTZ command failed: %s", self.camera_id, exc)
            return None
        self.num_commands += 1
        self.num_looks += look is not None
        return command

    def _look(self, frame: Frame) -> AbsoluteMove | None:
        """A move that shows the VLM the hazard that has waited longest for a judgeable view
        (:meth:`AlertManager.look_target`), or None when nothing waits."""
        target = self.manager.look_target()
        if target is None:
            return None
        limits = self.setup.mount.limits
        pose = look_pose(target, limits.fov_h_1x_deg, limits.zoom_max, frame.width, frame.height)
        return AbsoluteMove(
            pan_deg=min(max(pose.pan_deg, limits.pan_min_deg), limits.pan_max_deg),
            tilt_deg=min(max(pose.tilt_deg, limits.tilt_min_deg), limits.tilt_max_deg),
            zoom=pose.zoom,
        )

    def stats(self) -> dict[str, Any]:
        """This camera's counters and latencies."""
        return {
            "camera_id": self.camera_id,
            "fps": round(self.rate.rate(), 2),
            "frames": self.num_frames,
            "frames_skipped": dict(self.skipped),
            "ptz_commands": self.num_commands,
            "ptz_errors": self.ptz_errors,
            "ptz_looks": self.num_looks,
            "t": self.last_t,
            "latency_ms": self.timings.summary(),
        }


class Agent:
    """The device's agent: camera loops, the outbox, the MQTT link; see the module doc."""

    def __init__(
        self,
        settings: AgentSettings,
        cameras: Sequence[CameraSetup],
        outbox: Outbox,
        *,
        link: MqttLink | None = None,
        clock: Clock | None = None,
        vlm_gate: VlmGate | None = None,
    ):
        if not cameras:
            raise ValueError("an agent needs at least one camera")
        ids = [c.camera_id for c in cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        if settings.telemetry_interval_s <= 0:
            raise ValueError("telemetry_interval_s must be positive")
        self.settings = settings
        self.outbox = outbox
        self.link = link
        self.clock: Clock = clock or SystemClock()
        self.topics = Topics(settings.topic_prefix, settings.site_id, settings.device_id)
        self.cameras = [CameraLoop(c, settings, outbox, self.topics, vlm_gate) for c in cameras]
        #: shared by the cameras; one with ``start()`` / ``close()`` / ``stats()`` methods (a
        #: :class:`~edge.alerts.vlm_gate.WorkerVlmGate`) is started by :meth:`start`, closed
        #: by :meth:`stop` and reported in telemetry under ``vlm``
        self.vlm_gate = vlm_gate
        self.models: dict[str, str] = {}
        for cam in self.cameras:
            self.models.update(cam.models)
        self.timings = StageTimings(window=settings.timing_window)
        self.rate = RateMeter()
        self.on_alert: list[Callable[[AlertRecord], None]] = []
        self.on_frame: list[Callable[[FrameReport], None]] = []
        self.on_telemetry: list[Callable[[dict[str, Any]], None]] = []
        self.alert_counts: Counter[str] = Counter()  # by state: raised / cleared
        self.status_info: StatusInfo | None = None
        self.state = "created"  # created → starting → running → stopped
        self.delivered: bool | None = None  # after stop() with a link: was everything acked
        self._stop_requested = threading.Event()
        self._alert_log: IO[str] | None = None
        self._started_mono = 0.0
        self._next_telemetry = 0.0
        self.last_telemetry: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Count the boot, start the MQTT link, open the alert log, reset the policies.

        On a failure (e.g. a TLS file the link cannot load) what was started is stopped again.
        """
        if self.state != "created":
            raise RuntimeError(f"Agent.start(): the agent is {self.state}")
        self.state = "starting"
        try:
            self.status_info = StatusInfo(
                self.outbox.state.next_boot(), self.settings.agent_version, dict(self.models)
            )
            if self.link is not None:
                self.link.status_info = self.status_info
                self.link.start()
            _call_optional(self.vlm_gate, "start")  # the VLM loads in its own thread
            if self.settings.alert_log is not None:
                self.settings.alert_log.parent.mkdir(parents=True, exist_ok=True)
                self._alert_log = self.settings.alert_log.open("a", encoding="utf-8")
            for cam in self.cameras:
                cam.start()
        except BaseException:
            self.stop(timeout_s=1.0)
            raise
        self._started_mono = self.clock.monotonic()
        self._next_telemetry = self._started_mono + self.settings.telemetry_interval_s
        self.state = "running"
        log.info(
            "agent %s/%s started (boot %d, %d camera(s))",
            self.settings.site_id,
            self.settings.device_id,
            self.status_info.boot_seq,
            len(self.cameras),
        )

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current frame (thread- and signal-safe)."""
        self._stop_requested.set()

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Publish the final ``stopped`` status, wait for the outbox to drain (up to
        ``timeout_s``), close everything. True when nothing is left undelivered."""
        if self.state == "stopped":
            return bool(self.delivered)
        delivered = True
        try:
            if self.state == "running":
                # ripe events the VLM held back go out before the final status
                for cam in self.cameras:
                    for record in cam.flush(
                        self.outbox, self.clock, self.link is not None, STOP_VLM_WAIT_S
                    ):
                        self._log_alert(record)
            if self.link is not None and self.link.running:
                if self.state == "running":
                    self._publish_telemetry()
                delivered = self.link.stop("stopped", timeout_s=timeout_s)
        finally:
            for cam in self.cameras:
                cam.setup.source.close()
                cam.setup.detector.close()
            _call_optional(self.vlm_gate, "close")
            if self._alert_log is not None:
                self._alert_log.close()
                self._alert_log = None
            self.state = "stopped"
            self.delivered = delivered
        return delivered

    # ------------------------------------------------------------------ the loop
    def run(self, duration_s: float | None = None) -> None:
        """Process frames until every camera covered ``duration_s`` of its frame time (None:
        until its source ends or :meth:`request_stop`). Starts the agent when needed."""
        if self.state == "created":
            self.start()
        if self.state != "running":
            raise RuntimeError(f"Agent.run(): the agent is {self.state}")
        since: dict[str, float | None] = dict.fromkeys(cam.camera_id for cam in self.cameras)
        while not self._stop_requested.is_set():
            active = [
                cam
                for cam in self.cameras
                if not cam.ended
                and (duration_s is None or cam.elapsed_s(since[cam.camera_id]) < duration_s - 1e-6)
            ]
            if not active:
                break
            for cam in active:
                report = self._step_camera(cam)
                if report is not None and since[cam.camera_id] is None:
                    since[cam.camera_id] = report.t

    def step(self) -> list[FrameReport]:
        """One frame of every camera whose source has not ended."""
        if self.state != "running":
            raise RuntimeError(f"Agent.step(): the agent is {self.state}; call start() first")
        reports = []
        for cam in self.cameras:
            if not cam.ended:
                report = self._step_camera(cam)
                if report is not None:
                    reports.append(report)
        return reports

    def _step_camera(self, cam: CameraLoop) -> FrameReport | None:
        try:
            report = cam.step(self.outbox, self.clock, self.link is not None, self.timings)
        except SourceEnded as exc:
            log.info("camera %s: source ended: %s", cam.camera_id, exc)
            cam.ended = True
            return None
        if report is not None:
            self.rate.tick(self.clock.monotonic())
            for record in report.alerts:
                self._log_alert(record)
            for hook in self.on_frame:
                hook(report)
        if self.clock.monotonic() >= self._next_telemetry:
            self._publish_telemetry()
        return report

    def _log_alert(self, record: AlertRecord) -> None:
        self.alert_counts[record.alert["state"]] += 1
        if self._alert_log is not None:
            self._alert_log.write(record.payload.decode() + "\n")
            self._alert_log.flush()
        for hook in self.on_alert:
            hook(record)

    # ------------------------------------------------------------------ status and telemetry
    def status(self, state: StatusState | None = None) -> dict[str, Any]:
        """The status message (DESIGN.md) as a dict: state, boot_seq, agent_version, models,
        ts, outbox_depth, outbox_full, refused."""
        if self.status_info is None:
            raise RuntimeError("Agent.status(): start() the agent first")
        if state is None:
            state = "online" if self.state == "running" else "stopped"
        return dict(json.loads(_status_payload(state, self.status_info, self.outbox)))

    def gate_stats(self) -> dict[str, Any] | None:
        """The VLM gate's counts (its ``stats()``), or None without a gate that counts."""
        stats = _call_optional(self.vlm_gate, "stats")
        return None if stats is None else dict(stats)

    def telemetry(self) -> dict[str, Any]:
        """The telemetry message: frame rate, per-stage latency, outbox and link counters,
        temperatures."""
        link = self.link
        outbox = self.outbox.stats()
        return {
            "ts": _utc(self.clock.now()),
            "boot_seq": self.status_info.boot_seq if self.status_info else None,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 3),
            "fps": round(self.rate.rate(), 2),
            "frames": sum(cam.num_frames for cam in self.cameras),
            "frames_skipped": sum(sum(cam.skipped.values()) for cam in self.cameras),
            "latency_ms": self.timings.summary(),
            "cameras": [cam.stats() for cam in self.cameras],
            "alerts": {
                "raised": self.alert_counts["raised"],
                "cleared": self.alert_counts["cleared"],
            },
            "outbox_depth": outbox["outbox_depth"],
            "outbox_full": outbox["outbox_full"],
            "refused": outbox["refused"],
            "dropped_snapshots": outbox["dropped_snapshots"],
            "connected": link.connected if link is not None else None,
            "reconnects": link.reconnects if link is not None else 0,
            "temperatures": read_temperatures(),
            "vlm": self.gate_stats(),
        }

    def _publish_telemetry(self) -> None:
        self._next_telemetry = self.clock.monotonic() + self.settings.telemetry_interval_s
        message = self.telemetry()
        self.last_telemetry = message
        if self.link is not None:
            self.link.publish_telemetry(json.dumps(message, separators=(",", ":")).encode())
        for hook in self.on_telemetry:
            hook(message)


def _call_optional(obj: object, method: str) -> Any:
    """``obj.method()`` when ``obj`` has such a method, else None."""
    fn = getattr(obj, method, None)
    return fn() if callable(fn) else None


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
