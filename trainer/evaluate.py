"""The evaluation harness: run a PTZ policy on virtual sites and score how fast it finds hazards.

One episode per seed: the site is generated from the seed (``generate_site(seed, episode_s)``), a
:class:`~trainer.envs.episode.SearchEpisode` runs ``episode_s`` seconds at ``control_hz``, and every
hazard that starts during the episode is scored by its time to detection (TTD): from its onset to
the first frame in which it is *resolvable* (the evaluator's ground truth, never the policy's
input). Results (:func:`summarize`, exactly :data:`RESULT_KEYS`):

* ``hazards`` — hazards that started during the episodes; ``missed`` — never confirmed;
* ``ttd_mean_s`` — mean TTD, a missed hazard counting as onset → episode end (so missing one is
  never better than finding it late); ``ttd_p90_s`` — its 90th percentile; ``ttd_detected_mean_s``
  — mean over confirmed hazards only (``null`` when none was);
* ``recall`` — share confirmed; ``recall_30s`` — share confirmed within 30 s of onset;
* ``travel_deg`` — mean pan + tilt travel of the head per episode, degrees (wear, and the
  motion blur a real camera pays);
* ``steps_per_s`` — control steps per wall-clock second over the run (simulation, rendering,
  perception and the policy together; timing only, not comparable across machines).

Seeds ≥ 1000 are held out (``HELD_OUT_SEED_MIN``): evaluation refuses training seeds unless
``allow_train_seeds=True`` (tuning baselines uses training seeds on purpose).

A policy is a registered name (``edge.policy.base.POLICIES`` plus ``oracle``), a path to an
exported ONNX policy (its ``<stem>.manifest.json`` beside it), a Stable-Baselines3 ``.zip``, or a
policy object.

The plots, the HTML report and the episode video of an evaluation are :mod:`trainer.report`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.policy.base import POLICIES, Policy, PolicyContext, discrete_to_command, make_policy
from edge.policy.observation import Observation, ObservationConfig, observation_space_shapes
from edge.sim.generate import HELD_OUT_SEED_MIN, generate_site
from edge.sim.ptz import PTZCommand
from edge.sim.spec import SiteSpec
from trainer.envs.episode import PERCEPTION_MODES, EpisodeConfig, HazardRecord, SearchEpisode

#: The eval JSON's top-level keys, exactly.
RESULT_KEYS = (
    "policy",
    "perception",
    "seeds",
    "episodes",
    "hazards",
    "ttd_mean_s",
    "ttd_p90_s",
    "ttd_detected_mean_s",
    "recall_30s",
    "recall",
    "missed",
    "travel_deg",
    "steps_per_s",
)
#: Policies that read ground truth: they live in ``trainer``, not on the device.
TRAINER_POLICIES = {"oracle": "trainer.baselines.oracle:OraclePolicy"}
#: The policies ``sitehawk-train baselines`` compares, in table order.
BASELINES = ("static_wide", "patrol", "greedy", "random", "oracle")
RECALL_WINDOW_S = 30.0


# ------------------------------------------------------------------------------- seeds
def seeds_arg(text: str) -> list[int]:
    """:func:`parse_seeds` as an argparse ``type`` (bad input → argparse's usage error)."""
    import argparse

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_seeds(text: str) -> list[int]:
    """Parse ``"1000-1049"``, ``"1,5,9"`` or mixes such as ``"0-3,10,20-21"`` into a sorted list."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise ValueError(f"bad seed range {part!r}: use A-B, A,B,C or a mix") from None
        if hi < lo:
            raise ValueError(f"bad seed range {part!r}: {hi} < {lo}")
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return sorted(seeds)


def check_seeds(seeds: Sequence[int], allow_train_seeds: bool = False) -> list[int]:
    """Refuse training seeds (< ``HELD_OUT_SEED_MIN``) for evaluation unless explicitly allowed."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds to evaluate")
    train = [s for s in seeds if s < HELD_OUT_SEED_MIN]
    if train and not allow_train_seeds:
        raise ValueError(
            f"seeds {train[:5]}{'…' if len(train) > 5 else ''} are training seeds; evaluate on "
            f"held-out seeds ≥ {HELD_OUT_SEED_MIN} (or pass allow_train_seeds / "
            "--allow-train-seeds for tuning)"
        )
    return seeds


# ------------------------------------------------------------------------------- policies
class Sb3Policy:
    """A Stable-Baselines3 model acting through ``predict(obs, deterministic=True)``."""

    def __init__(self, path: str | Path, obs_config: ObservationConfig | None = None):
        self.path = Path(path)
        self.name = self.path.stem
        self.model = _load_sb3(self.path)
        expected = observation_space_shapes(obs_config or ObservationConfig())
        space = getattr(self.model, "observation_space", None)
        spaces = getattr(space, "spaces", None)
        if spaces is None or set(spaces) != set(expected):
            raise ValueError(
                f"{self.path}: observation space {space} is not the Dict {sorted(expected)} of "
                "SiteHawk/PTZSearch-v0"
            )
        for key, shape in expected.items():
            got = tuple(spaces[key].shape)
            # SB3 stores image spaces channel-first after VecTransposeImage
            if got != shape and got != (shape[2], shape[0], shape[1]):
                raise ValueError(
                    f"{self.path}: observation {key!r} has shape {got}, expected {shape}"
                )
        n = getattr(getattr(self.model, "action_space", None), "n", None)
        if n is not None and int(n) != 7:
            raise ValueError(f"{self.path}: action space has {n} actions, expected 7")

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        """Remember the camera (needed to turn actions into commands)."""
        self.ctx = ctx

    def act(self, obs: Observation) -> PTZCommand:
        """Greedy action of the model."""
        action, _ = self.model.predict(obs.as_dict(), deterministic=True)
        return discrete_to_command(
            int(np.asarray(action).reshape(-1)[0]), obs.pose, self.ctx.camera, self.ctx.dt
        )


def _load_sb3(path: Path) -> Any:
    try:
        import stable_baselines3 as sb3
    except ImportError as exc:  # pragma: no cover - the train extra ships it
        raise ValueError(
            f"{path}: loading a Stable-Baselines3 model needs stable-baselines3 "
            "(pip install -e '.[train]')"
        ) from exc
    errors = []
    for algo in ("PPO", "A2C", "DQN"):
        try:
            return getattr(sb3, algo).load(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - try the next algorithm, report all at the end
            errors.append(f"{algo}: {type(exc).__name__}: {exc}")
    raise ValueError(f"{path}: not a Stable-Baselines3 PPO/A2C/DQN model ({'; '.join(errors)})")


def load_policy(policy: str | Path | Policy, **kwargs: Any) -> Policy:
    """A policy from a registered name, an ONNX export, an SB3 zip, or a policy object."""
    if not isinstance(policy, (str, Path)):
        return policy
    text = str(policy)
    if text in TRAINER_POLICIES:
        module, _, cls = TRAINER_POLICIES[text].partition(":")
        agent: Policy = getattr(importlib.import_module(module), cls)(**kwargs)
        return agent
    if text in POLICIES and text != "learned":
        return make_policy(text, **kwargs)
    path = Path(text)
    if path.suffix == ".onnx":
        if not path.exists():
            raise ValueError(f"{path}: no such ONNX policy")
        return make_policy("learned", path=path, **kwargs)
    if path.suffix == ".zip":
        if not path.exists():
            raise ValueError(f"{path}: no such Stable-Baselines3 model")
        return Sb3Policy(path, **kwargs)
    names = sorted([*(n for n in POLICIES if n != "learned"), *TRAINER_POLICIES])
    raise ValueError(
        f"unknown policy {text!r}: give one of {names}, a .onnx policy (manifest beside it) or a "
        "Stable-Baselines3 .zip"
    )


def policy_name(policy: str | Path | Policy) -> str:
    if isinstance(policy, (str, Path)):
        return str(policy)
    return str(getattr(policy, "name", type(policy).__name__))


def policy_context(spec: SiteSpec, config: EpisodeConfig) -> PolicyContext:
    """What the device is configured with for this site: camera, work areas, rates, thresholds."""
    return PolicyContext(
        camera=spec.camera,
        work_areas=[[list(p) for p in area] for area in spec.work_areas],
        control_hz=config.control_hz,
        verify_head_px=config.obs.verify_head_px,
        verify_smoke_px=config.obs.verify_smoke_px,
    )


# ------------------------------------------------------------------------------- running
@dataclass
class EpisodeResult:
    """One scored episode."""

    seed: int
    episode_s: float
    hazards: list[HazardRecord]
    travel_deg: float
    steps: int
    wall_s: float

    def ttds(self) -> np.ndarray:
        """TTD per hazard, a missed one counting as onset → episode end."""
        return np.array(
            [h.ttd_s if h.ttd_s is not None else self.episode_s - h.onset_s for h in self.hazards],
            dtype=np.float64,
        )


@dataclass
class EvalRun:
    """All episodes of one policy: what :func:`summarize` scores and the plots draw."""

    policy: str
    perception: str
    seeds: list[int]
    episode_s: float
    episodes: list[EpisodeResult] = field(default_factory=list)

    def ttds(self) -> np.ndarray:
        return np.concatenate([e.ttds() for e in self.episodes]) if self.episodes else np.zeros(0)

    def detected(self) -> np.ndarray:
        return np.array(
            [h.confirmed_s is not None for e in self.episodes for h in e.hazards], dtype=bool
        )


def episode_config(
    config: EpisodeConfig | None = None, *, perception: str = "sim", episode_s: float | None = None
) -> EpisodeConfig:
    """The episode settings of an evaluation (defaults: 120 s at 5 Hz, simulated perception)."""
    cfg = config or EpisodeConfig()
    changes: dict[str, Any] = {"perception": perception}
    if episode_s is not None:
        changes["episode_s"] = float(episode_s)
    return dataclasses.replace(cfg, **changes)


def make_episode(seed: int, config: EpisodeConfig) -> SearchEpisode:
    """The episode for one seed (raises ValueError for an unavailable perception mode)."""
    if config.perception not in PERCEPTION_MODES:
        raise ValueError(f"perception must be one of {PERCEPTION_MODES}, got {config.perception!r}")
    return SearchEpisode(generate_site(seed, duration_s=config.episode_s), config)


StepHook = Callable[[SearchEpisode, Observation, PTZCommand], None]


def run_episode(
    policy: Policy, seed: int, config: EpisodeConfig, *, on_step: StepHook | None = None
) -> EpisodeResult:
    """Run ``policy`` for one episode on the site of ``seed`` and score it."""
    episode = make_episode(seed, config)
    obs = episode.reset()
    policy.reset(policy_context(episode.spec, config), seed=seed)
    bind = getattr(policy, "bind", None)
    if callable(bind):  # the oracle reads ground truth through the episode
        bind(episode)
    start = time.perf_counter()
    done = False
    while not done:
        command = policy.act(obs)
        obs, _, done, _ = episode.step(command)
        if on_step is not None:
            on_step(episode, obs, command)
    wall = time.perf_counter() - start
    return EpisodeResult(
        seed,
        config.episode_s,
        [dataclasses.replace(h) for h in episode.hazards.values()],
        float(episode.travel_deg),
        episode.step_index,
        wall,
    )


def run_policy(
    policy: str | Path | Policy,
    seeds: Iterable[int],
    *,
    perception: str = "sim",
    config: EpisodeConfig | None = None,
    episode_s: float | None = None,
    progress: bool = True,
    allow_train_seeds: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
) -> EvalRun:
    """Run a policy on every seed; the raw material of :func:`summarize` and the plots."""
    seed_list = check_seeds(list(seeds), allow_train_seeds)
    cfg = episode_config(config, perception=perception, episode_s=episode_s)
    agent = load_policy(policy, **(policy_kwargs or {}))
    obs_cfg = getattr(agent, "obs_config", None)
    if isinstance(obs_cfg, ObservationConfig) and obs_cfg != cfg.obs:
        cfg = dataclasses.replace(cfg, obs=obs_cfg)  # an exported policy brings its own
    make_episode(seed_list[0], cfg)  # fail fast (e.g. no detector) before any progress output
    run = EvalRun(policy_name(policy), perception, seed_list, cfg.episode_s)
    with _progress(progress, f"{run.policy} ({perception})", len(seed_list)) as advance:
        for seed in seed_list:
            run.episodes.append(run_episode(agent, seed, cfg))
            advance()
    return run


def summarize(run: EvalRun) -> dict[str, Any]:
    """The eval JSON: exactly :data:`RESULT_KEYS`."""
    ttd = run.ttds()
    detected = run.detected()
    n = len(ttd)
    confirmed = ttd[detected] if n else ttd
    steps = sum(e.steps for e in run.episodes)
    wall = sum(e.wall_s for e in run.episodes)
    result: dict[str, Any] = {
        "policy": run.policy,
        "perception": run.perception,
        "seeds": [int(s) for s in run.seeds],
        "episodes": len(run.episodes),
        "hazards": int(n),
        "ttd_mean_s": _num(ttd.mean()) if n else None,
        "ttd_p90_s": _num(np.percentile(ttd, 90)) if n else None,
        "ttd_detected_mean_s": _num(confirmed.mean()) if len(confirmed) else None,
        "recall_30s": _num(np.mean(detected & (ttd <= RECALL_WINDOW_S))) if n else None,
        "recall": _num(detected.mean()) if n else None,
        "missed": int(n - detected.sum()),
        "travel_deg": _num(np.mean([e.travel_deg for e in run.episodes])) if run.episodes else 0.0,
        "steps_per_s": _num(steps / wall) if wall > 0 else 0.0,
    }
    assert tuple(result) == RESULT_KEYS
    return result


def evaluate(
    policy: str | Path | Policy,
    seeds: Iterable[int],
    perception: str = "sim",
    config: EpisodeConfig | None = None,
    progress: bool = True,
    *,
    episode_s: float | None = None,
    allow_train_seeds: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a policy on held-out seeds; returns the eval JSON (exactly :data:`RESULT_KEYS`)."""
    return summarize(
        run_policy(
            policy,
            seeds,
            perception=perception,
            config=config,
            episode_s=episode_s,
            progress=progress,
            allow_train_seeds=allow_train_seeds,
            policy_kwargs=policy_kwargs,
        )
    )


def _num(value: float | np.floating[Any]) -> float:
    return round(float(value), 4)


class _progress:
    """A rich progress bar over episodes (or nothing), as a context manager yielding ``advance``."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total = enabled, label, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.__enter__()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# ------------------------------------------------------------------------------- tuning
def grid_search(
    policy: str,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    *,
    config: EpisodeConfig | None = None,
    progress: bool = True,
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Evaluate every combination of ``grid`` (field → values) on training seeds.

    Returns ``(params, result)`` pairs, best first by ``ttd_mean_s`` (then recall). Every
    combination sees the same seeds, so differences are paired, not sampling noise.
    """
    keys = list(grid)
    combos = [
        dict(zip(keys, values, strict=True)) for values in _product([list(grid[k]) for k in keys])
    ]
    out = []
    with _progress(progress, f"tuning {policy}", len(combos) * len(seeds)) as advance:
        for params in combos:
            agent = load_policy(policy, **params)
            cfg = episode_config(config)
            run = EvalRun(policy, cfg.perception, list(seeds), cfg.episode_s)
            for seed in seeds:
                run.episodes.append(run_episode(agent, seed, cfg))
                advance()
            out.append((params, summarize(run)))
    out.sort(key=lambda pr: (pr[1]["ttd_mean_s"], -(pr[1]["recall"] or 0.0)))
    return out


def _product(lists: list[list[Any]]) -> list[tuple[Any, ...]]:
    combos: list[tuple[Any, ...]] = [()]
    for values in lists:
        combos = [c + (v,) for c in combos for v in values]
    return combos


def save_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON (parents created; NaN never written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    return path


__all__ = [
    "BASELINES",
    "RESULT_KEYS",
    "EpisodeResult",
    "EvalRun",
    "Sb3Policy",
    "check_seeds",
    "evaluate",
    "grid_search",
    "load_policy",
    "parse_seeds",
    "run_episode",
    "run_policy",
    "save_json",
    "summarize",
]
