"""Training the VLM: batches from a VQA folder, one training loop, greedy answering.

:func:`train_loop` is the only loop: it takes a model (plain, peft-wrapped, or — later — sharded
with ``apply_fsdp``), an iterator of batches and an :class:`OptimConfig`, and knows nothing about
how the model was built. Pretraining and QLoRA both call it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.vlm.data import VQASample, load_image_rgb
from trainer.vlm.model import PromptLayout


@dataclass
class OptimConfig:
    """Optimiser and schedule of one training run."""

    steps: int = 1500
    """Optimiser steps."""
    batch_size: int = 16
    """Samples per step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW), after a linear warm-up; cosine decay to 5% of it."""
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 25
    """Steps between loss records (and progress-bar updates of the loss)."""
    seed: int = 0


Batch = dict[str, Any]
StepCallback = Callable[[int, float], None]


class VQABatches:
    """Endless shuffled batches of (prompt + answer) token ids and pixel values."""

    def __init__(
        self,
        folder: Path,
        samples: Sequence[VQASample],
        layout: PromptLayout,
        batch_size: int,
        seed: int = 0,
    ):
        if not samples:
            raise ValueError(f"{folder}: no samples")
        self.folder = Path(folder)
        self.samples = list(samples)
        self.layout = layout
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self._prompt_cache: dict[str, list[int]] = {}

    def encode(self, sample: VQASample) -> tuple[list[int], list[int]]:
        """Input ids and labels (−100 on the prompt) of one sample."""
        prompt = self._prompt_cache.get(sample.question)
        if prompt is None:
            prompt = self.layout.prompt_ids(sample.question)
            self._prompt_cache[sample.question] = prompt
        answer = self.layout.answer_ids(sample.answer)
        return prompt + answer, [-100] * len(prompt) + answer

    def collate(self, samples: Sequence[VQASample]) -> Batch:
        import torch

        encoded = [self.encode(s) for s in samples]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(samples), width), self.layout.pad, dtype=torch.long)
        labels = torch.full((len(samples), width), -100, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        images = [load_image_rgb(self.folder, s) for s in samples]
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": labels,
            "pixel_values": self.layout.pixel_values(images),
        }

    def __iter__(self) -> Iterator[Batch]:
        while True:
            order = self.rng.permutation(len(self.samples))
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield self.collate(
                    [self.samples[i] for i in order[start : start + self.batch_size]]
                )


def train_loop(
    model: Any,
    batches: Iterator[Batch],
    cfg: OptimConfig,
    *,
    progress: bool = True,
    callbacks: Sequence[StepCallback] = (),
) -> list[dict[str, float]]:
    """Train the model's trainable parameters for ``cfg.steps``; returns the loss history.

    The model must already be in its final wrapping (peft, FSDP): only parameters with
    ``requires_grad`` are optimised. ``model.train()`` is called before the first forward —
    bitsandbytes repacks 4-bit weights on an eval-mode forward and then drops input gradients.
    """
    import torch

    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    model.train()
    history: list[dict[str, float]] = []
    bar = _bar(cfg.steps, progress)
    window: list[float] = []
    start = time.perf_counter()
    it = iter(batches)
    try:
        for step in range(cfg.steps):
            batch = next(it)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            out = model(**batch)
            loss = out.loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}")
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            window.append(value)
            for cb in callbacks:
                cb(step, value)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                mean = float(np.mean(window))
                history.append(
                    {
                        "step": step + 1,
                        "loss": round(mean, 5),
                        "lr": lr_at(step),
                        "elapsed_s": round(time.perf_counter() - start, 2),
                    }
                )
                window = []
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return history


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="train", unit="step", dynamic_ncols=True)


def answer_questions(
    model: Any,
    layout: PromptLayout,
    images_rgb: Sequence[np.ndarray],
    questions: Sequence[str],
    *,
    max_new_tokens: int = 4,
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers of a transformers model, one per (image, question)."""
    import torch

    answers: list[str] = [""] * len(questions)
    by_question: dict[str, list[int]] = {}
    for i, q in enumerate(questions):
        by_question.setdefault(q, []).append(i)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for question, idx in by_question.items():
                prompt = layout.prompt_ids(question)
                for s in range(0, len(idx), batch_size):
                    chunk = idx[s : s + batch_size]
                    pv = layout.pixel_values([images_rgb[i] for i in chunk])
                    ids = torch.tensor([prompt] * len(chunk), dtype=torch.long)
                    done = torch.zeros(len(chunk), dtype=torch.bool)
                    out_ids: list[list[int]] = [[] for _ in chunk]
                    for _ in range(max_new_tokens):
                        logits = model(input_ids=ids, pixel_values=pv).logits[:, -1]
                        nxt = logits.argmax(-1)
                        for k, tok in enumerate(nxt.tolist()):
                            if not done[k]:
                                if tok == layout.eou:
                                    done[k] = True
                                else:
                                    out_ids[k].append(tok)
                        if bool(done.all()):
                            break
                        ids = torch.cat([ids, nxt[:, None]], dim=1)
                    for k, i in enumerate(chunk):
                        answers[i] = layout.tokenizer.decode(out_ids[k], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return [a.strip() for a in answers]


def plot_loss(history: Sequence[dict[str, float]], path: Path, title: str) -> Path:
    """The loss curve as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer tokens)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_history(history: Sequence[dict[str, float]], cfg: OptimConfig, path: Path) -> None:
    path.write_text(json.dumps({"optim": asdict(cfg), "history": list(history)}, indent=2) + "\n")
