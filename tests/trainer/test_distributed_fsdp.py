"""apply_fsdp's pieces in one process: block discovery and the FSDP + QLoRA constraint."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainer.distributed.fsdp import (  # noqa: E402
    FSDPUnsupportedError,
    check_qlora,
    find_block_lists,
    mixed_precision_policy,
)


def test_blocks_of_the_vlm_and_a_causal_lm_are_found() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.distributed.vlm import PRESETS
    from trainer.vlm.model import TinyVLMConfig, build_tiny_model, build_tokenizer

    vlm = build_tiny_model(TinyVLMConfig(**PRESETS["test"]), build_tokenizer())
    names = {name for name, _ in find_block_lists(vlm)}
    assert names == {"model.vision_model.encoder.layers", "model.text_model.layers"}
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2))  # fmt: skip
    assert [n for n, _ in find_block_lists(lm)] == ["model.layers"]


def test_policy_is_fp32_on_cpu_and_bf16_with_fp32_reduce_on_gpu() -> None:
    assert mixed_precision_policy("auto", "cpu").param_dtype is None
    gpu = mixed_precision_policy("auto", "cuda")
    assert gpu.param_dtype == torch.bfloat16 and gpu.reduce_dtype == torch.float32


def test_qlora_constraint_storage_dtype_must_equal_param_dtype(tmp_path) -> None:
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=q, device_map="cpu")
    # fp32 on CPU: no cast of the packed bytes, so sharding is allowed
    assert check_qlora(model, "cpu", mixed_precision_policy("fp32", "cpu")) is True
    with pytest.raises(FSDPUnsupportedError, match="storage dtype = the load dtype"):
        check_qlora(model, "cpu", mixed_precision_policy("bf16", "cpu"))
    model.eval()
    with pytest.raises(FSDPUnsupportedError, match="train mode"):
        model(input_ids=torch.zeros(1, 4, dtype=torch.long))
