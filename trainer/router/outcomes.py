"""Outcome tables: what each expert scored, and cost, on each prompt.

The generic format routers learn from and are scored on (as RouterBench records them): JSONL
lines ``{"prompt": str, "expert": str, "score": float in [0, 1], "cost": float >= 0}``, one per
(prompt, expert). Extra fields (``domain``, ``level``, ``answer``) are kept but not required.
:class:`OutcomeTable` is the dense view: one row per prompt, one column per expert.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_FIELDS = ("prompt", "expert", "score", "cost")


@dataclass(frozen=True)
class OutcomeTable:
    """Scores and costs of every expert on every prompt (``scores[i, j]``: prompt i, expert j)."""

    prompts: list[str]
    experts: list[str]
    scores: np.ndarray
    costs: np.ndarray
    domains: list[str]  #: surface domain per prompt ("" where the table does not say)

    def __post_init__(self) -> None:
        shape = (len(self.prompts), len(self.experts))
        assert self.scores.shape == shape and self.costs.shape == shape, (self.scores.shape, shape)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray) -> OutcomeTable:
        """The table restricted to the prompt indices ``rows``."""
        return OutcomeTable(
            prompts=[self.prompts[i] for i in rows],
            experts=list(self.experts),
            scores=self.scores[rows],
            costs=self.costs[rows],
            domains=[self.domains[i] for i in rows],
        )


def _check_record(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    if not isinstance(obj["prompt"], str) or not isinstance(obj["expert"], str):
        raise ValueError(f"{where}: 'prompt' and 'expert' must be strings")
    try:
        score, cost = float(obj["score"]), float(obj["cost"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'score' and 'cost' must be numbers") from None
    if not (0.0 <= score <= 1.0) or math.isnan(score):
        raise ValueError(f"{where}: 'score' must be in [0, 1], got {score}")
    if not (cost >= 0.0) or math.isinf(cost):
        raise ValueError(f"{where}: 'cost' must be a finite number >= 0, got {cost}")
    return {**obj, "score": score, "cost": cost}


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every line of an outcome JSONL file, validated; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such outcome table")
    records = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            records.append(_check_record(obj, f"{path}:{number}"))
    if not records:
        raise ValueError(f"{path}: empty outcome table")
    return records


def table_from_records(records: Iterable[dict[str, Any]], source: str = "table") -> OutcomeTable:
    """Pivot records into a dense table; every prompt must have every expert exactly once."""
    cells: dict[tuple[str, str], tuple[float, float]] = {}
    prompts: dict[str, str] = {}  # prompt -> domain, in first-seen order
    experts: set[str] = set()
    for rec in records:
        key = (rec["prompt"], rec["expert"])
        if key in cells:
            raise ValueError(f"{source}: expert {key[1]!r} appears twice for prompt {key[0]!r}")
        cells[key] = (rec["score"], rec["cost"])
        prompts.setdefault(rec["prompt"], str(rec.get("domain", "")))
        experts.add(rec["expert"])
    expert_list = sorted(experts)
    if len(expert_list) < 2:
        raise ValueError(f"{source}: a router needs at least 2 experts, found {expert_list}")
    prompt_list = list(prompts)
    scores = np.zeros((len(prompt_list), len(expert_list)))
    costs = np.zeros_like(scores)
    for i, prompt in enumerate(prompt_list):
        for j, expert in enumerate(expert_list):
            if (prompt, expert) not in cells:
                raise ValueError(f"{source}: no outcome of expert {expert!r} for prompt {prompt!r}")
            scores[i, j], costs[i, j] = cells[(prompt, expert)]
    return OutcomeTable(prompt_list, expert_list, scores, costs, list(prompts.values()))


def read_table(path: Path) -> OutcomeTable:
    """Read and pivot an outcome JSONL file."""
    return table_from_records(read_records(path), source=str(path))


def write_records(records: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write outcome records as JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(_check_record(rec, str(path)), ensure_ascii=False) + "\n")
    return path


def collect(
    experts_dir: Path,
    prompts_file: Path,
    out: Path,
    max_new_tokens: int = 32,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Run every expert on every task of ``prompts_file``, grade, write the outcome table.

    ``prompts_file`` is a tasks JSONL (``router tasks`` writes them): each line carries the
    reference answer or unit tests its grader needs. Records keep the task's ``domain``,
    ``skill``, ``level`` and the ``answer`` given, for analysis.
    """
    from concurrent.futures import ThreadPoolExecutor

    from trainer.router.experts.pool import ExpertPool
    from trainer.router.graders import grade
    from trainer.router.tasks import read_tasks

    tasks = read_tasks(prompts_file)
    pool = ExpertPool(experts_dir).load()
    records: list[dict[str, Any]] = []
    for name in pool.names:
        answers = pool.answer(name, [t.prompt for t in tasks], max_new_tokens)
        # code grading is one sandboxed subprocess per answer: overlap two at a time
        with ThreadPoolExecutor(max_workers=2) as workers:
            scores = list(
                workers.map(
                    lambda pair: grade(pair[0].text, pair[1]), zip(answers, tasks, strict=True)
                )
            )
        for task, ans, score in zip(tasks, answers, scores, strict=True):
            records.append(
                {
                    "prompt": task.prompt,
                    "expert": name,
                    "score": float(score),
                    "cost": round(ans.cost, 6),
                    "domain": task.domain,
                    "skill": task.skill,
                    "level": task.level,
                    "answer": ans.text,
                }
            )
        if progress is not None:
            progress(name, sum(scores) / max(1, len(scores)))
    write_records(records, out)
    return records
