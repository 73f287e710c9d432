"""The evaluation harness: exact JSON keys, baselines that genuinely rank, the CLI end to end."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from trainer.cli import main
from trainer.evaluate import (
    RESULT_KEYS,
    check_seeds,
    evaluate,
    load_policy,
    parse_seeds,
)

#: Held-out sites with hazards in their first minute (asserted below), 60 s episodes: a few
#: seconds per policy.
SEEDS = [1000, 1001, 1002, 1003]
EPISODE_S = 60.0


@functools.cache
def _eval(policy: str) -> dict[str, Any]:
    return evaluate(policy, SEEDS, episode_s=EPISODE_S, progress=False)


def test_eval_json_has_exactly_the_documented_keys() -> None:
    result = evaluate("static_wide", [1000], episode_s=20.0, progress=False)
    assert tuple(result) == RESULT_KEYS
    assert set(result) == {
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
    }
    assert result["policy"] == "static_wide" and result["perception"] == "sim"
    assert result["seeds"] == [1000] and result["episodes"] == 1
    assert isinstance(result["hazards"], int) and isinstance(result["missed"], int)
    assert result["steps_per_s"] > 0
    json.dumps(result, allow_nan=False)  # plain JSON, no NaN


def test_oracle_beats_random_on_mean_time_to_detection() -> None:
    oracle, random = _eval("oracle"), _eval("random")
    assert oracle["hazards"] == random["hazards"] > 0
    assert oracle["ttd_mean_s"] < random["ttd_mean_s"]
    assert oracle["recall"] >= random["recall"]


def test_patrol_and_greedy_beat_static_wide_on_recall() -> None:
    static = _eval("static_wide")
    patrol = _eval("patrol")
    greedy = _eval("greedy")
    assert static["hazards"] > 0
    assert patrol["recall"] > static["recall"]
    assert greedy["recall"] > static["recall"]
    # ... because they zoom in: a fixed 1× view barely moves, they travel
    assert static["travel_deg"] < 100 < min(patrol["travel_deg"], greedy["travel_deg"])


def test_missed_hazards_count_from_onset_to_episode_end() -> None:
    # a view that never moves misses far helmets: their TTD is onset → end, so the mean over all
    # hazards exceeds the mean over the ones it found
    static = _eval("static_wide")
    assert static["missed"] > 0
    assert static["ttd_mean_s"] > static["ttd_detected_mean_s"]
    assert 0.0 <= static["recall_30s"] <= static["recall"] <= 1.0


def test_seeds_parse_and_training_seeds_are_refused() -> None:
    assert parse_seeds("1000-1003") == [1000, 1001, 1002, 1003]
    assert parse_seeds("1000,1005, 1002") == [1000, 1002, 1005]
    assert parse_seeds("1000-1001,1010,1020-1021") == [1000, 1001, 1010, 1020, 1021]
    for bad in ("", "a-b", "10-5"):
        with pytest.raises(ValueError):
            parse_seeds(bad)
    with pytest.raises(ValueError, match="training seeds"):
        check_seeds([5, 1000])
    assert check_seeds([5], allow_train_seeds=True) == [5]


def test_unknown_policies_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        load_policy("nope")
    with pytest.raises(ValueError, match="no such ONNX policy"):
        load_policy(str(tmp_path / "policy.onnx"))
    with pytest.raises(ValueError, match="no such Stable-Baselines3 model"):
        load_policy(str(tmp_path / "model.zip"))


def test_cli_eval_writes_json_plot_and_video(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    png = tmp_path / "eval.png"
    video = tmp_path / "eval.mp4"
    rc = main(
        [
            "eval",
            "--policy",
            "greedy",
            "--seeds",
            "1003",
            "--episode-s",
            "10",
            "--json",
            str(out),
            "--plot",
            str(png),
            "--video",
            str(video),
            "--no-progress",
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert tuple(result) == RESULT_KEYS and result["seeds"] == [1003]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert video.stat().st_size > 10_000
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == 50  # 10 s at 5 Hz


def test_cli_missing_detector_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    missing = tmp_path / "nope.onnx"
    rc = main(
        ["eval", "--policy", "static_wide", "--perception", "detector"]
        + ["--detector-model", str(missing), "--json", str(out)]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "nope.onnx: no such model file" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_training_seeds_without_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["eval", "--policy", "random", "--seeds", "3", "--json", str(tmp_path / "r.json")])
    assert rc == 2
    assert "training seeds" in capsys.readouterr().err


def test_cli_baselines_writes_table_json_plot_and_report(tmp_path: Path) -> None:
    rc = main(
        [
            "baselines",
            "--seeds",
            "1003",
            "--episode-s",
            "6",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "baselines.json").read_text())
    assert list(data["results"]) == ["static_wide", "patrol", "greedy", "random", "oracle"]
    assert all(tuple(r) == RESULT_KEYS for r in data["results"].values())
    assert (tmp_path / "baselines.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in report and "oracle" in report


def test_sb3_zip_policies_act_through_predict(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from trainer.envs.ptz_search import PTZSearchEnv

    env = PTZSearchEnv(episode_s=2.0)
    model = PPO("MultiInputPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0)
    path = tmp_path / "ppo.zip"
    model.save(path)
    result = evaluate(str(path), [1000], episode_s=4.0, progress=False)
    assert result["policy"] == str(path) and result["episodes"] == 1
    assert tuple(result) == RESULT_KEYS
