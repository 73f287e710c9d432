"""The SiteHawk VLM: an Idefics3 (SmolVLM) model, its local tokenizer, and its prompt layout.

Idefics3 is the architecture because llama.cpp's multimodal runtime (libmtmd) runs it end to end
on a CPU: the language model is a plain Llama, the vision tower a SigLIP-style ViT, and the
projector a pixel shuffle + linear layer. The tiny model here is built from a config with a
tokenizer made locally (nothing is downloaded); a real SmolVLM checkpoint directory loads with the
same :func:`load_vlm`.

The prompt layout is the one libmtmd builds for Idefics3, so that the exported GGUF sees exactly
the token sequence the model was trained on: an image of ``image_size`` pixels becomes one tile
followed by the overview (the same pixels twice)::

    <s>User:<fake_token_around_image><row_1_col_1><image>×N\\n\\n<fake_token_around_image>
    <global-img><image>×N<fake_token_around_image>QUESTION<end_of_utterance>\\nAssistant: ANSWER
    <end_of_utterance>

The tokenizer is a byte-fallback BPE over ``▁``-marked words without a dummy prefix, so it maps to
a llama.cpp SentencePiece ("llama") vocabulary with ``add_space_prefix = false`` token for token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
FAKE_IMAGE = "<fake_token_around_image>"
IMAGE = "<image>"
GLOBAL_IMAGE = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"
#: Tile markers mtmd writes for a grid of up to 4×4 tiles (only 1×1 is used at our image size).
ROW_COL = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, FAKE_IMAGE, IMAGE, GLOBAL_IMAGE, END_OF_UTTERANCE, *ROW_COL]
#: Added (user-defined, not special) tokens mtmd looks up by text: missing ones abort decoding.
NEWLINE_TOKENS = ["\n", "\n\n"]
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
META = "▁"

#: The chat template written into the tokenizer and the GGUF (llama-cpp-python's MTMD handler
#: renders it, replacing each image part by its media marker).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}User:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<end_of_utterance>\n"
    "{% else %}Assistant: {{ message['content'] }}<end_of_utterance>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass
class TinyVLMConfig:
    """Size of the tiny Idefics3 built from scratch (a real checkpoint brings its own config)."""

    image_size: int = 96
    """Image side in pixels (one tile; the dataset renders at this size)."""
    patch_size: int = 12
    """ViT patch side in pixels (12 → an 8×8 grid at 96 px: a helmet spans about one patch;
    16 image tokens after the pixel shuffle). 8-px patches (36 tokens) were tried for the zone
    question and did not help it (docs/vlm.md, session 7); libmtmd's projector needs a
    shuffle factor above 1, so more tokens can only come from smaller patches."""
    scale_factor: int = 2
    """Pixel-shuffle factor of the projector: image tokens = (image_size/patch_size/scale)²."""
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 384
    """Must differ from text_hidden and vision FFN from vision_hidden: libmtmd swaps
    FFN weights whose shapes look transposed."""
    max_positions: int = 512
    init_scale: float = 3.0
    """Multiplier on the default (std 0.02) init of every 2-D weight except embeddings: at
    0.02 the answer ignores the image for thousands of steps (attention stays uniform); ×3
    learns "is there a worker" in ~150 steps (measured, batch 16)."""

    @property
    def image_seq_len(self) -> int:
        return (self.image_size // self.patch_size // self.scale_factor) ** 2


# ------------------------------------------------------------------------------- tokenizer
def _prompt_words() -> list[str]:
    """Texts the tokenizer is trained on: every question, answer and template word."""
    from edge.vlm.questions import HAZARD_QUESTIONS
    from trainer.vlm.data import COLOR_NAMES, GENERAL_QUESTIONS

    texts = ["User:", "Assistant:", " yes", " no", " none", "yes", "no"]
    texts += [q.question for q in HAZARD_QUESTIONS.values()]
    texts += list(GENERAL_QUESTIONS.values())
    texts += [f" {c}" for c in COLOR_NAMES] + [f" {k}" for k in ("excavator", "crane", "truck")]
    texts += [f" {i}" for i in range(10)]
    texts += ["is the machine working?", "what is in the image?", "how many machines are there?"]
    return texts


def build_tokenizer(extra_texts: Iterable[str] = ()) -> Any:
    """A byte-fallback BPE tokenizer for the question set, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="never")
    tok.decoder = decoders.Sequence(
        [decoders.Replace(META, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    alphabet = [chr(c) for c in range(32, 127)] + [META]
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS + BYTE_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    texts = [*_prompt_words(), *extra_texts]
    # a few repetitions so whole words win their merges
    tok.train_from_iterator(texts * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=END_OF_UTTERANCE,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.add_tokens(NEWLINE_TOKENS)  # added, not special: always matched, even when unparsed
    fast.chat_template = CHAT_TEMPLATE
    return fast


# --------------------------------------------------------------------------------- prompts
@dataclass
class PromptLayout:
    """Token ids of the prompt around an image, as libmtmd lays it out for Idefics3."""

    bos: int
    eou: int
    pad: int
    image: int
    fake: int
    global_img: int
    row_col_1_1: int
    newline: int
    double_newline: int
    image_seq_len: int
    image_size: int
    image_mean: tuple[float, float, float] = IMAGE_MEAN
    image_std: tuple[float, float, float] = IMAGE_STD
    tokenizer: Any = field(default=None, repr=False)

    @classmethod
    def from_tokenizer(
        cls, tokenizer: Any, image_seq_len: int, image_size: int, **kw: Any
    ) -> PromptLayout:
        ids = tokenizer.convert_tokens_to_ids
        vocab = tokenizer.get_vocab()
        missing = [t for t in (FAKE_IMAGE, IMAGE, GLOBAL_IMAGE, *NEWLINE_TOKENS) if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks the tokens libmtmd needs: {missing!r}")
        return cls(
            bos=tokenizer.bos_token_id,
            eou=ids(END_OF_UTTERANCE) if END_OF_UTTERANCE in vocab else tokenizer.eos_token_id,
            pad=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
            image=ids(IMAGE),
            fake=ids(FAKE_IMAGE),
            global_img=ids(GLOBAL_IMAGE),
            row_col_1_1=ids("<row_1_col_1>"),
            newline=ids("\n"),
            double_newline=ids("\n\n"),
            image_seq_len=image_seq_len,
            image_size=image_size,
            tokenizer=tokenizer,
            **kw,
        )

    def text_ids(self, text: str) -> list[int]:
        """Plain text to ids, no BOS (special and added tokens inside are recognised)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def image_block(self) -> list[int]:
        n = self.image_seq_len
        return (
            [self.fake, self.row_col_1_1]
            + [self.image] * n
            + [self.double_newline, self.fake, self.global_img]
            + [self.image] * n
            + [self.fake]
        )

    def prompt_ids(self, question: str) -> list[int]:
        """The ids up to and including ``Assistant:`` (generation starts after it)."""
        return (
            [self.bos]
            + self.text_ids("User:")
            + self.image_block()
            + self.text_ids(question)
            + [self.eou, self.newline]
            + self.text_ids("Assistant:")
        )

    def answer_ids(self, answer: str) -> list[int]:
        return self.text_ids(" " + answer) + [self.eou]

    def pixel_values(self, images_rgb: Sequence[np.ndarray]) -> Any:
        """(B, 2, 3, H, W) float tensor: each image as its tile and its overview."""
        import torch

        size = self.image_size
        out = []
        for img in images_rgb:
            if img.shape[:2] != (size, size):
                raise ValueError(f"image is {img.shape[1]}×{img.shape[0]}, the model takes {size}²")
            x: Any = img.astype(np.float32) / 255.0
            x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(
                self.image_std, np.float32
            )
            out.append(x.transpose(2, 0, 1))
        pv = torch.from_numpy(np.stack(out))[:, None]
        return pv.expand(-1, 2, -1, -1, -1).contiguous()


# ----------------------------------------------------------------------------------- model
def build_tiny_model(cfg: TinyVLMConfig, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised tiny Idefics3ForConditionalGeneration."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    torch.manual_seed(seed)
    vocab_size = len(tokenizer)
    config = Idefics3Config(
        vision_config={
            "hidden_size": cfg.vision_hidden,
            "intermediate_size": cfg.vision_hidden * 4,
            "num_hidden_layers": cfg.vision_layers,
            "num_attention_heads": cfg.vision_heads,
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        text_config={
            "model_type": "llama",
            # llama.cpp's converter and our GGUF writer read the text model as a plain Llama
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": vocab_size,
            "hidden_size": cfg.text_hidden,
            "intermediate_size": cfg.text_intermediate,
            "num_hidden_layers": cfg.text_layers,
            "num_attention_heads": cfg.text_heads,
            "num_key_value_heads": cfg.text_heads,
            "max_position_embeddings": cfg.max_positions,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE),
            "pad_token_id": tokenizer.pad_token_id,
        },
        scale_factor=cfg.scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and "embed" not in name:
                param.mul_(cfg.init_scale)
    text_config: Any = config.text_config
    model.generation_config.eos_token_id = text_config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return share_tile_and_overview(model)


def share_tile_and_overview(model: Any) -> Any:
    """Run the vision tower once per image instead of once per tile *and* overview.

    The prompt feeds each image twice (libmtmd's tile + overview of one 96-px tile: identical
    pixels), so the vision tower sees pairs of equal images. Hooks on the vision tower pass only
    the first of each equal pair and repeat its output: the same activations and, through the
    repeat, the same gradients (the sum over both copies) — 10-20 % less compute per training
    step. Batches whose pairs differ (a real multi-tile checkpoint) run unchanged. Idempotent;
    the hooks are not saved with the model. :func:`build_tiny_model` applies it (pretraining);
    :func:`load_vlm` does not, so evaluation, export parity and the benchmark run the model as
    transformers ships it.
    """
    vision = model.get_submodule("model.vision_model")
    if getattr(vision, "_sitehawk_shared_tiles", False):
        return model
    state = {"halved": False}

    def pre(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        pv = kwargs.get("pixel_values", args[0] if args else None)
        state["halved"] = False
        if pv is None or pv.shape[0] % 2 or not bool((pv[0::2] == pv[1::2]).all()):
            return None
        state["halved"] = True
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = pv[0::2]
        else:
            args = (pv[0::2], *args[1:])
        mask = kwargs.get("patch_attention_mask")
        if mask is not None:
            kwargs["patch_attention_mask"] = mask[0::2]
        return args, kwargs

    def post(_module: Any, _args: Any, _kwargs: Any, output: Any) -> Any:
        if state["halved"]:
            output.last_hidden_state = output.last_hidden_state.repeat_interleave(2, dim=0)
            state["halved"] = False
        return output

    vision.register_forward_pre_hook(pre, with_kwargs=True)
    vision.register_forward_hook(post, with_kwargs=True)
    vision._sitehawk_shared_tiles = True
    return model


@dataclass
class VLMInfo:
    """What sitehawk records beside a checkpoint (``sitehawk_vlm.json``)."""

    image_size: int
    image_seq_len: int
    question_set: str
    tiny_config: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def save_vlm(model: Any, tokenizer: Any, out: Path, info: VLMInfo) -> Path:
    """Save model, tokenizer and :class:`VLMInfo` into ``out`` (a normal HF checkpoint dir)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "sitehawk_vlm.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return out


def load_vlm(path: Path, *, dtype: Any = None, quantization_config: Any = None) -> tuple[Any, Any]:
    """Load a checkpoint directory: (model, :class:`PromptLayout`).

    Works for the tiny model saved by :func:`save_vlm` and for a real Idefics3 / SmolVLM
    checkpoint (its processor config gives the tile size and image token count).
    """
    from transformers import AutoTokenizer, Idefics3ForConditionalGeneration

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a model checkpoint directory (no config.json)")
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model = Idefics3ForConditionalGeneration.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path)
    info_path = path / "sitehawk_vlm.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        size, seq = int(info["image_size"]), int(info["image_seq_len"])
        mean, std = IMAGE_MEAN, IMAGE_STD
    else:  # a real checkpoint: tile size and token count from its processor config
        proc: dict[str, Any] = {}
        for name in ("preprocessor_config.json", "processor_config.json"):
            if (path / name).is_file():
                proc.update(json.loads((path / name).read_text()))
        vc: Any = model.config.vision_config
        size = int(proc.get("max_image_size", {}).get("longest_edge", vc.image_size))
        seq = int((vc.image_size // vc.patch_size // model.config.scale_factor) ** 2)
        mean = tuple(proc.get("image_mean", IMAGE_MEAN))
        std = tuple(proc.get("image_std", IMAGE_STD))
    layout = PromptLayout.from_tokenizer(tokenizer, seq, size, image_mean=mean, image_std=std)
    return model, layout
