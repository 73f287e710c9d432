"""Distributed training: ``torchrun`` + FSDP2, kept apart from model code (as torchtitan does).

* :mod:`~trainer.distributed.env` — the process group from torchrun's environment (gloo on CPU,
  NCCL on GPU) with an explicit timeout, rank-0-only logging, a heartbeat that names a dead rank;
* :mod:`~trainer.distributed.fsdp` — :func:`apply_fsdp`: ``fully_shard`` per transformer block,
  then the root; activation checkpointing; mixed precision; the FSDP + QLoRA constraint;
  ``shard_if_launched`` (what the trainers call: FSDP under torchrun, a no-op otherwise);
* :mod:`~trainer.distributed.step` — one optimiser step over micro-batches (gradient
  accumulation, a loss normalised by the *global* token count, DTensor-aware clipping);
* :mod:`~trainer.distributed.checkpoint` — sharded ``torch.distributed.checkpoint`` save/resume
  (any world size) and consolidation into one safetensors file;
* :mod:`~trainer.distributed.loop` — the resumable training loop over step-indexed batches
  (the VLM trainers' ``train_loop`` runs it, one process or N ranks);
* :mod:`~trainer.distributed.vlm` — ``torchrun -m trainer.distributed.vlm``, an alias of
  ``sitehawk-train vlm-pretrain`` with its own run-folder layout.

Every module imports torch at import time: import them inside command handlers.
"""
