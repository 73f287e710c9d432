"""``vlm-pretrain``: train the tiny Idefics3 VLM from scratch on the general VQA split."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.vlm.questions import QUESTION_SET_VERSION
from trainer.vlm.data import load_samples
from trainer.vlm.model import (
    PromptLayout,
    TinyVLMConfig,
    VLMInfo,
    build_tiny_model,
    build_tokenizer,
    save_vlm,
)
from trainer.vlm.train import OptimConfig, VQABatches, plot_loss, save_history, train_loop


def pretrain(
    data: Path,
    out: Path,
    optim: OptimConfig,
    tiny: TinyVLMConfig | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the tiny model, train it on ``data``, save checkpoint + loss curve into ``out``."""
    import torch

    tiny = tiny or TinyVLMConfig()
    samples = load_samples(data)
    tokenizer = build_tokenizer(s.question for s in samples)
    model = build_tiny_model(tiny, tokenizer, seed=optim.seed)
    layout = PromptLayout.from_tokenizer(tokenizer, tiny.image_seq_len, tiny.image_size)
    batches = VQABatches(data, samples, layout, optim.batch_size, seed=optim.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny Idefics3: {n_params / 1e6:.2f} M parameters, {len(samples)} samples from {data}")
    torch.manual_seed(optim.seed)
    history = train_loop(model, iter(batches), optim, progress=progress)
    info = VLMInfo(
        image_size=tiny.image_size,
        image_seq_len=tiny.image_seq_len,
        question_set=QUESTION_SET_VERSION,
        tiny_config=asdict(tiny),
        history=[{"stage": "pretrain", "data": str(data), "steps": optim.steps}],
    )
    out = Path(out)
    save_vlm(model, tokenizer, out, info)
    save_history(history, optim, out / "train_history.json")
    png = plot_loss(history, out / "loss.png", f"vlm-pretrain on {Path(data).name}")
    return {"out": str(out), "loss_png": str(png), "final_loss": history[-1]["loss"]}
