"""Grade an answer to a :class:`~trainer.router.tasks.Task`: a score in [0, 1].

* ``number`` — the last number in the answer equals the reference (math);
* ``label`` — the answer's first word, normalised, equals the reference label (legal);
* ``code`` — the answer (fences stripped) passes every unit test in the sandbox (code).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from trainer.router.sandbox import SandboxLimits, run_tests
from trainer.router.tasks import Task

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FENCE = re.compile(r"```(?:python|py)?\n?(.*?)(?:```|$)", re.DOTALL)


def grade_number(answer: str, reference: str) -> float:
    """1.0 when the answer's final number equals the reference number, else 0.0."""
    found = _NUMBER.findall(answer.replace(",", ""))
    if not found:
        return 0.0
    return float(math.isclose(float(found[-1]), float(reference), rel_tol=1e-6, abs_tol=1e-9))


def normalise_label(text: str) -> str:
    """Lower-case, first line, spaces and dashes as underscores, punctuation dropped."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.sub(r"[\s\-]+", "_", first.strip().lower())
    return re.sub(r"[^a-z0-9_]", "", first)


def grade_label(answer: str, reference: str) -> float:
    """1.0 when the answer's first line is the reference label."""
    return float(normalise_label(answer) == normalise_label(reference))


def extract_code(answer: str) -> str:
    """The code in an answer: a fenced block's body if there is one, else the whole answer."""
    match = _FENCE.search(answer)
    return match.group(1) if match else answer


def grade_code(answer: str, tests: list[str], limits: SandboxLimits | None = None) -> float:
    """1.0 when the code in ``answer`` passes all ``tests`` in the sandbox."""
    if not tests:
        raise ValueError("a code task needs at least one test")
    return float(run_tests(extract_code(answer), tests, limits).passed)


GRADERS: dict[str, Callable[[str, Task], float]] = {
    "number": lambda answer, task: grade_number(answer, task.answer),
    "label": lambda answer, task: grade_label(answer, task.answer),
    "code": lambda answer, task: grade_code(answer, task.tests),
}


def grade(answer: str, task: Task) -> float:
    """The score of ``answer`` for ``task``; ValueError for an unknown grader."""
    try:
        grader = GRADERS[task.grader]
    except KeyError:
        raise ValueError(
            f"task {task.id}: unknown grader {task.grader!r}; choose from {sorted(GRADERS)}"
        ) from None
    return grader(answer, task)
