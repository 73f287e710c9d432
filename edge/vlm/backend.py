"""VLM backends: llama.cpp in-process (GGUF + mmproj) and an OpenAI-compatible HTTP server.

Both answer one question about one RGB image, synchronously, with a typed :class:`VLMAnswer`;
:class:`~edge.vlm.worker.VLMWorker` runs them off the control loop. Backends follow the house
protocol (``load``, ``ask``, ``close``), are registered by name in :data:`BACKENDS` and import
their dependencies lazily: ``llama_cpp`` comes with ``pip install sitehawk[vlm]``; the HTTP
backend needs only the standard library. No torch, no transformers.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.vlm.questions import yes_no

MANIFEST_SCHEMA = "sitehawk.vlm/1"
MANIFEST_NAME = "vlm.manifest.json"
TEXT_NAME = "vlm.gguf"
MMPROJ_NAME = "vlm.mmproj.gguf"
#: The prompt the model was trained on (libmtmd replaces the marker by the image's tokens).
PROMPT_TEMPLATE = "User:{image}{question}<end_of_utterance>\nAssistant:"


@dataclass(frozen=True)
class VLMAnswer:
    """One answer, or why there is none.

    ``yes`` is True / False for an answer starting with yes / no, None otherwise or on error;
    ``confidence`` is the model's probability of its first answer token (None when unknown).
    ``error`` is None, ``"timeout"`` or ``"unavailable"`` (backend down, queue full, failure).
    """

    text: str | None
    yes: bool | None
    confidence: float | None
    latency_ms: float
    error: str | None = None
    detail: str | None = None

    @classmethod
    def failed(cls, error: str, latency_ms: float = 0.0, detail: str | None = None) -> VLMAnswer:
        return cls(None, None, None, latency_ms, error, detail)


class VLMBackend(Protocol):
    """What :class:`~edge.vlm.worker.VLMWorker` drives."""

    def load(self) -> None: ...

    def ask(self, image_rgb: np.ndarray, question: str) -> VLMAnswer: ...

    def close(self) -> None: ...


class VLMUnavailable(RuntimeError):
    """The backend cannot run here (missing package, bad model files, server down)."""


# ------------------------------------------------------------------------------ model files
@dataclass(frozen=True)
class VLMModelFiles:
    """A GGUF export: text model, multimodal projector and the manifest describing them."""

    text: Path
    mmproj: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def find(cls, path: Path, *, verify: bool = True) -> VLMModelFiles:
        """From an export folder or its text ``.gguf``: the manifest beside it says the rest."""
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            candidates = sorted(folder.glob("*.manifest.json"))
            if len(candidates) != 1:
                raise VLMUnavailable(f"{folder}: no {MANIFEST_NAME} beside the VLM files")
            manifest_path = candidates[0]
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise VLMUnavailable(f"{manifest_path}: not JSON: {exc}") from None
        if manifest.get("schema") != MANIFEST_SCHEMA:
            raise VLMUnavailable(
                f"{manifest_path}: schema {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}"
            )
        files = {}
        for role in ("text", "mmproj"):
            try:
                entry = manifest["files"][role]
                file = folder / entry["path"]
            except (KeyError, TypeError):
                raise VLMUnavailable(f"{manifest_path}: files.{role}.path missing") from None
            if not file.is_file():
                raise VLMUnavailable(f"{manifest_path}: files.{role}: {file} does not exist")
            if verify and _sha256(file) != entry.get("sha256"):
                raise VLMUnavailable(f"{manifest_path}: files.{role}: sha256 mismatch for {file}")
            files[role] = file
        return cls(files["text"], files["mmproj"], manifest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _softmax_max(logits: np.ndarray) -> tuple[int, float]:
    z = logits.astype(np.float64)
    best = int(np.argmax(z))
    p = np.exp(z - z[best])
    return best, float(1.0 / p.sum())


# ------------------------------------------------------------------------------- llama.cpp
class LlamaCppBackend:
    """llama.cpp in-process through llama-cpp-python's libmtmd bindings, greedy decoding.

    Uses libmtmd to tokenize the prompt with the image and to encode the image, but keeps the
    logits (for a confidence and for parity) and, where it can, evaluates the prompt faster than
    ``mtmd_helper_eval_chunks`` with exactly the same numbers (see :meth:`_eval_chunks_fast`).
    At 1.4 M parameters each llama.cpp call has a fixed cost (~0.3 ms on one core) comparable to
    the arithmetic of a 16-token image, so the fast path makes fewer calls and less work:

    - The whole prompt goes to llama.cpp as one batch of embeddings instead of one
      ``llama_decode`` per chunk (text, tile, text, overview, text): a llama.cpp batch cannot mix
      token ids with embeddings, so text tokens are fed as their rows of the F32 (or F16)
      ``token_embd`` table (read with the ``gguf`` package) — exactly what llama.cpp's own
      lookup would produce.
    - Idefics3 cuts an image into tiles plus an overview; when the grid is one tile (always, for
      these models: the longest edge is resized to one tile) the tile and the overview are the
      same pixels, so the image is encoded once and its embeddings used for both.
    - The prompt's first text chunk (``<s>User:<fake_token_around_image><row_1_col_1>``) stays in
      the KV cache between questions; only the positions after it are removed and recomputed.
    - Generated tokens are decoded through one reused llama.cpp batch, not ``Llama.eval``.

    ``load`` checks the fast path against libmtmd's own helper on a test image (identical
    logits, bit for bit) and keeps the helper when they differ or the token table is quantised;
    prompts the fast path cannot lay out (M-RoPE, non-causal images, longer than ``n_batch``)
    take the helper too.
    """

    def __init__(
        self,
        files: VLMModelFiles,
        *,
        n_threads: int = 2,
        n_ctx: int = 512,
        max_new_tokens: int = 4,
        kv_f32: bool = False,
        use_gpu: bool = True,
        verbose: bool = False,
    ):
        self.files = files
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.max_new_tokens = max_new_tokens
        self.kv_f32 = kv_f32
        self.use_gpu = use_gpu
        self.verbose = verbose
        self._llama: Any = None
        self._mtmd_ctx: Any = None
        self._batch: Any = None  # one llama_batch_ext, reused for every call
        self._memory: Any = None
        self._vocab: Any = None
        self._eos = -1
        self._n_vocab = 0
        self._n_embd = 0
        #: ``token_embd`` as float32 [n_vocab, n_embd]; None: fast path off (helper only)
        self._tok_embd: np.ndarray | None = None
        #: tokens of the prompt prefix held in the KV cache at positions 0.. (fast path)
        self._kv_prefix: tuple[int, ...] = ()
        self._n_past = 0

    def load(self) -> None:
        """Load both GGUF files (I/O here, never in ``__init__``)."""
        try:
            import llama_cpp
            import llama_cpp.mtmd_cpp as mtmd
        except ImportError as exc:
            raise VLMUnavailable(
                f"llama.cpp backend needs llama-cpp-python: pip install 'sitehawk[vlm]' ({exc})"
            ) from None
        kwargs: dict[str, Any] = {
            "model_path": str(self.files.text),
            "n_ctx": self.n_ctx,
            "n_batch": self.n_ctx,
            "n_threads": self.n_threads,
            # prompt (and image) batches default to every core; on a busy CPU the threads'
            # barriers then stall each question for seconds
            "n_threads_batch": self.n_threads,
            "verbose": self.verbose,
        }
        if self.kv_f32:  # parity checks: no f16 rounding in the KV cache
            kwargs["type_k"] = kwargs["type_v"] = llama_cpp.GGML_TYPE_F32
        try:
            self._llama = llama_cpp.Llama(**kwargs)
        except ValueError as exc:
            raise VLMUnavailable(f"{self.files.text}: llama.cpp cannot load it: {exc}") from None
        if not self.verbose:
            _silence_mtmd(llama_cpp, mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = self.use_gpu
        params.print_timings = self.verbose
        params.n_threads = self.n_threads
        with _quiet(not self.verbose):
            ctx = mtmd.mtmd_init_from_file(
                str(self.files.mmproj).encode(), self._llama.model, params
            )
        if not ctx:
            raise VLMUnavailable(f"{self.files.mmproj}: libmtmd cannot load the projector")
        self._mtmd_ctx = ctx
        lctx = self._llama._ctx.ctx
        self._batch = llama_cpp.llama_batch_ext_init(lctx)
        self._memory = llama_cpp.llama_get_memory(lctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self._eos = self._llama.token_eos()
        self._n_vocab = self._llama.n_vocab()
        self._n_embd = llama_cpp.llama_model_n_embd_inp(self._llama.model)
        self._tok_embd = _token_embeddings(self.files.text, self._n_embd)
        if self._tok_embd is not None and not self._fast_path_matches():
            self._tok_embd = None

    def close(self) -> None:
        if self._mtmd_ctx is not None:
            import llama_cpp.mtmd_cpp as mtmd

            mtmd.mtmd_free(self._mtmd_ctx)
            self._mtmd_ctx = None
        if self._batch is not None:
            import llama_cpp

            llama_cpp.llama_batch_ext_free(self._batch)
            self._batch = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        self._kv_prefix = ()

    @property
    def fast_path(self) -> bool:
        """Whether prompts take the one-batch path (False: libmtmd's helper, chunk by chunk)."""
        return self._tok_embd is not None

    def _eval_prompt(
        self, image_rgb: np.ndarray, question: str, *, fast: bool | None = None
    ) -> np.ndarray:
        """Evaluate prompt + image; returns the logits of the next token.

        ``fast``: force the one-batch path (True) or libmtmd's helper (False); by default the
        fast path when ``load`` enabled it.
        """
        import llama_cpp.mtmd_cpp as mtmd

        if self._llama is None or self._mtmd_ctx is None:
            raise VLMUnavailable("backend not loaded: call load() first")
        img = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be H×W×3 RGB, got shape {img.shape}")
        h, w = img.shape[:2]
        buf = (ctypes.c_uint8 * img.size).from_buffer_copy(img.tobytes())
        bitmap = mtmd.mtmd_bitmap_init(w, h, buf)
        marker = mtmd.mtmd_default_marker().decode()
        text = PROMPT_TEMPLATE.format(image=marker, question=question).encode("utf-8")
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            inp = mtmd.mtmd_input_text()
            inp.text = text
            inp.text_len = len(text)  # through ctypes it is not derived from the string
            inp.add_special = True
            inp.parse_special = True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd.mtmd_tokenize(self._mtmd_ctx, chunks, ctypes.byref(inp), bitmaps, 1)
            if rc != 0:
                raise RuntimeError(f"mtmd_tokenize failed ({rc})")
            if fast is None:
                fast = self._tok_embd is not None
            logits = self._eval_chunks_fast(chunks) if fast else None
            if logits is None:
                logits = self._eval_chunks_helper(chunks)
            return logits
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def _eval_chunks_helper(self, chunks: Any) -> np.ndarray:
        """libmtmd's reference evaluation: one decode per chunk, one encode per image."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        llama = self._llama
        llama_cpp.llama_memory_clear(self._memory, True)
        self._kv_prefix = ()
        n_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(
            self._mtmd_ctx,
            llama._ctx.ctx,
            chunks,
            0,
            0,
            llama.n_batch,
            True,
            ctypes.byref(n_past),
        )
        if rc != 0:
            raise RuntimeError(f"mtmd_helper_eval_chunks failed ({rc})")
        self._n_past = n_past.value
        return self._last_logits()

    def _eval_chunks_fast(self, chunks: Any) -> np.ndarray | None:
        """The prompt as one batch of embeddings; None where that cannot be done exactly."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        assert self._tok_embd is not None
        ctx = self._mtmd_ctx
        if mtmd.mtmd_decode_use_mrope(ctx):
            return None  # image positions are 2-D: the helper knows how to lay them out
        # (kind, tokens) per chunk: "text" with its token ids, "image" with its chunk
        parts: list[tuple[str, Any]] = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                parts.append(("text", ptr[: n.value]))
            elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                if mtmd.mtmd_decode_use_non_causal(ctx, chunk):
                    return None
                parts.append(("image", chunk))
            else:
                return None
        n_images = sum(kind == "image" for kind, _ in parts)
        n_prompt = mtmd.mtmd_helper_get_n_tokens(chunks)
        if n_prompt > self._llama.n_batch or mtmd.mtmd_helper_get_n_pos(chunks) != n_prompt:
            return None  # one batch must hold the whole prompt, one position per token
        # the first text chunk may already be in the KV cache from the previous question
        keep = 0
        if parts and parts[0][0] == "text" and tuple(parts[0][1]) == self._kv_prefix:
            keep = len(self._kv_prefix) if len(self._kv_prefix) < n_prompt else 0
        if keep == 0 or not llama_cpp.llama_memory_seq_rm(self._memory, -1, keep, -1):
            llama_cpp.llama_memory_clear(self._memory, True)
            keep = 0
        self._kv_prefix = ()

        embd = np.empty((n_prompt, self._n_embd), dtype=np.float32)
        row = 0
        image_embd: np.ndarray | None = None
        for kind, value in parts:
            if kind == "text":
                embd[row : row + len(value)] = self._tok_embd[value]
                row += len(value)
                continue
            n_tok = mtmd.mtmd_input_chunk_get_n_tokens(value)
            # one tile + overview (two images): the same pixels, see the class docstring
            if not (n_images == 2 and image_embd is not None and len(image_embd) == n_tok):
                if mtmd.mtmd_encode_chunk(ctx, value) != 0:
                    raise RuntimeError("mtmd_encode_chunk failed")
                out = mtmd.mtmd_get_output_embd(ctx)
                image_embd = np.ctypeslib.as_array(out, shape=(n_tok, self._n_embd))
            embd[row : row + n_tok] = image_embd
            row += n_tok

        batch = self._batch
        llama_cpp.llama_batch_ext_clear(batch)
        base = embd.ctypes.data
        stride = embd.strides[0]
        entry = llama_cpp.llama_embd(None, 1, self._n_embd)
        pos = llama_cpp.llama_pos(0)
        idx = -1
        for p in range(keep, n_prompt):
            entry.data = ctypes.cast(base + p * stride, ctypes.POINTER(ctypes.c_float))
            idx = llama_cpp.llama_batch_ext_add_embd(batch, 0, entry)
            if idx < 0:
                raise RuntimeError(f"llama_batch_ext_add_embd failed ({idx})")
            pos.value = p
            llama_cpp.llama_batch_ext_set_pos(batch, idx, ctypes.byref(pos))
        llama_cpp.llama_batch_ext_set_output_logits(batch, idx, True)
        self._process(batch)
        self._n_past = n_prompt
        if parts[0][0] == "text":
            self._kv_prefix = tuple(parts[0][1])
        return self._last_logits()

    def _process(self, batch: Any) -> None:
        import llama_cpp

        rc = llama_cpp.llama_process(
            self._llama._ctx.ctx, llama_cpp.LLAMA_PROCESS_TYPE_DECODE, batch
        )
        if rc != 0:
            self._kv_prefix = ()
            raise RuntimeError(f"llama_process failed ({rc})")

    def _eval_token(self, token: int) -> np.ndarray:
        """Decode one generated token after the prompt; returns the next token's logits."""
        import llama_cpp

        batch = self._batch
        llama_cpp.llama_batch_ext_clear(batch)
        idx = llama_cpp.llama_batch_ext_add_token(batch, 0, token)
        if idx < 0:
            raise RuntimeError(f"llama_batch_ext_add_token failed ({idx})")
        pos = llama_cpp.llama_pos(self._n_past)
        llama_cpp.llama_batch_ext_set_pos(batch, idx, ctypes.byref(pos))
        llama_cpp.llama_batch_ext_set_output_logits(batch, idx, True)
        self._process(batch)
        self._n_past += 1
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _fast_path_matches(self) -> bool:
        """The fast path gives the helper's logits, bit for bit, on a test image and twice
        (the second time with the prompt prefix reused from the KV cache)."""
        y, x = np.mgrid[0:72, 0:100]
        image = np.stack([x * 2, y * 3, (x + y) % 256], axis=-1).astype(np.uint8)
        question = "is the worker in the centre wearing a hard hat?"
        try:
            want = self._eval_prompt(image, question, fast=False)
            got = [self._eval_prompt(image, question, fast=True) for _ in range(2)]
        except RuntimeError:
            return False
        return all(np.array_equal(want, g) for g in got)

    def prompt_logits(self, image_rgb: np.ndarray, question: str) -> np.ndarray:
        """Next-token logits after the prompt (for parity checks)."""
        return self._eval_prompt(image_rgb, question)

    def ask(self, image_rgb: np.ndarray, question: str) -> VLMAnswer:
        import llama_cpp

        start = time.perf_counter()
        logits = self._eval_prompt(image_rgb, question)
        tokens: list[int] = []
        confidence: float | None = None
        for step in range(self.max_new_tokens):
            tok, prob = _softmax_max(logits)
            if step == 0:
                confidence = prob
            if tok == self._eos or llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                break
            tokens.append(tok)
            if step + 1 < self.max_new_tokens:
                logits = self._eval_token(tok)
        text = self._llama.detokenize(tokens).decode("utf-8", errors="replace").strip()
        latency = (time.perf_counter() - start) * 1000.0
        return VLMAnswer(text, yes_no(text), confidence, latency)


def _token_embeddings(path: Path, n_embd: int) -> np.ndarray | None:
    """``token_embd.weight`` of a GGUF as float32 [n_vocab, n_embd], or None when it is not
    F32/F16 (a quantised table cannot be reproduced exactly here) or cannot be read.

    Read with the ``gguf`` package's reader (memory-mapped; ggml's C API has no call for it).
    """
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError:
        return None
    try:
        reader = GGUFReader(path)
        tensor = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
        exact = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
        if tensor is None or tensor.tensor_type not in exact:
            return None
        table = np.asarray(tensor.data)
        if table.ndim != 2 or table.shape[1] != n_embd:
            return None
        return table.astype(np.float32)  # a copy: the file's map closes with the reader
    except (OSError, ValueError, KeyError):
        return None


_MTMD_LOG_SINK: Any = None  # keeps the ctypes callback alive for the process


def _silence_mtmd(llama_cpp: Any, mtmd: Any) -> None:
    """Drop libmtmd's per-image info logs (it prints several lines per question)."""
    global _MTMD_LOG_SINK
    if _MTMD_LOG_SINK is None:
        _MTMD_LOG_SINK = llama_cpp.llama_log_callback(lambda level, text, user: None)
        for setter in ("mtmd_log_set", "mtmd_helper_log_set"):
            if hasattr(mtmd, setter):
                getattr(mtmd, setter)(_MTMD_LOG_SINK, ctypes.c_void_p(0))


class _quiet:
    """Silence C-level stderr (libmtmd logs every tensor) unless verbose."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._saved: int | None = None

    def __enter__(self) -> None:
        if not self.enabled:
            return
        import os
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import os

            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None


# ------------------------------------------------------------------------------------ HTTP
class OpenAIHTTPBackend:
    """An OpenAI-compatible ``/v1/chat/completions`` server with image content.

    A llama.cpp server started with ``--mmproj`` or vLLM serve the same request: the image as a
    ``data:image/png;base64`` URL, greedy decoding, the first token's log-probability asked for
    (servers that do not return it give ``confidence = None``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "sitehawk-vlm",
        timeout_s: float = 10.0,
        api_key: str | None = None,
        max_new_tokens: int = 4,
        opener: Callable[..., Any] | None = None,
    ):
        base = base_url.rstrip("/")
        # the server's root or its /v1 (device configs give e.g. http://127.0.0.1:8000/v1)
        self.url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.timeout_s = timeout_s
        self.api_key = api_key
        self.max_new_tokens = max_new_tokens
        self._open = opener or urllib.request.urlopen

    def load(self) -> None:
        """Nothing to load: the server is checked by the first request."""

    def close(self) -> None:
        """Nothing to release."""

    def request_body(self, image_rgb: np.ndarray, question: str) -> dict[str, Any]:
        import cv2

        ok, png = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError("cannot encode the image as PNG")
        url = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
        return {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": question},
                    ],
                }
            ],
            "temperature": 0.0,
            "max_tokens": self.max_new_tokens,
            "logprobs": True,
            "top_logprobs": 1,
        }

    def ask(self, image_rgb: np.ndarray, question: str) -> VLMAnswer:
        start = time.perf_counter()
        body = json.dumps(self.request_body(image_rgb, question)).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._open(req, timeout=self.timeout_s) as resp:
                reply = json.loads(resp.read().decode("utf-8"))
        except TimeoutError:
            return VLMAnswer.failed("timeout", (time.perf_counter() - start) * 1000.0)
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
            if isinstance(getattr(exc, "reason", None), TimeoutError):
                return VLMAnswer.failed("timeout", (time.perf_counter() - start) * 1000.0)
            return VLMAnswer.failed(
                "unavailable", (time.perf_counter() - start) * 1000.0, f"{self.url}: {exc}"
            )
        latency = (time.perf_counter() - start) * 1000.0
        try:
            choice = reply["choices"][0]
            text = str(choice["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            return VLMAnswer.failed("unavailable", latency, f"unexpected reply: {reply!r:.200}")
        confidence = None
        try:
            first = choice["logprobs"]["content"][0]
            confidence = math.exp(float(first["logprob"]))
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        return VLMAnswer(text, yes_no(text), confidence, latency)


#: Backends by name (configs choose one); each takes its own keyword arguments.
BACKENDS: dict[str, Callable[..., VLMBackend]] = {
    "llama_cpp": lambda model, **kw: LlamaCppBackend(VLMModelFiles.find(Path(model)), **kw),
    "openai": lambda url, **kw: OpenAIHTTPBackend(url, **kw),
}


def make_backend(name: str, *args: Any, **kwargs: Any) -> VLMBackend:
    """A backend by registered name (``llama_cpp``: model path; ``openai``: base URL)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown VLM backend {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS[name](*args, **kwargs)
