"""The tiny Idefics3 VLM trained with FSDP2 (``torchrun … -m trainer.distributed.vlm``).

Builds the model and reads the VQA folder with :mod:`trainer.vlm`'s own builder and data code,
shards it with :func:`~trainer.distributed.fsdp.apply_fsdp` when launched by torchrun (a plain
single process otherwise), and trains it through :func:`~trainer.distributed.loop.train`.
Rank 0 writes ``history.json`` (per-step loss), and at the end a consolidated checkpoint folder
(``model.safetensors`` + tokenizer + ``sitehawk_vlm.json``) that ``load_vlm`` and the GGUF export
read like any pretrained one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Model sizes: ``default`` is vlm-pretrain's TinyVLMConfig (1.4 M parameters); ``test`` the
#: smaller one the VLM tests use.
PRESETS: dict[str, dict[str, int]] = {
    "default": {},
    "test": {
        "vision_hidden": 32,
        "vision_layers": 1,
        "vision_heads": 2,
        "text_hidden": 48,
        "text_layers": 2,
        "text_heads": 2,
        "text_intermediate": 96,
    },
}


@dataclass
class VLMTask:
    """Model, prompt layout, samples and a collate function for one VQA folder."""

    model: Any
    tokenizer: Any
    layout: Any
    tiny: Any
    num_samples: int
    collate: Callable[[Sequence[int]], dict[str, Any]]


def build_task(data: Path, preset: str = "default", seed: int = 0) -> VLMTask:
    """The tiny VLM (identical weights on every rank for a given seed) and its data."""
    from trainer.vlm.data import load_samples
    from trainer.vlm.model import PromptLayout, TinyVLMConfig, build_tiny_model, build_tokenizer
    from trainer.vlm.train import VQABatches

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    tiny = TinyVLMConfig(**PRESETS[preset])
    samples = load_samples(data)
    tokenizer = build_tokenizer(s.question for s in samples)
    model = build_tiny_model(tiny, tokenizer, seed=seed)
    layout = PromptLayout.from_tokenizer(tokenizer, tiny.image_seq_len, tiny.image_size)
    batches = VQABatches(data, samples, layout, batch_size=1, seed=seed)

    def collate(indices: Sequence[int]) -> dict[str, Any]:
        return batches.collate([samples[i] for i in indices])

    return VLMTask(model, tokenizer, layout, tiny, len(samples), collate)


def save_consolidated(task: VLMTask, model: Any, out: Path, env: Any, steps: int) -> Path | None:
    """Gather the full weights on rank 0 and write a normal VLM checkpoint folder there."""
    from trainer.distributed.checkpoint import full_model_state
    from trainer.vlm.model import VLMInfo, save_vlm

    state = full_model_state(model, env)
    if not env.is_main:
        return None
    from edge.vlm.questions import QUESTION_SET_VERSION

    info = VLMInfo(
        image_size=task.tiny.image_size,
        image_seq_len=task.tiny.image_seq_len,
        question_set=QUESTION_SET_VERSION,
        tiny_config=asdict(task.tiny),
        history=[{"stage": "pretrain-fsdp", "steps": steps, "world_size": env.world_size}],
    )
    # save_pretrained of the sharded module would write DTensors: write the gathered copy
    fresh = _unsharded_copy(task, state)
    return save_vlm(fresh, task.tokenizer, out, info)


def _unsharded_copy(task: VLMTask, state: dict[str, Any]) -> Any:
    from trainer.vlm.model import build_tiny_model

    fresh = build_tiny_model(task.tiny, task.tokenizer)
    fresh.load_state_dict(state)
    return fresh


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options of ``python -m trainer.distributed.vlm`` (also under torchrun)."""
    p = argparse.ArgumentParser(
        prog="torchrun … -m trainer.distributed.vlm",
        description="Train the tiny VLM; sharded with FSDP2 when launched by torchrun.",
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

    from trainer.distributed.env import RankFailure, exit_on_failure, init_distributed, log0
    from trainer.distributed.fsdp import FSDPConfig, apply_fsdp
    from trainer.distributed.loop import LoopConfig, train

    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    env = init_distributed(args.timeout_s)
    task = build_task(args.data, args.preset, args.seed)
    model = task.model.to(env.device)
    if env.distributed:
        fsdp = FSDPConfig(
            activation_checkpointing=args.activation_checkpointing,
            mixed_precision=args.mixed_precision,
        )
        model = apply_fsdp(model, fsdp)
    n_params = sum(p.numel() for p in task.model.parameters())
    log0(
        f"tiny Idefics3 {n_params / 1e6:.2f} M parameters, {task.num_samples} samples, "
        f"world size {env.world_size} ({env.backend or 'single process'})",
        env=env,
    )
    out: Path = args.out
    cfg = LoopConfig(
        steps=args.steps,
        global_batch=args.global_batch,
        grad_accum=args.grad_accum,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        checkpoint_dir=out / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=not args.no_progress,
    )
    try:
        history = train(model, task.num_samples, task.collate, cfg, env, before_step=before_step)
    except RankFailure as exc:
        exit_on_failure(exc)
        raise
    if not args.no_save_model:
        save_consolidated(task, model, out / "model", env, args.steps)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"world_size": env.world_size, "backend": env.backend, "history": history}
        (out / "history.json").write_text(json.dumps(record, indent=2) + "\n")
        log0(f"wrote {out / 'history.json'}", env=env)
    return history if env.is_main else []


if __name__ == "__main__":
    main(sys.argv[1:])
    from trainer.distributed.env import shutdown

    shutdown()
