"""``vlm-eval``: exact-match accuracy of a VLM (transformers checkpoint or GGUF) on a VQA folder.

Every VLM figure SiteHawk reports comes from :func:`evaluate`: ``accuracy``, ``majority_baseline``,
``n``, ``per_type`` (question or hazard type → accuracy) and, with a reference model,
``agreement`` (share of identical normalised answers).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.vlm.questions import normalize_answer
from trainer.vlm.data import VQASample, load_image_rgb, load_samples, majority_baseline


class Answerer(Protocol):
    """Anything that answers questions about images."""

    def answer(self, images_rgb: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]: ...


class HFAnswerer:
    """Greedy answers of a transformers checkpoint (or an in-memory model)."""

    def __init__(self, model: Any, layout: Any):
        self.model = model
        self.layout = layout

    @classmethod
    def load(cls, path: Path) -> HFAnswerer:
        from trainer.vlm.model import load_vlm

        model, layout = load_vlm(path)
        return cls(model, layout)

    def answer(self, images_rgb: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        from trainer.vlm.train import answer_questions

        return answer_questions(self.model, self.layout, images_rgb, questions)


class GGUFAnswerer:
    """Greedy answers of an exported GGUF model through llama.cpp (the edge backend)."""

    def __init__(self, path: Path):
        from edge.vlm.backend import LlamaCppBackend, VLMModelFiles

        self.backend = LlamaCppBackend(VLMModelFiles.find(path), n_threads=1)
        self.backend.load()

    def answer(self, images_rgb: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
        return [
            self.backend.ask(img, q).text or ""
            for img, q in zip(images_rgb, questions, strict=True)
        ]


def is_gguf(path: Path) -> bool:
    """A ``.gguf`` file, or a folder holding an exported VLM (``vlm.manifest.json``)."""
    path = Path(path)
    return path.suffix == ".gguf" or (path.is_dir() and any(path.glob("*.manifest.json")))


def load_answerer(path: Path) -> Answerer:
    """A GGUF export or a transformers checkpoint directory."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such model file or directory")
    if is_gguf(path):
        return GGUFAnswerer(path)
    return HFAnswerer.load(path)


def evaluate(
    answerer: Answerer,
    folder: Path,
    *,
    samples: Sequence[VQASample] | None = None,
    reference: Answerer | None = None,
    limit: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score ``answerer`` on a VQA folder: (result JSON, per-sample rows)."""
    samples = list(samples if samples is not None else load_samples(folder))
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise ValueError(f"{folder}: no samples to evaluate")
    images = [load_image_rgb(folder, s) for s in samples]
    questions = [s.question for s in samples]
    predicted = [normalize_answer(a) for a in answerer.answer(images, questions)]
    rows = [
        {"id": s.id, "type": s.type, "answer": s.answer, "predicted": p, "correct": p == s.answer}
        for s, p in zip(samples, predicted, strict=True)
    ]
    result: dict[str, Any] = {
        "accuracy": round(float(np.mean([r["correct"] for r in rows])), 4),
        "majority_baseline": round(majority_baseline(samples), 4),
        "n": len(samples),
        "per_type": _per_type(rows),
    }
    if reference is not None:
        ref = [normalize_answer(a) for a in reference.answer(images, questions)]
        for r, a in zip(rows, ref, strict=True):
            r["reference"] = a
        result["agreement"] = round(
            float(np.mean([a == p for a, p in zip(ref, predicted, strict=True)])), 4
        )
    return result, rows


def _per_type(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    types: dict[str, list[bool]] = {}
    for r in rows:
        types.setdefault(r["type"], []).append(bool(r["correct"]))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(types.items())}


def write_json(result: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
