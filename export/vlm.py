"""Export the VLM to llama.cpp: a text GGUF, an mmproj GGUF and a manifest; check parity.

Written with PyPI ``gguf``'s :class:`~gguf.GGUFWriter` and its tensor-name maps (no converter
script, no network): the language model as a ``llama`` GGUF (Q/K rows permuted to llama.cpp's
rotary layout, the tokenizer as a SentencePiece-style vocabulary without a space prefix, the chat
template), the vision tower + projector as a ``clip`` GGUF with projector type ``idefics3``. The
manifest (``vlm.manifest.json``) names both files with their sha256, the prompt layout, the
source checkpoint and the versions; the edge backend (:mod:`edge.vlm.backend`) reads it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.vlm.backend import MANIFEST_NAME, MANIFEST_SCHEMA, MMPROJ_NAME, TEXT_NAME

F32_KV_CACHE = 0  # GGML_TYPE_F32


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("sitehawk", "torch", "transformers", "peft", "gguf", "llama-cpp-python"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def _rope_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's half-split rotary layout → llama.cpp's interleaved pairs (rows of Q or K)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _vocab(tokenizer: Any) -> tuple[list[bytes], list[float], list[int]]:
    """Tokens, scores and llama.cpp token types of a byte-fallback BPE tokenizer."""
    import gguf

    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids)
    added = {i for i, t in tokenizer.added_tokens_decoder.items() if not t.special}
    tokens, scores, types = [], [], []
    for i in range(len(by_id)):
        text = by_id[i]
        if i == tokenizer.unk_token_id:
            kind = gguf.TokenType.UNKNOWN
        elif text.startswith("<0x") and len(text) == 6 and text.endswith(">"):
            kind = gguf.TokenType.BYTE
        elif i in special:
            kind = gguf.TokenType.CONTROL
        elif i in added:
            kind = gguf.TokenType.USER_DEFINED
        else:
            kind = gguf.TokenType.NORMAL
        tokens.append(text.encode("utf-8"))
        # BPE ids grow with merge order; llama.cpp merges the highest score first
        scores.append(-float(i) if kind == gguf.TokenType.NORMAL else 0.0)
        types.append(int(kind))
    return tokens, scores, types


def write_text_gguf(model: Any, tokenizer: Any, path: Path, chat_template: str) -> Path:
    """The language model as a ``llama`` GGUF (F32)."""
    import gguf

    tc = model.config.text_config
    n_head, n_kv = tc.num_attention_heads, tc.num_key_value_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("sitehawk-vlm")
    w.add_context_length(tc.max_position_embeddings)
    w.add_embedding_length(tc.hidden_size)
    w.add_block_count(tc.num_hidden_layers)
    w.add_feed_forward_length(tc.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(tc.rms_norm_eps)
    w.add_rope_freq_base(float(getattr(tc, "rope_theta", None) or tc.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(tc.hidden_size // n_head)
    w.add_vocab_size(len(tokenizer))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types = _vocab(tokenizer)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(False)
    w.add_bos_token_id(tokenizer.bos_token_id)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_eot_token_id(tokenizer.eos_token_id)
    w.add_unk_token_id(tokenizer.unk_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template)

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, tc.num_hidden_layers)
    state = model.state_dict()
    for name, tensor in state.items():
        if name.startswith("model.text_model."):
            hf = "model." + name[len("model.text_model.") :]
        elif name.startswith("lm_head."):
            hf = name
        else:
            continue
        new = name_map.get_name(hf, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"no GGUF name for text tensor {name}")
        data = tensor.detach().float().cpu().numpy()
        if hf.endswith("self_attn.q_proj.weight"):
            data = _rope_permute(data, n_head)
        elif hf.endswith("self_attn.k_proj.weight"):
            data = _rope_permute(data, n_kv)
        w.add_tensor(new, np.ascontiguousarray(data, dtype=np.float32))
    _finish(w)
    return path


def write_mmproj_gguf(
    model: Any, path: Path, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Path:
    """Vision tower + pixel-shuffle projector as a ``clip`` GGUF (projector ``idefics3``)."""
    import gguf

    vc = model.config.vision_config
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_type(gguf.GGUFType.MMPROJ)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_clip_has_vision_encoder(True)
    w.add_clip_projector_type(gguf.VisionProjectorType.IDEFICS3)
    w.add_vision_projection_dim(model.config.text_config.hidden_size)
    w.add_vision_image_size(vc.image_size)
    w.add_vision_patch_size(vc.patch_size)
    w.add_vision_embedding_length(vc.hidden_size)
    w.add_vision_feed_forward_length(vc.intermediate_size)
    w.add_vision_block_count(vc.num_hidden_layers)
    w.add_vision_head_count(vc.num_attention_heads)
    w.add_vision_attention_layernorm_eps(vc.layer_norm_eps)
    w.add_vision_image_mean(list(mean))
    w.add_vision_image_std(list(std))
    w.add_vision_projector_scale_factor(model.config.scale_factor)
    w.add_vision_use_gelu(True)
    # the longest edge libmtmd resizes to: one tile at our image size
    w.add_vision_preproc_image_size(image_size)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, vc.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if not name.startswith(("model.vision_model.", "model.connector.")):
            continue
        new = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"no GGUF name for vision tensor {name}")
        w.add_tensor(new, np.ascontiguousarray(tensor.detach().float().cpu().numpy()))
    _finish(w)
    return path


def _finish(w: Any) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def trained_views(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The views the model learnt to judge (the manifest's ``trained_views``; the edge gate
    asks only about those): ``max_blur_px`` — motion blur in the model's image pixels —
    and ``partly_out_of_view``. Gate views (``--gate-views``) in any training stage's data
    mean the model saw both; otherwise only still, whole objects."""
    from trainer.vlm.data import GATE_BLUR_PX

    seen = any(float(stage.get("gate_views", 0.0)) > 0.0 for stage in history)
    return {"max_blur_px": GATE_BLUR_PX[1] if seen else 0.0, "partly_out_of_view": seen}


def export_vlm(checkpoint: Path, out: Path) -> dict[str, Any]:
    """Write ``vlm.gguf``, ``vlm.mmproj.gguf`` and ``vlm.manifest.json`` into ``out``."""
    from trainer.vlm.model import CHAT_TEMPLATE, load_vlm

    checkpoint, out = Path(checkpoint), Path(out)
    model, layout = load_vlm(checkpoint)
    if model.config.text_config.model_type != "llama":
        raise ValueError(
            f"{checkpoint}: text model {model.config.text_config.model_type!r}; this exporter "
            "writes Llama language models (SmolVLM / Idefics3)"
        )
    out.mkdir(parents=True, exist_ok=True)
    template = getattr(layout.tokenizer, "chat_template", None) or CHAT_TEMPLATE
    text = write_text_gguf(model, layout.tokenizer, out / TEXT_NAME, template)
    mmproj = write_mmproj_gguf(
        model, out / MMPROJ_NAME, layout.image_size, layout.image_mean, layout.image_std
    )
    info_path = checkpoint / "sitehawk_vlm.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    weights = sorted(checkpoint.glob("*.safetensors"))
    manifest: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "format": "gguf",
        "architecture": "idefics3",
        "files": {
            "text": {"path": text.name, "sha256": _sha256(text), "bytes": text.stat().st_size},
            "mmproj": {
                "path": mmproj.name,
                "sha256": _sha256(mmproj),
                "bytes": mmproj.stat().st_size,
            },
        },
        "image_size_px": layout.image_size,
        "image_seq_len": layout.image_seq_len,
        "question_set": info.get("question_set"),
        "prompt": "User:<image>{question}<end_of_utterance>\\nAssistant:",
        "trained_views": trained_views(info.get("history", [])),
        "answers": "short canonical words (yes, no, numbers, colour names), greedy decoding",
        "source": {
            "checkpoint": str(checkpoint),
            "sha256": {p.name: _sha256(p) for p in weights},
            "history": info.get("history", []),
        },
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def logits_parity(
    checkpoint: Path, export_dir: Path, image_rgb: np.ndarray, question: str
) -> dict[str, Any]:
    """Max |Δ| of the next-token logits after a fixed prompt (llama.cpp with an F32 KV cache)."""
    import torch

    from edge.vlm.backend import LlamaCppBackend, VLMModelFiles
    from trainer.vlm.model import load_vlm

    model, layout = load_vlm(checkpoint)
    model.eval()
    ids = torch.tensor([layout.prompt_ids(question)])
    with torch.no_grad():
        ref = model(input_ids=ids, pixel_values=layout.pixel_values([image_rgb])).logits[0, -1]
    backend = LlamaCppBackend(VLMModelFiles.find(export_dir), n_threads=1, kv_f32=True)
    backend.load()
    try:
        got = backend.prompt_logits(image_rgb, question)
    finally:
        backend.close()
    ref_np = ref.float().numpy()
    return {
        "max_abs_diff": float(np.max(np.abs(ref_np - got))),
        "same_argmax": bool(int(ref_np.argmax()) == int(got.argmax())),
        "n_vocab": int(ref_np.shape[0]),
    }


def answer_parity(checkpoint: Path, export_dir: Path, data: Path, num: int = 200) -> dict[str, Any]:
    """Greedy answers of the GGUF vs the transformers model on held-out questions."""
    from trainer.vlm.evaluate import GGUFAnswerer, HFAnswerer, evaluate

    gguf_result, _ = evaluate(
        GGUFAnswerer(export_dir), data, reference=HFAnswerer.load(checkpoint), limit=num
    )
    return {
        "n": gguf_result["n"],
        "agreement_with_transformers": gguf_result["agreement"],
        "gguf_accuracy": gguf_result["accuracy"],
        "majority_baseline": gguf_result["majority_baseline"],
        "per_type": gguf_result["per_type"],
    }


def verify_vlm(checkpoint: Path, export_dir: Path, data: Path, num: int = 200) -> dict[str, Any]:
    """Both parity checks; the result is also written into the manifest (``parity``)."""
    from trainer.vlm.data import load_image_rgb, load_samples

    sample = load_samples(data)[0]
    logits = logits_parity(checkpoint, export_dir, load_image_rgb(data, sample), sample.question)
    answers = answer_parity(checkpoint, export_dir, data, num)
    parity = {"logits": logits, "answers": answers, "data": str(data)}
    path = Path(export_dir) / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["parity"] = parity
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return parity
