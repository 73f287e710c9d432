"""VQA data from the virtual site: answers agree with the simulator's ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.alerts.rules import distance_to_boundary
from edge.geometry import points_in_polygon
from edge.sim.generate import generate_site
from edge.sim.world import Site
from edge.vlm.questions import HAZARD_QUESTIONS, ZONE_ASK_MAX_BOUNDARY_M
from trainer import cli
from trainer.vlm.data import (
    COLOR_NAMES,
    build_dataset,
    load_image_rgb,
    load_samples,
    majority_baseline,
)


@pytest.fixture(scope="module")
def hazard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa_hazard")
    build_dataset("hazard", 24, list(range(6)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def sites():
    return {seed: Site(generate_site(seed)) for seed in range(6)}


def test_hazard_answers_match_ground_truth(hazard_dir, sites):
    samples = load_samples(hazard_dir)
    assert len(samples) == 24
    for s in samples:
        site = sites[s.seed]
        assert s.question == HAZARD_QUESTIONS[s.type].question
        if s.type in ("no_helmet", "no_vest"):
            kit = "helmet" if s.type == "no_helmet" else "vest"
            wears = bool(getattr(site.workers_at(s.t), kit)[s.target])
            assert s.answer == ("yes" if wears else "no"), s
        elif s.type == "zone_intrusion":  # about the worker in the centre of the view
            xy = site.workers_at(s.t).xy[s.target][None]
            inside = [mi for mi, z in enumerate(site.zones) if points_in_polygon(xy, z)[0]]
            # never inside an idle machine's zone (it looks like an intrusion but is none)
            assert all(site.zone_active(mi, s.t) for mi in inside), s
            assert s.answer == ("yes" if inside else "no"), s
            # an intruder stands near enough to the line for the view to show it
            for mi in inside:
                point = (float(xy[0, 0]), float(xy[0, 1]))
                assert distance_to_boundary(point, site.zones[mi]) <= ZONE_ASK_MAX_BOUNDARY_M, s
        else:  # fire_smoke: a "yes" looks at a burning fire
            if s.answer == "yes":
                assert s.target in [f.index for f in site.fires_at(s.t)]
        image = load_image_rgb(hazard_dir, s)
        assert image.shape == (96, 96, 3) and image.std() > 1.0  # a real picture, not blank


def test_yes_no_balanced_per_hazard_type(hazard_dir):
    samples = load_samples(hazard_dir)
    summary = json.loads((hazard_dir / "summary.json").read_text())
    for kind in HAZARD_QUESTIONS:
        answers = [s.answer for s in samples if s.type == kind]
        assert sorted(set(answers)) == ["no", "yes"]
        assert answers.count("yes") == answers.count("no")
    assert majority_baseline(samples) == pytest.approx(0.5)
    assert summary["majority_baseline"] == pytest.approx(0.5)
    assert summary["held_out"] is False


def test_gate_views_are_smeared_or_cut_and_keep_the_truth(hazard_dir, tmp_path, sites):
    """``gate_views``: helmet/vest/fire samples drawn as a moving camera's gate sees them; the
    answer is still the simulator's truth; clear samples are those of a plain dataset."""
    out = tmp_path / "gv"
    build_dataset("hazard", 24, list(range(6)), out, progress=False, gate_views=1.0)
    plain = {s.id: s for s in load_samples(hazard_dir)}
    samples = load_samples(out)
    views = {s.view for s in samples if s.type != "zone_intrusion"}
    assert views <= {"blur", "cut", "blur+cut"} and len(views) >= 2
    assert {s.view for s in samples if s.type == "zone_intrusion"} == {"clear"}
    for s in samples:
        if s.type in ("no_helmet", "no_vest"):
            kit = "helmet" if s.type == "no_helmet" else "vest"
            wears = bool(getattr(sites[s.seed].workers_at(s.t), kit)[s.target])
            assert s.answer == ("yes" if wears else "no"), s
        if s.view == "clear":  # the same sample, pixel for pixel, as without gate views
            same = plain[s.id]
            assert (s.answer, s.t, s.pan_deg) == (same.answer, same.t, same.pan_deg)
            assert np.array_equal(load_image_rgb(out, s), load_image_rgb(hazard_dir, same))
    blurred = [s for s in samples if s.view == "blur"]
    sharpness = [
        np.abs(np.diff(load_image_rgb(out, s).astype(float), axis=1)).mean() for s in blurred
    ]
    clear = [
        np.abs(np.diff(load_image_rgb(hazard_dir, s).astype(float), axis=1)).mean()
        for s in plain.values()
        if s.type != "zone_intrusion"
    ]
    assert np.median(sharpness) < np.median(clear)  # horizontal detail smeared by the pan
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gate_views"] == 1.0 and sum(summary["views"].values()) == 24
    with pytest.raises(ValueError, match="gate-views"):
        build_dataset("hazard", 4, [0], tmp_path / "bad", progress=False, gate_views=1.5)


def test_general_answers_match_the_site(tmp_path, sites):
    build_dataset("general", 18, [0, 1, 2], tmp_path, progress=False)
    samples = load_samples(tmp_path)
    checked = 0
    for s in samples:
        site = sites[s.seed]
        if s.type == "helmet_color":
            wears = bool(site.workers_at(s.t).helmet[s.target])
            assert (s.answer == "none") == (not wears)
            if wears:
                assert s.answer in COLOR_NAMES
            checked += 1
        elif s.type == "machine_kind":
            assert s.answer == site.spec.machines[s.target].kind
            checked += 1
        elif s.type == "count_workers":
            assert 0 <= int(s.answer) <= 5
    assert checked >= 4


def test_dataset_cli_held_out_and_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("trainer.vlm.cli",))
    out = tmp_path / "ho"
    argv = ["dataset", "vqa", "--split", "hazard", "--num", "8", "--seeds", "1000-1001"]
    assert cli.main([*argv, "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held_out"] is True and summary["n"] == 8
    assert "majority" in capsys.readouterr().out
    assert cli.main([*argv[:-4], "--num", "0", "--out", str(out), "--no-progress"]) == 2
    assert "--num must be positive" in capsys.readouterr().err
    assert np.all([s.seed >= 1000 for s in load_samples(out)])


def test_general_weights_draw_a_type_more_often_and_keep_its_answers_balanced(
    tmp_path, monkeypatch, capsys
):
    from trainer.vlm.data import GENERAL_TYPES, _plan

    assert _plan("general", 70, None) == _plan("general", 70, {"worker_in_zone": 1})
    plan = _plan("general", 90, {"worker_in_zone": 3})  # 9 draws per cycle, 3 of them zone
    zone = [target for kind, target in plan if kind == "worker_in_zone"]
    assert len(zone) == 30 and zone.count("yes") == zone.count("no") == 15
    assert all(sum(k == t for k, _ in plan) == 10 for t in GENERAL_TYPES if t != "worker_in_zone")

    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("trainer.vlm.cli",))
    argv = ["dataset", "vqa", "--split", "hazard", "--num", "8", "--out", str(tmp_path / "w")]
    assert cli.main([*argv, "--weight", "worker_in_zone=3", "--no-progress"]) == 2
    assert "general split's question types" in capsys.readouterr().err
    argv[3] = "general"
    assert cli.main([*argv, "--weight", "worker_in_zone=x", "--no-progress"]) == 2
    assert "TYPE=N" in capsys.readouterr().err
    assert not (tmp_path / "w" / "summary.json").exists()
