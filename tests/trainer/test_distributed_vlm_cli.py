"""``sitehawk-train vlm-pretrain`` and ``vlm-qlora`` under torchrun: 2 FSDP ranks = 1 process.

Each run is a real subprocess (gloo, fp32, a free loopback port). Per-step losses of 2 ranks
must equal one process's within 1e-4 relative; rank 1 must print nothing, show no progress bar
and write nothing under the output folder (an audit hook fails any write there); the folder rank
0 writes loads with ``load_vlm`` and exports to GGUF.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-4
COMMON = ["--steps", "3", "--batch-size", "4", "--log-every", "1", "--warmup-steps", "1"]

#: torchrun target: ``trainer.cli`` with an audit hook on every rank but 0 that fails (and
#: reports) any file opened for writing, or folder made, under $SITEHAWK_TEST_OUT.
DRIVER = """
import os, sys

out = os.path.realpath(os.environ["SITEHAWK_TEST_OUT"])

def guard(event, args):
    if event == "open":
        path, mode, flags = args
        writes = (mode is not None and any(c in mode for c in "wax+")) or (
            mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
    elif event == "os.mkdir":
        path, writes = args[0], True
    else:
        return
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        target = os.path.realpath(os.fsdecode(path))
        if target == out or target.startswith(out + os.sep):
            print(f"NON-ZERO RANK WROTE {target}", file=sys.stderr, flush=True)
            raise PermissionError(f"rank {os.environ['RANK']} wrote {target}")

if os.environ["RANK"] != "0":
    sys.addaudithook(guard)
from trainer.cli import main
sys.exit(main())
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def single(args: list[str]) -> str:
    """``python -m trainer.cli ARGS`` as one plain process; returns its output."""
    cmd = [sys.executable, "-m", "trainer.cli", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def two_ranks(tmp_path: Path, args: list[str], out: Path) -> dict[int, str]:
    """``torchrun --nproc_per_node=2`` of the guarded ``trainer.cli``; each rank's output."""
    driver, logs = tmp_path / "driver.py", tmp_path / "logs"
    driver.write_text(DRIVER)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "--max_restarts=0",
        "--log-dir", str(logs), "--redirects", "3", str(driver), *args, "--out", str(out),
    ]  # fmt: skip
    env = _env(SITEHAWK_TEST_OUT=str(out))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    ranks = {
        r: "".join(p.read_text() for p in sorted(logs.glob(f"*/attempt_0/{r}/std*.log")))
        for r in (0, 1)
    }
    assert proc.returncode == 0, proc.stderr[-3000:] + ranks[0][-3000:] + ranks[1][-3000:]
    return ranks


def losses(out: Path) -> list[float]:
    history = json.loads((out / "train_history.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    return [float(h["loss"]) for h in history]


def assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        assert abs(a - b) <= RTOL * abs(b), (step, a, b)


def assert_rank_zero_alone_reports(ranks: dict[int, str], line: str) -> None:
    assert line in ranks[0] and "train:" in ranks[0], ranks[0][-3000:]  # result + progress bar
    assert line not in ranks[1] and "train:" not in ranks[1], ranks[1][-3000:]
    assert "NON-ZERO RANK WROTE" not in ranks[1], ranks[1][-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.vlm.data import build_dataset

    root = tmp_path_factory.mktemp("vqa") / "general"
    build_dataset("general", 16, list(range(3)), root, progress=False)
    return root


def test_vlm_pretrain_two_ranks_match_one_process(tmp_path: Path, data: Path) -> None:
    from export.vlm import export_vlm
    from trainer.vlm.model import load_vlm

    args = ["vlm-pretrain", "--data", str(data), "--preset", "test", *COMMON]
    single([*args, "--out", str(tmp_path / "one"), "--no-progress"])
    ranks = two_ranks(tmp_path, args, tmp_path / "two")
    assert_rank_zero_alone_reports(ranks, "final loss")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert_close(two, one)
    assert one[-1] < one[0]  # it trains
    info = json.loads((tmp_path / "two/sitehawk_vlm.json").read_text())
    assert info["history"][-1]["world_size"] == 2
    # the weights gathered on rank 0 make a normal checkpoint folder: it loads and exports
    model, layout = load_vlm(tmp_path / "two")
    assert sum(p.numel() for p in model.parameters()) > 0 and layout.image_size == 96
    manifest = export_vlm(tmp_path / "two", tmp_path / "gguf")
    assert {"text", "mmproj"} <= set(manifest["files"])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny (untrained) sitehawk VLM checkpoint."""
    from trainer.vlm.model import VLMInfo, build_tiny_model, build_tokenizer, save_vlm
    from trainer.vlm.pretrain import tiny_config

    tiny = tiny_config("test")
    tok = build_tokenizer()
    info = VLMInfo(tiny.image_size, tiny.image_seq_len, "sitehawk.vqa/1")
    return save_vlm(build_tiny_model(tiny, tok), tok, tmp_path_factory.mktemp("base"), info)


@pytest.mark.slow
def test_vlm_qlora_two_ranks_match_one_process(tmp_path: Path, data: Path, base: Path) -> None:
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from trainer.vlm.model import load_vlm

    args = ["vlm-qlora", "--base", str(base), "--data", str(data), "--rank", "4", *COMMON]
    single([*args, "--out", str(tmp_path / "one"), "--no-progress"])
    ranks = two_ranks(tmp_path, [*args, "--eval-data", str(data)], tmp_path / "two")
    assert_rank_zero_alone_reports(ranks, '"final_loss"')
    assert_close(losses(tmp_path / "two"), losses(tmp_path / "one"))
    # the adapters gathered on rank 0 are the single process's
    one = load_file(str(tmp_path / "one/adapter/adapter_model.safetensors"))
    two = load_file(str(tmp_path / "two/adapter/adapter_model.safetensors"))
    assert set(one) == set(two) and any("lora_B" in k for k in one)
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-3, atol=1e-5)
    result = json.loads((tmp_path / "two/qlora_result.json").read_text())
    assert result["world_size"] == 2 and result["after"]["n"] == 16  # rank 0 evaluated
    merged, _ = load_vlm(tmp_path / "two")
    assert not any("lora" in n for n, _ in merged.named_parameters())
