"""Hazard rules: from world tracks to per-frame hazard observations.

Each frame, :class:`HazardRules` looks at the tracks the :class:`~edge.alerts.tracker.WorldTracker`
just updated and reports every hazard it sees *in this frame* as a :class:`HazardObservation`:

* ``no_helmet`` / ``no_vest`` — a confirmed person track seen now whose attribute evidence says
  the item is missing: confidence = missing / (missing + worn + ``prior_weight``), so a few noisy
  heads do not make a hazard;
* ``zone_intrusion`` — a confirmed person seen now whose ground position (flat-ground model, fixed
  within ``ground_max_age_s``) lies inside an active zone: ``always``, on a ``schedule`` of
  ``HH:MM`` windows in the site's ``timezone``, or ``while_machine_moving`` (a confirmed machine
  track inside the polygon, or within ``machine_margin_m`` of it, is moving — a machine out of
  view keeps its last verdict for ``TrackerConfig.moving_hold_s``); confidence = the person's
  detection score;
* ``fire_smoke`` — a confirmed fire/smoke track seen now, with evidence gathered at verifying
  resolution; confidence as for attributes.

Timing (dwell, cool-down) belongs to the :class:`~edge.alerts.manager.AlertManager`; here only
``enabled`` and ``min_confidence`` of each rule apply. The inputs are small local dataclasses;
the device configuration (``firmware_config.device``) maps onto them one to one: a ``HazardRule``
onto :class:`HazardRuleSpec` (``vlm_check`` → ``require_vlm``), a ``ZoneConfig`` onto
:class:`ZoneSpec` (``activity`` → ``active``, ``schedule``), ``DeviceConfig.timezone`` onto
``HazardRules(timezone=ZoneInfo(...))``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from typing import Literal

import numpy as np

from edge.alerts.schema import HAZARD_TYPES, SEVERITIES, Hazard, Severity
from edge.alerts.tracker import AttributeEvidence, Track

ZoneActivity = Literal["always", "schedule", "while_machine_moving"]


@dataclass(frozen=True)
class HazardRuleSpec:
    """How one hazard type becomes an alert (thresholds, timing, severity)."""

    enabled: bool = True
    min_confidence: float = 0.6  # observations below this are not reported
    dwell_s: float = 2.0  # observed this long (short gaps allowed) before it is raised
    cooldown_s: float = 30.0  # unobserved this long before it is cleared
    severity: Severity = "medium"
    require_vlm: bool = False  # ask the VLM gate before raising

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence: {self.min_confidence} is not within 0-1")
        if self.dwell_s < 0:
            raise ValueError(f"dwell_s: {self.dwell_s} must be >= 0")
        if self.cooldown_s <= 0:
            raise ValueError(f"cooldown_s: {self.cooldown_s} must be > 0")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity: {self.severity!r} is not one of {', '.join(SEVERITIES)}")


DEFAULT_HAZARD_RULES: dict[str, HazardRuleSpec] = {
    "no_helmet": HazardRuleSpec(severity="medium"),
    "no_vest": HazardRuleSpec(severity="low"),
    "zone_intrusion": HazardRuleSpec(min_confidence=0.5, dwell_s=1.0, severity="high"),
    "fire_smoke": HazardRuleSpec(cooldown_s=60.0, severity="critical"),
}


def _minutes(value: str | time, where: str) -> int:
    """Minutes after midnight of an "HH:MM" string (up to "24:00") or a ``datetime.time``."""
    if isinstance(value, time):
        return value.hour * 60 + value.minute
    try:
        hh, mm = value.split(":")
        minutes = int(hh) * 60 + int(mm)
    except (AttributeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not HH:MM") from None
    if not (0 <= int(mm) < 60 and 0 <= minutes <= 24 * 60):
        raise ValueError(f"{where}: {value!r} is not a time of day (00:00-24:00)")
    return minutes


@dataclass(frozen=True)
class ZoneSpec:
    """An exclusion zone on the ground plane (site metres) and when it is active."""

    id: str
    polygon: tuple[tuple[float, float], ...]
    active: ZoneActivity = "always"
    # local [start, end) as "HH:MM" or datetime.time; an end before the start wraps midnight
    schedule: tuple[tuple[str | time, str | time], ...] = ()
    severity: Severity | None = None  # overrides the zone_intrusion rule's severity
    machine_margin_m: float = 3.0  # a machine this close to the polygon counts as inside it
    _schedule_min: tuple[tuple[int, int], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        where = f"zones.{self.id}"
        if not self.id:
            raise ValueError("zones: a zone needs a non-empty id")
        if len(self.polygon) < 3:
            raise ValueError(f"{where}.polygon: needs at least 3 points, got {len(self.polygon)}")
        if self.active not in ("always", "schedule", "while_machine_moving"):
            raise ValueError(
                f"{where}.active: {self.active!r} is not one of always, schedule, "
                "while_machine_moving"
            )
        if self.active == "schedule" and not self.schedule:
            raise ValueError(f"{where}.schedule: an active='schedule' zone needs intervals")
        if self.severity is not None and self.severity not in SEVERITIES:
            raise ValueError(f"{where}.severity: {self.severity!r} is not one of {SEVERITIES}")
        parsed = tuple(
            (
                _minutes(start, f"{where}.schedule[{i}][0]"),
                _minutes(end, f"{where}.schedule[{i}][1]"),
            )
            for i, (start, end) in enumerate(self.schedule)
        )
        object.__setattr__(self, "_schedule_min", parsed)
        object.__setattr__(self, "polygon", tuple((float(x), float(y)) for x, y in self.polygon))

    def scheduled(self, now: datetime) -> bool:
        """Whether the time of day of ``now`` (as given: convert to site time first) is on."""
        minute = now.hour * 60 + now.minute + now.second / 60.0
        for start, end in self._schedule_min:
            if start <= end:
                if start <= minute < end:
                    return True
            elif minute >= start or minute < end:  # wraps midnight, e.g. 22:00-06:00
                return True
        return False


@dataclass(frozen=True)
class HazardObservation:
    """One hazard seen in the current frame; ``key`` is stable for one event."""

    type: Hazard
    key: str  # person hazards: track id; intrusion: "zone/track"; fire: track id
    pan_deg: float
    tilt_deg: float
    bbox: tuple[float, float, float, float]  # normalised 0-1 in the current frame
    ground_xy: tuple[float, float] | None
    confidence: float
    size_deg: float = 0.0  # angular height of the object (to match events by place)
    track_id: str = ""
    zone_id: str | None = None
    severity: Severity | None = None  # overrides the rule's severity (zones carry their own)
    boundary_m: float | None = None  # zone_intrusion: ground distance to the zone's boundary
    heads_in_box: int | None = None  # person hazards: head detections inside the person's box


def point_in_polygon(point: tuple[float, float], polygon: Sequence[tuple[float, float]]) -> bool:
    """Even-odd rule."""
    x, y = point
    inside = False
    n = len(polygon)
    for i in range(n):
        x0, y0 = polygon[i]
        x1, y1 = polygon[(i + 1) % n]
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def distance_to_polygon(
    point: tuple[float, float], polygon: Sequence[tuple[float, float]]
) -> float:
    """0 inside, else the distance to the nearest edge (metres)."""
    if point_in_polygon(point, polygon):
        return 0.0
    return distance_to_boundary(point, polygon)


def distance_to_boundary(
    point: tuple[float, float], polygon: Sequence[tuple[float, float]] | np.ndarray
) -> float:
    """The distance to the polygon's nearest edge (metres), inside or out."""
    p = np.asarray(point, dtype=np.float64)
    a = np.asarray(polygon, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    ab = b - a
    s = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
    return float(np.min(np.linalg.norm(a + s[:, None] * ab - p, axis=1)))


class HazardRules:
    """Per-frame hazard observations from tracks, under the configured rules and zones."""

    def __init__(
        self,
        rules: Mapping[str, HazardRuleSpec] | None = None,
        zones: Sequence[ZoneSpec] = (),
        *,
        prior_weight: float = 1.0,
        ground_max_age_s: float = 1.0,
        timezone: tzinfo | None = None,
    ):
        merged = dict(DEFAULT_HAZARD_RULES)
        for name, rule in (rules or {}).items():
            if name not in HAZARD_TYPES:
                raise ValueError(f"hazards.{name}: unknown hazard type ({', '.join(HAZARD_TYPES)})")
            merged[name] = rule
        self.rules = merged
        ids = [z.id for z in zones]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"zones: duplicate ids {duplicates}")
        self.zones = list(zones)
        self.prior_weight = prior_weight
        self.ground_max_age_s = ground_max_age_s
        self.timezone = timezone  # of zone schedules (the site's); None: as ``now`` comes

    def _on(self, hazard: str) -> HazardRuleSpec | None:
        rule = self.rules.get(hazard)
        return rule if rule is not None and rule.enabled else None

    def active_zones(self, tracks: Iterable[Track], now: datetime | None) -> list[ZoneSpec]:
        """Zones active at ``now``. Without ``now`` a scheduled zone counts as active (fail safe).

        An aware ``now`` is converted to ``timezone`` (when set) before the schedule is read.
        """
        if now is not None and self.timezone is not None and now.tzinfo is not None:
            now = now.astimezone(self.timezone)
        machines = [
            tr
            for tr in tracks
            if tr.kind == "machine" and tr.confirmed and tr.moving and tr.ground_xy is not None
        ]
        out = []
        for zone in self.zones:
            if zone.active == "always":
                on = True
            elif zone.active == "schedule":
                on = now is None or zone.scheduled(now)
            else:
                on = any(
                    distance_to_polygon(m.ground_xy, zone.polygon) <= zone.machine_margin_m
                    for m in machines
                    if m.ground_xy is not None
                )
            if on:
                out.append(zone)
        return out

    def update(
        self, tracks: Sequence[Track], now: datetime | None = None
    ) -> list[HazardObservation]:
        """Hazards seen in the frame the tracks were just updated with."""
        out: list[HazardObservation] = []
        current = [tr for tr in tracks if tr.seen_now and tr.confirmed and tr.bbox_norm]
        for tr in current:
            if tr.kind == "person":
                attributes: tuple[tuple[Hazard, AttributeEvidence], ...] = (
                    ("no_helmet", tr.helmet),
                    ("no_vest", tr.vest),
                )
                for hazard, evidence in attributes:
                    rule = self._on(hazard)
                    if rule is None or evidence.num_judged == 0:
                        continue
                    confidence = evidence.missing_probability(self.prior_weight)
                    if confidence >= rule.min_confidence:
                        out.append(self._observation(hazard, tr.id, tr, confidence))
            elif tr.kind == "fire_smoke":
                rule = self._on("fire_smoke")
                if rule is None:
                    continue
                confidence = tr.smoke_evidence / (tr.smoke_evidence + self.prior_weight)
                if confidence >= rule.min_confidence:
                    out.append(self._observation("fire_smoke", tr.id, tr, confidence))
        rule = self._on("zone_intrusion")
        if rule is not None and self.zones:
            zones = self.active_zones(tracks, now)
            for tr in current:
                # seen now, so last_seen_t is the current time
                fresh = (
                    tr.ground_t is not None
                    and tr.last_seen_t - tr.ground_t <= self.ground_max_age_s
                )
                if tr.kind != "person" or tr.ground_xy is None or not fresh:
                    continue
                if tr.score < rule.min_confidence:
                    continue
                for zone in zones:
                    if point_in_polygon(tr.ground_xy, zone.polygon):
                        out.append(
                            self._observation(
                                "zone_intrusion",
                                f"{zone.id}/{tr.id}",
                                tr,
                                tr.score,
                                zone_id=zone.id,
                                severity=zone.severity,
                                boundary_m=distance_to_boundary(tr.ground_xy, zone.polygon),
                            )
                        )
        return out

    @staticmethod
    def _observation(
        hazard: Hazard,
        key: str,
        tr: Track,
        confidence: float,
        zone_id: str | None = None,
        severity: Severity | None = None,
        boundary_m: float | None = None,
    ) -> HazardObservation:
        assert tr.bbox_norm is not None
        return HazardObservation(
            type=hazard,
            key=key,
            pan_deg=tr.pan_deg,
            tilt_deg=tr.tilt_deg,
            bbox=tr.bbox_norm,
            ground_xy=tr.ground_xy,
            confidence=min(max(float(confidence), 0.0), 1.0),
            size_deg=tr.height_deg,
            track_id=tr.id,
            zone_id=zone_id,
            severity=severity,
            boundary_m=boundary_m,
            heads_in_box=tr.heads_in_box if tr.kind == "person" else None,
        )
