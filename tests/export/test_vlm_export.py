"""GGUF export of the VLM: llama.cpp (llama-cpp-python + libmtmd) answers like transformers."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from edge.sim.generate import generate_site  # noqa: E402
from edge.sim.render import Renderer  # noqa: E402
from edge.sim.world import Site  # noqa: E402
from edge.vlm.backend import LlamaCppBackend, VLMModelFiles  # noqa: E402
from export import cli  # noqa: E402
from export.vlm import export_vlm, logits_parity, trained_views  # noqa: E402
from trainer.vlm.data import _pose_towards  # noqa: E402
from trainer.vlm.model import (  # noqa: E402
    TinyVLMConfig,
    VLMInfo,
    build_tiny_model,
    build_tokenizer,
    load_vlm,
    save_vlm,
)
from trainer.vlm.train import answer_questions  # noqa: E402

TINY = TinyVLMConfig(
    vision_hidden=32,
    vision_layers=2,
    vision_heads=2,
    text_hidden=64,
    text_layers=2,
    text_heads=4,
    text_intermediate=160,
)
QUESTION = "is the worker in the centre wearing a hard hat?"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_tiny_model(TINY, tok, seed=3)
    out = tmp_path_factory.mktemp("vlm_ckpt")
    return save_vlm(model, tok, out, VLMInfo(TINY.image_size, TINY.image_seq_len, "x"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("vlm_gguf")
    export_vlm(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def frame():
    """A worker seen by the virtual PTZ camera, rendered at the model's size (RGB)."""
    site = Site(generate_site(7))
    renderer = Renderer(site)
    xy = site.workers_at(30.0).xy[0]
    pose = _pose_towards(renderer, (xy[0], xy[1], 0.9), 4.0)
    image = renderer.render(pose, 30.0, 96, 96, truth=False)[0].image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def test_manifest_names_files_with_sha256(exported):
    manifest = json.loads((exported / "vlm.manifest.json").read_text())
    assert manifest["schema"] == "sitehawk.vlm/1" and manifest["format"] == "gguf"
    assert {"text", "mmproj"} == set(manifest["files"])
    assert {"torch", "transformers", "gguf"} <= set(manifest["versions"])
    # trained without gate views: the edge gate asks about still, whole views only
    assert manifest["trained_views"] == {"max_blur_px": 0.0, "partly_out_of_view": False}
    assert trained_views([{"stage": "qlora", "gate_views": 0.35}]) == {
        "max_blur_px": 24.0,
        "partly_out_of_view": True,
    }
    files = VLMModelFiles.find(exported)  # verifies the sha256 of both files
    assert files.text.name == "vlm.gguf" and files.mmproj.name == "vlm.mmproj.gguf"
    (exported / "vlm.mmproj.gguf").write_bytes(files.mmproj.read_bytes() + b"\0")
    try:
        with pytest.raises(Exception, match="sha256 mismatch"):
            VLMModelFiles.find(exported)
    finally:
        (exported / "vlm.mmproj.gguf").write_bytes(files.mmproj.read_bytes()[:-1])


def test_llama_cpp_answers_a_rendered_frame_like_transformers(checkpoint, exported, frame):
    backend = LlamaCppBackend(VLMModelFiles.find(exported), n_threads=1, kv_f32=True)
    backend.load()
    try:
        answer = backend.ask(frame, QUESTION)
        other = backend.ask(frame[::-1].copy(), QUESTION)
    finally:
        backend.close()
    assert answer.error is None and answer.latency_ms > 0 and 0 < answer.confidence <= 1
    model, layout = load_vlm(checkpoint)
    expected = answer_questions(model, layout, [frame, frame[::-1].copy()], [QUESTION] * 2)
    assert [answer.text, other.text] == expected


def test_one_batch_prompt_gives_libmtmds_logits_bit_for_bit(exported, frame):
    """The backend's fast path (the prompt in one batch, the image encoded once for tile and
    overview, the prompt's prefix kept in the KV cache) against libmtmd's own helper."""
    backend = LlamaCppBackend(VLMModelFiles.find(exported), n_threads=1)
    backend.load()
    try:
        assert backend.fast_path  # F32 token table, one-tile grid: load() enabled it
        rng = np.random.default_rng(1)
        for i in range(4):  # odd sizes too: libmtmd resizes to one tile either way
            image = rng.integers(0, 256, (40 + 37 * i, 96 + 11 * i, 3), dtype=np.uint8)
            question = [QUESTION, "is there smoke or fire in the image?"][i % 2]
            helper = backend._eval_prompt(image, question, fast=False)
            for _ in range(2):  # the second time with the prefix reused from the KV cache
                fast = backend._eval_prompt(image, question, fast=True)
                assert np.array_equal(fast, helper)
    finally:
        backend.close()


def test_logits_match_transformers_with_f32_kv_cache(checkpoint, exported, frame):
    parity = logits_parity(checkpoint, exported, frame, QUESTION)
    assert parity["max_abs_diff"] < 1e-2 and parity["same_argmax"]


def test_mtmd_chat_handler_runs_the_export(exported, frame):
    """llama-cpp-python's own multimodal chat API, with the chat template from the GGUF."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    handler = MTMDChatHandler(str(exported / "vlm.mmproj.gguf"), verbose=False)
    llm = llama_cpp.Llama(
        str(exported / "vlm.gguf"), chat_handler=handler, n_ctx=256, n_threads=1, verbose=False
    )
    png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    reply = llm.create_chat_completion(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
        temperature=0.0,
        max_tokens=4,
        repeat_penalty=1.0,
    )
    backend = LlamaCppBackend(VLMModelFiles.find(exported), n_threads=1)
    backend.load()
    try:
        ours = backend.ask(frame, QUESTION).text
    finally:
        backend.close()
        llm.close()
    assert reply["choices"][0]["message"]["content"].strip() == ours


def test_export_cli(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("export.vlm_cli",))
    assert cli.main(["vlm", str(checkpoint), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "vlm.manifest.json").is_file()
    assert cli.main(["vlm", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_vlm_eval_of_a_gguf_reports_confident_answers_and_views(exported, tmp_path):
    """On gate-view data, vlm-eval of the GGUF adds ``per_view`` and ``confident`` (the share of
    answers at the gate's min_confidence and their accuracy)."""
    from trainer.vlm.data import build_dataset
    from trainer.vlm.evaluate import GGUFAnswerer, evaluate

    build_dataset("hazard", 8, list(range(6)), tmp_path / "gv", progress=False, gate_views=1.0)
    answerer = GGUFAnswerer(exported)
    result, rows = evaluate(answerer, tmp_path / "gv")
    assert set(result["per_view"]) == {r["view"] for r in rows} and "clear" in result["per_view"]
    assert all(0.0 < r["confidence"] <= 1.0 for r in rows)
    sure = [r for r in rows if r["confidence"] >= 0.8]
    assert result["confident"]["share"] == pytest.approx(len(sure) / len(rows), abs=1e-4)
