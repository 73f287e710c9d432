"""Routing overhead and end-to-end throughput of the expert router's embedded server.

* **Routing overhead**: the router's decision for one request (TF-IDF/LSA embedding + LinUCB
  scores of every expert), in-process, p50/p99 ms over many held-out prompts.
* **End to end**: the OpenAI-compatible server (uvicorn on a free loopback port, embedded
  transformers + peft backend, one CPU thread) answering chat completions one at a time —
  latency p50/p99 ms and completion tokens/s — for ``auto`` (routed) and for each expert pinned.
  The difference between ``auto`` and a pinned expert includes which expert the router picks, so
  the routing share is the in-process figure above, measured in the same run.

    python benchmarks/router.py --router runs/router/router --experts runs/router/experts \\
        --prompts runs/router/tasks/test.jsonl

Prints a table and writes JSON (default ``benchmarks/results/router.json``) with the machine's
CPU model, core count and load average.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _percentiles(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": list(os.getloadavg())}


def routing_overhead(router_dir: Path, prompts: list[str], repeats: int) -> dict[str, float]:
    """Per-request routing decision time, in-process."""
    from trainer.router.bandit import Router

    router = Router.load(router_dir)
    for p in prompts[:20]:  # warm-up
        router.route([p])
    times = []
    for i in range(repeats):
        prompt = prompts[i % len(prompts)]
        start = time.perf_counter()
        router.decide(prompt, 0.1)
        times.append(time.perf_counter() - start)
    return _percentiles(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def end_to_end(
    router_dir: Path, experts_dir: Path, prompts: list[str], models: list[str], requests: int
) -> dict[str, dict[str, float]]:
    """Latency and completion tokens/s of the embedded server, per model name."""
    import httpx
    import torch
    import uvicorn

    from trainer.router.serve import ServeConfig, create_app

    torch.set_num_threads(1)
    app = create_app(ServeConfig(router=router_dir, experts=experts_dir))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    results: dict[str, dict[str, float]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=120) as client:
            for model in models:
                times, tokens = [], 0
                for i in range(requests + 3):
                    body = {
                        "model": model,
                        "messages": [{"role": "user", "content": prompts[i % len(prompts)]}],
                    }
                    start = time.perf_counter()
                    resp = client.post("/chat/completions", json=body)
                    elapsed = time.perf_counter() - start
                    resp.raise_for_status()
                    if i >= 3:  # the first requests warm up the adapter
                        times.append(elapsed)
                        tokens += resp.json()["usage"]["completion_tokens"]
                results[model] = {**_percentiles(times), "tokens_per_s": tokens / sum(times)}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", type=Path, default=Path("runs/router/router"))
    parser.add_argument("--experts", type=Path, default=Path("runs/router/experts"))
    parser.add_argument("--prompts", type=Path, default=Path("runs/router/tasks/test.jsonl"))
    parser.add_argument("--repeats", type=int, default=2000, help="routing decisions timed")
    parser.add_argument("--requests", type=int, default=30, help="HTTP requests per model")
    parser.add_argument("--out", type=Path, default=RESULTS / "router.json")
    args = parser.parse_args()

    from trainer.router.experts.pool import read_manifest
    from trainer.router.tasks import read_tasks

    prompts = [t.prompt for t in read_tasks(args.prompts)]
    rng = np.random.default_rng(0)
    prompts = [prompts[i] for i in rng.permutation(len(prompts))]
    experts = sorted(read_manifest(args.experts)["experts"])
    routing = routing_overhead(args.router, prompts, args.repeats)
    e2e = end_to_end(args.router, args.experts, prompts, ["auto", *experts], args.requests)

    from rich.console import Console
    from rich.table import Table

    table = Table(title="expert router: overhead and throughput (1 CPU thread)")
    for col in ("what", "p50 ms", "p99 ms", "tokens/s"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row("routing decision", f"{routing['p50_ms']:.2f}", f"{routing['p99_ms']:.2f}", "–")
    for model, row in e2e.items():
        table.add_row(
            f"chat completion, model={model}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['tokens_per_s']:.1f}",
        )
    Console(width=120).print(table)
    result = {
        "schema": "sitehawk.bench.router/1",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "routing": routing,
        "end_to_end": e2e,
        "routing_share_of_auto_p50": routing["p50_ms"] / e2e["auto"]["p50_ms"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
