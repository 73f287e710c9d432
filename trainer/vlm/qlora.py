"""``vlm-qlora``: QLoRA of the VLM's language model on the hazard questions.

The language model is loaded in 4-bit NF4 (bitsandbytes) with LoRA adapters (peft) on its
attention and MLP projections; the vision tower and the projector stay frozen and unquantised
(``llm_int8_skip_modules`` takes *full* module prefixes in transformers 5 — a bare
``vision_model`` silently quantises the vision tower too). Training goes through the shared
:func:`~trainer.vlm.train.train_loop`.

For export the adapters are merged into the *dequantised* NF4 weights — the very weights they
were trained against — so the merged fp32 checkpoint answers like the trained model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.vlm.data import load_samples
from trainer.vlm.model import PromptLayout, VLMInfo, load_vlm, save_vlm
from trainer.vlm.train import OptimConfig, VQABatches, plot_loss, save_history, train_loop

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


def quantization_config() -> Any:
    """bitsandbytes NF4 for the language model; vision tower, projector and head untouched."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=False,
        llm_int8_skip_modules=SKIP_QUANTIZATION,
    )


def load_for_qlora(base: Path, cfg: QLoRAConfig) -> tuple[Any, PromptLayout]:
    """The base checkpoint with NF4 language-model weights and fresh LoRA adapters."""
    from peft import LoraConfig, get_peft_model

    qconf = quantization_config() if cfg.quantize else None
    model, layout = load_vlm(base, quantization_config=qconf)
    if cfg.quantize:
        _check_quantized(model)
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=TEXT_LORA_TARGETS,
        bias="none",
    )
    return get_peft_model(model, lora), layout


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
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``data``; write the merged checkpoint to ``out``; report accuracy."""
    from trainer.vlm.evaluate import HFAnswerer, evaluate, write_json

    cfg = cfg or QLoRAConfig()
    out = Path(out)
    samples = load_samples(data)
    result: dict[str, Any] = {"base": str(base), "data": str(data), "qlora": asdict(cfg)}
    if eval_data is not None:
        before, _ = evaluate(HFAnswerer.load(base), eval_data)
        result["before"] = before
        print(f"before: accuracy {before['accuracy']:.4f} (majority {before['majority_baseline']})")

    model, layout = load_for_qlora(base, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"QLoRA: {trainable} trainable parameters (LoRA on the language model)")
    batches = VQABatches(data, samples, layout, optim.batch_size, seed=optim.seed)
    history = train_loop(model, iter(batches), optim, progress=progress)

    adapter_dir = out / "adapter"
    model.save_pretrained(adapter_dir)
    merged, _ = merge_adapters(base, adapter_dir, quantized=cfg.quantize)
    info_path = Path(base) / "sitehawk_vlm.json"
    info = VLMInfo(**json.loads(info_path.read_text())) if info_path.is_file() else None
    if info is None:
        raise ValueError(f"{base}: no sitehawk_vlm.json; vlm-qlora takes a sitehawk checkpoint")
    info.history = [
        *info.history,
        {"stage": "qlora", "data": str(data), "steps": optim.steps, "rank": cfg.rank},
    ]
    save_vlm(merged, layout.tokenizer, out, info)
    # keep the base's own files a real checkpoint carries (processor configs)
    for name in ("preprocessor_config.json", "processor_config.json"):
        if (Path(base) / name).is_file():
            shutil.copy(Path(base) / name, out / name)
    save_history(history, optim, out / "train_history.json")
    result["loss_png"] = str(plot_loss(history, out / "loss.png", "vlm-qlora"))
    result["final_loss"] = history[-1]["loss"]
    if eval_data is not None:
        after, _ = evaluate(HFAnswerer(merged, layout), eval_data)
        result["after"] = after
        print(f"after:  accuracy {after['accuracy']:.4f}")
    write_json(result, out / "qlora_result.json")
    result["out"] = str(out)
    return result
