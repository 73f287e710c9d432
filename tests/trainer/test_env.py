"""SiteHawk/PTZSearch-v0: API contract (both checkers), seeding, episode end, info, vector envs."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import trainer.envs.ptz_search as ptz_search
from edge.sim.generate import HELD_OUT_SEED_MIN, generate_site
from edge.sim.spec import FireSpec, SiteSpec
from trainer.envs import PTZ_SEARCH_ID
from trainer.envs.ptz_search import TRAIN_SITE_SEEDS, PTZSearchEnv

SHORT_S = 2.0  # 10 steps at 5 Hz


def _make(**kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(PTZ_SEARCH_ID, **{"episode_s": SHORT_S, **kwargs})


def _rollout(env: PTZSearchEnv, seed: int, actions: list[int]) -> list[tuple[Any, float, int]]:
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, info["site_seed"])]
    for a in actions:
        obs, reward, _, _, info = env.step(a)
        out.append((obs, reward, info["site_seed"]))
    return out


# ------------------------------------------------------------------ API contract
def test_gymnasium_env_checker_passes() -> None:
    # made through gym.make so the env has a spec (the checker then also tries other render modes)
    env = gym.make(PTZ_SEARCH_ID, episode_s=4.0, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)
    assert not [str(w.message) for w in caught if "gymnasium" in w.filename]


def test_sb3_env_checker_passes() -> None:
    env = PTZSearchEnv(episode_s=4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    # The only advisories allowed: the float (3, 14, 68) pan–tilt maps look like a small "image"
    # to SB3's heuristics (MultiInputPolicy flattens them; a custom extractor may read them).
    allowed = ("maps", "minimal resolution for an image is 36x36")
    others = [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]
    assert not others


def test_registered_and_made_by_id() -> None:
    env = gym.make(PTZ_SEARCH_ID, episode_s=SHORT_S)
    assert env.spec is not None and env.spec.id == "SiteHawk/PTZSearch-v0"
    assert isinstance(env.unwrapped, PTZSearchEnv)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    # the "module:id" form imports the registering module itself
    env2 = gym.make("trainer.envs:SiteHawk/PTZSearch-v0", episode_s=SHORT_S)
    assert isinstance(env2.unwrapped, PTZSearchEnv)


def test_spaces() -> None:
    env = PTZSearchEnv(episode_s=SHORT_S, view_size=64)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert space["view"].shape == (64, 64, 3) and space["view"].dtype == np.uint8
    assert space["ptz"].shape == (3,) and space["ptz"].dtype == np.float32
    assert space["maps"].shape == (3, 14, 68) and space["maps"].dtype == np.float32
    for key, (low, high) in {"ptz": (-1.0, 1.0), "maps": (0.0, 1.0)}.items():
        box = space[key]
        assert isinstance(box, gym.spaces.Box)
        assert float(box.low.min()) == low and float(box.high.max()) == high
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == 7
    obs, _ = env.reset(seed=3)
    assert space.contains(obs)


def test_observations_stay_in_space_under_random_actions() -> None:
    env = PTZSearchEnv(episode_s=12.0)  # 60 steps: long enough to hit zoom/pan limits
    env.reset(seed=11)
    env.action_space.seed(11)
    for _ in range(60):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs), {k: (v.min(), v.max()) for k, v in obs.items()}
        assert isinstance(reward, float) and not terminated
    assert truncated


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="perception"):
        PTZSearchEnv(perception="magic")
    with pytest.raises(ValueError, match="site_seeds"):
        PTZSearchEnv(site_seeds=[])
    with pytest.raises(ValueError, match="render_mode"):
        PTZSearchEnv(render_mode="human")
    env = PTZSearchEnv(episode_s=SHORT_S)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"sitee_seed": 3})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(7)


# ------------------------------------------------------------------ seeding
def test_same_seed_and_actions_give_identical_episodes() -> None:
    actions = [int(a) for a in np.random.default_rng(0).integers(0, 7, 25)]
    a = _rollout(PTZSearchEnv(episode_s=6.0), 42, actions)
    b = _rollout(PTZSearchEnv(episode_s=6.0), 42, actions)
    for (obs_a, r_a, s_a), (obs_b, r_b, s_b) in zip(a, b, strict=True):
        assert s_a == s_b and r_a == r_b
        for key in obs_a:
            assert obs_a[key].tobytes() == obs_b[key].tobytes(), key


def test_different_seeds_give_different_sites() -> None:
    env = PTZSearchEnv(episode_s=SHORT_S)
    obs_a, info_a = env.reset(seed=1)
    obs_b, info_b = env.reset(seed=2)
    assert info_a["site_seed"] != info_b["site_seed"]
    assert obs_a["view"].tobytes() != obs_b["view"].tobytes()


def test_site_seeds_default_to_the_training_range_and_are_respected() -> None:
    assert max(TRAIN_SITE_SEEDS) < HELD_OUT_SEED_MIN
    assert PTZSearchEnv().site_seeds == tuple(TRAIN_SITE_SEEDS)
    env = PTZSearchEnv(episode_s=SHORT_S, site_seeds=[7, 8])
    env.reset(seed=0)
    drawn = {env.reset()[1]["site_seed"] for _ in range(6)}
    assert drawn <= {7, 8}
    # a held-out site only when asked for explicitly
    _, info = env.reset(options={"site_seed": 1003})
    assert info["site_seed"] == 1003 and env.site_spec is not None and env.site_spec.seed == 1003


def test_site_matches_generator() -> None:
    env = PTZSearchEnv(episode_s=SHORT_S)
    env.reset(seed=5, options={"site_seed": 17})
    assert env.site_spec == generate_site(17, duration_s=SHORT_S)


# ------------------------------------------------------------------ episode end, info, reward
@pytest.mark.parametrize(("episode_s", "control_hz", "steps"), [(2.0, 5.0, 10), (3.0, 2.0, 6)])
def test_episode_truncates_at_the_right_step(
    episode_s: float, control_hz: float, steps: int
) -> None:
    env = PTZSearchEnv(episode_s=episode_s, control_hz=control_hz)
    env.reset(seed=0)
    for k in range(1, steps + 1):
        _, _, terminated, truncated, info = env.step(0)
        assert not terminated
        assert truncated == (k == steps), k
    assert math.isclose(info["t"], episode_s)
    with pytest.raises(RuntimeError):
        env.step(0)


def _site_with_fire_in_view(onset_s: float) -> Callable[..., SiteSpec]:
    """generate_site, plus a fire at the centre of the home view that starts at ``onset_s``."""

    def make(seed: int, duration_s: float = 600.0) -> SiteSpec:
        spec = generate_site(seed, duration_s=duration_s)
        centre = np.concatenate([np.asarray(a) for a in spec.work_areas]).mean(axis=0)
        spec.fires = [
            FireSpec(
                position=[float(centre[0]), float(centre[1])],
                start_s=onset_s,
                end_s=duration_s + 60.0,
                size_m=2.5,
            )
        ]
        return spec

    return make


def test_info_carries_onset_and_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    onset = 1.0
    monkeypatch.setattr(ptz_search, "generate_site", _site_with_fire_in_view(onset))
    env = PTZSearchEnv(episode_s=4.0)
    _, info = env.reset(seed=0)
    fire_ids = [h for h, rec in info["hazards"].items() if rec["type"] == "fire_smoke"]
    assert len(fire_ids) == 1
    fire = fire_ids[0]
    assert info["hazards"][fire] == {"type": "fire_smoke", "onset_s": onset, "confirmed_s": None}
    confirmed_at = None
    for _ in range(20):
        _, reward, _, truncated, info = env.step(0)  # stay: the camera already looks at it
        for hid, rec in info["hazards"].items():
            assert set(rec) == {"type", "onset_s", "confirmed_s"}
            assert 0.0 <= rec["onset_s"] < 4.0
            if rec["confirmed_s"] is not None:
                assert rec["onset_s"] <= rec["confirmed_s"] <= info["t"] + 1e-9, hid
        if fire in info["confirmed"]:
            confirmed_at = info["hazards"][fire]["confirmed_s"]
            assert confirmed_at == pytest.approx(info["t"])
            assert onset <= confirmed_at <= onset + 0.5
            expected = -0.002 + sum(
                math.exp(-(info["hazards"][h]["confirmed_s"] - info["hazards"][h]["onset_s"]) / 30)
                for h in info["confirmed"]
            )
            assert reward == pytest.approx(expected)
        else:
            assert (reward == pytest.approx(-0.002)) or info["confirmed"]
        if truncated:
            break
    assert confirmed_at is not None, "a fire in the middle of the view was never confirmed"
    assert info["hazards"][fire]["confirmed_s"] == confirmed_at  # stays confirmed


# ------------------------------------------------------------------ render
def test_render_rgb_array() -> None:
    env = PTZSearchEnv(episode_s=SHORT_S, render_mode="rgb_array")
    obs, _ = env.reset(seed=4)
    frame = env.render()
    # the camera frame keeps the device's 16:9 aspect; the observation's view is it resized
    assert frame is not None and frame.dtype == np.uint8 and frame.shape == (90, 160, 3)
    resized = cv2.resize(frame, (96, 96), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resized, obs["view"])
    big = PTZSearchEnv(episode_s=SHORT_S, render_mode="rgb_array", render_size=(320, 180))
    big.reset(seed=4)
    frame = big.render()
    assert frame is not None and frame.shape == (180, 320, 3)
    assert PTZSearchEnv(episode_s=SHORT_S).render() is None


# ------------------------------------------------------------------ vector envs
def test_gymnasium_sync_vector_env() -> None:
    venv = gym.vector.SyncVectorEnv([functools.partial(_make) for _ in range(2)])
    obs, info = venv.reset(seed=0)
    assert obs["view"].shape == (2, 96, 96, 3) and obs["maps"].shape == (2, 3, 14, 68)
    assert len(set(info["site_seed"])) == 2  # sub-envs are seeded apart
    venv.action_space.seed(0)
    truncated_seen = False
    for _ in range(12):
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert reward.shape == (2,) and not terminated.any()
        truncated_seen |= bool(truncated.all())
    assert truncated_seen
    venv.close()


def test_gymnasium_async_vector_env() -> None:
    fn = functools.partial(gym.make, "trainer.envs:SiteHawk/PTZSearch-v0", episode_s=SHORT_S)
    venv = gym.vector.AsyncVectorEnv([fn, fn])
    try:
        obs, _ = venv.reset(seed=0)
        assert obs["view"].shape == (2, 96, 96, 3)
        for _ in range(11):
            obs, reward, _, _, _ = venv.step(np.array([1, 5]))
        assert reward.shape == (2,)
    finally:
        venv.close()


def test_sb3_dummy_vec_env() -> None:
    venv = DummyVecEnv([functools.partial(_make) for _ in range(2)])
    venv.seed(0)
    obs = venv.reset()
    assert isinstance(obs, dict) and obs["view"].shape == (2, 96, 96, 3)
    dones_seen = 0
    for _ in range(10):
        obs, reward, dones, infos = venv.step(np.array([2, 6]))
        dones_seen += int(dones.sum())
    assert dones_seen == 2  # both episodes end at step 10 ...
    assert all(info["TimeLimit.truncated"] for info in infos)  # ... as truncations
    assert "terminal_observation" in infos[0]
    venv.close()


def test_sb3_subproc_vec_env() -> None:
    fn = functools.partial(gym.make, "trainer.envs:SiteHawk/PTZSearch-v0", episode_s=SHORT_S)
    venv = SubprocVecEnv([fn, fn])
    try:
        venv.seed(0)
        obs = venv.reset()
        assert isinstance(obs, dict) and obs["maps"].shape == (2, 3, 14, 68)
        obs, reward, _, _ = venv.step(np.array([0, 3]))
        assert reward.shape == (2,)
    finally:
        venv.close()
