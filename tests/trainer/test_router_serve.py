"""The router's OpenAI-compatible service, driven by the official ``openai`` client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from trainer.router.bandit import LinUCBConfig, Router
from trainer.router.experts.pool import Answer
from trainer.router.outcomes import table_from_records
from trainer.router.serve import ServeConfig, create_app
from trainer.router.tasks import make_splits

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

pytestmark = pytest.mark.integration
EXPERTS = ["code", "generalist", "legal", "math"]
PROMPT = "Classify clause 4.2: The Supplier shall pay each invoice within 30 days."


class FakeBackend:
    """Answers instantly with a canned text; counts tokens as words (the protocol, no model)."""

    def __init__(self) -> None:
        self.names = list(EXPERTS)
        self.calls: list[tuple[str, str]] = []

    def load(self) -> FakeBackend:
        return self

    def complete(self, expert: str, prompt: str, max_tokens: int) -> Answer:
        self.calls.append((expert, prompt))
        n = len(prompt.split())
        return Answer(expert, f"answer from {expert}", n, 3, float(n + 3))

    def close(self) -> None:
        return None


def fit_router(out: Path) -> Path:
    """A router that prefers the skill's expert (score 1) over the generalist (0.9)."""
    rng = np.random.default_rng(0)
    records = []
    for t in make_splits(seed=0, num_train_per_group=40, num_test_per_group=1)["train"]:
        for e in EXPERTS:
            score = 0.9 if e == "generalist" else float(e == t.skill)
            records.append(
                {
                    "prompt": t.prompt,
                    "expert": e,
                    "score": score,
                    "cost": (8.0 if e == "generalist" else 1.0) + rng.random() * 0.01,
                }
            )
    Router.fit(table_from_records(records), config=LinUCBConfig(epochs=2), dim=32).save(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the router server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_router(tmp_path_factory.mktemp("router") / "router")


@pytest.fixture
def server(router_dir: Path) -> Iterator[tuple[Server, FakeBackend]]:
    backend = FakeBackend()
    app = create_app(ServeConfig(router=router_dir, api_key="sk-test"), backend=backend)
    with Server(app) as srv:
        yield srv, backend


def _client(srv: Server, key: str = "sk-test") -> Any:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0)


def test_openai_client_auto_pinned_and_feedback(server: tuple[Server, FakeBackend]) -> None:
    srv, backend = server
    client = _client(srv)
    assert {m.id for m in client.models.list().data} == {"auto", *EXPERTS}

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": PROMPT}]
    )
    chat = raw.parse()
    assert chat.model == "legal"  # routed to the clause expert, not the 8× dearer generalist
    assert raw.headers["x-sitehawk-expert"] == "legal"
    extra = chat.model_extra["sitehawk"]
    assert extra["expert"] == "legal" and extra["routed"] is True
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    assert chat.choices[0].message.content == "answer from legal"

    pinned = client.chat.completions.create(
        model="generalist", messages=[{"role": "user", "content": PROMPT}]
    )
    assert pinned.model == "generalist" and pinned.model_extra["sitehawk"]["routed"] is False
    assert backend.calls[-1] == ("generalist", PROMPT)

    completion = client.completions.create(model="auto", prompt="Compute 2 + 3.")
    assert completion.model == "math"

    ack = client.post("/feedback", body={"id": chat.id, "reward": 1.0}, cast_to=object)
    assert ack["accepted"] is True and ack["expert"] == "legal"
    with pytest.raises(openai.NotFoundError):  # once per response
        client.post("/feedback", body={"id": chat.id, "reward": 1.0}, cast_to=object)


def test_per_request_lambda_prefers_cheaper(server: tuple[Server, FakeBackend]) -> None:
    srv, _ = server
    client = _client(srv)
    hard = "Implement calc(n) in Python: it returns n plus 3 if n is even, else n minus 2."
    costs = []
    for lam in (0.0, 5.0):
        r = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": hard}],
            extra_body={"sitehawk": {"lambda": lam}},
        )
        assert r.model_extra["sitehawk"]["lambda"] == lam
        costs.append(r.model_extra["sitehawk"]["cost"])
        assert r.model != "generalist" or lam == 0.0


def test_served_feedback_changes_the_choice(server: tuple[Server, FakeBackend]) -> None:
    srv, _ = server
    client = _client(srv)
    chosen = []
    for _ in range(40):
        r = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": PROMPT}]
        )
        chosen.append(r.model)
        if r.model != chosen[0]:
            break
        client.post("/feedback", body={"id": r.id, "reward": 0.0}, cast_to=object)
    assert chosen[0] == "legal"
    assert chosen[-1] != "legal", chosen


def test_errors_are_openai_error_objects(server: tuple[Server, FakeBackend]) -> None:
    srv, _ = server
    client = _client(srv)
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[])
    with pytest.raises(openai.AuthenticationError):
        _client(srv, key="wrong").models.list()
    headers = {"authorization": "Bearer sk-test"}
    for body in (b"{not json", b'{"model": "auto"}', b'{"model": "auto", "messages": 3}'):
        resp = httpx.post(
            f"{srv.url}/v1/chat/completions",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
        assert resp.status_code == 400, body
        err = resp.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"]
    resp = httpx.post(f"{srv.url}/v1/feedback", json={"id": "x", "reward": 7}, headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "reward"
    assert httpx.get(f"{srv.url}/health").json()["status"] == "ok"  # no key needed


@pytest.fixture(scope="module")
def tiny_experts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real QLoRA experts on a tiny (barely trained) base: built here in seconds."""
    import torch

    from trainer.router.experts.train import train_experts
    from trainer.router.lm import build_model, build_tokenizer, format_prompt, save_pretrained
    from trainer.router.tasks import write_splits

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("experts")
    splits = make_splits(seed=0, num_train_per_group=20, num_test_per_group=2)
    write_splits(root / "tasks", splits, seed=0)
    texts = [format_prompt(t.prompt) + t.answer for t in splits["train"]]
    tokenizer = build_tokenizer(texts, vocab_size=400)
    save_pretrained(build_model("small", tokenizer), tokenizer, root / "base")
    train_experts(
        root / "base",
        root / "tasks",
        root / "experts",
        generalist_base=root / "base",
        steps=3,
        generalist_steps=3,
    )
    return root / "experts"


@pytest.mark.slow
def test_embedded_backend_switches_adapters(tiny_experts: Path, router_dir: Path) -> None:
    app = create_app(ServeConfig(router=router_dir, experts=tiny_experts, max_tokens=4))
    with Server(app) as srv:
        client = _client(srv)
        for model in ("auto", "math", "legal"):
            r = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Compute 2 + 3."}]
            )
            assert r.model == (model if model != "auto" else "math")
            assert r.usage.completion_tokens <= 4 and r.usage.prompt_tokens > 3
            assert r.model_extra["sitehawk"]["cost"] > 0


def test_vllm_backend_forwards_with_the_adapter_name(router_dir: Path) -> None:
    """A stand-in for vLLM's /v1/completions (model = LoRA name) behind the router."""
    from fastapi import FastAPI

    seen: list[dict[str, Any]] = []
    fake_vllm = FastAPI()

    @fake_vllm.post("/v1/completions")
    def completions(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return {
            "choices": [{"text": " payment", "index": 0}],
            "usage": {"prompt_tokens": 17, "completion_tokens": 2},
        }

    with Server(fake_vllm) as vllm:
        app = create_app(ServeConfig(router=router_dir, vllm_url=vllm.url))
        with Server(app) as srv:
            r = _client(srv).chat.completions.create(
                model="auto", messages=[{"role": "user", "content": PROMPT}]
            )
    assert r.model == "legal" and r.choices[0].message.content == "payment"
    assert seen[0]["model"] == "legal" and seen[0]["prompt"].endswith("\nAnswer: ")
    assert r.usage.prompt_tokens == 17 and r.usage.completion_tokens == 2


def test_feedback_persists_on_shutdown(router_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "router"
    shutil.copytree(router_dir, folder)
    before = Router.load(folder).bandit.counts.sum()
    app = create_app(ServeConfig(router=folder, persist_feedback=True), backend=FakeBackend())
    with Server(app) as srv:
        client = _client(srv)
        r = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": PROMPT}]
        )
        client.post("/feedback", body={"id": r.id, "reward": 0.0}, cast_to=object)
    assert Router.load(folder).bandit.counts.sum() == before + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["router"]  # no staging left behind
