"""The edge VLM: answers are typed, questions never block the loop, timeouts go out unconfirmed.

Torch-free and llama.cpp-free (runs in the Python 3.10 edge-only venv): backends are fakes or a
local HTTP server speaking the OpenAI chat-completions API.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edge.vlm.backend import OpenAIHTTPBackend, VLMAnswer, make_backend
from edge.vlm.questions import HAZARD_QUESTIONS, confirmation, normalize_answer, yes_no
from edge.vlm.worker import VLMWorker

IMAGE = np.zeros((96, 96, 3), dtype=np.uint8)
HELMET_Q = HAZARD_QUESTIONS["no_helmet"].question


class FakeBackend:
    """Answers ``text`` after ``delay_s``; can fail to load or to answer."""

    def __init__(self, text: str = "no", delay_s: float = 0.0, *, load_error: bool = False):
        self.text, self.delay_s, self.load_error = text, delay_s, load_error
        self.closed = threading.Event()
        self.asked = 0

    def load(self) -> None:
        if self.load_error:
            raise RuntimeError("model file missing")

    def ask(self, image_rgb: np.ndarray, question: str) -> VLMAnswer:
        self.asked += 1
        time.sleep(self.delay_s)
        if self.text == "boom":
            raise RuntimeError("decode failed")
        return VLMAnswer(self.text, yes_no(self.text), 0.97, self.delay_s * 1000)

    def close(self) -> None:
        self.closed.set()


def test_answer_normalisation_and_gate_rule():
    assert normalize_answer("  Yes.") == "yes"
    assert normalize_answer("The Grey helmet") == "gray helmet"
    assert normalize_answer("two") == "2"
    assert yes_no("No, not wearing one") is False
    assert yes_no("maybe") is None
    # no_helmet: "is the worker wearing a hard hat?" — "no" confirms, a confident "yes" contradicts
    assert confirmation("no_helmet", "no", 0.6) is True
    assert confirmation("no_helmet", "yes", 0.95) is False
    assert confirmation("no_helmet", "yes", 0.5) is None  # unconfident: never suppress
    assert confirmation("fire_smoke", None, None) is None  # no answer: never suppress
    assert confirmation("zone_intrusion", "yes", None) is True


def test_worker_answers_without_blocking():
    worker = VLMWorker(FakeBackend("no", delay_s=0.05), timeout_s=2.0)
    worker.start()
    t0 = time.perf_counter()
    req = worker.submit(IMAGE, HELMET_Q)
    assert time.perf_counter() - t0 < 0.02  # submit returns at once
    answer = req.wait()
    assert answer.error is None and answer.yes is False and answer.confidence == pytest.approx(0.97)
    assert confirmation("no_helmet", answer.text, answer.confidence) is True
    worker.stop()
    assert worker.backend.closed.wait(1.0)  # type: ignore[attr-defined]


def test_worker_times_out_cleanly_and_alert_goes_out_unconfirmed():
    backend = FakeBackend("yes", delay_s=0.6)
    worker = VLMWorker(backend, timeout_s=0.15, max_queue=1)
    worker.start()
    req = worker.submit(IMAGE, HELMET_Q)
    assert not req.done()
    t0 = time.perf_counter()
    while not req.done():  # what the control loop does: poll between frames
        time.sleep(0.01)
    waited = time.perf_counter() - t0
    answer = req.answer()
    assert answer is not None and answer.error == "timeout" and answer.text is None
    assert waited < 0.5  # resolved at the deadline, not when the slow backend returns
    # the gate lets the alert out with confirmed = None
    assert confirmation("no_helmet", answer.text, answer.confidence) is None
    # the late answer does not overwrite the timeout
    time.sleep(0.7)
    assert req.answer() is not None and req.answer().error == "timeout"  # type: ignore[union-attr]
    worker.stop()


def test_full_queue_and_dead_backend_are_unavailable():
    worker = VLMWorker(FakeBackend("no", delay_s=0.3), timeout_s=2.0, max_queue=1)
    worker.start()
    time.sleep(0.05)
    first = worker.submit(IMAGE, HELMET_Q)  # taken by the thread
    time.sleep(0.05)
    second = worker.submit(IMAGE, HELMET_Q)  # waits in the queue
    third = worker.submit(IMAGE, HELMET_Q)  # queue full
    assert third.done() and third.answer().error == "unavailable"  # type: ignore[union-attr]
    assert first.wait().error is None and second.wait().error is None
    worker.stop()

    broken = VLMWorker(FakeBackend(load_error=True), timeout_s=1.0)
    broken.start()
    time.sleep(0.1)
    answer = broken.submit(IMAGE, HELMET_Q).wait()
    assert answer.error == "unavailable" and "failed to load" in (answer.detail or "")
    assert not broken.available

    failing = VLMWorker(FakeBackend("boom"), timeout_s=1.0)
    failing.start()
    assert failing.ask(IMAGE, HELMET_Q).error == "unavailable"
    assert failing.ask(IMAGE, HELMET_Q).error == "unavailable"  # the thread survived
    failing.stop()


class _OpenAIHandler(BaseHTTPRequestHandler):
    delay_s = 0.0
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        time.sleep(self.delay_s)
        reply = {
            "choices": [
                {
                    "message": {"role": "assistant", "content": " no"},
                    "logprobs": {"content": [{"token": " no", "logprob": -0.05}]},
                }
            ]
        }
        data = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def openai_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _OpenAIHandler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _OpenAIHandler
    server.shutdown()
    server.server_close()
    _OpenAIHandler.delay_s = 0.0


def test_openai_http_backend_sends_image_content(openai_server):
    url, handler = openai_server
    backend = make_backend("openai", url, timeout_s=2.0)
    answer = backend.ask(IMAGE, HELMET_Q)
    assert answer.error is None and answer.yes is False
    assert answer.confidence == pytest.approx(np.exp(-0.05))
    content = handler.seen[0]["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1] == {"type": "text", "text": HELMET_Q}
    assert handler.seen[0]["temperature"] == 0.0


def test_openai_http_backend_timeout_and_unreachable(openai_server):
    url, handler = openai_server
    handler.delay_s = 0.5
    slow = OpenAIHTTPBackend(url, timeout_s=0.1)
    assert slow.ask(IMAGE, HELMET_Q).error == "timeout"
    down = OpenAIHTTPBackend("http://127.0.0.1:9", timeout_s=0.5)  # discard port: refused
    answer = down.ask(IMAGE, HELMET_Q)
    assert answer.error == "unavailable" and answer.yes is None


def test_unknown_backend_name_is_a_clear_error():
    with pytest.raises(ValueError, match="llama_cpp"):
        make_backend("tensorrt", "x")
