"""Outcome tables, the LinUCB router, its kNN baseline, the eval metrics and the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from firmware_config.cli_common import run_cli
from trainer.router.bandit import LinUCB, LinUCBConfig, Router
from trainer.router.cli import register
from trainer.router.evaluate import evaluate, oracle_choice, route_llm_metrics
from trainer.router.outcomes import OutcomeTable, read_table, table_from_records, write_records
from trainer.router.tasks import make_splits

EXPERTS = ("code", "math", "legal", "generalist")


def train_main(argv: list[str]) -> int:
    """``sitehawk-train`` with only the router's subcommands (independent of the others')."""
    parser = argparse.ArgumentParser(prog="sitehawk-train")
    register(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser, argv, user_errors=(ValueError,))


#: Chance that a domain expert answers a task of its skill right, per level.
P_RIGHT = {1: 1.0, 2: 0.9, 3: 0.15}


def synthetic_records(tasks: list, seed: int) -> list[dict]:
    """Domain experts good on their skill (worse at level 3), a generalist 8× the cost."""
    rng = np.random.default_rng(seed)
    out = []
    for t in tasks:
        for e in EXPERTS:
            if e == "generalist":
                p, cost = 0.92, 8.0
            else:
                p, cost = (P_RIGHT[t.level] if e == t.skill else 0.0), 1.0
            out.append(
                {
                    "prompt": t.prompt,
                    "expert": e,
                    "score": float(rng.random() < p),
                    "cost": cost,
                    "domain": t.domain,
                }
            )
    return out


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    splits = make_splits(seed=3, num_train_per_group=100, num_test_per_group=40)
    root = tmp_path_factory.mktemp("outcomes")
    train = write_records(synthetic_records(splits["train"], 1), root / "train.jsonl")
    test = write_records(synthetic_records(splits["test"], 2), root / "test.jsonl")
    return train, test


def test_table_validation_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "expert": "a", "score": 0.5, "cost": 1}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field"):
        read_table(bad)
    bad.write_text('{"prompt": "p", "expert": "a", "score": 1.5, "cost": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: 'score' must be in \[0, 1\]"):
        read_table(bad)
    records = [
        {"prompt": "p", "expert": "a", "score": 1.0, "cost": 1.0},
        {"prompt": "q", "expert": "a", "score": 1.0, "cost": 1.0},
        {"prompt": "p", "expert": "b", "score": 0.0, "cost": 1.0},
    ]
    with pytest.raises(ValueError, match="no outcome of expert 'b' for prompt 'q'"):
        table_from_records(records)


def test_linucb_learns_a_linear_reward() -> None:
    rng = np.random.default_rng(0)
    theta = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bandit = LinUCB(num_arms=2, dim=3)
    regret = []
    for _ in range(400):
        x = np.append(rng.normal(size=2), 1.0)
        arm = bandit.choose(x, lam=0.0, alpha=0.5)
        rewards = theta @ x
        regret.append(rewards.max() - rewards[arm])
        bandit.update(arm, x, rewards[arm], 0.0)
    assert np.mean(regret[-100:]) < 0.1 * np.mean(regret[:20])
    assert bandit.counts.min() > 20  # both arms explored


def test_route_llm_metrics_on_known_tables() -> None:
    # strong = expert 1; half the prompts need it
    scores = np.array([[0.0, 1.0]] * 5 + [[1.0, 1.0]] * 5)
    table = OutcomeTable(
        [f"p{i}" for i in range(10)], ["weak", "strong"], scores, np.ones_like(scores), [""] * 10
    )
    perfect = route_llm_metrics(table, np.array([1.0] * 5 + [0.0] * 5))
    assert perfect["cpt50"] == pytest.approx(0.3)  # 3 of the 5 hard prompts reach PGR 0.5
    assert perfect["apgr"] == pytest.approx(0.75)  # PGR rises over the first half, then 1
    worst = route_llm_metrics(table, np.array([0.0] * 5 + [1.0] * 5))
    assert worst["apgr"] == pytest.approx(0.25)
    assert worst["cpt50"] == pytest.approx(0.8)
    assert list(oracle_choice(table)) == [1] * 5 + [0] * 5  # ties go to the cheaper (first)


def test_bandit_router_close_to_full_information(tables: tuple[Path, Path]) -> None:
    train, test = (read_table(p) for p in tables)
    router = Router.fit(train, feedback="bandit", config=LinUCBConfig(epochs=3))
    result = evaluate(router, test)
    assert set(result) == {"router", "random", "best_single", "supervised", "oracle", "curve"}
    assert set(result["router"]) == {"quality", "cost", "gap_recovered"}
    assert result["router"]["gap_recovered"] > 0.75
    assert result["router"]["quality"] >= result["supervised"]["quality"] - 0.05
    # the λ sweep trades quality for cost, monotonically in cost (up to ties)
    costs = [p["cost"] for p in result["curve"]]
    assert costs[0] > 2 * costs[-1]
    # cheap at a moderate λ: ≥ 95 % of the generalist's quality at ≤ 50 % of its cost
    best = result["best_single"]
    assert any(
        p["quality"] >= 0.95 * best["quality"] and p["cost"] <= 0.5 * best["cost"]
        for p in result["curve"]
    )
    # bandit feedback saw one expert per round; full information saw all
    assert router.bandit.counts.sum() == 3 * len(train)


def test_online_update_changes_the_choice(tables: tuple[Path, Path]) -> None:
    train = read_table(tables[0])
    router = Router.fit(train, feedback="full", config=LinUCBConfig(epochs=1))
    prompt = "Classify clause 3.1: The Supplier shall pay each invoice within 30 days."
    first = router.experts[int(router.route([prompt])[0])]
    for _ in range(30):
        router.update(prompt, first, score=0.0, cost=1.0)
        if router.experts[int(router.route([prompt])[0])] != first:
            break
    assert router.experts[int(router.route([prompt])[0])] != first


def test_two_expert_table_gets_apgr(tables: tuple[Path, Path], tmp_path: Path) -> None:
    for split in ("train", "test"):
        rows = [
            json.loads(x) for x in tables[0 if split == "train" else 1].read_text().splitlines()
        ]
        keep = [r for r in rows if r["expert"] in ("math", "generalist")]
        write_records(keep, tmp_path / f"{split}.jsonl")
    router = Router.fit(read_table(tmp_path / "train.jsonl"))
    result = evaluate(router, read_table(tmp_path / "test.jsonl"))
    for key in ("router", "supervised"):
        assert set(result[key]) == {"quality", "cost", "gap_recovered", "apgr", "cpt50"}
        assert 0.0 <= result[key]["cpt50"] <= 1.0
    assert result["router"]["apgr"] > 0.5  # better than random ranking


def test_cli_fit_and_eval(
    tables: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = tables
    router_dir = tmp_path / "router"
    assert train_main(["router", "fit", "--outcomes", str(train), "--out", str(router_dir)]) == 0
    assert (router_dir / "router.json").is_file()
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    code = train_main(
        [
            "router",
            "eval",
            "--router",
            str(router_dir),
            "--outcomes",
            str(test),
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ]
    )
    assert code == 0
    result = json.loads(out_json.read_text())
    assert set(result) == {"router", "random", "best_single", "supervised", "oracle", "curve"}
    assert out_png.stat().st_size > 10_000
    assert "gap recovered" in capsys.readouterr().out
    # bad input: one clear line, exit 2
    assert (
        train_main(
            [
                "router",
                "eval",
                "--router",
                str(tmp_path),
                "--outcomes",
                str(test),
                "--json",
                str(out_json),
            ]
        )
        == 2
    )
    assert "not a router folder" in capsys.readouterr().err
