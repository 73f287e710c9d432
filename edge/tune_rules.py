"""`sitehawk-edge tune-rules`: choose each hazard rule's ``min_confidence`` and ``dwell_s`` for
the best F1 on training sites (evaluation only: it reads ground truth after the runs).

What it does
------------
For each training seed (all below :data:`~edge.evaluate.HELD_OUT_SEED_MIN`; held-out seeds are
refused) the agent runs once, exactly as `sitehawk-edge eval` runs it (:func:`edge.evaluate.
run_seed`: the site's layout, the ``--config``'s rules and policy, ``--perception``, no VLM, no
broker). Then, per hazard type, every point of a small grid of ``min_confidence`` × ``dwell_s``
(:data:`GRID_MIN_CONFIDENCE` × :data:`GRID_DWELL_S`: 0.3-0.9 in steps of 0.1 × 0, 0.5, 1, 2,
3, 5 s — 42 points) is scored on those runs, and the point with the best F1 is written into a
device config that ``sitehawk-edge eval --config FILE`` reads.

Why one run per seed is enough (re-scoring recorded observations, not re-running): thresholds
change which alerts are raised, never where the camera looks. The PTZ policy acts on the
detections (``CameraLoop._control`` in edge/agent.py gets the frame's detections, never hazard
observations or alerts), the tracker sits upstream of the rules, and the rules are stateless; so
the camera's path, the detections and the tracks are the same under any thresholds. Each run
therefore records, per frame, the hazard observations the rules report at a confidence *floor*
(the grid's lowest value, or the config's threshold when lower), with the frame's site time,
wall-clock time and pose, while the live run itself keeps the config's thresholds (its alert
manager only sees the observations at or above them). A grid point is then *replayed*: a fresh
:class:`~edge.alerts.manager.AlertManager` with the point's rule is fed, frame by frame, the
recorded observations of that type at or above its ``min_confidence`` — the same inputs the live
manager would have got with that threshold — and its raised alerts are scored with
:func:`edge.sim.scoring.score_alerts` (the eval's matching rule). The replay is checked on every
run: replaying the config's own thresholds must raise exactly the alerts the live run raised
(same times and places), or the tuner stops with an error.

Hazard types are independent here: the alert manager matches observations to events of the
same type only, and scoring matches alerts to events of the same type only; so each type is
tuned on its own from the same runs (4 × 42 replays, not 42⁴ combinations), and the tuned rules
together score on the training seeds exactly as their per-type figures add up.

The choice, per type: F1 = 2 · matched / (alerts + events), pooled over the seeds (matched
events, raised alerts and events of that type); ties go to the higher recall, then the higher
``min_confidence``, then the shorter ``dwell_s``. A type of which no grid point finds a single
event (none in the training windows, or none ever alerted) keeps its rule: nothing to tune on.
``enabled``, ``cooldown_s``, ``severity`` and ``vlm_check`` are kept as they are. The VLM is never
asked while tuning: these are the no-VLM thresholds (issue 5 compares ``eval --vlm on`` against
them).

Output
------
``--out FILE``: a complete device config (``sitehawk.device/1``): the ``--config``'s with its
``hazards`` replaced, or, without ``--config``, the first seed's site config with the plan's
policy (eval replaces the cameras and zones with each site's own, so only the rules, the policy
and the models matter to it). A header comment says how it was tuned.

``--json FILE`` (optional): ``seeds``, ``duration_s``, ``site_time_s``, ``policy``,
``perception``, ``detector`` ({path, sha256} or null), ``config``, ``out``, ``grid``
({min_confidence, dwell_s}), ``floors``, ``replay_check`` (``"exact"``), ``before`` / ``after``
(pooled figures over all types: precision, recall, false_alerts_per_hour, alerts, hazards,
matched — with the config's rules and with the tuned ones), ``thresholds`` (the tuned rules as
eval reports them), and ``per_type`` {hazard: {``tuned`` (bool), ``base``, ``best`` (the grid
point's figures: min_confidence, dwell_s, alerts, matched, hazards, precision, recall, f1,
false_alerts_per_hour), ``grid`` (every point)}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.alerts.rules import DEFAULT_HAZARD_RULES, HazardObservation, HazardRuleSpec
from edge.alerts.schema import HAZARD_TYPES
from edge.evaluate import (
    HELD_OUT_SEED_MIN,
    EvalError,
    EvalOptions,
    EvalPlan,
    SeedResult,
    _figures,
    check_options,
    jobs_option,
    make_output_folders,
    map_seeds,
    parse_seeds,
    plan,
    run_seed,
    thresholds,
)
from edge.geometry import PTZPose
from edge.sim.scoring import RaisedAlert, score_alerts
from firmware_config.cli_common import CommandError
from firmware_config.device import DeviceConfig

if TYPE_CHECKING:
    from edge.agent import AlertRecord
    from edge.runner import PreparedRun
    from edge.sim.world import Site

#: The grid searched for every hazard type (documented in the module doc and docs/vlm.md).
GRID_MIN_CONFIDENCE = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GRID_DWELL_S = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
#: The evidence JPEG of a replayed alert is cut from this stand-in (the replay keeps no frames;
#: the JPEG never changes which alerts are raised).
_BLANK_FRAME = np.zeros((9, 16, 3), dtype=np.uint8)


class TuneError(EvalError):
    """The tuning cannot run; the message names the option, field or file at fault."""


@dataclass(frozen=True)
class RecordedFrame:
    """What one frame gave the alert manager: time, pose, hazard observations (at the floor)."""

    t_site: float
    t_wall: datetime
    pose: PTZPose
    observations: tuple[HazardObservation, ...]


@dataclass
class Recording:
    """One seed's run: every frame's observations, what the run raised, and what to score on."""

    seed: int
    site: Site
    t_start: float
    t_end: float
    frames: list[RecordedFrame]
    live: list[RaisedAlert]  # raised by the run under the plan's rules
    rules: dict[str, HazardRuleSpec]  # the plan's rules (the live run's)
    result: SeedResult | None = None


@dataclass(frozen=True)
class Counts:
    """Pooled counts of one hazard type (or of all) under one setting."""

    alerts: int
    matched: int
    hazards: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.alerts + other.alerts, self.matched + other.matched, self.hazards + other.hazards
        )

    @property
    def f1(self) -> float | None:
        """2·matched / (alerts + events): the harmonic mean of precision and recall."""
        total = self.alerts + self.hazards
        return 2.0 * self.matched / total if total else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.hazards if self.hazards else None


@dataclass
class TuneOptions:
    """The options of `sitehawk-edge tune-rules` (see its --help)."""

    seeds: list[int]
    config: Path | None = None
    policy: str | None = None
    perception: str = "sim"
    duration_s: float = 120.0
    grid_min_confidence: tuple[float, ...] = GRID_MIN_CONFIDENCE
    grid_dwell_s: tuple[float, ...] = GRID_DWELL_S

    def eval_options(self) -> EvalOptions:
        return EvalOptions(
            seeds=list(self.seeds),
            config=self.config,
            policy=self.policy,
            perception=self.perception,
            vlm=False,
            duration_s=self.duration_s,
        )


@dataclass
class TypeResult:
    """One hazard type's search: every grid point's counts, the base rule's, the choice."""

    hazard: str
    base_rule: HazardRuleSpec
    base: Counts
    grid: dict[tuple[float, float], Counts] = field(default_factory=dict)
    best: tuple[float, float] | None = None  # None: kept (no events to tune on)

    @property
    def rule(self) -> HazardRuleSpec:
        """The tuned rule (the base rule with the best point's thresholds)."""
        if self.best is None:
            return self.base_rule
        return replace(self.base_rule, min_confidence=self.best[0], dwell_s=self.best[1])

    @property
    def tuned(self) -> Counts:
        return self.base if self.best is None else self.grid[self.best]


# ---------------------------------------------------------------------------------------------
# options
def check_tune_options(opts: TuneOptions) -> None:
    """Refuse held-out seeds and an empty grid (before any work)."""
    check_options(opts.eval_options())
    held_out = [s for s in opts.seeds if s >= HELD_OUT_SEED_MIN]
    if held_out:
        shown = ", ".join(map(str, held_out[:5])) + (", …" if len(held_out) > 5 else "")
        raise TuneError(
            f"--seeds: {shown} are held-out sites (>= {HELD_OUT_SEED_MIN}); tune on training "
            f"seeds only (< {HELD_OUT_SEED_MIN}) and evaluate on the held-out ones"
        )
    if not opts.grid_min_confidence or not opts.grid_dwell_s:
        raise TuneError("the grid is empty")
    if not all(0.0 <= c <= 1.0 for c in opts.grid_min_confidence):
        raise TuneError(f"grid min_confidence {opts.grid_min_confidence}: values must be in 0-1")
    if not all(d >= 0.0 for d in opts.grid_dwell_s):
        raise TuneError(f"grid dwell_s {opts.grid_dwell_s}: values must be >= 0")


def base_rules(the_plan: EvalPlan) -> dict[str, HazardRuleSpec]:
    """The rules the runs use: the ``--config``'s, else the defaults (as eval)."""
    from edge.device_setup import rule_specs

    if the_plan.base is not None:
        return rule_specs(the_plan.base)
    return dict(DEFAULT_HAZARD_RULES)


def floors(rules: Mapping[str, HazardRuleSpec], grid: Sequence[float]) -> dict[str, float]:
    """The confidence each type is recorded down to: the grid's lowest, or the rule's if lower."""
    low = min(grid)
    return {h: min(low, rules[h].min_confidence) for h in HAZARD_TYPES}


# ---------------------------------------------------------------------------------------------
# recording
class Recorder:
    """Records one seed's run for replaying: pass :meth:`instrument` to
    :func:`edge.evaluate.run_seed`, then take :meth:`recording`.

    Every frame's hazard observations are recorded down to ``floor`` (per type; None: the run's
    own thresholds), with the frame's site time, wall-clock time and pose; the live run still
    applies its own thresholds (its alert manager sees only the observations at or above them),
    so it runs and scores exactly as without the recorder.
    """

    def __init__(self, floor: Mapping[str, float] | None = None):
        self.floor = dict(floor or {})
        self.frames: list[RecordedFrame] = []
        self.live: list[RaisedAlert] = []
        self.rules: dict[str, HazardRuleSpec] = {}
        self.site: Site | None = None

    def instrument(self, run: PreparedRun) -> None:
        """Wrap the run's rules and alert manager (one virtual camera)."""
        (rig,) = run.rigs
        self.site = rig.site.site
        (loop,) = run.agent.cameras
        self.rules = dict(loop.rules.rules)
        live_min = {h: r.min_confidence for h, r in self.rules.items()}
        loop.rules.rules = {
            h: replace(r, min_confidence=min(r.min_confidence, self.floor.get(h, 1.0)))
            for h, r in self.rules.items()
        }
        update = loop.manager.update
        frames = self.frames

        def recording_update(
            observations: Sequence[HazardObservation],
            t_wall: datetime,
            frame: np.ndarray,
            pose: PTZPose,
            t_site: float | None = None,
        ) -> Any:
            assert t_site is not None  # the agent times events on site time
            frames.append(RecordedFrame(float(t_site), t_wall, pose, tuple(observations)))
            kept = [o for o in observations if o.confidence >= live_min[o.type]]
            return update(kept, t_wall, frame, pose, t_site)

        loop.manager.update = recording_update  # type: ignore[method-assign]
        run.agent.on_alert.append(self._on_alert)

    def _on_alert(self, record: AlertRecord) -> None:
        alert = record.alert
        if alert["state"] == "raised":
            where = alert["location"]
            self.live.append(
                RaisedAlert(
                    alert["alert_id"],
                    alert["hazard"],
                    record.t,
                    where["pan_deg"],
                    where["tilt_deg"],
                )
            )

    def recording(self, result: SeedResult) -> Recording:
        """The recording of the run that ``result`` scored."""
        assert self.site is not None, "instrument() was not called"
        score = result.score
        return Recording(
            result.seed,
            self.site,
            score.t_start,
            score.t_end,
            self.frames,
            self.live,
            self.rules,
            result,
        )


def record_seed(
    seed: int,
    the_plan: EvalPlan,
    opts: TuneOptions,
    floor: Mapping[str, float],
) -> Recording:
    """Run ``seed`` as eval does (no VLM) and record every frame's hazard observations down to
    ``floor`` (the live run still applies the plan's thresholds)."""
    recorder = Recorder(floor)
    result = run_seed(seed, the_plan, opts.eval_options(), recorder.instrument)
    return recorder.recording(result)


def without_vlm(recording: Recording) -> SeedResult:
    """The seed's result had no VLM been asked: the run's rules replayed without the gate
    (the VLM, like the thresholds, never moves the camera), scored as eval scores."""
    alerts = [
        alert
        for hazard in HAZARD_TYPES
        if recording.rules[hazard].enabled
        for alert in replay(recording, hazard, recording.rules[hazard])
    ]
    score = score_alerts(recording.site, alerts, recording.t_start, recording.t_end)
    assert recording.result is not None
    return replace(recording.result, score=score, gate=None)


# ---------------------------------------------------------------------------------------------
# replaying and scoring
def replay(recording: Recording, hazard: str, rule: HazardRuleSpec) -> list[RaisedAlert]:
    """The alerts of type ``hazard`` an alert manager with ``rule`` raises on the recording."""
    from edge.alerts.manager import AlertManager
    from edge.alerts.state import MemoryStateStore

    rule = replace(rule, require_vlm=False)
    manager = AlertManager(
        MemoryStateStore(),
        site_id="tune",
        device_id="tune",
        camera_id="cam0",
        snapshot_topic=lambda alert_id: f"tune/{alert_id}",
        agent_version="tune",
        rules={hazard: rule},
    )
    raised: list[RaisedAlert] = []
    for fr in recording.frames:
        obs = [
            o for o in fr.observations if o.type == hazard and o.confidence >= rule.min_confidence
        ]
        if not obs and not manager.open_events():
            continue  # nothing observed, nothing open: the update would change nothing
        for emitted in manager.update(obs, fr.t_wall, _BLANK_FRAME, fr.pose, fr.t_site):
            if emitted.state == "raised":
                where = emitted.alert["location"]
                raised.append(
                    RaisedAlert(
                        emitted.alert_id, hazard, fr.t_site, where["pan_deg"], where["tilt_deg"]
                    )
                )
    return raised


def count(recording: Recording, hazard: str, alerts: Sequence[RaisedAlert]) -> Counts:
    """Score ``alerts`` (all of type ``hazard``) against that type's events of the window."""
    score = score_alerts(recording.site, alerts, recording.t_start, recording.t_end)
    events = [e for e in score.events if e.type == hazard]
    return Counts(len(alerts), sum(e.found for e in events), len(events))


def check_replay(recording: Recording) -> None:
    """The replay with the run's own rules must raise exactly what the run raised."""
    for hazard in HAZARD_TYPES:
        rule = recording.rules[hazard]
        if not rule.enabled:
            continue
        got = [(a.t, a.pan_deg, a.tilt_deg) for a in replay(recording, hazard, rule)]
        want = [(a.t, a.pan_deg, a.tilt_deg) for a in recording.live if a.hazard == hazard]
        if sorted(got) != sorted(want):
            raise TuneError(
                f"seed {recording.seed}: replaying the recorded {hazard} observations raised "
                f"{len(got)} alert(s) where the run raised {len(want)}; the offline re-scoring "
                "is not exact for this setup (a policy that reacts to alerts?)"
            )


def choose(grid: Mapping[tuple[float, float], Counts]) -> tuple[float, float] | None:
    """The F1-best point; ties: higher recall, higher min_confidence, shorter dwell.

    None when no point finds any event (no events, or none matched anywhere): nothing to tune
    on, the rule is kept."""
    scored = [
        (counts.f1, counts.recall or 0.0, conf, -dwell, (conf, dwell))
        for (conf, dwell), counts in grid.items()
        if counts.f1 is not None and counts.matched > 0
    ]
    if not scored:
        return None
    return max(scored)[-1]


def tune(
    recordings: Sequence[Recording],
    opts: TuneOptions,
    on_type_done: Callable[[str], None] | None = None,
) -> dict[str, TypeResult]:
    """Search every enabled type's grid on the recordings (see the module doc)."""
    results: dict[str, TypeResult] = {}
    rules = recordings[0].rules
    for hazard in HAZARD_TYPES:
        rule = rules[hazard]
        base = sum(
            (count(r, hazard, [a for a in r.live if a.hazard == hazard]) for r in recordings),
            Counts(0, 0, 0),
        )
        result = TypeResult(hazard, rule, base)
        if rule.enabled:
            for conf in opts.grid_min_confidence:
                for dwell in opts.grid_dwell_s:
                    point = replace(rule, min_confidence=conf, dwell_s=dwell)
                    result.grid[(conf, dwell)] = sum(
                        (count(r, hazard, replay(r, hazard, point)) for r in recordings),
                        Counts(0, 0, 0),
                    )
            result.best = choose(result.grid)
        results[hazard] = result
        if on_type_done is not None:
            on_type_done(hazard)
    return results


# ---------------------------------------------------------------------------------------------
# output
def tuned_config(
    the_plan: EvalPlan, opts: TuneOptions, results: Mapping[str, TypeResult]
) -> DeviceConfig:
    """The ``--out`` config: the plan's base config (or the first seed's site config with the
    plan's policy) with the tuned thresholds."""
    from edge.sim.device_config import device_config_for_site
    from edge.sim.generate import generate_site
    from firmware_config.device import PolicyConfig

    if the_plan.base is not None:
        config = the_plan.base
    else:
        config = device_config_for_site(generate_site(opts.seeds[0]))
        config = config.model_copy(update={"policy": PolicyConfig(name=the_plan.policy)})
    hazards = config.hazards.model_dump()
    for hazard, result in results.items():
        hazards[hazard].update(
            min_confidence=result.rule.min_confidence, dwell_s=result.rule.dwell_s
        )
    data = config.model_dump()
    data["hazards"] = hazards
    return DeviceConfig.model_validate(data)


def _point(conf: float, dwell: float, counts: Counts, hours: float) -> dict[str, Any]:
    precision = counts.matched / counts.alerts if counts.alerts else None
    return {
        "min_confidence": conf,
        "dwell_s": dwell,
        "alerts": counts.alerts,
        "matched": counts.matched,
        "hazards": counts.hazards,
        "precision": None if precision is None else round(precision, 4),
        "recall": None if counts.recall is None else round(counts.recall, 4),
        "f1": None if counts.f1 is None else round(counts.f1, 4),
        "false_alerts_per_hour": round((counts.alerts - counts.matched) / hours, 2),
    }


def _pooled(counts: Counts, site_time_s: float) -> dict[str, Any]:
    figures = _figures(counts.alerts, counts.hazards, counts.matched, site_time_s, [])
    figures.pop("tta_mean_s")
    return figures


def summary(
    opts: TuneOptions,
    the_plan: EvalPlan,
    recordings: Sequence[Recording],
    results: Mapping[str, TypeResult],
    config: DeviceConfig,
    out: Path,
) -> dict[str, Any]:
    """The ``--json`` summary (see the module doc)."""
    from firmware_config.manifest import sha256_of

    site_time_s = sum(r.t_end - r.t_start for r in recordings)
    hours = max(site_time_s, 1e-9) / 3600.0
    detector = None
    if the_plan.detector is not None:
        detector = {"path": str(the_plan.detector), "sha256": sha256_of(the_plan.detector)}
    before = sum((r.base for r in results.values()), Counts(0, 0, 0))
    after = sum((r.tuned for r in results.values()), Counts(0, 0, 0))
    per_type: dict[str, Any] = {}
    for hazard, result in results.items():
        base = result.base_rule
        per_type[hazard] = {
            "tuned": result.best is not None,
            "base": _point(base.min_confidence, base.dwell_s, result.base, hours),
            "best": _point(result.rule.min_confidence, result.rule.dwell_s, result.tuned, hours),
            "grid": [_point(c, d, counts, hours) for (c, d), counts in result.grid.items()],
        }
    return {
        "seeds": [r.seed for r in recordings],
        "duration_s": opts.duration_s,
        "site_time_s": round(site_time_s, 3),
        "policy": the_plan.policy,
        "perception": opts.perception,
        "detector": detector,
        "config": None if opts.config is None else str(opts.config),
        "out": str(out),
        "grid": {
            "min_confidence": list(opts.grid_min_confidence),
            "dwell_s": list(opts.grid_dwell_s),
        },
        "floors": floors(recordings[0].rules, opts.grid_min_confidence),
        "replay_check": "exact",
        "before": _pooled(before, site_time_s),
        "after": _pooled(after, site_time_s),
        "thresholds": thresholds(config.hazards),
        "per_type": per_type,
    }


def results_table(data: dict[str, Any]) -> Any:
    """A rich table: per type, the base rule and the tuned one with their pooled figures."""
    from rich.table import Table

    def fmt(value: Any) -> str:
        return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    table = Table(
        title=f"sitehawk-edge tune-rules: seeds {data['seeds'][0]}-{data['seeds'][-1]} "
        f"({len(data['seeds'])}), policy {data['policy']}, perception {data['perception']}",
    )
    for name in ("hazard", "", "min conf", "dwell s", "events", "alerts", "found"):
        table.add_column(name, justify="right")
    for name in ("prec", "recall", "F1", "false/h"):
        table.add_column(name, justify="right")
    for hazard, entry in data["per_type"].items():
        for label, row in (("base", entry["base"]), ("tuned", entry["best"])):
            table.add_row(
                hazard if label == "base" else "",
                label if entry["tuned"] or label == "base" else "kept",
                fmt(row["min_confidence"]),
                fmt(row["dwell_s"]),
                str(row["hazards"]),
                str(row["alerts"]),
                str(row["matched"]),
                fmt(row["precision"]),
                fmt(row["recall"]),
                fmt(row["f1"]),
                fmt(row["false_alerts_per_hour"]),
            )
    return table


# ---------------------------------------------------------------------------------------------
# the command
def run(
    opts: TuneOptions,
    on_seed_start: Callable[[int], None] | None = None,
    on_seed_done: Callable[[Recording], None] | None = None,
    on_type_done: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> tuple[EvalPlan, list[Recording], dict[str, TypeResult]]:
    """Check, plan, record every seed (checking the replay on each; ``jobs`` seeds at a time),
    tune every type."""
    check_tune_options(opts)
    the_plan = plan(opts.eval_options())
    floor = floors(base_rules(the_plan), opts.grid_min_confidence)
    job = partial(_record_checked, the_plan=the_plan, opts=opts, floor=floor)
    recordings = map_seeds(job, opts.seeds, jobs, on_seed_start, on_seed_done)
    return the_plan, recordings, tune(recordings, opts, on_type_done)


def _record_checked(
    seed: int, the_plan: EvalPlan, opts: TuneOptions, floor: Mapping[str, float]
) -> Recording:
    """:func:`record_seed`, its replay checked (top-level: worker processes run it)."""
    recording = record_seed(seed, the_plan, opts, floor)
    check_replay(recording)
    return recording


def command(args: argparse.Namespace) -> int:
    """`sitehawk-edge tune-rules` (registered in :mod:`edge.cli`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        opts = TuneOptions(
            seeds=parse_seeds(args.seeds),
            config=args.config,
            policy=args.policy,
            perception=args.perception,
            duration_s=args.duration,
        )
        check_tune_options(opts)
        jobs = jobs_option(args)
    except EvalError as exc:
        raise CommandError(str(exc)) from None
    out: Path = args.out
    json_out: Path | None = args.json
    make_output_folders(("--out", out), ("--json", json_out))
    stderr = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]tune-rules[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
    )
    seeds_task = progress.add_task("runs", total=len(opts.seeds))
    types_task = progress.add_task("grid", total=len(HAZARD_TYPES))
    with progress:
        try:
            the_plan, recordings, results = run(
                opts,
                on_seed_start=lambda s: progress.update(seeds_task, description=f"run seed {s}"),
                on_seed_done=lambda _: progress.advance(seeds_task),
                on_type_done=lambda h: progress.update(
                    types_task, advance=1, description=f"grid {h}"
                ),
                jobs=jobs,
            )
        except EvalError as exc:
            raise CommandError(str(exc)) from None
    config = tuned_config(the_plan, opts, results)
    data = summary(opts, the_plan, recordings, results, config, out)
    seeds = data["seeds"]
    detector = data["detector"]
    used = f" ({detector['path']}, sha256 {detector['sha256'][:12]})" if detector else ""
    header = "\n".join(
        (
            "sitehawk-edge tune-rules: hazard thresholds (min_confidence, dwell_s) tuned for F1",
            f"on seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} seeds, {opts.duration_s:g} s each), "
            f"policy {the_plan.policy}, perception {opts.perception}{used}",
            f"before: {_short(data['before'])}",
            f"after:  {_short(data['after'])}",
        )
    )
    try:
        out.write_text(config.to_yaml(relative_to=out.parent, header=header))
        if json_out is not None:
            json_out.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename}: {exc.strerror}", 1) from None
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 110)
    console.print(results_table(data))
    print(f"training seeds, all types: before {_short(data['before'])}")
    print(f"                           after  {_short(data['after'])}")
    print(f"wrote {out}" + (f" and {json_out}" if json_out is not None else ""))
    print(
        f"next: sitehawk-edge eval --seeds {HELD_OUT_SEED_MIN}-{HELD_OUT_SEED_MIN + 19} "
        f"--config {out} --perception {opts.perception} --json eval.json",
        file=sys.stderr,
    )
    return 0


def _short(figures: Mapping[str, Any]) -> str:
    def f(v: Any) -> str:
        return "–" if v is None else f"{v:.3f}"

    return (
        f"precision {f(figures['precision'])}, recall {f(figures['recall'])}, "
        f"{figures['false_alerts_per_hour']:.1f} false alerts/h "
        f"({figures['alerts']} alerts, {figures['matched']}/{figures['hazards']} events found)"
    )
