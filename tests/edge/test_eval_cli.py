"""`sitehawk-edge eval`: the JSON it writes, the options it refuses, how it pools the seeds.

The matching rule itself (type, place ± margin, time + grace, one alert per event) is tested in
tests/edge/test_agent.py; here only the grace case it lacks.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from edge.cli import main
from edge.evaluate import EvalError, EvalOptions, EvalPlan, SeedResult, parse_seeds, summary
from edge.sim.generate import generate_site
from edge.sim.scoring import (
    AlertOutcome,
    EventOutcome,
    RaisedAlert,
    Score,
    event_extent,
    score_alerts,
)
from edge.sim.world import Site

#: The documented keys of the JSON (edge/evaluate.py's module doc, issue 4).
KEYS = {
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
}
PER_SEED_KEYS = {
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
    "gate",
    "wall_s",
}
HAZARDS = ("no_helmet", "no_vest", "zone_intrusion", "fire_smoke")
RULE_KEYS = {"enabled", "min_confidence", "dwell_s", "cooldown_s", "severity"}


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The device's default outbox lives under XDG_STATE_HOME: point it into the test's folder
    (so a test can check that eval never touches it)."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


def _fraction_or_none(value: object) -> bool:
    return value is None or (isinstance(value, float) and 0.0 <= value <= 1.0)


def test_eval_writes_the_documented_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], _private_state: Path
) -> None:
    out = tmp_path / "scores" / "eval.json"  # the folder is created
    argv = ["eval", "--seeds", "1003-1004", "--duration", "30", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    data = json.loads(out.read_text())
    assert set(data) == KEYS
    assert data["seeds"] == [1003, 1004]
    for key in ("alerts", "hazards", "matched"):
        assert type(data[key]) is int and data[key] >= 0, key
    assert data["matched"] <= min(data["alerts"], data["hazards"])
    assert data["hazards"] >= 2  # both sites have a hazard event in their first 30 s
    assert _fraction_or_none(data["precision"]) and _fraction_or_none(data["recall"])
    assert data["recall"] is not None
    assert data["false_alerts_per_hour"] >= 0.0
    assert data["tta_mean_s"] is None or data["tta_mean_s"] >= 0.0
    assert (data["duration_s"], data["site_time_s"]) == (30.0, 60.0)
    assert (data["policy"], data["perception"], data["vlm"], data["config"]) == (
        "greedy",
        "sim",
        "off",
        None,
    )
    assert set(data["thresholds"]) == set(HAZARDS)
    for rule in data["thresholds"].values():
        assert set(rule) == RULE_KEYS
        assert 0.0 <= rule["min_confidence"] <= 1.0 and rule["dwell_s"] >= 0.0
    assert [row["seed"] for row in data["per_seed"]] == [1003, 1004]
    for row in data["per_seed"]:
        assert set(row) == PER_SEED_KEYS
        assert row["frames"] == 300  # 10 frames per site second, from site time 0
        assert _fraction_or_none(row["precision"]) and _fraction_or_none(row["recall"])
    assert sum(row["alerts"] for row in data["per_seed"]) == data["alerts"]
    assert data["gate"] is None and all(row["gate"] is None for row in data["per_seed"])
    assert "total" in printed.out and "1003" in printed.out  # the table
    assert "warning" not in printed.err  # held-out seeds
    assert not _private_state.exists()  # a temporary outbox per seed, never the device's
    # --jobs 2: the seeds run side by side in worker processes, with the same results
    out2 = tmp_path / "eval2.json"
    assert main([*argv[:-1], str(out2), "--jobs", "2"]) == 0
    data2 = json.loads(out2.read_text())

    def same(d: dict) -> dict:
        return {k: v for k, v in d.items() if k not in ("per_seed", "wall_s")}

    assert same(data2) == same(data)
    assert [same(r) for r in data2["per_seed"]] == [same(r) for r in data["per_seed"]]


def test_eval_uses_the_configs_thresholds_and_warns_on_training_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.yaml"
    assert main(["site", "config", "--seed", "7", "--out", str(config)]) == 0
    doc = yaml.safe_load(config.read_text())
    doc["hazards"] = {"no_helmet": {"dwell_s": 3.5, "min_confidence": 0.7, "severity": "high"}}
    doc["policy"] = {"name": "patrol"}
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "eval.json"
    argv = ["eval", "--seeds", "3", "--duration", "2", "--config", str(config)]
    assert main([*argv, "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "training seed" in err and "3" in err
    data = json.loads(out.read_text())
    assert data["seeds"] == [3] and data["policy"] == "patrol" and data["config"] == str(config)
    rule = data["thresholds"]["no_helmet"]
    assert (rule["dwell_s"], rule["min_confidence"], rule["severity"]) == (3.5, 0.7, "high")
    assert data["thresholds"]["no_vest"]["dwell_s"] == 2.0  # left out: the type's default
    assert data["per_seed"][0]["frames"] == 20


def test_vlm_on_runs_the_shipped_vlm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--vlm on`` evaluates with the shipped GGUF (llama.cpp in-process); where
    llama-cpp-python is not installed it refuses in one line naming the package."""
    out = tmp_path / "eval.json"
    argv = ["eval", "--seeds", "1000", "--duration", "3", "--vlm", "on", "--json", str(out)]
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("sitehawk-edge: error: --vlm on") and "llama-cpp-python" in err
        assert not out.exists()
        return
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data) == KEYS and data["vlm"] == "on"
    assert data["per_seed"][0]["frames"] == 30
    gate = data["gate"]  # the gate's and the alert manager's counts
    assert {"asked", "not_yet", "confirmed", "contradicted", "timeout"} <= set(gate)


def test_perception_detector_runs_the_shipped_detector(tmp_path: Path) -> None:
    """``--perception detector`` runs models/detector.onnx through ONNX Runtime (no torch)."""
    from edge.runner import SHIPPED_DETECTOR

    assert SHIPPED_DETECTOR.is_file(), "the repository ships models/detector.onnx"
    out = tmp_path / "eval.json"
    argv = ["eval", "--seeds", "1001", "--duration", "3", "--perception", "detector"]
    assert main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["perception"] == "detector" and data["per_seed"][0]["frames"] == 30


def test_vlm_on_with_missing_model_files_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "device.yaml"
    assert main(["site", "config", "--seed", "7", "--out", str(config)]) == 0
    doc = yaml.safe_load(config.read_text())
    doc["models"] = {**(doc.get("models") or {}), "vlm": str(tmp_path / "nowhere" / "vlm.gguf")}
    config.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    out = tmp_path / "eval.json"
    argv = ["eval", "--seeds", "1000-1001", "--config", str(config), "--vlm", "on"]
    assert main([*argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sitehawk-edge: error: ") and err.count("\n") == 1, err
    for word in ("--vlm on", "models.vlm", "nowhere"):
        assert word in err
    assert not out.exists()


def test_bad_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "eval.json")
    for argv, word in [
        (["--seeds", "1005-1000"], "--seeds"),
        (["--seeds", "a-b"], "--seeds"),
        (["--seeds", "1000", "--duration", "0"], "--duration"),
        (["--seeds", "1000", "--policy", "oracle"], "--policy oracle"),
        (["--seeds", "1000", "--policy", "learned"], "--policy learned"),
        (["--seeds", "1000", "--config", str(tmp_path / "none.yaml")], "none.yaml"),
        (["--seeds", "1000", "--jobs", "0"], "--jobs"),
    ]:
        assert main(["eval", *argv, "--json", out]) == 2, argv
        assert word in capsys.readouterr().err, argv


def test_parse_seeds() -> None:
    assert parse_seeds("1000-1004") == [1000, 1001, 1002, 1003, 1004]
    assert parse_seeds("1000") == [1000]
    assert parse_seeds("1000-1001, 1005,1001") == [1000, 1001, 1005]
    for bad in ("", "x", "5-3", "1-2-3", "-1"):
        with pytest.raises(EvalError):
            parse_seeds(bad)


def _score(t_end: float, events: list[tuple[str, float | None]], false_alerts: int) -> Score:
    """A hand-built score: events (id, tta or None), matched alerts for each found one."""
    outcomes = [
        EventOutcome(
            eid, "no_helmet", 0.0, t_end, "a-" + eid if tta is not None else None, tta, tta
        )
        for eid, tta in events
    ]
    alerts = [
        AlertOutcome(e.alert_id, "no_helmet", e.tta_s or 0.0, 0.0, 0.0, e.id)
        for e in outcomes
        if e.alert_id is not None
    ]
    alerts += [AlertOutcome(f"f{i}", "no_vest", 1.0, 0.0, 0.0) for i in range(false_alerts)]
    return Score(0.0, t_end, outcomes, alerts)


def test_figures_are_pooled_over_the_seeds() -> None:
    results = [
        SeedResult(1000, _score(1800.0, [("e1", 10.0), ("e2", None)], 1), 18000, 1.0),
        SeedResult(1001, _score(1800.0, [("e3", 20.0), ("e4", 30.0), ("e5", None)], 0), 18000, 1.0),
        SeedResult(1002, _score(1800.0, [], 0), 18000, 1.0),
    ]
    opts = EvalOptions(seeds=[1000, 1001, 1002], duration_s=1800.0)
    data = summary(opts, EvalPlan("greedy", None), results)
    assert set(data) == KEYS
    assert (data["alerts"], data["hazards"], data["matched"]) == (4, 5, 3)
    assert data["precision"] == 0.75 and data["recall"] == 0.6
    assert data["false_alerts_per_hour"] == pytest.approx(0.67)  # 1 in 1.5 h
    assert data["tta_mean_s"] == pytest.approx(20.0)  # matched events only
    assert data["site_time_s"] == 5400.0
    last = data["per_seed"][2]
    assert (last["precision"], last["recall"], last["tta_mean_s"]) == (None, None, None)
    assert data["thresholds"]["fire_smoke"]["severity"] == "critical"  # the defaults


def test_an_alert_in_the_grace_period_matches() -> None:
    site = Site(generate_site(7))
    event = next(h for h in site.hazards if h.type == "no_helmet" and h.end_s < 500)
    extent = event_extent(site, event, event.end_s - 1e-3)
    assert extent is not None
    pan, tilt = extent.centre
    alert = RaisedAlert("a", "no_helmet", event.end_s + 4.0, pan, tilt)
    score = score_alerts(site, [alert], 0.0, event.end_s + 10.0)
    assert score.alerts[0].event_id == event.id  # raised 4 s after it ended: within 5 s
    late = score_alerts(site, [replace(alert, t=event.end_s + 5.5)], 0.0, event.end_s + 10.0)
    assert late.alerts[0].event_id != event.id
