"""The resumable training loop: step-indexed batches, rank-0 progress, sharded checkpoints.

The loop asks a :data:`RankBatches` function for this rank's micro-batches of each step. With
:func:`sampled_batches` they are a pure function of the step (:class:`StepSampler`): step ``s``
always draws the same global batch, whatever the world size and however often the run was
resumed, so a run resumed from a checkpoint sees exactly the batches the uninterrupted run saw,
and each rank collates only its rows of the global batch (:meth:`StepSampler.rank_indices`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.distributed import checkpoint
from trainer.distributed.env import (
    DistEnv,
    Heartbeat,
    RankFailure,
    describe_failure,
    log0,
)
from trainer.distributed.step import Batch, to_device, train_step

Collate = Callable[[Sequence[int]], Batch]
RankBatches = Callable[[int], list[Batch]]
"""``step`` → this rank's micro-batches of global batch ``step`` (on the CPU)."""
StepHook = Callable[[int, dict[str, float]], None]


@dataclass
class LoopConfig:
    """Steps, batch geometry, schedule and checkpoints of one run."""

    steps: int = 100
    """Optimiser steps (the total, counting steps done before a resume)."""
    global_batch: int = 16
    """Samples per optimiser step over all ranks and micro-batches."""
    grad_accum: int = 1
    """Micro-batches per rank and step (global_batch = micro × grad_accum × world size)."""
    lr: float = 2e-3
    warmup_steps: int = 10
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 0
    """Save a sharded checkpoint every N steps (and after the last); 0: only after the last."""
    resume: Path | None = None
    """A checkpoint folder (``step-N``) or a root holding them (the latest is used)."""
    log_every: int = 10
    progress: bool = True


class StepSampler:
    """Global batch ``s`` = a slice of a seeded per-epoch permutation of the samples."""

    def __init__(self, num_samples: int, global_batch: int, seed: int = 0):
        if num_samples < global_batch:
            raise ValueError(f"{num_samples} samples cannot fill a global batch of {global_batch}")
        self.n, self.batch, self.seed = num_samples, global_batch, seed
        self.per_epoch = num_samples // global_batch

    def indices(self, step: int) -> list[int]:
        """Sample indices of global batch ``step``."""
        epoch, k = divmod(step, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return [int(i) for i in order[k * self.batch : (k + 1) * self.batch]]

    def rank_indices(self, step: int, rank: int, world: int, accum: int) -> list[list[int]]:
        """This rank's micro-batches of global batch ``step`` (contiguous rows, in order)."""
        rows = self.indices(step)
        per_rank = len(rows) // world
        mine = rows[rank * per_rank : (rank + 1) * per_rank]
        micro = per_rank // accum
        return [mine[m * micro : (m + 1) * micro] for m in range(accum)]


def check_geometry(cfg: LoopConfig, world: int) -> None:
    """The global batch must split evenly over ranks and micro-batches."""
    if cfg.global_batch % (world * cfg.grad_accum):
        raise ValueError(
            f"global_batch {cfg.global_batch} must be divisible by world size {world} × "
            f"grad_accum {cfg.grad_accum}"
        )


def sampled_batches(
    num_samples: int, collate: Collate, cfg: LoopConfig, env: DistEnv
) -> RankBatches:
    """This rank's micro-batches of the step-indexed global batches over ``num_samples``."""
    check_geometry(cfg, env.world_size)
    sampler = StepSampler(num_samples, cfg.global_batch, cfg.seed)

    def batches(step: int) -> list[Batch]:
        rows = sampler.rank_indices(step, env.rank, env.world_size, cfg.grad_accum)
        return [collate(idx) for idx in rows]

    return batches


def adamw(model: nn.Module, cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on vectors (norms, biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_at(cfg: LoopConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _resume_path(resume: Path) -> Path:
    resume = Path(resume)
    if (resume / checkpoint.META).is_file():
        return resume
    found = checkpoint.latest(resume)
    if found is None:
        raise ValueError(f"--resume {resume}: no checkpoint there")
    return found


def train(
    model: nn.Module,
    batches: RankBatches,
    cfg: LoopConfig,
    env: DistEnv,
    *,
    hooks: Sequence[StepHook] = (),
    before_step: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` (plain or sharded with ``apply_fsdp``); returns one record per step.

    ``batches(step)`` gives this rank's micro-batches of that step (:func:`sampled_batches`);
    ``before_step(step)`` runs on every rank before each step (fault injection in tests). A
    collective that fails because another rank died raises
    :class:`~trainer.distributed.env.RankFailure` naming it.
    """
    optimizer = adamw(model, cfg)
    start = 0
    if cfg.resume is not None:
        path = _resume_path(cfg.resume)
        start = checkpoint.load(path, model, optimizer)
        log0(f"resumed from {path} after step {start}", env=env)
    heartbeat = Heartbeat(env)
    bar = _bar(cfg.steps, start, cfg.progress and env.is_main)
    history: list[dict[str, float]] = []
    model.train()
    t0 = time.perf_counter()
    try:
        for step in range(start, cfg.steps):
            heartbeat.beat(step)
            if before_step is not None:
                before_step(step)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step)
            micro = [to_device(b, env.device) for b in batches(step)]
            t_step = time.perf_counter()
            try:
                stats = train_step(model, micro, optimizer, env, grad_clip=cfg.grad_clip)
            except (RuntimeError, torch.distributed.DistError) as exc:
                if not env.distributed:
                    raise
                raise RankFailure(describe_failure(env, step, heartbeat, exc)) from exc
            record = {
                "step": step + 1,
                "loss": stats["loss"],
                "grad_norm": stats["grad_norm"],
                "lr": lr_at(cfg, step),
                "step_s": time.perf_counter() - t_step,
                "elapsed_s": time.perf_counter() - t0,
            }
            history.append(record)
            for hook in hooks:
                hook(step, record)
            if bar is not None:
                bar.set_postfix(loss=f"{stats['loss']:.4f}")
                bar.update(1)
            elif env.is_main and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                log0(f"step {step + 1}/{cfg.steps} loss {stats['loss']:.5f}", env=env)
            last = step + 1 == cfg.steps
            every = cfg.checkpoint_every > 0 and (step + 1) % cfg.checkpoint_every == 0
            if cfg.checkpoint_dir is not None and (every or last):
                path = checkpoint.save(
                    checkpoint.step_dir(cfg.checkpoint_dir, step + 1),
                    model,
                    optimizer,
                    step + 1,
                    env,
                )
                log0(f"saved checkpoint {path}", env=env)
    finally:
        if bar is not None:
            bar.close()
    return history


def _bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
