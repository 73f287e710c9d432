"""Where the VLM gate wins and loses hazard events: each seed run with the VLM on and off.

    python scripts/gate_trace.py --seeds 0-9 --config tuned.yaml --json trace.json

For every seed it runs the agent twice (``sitehawk-edge eval``'s runs: ``--vlm on``, then off)
and follows every event the alert manager opened in the run with the VLM on — when it was
first seen, whether it waited for a judgeable view, what the VLM answered, and how it ended
(raised, suppressed, forgotten after the detections stopped, forgotten in view). Each ground-truth
hazard event that only one of the two runs found is then explained by the manager's events
that overlapped it (same hazard, pan/tilt within the event's object while it was active):

* ``confirmed`` / ``raised`` — raised with the VLM's confirmation / unasked or unconfirmed
  (also by the stopping agent's flush),
* ``contradicted`` — the VLM answered "no hazard" about it (a suppressed true hazard),
* ``vanished_in_view`` — it waited for a view, the camera looked, and the detector lost it,
* ``pending_gap`` / ``waiting`` — seen but never ripened / ripe and still waiting at the end,
* ``not_seen`` — the run with the VLM never observed it (its search went elsewhere: looks cost
  control steps, and the two runs' cameras part ways after the first look).

Each false alert of the run with the VLM is classified by what it landed on (``duplicate``,
``early`` / ``late`` on an event of its type, ``other_type``, ``nothing``) and what the VLM said
(``confirmed``, ``contradicted``, ``unconfirmed``, ``unasked``). ``--on-only`` skips the runs
without the VLM (false alerts only).

Evaluation tooling: it reads the virtual site's ground truth, like ``edge.sim.scoring``.
Prints a line per seed and the totals; ``--json`` writes every explained event and alert.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edge.evaluate import EvalOptions, parse_seeds, plan, run_seed
from edge.runner import PreparedRun
from edge.sim.scoring import MARGIN_DEG, event_extent
from edge.sim.world import HazardEvent, Site


@dataclass
class Followed:
    """One alert-manager event of the run with the VLM, as the trace saw it frame by frame."""

    hazard: str
    key: str
    first_t: float
    last_t: float = 0.0
    places: list[tuple[float, float, float]] = field(default_factory=list)  # (t, pan, tilt)
    statuses: list[str] = field(default_factory=list)  # in order, without repeats
    waited: bool = False
    unseen_in_view: bool = False
    vlm: dict[str, Any] | None = None
    reason: str | None = None  # why the gate last made it wait

    def fate(self) -> str:
        last = self.statuses[-1]
        if last == "raised":
            confirmed = self.vlm is not None and self.vlm.get("confirmed") is True
            return "confirmed" if confirmed else "raised"  # raised unasked or unconfirmed
        if last == "suppressed":
            return "contradicted"
        if last == "verifying":
            return "asked_at_end"
        if self.unseen_in_view:
            return "vanished_in_view"
        return "waiting" if self.waited else "pending_gap"


class Trace:
    """Wraps a run's alert manager (one virtual camera) and records its events every frame."""

    def __init__(self) -> None:
        self.followed: list[Followed] = []
        self.site: Site | None = None
        self.alerts: dict[str, Any] = {}  # alert_id -> the raised message

    def instrument(self, run: PreparedRun) -> None:
        (rig,) = run.rigs
        self.site = rig.site.site
        run.agent.on_alert.append(
            lambda r: (
                self.alerts.__setitem__(r.alert["alert_id"], r.alert)
                if r.alert["state"] == "raised"
                else None
            )
        )
        (loop,) = run.agent.cameras
        manager = loop.manager
        update, flush = manager.update, manager.flush
        open_: dict[int, tuple[Any, Followed]] = {}  # id() of a manager event -> it, its trace

        def snapshot(t: float) -> None:
            present = {id(ev) for ev in manager._events}
            for key in [k for k in open_ if k not in present]:  # forgotten or cleared now
                ev, f = open_.pop(key)
                f.unseen_in_view = ev.unseen_in_view  # as it was when it was forgotten
            for ev in manager._events:
                if id(ev) not in open_:
                    open_[id(ev)] = (ev, Followed(ev.hazard, ev.key, t))
                    self.followed.append(open_[id(ev)][1])
                f = open_[id(ev)][1]
                if not f.statuses or f.statuses[-1] != ev.status:
                    f.statuses.append(ev.status)
                f.last_t = t
                if ev.last_seen_t == t:
                    f.places.append((t, ev.location["pan_deg"], ev.location["tilt_deg"]))
                f.waited = f.waited or ev.waiting_since is not None
                f.reason = ev.waiting_reason if ev.waiting_since is not None else f.reason
                f.unseen_in_view = ev.unseen_in_view
                f.vlm = ev.vlm if ev.vlm is not None else f.vlm

        def traced(*args: Any, **kwargs: Any) -> Any:
            out = update(*args, **kwargs)
            snapshot(float(kwargs.get("t_site", args[4] if len(args) > 4 else 0.0)))
            return out

        def flushed(*args: Any, **kwargs: Any) -> Any:  # the agent stops: its last raises
            out = flush(*args, **kwargs)
            snapshot(float(kwargs.get("t_site") or 0.0))
            return out

        manager.update = traced  # type: ignore[method-assign]
        manager.flush = flushed  # type: ignore[method-assign]


def overlaps(site: Site, event: HazardEvent, f: Followed) -> bool:
    """Whether a followed manager event was ever seen on the ground-truth event's object."""
    if f.hazard != event.type:
        return False
    for t, pan, tilt in f.places:
        if not event.active(t):
            continue
        extent = event_extent(site, event, t)
        if extent is not None and extent.contains(pan, tilt, MARGIN_DEG):
            return True
    return False


def explain(site: Site, event: HazardEvent, trace: Trace) -> list[str]:
    """The fates of the manager's events on ``event``'s object (with why each waited)."""
    fates = [
        f.fate() + (f" ({f.reason})" if f.waited and f.reason else "")
        for f in trace.followed
        if overlaps(site, event, f)
    ]
    return fates or ["not_seen"]


def false_alert_kind(site: Site, alert: Any, score: Any) -> str:
    """What a false alert (matched to no event) landed on: ``duplicate`` (an event of its type
    at its place and time, already matched to another alert), ``early`` / ``late`` (an event of
    its type there, before it began / after it ended and the grace period), ``other_type`` (an
    event of another type there) or ``nothing``."""
    matched = {e.id for e in score.events if e.found}
    kinds = []
    for event in site.hazards:
        extent = event_extent(site, event, alert.t)
        if extent is None or not extent.contains(alert.pan_deg, alert.tilt_deg, MARGIN_DEG):
            continue
        if event.type != alert.hazard:
            kinds.append("other_type")
        elif alert.t < event.start_s:
            kinds.append("early")
        elif alert.t < event.end_s + score.grace_s:
            kinds.append("duplicate" if event.id in matched else "unmatched_event")
        else:
            kinds.append("late")
    for kind in ("duplicate", "unmatched_event", "early", "late", "other_type"):
        if kind in kinds:
            return kind
    return "nothing"


def _vlm_said(alert: Any) -> str:
    vlm = alert.get("vlm") if alert else None
    if vlm is None:
        return "unasked"
    return {True: "confirmed", False: "contradicted"}.get(vlm.get("confirmed"), "unconfirmed")


def trace_seed(seed: int, opts: EvalOptions, on_only: bool = False) -> dict[str, Any]:
    the_plan = plan(opts)
    trace = Trace()
    on = run_seed(seed, the_plan, opts, trace.instrument)
    off = on if on_only else run_seed(seed, the_plan, replace(opts, vlm=False))
    assert trace.site is not None
    events = {e.id: e for e in trace.site.hazards}
    found_on = {e.id for e in on.score.events if e.found}
    found_off = {e.id for e in off.score.events if e.found}
    false_alerts = [
        {
            "hazard": a.hazard,
            "t": round(a.t, 2),
            "landed_on": false_alert_kind(trace.site, a, on.score),
            "vlm": _vlm_said(trace.alerts.get(a.alert_id)),
        }
        for a in on.score.alerts
        if a.event_id is None
    ]
    rows = []
    for eid in sorted(found_on ^ found_off):
        ev = events[eid]
        rows.append(
            {
                "seed": seed,
                "event": eid,
                "type": ev.type,
                "found_by": "on" if eid in found_on else "off",
                "with_vlm": explain(trace.site, ev, trace),
            }
        )
    false_off = sum(a.event_id is None for a in off.score.alerts)
    fates = Counter(f.fate() for f in trace.followed)
    return {
        "seed": seed,
        "found": {"on": len(found_on), "off": len(found_off)},
        "false": {"on": len(false_alerts), "off": false_off},
        "events": len(on.score.events),
        "fates": dict(fates),
        "gate": on.gate,
        "differ": rows,
        "false_alerts_on": false_alerts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--perception", default="detector", choices=("sim", "detector"))
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--on-only", action="store_true", help="skip the runs without the VLM")
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    opts = EvalOptions(
        seeds=seeds,
        config=args.config,
        perception=args.perception,
        vlm=True,
        duration_s=args.duration,
    )
    results = []
    totals: Counter[str] = Counter()
    for seed in seeds:
        r = trace_seed(seed, opts, args.on_only)
        results.append(r)
        print(
            f"seed {seed}: found on/off {r['found']['on']}/{r['found']['off']} "
            f"false on/off {r['false']['on']}/{r['false']['off']} of {r['events']} events; "
            f"manager events {r['fates']}",
            flush=True,
        )
        for row in r["differ"]:
            print(
                f"    {row['type']:15s} {row['event']:10s} found only {row['found_by']:3s}: "
                f"with the VLM {', '.join(row['with_vlm'])}",
                flush=True,
            )
            for fate in {w.split(" (")[0] for w in row["with_vlm"]}:
                totals[f"{row['found_by']}-only {fate}"] += 1
        for fa in r["false_alerts_on"]:
            print(
                f"    false alert (VLM on) {fa['hazard']} t={fa['t']}: on {fa['landed_on']}, "
                f"VLM {fa['vlm']}",
                flush=True,
            )
            totals[f"false {fa['landed_on']} / {fa['vlm']}"] += 1
    print("totals:", dict(totals))
    print(
        "found on/off:",
        sum(r["found"]["on"] for r in results),
        sum(r["found"]["off"] for r in results),
        " false on/off:",
        sum(r["false"]["on"] for r in results),
        sum(r["false"]["off"] for r in results),
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
