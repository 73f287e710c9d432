"""Serve the experts from one process: each base loaded once, adapters switched per request.

All adapters on one base share its (4-bit) weights: ``PeftModel.set_adapter(name)`` switches
the active LoRA in place, which is what vLLM / LoRAX do at scale. Cost of an answer =
parameters of the model that answered × (prompt + completion tokens), in millions of
parameter-tokens (``COST_UNIT``) — proportional to the forward-pass compute.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.router.experts.train import MANIFEST, SCHEMA, load_base
from trainer.router.lm import Generation, generate

COST_UNIT = 1e6


@dataclass
class Answer:
    """An expert's answer with its token counts and cost."""

    expert: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost: float


def read_manifest(experts_dir: Path) -> dict[str, Any]:
    """``experts.json`` of an experts folder; errors name the file."""
    path = Path(experts_dir) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{experts_dir}: no {MANIFEST} (run `router experts` first)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {manifest.get('schema')!r}, expected {SCHEMA!r}")
    return manifest


def answer_cost(parameters: int, prompt_tokens: int, completion_tokens: int) -> float:
    """Relative compute of one request: parameters × tokens / :data:`COST_UNIT`."""
    return parameters * (prompt_tokens + completion_tokens) / COST_UNIT


class ExpertPool:
    """Every expert of an experts folder, ready to answer; thread-safe (one request at a time)."""

    def __init__(self, experts_dir: Path, quantize: bool | None = None) -> None:
        self.dir = Path(experts_dir)
        self.manifest = read_manifest(self.dir)
        self.quantize = bool(self.manifest.get("quantized", True) if quantize is None else quantize)
        self.names: list[str] = sorted(self.manifest["experts"])
        self._models: dict[str, Any] = {}  # base path -> PeftModel with its adapters
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self) -> ExpertPool:
        """Load each distinct base once and attach its adapters."""
        from peft import PeftModel

        for name in self.names:
            info = self.manifest["experts"][name]
            base, adapter = info["base"], str(self.dir / info["adapter"])
            if base not in self._models:
                model, tokenizer = load_base(Path(base), quantize=self.quantize)
                self._models[base] = PeftModel.from_pretrained(model, adapter, adapter_name=name)
                self._tokenizers[base] = tokenizer
            else:
                self._models[base].load_adapter(adapter, adapter_name=name)
        return self

    def parameters(self, name: str) -> int:
        """Parameter count of expert ``name`` (its base plus its adapter)."""
        return int(self.manifest["experts"][name]["parameters"])

    def answer(self, name: str, prompts: list[str], max_new_tokens: int = 32) -> list[Answer]:
        """``name``'s greedy answers to ``prompts`` (batched)."""
        if name not in self.names:
            raise ValueError(f"unknown expert {name!r}; choose from {self.names}")
        if not self._models:
            self.load()
        base = self.manifest["experts"][name]["base"]
        model, tokenizer = self._models[base], self._tokenizers[base]
        with self._lock:
            model.set_adapter(name)
            gens: list[Generation] = generate(model, tokenizer, prompts, max_new_tokens)
        params = self.parameters(name)
        return [
            Answer(
                name,
                g.text,
                g.prompt_tokens,
                g.completion_tokens,
                answer_cost(params, g.prompt_tokens, g.completion_tokens),
            )
            for g in gens
        ]
