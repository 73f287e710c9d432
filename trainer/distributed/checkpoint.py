"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP), and export consolidation.

:func:`save` writes one DCP folder per step: every rank writes only its own shards (plus a
``.metadata`` index rank 0 writes), with the model and optimiser state keyed by parameter name
(``get_state_dict``), so the files do not depend on how the model was wrapped. :func:`load`
reads them into a model of *any* world size — 2 ranks' shards into 1 process, or into 8 — since
DCP reshards on load by those names. :func:`consolidate` turns a DCP folder into one
``safetensors`` file of full model tensors for export, without any process group.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from trainer.distributed.env import DistEnv

META = "sitehawk_checkpoint.json"
SCHEMA = "sitehawk.dcp/1"


def step_dir(root: Path, step: int) -> Path:
    """``root/step-000123``."""
    return Path(root) / f"step-{step:06d}"


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (one with its metadata file), or None."""
    done = sorted(p for p in Path(root).glob("step-*") if (p / META).is_file())
    return done[-1] if done else None


def save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    env: DistEnv,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Sharded save of model + optimiser after ``step`` steps (every rank calls it)."""
    path = Path(path)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
    if env.distributed:
        dist.barrier()
    if env.is_main:  # written last: a folder without it is an interrupted save
        meta = {"schema": SCHEMA, "step": step, "world_size": env.world_size, **(extra or {})}
        (path / META).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load a checkpoint saved with any world size into ``model`` (and ``optimizer``).

    Returns the step it was saved after.
    """
    path = Path(path)
    meta_file = path / META
    if not meta_file.is_file():
        raise ValueError(f"{path}: not a complete sitehawk checkpoint (no {META})")
    meta = json.loads(meta_file.read_text())
    if optimizer is None:
        model_sd = get_model_state_dict(model)
        dcp.load({"model": model_sd}, checkpoint_id=str(path))
        set_state_dict(model, (), model_state_dict=model_sd, optim_state_dict={})
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
    return int(meta["step"])


def consolidate(path: Path, out: Path) -> Path:
    """Write the model tensors of DCP checkpoint ``path`` as one safetensors file ``out``.

    Runs in a single process without a process group (DCP reads every shard and assembles
    the full tensors); keys are the model's parameter names, as ``save_pretrained`` writes them.
    """
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    path, out = Path(path), Path(out)
    tmp = out.with_suffix(".tmp.pt")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        dcp_to_torch_save(str(path), str(tmp))
        full = torch.load(tmp, map_location="cpu", weights_only=True)
    finally:
        tmp.unlink(missing_ok=True)
    tensors = {k: v.contiguous() for k, v in full["model"].items() if torch.is_tensor(v)}
    meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
    save_file(tensors, str(out), metadata={"format": "pt", "step": str(meta.get("step", ""))})
    return out


def full_model_state(
    model: nn.Module, env: DistEnv, *, trainable_only: bool = False
) -> dict[str, Any]:
    """The whole model's state dict on CPU, gathered on rank 0 (empty on other ranks).

    ``trainable_only``: only parameters with ``requires_grad`` (e.g. LoRA adapters).
    """
    options = StateDictOptions(
        full_state_dict=env.distributed, cpu_offload=True, ignore_frozen_params=trainable_only
    )
    return get_model_state_dict(model, options=options)


def remove(path: Path) -> None:
    """Delete a checkpoint folder (rank 0 only)."""
    shutil.rmtree(path, ignore_errors=True)
