"""``apply_fsdp(model, cfg)``: FSDP2 sharding applied beside the model, never inside it.

As torchtitan does it: every transformer block becomes its own FSDP unit (``fully_shard``), then
the root takes what is left (embeddings, head, projector, norms). A block's parameters are
all-gathered just before its forward and freed after it, so a rank holds its 1/N shard of every
parameter, gradient and optimiser state plus one block unsharded at a time.

Blocks are found generically: every ``nn.ModuleList`` whose children are all of one class and
have sub-modules — ``model.layers`` of any Hugging Face causal LM (also under a peft wrapper),
and both the vision encoder's and the text model's layers of an Idefics3 VLM.

Mixed precision: on GPU bf16 parameters for compute with fp32 gradient reduction
(``MixedPrecisionPolicy``; the sharded master weights and the optimiser stay fp32); on CPU
everything stays fp32.

FSDP + QLoRA (:func:`check_qlora`): the 4-bit storage dtype must equal the dtype the model was
loaded in and the FSDP parameter dtype (``bnb_4bit_quant_storage=torch.bfloat16``, bf16 loading,
``param_dtype=bf16`` on GPU), so FSDP all-gathers the packed 4-bit bytes like any other tensor
instead of casting them. Sharding replaces each ``Params4bit`` by a DTensor and so drops its
``quant_state``; bitsandbytes >= 0.43 keeps a copy on the ``Linear4bit`` module and re-attaches it
to the all-gathered weight at every forward, which is what makes it work — on this CPU too, in
fp32 (measured: 2-rank losses equal one process to 1e-7). On CPU the model must stay in train
mode: an eval-mode CPU forward repacks the weight in place, which a reshard would throw away.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.utils.checkpoint import checkpoint

MixedPrecision = Literal["auto", "bf16", "fp32"]


@dataclass
class FSDPConfig:
    """How :func:`apply_fsdp` shards one model (only its own settings, never the run's)."""

    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass instead of storing them."""
    mixed_precision: MixedPrecision = "auto"
    """``auto``: bf16 parameters + fp32 reduction on GPU, fp32 on CPU."""
    reshard_after_forward: bool = True
    """Free gathered block parameters after the forward (ZeRO-3); False keeps them (ZeRO-2)."""
    block_lists: tuple[str, ...] = ()
    """Dotted names of the ``ModuleList``s that hold the blocks; empty: found automatically."""


class FSDPUnsupportedError(ValueError):
    """The model cannot be sharded as configured (e.g. 4-bit weights on a CPU)."""


def find_block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """Homogeneous ``ModuleList``s of non-leaf modules: the transformer blocks of the model."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(child) for child in module}
        if len(kinds) == 1 and all(any(True for _ in c.children()) for c in module):
            found.append((name, module))
    return found


def _blocks(model: nn.Module, cfg: FSDPConfig) -> list[tuple[str, nn.Module]]:
    if cfg.block_lists:
        modules = dict(model.named_modules())
        lists = []
        for name in cfg.block_lists:
            if not isinstance(modules.get(name), nn.ModuleList):
                raise FSDPUnsupportedError(f"block_lists: {name!r} is not a ModuleList")
            lists.append((name, modules[name]))
    else:
        lists = find_block_lists(model)
    if not lists:
        raise FSDPUnsupportedError(
            f"{type(model).__name__}: no transformer blocks found (no homogeneous ModuleList); "
            "name them in FSDPConfig.block_lists"
        )
    return [(f"{ln}.{i}", block) for ln, lst in lists for i, block in enumerate(lst)]


def mixed_precision_policy(mode: MixedPrecision, device_type: str) -> MixedPrecisionPolicy:
    """bf16 compute + fp32 reduction on GPU for ``auto``/``bf16``; all fp32 on CPU or ``fp32``."""
    if mode == "fp32" or (mode == "auto" and device_type != "cuda"):
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def nf4_config(
    device: str, skip_modules: Sequence[str] | None = None, double_quant: bool = False
) -> Any:
    """bitsandbytes NF4 loading that satisfies :func:`check_qlora` on ``device``.

    On a GPU the packed 4-bit bytes are stored as bf16 and computed in bf16 (load the model with
    ``dtype=torch.bfloat16`` too), so that FSDP's bf16 parameters all-gather them without a
    cast; on a CPU storage and compute stay as bitsandbytes' CPU path wants them (uint8, fp32; no
    mixed precision). Both QLoRA trainers (the VLM's and the router's experts) load with this.
    """
    from transformers import BitsAndBytesConfig

    gpu = device.startswith("cuda")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16 if gpu else torch.float32,
        bnb_4bit_quant_storage=torch.bfloat16 if gpu else torch.uint8,
        bnb_4bit_use_double_quant=double_quant,
        llm_int8_skip_modules=list(skip_modules) if skip_modules else None,
    )


def _quantized_params(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    for name, p in model.named_parameters():
        if type(p).__name__ in ("Params4bit", "Int8Params") or hasattr(p, "quant_state"):
            yield name, p


def check_qlora(model: nn.Module, device_type: str, policy: MixedPrecisionPolicy) -> bool:
    """Check the FSDP + QLoRA constraint; True when the model has 4-bit weights.

    Raises :class:`FSDPUnsupportedError` with the reason when sharding would corrupt them.
    """
    quantized = list(_quantized_params(model))
    if not quantized:
        return False
    name, p = quantized[0]
    if type(p).__name__ == "Int8Params":
        raise FSDPUnsupportedError(f"{name}: 8-bit (LLM.int8) weights cannot be sharded")
    import bitsandbytes as bnb  # present: the model has its 4-bit parameters

    lost = [  # (peft's LoRA wrapper is also called Linear4bit: match bitsandbytes' own class)
        n
        for n, m in model.named_modules()
        if isinstance(m, bnb.nn.Linear4bit) and getattr(m, "quant_state", None) is None
    ]
    if lost:
        raise FSDPUnsupportedError(
            f"{lost[0]}: this bitsandbytes keeps the 4-bit quantisation state only on the "
            "Parameter object, which sharding replaces by a DTensor (bitsandbytes >= 0.43 "
            "keeps a copy on the module and re-attaches it after the all-gather)"
        )
    storage = p.dtype
    if policy.param_dtype is not None and storage != policy.param_dtype:
        raise FSDPUnsupportedError(
            "FSDP + QLoRA needs the 4-bit storage dtype = the load dtype = FSDP's param_dtype, "
            f"else FSDP casts the packed 4-bit bytes: storage is {storage} ({name}), "
            f"param_dtype {policy.param_dtype}. Load with bnb_4bit_quant_storage=torch.bfloat16 "
            "and dtype=torch.bfloat16 on GPU, or keep fp32 (no mixed precision)."
        )
    others = {
        q.dtype
        for _, q in model.named_parameters()
        if q.is_floating_point() and q.dtype != storage and type(q).__name__ != "Params4bit"
    }
    if policy.param_dtype is not None and others - {policy.param_dtype}:
        raise FSDPUnsupportedError(
            f"FSDP + QLoRA: load every weight in {policy.param_dtype} (found "
            f"{sorted(map(str, others))}) so that each FSDP unit has one dtype"
        )
    if device_type != "cuda":
        model.register_forward_pre_hook(_require_train_mode)
    return True


def _require_train_mode(module: nn.Module, args: Any) -> None:
    """bitsandbytes repacks 4-bit weights in place on an eval-mode CPU forward: on an
    all-gathered FSDP buffer that repacking would be thrown away at the next reshard."""
    if not module.training:
        raise FSDPUnsupportedError(
            "a sharded 4-bit model on CPU must stay in train mode (model.train()) for every "
            "forward, generation included: bitsandbytes repacks the weights in place in eval "
            "mode, which FSDP's all-gathered buffers do not keep"
        )


def _checkpoint_forward(block: nn.Module) -> None:
    """Make ``block`` recompute its activations in backward (its FQNs stay unchanged)."""
    inner = block.forward

    @functools.wraps(inner)
    def forward(*args: Any, **kwargs: Any) -> Any:
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    block.forward = forward


def apply_fsdp(model: nn.Module, cfg: FSDPConfig | None = None, mesh: Any = None) -> nn.Module:
    """Shard ``model`` in place with FSDP2 and return it (the same object, now an FSDPModule).

    Needs an initialised process group (:func:`~trainer.distributed.env.init_distributed`); the
    model must be on its compute device (or CPU) with identical weights on every rank.
    """
    cfg = cfg or FSDPConfig()
    device_type = "cuda" if any(p.is_cuda for p in model.parameters()) else "cpu"
    policy = mixed_precision_policy(cfg.mixed_precision, device_type)
    check_qlora(model, device_type, policy)  # raises when the 4-bit weights would break
    kwargs: dict[str, Any] = {"mp_policy": policy, "mesh": mesh}
    blocks = _blocks(model, cfg)
    for i, (_, block) in enumerate(blocks):
        if cfg.activation_checkpointing:
            _checkpoint_forward(block)
        # the last block's parameters are needed again at once by the backward: keep them
        reshard = cfg.reshard_after_forward and i < len(blocks) - 1
        fully_shard(block, reshard_after_forward=reshard, **kwargs)
    fully_shard(model, reshard_after_forward=cfg.reshard_after_forward, **kwargs)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when :func:`apply_fsdp` has wrapped ``model``."""
    return isinstance(model, FSDPModule)


def shard_if_launched(model: nn.Module, cfg: FSDPConfig | None = None) -> nn.Module:
    """Under ``torchrun``: join the process group and shard ``model`` with FSDP2 (in place).

    A plain process gets ``model`` back untouched, so the same command runs either way.
    """
    from trainer.distributed.env import init_distributed, launched_by_torchrun

    if not launched_by_torchrun():
        return model
    env = init_distributed()
    if not is_sharded(model):
        model = apply_fsdp(model.to(env.device), cfg)
    return model


def is_distributed(model: nn.Module) -> bool:
    """True for a model sharded by :func:`shard_if_launched` (under torchrun)."""
    from trainer.distributed.env import launched_by_torchrun

    return launched_by_torchrun() and is_sharded(model)


def local_bytes(tensors: Iterator[torch.Tensor] | list[torch.Tensor]) -> int:
    """Bytes this rank actually holds for ``tensors`` (a DTensor counts its local shard)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor of the optimiser's state (AdamW: step, exp_avg, exp_avg_sq)."""
    return [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
