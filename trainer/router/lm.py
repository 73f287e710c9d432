"""Tiny causal LMs for the router's experts: a local tokenizer, Llama configs, one training loop.

Nothing comes from a model hub: the tokenizer is a byte-level BPE trained here on the task
texts (digits split one per token, so arithmetic is learnable), the models are
``LlamaForCausalLM`` built from a :class:`~transformers.LlamaConfig`. A real checkpoint (any
Hugging Face causal LM folder with its tokenizer) goes through the same :func:`train_lm` and
generation code.

Prompts are rendered as ``PROMPT + "\\nAnswer: "``; the loss covers only the answer and the
end-of-sequence token.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANSWER_SEP = "\nAnswer: "
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}

#: Tiny model sizes, by name. ``small`` is the shared base of the domain experts, ``large`` the
#: generalist's base (about 6× the parameters, so about 6× the cost per token).
MODEL_SIZES: dict[str, dict[str, int]] = {
    "small": {
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
    },
    "large": {
        "hidden_size": 192,
        "intermediate_size": 512,
        "num_hidden_layers": 5,
        "num_attention_heads": 6,
    },
}
MAX_POSITIONS = 256


def format_prompt(prompt: str) -> str:
    """The text an expert is given for ``prompt``."""
    return prompt + ANSWER_SEP


def build_tokenizer(texts: Sequence[str], vocab_size: int = 768) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.padding_side = "left"  # batched generation continues every row from its last token
    fast.model_max_length = MAX_POSITIONS
    return fast


def build_model(size: str, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised tiny ``LlamaForCausalLM`` of a :data:`MODEL_SIZES` size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(MODEL_SIZES)}")
    dims: dict[str, Any] = dict(MODEL_SIZES[size])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=dims["num_attention_heads"],
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **dims,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def count_parameters(model: Any) -> int:
    """Parameters used in a forward pass (a 4-bit weight counts once, like its float original)."""
    total = 0
    for p in model.parameters():
        n = p.numel()
        # bitsandbytes packs two 4-bit values per uint8 element
        total += n * 2 if str(p.dtype) == "torch.uint8" else n
    return int(total)


@dataclass
class TrainConfig:
    """One supervised fine-tuning run."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 30
    seed: int = 0
    max_length: int = 96


def encode_examples(
    tokenizer: Any, pairs: Sequence[tuple[str, str | None]], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per (prompt, answer); labels are -100 over the prompt.

    An answer of ``None`` makes a plain language-modelling example: the prompt text alone,
    every token in the loss (how the small base learns the language without the tasks).
    """
    out = []
    eos = tokenizer.eos_token_id
    for prompt, answer in pairs:
        if answer is None:
            ids = (tokenizer(prompt, add_special_tokens=False)["input_ids"] + [eos])[:max_length]
            out.append((ids, list(ids)))
            continue
        p_ids = tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [eos]
        ids = (p_ids + a_ids)[-max_length:]
        labels = ([-100] * len(p_ids) + a_ids)[-max_length:]
        out.append((ids, labels))
    return out


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (i, lab) in enumerate(batch):  # right padding for training
        ids[row, : len(i)] = torch.tensor(i)
        labels[row, : len(lab)] = torch.tensor(lab)
        mask[row, : len(i)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def train_lm(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str | None]],
    config: TrainConfig,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """AdamW with warm-up and cosine decay on the trainable parameters; returns a summary."""
    import torch

    examples = encode_examples(tokenizer, pairs, config.max_length)
    if not examples:
        raise ValueError("no training examples")
    rng = random.Random(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        frac = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()  # bitsandbytes' 4-bit CPU path needs train mode before any forward
    if is_distributed(model):
        return _train_sharded(model, tokenizer, examples, config, optimizer, sched, progress)
    start, ema = time.perf_counter(), float("nan")
    order: list[int] = []
    for step in range(config.steps):
        if len(order) < config.batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(min(config.batch_size, len(examples)))]
        loss = model(**_collate(batch, tokenizer.pad_token_id)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        sched.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        ema = value if math.isnan(ema) else 0.95 * ema + 0.05 * value
        if progress is not None:
            progress(step, ema)
    return {"steps": config.steps, "final_loss": ema, "seconds": time.perf_counter() - start}


def shard_if_launched(model: Any) -> Any:
    """:func:`trainer.distributed.fsdp.shard_if_launched` (imported only when called)."""
    from trainer.distributed.fsdp import shard_if_launched as shard

    return shard(model)


def is_distributed(model: Any) -> bool:
    """:func:`trainer.distributed.fsdp.is_distributed` (imported only when called)."""
    from trainer.distributed.fsdp import is_distributed as sharded

    return sharded(model)


def _train_sharded(
    model: Any,
    tokenizer: Any,
    examples: list[tuple[list[int], list[int]]],
    config: TrainConfig,
    optimizer: Any,
    sched: Any,
    progress: Callable[[int, float], None] | None,
) -> dict[str, float]:
    """:func:`train_lm`'s loop on an FSDP-sharded model: each rank takes its rows of the same
    global batch, the loss is the global-token mean (as one process computes it), rank 0 alone
    reports progress."""
    from trainer.distributed.env import current_env
    from trainer.distributed.step import shard_rows, to_device, train_step

    env = current_env()
    rng = random.Random(config.seed)
    start, ema = time.perf_counter(), float("nan")
    order: list[int] = []
    batch_size = min(config.batch_size, len(examples))
    batch_size -= batch_size % env.world_size
    if batch_size == 0:
        raise ValueError(f"batch size {config.batch_size} < world size {env.world_size}")
    for step in range(config.steps):
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(batch_size)]
        mine = shard_rows(_collate(batch, tokenizer.pad_token_id), env.rank, env.world_size)
        stats = train_step(model, [to_device(mine, env.device)], optimizer, env, grad_clip=1.0)
        sched.step()
        value = stats["loss"]
        ema = value if math.isnan(ema) else 0.95 * ema + 0.05 * value
        if progress is not None and env.is_main:
            progress(step, ema)
    return {"steps": config.steps, "final_loss": ema, "seconds": time.perf_counter() - start}


@dataclass
class Generation:
    """One answer with the token counts its cost is computed from."""

    text: str
    prompt_tokens: int
    completion_tokens: int


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 64,
) -> list[Generation]:
    """Greedy answers to ``prompts`` (batched, left-padded)."""
    import torch

    model.train()  # see train_lm: 4-bit CPU forward only works in train mode; no dropout is used
    out: list[Generation] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [format_prompt(p) for p in prompts[start : start + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1] :]
        for row in range(len(chunk)):
            tokens = new[row].tolist()
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            tokens = [t for t in tokens if t != tokenizer.pad_token_id]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            out.append(
                Generation(
                    text=text.strip(),
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=len(tokens),
                )
            )
    return out


def save_pretrained(model: Any, tokenizer: Any, out: Path) -> Path:
    """Save a model (or peft adapter) and its tokenizer as a Hugging Face folder.

    A sharded model is gathered first; only rank 0 writes.
    """
    state = None
    if is_distributed(model):
        from trainer.distributed.checkpoint import full_model_state
        from trainer.distributed.env import current_env

        env = current_env()
        state = full_model_state(model, env)
        if not env.is_main:
            return out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out
