"""``vlm-qlora``: QLoRA of the VLM's language model on the hazard questions.

The language model is loaded in 4-bit NF4 (bitsandbytes) with LoRA adapters (peft) on its
attention and MLP projections; the vision tower and the projector stay frozen and unquantised
(``llm_int8_skip_modules`` takes *full* module prefixes in transformers 5 — a bare
``vision_model`` silently quantises the vision tower too). Training goes through the shared
:func:`~trainer.vlm.train.train_loop`.

Under ``torchrun`` the quantised, adapter-wrapped model is sharded with FSDP2 and each rank
trains on its rows of every global batch; rank 0 gathers the adapters, merges, evaluates and
writes. FSDP + QLoRA needs the 4-bit storage dtype = the load dtype = FSDP's parameter dtype:
on a GPU everything is bf16 (storage, load, compute, adapters); on a CPU everything stays fp32
with no mixed precision, where bitsandbytes' 4-bit path shards as well (2 ranks give one
process's losses). :func:`~trainer.distributed.fsdp.apply_fsdp` refuses any other combination
with the reason.

For export the adapters are merged into the *dequantised* NF4 weights — the very weights they
were trained against — so the merged fp32 checkpoint answers like the trained model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.vlm.data import load_samples
from trainer.vlm.model import PromptLayout, VLMInfo, load_vlm, save_vlm
from trainer.vlm.train import OptimConfig, VQABatches, plot_loss, save_history, train_loop

if TYPE_CHECKING:
    from trainer.distributed.fsdp import FSDPConfig

#: Modules kept out of 4-bit quantisation: full prefixes (transformers 5 matches on them).
SKIP_QUANTIZATION = ["model.vision_model", "model.connector", "lm_head"]
#: LoRA targets: the language model's projections only (the vision tower has q/k/v_proj too).
TEXT_LORA_TARGETS = (
    r"model\.text_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj))"
)
NF4_BLOCKSIZE = 64


@dataclass
class QLoRAConfig:
    """Adapter and quantisation settings."""

    rank: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / rank)."""
    dropout: float = 0.0
    quantize: bool = True
    """NF4 base weights (QLoRA); False trains LoRA on the fp32 base."""


def quantization_config(device: str = "cpu") -> Any:
    """bitsandbytes NF4 for the language model; vision tower, projector and head untouched
    (:func:`trainer.distributed.fsdp.nf4_config`: bf16 storage on a GPU for FSDP)."""
    from trainer.distributed.fsdp import nf4_config

    return nf4_config(device, SKIP_QUANTIZATION)


def load_for_qlora(
    base: Path, cfg: QLoRAConfig, device: str = "cpu", seed: int = 0
) -> tuple[Any, PromptLayout]:
    """The base checkpoint with NF4 language-model weights and fresh LoRA adapters on ``device``.

    The adapters' initialisation follows ``seed`` (identical on every rank). On a GPU every
    weight, the adapters included, is bf16 (one dtype per FSDP unit).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    gpu = device.startswith("cuda")
    qconf = quantization_config(device) if cfg.quantize else None
    # bitsandbytes places a 4-bit model on the current CUDA device itself
    model, layout = load_vlm(base, dtype=torch.bfloat16 if gpu else None, quantization_config=qconf)
    if cfg.quantize:
        _check_quantized(model)
    else:
        model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=TEXT_LORA_TARGETS,
        bias="none",
    )
    torch.manual_seed(seed)
    return get_peft_model(model, lora, autocast_adapter_dtype=not gpu), layout


def _check_quantized(model: Any) -> None:
    """Text projections are 4-bit; nothing of the vision tower or projector is."""
    import bitsandbytes as bnb

    q = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    wrong = sorted(n for n in q if not n.startswith("model.text_model."))
    if wrong or not q:
        raise RuntimeError(
            f"NF4 quantisation hit the wrong modules: {wrong[:3]} (text layers quantised: {len(q)})"
        )


def nf4_round_trip(weight: Any) -> Any:
    """``weight`` as the NF4 base layer saw it: quantised and dequantised by bitsandbytes."""
    import bitsandbytes.functional as bnbf

    packed, state = bnbf.quantize_4bit(
        weight.detach().float().contiguous(), blocksize=NF4_BLOCKSIZE, quant_type="nf4"
    )
    return bnbf.dequantize_4bit(packed, state, blocksize=NF4_BLOCKSIZE, quant_type="nf4")


def merge_adapters(base: Path, adapter_dir: Path, *, quantized: bool) -> tuple[Any, PromptLayout]:
    """fp32 model = dequantised-NF4 base + merged LoRA (``merge_and_unload``)."""
    import re

    import torch
    from peft import PeftModel

    model, layout = load_vlm(base)
    if quantized:
        pattern = re.compile(TEXT_LORA_TARGETS)
        with torch.no_grad():
            for name, module in model.named_modules():
                if pattern.fullmatch(name) and isinstance(module, torch.nn.Linear):
                    module.weight.copy_(nf4_round_trip(module.weight).to(module.weight.dtype))
    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    merged = peft_model.merge_and_unload()
    merged.eval()
    return merged, layout


def qlora(
    base: Path,
    data: Path,
    out: Path,
    optim: OptimConfig,
    cfg: QLoRAConfig | None = None,
    *,
    eval_data: Path | None = None,
    progress: bool = True,
    fsdp: FSDPConfig | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``data``; write the merged checkpoint to ``out``; report accuracy.

    Returns the result on rank 0 and ``{}`` on the other ranks (under torchrun).
    """
    from trainer.distributed.env import current_env, log0
    from trainer.distributed.fsdp import shard_if_launched

    cfg = cfg or QLoRAConfig()
    env = current_env()
    out = Path(out)
    info_path = Path(base) / "sitehawk_vlm.json"
    if not info_path.is_file():
        raise ValueError(f"{base}: no sitehawk_vlm.json; vlm-qlora takes a sitehawk checkpoint")
    samples = load_samples(data)
    model, layout = load_for_qlora(base, cfg, env.device, optim.seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log0(
        f"QLoRA: {trainable} trainable parameters (LoRA on the language model); "
        f"world size {env.world_size} ({env.backend or 'single process'})",
        env=env,
    )
    model = shard_if_launched(model, fsdp)
    batches = VQABatches(
        data, samples, layout, optim.batch_size, seed=optim.seed, mirror=optim.mirror
    )
    history = train_loop(model, batches, optim, progress=progress)

    adapter_dir = out / "adapter"
    save_adapter(model, adapter_dir)
    if not env.is_main:
        return {}
    # rank 0 alone from here: the merged model is a plain fp32 one, no collectives
    merged, _ = merge_adapters(base, adapter_dir, quantized=cfg.quantize)
    info = VLMInfo(**json.loads(info_path.read_text()))
    info.history = [
        *info.history,
        {
            "stage": "qlora",
            "data": str(data),
            "steps": optim.steps,
            "rank": cfg.rank,
            "world_size": env.world_size,
            "mirror": optim.mirror,
            # the share of gate views (motion-blurred / partly out of view) it trained on: the
            # export declares them so that the edge gate asks about such views
            "gate_views": _gate_views(data),
        },
    ]
    save_vlm(merged, layout.tokenizer, out, info)
    # keep the base's own files a real checkpoint carries (processor configs)
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (Path(base) / name).is_file():
            shutil.copy(Path(base) / name, out / name)
    save_history(history, optim, out / "train_history.json", world_size=env.world_size)
    result: dict[str, Any] = {"base": str(base), "data": str(data), "qlora": asdict(cfg)}
    result["loss_png"] = str(plot_loss(history, out / "loss.png", "vlm-qlora"))
    result["final_loss"] = history[-1]["loss"]
    result["world_size"] = env.world_size
    if eval_data is not None:
        from trainer.vlm.evaluate import HFAnswerer, evaluate

        before, _ = evaluate(HFAnswerer.load(base), eval_data)
        result["before"] = before
        print(f"before: accuracy {before['accuracy']:.4f} (majority {before['majority_baseline']})")
        after, _ = evaluate(HFAnswerer(merged, layout), eval_data)
        result["after"] = after
        print(f"after:  accuracy {after['accuracy']:.4f}")
    from trainer.vlm.evaluate import write_json

    write_json(result, out / "qlora_result.json")
    result["out"] = str(out)
    return result


def save_adapter(model: Any, out: Path) -> Path | None:
    """Save the LoRA adapter (peft folder); a sharded model's is gathered on rank 0 first.

    Every rank must call it (the gathering is a collective); only rank 0 writes.
    """
    from trainer.distributed.checkpoint import full_model_state
    from trainer.distributed.env import current_env
    from trainer.distributed.fsdp import is_sharded

    env = current_env()
    state = full_model_state(model, env, trainable_only=True) if is_sharded(model) else None
    if not env.is_main:
        return None
    model.save_pretrained(out, state_dict=state)
    return out


def _gate_views(data: Path) -> float:
    """The data folder's ``gate_views`` share (its summary.json; 0 when not recorded)."""
    path = Path(data) / "summary.json"
    if not path.is_file():
        return 0.0
    return float(json.loads(path.read_text()).get("gate_views", 0.0))
