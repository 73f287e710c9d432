"""`sitehawk-edge eval`: run the agent on virtual sites and score its alerts (evaluation only).

For each seed the agent runs on the virtual site generated from that seed, from site time 0, for
``--duration`` seconds of site time, exactly as `sitehawk-edge run` builds and runs it
(:func:`edge.runner.prepare`), but with a fresh temporary outbox and state database per seed
(never the device's default outbox, so no open event or saved site time leaks from one seed or
run into the next) and no broker. Its *raised* alerts are then scored against the site's hazard
events by :func:`edge.sim.scoring.score_alerts` — ground truth, read here, after the run, never
by the agent. The matching rule (issue 4): same hazard type; the alert's pan/tilt within the
event's object ± 2°; raised while the event was active (+ 5 s grace); each event matches at
most one alert.

What the agent runs with: each seed's own site layout (camera mount, limits, work areas, one
zone per machine, active while the machine moves — :func:`~edge.sim.device_config.
device_config_for_site`) and, from ``--config FILE`` when given, the device's hazard rules
(thresholds), policy (name, control rate, parameters), time zone and policy model. The file's
cameras and zones are not used (they describe another site), nor its broker;
``--perception detector`` runs its `models.detector` (else the shipped ``models/detector.onnx``),
``--perception sim`` the simulated perception. Without ``--config`` the rules are the defaults and
the policy is the shipped baseline (``greedy``), as on `sitehawk-edge run`'s built-in site.

``--vlm on`` runs the VLM gate (issue 5) as `sitehawk-edge run --vlm on` does: the hazard rules
with ``vlm_check`` ask the VLM before raising (suppressed only on a confident contradiction).
The VLM is the ``--config`` file's (``vlm`` and ``models.vlm``) when it sets a backend, else the
shipped ``models/vlm/vlm.gguf`` in-process (llama-cpp-python). ``--vlm off``: no VLM is asked.
The VLM's timeout runs on the wall clock while the site runs faster than real time, so a run
with ``--vlm on`` is not bit-for-bit repeatable (an answer may land a frame earlier or later).
``--vlm on --vlm-off-json FILE`` also writes the ``--vlm off`` figures of the same seeds to FILE
(same keys, ``vlm: "off"``). With the VLM's ``look`` on (the default: the camera steers to a
hazard that waits for a view the VLM can judge) the two differ in where the camera looks, so
each seed runs twice, with and without the VLM. With ``look: false`` the VLM decides only which
alerts go out, never where the camera looks (the policy acts on the detections), so each run's
hazard observations are recorded and the alert manager is replayed on them without the gate
(:func:`edge.tune_rules.without_vlm`, the replay `sitehawk-edge tune-rules` checks against
every run it makes) — one run per seed, at half the cost.

The JSON written to ``--json`` has exactly these keys (:data:`SUMMARY_KEYS`):

* ``precision``, ``recall``: fractions pooled over all seeds (matched / raised alerts, matched /
  hazard events); null when there is nothing to divide by (no alerts, no events).
* ``false_alerts_per_hour``: unmatched raised alerts per hour of site time (all seeds).
* ``tta_mean_s``: mean time to alert, event onset (or the window's start) → raised, over the
  matched events; null when none matched.
* ``alerts``, ``hazards``, ``matched`` (ints): raised alerts, hazard events active in the
  windows, events found.
* ``seeds`` (list of ints), ``duration_s`` (site seconds per seed), ``site_time_s`` (all seeds).
* ``policy``, ``perception`` (``sim`` | ``detector``), ``vlm`` (``on`` | ``off``), ``config``
  (the file, or null).
* ``thresholds``: the hazard rules used, per type: ``enabled``, ``min_confidence``, ``dwell_s``,
  ``cooldown_s``, ``severity``.
* ``grace_s``, ``margin_deg``: the matching rule's grace and margin.
* ``per_seed``: one object per seed with ``seed``, ``precision``, ``recall``,
  ``false_alerts_per_hour``, ``tta_mean_s``, ``alerts``, ``hazards``, ``matched``,
  ``site_time_s``, ``frames``, ``wall_s``, ``gate``.
* ``gate``: with ``--vlm on``, what the VLM gate did, summed over the seeds (null with ``--vlm
  off``): the gate's counts (``asked``, ``confirmed``, ``contradicted``, ``unconfirmed``,
  ``timeout``, ``unavailable``, ``not_yet`` — frames whose view it could not judge) and the
  alert manager's (``waited`` — events that waited for a judgeable view, ``unasked_after_wait``
  / ``unasked_out_of_view`` — raised unasked when the wait ran out / the object left the view
  first, ``vanished_in_view`` — forgotten when the detector no longer found them in a sharp
  view of their place).

Seeds below 1000 are the policy's training seeds: allowed, with a warning (held-out figures come
from seeds ≥ 1000).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge.agent import AlertRecord
from edge.alerts.schema import HAZARD_TYPES
from edge.sim.scoring import GRACE_S, MARGIN_DEG, Score
from firmware_config.cli_common import CommandError
from firmware_config.device import DeviceConfig, HazardRules

T = TypeVar("T")

if TYPE_CHECKING:
    from edge.runner import PreparedRun

#: Seeds below this are training seeds (the held-out sites start here).
HELD_OUT_SEED_MIN = 1000
DEFAULT_DURATION_S = 120.0
#: Site time a generated site covers unless the run needs more (the generator's default).
SITE_DURATION_S = 600.0
PERCEPTIONS = ("sim", "detector")
#: The top-level keys of the JSON summary (see the module doc).
SUMMARY_KEYS = (
    "precision",
    "recall",
    "false_alerts_per_hour",
    "tta_mean_s",
    "alerts",
    "hazards",
    "matched",
    "seeds",
    "duration_s",
    "site_time_s",
    "policy",
    "perception",
    "vlm",
    "config",
    "thresholds",
    "grace_s",
    "margin_deg",
    "per_seed",
    "gate",
)
#: The keys of each ``per_seed`` entry.
PER_SEED_KEYS = (
    "seed",
    "precision",
    "recall",
    "false_alerts_per_hour",
    "tta_mean_s",
    "alerts",
    "hazards",
    "matched",
    "site_time_s",
    "frames",
    "wall_s",
)
#: The hazard-rule settings reported under ``thresholds``.
THRESHOLD_FIELDS = ("enabled", "min_confidence", "dwell_s", "cooldown_s", "severity")


class EvalError(ValueError):
    """The evaluation cannot run; the message names the option, field or file at fault."""


@dataclass
class EvalOptions:
    """The options of `sitehawk-edge eval` (see its --help)."""

    seeds: list[int]
    config: Path | None = None
    policy: str | None = None
    perception: str = "sim"
    vlm: bool = False
    duration_s: float = DEFAULT_DURATION_S
    frame_size: tuple[int, int] = (1280, 720)


@dataclass
class SeedResult:
    """One seed's run and score."""

    seed: int
    score: Score
    frames: int
    wall_s: float
    gate: dict[str, int] | None = None  # --vlm on: the gate's and the manager's counts

    @property
    def site_time_s(self) -> float:
        return self.score.t_end - self.score.t_start


@dataclass
class EvalPlan:
    """What every seed runs with: the policy and the rules of the (optional) device config."""

    policy: str
    base: DeviceConfig | None  # the --config file's config
    config_path: Path | None = None  # where it came from
    detector: Path | None = None  # the detector model (--perception detector), else None


# ---------------------------------------------------------------------------------------------
# options
def parse_seeds(text: str) -> list[int]:
    """``A-B`` (inclusive), ``A``, or comma-separated pieces of those, e.g. ``1000-1004,1010``."""
    seeds: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        first, sep, last = piece.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise EvalError(
                f"--seeds {text}: give a range A-B, a seed, or a comma-separated list of those "
                "(e.g. 1000-1004)"
            ) from None
        if hi < lo:
            raise EvalError(f"--seeds {text}: the range {piece} ends before it starts")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def jobs_option(args: argparse.Namespace) -> int:
    """``--jobs`` of eval and tune-rules, checked."""
    if args.jobs < 1:
        raise EvalError(f"--jobs {args.jobs}: needs 1 or more")
    return int(args.jobs)


def check_options(opts: EvalOptions) -> None:
    """Refuse what this build cannot evaluate, with the option named (before any work)."""
    if opts.perception not in PERCEPTIONS:
        raise EvalError(f"--perception {opts.perception}: choose sim or detector")
    if not opts.seeds:
        raise EvalError("--seeds: no seeds given")
    if opts.duration_s <= 0:
        raise EvalError(f"--duration must be positive, got {opts.duration_s:g}")


def training_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds that are policy-training seeds (below :data:`HELD_OUT_SEED_MIN`)."""
    return [s for s in seeds if s < HELD_OUT_SEED_MIN]


def plan(opts: EvalOptions) -> EvalPlan:
    """Load ``--config`` and choose the policy (``--policy``, else the config's, else the
    shipped baseline)."""
    from edge.policy.base import POLICIES
    from edge.runner import SHIPPED_POLICY
    from firmware_config.device import DeviceConfigError, load_device_config

    base = None
    if opts.config is not None:
        try:
            base = load_device_config(opts.config)
        except DeviceConfigError as exc:
            raise EvalError(str(exc)) from None
    name = opts.policy or (base.policy.name if base is not None else SHIPPED_POLICY)
    if name not in POLICIES:
        raise EvalError(f"--policy {name}: unknown policy; choose one of {', '.join(POLICIES)}")
    if name == "learned" and (base is None or base.models.policy is None):
        raise EvalError(
            "--policy learned: no policy model is configured (models.policy of --config) and "
            "none is shipped yet; evaluate a baseline (e.g. --policy greedy)"
        )
    detector = None
    if opts.perception == "detector":
        from edge.runner import SHIPPED_DETECTOR

        configured = base.models.detector if base is not None else None
        detector = Path(configured) if configured is not None else SHIPPED_DETECTOR
        if not detector.is_file():
            where = "models.detector of --config" if configured is not None else "shipped"
            raise EvalError(f"--perception detector: {detector} ({where}): no such model file")
    if opts.vlm:
        check_vlm(base)
    return EvalPlan(name, base, opts.config, detector)


def check_vlm(base: DeviceConfig | None) -> None:
    """``--vlm on``: refuse, before any seed runs, a VLM that cannot answer here (an
    in-process one without llama-cpp-python or with missing or altered model files)."""
    import importlib.util

    from edge.runner import SHIPPED_VLM
    from edge.vlm.backend import VLMModelFiles, VLMUnavailable

    if base is not None and base.vlm.backend == "openai":
        return  # a server: its availability is the run's (unanswered questions: unconfirmed)
    configured = base.models.vlm if base is not None else None
    model = Path(configured) if configured is not None else SHIPPED_VLM
    where = "models.vlm of --config" if configured is not None else "shipped"
    try:
        VLMModelFiles.find(model)
    except VLMUnavailable as exc:
        raise EvalError(f"--vlm on: {model} ({where}): {exc}") from None
    if importlib.util.find_spec("llama_cpp") is None:
        raise EvalError(
            "--vlm on: the in-process VLM needs llama-cpp-python: pip install 'sitehawk[vlm]'"
        )


def seed_config(
    seed: int, the_plan: EvalPlan, duration_s: float, vlm: bool = False
) -> DeviceConfig:
    """The config the agent runs with on ``seed``: the site's own layout, the plan's rules and
    policy, no broker, the plan's perception, and with ``vlm`` the plan's VLM (see the module
    doc)."""
    config = _site_config(seed, the_plan, duration_s)
    if not vlm:
        return config
    from edge.runner import apply_vlm_option

    base = the_plan.base
    if base is not None:  # its VLM settings (wait, look) even when it names no backend
        update: dict[str, Any] = {"vlm": base.vlm}
        if base.vlm.backend != "none":
            update["models"] = config.models.model_copy(update={"vlm": base.models.vlm})
        config = config.model_copy(update=update)
    return apply_vlm_option(config, True)


def _site_config(seed: int, the_plan: EvalPlan, duration_s: float) -> DeviceConfig:
    """:func:`seed_config` without the VLM (``vlm.backend: none``)."""
    from pydantic import ValidationError

    from edge.sim.device_config import device_config_for_site
    from edge.sim.generate import generate_site
    from firmware_config.device import ModelsConfig, PolicyConfig

    spec = generate_site(seed, duration_s=max(SITE_DURATION_S, duration_s))
    config = device_config_for_site(spec)
    base = the_plan.base
    if base is None:
        return config.model_copy(
            update={
                "policy": PolicyConfig(name=the_plan.policy),
                "models": ModelsConfig(detector=the_plan.detector),
            }
        )
    same = base.policy.name == the_plan.policy
    data = config.model_dump()
    data.update(
        timezone=base.timezone,
        hazards=base.hazards.model_dump(),
        policy={
            "name": the_plan.policy,
            "control_hz": base.policy.control_hz,
            "params": dict(base.policy.params) if same else {},
        },
        models=ModelsConfig(policy=base.models.policy, detector=the_plan.detector).model_dump(),
        telemetry_interval_s=base.telemetry_interval_s,
    )
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:  # e.g. a control rate above the virtual camera's 10 fps
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise EvalError(f"--config {the_plan.config_path}: {problems}") from None


# ---------------------------------------------------------------------------------------------
# running
def run_seed(
    seed: int,
    the_plan: EvalPlan,
    opts: EvalOptions,
    instrument: Callable[[PreparedRun], None] | None = None,
) -> SeedResult:
    """Run the agent on ``seed`` from site time 0 with a fresh temporary outbox; score it.

    ``instrument`` (for tools built on the eval, e.g. :mod:`edge.tune_rules`) is called with the
    prepared run before it starts: it may add hooks (``run.agent.on_alert``) or wrap parts.
    """
    from edge.console import RunConsole
    from edge.report import score_run
    from edge.runner import RunError, RunOptions, prepare

    config = seed_config(seed, the_plan, opts.duration_s, opts.vlm)
    with tempfile.TemporaryDirectory(prefix=f"sitehawk-eval-{seed}-") as tmp_name:
        tmp = Path(tmp_name)
        config_path = tmp / "device.yaml"
        config_path.write_text(config.to_yaml(header=f"sitehawk-edge eval, seed {seed}"))
        run_opts = RunOptions(
            config=config_path,
            duration_s=opts.duration_s,
            policy=the_plan.policy,
            out=tmp / "run",
            outbox=tmp / "outbox.sqlite3",
            start_s=0.0,
            frame_size=opts.frame_size,
            report=False,
            perception=opts.perception,
        )
        try:  # nothing of the run is printed: the eval shows a progress bar instead
            run = prepare(run_opts, RunConsole(file=io.StringIO(), live=False))
        except RunError as exc:
            raise EvalError(f"seed {seed}: {exc}") from None
        records: list[AlertRecord] = []
        run.agent.on_alert.append(records.append)
        if instrument is not None:
            instrument(run)
        wall_start = time.monotonic()
        try:
            run.agent.start()
            run.agent.run(opts.duration_s)
        finally:
            run.agent.stop()
            run.outbox.close()
        wall_s = time.monotonic() - wall_start
        (rig,) = run.rigs
        score = score_run(rig, records)
        stats = run.agent.gate_stats()
        cam = run.agent.cameras[0]
        gate = (
            None if stats is None else {**stats, **cam.manager.vlm_counts, "looks": cam.num_looks}
        )
        return SeedResult(seed, score, rig.camera.num_frames, wall_s, gate)


def _seed_job(
    seed: int, the_plan: EvalPlan, opts: EvalOptions, paired: bool, looks: bool = False
) -> list[SeedResult]:
    """One seed's runs: ``[result]``, or with ``paired`` ``[with the VLM, without it]`` — the
    latter a second run when the VLM's ``looks`` steer the camera, else a replay (see
    :func:`evaluate_paired`). Top-level so that worker processes can run it."""
    if not paired:
        return [run_seed(seed, the_plan, opts)]
    from edge.tune_rules import Recorder, without_vlm

    if looks:
        return [run_seed(seed, the_plan, opts), run_seed(seed, the_plan, replace(opts, vlm=False))]
    recorder = Recorder()
    result = run_seed(seed, the_plan, opts, recorder.instrument)
    return [result, without_vlm(recorder.recording(result))]


def map_seeds(
    job: Callable[[int], T],
    seeds: Sequence[int],
    jobs: int = 1,
    on_seed_start: Callable[[int], None] | None = None,
    on_seed_done: Callable[[T], None] | None = None,
) -> list[T]:
    """``job(seed)`` for every seed, in seed order; ``jobs`` > 1 runs that many seeds at a time
    in worker processes (``job`` must then pickle: a top-level function or a ``partial`` of
    one). Each seed's run is independent and deterministic: the results are the same either
    way. With workers, ``on_seed_start`` is called once, for the first seed."""
    if jobs <= 1 or len(seeds) == 1:
        out = []
        for seed in seeds:
            if on_seed_start is not None:
                on_seed_start(seed)
            out.append(job(seed))
            if on_seed_done is not None:
                on_seed_done(out[-1])
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: the parent holds threads (the progress bar) that a fork would copy mid-flight
    ctx = multiprocessing.get_context("spawn")
    done: dict[int, T] = {}
    with ProcessPoolExecutor(max_workers=min(jobs, len(seeds)), mp_context=ctx) as pool:
        futures = {pool.submit(job, seed): seed for seed in seeds}
        if on_seed_start is not None:
            on_seed_start(seeds[0])
        for future in as_completed(futures):
            result = future.result()
            done[futures[future]] = result
            if on_seed_done is not None:
                on_seed_done(result)
    return [done[seed] for seed in seeds]


def _first(callback: Callable[[SeedResult], None] | None) -> Callable[[list[SeedResult]], None]:
    return lambda runs: None if callback is None else callback(runs[0])


def evaluate(
    opts: EvalOptions,
    the_plan: EvalPlan | None = None,
    on_seed_start: Callable[[int], None] | None = None,
    on_seed_done: Callable[[SeedResult], None] | None = None,
    jobs: int = 1,
) -> tuple[EvalPlan, list[SeedResult]]:
    """Check the options (and plan, unless given), then run and score every seed (``jobs`` at a
    time); results in seed order."""
    check_options(opts)
    if the_plan is None:
        the_plan = plan(opts)
    job = partial(_seed_job, the_plan=the_plan, opts=opts, paired=False)
    runs = map_seeds(job, opts.seeds, jobs, on_seed_start, _first(on_seed_done))
    return the_plan, [r[0] for r in runs]


def evaluate_paired(
    opts: EvalOptions,
    the_plan: EvalPlan | None = None,
    on_seed_start: Callable[[int], None] | None = None,
    on_seed_done: Callable[[SeedResult], None] | None = None,
    jobs: int = 1,
) -> tuple[EvalPlan, list[SeedResult], list[SeedResult]]:
    """``--vlm on`` and its ``--vlm off`` counterpart from the same runs: (plan, with the VLM,
    without it).

    Each seed runs once with the VLM; its hazard observations are recorded and the alert manager
    is replayed without the gate (:func:`edge.tune_rules.without_vlm`). Exact only while the VLM
    decides which alerts go out and never where the camera looks: with ``vlm.look`` (the camera
    steers to a hazard that waits for a judgeable view; the default) the runs differ, so each
    seed also runs once more without the VLM.
    """
    check_options(opts)
    if not opts.vlm:
        raise EvalError("--vlm-off-json needs --vlm on")
    if the_plan is None:
        the_plan = plan(opts)
    # the VLM settings come from the plan, not the site: one seed's config tells for all
    looks = seed_config(opts.seeds[0], the_plan, opts.duration_s, vlm=True).vlm.look
    job = partial(_seed_job, the_plan=the_plan, opts=opts, paired=True, looks=looks)
    runs = map_seeds(job, opts.seeds, jobs, on_seed_start, _first(on_seed_done))
    return the_plan, [r[0] for r in runs], [r[1] for r in runs]


# ---------------------------------------------------------------------------------------------
# the summary
def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _figures(
    alerts: int, hazards: int, matched: int, site_time_s: float, ttas: list[float]
) -> dict[str, Any]:
    hours = max(site_time_s, 1e-9) / 3600.0
    return {
        "precision": _round(matched / alerts, 4) if alerts else None,
        "recall": _round(matched / hazards, 4) if hazards else None,
        "false_alerts_per_hour": round((alerts - matched) / hours, 2),
        "tta_mean_s": _round(sum(ttas) / len(ttas), 2) if ttas else None,
        "alerts": alerts,
        "hazards": hazards,
        "matched": matched,
    }


def _ttas(score: Score) -> list[float]:
    return [e.tta_s for e in score.events if e.tta_s is not None]


def seed_summary(result: SeedResult) -> dict[str, Any]:
    score = result.score
    figures = _figures(
        len(score.alerts),
        len(score.events),
        score.num_matched,
        result.site_time_s,
        _ttas(score),
    )
    return {
        "seed": result.seed,
        **figures,
        "site_time_s": round(result.site_time_s, 3),
        "frames": result.frames,
        "wall_s": round(result.wall_s, 3),
        "gate": result.gate,
    }


def thresholds(rules: HazardRules) -> dict[str, dict[str, Any]]:
    """The hazard rules' settings, per hazard type (see :data:`THRESHOLD_FIELDS`)."""
    return {
        hazard: {name: getattr(rules.rule(hazard), name) for name in THRESHOLD_FIELDS}
        for hazard in HAZARD_TYPES
    }


def _pooled_gate(results: list[SeedResult]) -> dict[str, int] | None:
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r.gate or {})
    return dict(counts) if any(r.gate is not None for r in results) else None


def summary(opts: EvalOptions, the_plan: EvalPlan, results: list[SeedResult]) -> dict[str, Any]:
    """The JSON summary (keys: :data:`SUMMARY_KEYS`), pooled over the seeds."""
    site_time_s = sum(r.site_time_s for r in results)
    figures = _figures(
        sum(len(r.score.alerts) for r in results),
        sum(len(r.score.events) for r in results),
        sum(r.score.num_matched for r in results),
        site_time_s,
        [tta for r in results for tta in _ttas(r.score)],
    )
    rules = the_plan.base.hazards if the_plan.base is not None else HazardRules()
    out = {
        **figures,
        "seeds": [r.seed for r in results],
        "duration_s": opts.duration_s,
        "site_time_s": round(site_time_s, 3),
        "policy": the_plan.policy,
        "perception": opts.perception,
        "vlm": "on" if opts.vlm else "off",
        "config": str(opts.config) if opts.config is not None else None,
        "thresholds": thresholds(rules),
        "grace_s": GRACE_S,
        "margin_deg": MARGIN_DEG,
        "per_seed": [seed_summary(r) for r in results],
        "gate": _pooled_gate(results),
    }
    assert tuple(out) == SUMMARY_KEYS
    return out


def results_table(data: dict[str, Any]) -> Any:
    """A rich table: one row per seed and the pooled total."""
    from rich.table import Table

    def fmt(value: Any, digits: int = 2) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    table = Table(
        title=f"sitehawk-edge eval: policy {data['policy']}, perception {data['perception']}, "
        f"VLM {data['vlm']}, {data['duration_s']:g} s per seed",
    )
    for name in ("seed", "events", "alerts", "found", "prec", "recall", "false/h", "tta s"):
        table.add_column(name, justify="right")
    table.add_column("frames", justify="right")
    table.add_column("wall s", justify="right")
    for row in data["per_seed"]:
        table.add_row(
            str(row["seed"]),
            str(row["hazards"]),
            str(row["alerts"]),
            str(row["matched"]),
            fmt(row["precision"]),
            fmt(row["recall"]),
            fmt(row["false_alerts_per_hour"], 1),
            fmt(row["tta_mean_s"], 1),
            str(row["frames"]),
            fmt(row["wall_s"], 1),
        )
    table.add_section()
    table.add_row(
        "total",
        str(data["hazards"]),
        str(data["alerts"]),
        str(data["matched"]),
        fmt(data["precision"]),
        fmt(data["recall"]),
        fmt(data["false_alerts_per_hour"], 1),
        fmt(data["tta_mean_s"], 1),
        str(sum(r["frames"] for r in data["per_seed"])),
        fmt(sum(r["wall_s"] for r in data["per_seed"]), 1),
        style="bold",
    )
    return table


# ---------------------------------------------------------------------------------------------
# the command


def make_output_folders(*outputs: tuple[str, Path | None]) -> None:
    """Create the folder of each (option, path) output, or fail naming the option and path."""
    for option, path in outputs:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(
                f"{option} {path}: cannot create the folder: {exc.strerror}"
            ) from None


def command(args: argparse.Namespace) -> int:
    """`sitehawk-edge eval` (registered in :mod:`edge.cli`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        opts = EvalOptions(
            seeds=parse_seeds(args.seeds),
            config=args.config,
            policy=args.policy,
            perception=args.perception,
            vlm=args.vlm == "on",
            duration_s=args.duration,
        )
        check_options(opts)
        jobs = jobs_option(args)
        the_plan = plan(opts)
        off_out: Path | None = getattr(args, "vlm_off_json", None)
        if off_out is not None and not opts.vlm:
            raise EvalError(f"--vlm-off-json {off_out}: needs --vlm on")
    except EvalError as exc:
        raise CommandError(str(exc)) from None
    out: Path = args.json
    make_output_folders(("--json", out), ("--vlm-off-json", off_out))
    training = training_seeds(opts.seeds)
    if training:
        shown = ", ".join(map(str, training[:10])) + (", …" if len(training) > 10 else "")
        print(
            f"sitehawk-edge eval: warning: seed(s) {shown} are training seeds (< "
            f"{HELD_OUT_SEED_MIN}); held-out figures come from seeds >= {HELD_OUT_SEED_MIN}",
            file=sys.stderr,
        )
    stderr = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]eval[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
    )
    task = progress.add_task("", total=len(opts.seeds))
    off_results: list[SeedResult] = []
    with progress:
        try:
            if off_out is None:
                the_plan, results = evaluate(
                    opts,
                    the_plan,
                    on_seed_start=lambda seed: progress.update(task, description=f"seed {seed}"),
                    on_seed_done=lambda _: progress.advance(task),
                    jobs=jobs,
                )
            else:
                the_plan, results, off_results = evaluate_paired(
                    opts,
                    the_plan,
                    on_seed_start=lambda seed: progress.update(task, description=f"seed {seed}"),
                    on_seed_done=lambda _: progress.advance(task),
                    jobs=jobs,
                )
        except EvalError as exc:
            raise CommandError(str(exc)) from None
    data = summary(opts, the_plan, results)
    written = [(out, "--json", data)]
    if off_out is not None:
        off_opts = replace(opts, vlm=False)
        written.append((off_out, "--vlm-off-json", summary(off_opts, the_plan, off_results)))
    for path, option, content in written:
        try:
            path.write_text(json.dumps(content, indent=2) + "\n")
        except OSError as exc:
            raise CommandError(f"{option} {path}: cannot write: {exc.strerror}", 1) from None
    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or a log: wide enough for every column's title
        console.width = max(console.width, 110)
    for _, _, content in written:
        console.print(results_table(content))
    print("wrote " + " and ".join(str(path) for path, _, _ in written))
    return 0
