"""The VLM on the trainer side: prompt layout, pretrain → eval CLI, QLoRA with flowing gradients."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainer import cli  # noqa: E402
from trainer.vlm.data import build_dataset, load_samples  # noqa: E402
from trainer.vlm.model import (  # noqa: E402
    PromptLayout,
    TinyVLMConfig,
    VLMInfo,
    build_tiny_model,
    build_tokenizer,
    save_vlm,
)
from trainer.vlm.train import OptimConfig, VQABatches, train_loop  # noqa: E402

TINY = TinyVLMConfig(
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    text_hidden=48,
    text_layers=2,
    text_heads=2,
    text_intermediate=96,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa")
    build_dataset("hazard", 8, list(range(6)), root / "hazard", progress=False)
    return root / "hazard"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_tiny_model(TINY, tok)
    out = tmp_path_factory.mktemp("ckpt")
    info = VLMInfo(TINY.image_size, TINY.image_seq_len, "sitehawk.vqa/1")
    return save_vlm(model, tok, out, info)


def test_prompt_follows_libmtmd_idefics3_layout():
    tok = build_tokenizer()
    layout = PromptLayout.from_tokenizer(tok, TINY.image_seq_len, TINY.image_size)
    ids = layout.prompt_ids("is there smoke or fire in the image?")
    n = TINY.image_seq_len
    assert ids[0] == tok.bos_token_id
    assert ids.count(layout.image) == 2 * n  # the tile, then the overview
    start = ids.index(layout.fake)
    block = ids[start : start + 2 * n + 6]
    assert block[:2] == [layout.fake, layout.row_col_1_1]
    assert block[2 + n : 5 + n] == [layout.double_newline, layout.fake, layout.global_img]
    assert block[-1] == layout.fake
    # "\n" and "\n\n" are single vocabulary entries (libmtmd looks them up by text)
    assert tok("\n\n", add_special_tokens=False)["input_ids"] == [layout.double_newline]
    assert tok.decode(layout.answer_ids("yes"), skip_special_tokens=True).strip() == "yes"


def test_shared_tile_and_overview_gives_the_same_loss_and_gradients(checkpoint, data):
    """build_tiny_model encodes each (tile, overview) pair once: same loss, same gradients."""
    from trainer.vlm.model import load_vlm, share_tile_and_overview

    torch.manual_seed(0)
    plain, layout = load_vlm(checkpoint)  # load_vlm leaves the vision tower unhooked
    shared, _ = load_vlm(checkpoint)
    share_tile_and_overview(shared)
    calls = []  # images the tower runs on, then rows of its output (hooks run in order)
    tower = shared.model.vision_model
    tower.register_forward_pre_hook(
        lambda _m, args, kwargs: calls.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    tower.register_forward_hook(
        lambda _m, args, kwargs, out: calls.append(out.last_hidden_state.shape[0]),
        with_kwargs=True,
    )
    batch = next(iter(VQABatches(data, load_samples(data), layout, 4, seed=0)))
    losses = []
    for model in (plain, shared):
        model.train()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
    assert calls == [4, 8]  # 4 images through the tower, output for all 8 tiles
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, a), b in zip(plain.named_parameters(), shared.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_eval_cli_writes_the_issue_keys(tmp_path, checkpoint, data, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("trainer.vlm.cli",))
    out = tmp_path / "eval.json"
    argv = ["vlm-eval", "--model", str(checkpoint), "--data", str(data), "--json", str(out)]
    assert cli.main([*argv, "--reference", str(checkpoint)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"accuracy", "majority_baseline", "n", "per_type", "agreement"}
    assert result["n"] == 8 and result["agreement"] == 1.0 and result["majority_baseline"] == 0.5
    assert set(result["per_type"]) == {"no_helmet", "no_vest", "zone_intrusion", "fire_smoke"}
    bad = ["vlm-eval", "--model", str(tmp_path / "nope"), "--data", str(data), "--json", str(out)]
    assert cli.main(bad) == 2
    assert "no such model" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_cli_writes_checkpoint_and_loss_curve(tmp_path, data, monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("trainer.vlm.cli",))
    ckpt = tmp_path / "base"
    argv = ["vlm-pretrain", "--data", str(data), "--out", str(ckpt)]
    assert cli.main([*argv, "--steps", "2", "--batch-size", "4", "--no-progress"]) == 0
    assert (ckpt / "config.json").is_file() and (ckpt / "loss.png").stat().st_size > 1000
    history = json.loads((ckpt / "train_history.json").read_text())["history"]
    assert history[-1]["step"] == 2


def test_qlora_quantises_only_the_language_model_and_trains_adapters(checkpoint, data):
    bnb = pytest.importorskip("bitsandbytes")
    from trainer.vlm.qlora import QLoRAConfig, load_for_qlora

    torch.set_num_threads(1)
    model, layout = load_for_qlora(checkpoint, QLoRAConfig(rank=4))
    quantised = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and all(".text_model.layers." in n for n in quantised)
    vision = [(n, p) for n, p in model.named_parameters() if ".vision_model." in n]
    assert vision and not any(p.requires_grad for _, p in vision)
    assert not any(
        isinstance(m, bnb.nn.Linear4bit)
        for n, m in model.named_modules()
        if ".vision_model." in n or ".connector." in n
    )
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".text_model." in n for n in trainable)

    batches = VQABatches(data, load_samples(data), layout, batch_size=4)
    batch = next(iter(batches))
    model.train()  # before any forward: an eval-mode forward repacks the 4-bit weights
    model(**batch).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_B" in n}
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())
    model.zero_grad()

    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    history = train_loop(
        model, iter(batches), OptimConfig(steps=3, log_every=1, warmup_steps=1), progress=False
    )
    assert len(history) == 3
    moved = [
        float((p.detach() - before[n]).abs().max())
        for n, p in model.named_parameters()
        if "lora_B" in n
    ]
    assert min(moved) > 0  # every adapter was updated


def test_qlora_cli_merges_and_reports_before_after(tmp_path, checkpoint, data, monkeypatch):
    pytest.importorskip("peft")
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", ("trainer.vlm.cli",))
    out = tmp_path / "qlora"
    argv = ["vlm-qlora", "--base", str(checkpoint), "--data", str(data), "--eval-data", str(data)]
    assert (
        cli.main(
            [
                *argv,
                "--out",
                str(out),
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--rank",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads((out / "qlora_result.json").read_text())
    assert {"before", "after"} <= set(result)
    assert result["after"]["n"] == 8
    from trainer.vlm.model import load_vlm

    merged, _ = load_vlm(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_mirror_flips_the_drawn_share_the_same_on_every_rank(data):
    """--mirror: a sample's image is flipped left-right or not by (seed, step, sample) alone —
    the same whether one process collates the global batch or two ranks collate halves of it."""
    from trainer.vlm.data import load_image_rgb

    tok = build_tokenizer()
    layout = PromptLayout.from_tokenizer(tok, TINY.image_seq_len, TINY.image_size)
    samples = load_samples(data)
    plain = VQABatches(data, samples, layout, 4, seed=3)
    mirrored = VQABatches(data, samples, layout, 4, seed=3, mirror=0.5)
    flips = []
    for step in range(6):
        [a] = plain.rank_batches(step, 0, 1, 1)
        [b] = mirrored.rank_batches(step, 0, 1, 1)
        halves = [mirrored.rank_batches(step, r, 2, 1)[0] for r in range(2)]
        torch.testing.assert_close(
            torch.cat([h["pixel_values"] for h in halves]), b["pixel_values"]
        )
        assert torch.equal(a["input_ids"], b["input_ids"])  # questions and answers unchanged
        for row in range(4):
            same = torch.equal(a["pixel_values"][row], b["pixel_values"][row])
            flipped = torch.equal(a["pixel_values"][row].flip(-1), b["pixel_values"][row])
            assert same or flipped
            flips.append(flipped and not same)
    assert 0 < sum(flips) < len(flips)  # some mirrored, some not
    image = load_image_rgb(data, samples[0])
    assert not (image[:, ::-1] == image).all()  # the renders are not symmetric themselves
    with pytest.raises(ValueError, match="mirror"):
        VQABatches(data, samples, layout, 4, mirror=1.5)
