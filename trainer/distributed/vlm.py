"""``torchrun … -m trainer.distributed.vlm``: an alias of ``sitehawk-train vlm-pretrain``.

The same training (:func:`trainer.vlm.pretrain.pretrain`, sharded with FSDP2 under torchrun)
with this module's flag names and run-folder layout: ``OUT/model/`` (the consolidated checkpoint
folder ``load_vlm`` reads), ``OUT/checkpoints/step-N`` (sharded, always one after the last step)
and ``OUT/history.json`` (the loss of every step). Kept for its scripts and the fault-injection
tests (``main(argv, before_step=…)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from trainer.vlm.pretrain import PRESETS, VLMTask, build_task, tiny_config

__all__ = ["PRESETS", "VLMTask", "build_task", "main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options of ``python -m trainer.distributed.vlm`` (also under torchrun)."""
    p = argparse.ArgumentParser(
        prog="torchrun … -m trainer.distributed.vlm",
        description="Train the tiny VLM (= sitehawk-train vlm-pretrain); sharded with FSDP2 "
        "when launched by torchrun.",
    )
    p.add_argument(
        "--data", type=Path, required=True, help="VQA folder (sitehawk-train dataset vqa)"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="run folder: history, checkpoints, model"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="default", help="model size")
    p.add_argument("--steps", type=int, default=100, help="total optimiser steps")
    p.add_argument("--global-batch", type=int, default=16, help="samples per step, all ranks")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per rank and step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=10, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=0, help="model init and data order")
    p.add_argument("--checkpoint-every", type=int, default=0, help="sharded save every N steps")
    p.add_argument("--resume", type=Path, help="checkpoint folder (or root) to resume from")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute blocks")
    p.add_argument(
        "--mixed-precision", choices=("auto", "bf16", "fp32"), default="auto", help="FSDP dtype"
    )
    p.add_argument("--timeout-s", type=float, help="process-group timeout (default 90 s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per rank")
    p.add_argument("--no-save-model", action="store_true", help="skip the consolidated model")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(
    argv: Sequence[str] | None = None, before_step: Callable[[int], None] | None = None
) -> list[dict[str, float]]:
    """Run one training job; returns rank 0's per-step history (empty on other ranks)."""
    import torch

    from trainer.distributed.env import distributed_job, log0
    from trainer.distributed.fsdp import FSDPConfig
    from trainer.vlm.pretrain import pretrain
    from trainer.vlm.train import OptimConfig

    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    out: Path = args.out
    optim = OptimConfig(
        steps=args.steps,
        batch_size=args.global_batch,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        log_every=1,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )
    fsdp = FSDPConfig(
        activation_checkpointing=args.activation_checkpointing,
        mixed_precision=args.mixed_precision,
    )
    with distributed_job(args.timeout_s) as env:
        result = pretrain(
            args.data,
            out / "model",
            optim,
            tiny_config(args.preset),
            progress=not args.no_progress,
            fsdp=fsdp,
            save_model=not args.no_save_model,
            before_step=before_step,
        )
        if not env.is_main:
            return []
        history = result["history"]
        record = {"world_size": env.world_size, "backend": env.backend, "history": history}
        (out / "history.json").write_text(json.dumps(record, indent=2) + "\n")
        log0(f"wrote {out / 'history.json'}", env=env)
    return list(history)


if __name__ == "__main__":
    main(sys.argv[1:])
    # Everything is written and the process group is left. Skip the interpreter's teardown: a
    # torchrun rank at times aborted there ("terminate called without an active exception",
    # exit -6) after finishing its work, failing a job that had succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
