"""The alert manager: hazard observations in, ``raised`` / ``cleared`` alert messages out.

One :class:`AlertManager` per camera. Every frame it gets the :class:`HazardObservation`s the
rules produced and decides, per hazard *event*:

* **raised** once the event was observed for its rule's ``dwell_s`` — continuously, gaps of up to
  ``max_gap_s`` allowed — with a new uuid4 ``alert_id``, an evidence JPEG and a ``seq`` from the
  state store. An optional VLM gate is asked first when the rule says ``require_vlm``; it
  suppresses the alert only on a confident contradiction (``confirmed: false``). A gate may
  answer at once (a :class:`VlmCheck`) or return a :class:`PendingVlmCheck`: the event then
  waits in ``verifying`` (its evidence JPEG already cut from the frame that asked) and is
  raised or suppressed on the first later frame whose :meth:`update` finds the answer — the
  control loop never waits for the VLM. The gate itself bounds the wait (its timeout resolves
  as ``error: "timeout"``, ``confirmed: null``: the alert goes out). A gate may also answer
  :class:`NotYet` — this frame shows nothing it can judge (the camera's motion smears it, the
  object is cut by the frame's edge or too small): the event stays ``pending`` and the gate is
  asked again on each later frame that observes it, for up to ``vlm_max_wait_s``; after that,
  or once it is out of view (unseen for :data:`WAIT_UNSEEN_S`, its place outside the frame)
  before the gate could ask, the alert goes out unasked (``vlm: null``, evidence from its last
  sighting): the VLM's absence never drops an event. An event unseen while its place is in a
  sharp frame (the camera looks right at it and the detector no longer finds the hazard) is
  not out of view: it is a pending event the detections stopped supporting, forgotten after
  ``max_gap_s`` like any other unless it is seen again. :meth:`AlertManager.look_target` tells
  the camera loop which waiting event to steer to (the agent's ``vlm.look``); that one is kept
  while unseen (the turn smears it) until its wait is over.
  The manager estimates each frame's motion blur from the poses of consecutive frames (pan/tilt
  speed × ``exposure_s`` × pixels per degree at the frame's zoom) and hands it to the gate.
* **flushed** when the agent stops (:meth:`AlertManager.flush`): a ripe event still waiting
  for a view goes out unasked, and one whose question is still in flight goes out with the
  answer if it comes within the stop's wait, else as a timeout (``confirmed: null``) — the same
  rule as above: the VLM never drops a ripe event, not even at a restart for an update.
* **cleared** once unobserved for ``cooldown_s``, with the same ``alert_id``, the last observed
  location and the raised message's ``evidence`` (same ``snapshot_topic`` and ``sha256``: no new
  JPEG is sent; a subscriber already has it).

Events are matched to observations by ``(hazard, key)`` (the key is a track id, or zone/track
id). An observation with an unknown key may take over an *orphaned* event of the same hazard (and
zone) close by in pan/tilt — one whose key was not seen for ``rebind_after_s``, or one restored
after a restart, whose track ids never come back. That keeps one ``alert_id`` when a track is
lost and re-found, and makes a restarted agent continue the events it had open instead of
raising them again.

Open (raised) events are persisted in the :class:`StateStore` on every raise, clear and
re-key, and their last-seen time at most every ``persist_interval_s``. After a restart, an event's
unseen time continues from its last persisted wall-clock sighting, so it clears on schedule.

The evidence snapshot is the **full frame** with the hazard's box and a label drawn on it,
scaled down to at most ``snapshot_max_width`` pixels wide: the full frame shows where on the
site it is (an alert is usually raised at the zoom that resolved the hazard, so the box is big
enough to see), and a subscriber can crop with ``location.bbox`` if it wants a close-up.

Timing (dwell, gaps, cool-down) runs on ``t_site`` when given (the virtual site runs faster than
real time), else on ``t_wall``; pass one or the other consistently. ``t_wall`` is always the
source of ``first_seen`` / ``ts``.

Atomicity: the manager calls ``store.next_seq()`` / ``store.set()`` inside :meth:`update` and
returns the messages for the caller to queue. Run :meth:`update` and the outbox ``put`` of its
messages in one database transaction where the store allows it, so a crash can neither lose a
raised alert nor forget that it was raised.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, cast

import numpy as np

from edge.alerts.rules import DEFAULT_HAZARD_RULES, HazardObservation, HazardRuleSpec
from edge.alerts.schema import (
    ALERT_SCHEMA_NAME,
    HAZARD_TYPES,
    AlertEvidence,
    AlertLocation,
    AlertMessage,
    Hazard,
    Severity,
    VlmCheck,
    alert_problems,
    format_utc,
    validate_alert,
)
from edge.alerts.snapshot import render_snapshot
from edge.alerts.state import StateStore
from edge.alerts.tracker import angular_distance_deg
from edge.geometry import CameraView, PTZPose, direction, fov_h_deg, wrap_deg
from edge.matching import greedy_pairs

log = logging.getLogger(__name__)

#: How fast the gate for continuing an unseen event widens (object sizes per second) and its cap.
REBIND_GROWTH_PER_S = 0.8
REBIND_GROWTH_MAX = 3.0
STATE_SCHEMA = "sitehawk.alert-state/1"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PendingVlmCheck(Protocol):
    """A VLM question in flight: :meth:`poll` never blocks and must resolve in bounded time."""

    question: str  # the question asked (the ``vlm`` field's, should the answer never come)

    def poll(self) -> VlmCheck | None:
        """The outcome for the alert's ``vlm`` field once known (answer, timeout, failure),
        else None (still waiting)."""
        ...


@dataclass(frozen=True)
class NotYet:
    """A gate's answer for a view it cannot judge yet: ask again on a later frame."""

    reason: str


#: Asked before raising when a rule has ``require_vlm``: (observation, frame, pose, blur_px —
#: the frame's estimated motion blur in its own pixels) → the VLM outcome for the alert's
#: ``vlm`` field now, a :class:`PendingVlmCheck` to poll on later frames, :class:`NotYet`
#: (ask again on a later frame, up to the manager's ``vlm_max_wait_s``), or None when no VLM
#: was asked (the alert goes out with ``vlm: null``).
VlmGate = Callable[
    [HazardObservation, np.ndarray, PTZPose, float],
    VlmCheck | PendingVlmCheck | NotYet | None,
]
#: The exposure the motion-blur estimate assumes when the camera does not say (1/60 s: a long
#: shutter for daylight, so the estimate errs towards waiting for a sharper frame).
DEFAULT_EXPOSURE_S = 1.0 / 60.0
#: How long a ripe event waits for a view the VLM can judge before it goes out unasked.
DEFAULT_VLM_MAX_WAIT_S = 3.0
#: A waiting event unseen this long, its place outside the frame, has left the view: it goes
#: out unasked at once, located where it was last seen — waiting the pending events'
#: ``max_gap_s`` would put a walking worker metres from the alert's location.
WAIT_UNSEEN_S = 0.25
#: An unseen event's place counts as in view (the detector would see the hazard there) when it
#: lies this share of the frame's width and height inside its edges, on a frame whose motion
#: blur estimate is at most :data:`IN_VIEW_MAX_BLUR_PX` (a turning camera's smeared frame is
#: no evidence that the hazard is gone).
IN_VIEW_MARGIN = 0.05
IN_VIEW_MAX_BLUR_PX = 8.0

EventStatus = Literal["pending", "verifying", "raised", "suppressed"]


@dataclass(frozen=True)
class LookTarget:
    """A ripe event waiting for a view the VLM can judge, where it was last observed: the camera
    loop may steer there (centred, zoomed to the question's framing) so the wait ends with an
    answer instead of an alert that goes out unasked."""

    hazard: Hazard
    key: str
    pan_deg: float
    tilt_deg: float
    size_deg: float  # the object's angular height
    reason: str  # the gate's last NotYet reason
    waiting_since: float


@dataclass(frozen=True)
class Emitted:
    """One alert message to publish, and the snapshot JPEG that goes with a raised one."""

    alert: AlertMessage
    snapshot_jpeg: bytes | None

    @property
    def alert_id(self) -> str:
        return self.alert["alert_id"]

    @property
    def state(self) -> str:
        return self.alert["state"]

    @property
    def snapshot_topic(self) -> str:
        return self.alert["evidence"]["snapshot_topic"]


@dataclass
class _Event:
    """One hazard event the manager follows (pending → [verifying →] raised → cleared, or
    suppressed)."""

    hazard: Hazard
    key: str
    zone_id: str | None
    status: EventStatus
    first_seen_t: float
    first_seen_wall: str
    last_seen_t: float
    last_seen_wall: str
    location: AlertLocation
    size_deg: float
    confidence: float
    severity: Severity
    alert_id: str | None = None
    evidence: AlertEvidence | None = None
    vlm: VlmCheck | None = None
    restored: bool = False
    #: while ``verifying``: the question in flight and what the raise will carry (the evidence
    #: of the frame that asked and the location of its observation)
    question: PendingVlmCheck | None = None
    held: tuple[bytes, AlertEvidence, AlertLocation] | None = None
    #: while ``pending`` past its dwell: when the gate first answered :class:`NotYet`, and the
    #: latest observation and frame (a copy) — the evidence if it goes out unasked
    waiting_since: float | None = None
    waiting_view: tuple[HazardObservation, np.ndarray] | None = None
    waiting_reason: str = ""
    #: a waiting event that went unseen while its place was in a sharp view: the detections
    #: stopped supporting it, so it is not raised unasked when it later leaves the view
    unseen_in_view: bool = False

    def to_state(self) -> dict[str, Any]:
        """JSON for the state store (times only as wall clock: the timing clock restarts)."""
        return {
            "hazard": self.hazard,
            "key": self.key,
            "zone_id": self.zone_id,
            "alert_id": self.alert_id,
            "first_seen": self.first_seen_wall,
            "last_seen": self.last_seen_wall,
            "location": self.location,
            "size_deg": self.size_deg,
            "confidence": self.confidence,
            "severity": self.severity,
            "evidence": self.evidence,
            "vlm": self.vlm,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any], last_seen_t: float) -> _Event:
        hazard = data["hazard"]
        if hazard not in HAZARD_TYPES:
            raise ValueError(f"unknown hazard {hazard!r}")
        return cls(
            hazard=hazard,
            key=str(data["key"]),
            zone_id=data.get("zone_id"),
            status="raised",
            first_seen_t=last_seen_t,
            first_seen_wall=str(data["first_seen"]),
            last_seen_t=last_seen_t,
            last_seen_wall=str(data["last_seen"]),
            location=cast(AlertLocation, dict(data["location"])),
            size_deg=float(data["size_deg"]),
            confidence=float(data["confidence"]),
            severity=data["severity"],
            alert_id=str(uuid.UUID(str(data["alert_id"]))),
            evidence=cast(AlertEvidence, dict(data["evidence"])),
            vlm=data.get("vlm"),
            restored=True,
        )


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _location(obs: HazardObservation, pose: PTZPose) -> AlertLocation:
    bbox = [round(min(max(float(v), 0.0), 1.0), 4) for v in obs.bbox]
    ground = None
    if obs.ground_xy is not None and all(math.isfinite(v) for v in obs.ground_xy):
        ground = [round(float(obs.ground_xy[0]), 2), round(float(obs.ground_xy[1]), 2)]
    return {
        "pan_deg": round(float(wrap_deg(obs.pan_deg)), 3),
        "tilt_deg": round(min(max(float(obs.tilt_deg), -90.0), 90.0), 3),
        "zoom": round(max(float(pose.zoom), 1.0), 3),
        "bbox": bbox,
        "ground_xy_m": ground,
    }


class AlertManager:
    """Hazard events of one camera: dwell, cool-down, stable ids, evidence, persistence."""

    def __init__(
        self,
        store: StateStore,
        *,
        site_id: str,
        device_id: str,
        camera_id: str,
        snapshot_topic: Callable[[str], str],
        agent_version: str,
        rules: Mapping[str, HazardRuleSpec] | None = None,
        models: Mapping[str, str] | None = None,
        vlm_gate: VlmGate | None = None,
        vlm_max_wait_s: float = DEFAULT_VLM_MAX_WAIT_S,
        fov_h_1x_deg: float = 60.0,
        exposure_s: float = DEFAULT_EXPOSURE_S,
        max_gap_s: float = 1.5,
        rebind_after_s: float = 1.0,
        rebind_sizes: float = 2.0,
        rebind_min_deg: float = 0.5,
        persist_interval_s: float = 1.0,
        snapshot_max_width: int = 1280,
        jpeg_quality: int = 85,
    ):
        for name, value in (
            ("site_id", site_id),
            ("device_id", device_id),
            ("camera_id", camera_id),
            ("agent_version", agent_version),
        ):
            if not value:
                raise ValueError(f"{name}: must not be empty")
        merged = dict(DEFAULT_HAZARD_RULES)
        for name, rule in (rules or {}).items():
            if name not in HAZARD_TYPES:
                raise ValueError(f"hazards.{name}: unknown hazard type ({', '.join(HAZARD_TYPES)})")
            merged[name] = rule
        lower_bounds: dict[str, tuple[float, float]] = {
            "vlm_max_wait_s": (vlm_max_wait_s, 0.0),
            "exposure_s": (exposure_s, 0.0),
            "fov_h_1x_deg": (fov_h_1x_deg, 1e-3),
        }
        for name, (number, least) in lower_bounds.items():
            if not (math.isfinite(number) and number >= least):
                raise ValueError(f"{name}: {number} must be a finite number >= {least:g}")
        for name, digest in (models or {}).items():
            if not name or not isinstance(digest, str) or not _SHA256.match(digest):
                raise ValueError(f"models.{name}: {digest!r} is not a lowercase hex sha256")
        self.store = store
        self.site_id, self.device_id, self.camera_id = site_id, device_id, camera_id
        self.snapshot_topic = snapshot_topic
        self.agent_version = agent_version
        self.rules = merged
        self.models = dict(models or {})
        self.vlm_gate = vlm_gate
        self.vlm_max_wait_s = vlm_max_wait_s
        self.fov_h_1x_deg = fov_h_1x_deg
        self.exposure_s = exposure_s
        #: ``waited``: events the gate made wait for a judgeable view at least once;
        #: ``unasked_after_wait`` / ``unasked_out_of_view``: those raised unasked when
        #: ``vlm_max_wait_s`` ran out / when they left the view first; ``vanished_in_view``:
        #: those forgotten because the detector stopped finding them in a sharp view;
        #: ``unasked_at_stop`` / ``unanswered_at_stop``: those :meth:`flush` raised
        self.vlm_counts: Counter[str] = Counter()
        self._prev_pose: tuple[float, PTZPose] | None = None
        self._look_at: int | None = None  # id() of the event the camera was last sent to
        self.max_gap_s = max_gap_s
        self.rebind_after_s = rebind_after_s
        self.rebind_sizes = rebind_sizes
        self.rebind_min_deg = rebind_min_deg
        self.persist_interval_s = persist_interval_s
        self.snapshot_max_width = snapshot_max_width
        self.jpeg_quality = jpeg_quality
        self._events: list[_Event] = []
        self._loaded = False
        self._persisted_t = -math.inf

    @property
    def state_key(self) -> str:
        """Where this camera's open events live in the state store."""
        return f"alerts/open/{self.camera_id}"

    def open_events(self) -> list[dict[str, Any]]:
        """The events followed now: hazard, key, status, alert_id (for status and tests)."""
        return [
            {"hazard": e.hazard, "key": e.key, "status": e.status, "alert_id": e.alert_id}
            for e in self._events
        ]

    def look_target(self) -> LookTarget | None:
        """The event that has waited longest for a view the VLM can judge (None: none waits).

        The caller steers the camera to it: until its wait (``vlm_max_wait_s``) is over, the
        target is not given up when unseen for :data:`WAIT_UNSEEN_S` — a camera turning towards
        it smears it, and the detector loses it until the camera settles.
        """
        waiting = [
            ev
            for ev in self._events
            if ev.status == "pending"
            and ev.waiting_view is not None
            and ev.waiting_since is not None
        ]
        if not waiting:
            self._look_at = None
            return None
        ev = min(waiting, key=lambda e: e.waiting_since or 0.0)
        assert ev.waiting_view is not None and ev.waiting_since is not None
        self._look_at = id(ev)
        obs = ev.waiting_view[0]
        return LookTarget(
            hazard=ev.hazard,
            key=ev.key,
            pan_deg=float(obs.pan_deg),
            tilt_deg=float(obs.tilt_deg),
            size_deg=float(obs.size_deg),
            reason=ev.waiting_reason,
            waiting_since=ev.waiting_since,
        )

    # ------------------------------------------------------------------ main entry
    def update(
        self,
        observations: Sequence[HazardObservation],
        t_wall: datetime,
        frame: np.ndarray,
        pose: PTZPose,
        t_site: float | None = None,
    ) -> list[Emitted]:
        """Fold one frame's observations in; return the messages to publish, in ``seq`` order."""
        wall = format_utc(t_wall)
        now = float(t_site) if t_site is not None else t_wall.timestamp()
        self._load(now, t_wall)
        latest: dict[tuple[str, str], HazardObservation] = {}
        for obs in observations:
            rule = self.rules.get(obs.type)
            if rule is None or not rule.enabled:
                continue
            known = latest.get((obs.type, obs.key))
            if known is None or obs.confidence > known.confidence:
                latest[(obs.type, obs.key)] = obs
        blur_px = self._motion_blur_px(now, pose, frame.shape[1])
        matches = self._match(list(latest.values()), now)
        observed = {id(ev) for ev, _ in matches if ev is not None}
        emitted, changed = self._expire(observed, now, wall, pose, frame.shape, blur_px)
        raised, changed_now, touched_raised = self._observe(
            matches, now, wall, frame, pose, blur_px
        )
        emitted += raised
        answered = self._collect_answers(wall)
        emitted += answered
        changed_now = changed_now or bool(answered)
        due = touched_raised and now - self._persisted_t >= self.persist_interval_s
        if changed or changed_now or due:
            self._persist(now)
        return emitted

    # ------------------------------------------------------------------ steps
    def _motion_blur_px(self, now: float, pose: PTZPose, width_px: int) -> float:
        """This frame's motion blur estimate in its pixels: the pan/tilt speed since the last
        frame times the exposure, at this zoom's pixels per degree (0 on the first frame)."""
        prev, self._prev_pose = self._prev_pose, (now, pose)
        if prev is None or now <= prev[0]:
            return 0.0
        t0, p0 = prev
        dt = now - t0
        turned_deg = math.hypot(wrap_deg(pose.pan_deg - p0.pan_deg), pose.tilt_deg - p0.tilt_deg)
        speed_dps = turned_deg / dt
        px_per_deg = width_px / fov_h_deg(max(pose.zoom, 1e-6), self.fov_h_1x_deg)
        return speed_dps * self.exposure_s * px_per_deg

    def _in_view(
        self, location: AlertLocation, pose: PTZPose, shape: tuple[int, ...], blur_px: float
    ) -> bool:
        """Whether a place (pan/tilt) lies well inside a frame taken at ``pose``, and that frame
        is sharp (see :data:`IN_VIEW_MARGIN`)."""
        if blur_px > IN_VIEW_MAX_BLUR_PX:
            return False
        height, width = int(shape[0]), int(shape[1])
        view = CameraView((0.0, 0.0, 0.0), 0.0, pose, width, height, self.fov_h_1x_deg)
        uv, depth = view.project(direction(location["pan_deg"], location["tilt_deg"]))
        u, v = float(uv[0]) / width, float(uv[1]) / height
        lo, hi = IN_VIEW_MARGIN, 1.0 - IN_VIEW_MARGIN
        return float(depth) > 0 and lo <= u <= hi and lo <= v <= hi

    def _match(
        self, observations: list[HazardObservation], now: float
    ) -> list[tuple[_Event | None, HazardObservation]]:
        """Pair observations with events: by key, else by place with an orphaned event."""
        by_key = {(ev.hazard, ev.key): ev for ev in self._events}
        out: list[tuple[_Event | None, HazardObservation]] = []
        taken: set[int] = set()
        rest: list[HazardObservation] = []
        for obs in observations:
            ev = by_key.get((obs.type, obs.key))
            if ev is not None:
                out.append((ev, obs))
                taken.add(id(ev))
            else:
                rest.append(obs)
        orphans = [
            ev
            for ev in self._events
            if id(ev) not in taken and (ev.restored or now - ev.last_seen_t >= self.rebind_after_s)
        ]
        pairs = []
        for i, obs in enumerate(rest):
            for j, ev in enumerate(orphans):
                if ev.hazard != obs.type or ev.zone_id != obs.zone_id:
                    continue
                dist = angular_distance_deg(
                    ev.location["pan_deg"], ev.location["tilt_deg"], obs.pan_deg, obs.tilt_deg
                )
                # people move while unseen (a restart takes seconds): widen the gate with the
                # unseen time, as the tracker does, up to a bound
                unseen_s = max(0.0, now - ev.last_seen_t)
                sizes = self.rebind_sizes + min(REBIND_GROWTH_MAX, REBIND_GROWTH_PER_S * unseen_s)
                gate = max(self.rebind_min_deg, sizes * max(obs.size_deg, ev.size_deg))
                if dist <= gate:
                    # raised events first: continuing an alert beats continuing a candidate
                    pairs.append((ev.status != "raised", dist, i, j))
        pairs.sort()
        matched = greedy_pairs((i, j) for _, _, i, j in pairs)
        out.extend((orphans[j], rest[i]) for i, j in matched)
        used_obs = {i for i, _ in matched}
        out.extend((None, obs) for i, obs in enumerate(rest) if i not in used_obs)
        return out

    def _expire(
        self,
        observed: set[int],
        now: float,
        wall: str,
        pose: PTZPose,
        shape: tuple[int, ...],
        blur_px: float,
    ) -> tuple[list[Emitted], bool]:
        """Clear raised events unseen for their cool-down; forget stale candidates; raise
        unasked the waiting events that left the view of this frame (``pose``, ``shape``,
        ``blur_px``)."""
        emitted: list[Emitted] = []
        for ev in list(self._events):
            if id(ev) in observed:
                continue
            unseen_s = now - ev.last_seen_t
            rule = self.rules[ev.hazard]
            if (
                id(ev) == self._look_at
                and ev.status == "pending"
                and ev.waiting_view is not None
                and now - (ev.waiting_since or now) < self.vlm_max_wait_s
            ):
                continue  # the camera is on its way: keep waiting for a view (see look_target)
            if ev.status == "pending" and ev.waiting_view is not None and unseen_s > WAIT_UNSEEN_S:
                if self._in_view(ev.location, pose, shape, blur_px):
                    # the camera sees its place, sharp, and the detector no longer finds the
                    # hazard: a pending event its detections stopped supporting (forgotten after
                    # max_gap_s below)
                    ev.unseen_in_view = True
                elif not ev.unseen_in_view:
                    # ripe, but out of view before the VLM could judge it: it goes out unasked
                    # (the gate suppresses only on a confident contradiction), from its last
                    # sighting
                    obs, frame = ev.waiting_view
                    ev.waiting_view = None
                    self.vlm_counts["unasked_out_of_view"] += 1
                    log.info(
                        "%s %s: raised unasked, out of view before the VLM could judge it",
                        ev.hazard,
                        ev.key,
                    )
                    emitted.append(self._raise(ev, obs, None, frame, wall))
                    continue
            forget = (ev.status == "pending" and unseen_s > self.max_gap_s) or (
                ev.status == "suppressed" and unseen_s >= rule.cooldown_s
            )
            if forget:
                if ev.unseen_in_view:
                    self.vlm_counts["vanished_in_view"] += 1
                    log.info("%s %s: forgotten, no longer detected in view", ev.hazard, ev.key)
                self._events.remove(ev)
            elif ev.status == "raised" and unseen_s >= rule.cooldown_s:
                self._events.remove(ev)
                emitted.append(Emitted(self._message(ev, "cleared", wall), None))
        return emitted, bool(emitted)

    def _observe(
        self,
        matches: list[tuple[_Event | None, HazardObservation]],
        now: float,
        wall: str,
        frame: np.ndarray,
        pose: PTZPose,
        blur_px: float,
    ) -> tuple[list[Emitted], bool, bool]:
        """Update observed events, start new ones, raise those past their dwell (``blur_px``:
        the frame's motion blur estimate, for the gate).

        Returns (raised messages, whether persisted state changed, whether a raised event was
        seen).
        """
        emitted: list[Emitted] = []
        changed = touched_raised = False
        for maybe_ev, obs in matches:
            rule = self.rules[obs.type]
            location = _location(obs, pose)
            if maybe_ev is None:
                ev = _Event(
                    hazard=obs.type,
                    key=obs.key,
                    zone_id=obs.zone_id,
                    status="pending",
                    first_seen_t=now,
                    first_seen_wall=wall,
                    last_seen_t=now,
                    last_seen_wall=wall,
                    location=location,
                    size_deg=obs.size_deg,
                    confidence=obs.confidence,
                    severity=obs.severity or rule.severity,
                )
                self._events.append(ev)
            else:
                ev = maybe_ev
                if ev.status == "pending" and now - ev.last_seen_t > self.max_gap_s:
                    ev.first_seen_t, ev.first_seen_wall = now, wall  # the dwell starts over
                    ev.waiting_since = ev.waiting_view = None
                if ev.key != obs.key:
                    ev.key = obs.key
                    changed = changed or ev.status == "raised"
                ev.restored = False
            ev.last_seen_t, ev.last_seen_wall = now, wall
            ev.unseen_in_view = False
            ev.location, ev.size_deg, ev.confidence = location, obs.size_deg, obs.confidence
            touched_raised = touched_raised or ev.status == "raised"
            if ev.status != "pending" or now - ev.first_seen_t < rule.dwell_s:
                continue
            vlm: VlmCheck | PendingVlmCheck | NotYet | None = None
            if rule.require_vlm and self.vlm_gate is not None:
                vlm = self.vlm_gate(obs, frame, pose, blur_px)
            if isinstance(vlm, NotYet):
                if ev.waiting_since is None:
                    ev.waiting_since = now
                    self.vlm_counts["waited"] += 1
                if now - ev.waiting_since < self.vlm_max_wait_s:
                    ev.waiting_view, ev.waiting_reason = (obs, frame.copy()), vlm.reason
                    continue  # still pending: the gate is asked again on a later frame
                self.vlm_counts["unasked_after_wait"] += 1
                log.info(
                    "%s %s: raised unasked after %.1f s: %s",
                    ev.hazard,
                    ev.key,
                    now - ev.waiting_since,
                    vlm.reason,
                )
                vlm = None
            ev.waiting_view = None
            if vlm is not None and not isinstance(vlm, dict):
                # asked, answer later: keep this frame's evidence for the raise
                ev.status, ev.question = "verifying", vlm
                jpeg, evidence = self._evidence(obs, frame)
                ev.held = (jpeg, evidence, location)
                continue  # answered on this or a later frame: see _collect_answers
            if vlm is not None and vlm.get("confirmed") is False:
                ev.status, ev.vlm = "suppressed", vlm
                log.info("%s %s suppressed by the VLM: %r", ev.hazard, ev.key, vlm)
                continue
            emitted.append(self._raise(ev, obs, vlm, frame, wall))
            changed = True
        return emitted, changed, touched_raised

    def _collect_answers(self, wall: str) -> list[Emitted]:
        """Raise or suppress the ``verifying`` events whose VLM answer came (never blocks)."""
        emitted: list[Emitted] = []
        for ev in self._events:
            if ev.status != "verifying" or ev.question is None or ev.held is None:
                continue
            vlm = ev.question.poll()
            if vlm is None:
                continue
            if vlm.get("confirmed") is False:
                ev.question = ev.held = None
                ev.status, ev.vlm = "suppressed", vlm
                log.info("%s %s suppressed by the VLM: %r", ev.hazard, ev.key, vlm)
                continue
            emitted.append(self._raise_held(ev, vlm, wall))
        return emitted

    def _raise_held(self, ev: _Event, vlm: VlmCheck, wall: str) -> Emitted:
        """Raise a ``verifying`` event with its answer, from the frame that asked."""
        assert ev.held is not None
        jpeg, evidence, location = ev.held
        ev.question = ev.held = None
        ev.vlm = vlm
        ev.alert_id = str(uuid.uuid4())
        ev.evidence = {**evidence, "snapshot_topic": self.snapshot_topic(ev.alert_id)}
        ev.location = location  # where the evidence shows it (its bbox crops the JPEG)
        ev.status = "raised"
        return Emitted(self._message(ev, "raised", wall), jpeg)

    def flush(
        self,
        t_wall: datetime,
        t_site: float | None = None,
        wait_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Emitted]:
        """The agent stops: raise what only the VLM held back (see the module docstring).

        Questions in flight are polled for up to ``wait_s`` (their own timeout bounds them
        anyway); one still unanswered then goes out as a timeout. Ripe events waiting for a
        judgeable view go out unasked from their last sighting. Returns the raised messages;
        call it once, after the last :meth:`update`. A waiting event the detector stopped finding
        in a sharp view (``unseen_in_view``) is not raised.
        """
        wall = format_utc(t_wall)
        deadline = time.monotonic() + max(0.0, wait_s)
        emitted = self._collect_answers(wall)
        while any(ev.status == "verifying" for ev in self._events) and time.monotonic() < deadline:
            sleep(0.01)
            emitted += self._collect_answers(wall)
        for ev in self._events:
            if ev.status == "verifying" and ev.question is not None and ev.held is not None:
                unanswered: VlmCheck = {
                    "question": ev.question.question,
                    "answer": None,
                    "confirmed": None,
                    "latency_ms": None,
                    "error": "timeout",
                }
                self.vlm_counts["unanswered_at_stop"] += 1
                emitted.append(self._raise_held(ev, unanswered, wall))
            elif ev.status == "pending" and ev.waiting_view is not None and not ev.unseen_in_view:
                obs, frame = ev.waiting_view
                ev.waiting_view = None
                self.vlm_counts["unasked_at_stop"] += 1
                log.info("%s %s: raised unasked, the agent stops", ev.hazard, ev.key)
                emitted.append(self._raise(ev, obs, None, frame, wall))
        if emitted:
            self._persist(float(t_site) if t_site is not None else t_wall.timestamp())
        return emitted

    def _evidence(self, obs: HazardObservation, frame: np.ndarray) -> tuple[bytes, AlertEvidence]:
        """The evidence JPEG of ``obs`` in ``frame`` and its ``evidence`` (topic left empty)."""
        jpeg, width, height = render_snapshot(
            frame,
            obs.bbox,
            f"{obs.type} {obs.confidence:.2f}",
            max_width=self.snapshot_max_width,
            jpeg_quality=self.jpeg_quality,
        )
        evidence: AlertEvidence = {
            "snapshot_topic": "",
            "snapshot_sha256": hashlib.sha256(jpeg).hexdigest(),
            "width": width,
            "height": height,
        }
        return jpeg, evidence

    def _raise(
        self,
        ev: _Event,
        obs: HazardObservation,
        vlm: VlmCheck | None,
        frame: np.ndarray,
        wall: str,
    ) -> Emitted:
        ev.alert_id = str(uuid.uuid4())
        ev.vlm = vlm
        jpeg, evidence = self._evidence(obs, frame)
        ev.evidence = {**evidence, "snapshot_topic": self.snapshot_topic(ev.alert_id)}
        ev.status = "raised"
        return Emitted(self._message(ev, "raised", wall), jpeg)

    def _message(self, ev: _Event, state: Literal["raised", "cleared"], wall: str) -> AlertMessage:
        seq = self.store.next_seq()
        if not isinstance(seq, int) or seq < 1:
            raise ValueError(f"state store: next_seq() returned {seq!r}, expected an int >= 1")
        message = self._build(ev, state, wall, seq)
        validate_alert(message)  # a bug here must not reach subscribers
        return message

    def _build(
        self, ev: _Event, state: Literal["raised", "cleared"], wall: str, seq: int
    ) -> AlertMessage:
        assert ev.alert_id is not None and ev.evidence is not None
        return {
            "schema": ALERT_SCHEMA_NAME,
            "alert_id": ev.alert_id,
            "state": state,
            "seq": seq,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "camera_id": self.camera_id,
            "hazard": ev.hazard,
            "severity": ev.severity,
            "confidence": round(min(max(ev.confidence, 0.0), 1.0), 4),
            "first_seen": ev.first_seen_wall,
            "ts": wall,
            "location": cast(AlertLocation, dict(ev.location)),
            "evidence": cast(AlertEvidence, dict(ev.evidence)),
            "vlm": ev.vlm,
            "models": dict(self.models),
            "agent_version": self.agent_version,
        }

    def _persist(self, now: float) -> None:
        events = [ev.to_state() for ev in self._events if ev.status == "raised"]
        self.store.set(self.state_key, {"schema": STATE_SCHEMA, "events": events})
        self._persisted_t = now

    def _load(self, now: float, t_wall: datetime) -> None:
        """Take over the open events a previous run persisted (once, on the first update)."""
        if self._loaded:
            return
        self._loaded = True
        raw = self.store.get(self.state_key)
        if raw is None:
            return
        try:
            if raw.get("schema") != STATE_SCHEMA:
                raise ValueError(f"schema is {raw.get('schema')!r}, expected {STATE_SCHEMA!r}")
            restored = []
            for item in raw["events"]:
                unseen_s = max(0.0, (t_wall - _parse_utc(item["last_seen"])).total_seconds())
                ev = _Event.from_state(item, now - unseen_s)
                # its cleared message must be valid, or clearing it would fail every frame
                problems = alert_problems(self._build(ev, "cleared", format_utc(t_wall), 1))
                if problems:
                    raise ValueError(f"event {ev.alert_id}: {problems}")
                restored.append(ev)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # re-raising an open event is a smaller harm than never alerting again
            log.error("ignoring unreadable alert state %r: %s", self.state_key, exc)
            return
        self._events.extend(restored)
        log.info("restored %d open alert event(s) from %r", len(restored), self.state_key)
