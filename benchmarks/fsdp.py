"""FSDP2 memory and speed: what one rank actually holds, with 1 and 2 ranks (gloo, CPU, fp32).

For the tiny VLM (``vlm-pretrain``'s default size) trained on a VQA folder this measures, per
rank: bytes of parameters and of optimiser state actually held (the sum of local shard sizes —
a DTensor counts only its shard), peak RSS, and the median step time. Runs: one plain process
(no FSDP), ``torchrun --nproc_per_node=1`` (FSDP, world of one) and ``--nproc_per_node=2``.
Prints a table and writes ``benchmarks/results/fsdp.json``.

    python benchmarks/fsdp.py [--data runs/vlm/general] [--steps 12] [--global-batch 16]

Without ``--data`` it renders a small VQA folder into a temporary directory first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "fsdp.json"


def worker(args: argparse.Namespace) -> None:
    """One rank: train ``steps`` steps, write its own measurements to ``args.worker_out``."""
    import torch

    from trainer.distributed.env import init_distributed, shutdown
    from trainer.distributed.fsdp import apply_fsdp, local_bytes, optimizer_tensors
    from trainer.distributed.loop import LoopConfig, StepSampler, adamw
    from trainer.distributed.step import to_device, train_step
    from trainer.distributed.vlm import build_task

    torch.set_num_threads(1)
    env = init_distributed()
    task = build_task(args.data, args.preset)
    model = task.model
    if env.distributed:
        model = apply_fsdp(model)
    cfg = LoopConfig(steps=args.steps, global_batch=args.global_batch)
    optimizer = adamw(model, cfg)
    sampler = StepSampler(task.num_samples, cfg.global_batch)
    times = []
    model.train()
    for step in range(args.steps):
        micro = [to_device(task.collate(i), env.device) for i in
                 sampler.rank_indices(step, env.rank, env.world_size, 1)]  # fmt: skip
        import time

        t0 = time.perf_counter()
        train_step(model, micro, optimizer, env)
        times.append(time.perf_counter() - t0)
    result = {
        "rank": env.rank,
        "world_size": env.world_size,
        "fsdp": env.distributed,
        "param_bytes": local_bytes(list(model.parameters())),
        "optimizer_bytes": local_bytes(optimizer_tensors(optimizer)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_s_median": statistics.median(times[2:] or times),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    Path(f"{args.worker_out}.{env.rank}").write_text(json.dumps(result))
    shutdown()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(nproc: int | None, data: Path, args: argparse.Namespace, tmp: Path) -> list[dict]:
    """Run the worker as one plain process (``nproc`` None) or under torchrun."""
    out = tmp / f"w{nproc}"
    tail = [str(Path(__file__).resolve()), "--worker", "--data", str(data), "--preset",
            args.preset, "--steps", str(args.steps), "--global-batch", str(args.global_batch),
            "--worker-out", str(out)]  # fmt: skip
    if nproc is None:
        cmd = [sys.executable, *tail]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--master_addr=127.0.0.1", f"--master_port={_port()}", *tail]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(nproc or 1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="VQA folder (default: render 64 samples)")
    p.add_argument("--preset", default="default", help="model size (default: vlm-pretrain's)")
    p.add_argument("--steps", type=int, default=12, help="steps per run (first 2 not timed)")
    p.add_argument("--global-batch", type=int, default=16, help="samples per step, all ranks")
    p.add_argument("--json", type=Path, default=RESULTS, help="result file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            from trainer.vlm.data import build_dataset

            data = tmp / "vqa"
            build_dataset("general", 64, list(range(6)), data, progress=False)
        runs: dict[str, list[dict[str, Any]]] = {
            "1 process (no FSDP)": launch(None, data, args, tmp),
            "torchrun 1 rank (FSDP)": launch(1, data, args, tmp),
            "torchrun 2 ranks (FSDP)": launch(2, data, args, tmp),
        }
    rows = []
    cols = ("rank", "params KiB", "optim KiB", "RSS MiB", "step s")
    print(f"{'run':26s} " + " ".join(f"{c:>11s}" for c in cols))
    for name, ranks in runs.items():
        for r in ranks:
            rows.append({"run": name, **r})
            print(f"{name:26s} {r['rank']:11d} {r['param_bytes'] / 1024:11.1f} "
                  f"{r['optimizer_bytes'] / 1024:11.1f} {r['peak_rss_mib']:11.0f} "
                  f"{r['step_s_median']:11.3f}")  # fmt: skip
    load = os.getloadavg()[0]
    result = {"schema": "sitehawk.bench.fsdp/1", "preset": args.preset, "steps": args.steps,
              "global_batch": args.global_batch, "load_avg_1m": load, "cpus": os.cpu_count(),
              "rows": rows}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
