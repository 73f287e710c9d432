"""The router's expert trainer under torchrun: QLoRA adapters from 2 FSDP ranks = 1 process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_qlora_experts_two_ranks_match_one_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cli = [sys.executable, "-m", "trainer.cli", "router"]
    _run([*cli, "tasks", "--out", str(tmp_path / "t"), "--train-per-group", "12"])
    base = ["--tasks", str(tmp_path / "t"), "--out", str(tmp_path / "b")]
    _run([*cli, "base", *base, "--small-steps", "3", "--large-steps", "1"])
    args = ["experts", "--base", str(tmp_path / "b/small"), "--tasks", str(tmp_path / "t")]
    _run([*cli, *args, "--out", str(tmp_path / "one"), "--steps", "4"])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    launcher += ["--master_addr=127.0.0.1", f"--master_port={_port()}", "-m", "trainer.cli"]
    _run([*launcher, "router", *args, "--out", str(tmp_path / "two"), "--steps", "4"])
    one = load_file(str(tmp_path / "one/adapters/code/adapter_model.safetensors"))
    two = load_file(str(tmp_path / "two/adapters/code/adapter_model.safetensors"))
    assert set(one) == set(two) and any("lora_B" in k for k in one)
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-6)
