"""VLM answer latency: llama.cpp (GGUF + mmproj, in-process) vs transformers eager, same model.

    python benchmarks/vlm.py --checkpoint runs/vlm/qlora --gguf models/vlm \\
        --data runs/vlm/hazard_heldout --num 50

Prints a table (per-question latency p50/p90, generated tokens/s, speed-up) and writes JSON
(``benchmarks/results/vlm.json`` by default). Both run one CPU thread, greedy, up to 4 tokens.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _stats(latencies_s: list[float], tokens: int) -> dict[str, float]:
    lat = np.asarray(latencies_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "mean_ms": round(float(lat.mean()), 2),
        "tokens_per_s": round(tokens / max(float(np.sum(latencies_s)), 1e-9), 1),
    }


def run(checkpoint: Path, gguf: Path, data: Path, num: int) -> dict[str, Any]:
    """Time both runtimes on the first ``num`` questions of ``data``."""
    import torch

    from edge.vlm.backend import LlamaCppBackend, VLMModelFiles
    from trainer.vlm.data import load_image_rgb, load_samples
    from trainer.vlm.model import load_vlm
    from trainer.vlm.train import answer_questions

    torch.set_num_threads(1)
    samples = load_samples(data)[:num]
    images = [load_image_rgb(data, s) for s in samples]
    model, layout = load_vlm(checkpoint)
    hf_lat, hf_tokens = [], 0
    answer_questions(model, layout, images[:1], [samples[0].question])  # warm-up
    for img, s in zip(images, samples, strict=True):
        t0 = time.perf_counter()
        ans = answer_questions(model, layout, [img], [s.question], batch_size=1)[0]
        hf_lat.append(time.perf_counter() - t0)
        hf_tokens += len(layout.text_ids(" " + ans)) + 1
    backend = LlamaCppBackend(VLMModelFiles.find(gguf), n_threads=1)
    backend.load()
    cpp_lat, cpp_tokens = [], 0
    try:
        backend.ask(images[0], samples[0].question)  # warm-up
        for img, s in zip(images, samples, strict=True):
            t0 = time.perf_counter()
            reply = backend.ask(img, s.question)
            cpp_lat.append(time.perf_counter() - t0)
            cpp_tokens += len(layout.text_ids(" " + (reply.text or ""))) + 1
    finally:
        backend.close()
    hf, cpp = _stats(hf_lat, hf_tokens), _stats(cpp_lat, cpp_tokens)
    return {
        "questions": len(samples),
        "transformers_eager": hf,
        "llama_cpp": cpp,
        "speedup_p50": round(hf["p50_ms"] / max(cpp["p50_ms"], 1e-9), 2),
        "threads": 1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="transformers checkpoint")
    p.add_argument("--gguf", type=Path, required=True, help="its GGUF export folder")
    p.add_argument("--data", type=Path, required=True, help="VQA folder")
    p.add_argument("--num", type=int, default=50, help="questions (default: 50)")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/vlm.json"))
    args = p.parse_args()
    result = run(args.checkpoint, args.gguf, args.data, args.num)
    print(f"{'runtime':20s} {'p50 ms':>8s} {'p90 ms':>8s} {'tokens/s':>9s}")
    for name in ("transformers_eager", "llama_cpp"):
        r = result[name]
        print(f"{name:20s} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['tokens_per_s']:9.1f}")
    print(f"llama.cpp speed-up (p50): {result['speedup_p50']}×")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
