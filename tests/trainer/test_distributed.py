"""FSDP2 under torchrun on CPU (gloo, fp32): the tiny VLM trained by 2 ranks matches 1 process.

Each torchrun job is a real subprocess on a free loopback port. Same global batch everywhere;
per-step losses must agree within 1e-4 relative; resuming (2 → 2 and 2 → 1 ranks) reproduces
the next steps' losses; a rank killed mid-step ends the job with an error naming it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
STEPS, GLOBAL_BATCH, RTOL = 5, 8, 1e-4
COMMON = [
    "--preset", "test", "--steps", str(STEPS), "--global-batch", str(GLOBAL_BATCH),
    "--warmup-steps", "2", "--no-progress",
]  # fmt: skip

#: torchrun target that injects a fault: FAULT=kill|stop:RANK:STEP kills (or freezes) that rank
#: right after its forward pass of that step, i.e. while the others are in the backward pass.
DRIVER = """
import os, signal, sys
import trainer.distributed.step as step_mod
from trainer.distributed.vlm import main

mode, rank, at = os.environ["FAULT"].split(":")
current = {"step": -1}
forward = step_mod.summed_token_loss

def faulty(model, batch):
    loss = forward(model, batch)
    if current["step"] == int(at) and os.environ["RANK"] == rank:
        os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
    return loss

step_mod.summed_token_loss = faulty
main(sys.argv[1:], before_step=lambda s: current.__setitem__("step", s))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def torchrun(
    nproc: int, target: list[str], args: list[str], timeout: float = 240, **env: str
) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node=N`` on a free 127.0.0.1 port; returns the finished process."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "--max_restarts=0",
        # poll the ranks every 2 s (default 0.1 s): when one dies, the survivors get to report
        # the failed collective before torchrun tears them down, even on a loaded machine
        "--monitor-interval=2",
        *target, *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def single(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The same script as one plain process (no torchrun, no process group)."""
    cmd = [sys.executable, "-m", "trainer.distributed.vlm", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)


def losses(run_dir: Path) -> dict[int, float]:
    record = json.loads((run_dir / "history.json").read_text())
    return {int(h["step"]): float(h["loss"]) for h in record["history"]}


def assert_close(got: dict[int, float], want: dict[int, float]) -> None:
    assert got and set(got) <= set(want), (got, want)
    for step, loss in got.items():
        assert abs(loss - want[step]) <= RTOL * abs(want[step]), (step, loss, want[step])


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.vlm.data import build_dataset

    root = tmp_path_factory.mktemp("vqa") / "general"
    build_dataset("general", 32, list(range(4)), root, progress=False)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data: Path) -> dict[str, Path]:
    """One process and 2 ranks, 5 steps each, the 2-rank run checkpointing after step 3."""
    root = tmp_path_factory.mktemp("runs")
    one, two = root / "one", root / "two"
    _ok(single(["--data", str(data), "--out", str(one), *COMMON, "--no-save-model"]))
    two_args = ["--data", str(data), "--out", str(two), *COMMON, "--checkpoint-every", "3"]
    _ok(torchrun(2, ["-m", "trainer.distributed.vlm"], two_args))
    return {"one": one, "two": two, "data": data}


def test_two_ranks_match_one_process(runs: dict[str, Path]) -> None:
    one, two = losses(runs["one"]), losses(runs["two"])
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    assert_close(two, one)
    assert one[STEPS] < one[1]  # it trains
    meta = json.loads(
        (runs["two"] / "checkpoints/step-000003/sitehawk_checkpoint.json").read_text()
    )
    assert meta["step"] == 3 and meta["world_size"] == 2
    # the consolidated model gathered on rank 0 loads as a normal VLM checkpoint
    from trainer.vlm.model import load_vlm

    model, layout = load_vlm(runs["two"] / "model")
    assert sum(p.numel() for p in model.parameters()) > 0 and layout.image_size == 96


def test_consolidated_safetensors_matches_the_gathered_model(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from trainer.distributed.checkpoint import consolidate

    out = consolidate(runs["two"] / "checkpoints/step-000005", tmp_path / "model.safetensors")
    sharded, gathered = load_file(str(out)), load_file(str(runs["two"] / "model/model.safetensors"))
    assert set(sharded) == set(gathered)
    for key, value in gathered.items():
        assert torch.equal(sharded[key], value), key


@pytest.mark.slow
def test_resume_reproduces_next_losses_on_two_and_one_ranks(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = runs["two"] / "checkpoints/step-000003"
    want = losses(runs["two"])
    base = ["--data", str(runs["data"]), *COMMON, "--resume", str(ckpt), "--no-save-model"]
    _ok(torchrun(2, ["-m", "trainer.distributed.vlm"], ["--out", str(tmp_path / "r2"), *base]))
    resumed_two = losses(tmp_path / "r2")
    assert sorted(resumed_two) == [4, 5]
    assert_close(resumed_two, want)
    _ok(single(["--out", str(tmp_path / "r1"), *base]))  # 2 ranks' shards into 1 process
    resumed_one = losses(tmp_path / "r1")
    assert sorted(resumed_one) == [4, 5]
    assert_close(resumed_one, want)


def _faulty_run(tmp_path: Path, data: Path, fault: str, timeout_s: int) -> tuple[float, str, int]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = ["--data", str(data), "--out", str(tmp_path / "run"), *COMMON, "--no-save-model"]
    t0 = time.monotonic()
    proc = torchrun(2, [str(driver)], [*args, "--timeout-s", str(timeout_s)], 180, FAULT=fault)
    return time.monotonic() - t0, proc.stdout + proc.stderr, proc.returncode


def test_killed_rank_ends_the_job_with_an_error_naming_it(tmp_path: Path, data: Path) -> None:
    elapsed, out, code = _faulty_run(tmp_path, data, "kill:1:2", timeout_s=20)
    assert code != 0
    assert elapsed < 20 + 60, elapsed  # the process-group timeout plus start-up, never a hang
    assert "rank 0/2: collective failed at step 2" in out, out[-4000:]
    # torchrun's summary names the dead rank as the root cause
    root_cause = out[out.index("Root Cause") :]
    assert "rank      : 1 (local_rank: 1)" in root_cause and "SIGKILL" in root_cause, root_cause


@pytest.mark.slow
def test_stuck_rank_ends_the_job_after_the_timeout(tmp_path: Path, data: Path) -> None:
    """A frozen rank (SIGSTOP) keeps its sockets open: only the timeout can end the job."""
    elapsed, out, code = _faulty_run(tmp_path, data, "stop:1:2", timeout_s=10)
    assert code != 0
    assert elapsed < 10 + 30 + 60, elapsed  # timeout + torchrun's 30 s grace + start-up
    assert "rank 1 (last started step 2) did not answer: dead or stuck" in out, out[-4000:]
