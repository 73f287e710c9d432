"""The expert pipeline end to end on tiny models: tasks → bases → QLoRA experts → outcomes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from firmware_config.cli_common import run_cli
from trainer.router.cli import register


def router_cli(argv: list[str]) -> int:
    """``sitehawk-train`` with only the router's subcommands."""
    parser = argparse.ArgumentParser(prog="sitehawk-train")
    register(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser, argv, user_errors=(ValueError,))


def test_tasks_command_writes_splits(tmp_path: Path) -> None:
    out = tmp_path / "tasks"
    argv = ["router", "tasks", "--out", str(out), "--train-per-group", "20"]
    assert router_cli([*argv, "--test-per-group", "5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == "sitehawk.router.tasks/1" and manifest["test_seed"] == 1
    assert len((out / "train.jsonl").read_text().splitlines()) == 12 * 20


def test_experts_command_rejects_missing_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["router", "experts", "--base", str(tmp_path), "--tasks", str(tmp_path)]
    assert router_cli([*argv, "--out", str(tmp_path / "e")]) == 2
    assert "no train.jsonl" in capsys.readouterr().err


def test_lm_learns_a_task_group() -> None:
    """The tiny small model, trained briefly, answers level-1 legal prompts right."""
    import torch

    from trainer.router.graders import grade
    from trainer.router.lm import (
        TrainConfig,
        build_model,
        build_tokenizer,
        format_prompt,
        generate,
        train_lm,
    )
    from trainer.router.tasks import generate as generate_tasks

    torch.set_num_threads(1)
    tasks = [t for t in generate_tasks(0, 60) if t.skill == "legal" and t.level == 1]
    tokenizer = build_tokenizer([format_prompt(t.prompt) + t.answer for t in tasks], 400)
    model = build_model("small", tokenizer)
    train_lm(
        model,
        tokenizer,
        [(t.prompt, t.answer) for t in tasks],
        TrainConfig(steps=40, batch_size=16),
    )
    answers = generate(model, tokenizer, [t.prompt for t in tasks[:20]], max_new_tokens=6)
    accuracy = sum(grade(a.text, t) for a, t in zip(answers, tasks, strict=False)) / 20
    assert accuracy >= 0.5, [a.text for a in answers[:5]]
    assert all(a.completion_tokens <= 6 for a in answers)


@pytest.mark.slow
def test_pipeline_end_to_end(tmp_path: Path) -> None:
    root = tmp_path
    assert (
        router_cli(
            [
                "router",
                "tasks",
                "--out",
                str(root / "tasks"),
                "--train-per-group",
                "30",
                "--test-per-group",
                "6",
            ]
        )
        == 0
    )
    assert (
        router_cli(
            [
                "router",
                "base",
                "--tasks",
                str(root / "tasks"),
                "--out",
                str(root / "bases"),
                "--small-steps",
                "20",
                "--large-steps",
                "5",
            ]
        )
        == 0
    )
    assert (
        router_cli(
            [
                "router",
                "experts",
                "--base",
                str(root / "bases/small"),
                "--generalist-base",
                str(root / "bases/large"),
                "--tasks",
                str(root / "tasks"),
                "--out",
                str(root / "experts"),
                "--steps",
                "5",
                "--generalist-steps",
                "3",
            ]
        )
        == 0
    )
    manifest = json.loads((root / "experts/experts.json").read_text())
    assert sorted(manifest["experts"]) == ["code", "generalist", "legal", "math"]
    small, large = manifest["experts"]["code"], manifest["experts"]["generalist"]
    assert large["parameters"] > 3 * small["parameters"]  # the generalist costs more per token
    for split in ("train", "test"):
        assert (
            router_cli(
                [
                    "router",
                    "outcomes",
                    "--experts",
                    str(root / "experts"),
                    "--prompts",
                    str(root / f"tasks/{split}.jsonl"),
                    "--out",
                    str(root / f"{split}.jsonl"),
                    "--max-new-tokens",
                    "8",
                ]
            )
            == 0
        )
    rows = [json.loads(x) for x in (root / "test.jsonl").read_text().splitlines()]
    assert {r["expert"] for r in rows} == set(manifest["experts"])
    assert all(0.0 <= r["score"] <= 1.0 and r["cost"] > 0 for r in rows)
    gen = [r["cost"] for r in rows if r["expert"] == "generalist"]
    code = [r["cost"] for r in rows if r["expert"] == "code"]
    assert sum(gen) > 3 * sum(code)
