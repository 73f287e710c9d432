"""Score an agent's raised alerts against a virtual site's hazard events (evaluation only).

This reads ground truth, so it runs *outside* the agent — in the report of `sitehawk-edge run`
and in evaluation — after the alerts were raised. An alert matches an event when

* the hazard type is the same,
* it was raised while the event was active, plus a grace period (default 5 s: an alert raised
  just after a worker put the helmet back on is still about that event), and
* the alert's pan/tilt lies within the event's object — the worker's body, or the fire and its
  plume — as seen from the camera at the moment of the alert, widened by a margin (default 2°);

and each event matches at most one alert (each alert at most one event); earlier alerts are
assigned first, the nearest event first. Precision = matched alerts / raised alerts, recall =
matched events / events active in the window, time to alert = raise time − max(onset, window
start) for matched events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edge.geometry import pan_tilt_of_point, wrap_deg
from edge.matching import greedy_pairs
from edge.sim.world import HazardEvent, Site

GRACE_S = 5.0
MARGIN_DEG = 2.0
#: Half the width of a worker's body, metres (the renderer draws ~0.5-0.6 m with arms).
WORKER_HALF_WIDTH_M = 0.35


@dataclass(frozen=True)
class RaisedAlert:
    """What scoring needs of a raised alert: its id, hazard, raise time (site s) and pan/tilt."""

    alert_id: str
    hazard: str
    t: float
    pan_deg: float
    tilt_deg: float


@dataclass(frozen=True)
class Extent:
    """An object's angular box as seen from the camera: pan and tilt intervals, degrees."""

    pan_min: float
    pan_max: float
    tilt_min: float
    tilt_max: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.pan_min + self.pan_max) / 2.0, (self.tilt_min + self.tilt_max) / 2.0

    def contains(self, pan_deg: float, tilt_deg: float, margin_deg: float = 0.0) -> bool:
        c_pan = self.centre[0]
        pan = c_pan + float(wrap_deg(pan_deg - c_pan))  # the same side of ±180°
        return (
            self.pan_min - margin_deg <= pan <= self.pan_max + margin_deg
            and self.tilt_min - margin_deg <= tilt_deg <= self.tilt_max + margin_deg
        )


@dataclass
class EventOutcome:
    """One hazard event of the window and the alert that found it (if any)."""

    id: str
    type: str
    start_s: float
    end_s: float
    alert_id: str | None = None
    alert_t: float | None = None
    tta_s: float | None = None

    @property
    def found(self) -> bool:
        return self.alert_id is not None


@dataclass
class AlertOutcome:
    """One raised alert and the event it matched (None: a false alert)."""

    alert_id: str
    hazard: str
    t: float
    pan_deg: float
    tilt_deg: float
    event_id: str | None = None


@dataclass
class Score:
    """Precision, recall, false alerts per hour and time to alert over a site-time window."""

    t_start: float
    t_end: float
    events: list[EventOutcome]
    alerts: list[AlertOutcome]
    grace_s: float = GRACE_S
    margin_deg: float = MARGIN_DEG

    @property
    def num_matched(self) -> int:
        return sum(e.found for e in self.events)

    @property
    def precision(self) -> float | None:
        return self.num_matched / len(self.alerts) if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.num_matched / len(self.events) if self.events else None

    @property
    def false_alerts_per_hour(self) -> float:
        hours = max(self.t_end - self.t_start, 1e-9) / 3600.0
        return sum(a.event_id is None for a in self.alerts) / hours

    @property
    def tta_mean_s(self) -> float | None:
        ttas = [e.tta_s for e in self.events if e.tta_s is not None]
        return float(np.mean(ttas)) if ttas else None

    def to_json(self) -> dict:
        """The summary and every event and alert outcome (JSON-ready)."""
        return {
            "t_start": self.t_start,
            "t_end": self.t_end,
            "precision": self.precision,
            "recall": self.recall,
            "false_alerts_per_hour": self.false_alerts_per_hour,
            "tta_mean_s": self.tta_mean_s,
            "alerts": len(self.alerts),
            "hazards": len(self.events),
            "matched": self.num_matched,
            "grace_s": self.grace_s,
            "margin_deg": self.margin_deg,
            "events": [asdict(e) for e in self.events],
            "alert_outcomes": [asdict(a) for a in self.alerts],
        }


def event_extent(site: Site, event: HazardEvent, t: float) -> Extent | None:
    """The angular box of the event's object at site time ``t`` (None if it has none)."""
    cam = site.spec.camera
    mount = (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))
    if event.worker is not None:
        xy = site.workers_at(t).xy[event.worker]
        height = float(site.heights[event.worker])
        points = np.array([[xy[0], xy[1], 0.0], [xy[0], xy[1], height]])
        pans, tilts, ranges = pan_tilt_of_point(mount, cam.heading_deg, points)
        half = math.degrees(math.atan2(WORKER_HALF_WIDTH_M, max(float(ranges[0]), 0.5)))
        pan = float(pans[0])
        return Extent(pan - half, pan + half, float(tilts.min()), float(tilts.max()))
    if event.fire is not None:
        fire = site.spec.fires[event.fire]
        states = [f for f in site.fires_at(t) if f.index == event.fire]
        plume = states[0].plume_m if states else fire.size_m * 1.5
        r = fire.size_m
        x, y = float(fire.position[0]), float(fire.position[1])
        points = np.array([[x - r, y, 0], [x + r, y, 0], [x, y - r, 0], [x, y + r, 0]])
        points = np.concatenate([points, [[x, y, plume + r]]])
        pans, tilts, _ = pan_tilt_of_point(mount, cam.heading_deg, points)
        centre = float(pans[0])
        rel = np.asarray(wrap_deg(pans - centre))
        return Extent(
            centre + float(rel.min()),
            centre + float(rel.max()),
            float(tilts.min()),
            float(tilts.max()),
        )
    return None


def score_alerts(
    site: Site,
    alerts: Sequence[RaisedAlert],
    t_start: float,
    t_end: float,
    *,
    grace_s: float = GRACE_S,
    margin_deg: float = MARGIN_DEG,
) -> Score:
    """Match ``alerts`` (raised in the site-time window [t_start, t_end)) to the site's events
    active in that window; see the module doc for the rule."""
    events = [h for h in site.hazards if h.start_s < t_end and h.end_s > t_start]
    outcomes = [EventOutcome(h.id, h.type, h.start_s, h.end_s) for h in events]
    alert_outcomes = [
        AlertOutcome(a.alert_id, a.hazard, a.t, a.pan_deg, a.tilt_deg)
        for a in sorted(alerts, key=lambda a: a.t)
    ]
    pairs: list[tuple[float, float, int, int]] = []
    for i, alert in enumerate(alert_outcomes):
        for j, event in enumerate(events):
            if event.type != alert.hazard:
                continue
            if not event.start_s <= alert.t <= event.end_s + grace_s:
                continue
            # the object where it was at the alert (or at its last active moment, in the grace)
            extent = event_extent(site, event, min(alert.t, event.end_s - 1e-3))
            if extent is None or not extent.contains(alert.pan_deg, alert.tilt_deg, margin_deg):
                continue
            c_pan, c_tilt = extent.centre
            dist = math.hypot(float(wrap_deg(alert.pan_deg - c_pan)), alert.tilt_deg - c_tilt)
            pairs.append((alert.t, dist, i, j))
    pairs.sort()
    for i, j in greedy_pairs((i, j) for _, _, i, j in pairs):
        alert, outcome = alert_outcomes[i], outcomes[j]
        alert.event_id = outcome.id
        outcome.alert_id, outcome.alert_t = alert.alert_id, alert.t
        outcome.tta_s = round(alert.t - max(outcome.start_s, t_start), 3)
    return Score(t_start, t_end, outcomes, alert_outcomes, grace_s, margin_deg)
