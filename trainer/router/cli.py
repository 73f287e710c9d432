"""``sitehawk-train router …``: tasks, experts, outcome tables, router fit/eval, the service.

Heavy imports (torch, transformers, scikit-learn, FastAPI) happen inside each handler, so
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from firmware_config.cli_common import CommandError


def register(subparsers: Any) -> None:
    """Add ``router`` and its sub-subcommands to ``sitehawk-train``."""
    router = subparsers.add_parser(
        "router",
        help="expert router: LoRA experts, a contextual-bandit router, an OpenAI-compatible API",
        description="Train LoRA experts on one base LM, learn which expert answers each prompt "
        "(LinUCB from bandit feedback), evaluate it, and serve it.",
    )
    sub = router.add_subparsers(dest="router_command", metavar="COMMAND", required=True)

    tk = sub.add_parser("tasks", help="write train/test prompts (code, math, legal, mixed)")
    tk.add_argument("--out", type=Path, required=True, help="output folder")
    tk.add_argument("--seed", type=int, default=0, help="train seed; test uses seed+1 (default 0)")
    tk.add_argument("--train-per-group", type=int, default=300, help="prompts per group, train")
    tk.add_argument("--test-per-group", type=int, default=60, help="prompts per group, test")
    tk.set_defaults(handler=_cmd_tasks)

    bs = sub.add_parser("base", help="build and pretrain the tiny small/large bases here")
    bs.add_argument("--tasks", type=Path, required=True, help="folder written by `router tasks`")
    bs.add_argument("--out", type=Path, required=True, help="writes OUT/small and OUT/large")
    bs.add_argument("--small-steps", type=int, default=150, help="steps for the small base")
    bs.add_argument("--large-steps", type=int, default=1200, help="steps for the large base")
    bs.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    bs.set_defaults(handler=_cmd_base)

    ex = sub.add_parser("experts", help="train QLoRA experts (code, math, legal, generalist)")
    ex.add_argument("--base", type=Path, required=True, help="shared base model folder (HF)")
    ex.add_argument("--generalist-base", type=Path, help="larger base for the generalist")
    ex.add_argument("--tasks", type=Path, required=True, help="folder written by `router tasks`")
    ex.add_argument("--out", type=Path, required=True, help="experts folder")
    ex.add_argument("--steps", type=int, default=500, help="steps per domain adapter")
    ex.add_argument("--generalist-steps", type=int, default=200, help="steps for the generalist")
    ex.add_argument("--no-quantize", action="store_true", help="LoRA on a float base (not NF4)")
    ex.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ex.set_defaults(handler=_cmd_experts)

    oc = sub.add_parser("outcomes", help="run every expert on every prompt, grade: JSONL")
    oc.add_argument("--experts", type=Path, required=True, help="experts folder")
    oc.add_argument("--prompts", type=Path, required=True, help="tasks JSONL (e.g. test.jsonl)")
    oc.add_argument("--out", type=Path, required=True, help="outcome table to write")
    oc.add_argument("--max-new-tokens", type=int, default=32, help="answer length cap")
    oc.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    oc.set_defaults(handler=_cmd_outcomes)

    ft = sub.add_parser("fit", help="fit the router (and the kNN baseline) on an outcome table")
    ft.add_argument("--outcomes", type=Path, required=True, help="training outcome table")
    ft.add_argument("--out", type=Path, required=True, help="router folder")
    ft.add_argument(
        "--feedback",
        choices=("bandit", "full"),
        default="bandit",
        help="bandit: see only the chosen expert's outcome (default); full: see all",
    )
    ft.add_argument("--alpha", type=float, default=0.5, help="LinUCB exploration width")
    ft.add_argument("--epochs", type=int, default=3, help="passes over the training prompts")
    ft.add_argument("--dim", type=int, default=64, help="embedding dimensions (LSA)")
    ft.add_argument("--seed", type=int, default=0, help="random seed")
    ft.set_defaults(handler=_cmd_fit)

    ev = sub.add_parser("eval", help="score a router on a held-out outcome table")
    ev.add_argument("--router", type=Path, required=True, help="router folder")
    ev.add_argument("--outcomes", type=Path, required=True, help="test outcome table")
    ev.add_argument("--json", type=Path, required=True, help="write the eval JSON here")
    ev.add_argument("--plot", type=Path, help="write a quality-vs-cost PNG here")
    ev.add_argument("--lambda", dest="lam", type=float, default=0.0, help="λ of the headline point")
    ev.set_defaults(handler=_cmd_eval)

    sv = sub.add_parser("serve", help="OpenAI-compatible API (FastAPI + uvicorn)")
    sv.add_argument("--router", type=Path, required=True, help="router folder")
    sv.add_argument("--experts", type=Path, help="experts folder (embedded backend)")
    sv.add_argument("--vllm-url", help="forward to a vLLM server started with --enable-lora")
    sv.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--api-key", help="require `Authorization: Bearer KEY` (or $SITEHAWK_API_KEY)")
    sv.add_argument("--lambda", dest="lam", type=float, default=0.0, help="default λ per request")
    sv.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    sv.add_argument(
        "--persist-feedback",
        action="store_true",
        help="on shutdown, write the router updated by served feedback back to --router",
    )
    sv.set_defaults(handler=_cmd_serve)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _rank0() -> bool:
    """True unless this is a torchrun rank other than 0 (only rank 0 prints and writes)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _progress(t0: float) -> Any:
    def report(name: str, step: int, steps: int, loss: float) -> None:
        if step % 100 == 0 or step == steps - 1:
            print(
                f"[{time.perf_counter() - t0:7.1f} s] {name}: step {step + 1}/{steps} "
                f"loss {loss:.3f}",
                flush=True,
            )

    return report


def _cmd_tasks(args: argparse.Namespace) -> int:
    from trainer.router.tasks import make_splits, write_splits

    splits = make_splits(args.seed, args.train_per_group, args.test_per_group)
    manifest = write_splits(args.out, splits, args.seed)
    print(f"wrote {len(splits['train'])} train and {len(splits['test'])} test tasks to {args.out}")
    for split, per in manifest["counts"].items():
        print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
    return 0


def _cmd_base(args: argparse.Namespace) -> int:
    from trainer.router.experts.train import pretrain_bases

    _threads(args.threads)
    summary = pretrain_bases(
        args.tasks, args.out, args.small_steps, args.large_steps, _progress(time.perf_counter())
    )
    if not _rank0():
        return 0
    for size in ("small", "large"):
        s = summary[size]
        print(
            f"{size}: {s['parameters']:,} parameters, loss {s['final_loss']:.3f}, "
            f"{s['seconds']:.0f} s → {args.out / size}"
        )
    return 0


def _cmd_experts(args: argparse.Namespace) -> int:
    from trainer.router.experts.train import train_experts

    _threads(args.threads)
    # under `torchrun --nproc_per_node=K` the adapters train sharded with FSDP2 (apply_fsdp)
    manifest = train_experts(
        args.base,
        args.tasks,
        args.out,
        generalist_base=args.generalist_base,
        steps=args.steps,
        generalist_steps=args.generalist_steps,
        quantize=not args.no_quantize,
        progress=_progress(time.perf_counter()),
    )
    if not _rank0():
        return 0
    for name, info in manifest["experts"].items():
        print(
            f"{name}: {info['parameters']:,} parameters, {info['train_tasks']} tasks, "
            f"loss {info['final_loss']:.3f}"
        )
    print(f"wrote {args.out / 'experts.json'}")
    return 0


def _cmd_outcomes(args: argparse.Namespace) -> int:
    from trainer.router.evaluate import per_expert
    from trainer.router.outcomes import collect, table_from_records

    _threads(args.threads)
    records = collect(
        args.experts,
        args.prompts,
        args.out,
        args.max_new_tokens,
        progress=lambda name, mean: print(f"{name}: mean score {mean:.3f}", flush=True),
    )
    table = table_from_records(records)
    print(json.dumps(per_expert(table), indent=2))
    print(f"wrote {len(records)} outcomes to {args.out}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from trainer.router.bandit import LinUCBConfig, Router
    from trainer.router.outcomes import read_table

    table = read_table(args.outcomes)
    config = LinUCBConfig(alpha=args.alpha, epochs=args.epochs, seed=args.seed)
    router = Router.fit(table, feedback=args.feedback, config=config, dim=args.dim)
    router.save(args.out)
    counts = dict(zip(router.experts, router.bandit.counts.tolist(), strict=True))
    print(
        f"fitted on {len(table)} prompts × {len(table.experts)} experts "
        f"({args.feedback} feedback); observations per expert: {counts}"
    )
    print(f"wrote {args.out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from trainer.router.bandit import Router
    from trainer.router.evaluate import evaluate, per_expert, plot, supervised_curve
    from trainer.router.outcomes import read_table

    router = Router.load(args.router)
    table = read_table(args.outcomes)
    result = evaluate(router, table, lam=args.lam)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _print_eval(result)
    print(f"wrote {args.json}")
    if args.plot:
        path = plot(result, supervised_curve(router, table), per_expert(table), args.plot)
        print(f"wrote {path}")
    return 0


def _print_eval(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="router on held-out outcomes")
    for col in ("", "quality", "cost", "gap recovered", "APGR", "CPT(50%)"):
        table.add_column(col, justify="right" if col else "left")
    for key in ("router", "supervised", "best_single", "random", "oracle"):
        row = result[key]
        cells = [f"{row['quality']:.3f}", f"{row['cost']:.2f}"]
        cells += [f"{row[k]:.3f}" if k in row else "–" for k in ("gap_recovered", "apgr", "cpt50")]
        table.add_row(key, *cells)
    Console(width=120).print(table)
    best = result["best_single"]
    fits = [p for p in result["curve"] if p["quality"] >= 0.95 * best["quality"]]
    if fits:
        cheapest = min(fits, key=lambda p: p["cost"])
        print(
            f"≥ 95% of the best single expert's quality at λ={cheapest['lambda']}: quality "
            f"{cheapest['quality']:.3f} at {cheapest['cost'] / best['cost']:.0%} of its cost"
        )


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from trainer.router.serve import ServeConfig, create_app

    if (args.experts is None) == (args.vllm_url is None):
        raise CommandError("give exactly one backend: --experts DIR or --vllm-url URL")
    if args.experts is not None:
        _threads(args.threads)
    config = ServeConfig(
        router=args.router,
        experts=args.experts,
        vllm_url=args.vllm_url,
        api_key=args.api_key or os.environ.get("SITEHAWK_API_KEY"),
        default_lambda=args.lam,
        persist_feedback=args.persist_feedback,
    )
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="info")
    return 0
