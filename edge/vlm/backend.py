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

    Uses the same libmtmd calls as llama-cpp-python's ``MTMDChatHandler`` (tokenize the prompt
    with the image, evaluate the chunks) but keeps the logits, for a confidence and for parity.
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

    def close(self) -> None:
        if self._mtmd_ctx is not None:
            import llama_cpp.mtmd_cpp as mtmd

            mtmd.mtmd_free(self._mtmd_ctx)
            self._mtmd_ctx = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def _eval_prompt(self, image_rgb: np.ndarray, question: str) -> np.ndarray:
        """Evaluate prompt + image; returns the logits of the next token."""
        import llama_cpp
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
            llama = self._llama
            llama.reset()
            llama._ctx.kv_cache_clear()  # what MTMDChatHandler does between prompts
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
            llama.n_tokens = n_past.value
            return self._last_logits()
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        n_vocab = self._llama.n_vocab()
        ptr = llama_cpp.llama_get_logits_ith(self._llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()

    def prompt_logits(self, image_rgb: np.ndarray, question: str) -> np.ndarray:
        """Next-token logits after the prompt (for parity checks)."""
        return self._eval_prompt(image_rgb, question)

    def ask(self, image_rgb: np.ndarray, question: str) -> VLMAnswer:
        start = time.perf_counter()
        logits = self._eval_prompt(image_rgb, question)
        llama = self._llama
        tokens: list[int] = []
        confidence: float | None = None
        for step in range(self.max_new_tokens):
            tok, prob = _softmax_max(logits)
            if step == 0:
                confidence = prob
            if llama.token_eos() == tok or _is_eog(llama, tok):
                break
            tokens.append(tok)
            if step + 1 < self.max_new_tokens:
                llama.eval([tok])
                logits = self._last_logits()
        text = llama.detokenize(tokens).decode("utf-8", errors="replace").strip()
        latency = (time.perf_counter() - start) * 1000.0
        return VLMAnswer(text, yes_no(text), confidence, latency)


_MTMD_LOG_SINK: Any = None  # keeps the ctypes callback alive for the process


def _silence_mtmd(llama_cpp: Any, mtmd: Any) -> None:
    """Drop libmtmd's per-image info logs (it prints several lines per question)."""
    global _MTMD_LOG_SINK
    if _MTMD_LOG_SINK is None:
        _MTMD_LOG_SINK = llama_cpp.llama_log_callback(lambda level, text, user: None)
        for setter in ("mtmd_log_set", "mtmd_helper_log_set"):
            if hasattr(mtmd, setter):
                getattr(mtmd, setter)(_MTMD_LOG_SINK, ctypes.c_void_p(0))


def _is_eog(llama: Any, tok: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llama.model), tok))


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
