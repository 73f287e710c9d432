"""``vlm-pretrain``: train the tiny Idefics3 VLM from scratch on the general VQA split.

The same command runs as one process or under ``torchrun --nproc_per_node=K``: there the model
is sharded with FSDP2 (:func:`~trainer.distributed.fsdp.shard_if_launched`), each rank trains on
its rows of every global batch (the losses are those of one process), and rank 0 alone prints,
shows progress and writes files; at the end it gathers the weights into a normal checkpoint
folder that ``load_vlm`` and the GGUF export read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from trainer.distributed.fsdp import FSDPConfig

#: Model sizes: ``default`` is :class:`TinyVLMConfig` (1.4 M parameters); ``test`` the smaller
#: one the tests use.
PRESETS: dict[str, dict[str, int]] = {
    "default": {},
    "test": {
        "vision_hidden": 32,
        "vision_layers": 1,
        "vision_heads": 2,
        "text_hidden": 48,
        "text_layers": 2,
        "text_heads": 2,
        "text_intermediate": 96,
    },
}


@dataclass
class VLMTask:
    """Model, prompt layout, samples and batches for one VQA folder."""

    model: Any
    tokenizer: Any
    layout: PromptLayout
    tiny: TinyVLMConfig
    batches: VQABatches

    @property
    def num_samples(self) -> int:
        return len(self.batches.samples)

    def collate(self, indices: Sequence[int]) -> dict[str, Any]:
        """The batch of samples ``indices``."""
        return self.batches.collate([self.batches.samples[i] for i in indices])


def tiny_config(preset: str) -> TinyVLMConfig:
    """The :class:`TinyVLMConfig` of a :data:`PRESETS` name."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return TinyVLMConfig(**PRESETS[preset])


def build_task(
    data: Path,
    tiny: TinyVLMConfig | str = "default",
    seed: int = 0,
    batch_size: int = 16,
    mirror: float = 0.0,
) -> VLMTask:
    """The tiny VLM (identical weights on every rank for a given seed) and its data."""
    tiny = tiny_config(tiny) if isinstance(tiny, str) else tiny
    samples = load_samples(data)
    tokenizer = build_tokenizer(s.question for s in samples)
    model = build_tiny_model(tiny, tokenizer, seed=seed)
    layout = PromptLayout.from_tokenizer(tokenizer, tiny.image_seq_len, tiny.image_size)
    batches = VQABatches(data, samples, layout, batch_size, seed=seed, mirror=mirror)
    return VLMTask(model, tokenizer, layout, tiny, batches)


def pretrain(
    data: Path,
    out: Path,
    optim: OptimConfig,
    tiny: TinyVLMConfig | None = None,
    *,
    progress: bool = True,
    fsdp: FSDPConfig | None = None,
    save_model: bool = True,
    before_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Build the tiny model, train it on ``data``, save checkpoint + loss curve into ``out``.

    ``fsdp``: the :class:`~trainer.distributed.fsdp.FSDPConfig` used under torchrun. Returns
    the summary on rank 0 (``history``, ``final_loss``, paths) and ``{}`` on the other ranks.
    """
    from trainer.distributed.env import current_env, log0
    from trainer.distributed.fsdp import shard_if_launched

    env = current_env()
    task = build_task(data, tiny or TinyVLMConfig(), optim.seed, optim.batch_size, optim.mirror)
    n_params = sum(p.numel() for p in task.model.parameters())
    log0(
        f"tiny Idefics3: {n_params / 1e6:.2f} M parameters, {task.num_samples} samples from "
        f"{data}; world size {env.world_size} ({env.backend or 'single process'})",
        env=env,
    )
    model = shard_if_launched(task.model.to(env.device), fsdp)
    history = train_loop(model, task.batches, optim, progress=progress, before_step=before_step)
    info = VLMInfo(
        image_size=task.tiny.image_size,
        image_seq_len=task.tiny.image_seq_len,
        question_set=QUESTION_SET_VERSION,
        tiny_config=asdict(task.tiny),
        history=[
            {
                "stage": "pretrain",
                "data": str(data),
                "steps": optim.steps,
                "world_size": env.world_size,
                "mirror": optim.mirror,
            }
        ],
    )
    out = Path(out)
    if save_model:
        save_gathered(model, task, out, info)
    if not env.is_main:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    save_history(history, optim, out / "train_history.json", world_size=env.world_size)
    png = plot_loss(history, out / "loss.png", f"vlm-pretrain on {Path(data).name}")
    return {
        "out": str(out),
        "loss_png": str(png),
        "final_loss": history[-1]["loss"],
        "history": history,
        "world_size": env.world_size,
        "backend": env.backend,
    }


def save_gathered(model: Any, task: VLMTask, out: Path, info: VLMInfo) -> Path | None:
    """Save the model as a checkpoint folder; a sharded one is gathered on rank 0 first.

    Every rank must call it (the gathering is a collective); only rank 0 writes.
    """
    from trainer.distributed.checkpoint import full_model_state
    from trainer.distributed.env import current_env
    from trainer.distributed.fsdp import is_sharded

    env = current_env()
    if not is_sharded(model):
        return save_vlm(model, task.tokenizer, out, info)
    state = full_model_state(model, env)
    if not env.is_main:
        return None
    # save_pretrained of the sharded module would write DTensors: write a gathered copy
    fresh = build_tiny_model(task.tiny, task.tokenizer)
    fresh.load_state_dict(state)
    return save_vlm(fresh, task.tokenizer, out, info)
