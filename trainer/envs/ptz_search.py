"""``SiteHawk/PTZSearch-v0``: steer a PTZ camera over a virtual construction site to find hazards.

A thin gymnasium wrapper around :class:`trainer.envs.episode.SearchEpisode`: the episode owns the
simulation loop, the device's observation builder and the reward; this module adds the gym API,
spaces, seeding and site sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from edge.policy.base import DISCRETE_ACTIONS, discrete_to_command
from edge.policy.observation import ObservationConfig, observation_space_shapes
from edge.sim.generate import HELD_OUT_SEED_MIN, generate_site
from edge.sim.spec import SiteSpec
from trainer.envs.episode import PERCEPTION_MODES, EpisodeConfig, SearchEpisode

ObsDict = dict[str, Any]  # view, ptz, maps: numpy arrays

#: Seeds the env draws training sites from unless told otherwise: never the held-out range.
TRAIN_SITE_SEEDS = range(0, HELD_OUT_SEED_MIN)
_RESET_OPTIONS = ("site_seed", "perception_seed")


class PTZSearchEnv(gym.Env[ObsDict, np.int64]):
    """Find construction-site hazards fast by steering a PTZ camera (pan, tilt, zoom).

    Each episode draws a site seed from ``site_seeds`` with ``self.np_random`` (seed it through
    ``reset(seed=...)``; ``options={"site_seed": N}`` picks a site explicitly), generates that
    site, and runs ``episode_s`` seconds of site time at ``control_hz`` (5 Hz by default, so a
    120 s episode has 600 steps). Hazards start and end during the episode.

    **Observation** — a ``Dict`` built by the device's observation builder
    (:mod:`edge.policy.observation`), never from ground truth:

    * ``view``: ``Box(0, 255, (S, S, 3), uint8)``, the camera frame in RGB (S = ``view_size``);
    * ``ptz``: ``Box(-1, 1, (3,), float32)``, pan, tilt and log-zoom normalised over their ranges;
    * ``maps``: ``Box(0, 1, (3, 14, 68), float32)`` on a pan–tilt grid: staleness (time since a
      cell was seen at verifying resolution), unverified candidates, verified hazards.

    **Actions** — ``Discrete(7)``, mapped by :func:`edge.policy.base.discrete_to_command` to an
    ONVIF-style relative move, issued once per control step (and subject to the head's 0.1 s
    command latency and speed limits):

    ====  ===========  ==========================================================================
    0     stay         ``Stop``: halt every axis
    1     pan_left     pan by −min(½ FOV_h, 120°/s · dt): 24° at 1× (speed-capped), 15° at 2×,
                       1° at 30×
    2     pan_right    the same, to the right
    3     tilt_up      tilt by +min(½ FOV_v of a 16:9 frame, 90°/s · dt): 18° at 1×, 8.6° at 2×,
                       0.56° at 30×
    4     tilt_down    the same, down
    5     zoom_in      zoom × min(1.5, e^(1.7/s · dt)) = ×1.40 (the zoom motor caps it at 5 Hz)
    6     zoom_out     zoom ÷ 1.40
    ====  ===========  ==========================================================================

    Figures are for the default PTZ limits at 5 Hz (dt = 0.2 s); the steps shrink with zoom, so
    consecutive views overlap by at least half. Relative moves add to a move still in progress.

    **Reward** — for each hazard confirmed in a step (first frame in which it is *resolvable*),
    ``exp(-(t - onset) / 30 s)``; minus 0.002 per step.

    **Episode end** — ``terminated`` is always False (the site never ends); ``truncated`` is True
    on the last step, so no ``TimeLimit`` wrapper is needed. ``info`` carries ``t``, ``site_seed``,
    the ids of hazards ``confirmed`` this step, ``travel_deg`` and ``hazards``: each hazard's
    ``type``, ``onset_s`` and ``confirmed_s`` (None until confirmed).

    ``render()`` (``render_mode="rgb_array"``) returns the current camera frame in RGB, at the
    observation's size or, with ``render_size=(w, h)``, re-rendered at that size.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self,
        episode_s: float = 120.0,
        view_size: int = 96,
        site_seeds: Sequence[int] = TRAIN_SITE_SEEDS,
        perception: str = "sim",
        render_mode: str | None = None,
        control_hz: float = 5.0,
        render_size: tuple[int, int] | None = None,
    ) -> None:
        if episode_s <= 0:
            raise ValueError(f"episode_s must be positive, got {episode_s}")
        if control_hz <= 0:
            raise ValueError(f"control_hz must be positive, got {control_hz}")
        if int(round(episode_s * control_hz)) < 1:
            raise ValueError(f"episode_s={episode_s} at control_hz={control_hz} is under a step")
        if view_size < 8:
            raise ValueError(f"view_size must be at least 8, got {view_size}")
        if perception not in PERCEPTION_MODES:
            raise ValueError(f"perception must be one of {PERCEPTION_MODES}, got {perception!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, "
                f"got {render_mode!r}"
            )
        seeds = list(site_seeds)
        if not seeds:
            raise ValueError("site_seeds is empty")
        if any(int(s) != s or s < 0 for s in seeds):
            raise ValueError("site_seeds must be non-negative integers")
        self.site_seeds: tuple[int, ...] = tuple(int(s) for s in seeds)
        self.render_mode = render_mode
        self.render_size = render_size
        self.config = EpisodeConfig(
            episode_s=float(episode_s),
            control_hz=float(control_hz),
            perception=perception,
            obs=ObservationConfig(view_size=int(view_size)),
        )
        self.metadata = {**self.metadata, "render_fps": control_hz}
        shapes = observation_space_shapes(self.config.obs)
        self.observation_space = spaces.Dict(
            {
                "view": spaces.Box(0, 255, shapes["view"], dtype=np.uint8),
                "ptz": spaces.Box(-1.0, 1.0, shapes["ptz"], dtype=np.float32),
                "maps": spaces.Box(0.0, 1.0, shapes["maps"], dtype=np.float32),
            }
        )
        self.action_space = spaces.Discrete(len(DISCRETE_ACTIONS))
        self.episode: SearchEpisode | None = None
        self.site_spec: SiteSpec | None = None
        self.site_seed: int | None = None

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsDict, dict[str, Any]]:
        """Start an episode on a new site; ``options`` may fix ``site_seed``/``perception_seed``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(_RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; known: {list(_RESET_OPTIONS)}")
        # Draw both seeds every time, so an explicit site_seed does not shift later draws.
        drawn_site = int(self.site_seeds[int(self.np_random.integers(len(self.site_seeds)))])
        drawn_perception = int(self.np_random.integers(2**31 - 1))
        site_seed = int(options.get("site_seed", drawn_site))
        perception_seed = int(options.get("perception_seed", drawn_perception))
        if site_seed < 0:
            raise ValueError(f"site_seed must be non-negative, got {site_seed}")
        self.site_seed = site_seed
        self.site_spec = generate_site(site_seed, duration_s=self.config.episode_s)
        self.episode = SearchEpisode(self.site_spec, self.config, perception_seed=perception_seed)
        obs = self.episode.reset()
        info = {
            "t": self.episode.t,
            "site_seed": site_seed,
            "perception_seed": perception_seed,
            "hazards": self.episode.hazard_info(),
        }
        return obs.as_dict(), info

    def step(self, action: np.int64 | int) -> tuple[ObsDict, float, bool, bool, dict[str, Any]]:
        """Apply one discrete action for one control period."""
        episode = self.episode
        if episode is None or episode.virtual is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(
                f"action must be an integer in [0, {len(DISCRETE_ACTIONS)}), got {action}"
            )
        command = discrete_to_command(
            int(action), episode.virtual.pose, episode.spec.camera, self.config.dt
        )
        obs, reward, done, info = episode.step(command)
        info["site_seed"] = self.site_seed
        info["travel_deg"] = episode.travel_deg
        return obs.as_dict(), float(reward), False, bool(done), info

    def render(self) -> np.ndarray | None:
        """The current camera frame as RGB uint8 (``render_mode="rgb_array"``), else None."""
        if self.render_mode is None:
            return None
        if self.episode is None or self.episode.virtual is None:
            raise RuntimeError("call reset() before render()")
        if self.render_size is None:
            image = self.episode.last_frame.image
        else:
            virtual = self.episode.virtual
            width, height = self.render_size
            frame, _ = virtual.renderer.render(
                virtual.pose,
                virtual.t,
                int(width),
                int(height),
                index=self.episode.last_frame.index,
                truth=False,
                motion_dps=virtual.head.rate_dps,
            )
            image = frame.image
        return np.ascontiguousarray(image[..., ::-1])
