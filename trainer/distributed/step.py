"""One optimiser step over micro-batches: gradient accumulation with a global-token loss.

The loss of a language model is the mean over the *answer tokens of the global batch*. Each rank
sees a slice of that batch, and each micro-batch a slice of the slice, so the per-rank mean of a
Hugging Face model's ``.loss`` would weight tokens differently from a single process whenever
answers differ in length. Here every micro-batch contributes ``sum of token losses /
global token count × world size`` (FSDP averages gradients over the ranks), which makes the
gradient — and the reported loss — those of one process on the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from trainer.distributed.env import DistEnv

IGNORE_INDEX = -100
Batch = dict[str, Any]


def count_targets(batch: Batch) -> int:
    """Tokens in ``batch`` that carry a loss (labels after the causal shift, not -100)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def summed_token_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Sum of next-token cross-entropies over the labelled tokens of ``batch`` (fp32)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    labels = batch["labels"]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def shard_rows(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rows ``[rank·n/W, (rank+1)·n/W)`` of every tensor in ``batch`` (n divisible by W)."""
    n = next(iter(batch.values())).shape[0]
    if n % world_size:
        raise ValueError(f"global batch {n} is not divisible by the world size {world_size}")
    k = n // world_size
    return {key: v[rank * k : (rank + 1) * k] for key, v in batch.items()}


def to_device(batch: Batch, device: str) -> Batch:
    """Tensors of ``batch`` moved to ``device``."""
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def clip_grad_norm_(params: Sequence[nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm; works for FSDP2's DTensor gradients and plain ones.

    With DTensors the norm of the local shards is all-reduced into the norm of the whole
    gradient (``full_tensor``), so every rank clips by the same factor as one process would.
    """
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total: Any = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(grads, max_norm, total)
    return float(total)


def train_step(
    model: nn.Module,
    micro_batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    env: DistEnv,
    *,
    grad_clip: float = 1.0,
) -> dict[str, float]:
    """Forward/backward every micro-batch of this rank, clip, step; returns the global loss.

    ``micro_batches`` are this rank's share of one global batch (already on its device).
    Returns ``loss`` (mean over the global batch's labelled tokens), ``grad_norm`` and
    ``tokens``.
    """
    local_tokens = sum(count_targets(b) for b in micro_batches)
    counts = torch.tensor([float(local_tokens), 0.0], dtype=torch.float64)
    if env.distributed:
        counts = counts.to(env.device)
        dist.all_reduce(counts)
    global_tokens = max(1.0, float(counts[0]))
    loss_sum = torch.zeros((), dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in micro_batches:
        summed = summed_token_loss(model, batch)
        (summed * (env.world_size / global_tokens)).backward()
        loss_sum += summed.detach().double().cpu()
    grad_norm = clip_grad_norm_(params, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if env.distributed:
        loss_sum = loss_sum.to(env.device)
        dist.all_reduce(loss_sum)
    loss = float(loss_sum) / global_tokens
    if not torch.isfinite(torch.tensor(loss)):
        raise FloatingPointError(f"loss is {loss}")
    return {"loss": loss, "grad_norm": grad_norm, "tokens": global_tokens}
