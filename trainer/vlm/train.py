"""Training the VLM: batches from a VQA folder, one training loop, greedy answering.

:func:`train_loop` takes a model (plain, peft-wrapped, or sharded with ``apply_fsdp`` under
torchrun), the batches and an :class:`OptimConfig`, and knows nothing about how the model was
built; pretraining and QLoRA both call it. It runs :func:`trainer.distributed.loop.train` — the
same loop, one process or N ranks: each rank trains on its rows of every global batch, the loss
is the mean over the *global* batch's answer tokens (so 2 ranks give one process's losses), and
rank 0 alone shows progress.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.vlm.data import VQASample, load_image_rgb
from trainer.vlm.model import PromptLayout


@dataclass
class OptimConfig:
    """Optimiser, schedule, batch geometry and checkpoints of one training run."""

    steps: int = 1500
    """Optimiser steps (the total, counting steps done before a resume)."""
    batch_size: int = 16
    """Samples per step: the *global* batch, over all ranks and micro-batches."""
    lr: float = 2e-3
    """Peak learning rate (AdamW), after a linear warm-up; cosine decay to 5% of it."""
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 25
    """Steps per history record (the mean loss of those steps)."""
    seed: int = 0
    grad_accum: int = 1
    """Micro-batches per rank and step (batch_size = micro × grad_accum × world size)."""
    checkpoint_dir: Path | None = None
    """Where sharded checkpoints go (``step-N`` folders); None: no checkpoints."""
    checkpoint_every: int = 0
    """A sharded checkpoint every N steps and after the last (with ``checkpoint_dir``)."""
    resume: Path | None = None
    """A checkpoint folder (``step-N``) or a root holding them: continue from it."""
    mirror: float = 0.0
    """Share of samples shown mirrored left-right (a fresh draw per sample and step). Every
    question of the VQA splits keeps its answer in a mirrored world (colours, counts, which
    side of a painted line a worker stands on), so it doubles the views the vision tower
    learns from."""


Batch = dict[str, Any]
StepCallback = Callable[[int, float], None]


class VQABatches:
    """Shuffled batches of (prompt + answer) token ids and pixel values, indexed by step.

    Global batch ``s`` is a slice of a seeded per-epoch permutation
    (:class:`~trainer.distributed.loop.StepSampler`): iterating gives batches 0, 1, 2, …, and
    :meth:`rank_batches` gives one rank's rows of any of them.

    ``mirror``: the share of samples shown mirrored left-right; whether sample ``i`` is
    mirrored at step ``s`` depends on (seed, s, i) alone, so every rank and a resumed run see
    the same images.
    """

    def __init__(
        self,
        folder: Path,
        samples: Sequence[VQASample],
        layout: PromptLayout,
        batch_size: int,
        seed: int = 0,
        mirror: float = 0.0,
    ):
        if not samples:
            raise ValueError(f"{folder}: no samples")
        if not 0.0 <= mirror <= 1.0:
            raise ValueError(f"mirror must be within 0-1, not {mirror}")
        self.mirror = mirror
        self.folder = Path(folder)
        self.samples = list(samples)
        self.layout = layout
        self.batch_size = batch_size
        self.seed = seed
        self._prompt_cache: dict[str, list[int]] = {}

    def encode(self, sample: VQASample) -> tuple[list[int], list[int]]:
        """Input ids and labels (−100 on the prompt) of one sample."""
        prompt = self._prompt_cache.get(sample.question)
        if prompt is None:
            prompt = self.layout.prompt_ids(sample.question)
            self._prompt_cache[sample.question] = prompt
        answer = self.layout.answer_ids(sample.answer)
        return prompt + answer, [-100] * len(prompt) + answer

    def collate(self, samples: Sequence[VQASample], mirrored: Sequence[bool] = ()) -> Batch:
        """The batch of ``samples``; ``mirrored[k]``: sample k's image flipped left-right."""
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
        images = [
            np.ascontiguousarray(im[:, ::-1]) if k < len(mirrored) and mirrored[k] else im
            for k, im in enumerate(images)
        ]
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": labels,
            "pixel_values": self.layout.pixel_values(images),
        }

    def _step_batch(self, step: int, indices: Iterable[int]) -> Batch:
        """The batch of samples ``indices`` as global batch ``step`` shows them."""
        idx = [int(i) for i in indices]
        flips = [
            self.mirror > 0.0 and np.random.default_rng([self.seed, step, i]).random() < self.mirror
            for i in idx
        ]
        return self.collate([self.samples[i] for i in idx], flips)

    def _sampler(self) -> Any:
        from trainer.distributed.loop import StepSampler

        return StepSampler(len(self.samples), self.batch_size, self.seed)

    def rank_batches(self, step: int, rank: int, world_size: int, grad_accum: int) -> list[Batch]:
        """Micro-batches of rank ``rank``'s rows of global batch ``step`` (only those rows)."""
        rows = self._sampler().rank_indices(step, rank, world_size, grad_accum)
        return [self._step_batch(step, idx) for idx in rows]

    def __iter__(self) -> Iterator[Batch]:
        sampler = self._sampler()
        for step in itertools.count():
            yield self._step_batch(step, sampler.indices(step))


def train_loop(
    model: Any,
    batches: VQABatches | Iterable[Batch],
    cfg: OptimConfig,
    *,
    progress: bool = True,
    callbacks: Sequence[StepCallback] = (),
    before_step: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Train the model's trainable parameters for ``cfg.steps``; returns the loss history.

    ``batches``: a :class:`VQABatches` (each rank collates only its rows of every global batch;
    a resumed run sees the batches the uninterrupted run saw), or any iterable of global
    batches (every rank draws each one and keeps its rows). The model must already be in its
    final wrapping (peft, FSDP): only parameters with ``requires_grad`` are optimised. The
    history holds one record per ``cfg.log_every`` steps: the mean loss of those steps.
    ``callbacks(step, loss)`` run on every rank; ``before_step(step)`` before each step.
    """
    import torch

    from trainer.distributed.env import current_env
    from trainer.distributed.loop import LoopConfig, train
    from trainer.distributed.step import shard_rows

    env = current_env()
    loop_cfg = LoopConfig(
        steps=cfg.steps,
        global_batch=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        grad_clip=cfg.grad_clip,
        seed=cfg.seed,
        checkpoint_dir=cfg.checkpoint_dir,
        checkpoint_every=cfg.checkpoint_every,
        resume=cfg.resume,
        log_every=cfg.log_every,
        progress=progress,
    )
    if isinstance(batches, VQABatches):
        if batches.batch_size != cfg.batch_size:
            raise ValueError(f"batches of {batches.batch_size} for a batch size {cfg.batch_size}")
        vqa = batches

        def rank_batches(step: int) -> list[Batch]:
            return vqa.rank_batches(step, env.rank, env.world_size, cfg.grad_accum)
    else:
        it = iter(batches)

        def rank_batches(step: int) -> list[Batch]:
            mine = shard_rows(next(it), env.rank, env.world_size)
            return [shard_rows(mine, m, cfg.grad_accum) for m in range(cfg.grad_accum)]

    torch.manual_seed(cfg.seed)
    hooks = [lambda step, record, cb=cb: cb(step, record["loss"]) for cb in callbacks]
    records = train(model, rank_batches, loop_cfg, env, hooks=hooks, before_step=before_step)
    return windowed(records, cfg.log_every, cfg.steps)


def windowed(records: Sequence[dict[str, float]], every: int, steps: int) -> list[dict[str, float]]:
    """One record per ``every`` steps (and the last): mean loss of those steps, lr, time."""
    history: list[dict[str, float]] = []
    window: list[float] = []
    for r in records:
        window.append(r["loss"])
        step = int(r["step"])
        if step % every == 0 or step == steps:
            history.append(
                {
                    "step": step,
                    "loss": float(np.mean(window)),
                    "lr": r["lr"],
                    "elapsed_s": round(r["elapsed_s"], 2),
                }
            )
            window = []
    return history


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


def save_history(
    history: Sequence[dict[str, float]], cfg: OptimConfig, path: Path, **extra: Any
) -> None:
    """``{"optim": cfg, **extra, "history": [...]}`` as JSON (``extra``: e.g. the world size)."""
    record = {"optim": asdict(cfg), **extra, "history": list(history)}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
