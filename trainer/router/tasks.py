"""Seeded router tasks: code, math and legal prompts at three levels, plus mixed prompts.

Each :class:`Task` has a *surface* domain (what the prompt looks like) and a *skill* (which kind
of expert can answer it). They differ for the mixed prompts — a lease clause that needs
arithmetic (surface ``legal``, skill ``math``), a maths question answered with code (surface
``math``, skill ``code``) — so a router that routes on the look of a prompt loses points.

The levels are what makes routing a quality/cost trade: level 1 is within reach of a tiny
domain expert, level 3 (three operands, conditionals, clauses with distractors) needs the larger
generalist. Answers are short and in one fixed format, so tiny language models can learn them:
a number, a clause label, or a one-line Python function ``f(x)``.

Train and test are drawn with different seeds; any test prompt that also occurs in train is
dropped, so the test split is held out by construction.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "sitehawk.router.tasks/1"
DOMAINS = ("code", "math", "legal")
LEVELS = (1, 2, 3)
#: ``tasks`` writes these files into its output folder.
SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}
#: How many code tests each generated code task has.
NUM_CODE_TESTS = 5
CODE_TEST_INPUTS = (-3, 0, 1, 4, 7)


@dataclass(frozen=True)
class Task:
    """One prompt with its reference answer and how to grade an answer to it."""

    id: str
    prompt: str
    answer: str
    grader: str  #: ``number``, ``label`` or ``code``
    domain: str  #: surface domain: what the prompt looks like
    skill: str  #: the expert domain that can answer it
    level: int
    tests: list[str] = field(default_factory=list)  #: code: assert lines run after the answer

    def to_json(self) -> dict[str, Any]:
        """The task as one JSON object (a line of ``train.jsonl``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Task:
        """Parse one line of a tasks file; raises ValueError naming a missing field."""
        missing = [k for k in ("id", "prompt", "answer", "grader") if k not in obj]
        if missing:
            raise ValueError(f"task is missing {missing}")
        return cls(
            id=str(obj["id"]),
            prompt=str(obj["prompt"]),
            answer=str(obj["answer"]),
            grader=str(obj["grader"]),
            domain=str(obj.get("domain", "")),
            skill=str(obj.get("skill", obj.get("domain", ""))),
            level=int(obj.get("level", 1)),
            tests=[str(t) for t in obj.get("tests", [])],
        )


# ---------------------------------------------------------------------------------- math
_MATH_ASK = (
    "What is {q}?",
    "Compute {q}.",
    "Calculate {q}.",
    "Work out {q}.",
    "Find the value of {q}.",
    "How much is {q}?",
)


def _math(rng: random.Random, level: int) -> tuple[str, str]:
    if level == 1:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        q, value = f"{a} + {b}", a + b
    elif level == 2:
        a, b = rng.randint(10, 49), rng.randint(1, 9)
        op = rng.choice("+-")
        q, value = f"{a} {op} {b}", a + b if op == "+" else a - b
    else:
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 9)
        q, value = f"{a} * {b} + {c}", a * b + c
    return rng.choice(_MATH_ASK).format(q=q), str(value)


_LEASE_PARTY = ("tenant", "licensee", "buyer", "customer")


def _legal_arithmetic(rng: random.Random, level: int) -> tuple[str, str]:
    """Mixed: a clause (surface legal) whose question needs arithmetic (skill math)."""
    party = rng.choice(_LEASE_PARTY)
    if level == 2:
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        text = (
            f"Clause {rng.randint(1, 20)}: the {party} shall pay a fee of {a} and a late charge "
            f"of {b}. "
            "What amount is due under this clause?"
        )
        return text, str(a + b)
    a, b = rng.randint(2, 9), rng.randint(2, 5)
    text = (
        f"Clause {rng.randint(1, 20)}: the {party} shall pay {a} per month for {b} months. "
        "What total is owed under this clause?"
    )
    return text, str(a * b)


# ---------------------------------------------------------------------------------- code
_CODE_ASK = (
    "Write a Python function {fn}({v}) that returns {spec}.",
    "Define a Python function {fn}({v}) returning {spec}.",
    "Implement {fn}({v}) in Python: it returns {spec}.",
)
_FUNCTION_NAMES = ("f", "g", "h", "calc", "solve", "step")
_ARG_NAMES = ("x", "n", "v", "a")
_OPS = {"plus": "+", "minus": "-", "times": "*"}


def _code_spec(rng: random.Random, level: int) -> tuple[str, str]:
    """(English spec, Python expression in x)."""
    if level == 1:
        word = rng.choice(list(_OPS))
        k = rng.randint(1, 9)
        return f"x {word} {k}", f"x {_OPS[word]} {k}"
    if level == 2:
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        word = rng.choice(("plus", "minus"))
        return f"x times {a} {word} {b}", f"x * {a} {_OPS[word]} {b}"
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return (
        f"x plus {a} if x is even, else x minus {b}",
        f"x + {a} if x % 2 == 0 else x - {b}",
    )


def _rename(text: str, arg: str) -> str:
    return re.sub(r"\bx\b", arg, text)


def _code_answer(expr: str, name: str = "f", arg: str = "x") -> str:
    return f"def {name}({arg}):\n    return {_rename(expr, arg)}"


def _code_tests(expr: str, name: str = "f") -> list[str]:
    fn: Callable[[int], int] = eval(f"lambda x: {expr}")  # our own template, never user text
    return [f"assert {name}({x}) == {fn(x)}" for x in CODE_TEST_INPUTS]


def _code(rng: random.Random, level: int) -> tuple[str, str, list[str]]:
    spec, expr = _code_spec(rng, level)
    name, arg = rng.choice(_FUNCTION_NAMES), rng.choice(_ARG_NAMES)
    prompt = rng.choice(_CODE_ASK).format(fn=name, v=arg, spec=_rename(spec, arg))
    return prompt, _code_answer(expr, name, arg), _code_tests(expr, name)


def _math_as_code(rng: random.Random, level: int) -> tuple[str, str, list[str]]:
    """Mixed: a maths question (surface math) that must be answered with code (skill code)."""
    k = rng.randint(1, 9)
    word = rng.choice(("+", "-", "*"))
    name, arg = rng.choice(_FUNCTION_NAMES), rng.choice(_ARG_NAMES)
    prompt = rng.choice(
        (
            f"What is {arg} {word} {k} for any number {arg}? Answer with a Python function "
            f"{name}({arg}).",
            f"Compute {arg} {word} {k} as a Python function {name}({arg}).",
            f"Calculate {arg} {word} {k} with a Python function {name}({arg}).",
        )
    )
    return prompt, _code_answer(f"x {word} {k}", name, arg), _code_tests(f"x {word} {k}", name)


# --------------------------------------------------------------------------------- legal
LEGAL_LABELS = (
    "confidentiality",
    "termination",
    "indemnity",
    "payment",
    "governing_law",
    "liability",
)
_PARTIES = ("the Supplier", "the Customer", "the Licensee", "the Contractor", "each party")
_OTHER = ("the Customer", "the Supplier", "the other party", "the Licensor")
#: Per label: level-1 sentences say the label's own word; level 2 paraphrases without it.
_LEGAL_TEXT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "confidentiality": (
        (
            "{p} shall keep all confidential information of {o} confidential.",
            "{p} must treat the terms of this agreement as confidential.",
        ),
        (
            "{p} shall not disclose any non-public material received from {o}.",
            "{p} will not reveal trade secrets of {o} to any third person.",
        ),
    ),
    "termination": (
        (
            "{p} may terminate this agreement on {n} days written notice.",
            "This agreement terminates if {p} is in material breach.",
        ),
        (
            "{p} may bring this agreement to an end after {n} days notice to {o}.",
            "The contract ends at once if {p} becomes insolvent.",
        ),
    ),
    "indemnity": (
        (
            "{p} shall indemnify {o} against all third party claims.",
            "{p} agrees to indemnify and hold harmless {o}.",
        ),
        (
            "{p} shall defend {o} and make good any loss from claims by others.",
            "{p} will compensate {o} for damages arising from claims of third persons.",
        ),
    ),
    "payment": (
        (
            "{p} shall pay each invoice within {n} days.",
            "Payment of the fees is due {n} days after delivery.",
        ),
        (
            "{p} will settle amounts billed by {o} within {n} days.",
            "Sums owed to {o} fall due {n} days after the invoice date.",
        ),
    ),
    "governing_law": (
        (
            "This agreement is governed by the law of {j}.",
            "The governing law of this contract is the law of {j}.",
        ),
        (
            "This contract shall be construed in accordance with the law of {j}.",
            "Disputes are decided by the courts of {j} applying its statutes.",
        ),
    ),
    "liability": (
        (
            "The liability of {p} is limited to the fees paid.",
            "{p} has no liability for indirect or consequential loss.",
        ),
        (
            "In no event shall {p} be responsible for lost profits of {o}.",
            "The total damages {p} must pay shall not exceed the fees of one year.",
        ),
    ),
}
_JURISDICTIONS = ("England", "Delaware", "Ontario", "Bavaria", "New York", "Singapore")
#: Level 3 adds a sentence that belongs to no label (boilerplate) before the clause.
_BOILERPLATE = (
    "Headings are for convenience only.",
    "Notices under this agreement shall be in writing.",
    "Words in the singular include the plural.",
    "This section survives the expiry of the agreement.",
)
_LEGAL_ASK = (
    "Classify clause {s}: {c}",
    "What type of clause is section {s}? {c}",
    "Label the contract clause {s}: {c}",
)


def _legal(rng: random.Random, level: int) -> tuple[str, str]:
    label = rng.choice(LEGAL_LABELS)
    plain, paraphrased = _LEGAL_TEXT[label]
    bank = plain if level == 1 else paraphrased
    sentence = rng.choice(bank).format(
        p=rng.choice(_PARTIES),
        o=rng.choice(_OTHER),
        n=rng.choice((10, 14, 30, 60, 90)),
        j=rng.choice(_JURISDICTIONS),
    )
    sentence = sentence[0].upper() + sentence[1:]
    if level == 3:
        sentence = f"{rng.choice(_BOILERPLATE)} {sentence}"
    section = f"{rng.randint(1, 20)}.{rng.randint(1, 9)}"
    return rng.choice(_LEGAL_ASK).format(s=section, c=sentence), label


# ------------------------------------------------------------------------------ the mix
#: (surface domain, skill, level) groups and their generators.
GROUPS: tuple[tuple[str, str, int], ...] = tuple(
    [(d, d, level) for d in DOMAINS for level in LEVELS]
    + [("legal", "math", 2), ("legal", "math", 3), ("math", "code", 2)]
)


def _make(rng: random.Random, domain: str, skill: str, level: int) -> Task:
    tests: list[str] = []
    if (domain, skill) == ("code", "code"):
        prompt, answer, tests = _code(rng, level)
        grader = "code"
    elif (domain, skill) == ("math", "code"):
        prompt, answer, tests = _math_as_code(rng, level)
        grader = "code"
    elif (domain, skill) == ("math", "math"):
        prompt, answer = _math(rng, level)
        grader = "number"
    elif (domain, skill) == ("legal", "math"):
        prompt, answer = _legal_arithmetic(rng, level)
        grader = "number"
    elif (domain, skill) == ("legal", "legal"):
        prompt, answer = _legal(rng, level)
        grader = "label"
    else:  # pragma: no cover - GROUPS lists every pair
        raise AssertionError((domain, skill))
    return Task(
        id="",
        prompt=prompt,
        answer=answer,
        grader=grader,
        domain=domain,
        skill=skill,
        level=level,
        tests=tests,
    )


def generate(seed: int, num_per_group: int) -> list[Task]:
    """``num_per_group`` distinct prompts for every (domain, skill, level) group, from ``seed``.

    Small groups (level-1 sums have only 300 distinct prompts) may yield fewer.
    """
    if num_per_group < 1:
        raise ValueError(f"num_per_group must be >= 1, got {num_per_group}")
    rng = random.Random(seed)
    tasks: list[Task] = []
    for domain, skill, level in GROUPS:
        seen: set[str] = set()
        for _ in range(num_per_group * 20):
            if len(seen) >= num_per_group:
                break
            task = _make(rng, domain, skill, level)
            if task.prompt in seen:
                continue
            seen.add(task.prompt)
            tag = domain if domain == skill else f"{domain}-{skill}"
            tasks.append(_with_id(task, f"{seed}-{tag}-{level}-{len(seen):04d}"))
    return tasks


def _with_id(task: Task, task_id: str) -> Task:
    return Task(**{**asdict(task), "id": task_id})


def make_splits(
    seed: int = 0, num_train_per_group: int = 300, num_test_per_group: int = 60
) -> dict[str, list[Task]]:
    """Train from ``seed``, test from ``seed + 1`` minus every prompt that is also in train."""
    train = generate(seed, num_train_per_group)
    train_prompts = {t.prompt for t in train}
    test = [t for t in generate(seed + 1, num_test_per_group) if t.prompt not in train_prompts]
    return {"train": train, "test": test}


def write_tasks(tasks: Iterable[Task], path: Path) -> Path:
    """Write tasks as JSONL (one :meth:`Task.to_json` per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for task in tasks:
            fh.write(json.dumps(task.to_json(), ensure_ascii=False) + "\n")
    return path


def read_tasks(path: Path) -> list[Task]:
    """Read a tasks JSONL file; errors name the file and line."""
    return list(_iter_tasks(Path(path)))


def _iter_tasks(path: Path) -> Iterator[Task]:
    if not path.is_file():
        raise ValueError(f"{path}: no such tasks file")
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Task.from_json(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None


def write_splits(out: Path, splits: dict[str, list[Task]], seed: int) -> dict[str, Any]:
    """Write ``train.jsonl``, ``test.jsonl`` and a ``manifest.json`` with counts; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for split, tasks in splits.items():
        write_tasks(tasks, out / SPLIT_FILES[split])
        per: dict[str, int] = {}
        for t in tasks:
            key = f"{t.domain}/{t.skill}/L{t.level}"
            per[key] = per.get(key, 0) + 1
        counts[split] = per
    manifest = {"schema": SCHEMA, "seed": seed, "test_seed": seed + 1, "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
