"""The router's OpenAI-compatible service (FastAPI): ``model: "auto"`` routes, a name pins.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` (every
expert and ``auto``), ``POST /v1/feedback`` (``{"id": <response id>, "reward": float in
[0, 1]}`` — the answer's quality, which updates the router online), ``GET /health``.

Every completion carries ``usage``, a ``sitehawk`` object (the expert that answered, whether it
was routed, λ, the cost, the router's expected scores) and an ``x-sitehawk-expert`` header. A
request may set its own λ with ``"sitehawk": {"lambda": 0.3}`` (the OpenAI client's
``extra_body``). Errors — bad JSON, a missing field, an unknown model or response id, a wrong API
key — come back as OpenAI error objects (``{"error": {"message", "type", "param", "code"}}``)
with a 4xx status, never a bare 500.

Backends, behind :class:`Backend`: ``embedded`` (transformers + peft, one base per size with
adapter switching: :class:`~trainer.router.experts.pool.ExpertPool`) and ``vllm`` (forward each
request to a vLLM server started with ``--enable-lora --lora-modules NAME=PATH …``, so the model
name is the adapter name).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from trainer.router.experts.pool import Answer, answer_cost

AUTO = "auto"
#: How many response ids are remembered for feedback.
MAX_PENDING_FEEDBACK = 10_000


class Backend(Protocol):
    """Something that answers a prompt with a named expert."""

    names: list[str]

    def load(self) -> Backend: ...

    def complete(self, expert: str, prompt: str, max_tokens: int) -> Answer: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """transformers + peft in this process (see :class:`ExpertPool`)."""

    def __init__(self, experts_dir: Path) -> None:
        from trainer.router.experts.pool import ExpertPool

        self.pool = ExpertPool(experts_dir)
        self.names = list(self.pool.names)

    def load(self) -> EmbeddedBackend:
        self.pool.load()
        return self

    def complete(self, expert: str, prompt: str, max_tokens: int) -> Answer:
        return self.pool.answer(expert, [prompt], max_tokens)[0]

    def close(self) -> None:
        return None


class VLLMBackend:
    """Forward to a vLLM OpenAI server with one LoRA module per expert name."""

    def __init__(self, url: str, names: list[str], parameters: dict[str, int] | None = None):
        self.url = url.rstrip("/")
        self.names = names
        self.parameters = parameters or {}
        self._client: Any = None

    def load(self) -> VLLMBackend:
        import httpx

        self._client = httpx.Client(base_url=self.url, timeout=120.0)
        return self

    def complete(self, expert: str, prompt: str, max_tokens: int) -> Answer:
        from trainer.router.lm import format_prompt

        resp = self._client.post(
            "/v1/completions",
            json={
                "model": expert,
                "prompt": format_prompt(prompt),
                "max_tokens": max_tokens,
                "temperature": 0.0,
            },
        )
        resp.raise_for_status()
        body = resp.json()
        usage = body.get("usage", {})
        p, c = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        return Answer(
            expert,
            body["choices"][0]["text"].strip(),
            p,
            c,
            answer_cost(self.parameters.get(expert, 1), p, c),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass
class ServeConfig:
    """What ``router serve`` runs."""

    router: Path
    experts: Path | None = None
    vllm_url: str | None = None
    api_key: str | None = None
    default_lambda: float = 0.0
    max_tokens: int = 32
    persist_feedback: bool = False  #: on shutdown, write the updated router back to its folder


# ---------------------------------------------------------------------------- requests
class _Open(BaseModel):
    # OpenAI clients send many optional fields (temperature, n, user, …): accept, ignore
    model_config = ConfigDict(extra="allow")


class SitehawkOptions(_Open):
    """Per-request router options (``extra_body={"sitehawk": {...}}``)."""

    lambda_: float | None = Field(None, alias="lambda", ge=0.0, description="quality/cost weight")


class ChatMessage(_Open):
    """One chat message; ``content`` is a string or a list of text parts."""

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Open):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    stream: bool = False
    sitehawk: SitehawkOptions | None = None


class CompletionRequest(_Open):
    """``POST /v1/completions``."""

    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=1, le=4096)
    stream: bool = False
    sitehawk: SitehawkOptions | None = None


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: the quality of a served answer, in [0, 1]."""

    model_config = ConfigDict(extra="forbid")
    id: str
    reward: float = Field(ge=0.0, le=1.0)


class APIError(Exception):
    """An error the API reports as an OpenAI error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )


def _error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _prompt_of(messages: list[ChatMessage]) -> str:
    """The text the expert answers: the last user message (text parts joined)."""
    for msg in reversed(messages):
        if msg.role != "user":
            continue
        if isinstance(msg.content, str):
            return msg.content
        if isinstance(msg.content, list):
            return " ".join(str(p.get("text", "")) for p in msg.content if p.get("type") == "text")
    raise APIError(400, "messages must contain a user message with text", param="messages")


class RouterService:
    """State of one server: the router, the backend, the responses awaiting feedback."""

    def __init__(self, config: ServeConfig, backend: Backend | None = None) -> None:
        self.config = config
        self._backend = backend
        self.router: Any = None
        self.backend: Backend | None = None
        self._pending: OrderedDict[str, tuple[str, str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.feedback_count = 0

    def start(self) -> None:
        """Load the router and the backend (I/O happens here, not in ``__init__``)."""
        from trainer.router.bandit import Router

        self.router = Router.load(self.config.router)
        backend = self._backend
        if backend is None:
            if self.config.experts is not None:
                backend = EmbeddedBackend(self.config.experts)
            elif self.config.vllm_url is not None:
                backend = VLLMBackend(self.config.vllm_url, list(self.router.experts))
            else:
                raise ValueError("no backend: set experts or vllm_url")
        missing = sorted(set(self.router.experts) - set(backend.names))
        if missing:
            raise ValueError(f"the router routes to {missing}, which the backend does not serve")
        self.backend = backend.load()

    def stop(self) -> None:
        """Release the backend; keep what feedback taught the router if asked to."""
        if self.backend is not None:
            self.backend.close()
        if self.config.persist_feedback and self.feedback_count and self.router is not None:
            self._save_router()

    def _save_router(self) -> None:
        """Replace the router folder with the updated router, never leaving it half-written."""
        import shutil

        target = Path(self.config.router)
        staging = target.with_name(target.name + ".saving")
        retired = target.with_name(target.name + ".previous")
        shutil.rmtree(staging, ignore_errors=True)
        self.router.save(staging)
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)

    def answer(
        self, model: str, prompt: str, max_tokens: int | None, options: SitehawkOptions | None
    ) -> tuple[str, Answer, dict[str, Any]]:
        """Route (or pin) and answer; returns the response id, the answer and its metadata."""
        assert self.backend is not None and self.router is not None
        lam = self.config.default_lambda
        if options is not None and options.lambda_ is not None:
            lam = options.lambda_
        with self._lock:
            choice, expected = self.router.decide(prompt, lam)
        scores = {e: round(float(s), 4) for e, s in zip(self.router.experts, expected, strict=True)}
        if model == AUTO:
            expert = self.router.experts[choice]
        elif model in self.backend.names:
            expert = model
        else:
            raise APIError(
                404,
                f"the model {model!r} does not exist; see /v1/models",
                param="model",
                code="model_not_found",
            )
        ans = self.backend.complete(expert, prompt, max_tokens or self.config.max_tokens)
        response_id = uuid.uuid4().hex
        with self._lock:
            self._pending[response_id] = (prompt, expert, ans.cost)
            while len(self._pending) > MAX_PENDING_FEEDBACK:
                self._pending.popitem(last=False)
        meta = {
            "expert": expert,
            "routed": model == AUTO,
            "lambda": lam,
            "cost": round(ans.cost, 6),
            "expected_scores": scores,
        }
        return response_id, ans, meta

    def feedback(self, req: FeedbackRequest) -> dict[str, Any]:
        """Update the router with the reward of a served answer (once per response)."""
        with self._lock:
            found = self._pending.pop(req.id, None)
            if found is None:
                raise APIError(
                    404,
                    f"no served response with id {req.id!r} awaits feedback",
                    param="id",
                    code="response_not_found",
                )
            prompt, expert, cost = found
            if expert in self.router.experts:
                self.router.update(prompt, expert, req.reward, cost)
                self.feedback_count += 1
        return {"id": req.id, "object": "feedback", "accepted": True, "expert": expert}


def _usage(ans: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": ans.prompt_tokens,
        "completion_tokens": ans.completion_tokens,
        "total_tokens": ans.prompt_tokens + ans.completion_tokens,
    }


def create_app(config: ServeConfig, backend: Backend | None = None) -> Any:
    """The FastAPI application; ``backend`` overrides the one ``config`` names (tests)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    service = RouterService(config, backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        service.start()
        yield
        service.stop()

    app = FastAPI(title="SiteHawk expert router", version="1", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(_error_body(exc.message, exc.type, exc.param, exc.code), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        message = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}"
        return JSONResponse(
            _error_body(message, "invalid_request_error", ".".join(loc) or None, None), 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body(str(exc.detail), "invalid_request_error", None, None), exc.status_code
        )

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            _error_body(f"internal error: {type(exc).__name__}: {exc}", "server_error", None, None),
            500,
        )

    @app.middleware("http")
    async def _auth(request: Request, call_next: Any) -> Any:
        key = config.api_key
        authorised = request.headers.get("authorization", "") == f"Bearer {key}"
        if key and request.url.path.startswith("/v1/") and not authorised:
            body = _error_body(
                "invalid or missing API key", "invalid_request_error", None, "invalid_api_key"
            )
            return JSONResponse(body, 401)
        return await call_next(request)

    def _check_stream(stream: bool) -> None:
        if stream:
            raise APIError(400, "streaming is not supported", param="stream")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "experts": service.backend.names if service.backend else []}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        names = [AUTO] + (service.backend.names if service.backend else [])
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "sitehawk"} for n in names
            ],
        }

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> JSONResponse:
        _check_stream(req.stream)
        rid, ans, meta = service.answer(
            req.model, _prompt_of(req.messages), req.max_tokens, req.sitehawk
        )
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": ans.expert,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ans.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(ans),
            "sitehawk": meta,
        }
        return JSONResponse(body, headers={"x-sitehawk-expert": ans.expert})

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> JSONResponse:
        _check_stream(req.stream)
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise APIError(400, "send one prompt per request", param="prompt")
            prompt = prompt[0]
        rid, ans, meta = service.answer(req.model, prompt, req.max_tokens, req.sitehawk)
        body = {
            "id": rid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": ans.expert,
            "choices": [{"index": 0, "text": ans.text, "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(ans),
            "sitehawk": meta,
        }
        return JSONResponse(body, headers={"x-sitehawk-expert": ans.expert})

    @app.post("/v1/feedback")
    def feedback(req: FeedbackRequest) -> dict[str, Any]:
        return service.feedback(req)

    return app
