"""`sitehawk-edge tune-rules`: the F1-best thresholds on a constructed recording, the refusal of
held-out seeds, a config that `eval --config` reads, and `eval --vlm-off-json`.

The constructed case needs no agent run: a :class:`~edge.tune_rules.Recording` of hand-made
hazard observations on a real site (seed 7), one on a real ``no_helmet`` event's worker and two
false ones elsewhere, replayed over a small grid.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.alerts.rules import DEFAULT_HAZARD_RULES, HazardObservation
from edge.cli import main
from edge.evaluate import EvalPlan
from edge.geometry import PTZPose
from edge.sim.generate import generate_site
from edge.sim.scoring import event_extent
from edge.sim.world import Site
from edge.tune_rules import (
    Counts,
    RecordedFrame,
    Recording,
    TuneError,
    TuneOptions,
    check_tune_options,
    choose,
    replay,
    tune,
    tuned_config,
)


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eval's runs use temporary outboxes; keep the device's default one out of reach anyway."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def _observation(key: str, pan: float, tilt: float, confidence: float) -> HazardObservation:
    return HazardObservation(
        type="no_helmet",
        key=key,
        pan_deg=pan,
        tilt_deg=tilt,
        bbox=(0.45, 0.4, 0.55, 0.6),
        ground_xy=None,
        confidence=confidence,
        size_deg=1.0,
        track_id=key,
    )


def _recording() -> Recording:
    """30 s at 10 fps from a no_helmet event's onset on site 7:

    * the event's worker, seen from 1 s to 20 s at confidence 0.75 (a true hazard),
    * a false one 30° away for 1.5 s at confidence 0.55 (raised by min_confidence <= 0.55
      with dwell <= 1.4 s),
    * a false one 40° away, a 0.8 s blip at confidence 0.85 (raised with dwell <= 0.8 s).

    So F1 is 1 exactly for min_confidence in (0.55, 0.75] and dwell_s in (0.8, 19]; of those
    the tie-breaks pick the higher confidence (0.7) and the shorter dwell (1 s).
    """
    site = Site(generate_site(7))
    event = next(h for h in site.hazards if h.type == "no_helmet" and h.end_s - h.start_s > 25)
    t0 = event.start_s
    wall0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    frames = []
    pan = tilt = 0.0
    for i in range(300):
        dt = i / 10
        t = t0 + dt
        obs = []
        if 1.0 <= dt < 20.0:
            extent = event_extent(site, event, t)
            assert extent is not None
            obs.append(_observation("true", *extent.centre, 0.75))
            pan, tilt = extent.centre
        if 3.0 <= dt < 4.5:
            obs.append(_observation("f1", pan + 30.0, tilt, 0.55))
        if 6.0 <= dt < 6.85:
            obs.append(_observation("f2", pan + 40.0, tilt, 0.85))
        frames.append(
            RecordedFrame(t, wall0 + timedelta(seconds=t), PTZPose(0.0, 0.0, 4.0), tuple(obs))
        )
    return Recording(7, site, t0, t0 + 30.0, frames, [], dict(DEFAULT_HAZARD_RULES))


def test_the_tuner_picks_the_f1_best_thresholds() -> None:
    recording = _recording()
    opts = TuneOptions(
        seeds=[7], grid_min_confidence=(0.5, 0.6, 0.7, 0.8), grid_dwell_s=(0.0, 0.5, 1.0, 2.0)
    )
    results = tune([recording], opts)
    helmet = results["no_helmet"]
    events = helmet.tuned.hazards
    assert events >= 1
    # the grid as constructed: every point raises the true hazard unless 0.8 > 0.75
    assert helmet.grid[(0.5, 0.0)] == Counts(3, 1, events)  # both false ones too
    assert helmet.grid[(0.5, 1.0)] == Counts(2, 1, events)  # the 1.5 s one
    assert helmet.grid[(0.6, 0.5)] == Counts(2, 1, events)  # the 0.8 s blip
    assert helmet.grid[(0.6, 1.0)] == Counts(1, 1, events)
    assert helmet.grid[(0.8, 0.0)] == Counts(1, 0, events)  # only the blip
    assert helmet.best == (0.7, 1.0)
    assert (helmet.rule.min_confidence, helmet.rule.dwell_s) == (0.7, 1.0)
    assert helmet.rule.cooldown_s == DEFAULT_HAZARD_RULES["no_helmet"].cooldown_s  # kept
    # no observation of the other types: nothing found, their rules are kept
    for hazard in ("no_vest", "zone_intrusion", "fire_smoke"):
        assert results[hazard].best is None
        assert results[hazard].rule == DEFAULT_HAZARD_RULES[hazard]


def test_replay_raises_once_per_event_after_the_dwell() -> None:
    recording = _recording()
    rule = DEFAULT_HAZARD_RULES["no_helmet"]  # 0.6, 2 s
    alerts = replay(recording, "no_helmet", rule)
    assert len(alerts) == 1
    assert alerts[0].t == pytest.approx(recording.t_start + 1.0 + 2.0)  # seen at 1 s, dwell 2 s


def test_choose_keeps_a_rule_that_finds_nothing() -> None:
    assert choose({(0.5, 1.0): Counts(3, 0, 2), (0.9, 0.0): Counts(0, 0, 2)}) is None
    assert choose({(0.5, 1.0): Counts(0, 0, 0)}) is None
    assert choose({(0.5, 1.0): Counts(2, 1, 2), (0.6, 1.0): Counts(1, 1, 2)}) == (0.6, 1.0)
    # equal F1: the higher recall wins
    assert choose({(0.5, 1.0): Counts(4, 2, 2), (0.6, 1.0): Counts(1, 1, 2)}) == (0.5, 1.0)


def test_held_out_seeds_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TuneError, match="held-out"):
        check_tune_options(TuneOptions(seeds=[5, 1000]))
    out = tmp_path / "tuned.yaml"
    argv = ["tune-rules", "--seeds", "998-1001", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and "1000, 1001" in err and "held-out" in err
    assert not out.exists()


def test_the_tuned_config_is_what_eval_runs_with(tmp_path: Path) -> None:
    results = tune([_recording()], TuneOptions(seeds=[7], grid_dwell_s=(0.5, 1.0, 2.0)))
    opts = TuneOptions(seeds=[7])
    config = tuned_config(EvalPlan("patrol", None), opts, results)
    path = tmp_path / "tuned" / "tuned.yaml"
    path.parent.mkdir()
    path.write_text(config.to_yaml(relative_to=path.parent))
    out = tmp_path / "eval.json"
    argv = ["eval", "--seeds", "1000", "--duration", "1", "--config", str(path)]
    assert main([*argv, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["policy"] == "patrol"
    helmet = data["thresholds"]["no_helmet"]
    assert (helmet["min_confidence"], helmet["dwell_s"]) == (0.7, 1.0)
    assert data["thresholds"]["no_vest"]["min_confidence"] == 0.6  # kept


def test_tune_rules_command_writes_a_config_and_json(tmp_path: Path) -> None:
    """End to end on a 2 s run (no events: every rule is kept); the replay check runs too."""
    out, js = tmp_path / "t" / "tuned.yaml", tmp_path / "t" / "tune.json"
    argv = ["tune-rules", "--seeds", "3", "--duration", "2", "--out", str(out), "--json", str(js)]
    assert main(argv) == 0
    doc = yaml.safe_load(out.read_text())
    assert doc["schema_version"] == "sitehawk.device/1" and doc["policy"]["name"] == "greedy"
    assert out.read_text().startswith("# sitehawk-edge tune-rules:")
    data = json.loads(js.read_text())
    assert data["seeds"] == [3] and data["replay_check"] == "exact"
    assert (
        data["grid"]["min_confidence"][0] == 0.3 and len(data["per_type"]["no_vest"]["grid"]) == 42
    )
    assert data["thresholds"]["no_helmet"]["min_confidence"] == 0.6
    # two seeds in worker processes (recordings travel back): what one process gets
    for jobs in ("1", "2"):
        out_j, json_j = tmp_path / f"j{jobs}.yaml", tmp_path / f"j{jobs}.json"
        argv = ["tune-rules", "--seeds", "3-4", "--duration", "2", "--jobs", jobs,
                "--out", str(out_j), "--json", str(json_j)]  # fmt: skip
        assert main(argv) == 0
    j1, j2 = (json.loads((tmp_path / f"j{j}.json").read_text()) for j in (1, 2))
    assert j1["seeds"] == j2["seeds"] == [3, 4] and j2["replay_check"] == "exact"
    assert j1["per_type"] == j2["per_type"]
    out2 = tmp_path / "eval.json"
    assert main(["eval", "--seeds", "1000", "--duration", "1", "--config", str(out),
                 "--json", str(out2)]) == 0  # fmt: skip


def test_eval_vlm_off_json_needs_vlm_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--seeds", "1000", "--duration", "1", "--json", str(tmp_path / "a.json")]
    assert main([*argv, "--vlm-off-json", str(tmp_path / "b.json")]) == 2
    assert "--vlm-off-json" in capsys.readouterr().err


@pytest.mark.parametrize("look", [True, False])
def test_eval_writes_both_vlm_figures(
    tmp_path: Path, look: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``vlm.look`` the camera may go elsewhere with the VLM on: each seed runs twice; without
    it, once, and the alert manager is replayed without the gate."""
    pytest.importorskip("llama_cpp")
    import edge.evaluate
    from edge.sim.device_config import device_config_for_site
    from edge.sim.generate import generate_site

    runs: list[bool] = []
    run_seed = edge.evaluate.run_seed

    def counted(seed: int, plan: Any, opts: Any, *args: Any) -> Any:
        runs.append(opts.vlm)
        return run_seed(seed, plan, opts, *args)

    monkeypatch.setattr(edge.evaluate, "run_seed", counted)
    config = device_config_for_site(generate_site(5, duration_s=600.0))
    config = config.model_copy(update={"vlm": config.vlm.model_copy(update={"look": look})})
    path = tmp_path / "device.yaml"
    path.write_text(config.to_yaml())
    on, off = tmp_path / "on.json", tmp_path / "off.json"
    argv = ["eval", "--seeds", "1000", "--duration", "3", "--vlm", "on", "--json", str(on)]
    assert main([*argv, "--config", str(path), "--vlm-off-json", str(off)]) == 0
    assert runs == ([True, False] if look else [True])
    a, b = json.loads(on.read_text()), json.loads(off.read_text())
    assert set(a) == set(b) and (a["vlm"], b["vlm"]) == ("on", "off")
    assert a["per_seed"][0]["frames"] == b["per_seed"][0]["frames"] == 30
    assert a["thresholds"] == b["thresholds"]
