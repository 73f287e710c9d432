"""Train the experts: tiny bases from configs, then QLoRA adapters per domain and a generalist.

``pretrain_bases`` builds a local tokenizer and two tiny Llama bases, both trained on every
task with its answer: the ``small`` one *briefly* (it knows the formats, answers poorly: a
generic base), so each domain adapter adds real skill on its own domain; the ``large`` one, 6×
the parameters, for longer ("a bigger base tuned on all domains"). (Training the small base on
the prompt texts alone — ``answer=None`` in :func:`~trainer.router.lm.encode_examples` — left
LoRA on a 400 k-parameter base unable to learn the legal labels at all: loss stuck at ln 6.)
``train_experts`` loads a base in 4-bit NF4
(bitsandbytes), adds a LoRA adapter (peft) and trains it on one skill's tasks: ``code``,
``math``, ``legal`` on the small base, and ``generalist`` on the large base with every task.
The same function takes any Hugging Face causal-LM folder as a base (an 8B model on a GPU).

Under ``torchrun --nproc_per_node=K`` both commands shard every model with FSDP2
(:func:`~trainer.router.lm.shard_if_launched`, i.e. ``apply_fsdp``) and split each batch over the
ranks; rank 0 alone reports progress and writes files. Single-process runs are unchanged.

``experts.json`` (schema ``sitehawk.router.experts/1``) lists each expert: base folder,
adapter folder, the tasks it learned, and its parameter count — the cost model reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.router.lm import (
    TrainConfig,
    build_model,
    build_tokenizer,
    count_parameters,
    format_prompt,
    save_pretrained,
    shard_if_launched,
    train_lm,
)
from trainer.router.tasks import DOMAINS, SPLIT_FILES, Task, read_tasks

SCHEMA = "sitehawk.router.experts/1"
MANIFEST = "experts.json"
GENERALIST = "generalist"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Progress = Callable[[str, int, int, float], None]  # (what, step, steps, loss)


def _train_tasks(tasks_dir: Path) -> list[Task]:
    path = Path(tasks_dir) / SPLIT_FILES["train"]
    if not path.is_file():
        raise ValueError(f"{tasks_dir}: no {SPLIT_FILES['train']} (run `router tasks` first)")
    return read_tasks(path)


def _pairs(tasks: list[Task]) -> list[tuple[str, str | None]]:
    return [(t.prompt, t.answer) for t in tasks]


def pretrain_bases(
    tasks_dir: Path,
    out: Path,
    small_steps: int = 150,
    large_steps: int = 1200,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the tokenizer and both tiny bases; writes ``out/small`` and ``out/large``."""
    import torch

    torch.manual_seed(0)
    tasks = _train_tasks(tasks_dir)
    tokenizer = build_tokenizer([format_prompt(t.prompt) + t.answer for t in tasks])
    summary: dict[str, Any] = {"tokenizer_vocab": len(tokenizer)}
    plan: list[tuple[str, int, list[tuple[str, str | None]]]] = [
        ("small", small_steps, [(t.prompt, t.answer) for t in tasks]),
        ("large", large_steps, [(t.prompt, t.answer) for t in tasks]),
    ]
    for size, steps, pairs in plan:
        model = shard_if_launched(build_model(size, tokenizer))
        cb = (
            None if progress is None else (lambda s, loss, n=size, k=steps: progress(n, s, k, loss))
        )
        stats = train_lm(model, tokenizer, pairs, TrainConfig(steps=steps), cb)
        save_pretrained(model, tokenizer, Path(out) / size)
        summary[size] = {**stats, "parameters": count_parameters(model)}
    if _is_main():
        (Path(out) / "bases.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _is_main() -> bool:
    """False on every torchrun rank but 0 (they train, but do not write files)."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _device() -> str | None:
    """This rank's device under torchrun (``cuda:LOCAL_RANK`` on GPUs), else None (auto)."""
    from trainer.distributed.env import init_distributed, launched_by_torchrun

    return init_distributed().device if launched_by_torchrun() else None


def load_base(path: Path, quantize: bool = True, device: str | None = None) -> tuple[Any, Any]:
    """A causal LM folder and its tokenizer, 4-bit NF4 when ``quantize`` (QLoRA's base)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.distributed.fsdp import nf4_config

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a model folder (no config.json)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {"device_map": device}
    if quantize:
        # on a GPU every weight is bf16 (4-bit storage included): one dtype per FSDP unit
        kwargs["quantization_config"] = nf4_config(device, double_quant=True)
        if device.startswith("cuda"):
            kwargs["dtype"] = torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def train_adapter(
    base: Path,
    pairs: list[tuple[str, str | None]],
    out: Path,
    config: TrainConfig,
    rank: int = 16,
    quantize: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """QLoRA: LoRA (rank ``rank``) on every projection of a 4-bit base; saves the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model, tokenizer = load_base(base, quantize=quantize, device=_device())
    if quantize and not str(model.device).startswith("cuda"):
        # (on a GPU this would up-cast the bf16 weights to fp32 and break FSDP's one dtype)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=list(LORA_TARGETS),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(config.seed)  # the same LoRA init on every rank (and in every run)
    model = shard_if_launched(get_peft_model(model, lora))
    stats = train_lm(model, tokenizer, pairs, config, progress)
    save_pretrained(model, None, Path(out))
    return {**stats, "parameters": count_parameters(model)}


def train_experts(
    base: Path,
    tasks_dir: Path,
    out: Path,
    generalist_base: Path | None = None,
    steps: int = 500,
    generalist_steps: int = 200,
    quantize: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``code``, ``math``, ``legal`` on ``base`` and ``generalist`` on ``generalist_base``.

    Each domain adapter learns the tasks of its *skill* (so the math expert also learns the
    lease clauses that need arithmetic). Writes ``out/experts.json`` and returns it.
    """
    tasks = _train_tasks(tasks_dir)
    out = Path(out)
    experts: dict[str, Any] = {}
    plan: list[tuple[str, Path, list[Task], int]] = [
        (d, Path(base), [t for t in tasks if t.skill == d], steps) for d in DOMAINS
    ]
    if generalist_base is not None:
        plan.append((GENERALIST, Path(generalist_base), tasks, generalist_steps))
    for name, base_path, subset, num_steps in plan:
        cb = None
        if progress is not None:
            cb = lambda s, loss, n=name, k=num_steps: progress(n, s, k, loss)  # noqa: E731
        stats = train_adapter(
            base_path,
            _pairs(subset),
            out / "adapters" / name,
            TrainConfig(steps=num_steps, lr=2e-3),
            quantize=quantize,
            progress=cb,
        )
        experts[name] = {
            "base": str(base_path.resolve()),
            "adapter": f"adapters/{name}",
            "skills": sorted({t.skill for t in subset}),
            "train_tasks": len(subset),
            **stats,
        }
    manifest = {"schema": SCHEMA, "quantized": quantize, "experts": experts}
    if _is_main():
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
