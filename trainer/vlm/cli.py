"""``sitehawk-train`` subcommands of the VLM: ``dataset vqa``, ``vlm-pretrain``, ``vlm-eval``,
``vlm-qlora``. Heavy imports (torch, transformers) happen inside the handlers.

``vlm-pretrain`` and ``vlm-qlora`` run unchanged under ``torchrun --nproc_per_node=K -m
trainer.cli …``: FSDP2 shards the model, each rank trains on its rows of every global batch
(``--batch-size``), rank 0 alone prints, shows progress and writes files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from firmware_config.cli_common import CommandError
from trainer.evaluate import seeds_arg


def _optim_args(p: argparse.ArgumentParser, steps: int, lr: float, batch: int) -> None:
    p.add_argument(
        "--steps", type=int, default=steps, help="optimiser steps (default: %(default)s)"
    )
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=batch, help="samples per step (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--warmup-steps", type=int, help="linear warm-up steps (default: steps/10, at most 50)"
    )
    p.add_argument(
        "--log-every", type=int, default=25, help="steps per loss record (default: %(default)s)"
    )
    p.add_argument(
        "--mirror",
        type=float,
        default=0.0,
        help="share of samples shown mirrored left-right, drawn per sample and step; every VQA "
        "answer holds in a mirrored world (default: 0)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per rank (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = p.add_argument_group(
        "distributed (under torchrun: FSDP2; --batch-size is the batch over all ranks)"
    )
    d.add_argument(
        "--grad-accum", type=int, default=1, help="micro-batches per rank and step (default: 1)"
    )
    d.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="sharded checkpoint every N steps and after the last (default: none)",
    )
    d.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="where sharded checkpoints go (default: OUT/checkpoints)",
    )
    d.add_argument(
        "--resume", type=Path, help="sharded checkpoint (step-N folder, or its root) to resume"
    )
    d.add_argument(
        "--activation-checkpointing", action="store_true", help="recompute each block's activations"
    )
    d.add_argument(
        "--mixed-precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="FSDP parameter dtype; auto: bf16 on GPU, fp32 on CPU (default: auto)",
    )
    d.add_argument("--timeout-s", type=float, help="process-group timeout, seconds (default: 90)")


def register_dataset(dataset_subparsers: Any) -> None:
    """Add ``sitehawk-train dataset vqa``."""
    p = dataset_subparsers.add_parser(
        "vqa", help="question–answer pairs about crops of virtual sites (VLM data)"
    )
    p.add_argument(
        "--split",
        choices=("general", "hazard"),
        required=True,
        help="general (colours, counts, objects) or hazard (the agent's questions)",
    )
    p.add_argument("--num", type=int, required=True, help="number of question–answer pairs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--seeds",
        type=seeds_arg,
        default=None,
        help="site seeds, e.g. 0-199 (default: 0-199; held-out sites are ≥ 1000)",
    )
    p.add_argument("--size", type=int, default=96, help="image side in pixels (default: 96)")
    p.add_argument(
        "--gate-views",
        type=float,
        default=0.0,
        help="share of helmet/vest/fire samples drawn as the gate may see them on a moving "
        "camera: motion-blurred and/or partly out of view (default: 0)",
    )
    p.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="TYPE=N",
        help="general split: draw question TYPE N times per cycle of the types instead of once "
        "(repeatable; e.g. worker_in_zone=3)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_dataset)


def register(subparsers: Any) -> None:
    """Add ``vlm-pretrain``, ``vlm-eval`` and ``vlm-qlora``."""
    pt = subparsers.add_parser("vlm-pretrain", help="train the tiny VLM on the general VQA split")
    pt.add_argument(
        "--data", type=Path, required=True, help="VQA folder (dataset vqa --split general)"
    )
    pt.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    pt.add_argument(
        "--preset",
        choices=("default", "test"),
        default="default",
        help="model size: default (1.4 M parameters) or test (tiny, for smoke tests)",
    )
    _optim_args(pt, steps=3000, lr=1e-3, batch=16)
    pt.set_defaults(handler=_cmd_pretrain)

    ev = subparsers.add_parser("vlm-eval", help="exact-match accuracy of a VLM on a VQA folder")
    ev.add_argument(
        "--model",
        type=Path,
        required=True,
        help="transformers checkpoint folder, or a GGUF export (folder or .gguf)",
    )
    ev.add_argument("--data", type=Path, required=True, help="VQA folder")
    ev.add_argument("--json", type=Path, required=True, help="write the result JSON here")
    ev.add_argument("--reference", type=Path, help="second model: adds `agreement`")
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    ev.set_defaults(handler=_cmd_eval)

    ql = subparsers.add_parser(
        "vlm-qlora", help="QLoRA (NF4 language model, LoRA adapters) on hazard questions"
    )
    ql.add_argument("--base", type=Path, required=True, help="base checkpoint folder")
    ql.add_argument("--data", type=Path, required=True, help="VQA folder to train on")
    ql.add_argument("--eval-data", type=Path, help="held-out VQA folder: accuracy before/after")
    ql.add_argument("--out", type=Path, required=True, help="merged checkpoint folder to write")
    ql.add_argument("--rank", type=int, default=16, help="LoRA rank (default: %(default)s)")
    _optim_args(ql, steps=1500, lr=2e-3, batch=16)
    ql.set_defaults(handler=_cmd_qlora)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _optim(args: argparse.Namespace) -> Any:
    from trainer.vlm.train import OptimConfig

    if min(args.steps, args.batch_size, args.grad_accum, args.log_every) <= 0:
        raise CommandError("--steps, --batch-size, --grad-accum and --log-every must be positive")
    if not 0.0 <= args.mirror <= 1.0:
        raise CommandError(f"--mirror must be within 0-1, not {args.mirror}")
    warmup = args.warmup_steps
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is None and args.checkpoint_every > 0:
        checkpoint_dir = args.out / "checkpoints"
    return OptimConfig(
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        warmup_steps=min(50, max(1, args.steps // 10)) if warmup is None else warmup,
        log_every=args.log_every,
        grad_accum=args.grad_accum,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        mirror=args.mirror,
    )


def _fsdp(args: argparse.Namespace) -> Any:
    from trainer.distributed.fsdp import FSDPConfig

    return FSDPConfig(
        activation_checkpointing=args.activation_checkpointing,
        mixed_precision=args.mixed_precision,
    )


def _cmd_dataset(args: argparse.Namespace) -> int:
    from trainer.vlm.data import build_dataset

    seeds = args.seeds if args.seeds is not None else list(range(200))
    weights: dict[str, int] = {}
    for item in args.weight:
        kind, _, number = item.partition("=")
        try:
            weights[kind] = int(number)
        except ValueError:
            raise ValueError(f"--weight {item}: expected TYPE=N with a whole number N") from None
    summary = build_dataset(
        args.split,
        args.num,
        seeds,
        args.out,
        size=args.size,
        progress=not args.no_progress,
        gate_views=args.gate_views,
        weights=weights,
    )
    print(json.dumps({k: summary[k] for k in ("n", "majority_baseline", "held_out")}))
    for kind, row in summary["per_type"].items():
        print(
            f"  {kind:16s} n={row['n']:5d}  majority {row['majority_answer']!r} "
            f"= {row['majority_baseline']:.3f}"
        )
    print(f"wrote {args.out}/vqa.jsonl, {args.out}/summary.json")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from trainer.distributed.env import distributed_job
    from trainer.vlm.pretrain import pretrain, tiny_config

    _threads(args.threads)
    optim, tiny = _optim(args), tiny_config(args.preset)
    with distributed_job(args.timeout_s) as env:
        progress = not args.no_progress
        result = pretrain(args.data, args.out, optim, tiny, progress=progress, fsdp=_fsdp(args))
        if env.is_main:
            print(
                f"final loss {result['final_loss']:.4f}; wrote {result['out']}, "
                f"{result['loss_png']}"
            )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from trainer.vlm.evaluate import evaluate, load_answerer, write_json

    _threads(args.threads)
    model = load_answerer(args.model)
    reference = load_answerer(args.reference) if args.reference else None
    result, _rows = evaluate(model, args.data, reference=reference, limit=args.limit)
    write_json(result, args.json)
    print(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def _cmd_qlora(args: argparse.Namespace) -> int:
    from trainer.distributed.env import distributed_job
    from trainer.vlm.qlora import QLoRAConfig, qlora

    _threads(args.threads)
    optim = _optim(args)
    with distributed_job(args.timeout_s) as env:
        result = qlora(
            args.base,
            args.data,
            args.out,
            optim,
            QLoRAConfig(rank=args.rank),
            eval_data=args.eval_data,
            progress=not args.no_progress,
            fsdp=_fsdp(args),
        )
        if env.is_main:
            print(json.dumps(result, indent=2))
    return 0
