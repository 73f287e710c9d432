"""``vlm-eval``: exact-match accuracy of a VLM (transformers checkpoint or GGUF) on a VQA folder.

Every VLM figure SiteHawk reports comes from :func:`evaluate`: ``accuracy``, ``majority_baseline``,
``n``, ``per_type`` (question or hazard type → accuracy) and, with a reference model,
``agreement`` (share of identical normalised answers). Data with gate views (``--gate-views``)
adds ``per_view`` (clear / blur / cut / blur+cut → accuracy); a GGUF model, which reports the
probability of its answer, adds ``confident``: the share of answers at the gate's
``min_confidence`` or above and their accuracy — the only answers that may suppress an alert.
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
        return [text for text, _ in self.answer_scored(images_rgb, questions)]

    def answer_scored(
        self, images_rgb: Sequence[np.ndarray], questions: Sequence[str]
    ) -> list[tuple[str, float | None]]:
        """Answers with the probability of their first token (the edge gate's confidence)."""
        out = []
        for img, q in zip(images_rgb, questions, strict=True):
            reply = self.backend.ask(img, q)
            out.append((reply.text or "", reply.confidence))
        return out


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
    scored_fn = getattr(answerer, "answer_scored", None)
    if callable(scored_fn):
        scored = scored_fn(images, questions)
    else:
        scored = [(a, None) for a in answerer.answer(images, questions)]
    predicted = [normalize_answer(a) for a, _ in scored]
    rows = [
        {
            "id": s.id,
            "type": s.type,
            "view": s.view,
            "answer": s.answer,
            "predicted": p,
            "correct": p == s.answer,
            "confidence": c,
        }
        for s, p, (_, c) in zip(samples, predicted, scored, strict=True)
    ]
    result: dict[str, Any] = {
        "accuracy": round(float(np.mean([r["correct"] for r in rows])), 4),
        "majority_baseline": round(majority_baseline(samples), 4),
        "n": len(samples),
        "per_type": _per_type(rows),
    }
    if any(r["view"] != "clear" for r in rows):
        result["per_view"] = _per_key(rows, "view")
    if all(r["confidence"] is not None for r in rows):
        # what the gate acts on: only answers at DEFAULT_MIN_CONFIDENCE or above may suppress
        from edge.alerts.vlm_gate import DEFAULT_MIN_CONFIDENCE

        sure = [r for r in rows if r["confidence"] >= DEFAULT_MIN_CONFIDENCE]
        result["confident"] = {
            "min_confidence": DEFAULT_MIN_CONFIDENCE,
            "share": round(len(sure) / len(rows), 4),
            "accuracy": round(float(np.mean([r["correct"] for r in sure])), 4) if sure else None,
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
    return _per_key(rows, "type")


def _per_key(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(bool(r["correct"]))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(groups.items())}


def write_json(result: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
