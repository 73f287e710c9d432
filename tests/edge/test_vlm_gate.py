"""The VLM gate in the alert path (issue 5, DESIGN.md's gate rule), with real components only.

The VLM is the real OpenAI-HTTP backend talking to a small local HTTP server (answers, delays
and failures under the test's control), behind the real :class:`VLMWorker`; the agent runs also
use the shipped GGUF through llama.cpp in-process where llama-cpp-python is installed.

- a confident contradiction suppresses the alert (no message at all);
- a confirmation raises it with ``confirmed: true``; a timeout or a server that is down raises it
  with ``confirmed: null`` and the error, and the message validates against alert.v1.json;
- the loop never waits for the VLM: frames go on while a question is in flight.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.alerts.manager import AlertManager, Emitted
from edge.alerts.rules import DEFAULT_HAZARD_RULES, HazardObservation, HazardRuleSpec
from edge.alerts.schema import validate_alert
from edge.alerts.state import MemoryStateStore
from edge.alerts.vlm_gate import WorkerVlmGate, question_crop
from edge.geometry import PTZPose
from edge.vlm.backend import OpenAIHTTPBackend
from edge.vlm.questions import HAZARD_QUESTIONS
from edge.vlm.worker import VLMWorker

WALL0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
POSE = PTZPose(5.0, -10.0, 4.0)
FRAME = np.full((360, 640, 3), 90, dtype=np.uint8)
HELMET_Q = HAZARD_QUESTIONS["no_helmet"].question
RULES = {
    **DEFAULT_HAZARD_RULES,
    "no_helmet": HazardRuleSpec(dwell_s=0.5, cooldown_s=2.0, require_vlm=True),
}


class _VLMServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions endpoint: ``answer`` after ``delay_s``."""

    answer = "no"
    logprob = -0.05
    delay_s = 0.0
    asked: list[float] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).asked.append(time.monotonic())
        time.sleep(self.delay_s)
        reply = {
            "choices": [
                {
                    "message": {"role": "assistant", "content": f" {self.answer}"},
                    "logprobs": {"content": [{"token": self.answer, "logprob": self.logprob}]},
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
            pass  # the client gave up (timeouts)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def vlm_server() -> Iterator[tuple[str, type[_VLMServer]]]:
    handler = type("Handler", (_VLMServer,), {"asked": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _gate(url: str, timeout_s: float = 2.0) -> WorkerVlmGate:
    backend = OpenAIHTTPBackend(url, timeout_s=timeout_s + 1.0)
    gate = WorkerVlmGate(VLMWorker(backend, timeout_s=timeout_s, max_queue=2))
    gate.start()
    return gate


def _manager(gate: WorkerVlmGate) -> AlertManager:
    return AlertManager(
        MemoryStateStore(),
        site_id="site-a",
        device_id="dev-1",
        camera_id="cam0",
        snapshot_topic=lambda a: f"sitehawk/v1/site-a/dev-1/snapshot/{a}",
        agent_version="0.1.0-test",
        rules=RULES,
        vlm_gate=gate,
    )


def _obs() -> HazardObservation:
    return HazardObservation(
        "no_helmet", "p1", 5.0, -10.0, (0.4, 0.3, 0.5, 0.9), (3.0, 30.0), 0.9, size_deg=3.0
    )


def _loop(
    manager: AlertManager, frames: int, frame_wall_s: float = 0.02
) -> tuple[list[Emitted], float]:
    """A 10 fps camera seeing the hazard; ``frame_wall_s`` of other work per frame. Returns the
    messages and the longest ``update`` call (seconds)."""
    out: list[Emitted] = []
    longest = 0.0
    for k in range(frames):
        t = 0.1 * k
        start = time.perf_counter()
        out += manager.update([_obs()], WALL0 + timedelta(seconds=t), FRAME, POSE, t_site=t)
        longest = max(longest, time.perf_counter() - start)
        time.sleep(frame_wall_s)
    return out, longest


def test_a_confident_contradiction_suppresses_the_alert(vlm_server: Any) -> None:
    url, handler = vlm_server
    handler.answer, handler.logprob = "yes", -0.02  # "wearing a hard hat": p = 0.98
    gate = _gate(url)
    try:
        out, _ = _loop(_manager(gate), 40)
    finally:
        gate.close()
    assert out == []  # no message at all
    assert len(handler.asked) == 1  # asked once, not every frame
    assert gate.stats()["contradicted"] == 1


def test_an_unconfident_contradiction_does_not_suppress(vlm_server: Any) -> None:
    url, handler = vlm_server
    handler.answer, handler.logprob = "yes", -0.7  # p = 0.50: doubt lets the alert out
    gate = _gate(url)
    try:
        out, _ = _loop(_manager(gate), 25)
    finally:
        gate.close()
    (raised,) = out
    assert raised.alert["vlm"] is not None and raised.alert["vlm"]["confirmed"] is None
    assert raised.alert["vlm"]["answer"] == "yes" and raised.alert["vlm"]["error"] is None
    validate_alert(raised.alert)


def test_a_confirmation_marks_the_alert_confirmed(vlm_server: Any) -> None:
    url, handler = vlm_server
    gate = _gate(url)
    try:
        out, _ = _loop(_manager(gate), 25)
    finally:
        gate.close()
    (raised,) = out
    vlm = raised.alert["vlm"]
    assert vlm is not None
    assert (vlm["question"], vlm["answer"], vlm["confirmed"], vlm["error"]) == (
        HELMET_Q,
        "no",
        True,
        None,
    )
    assert vlm["latency_ms"] is not None and vlm["latency_ms"] >= 0
    assert raised.snapshot_jpeg is not None and raised.snapshot_jpeg[:2] == b"\xff\xd8"
    validate_alert(raised.alert)


def test_a_timeout_lets_the_alert_out_unconfirmed_without_blocking(vlm_server: Any) -> None:
    url, handler = vlm_server
    handler.delay_s = 3.0  # far beyond the gate's timeout
    gate = _gate(url, timeout_s=0.4)
    manager = _manager(gate)
    try:
        out, longest = _loop(manager, 40)
    finally:
        gate.close()
    (raised,) = out
    assert raised.state == "raised"
    vlm = raised.alert["vlm"]
    assert vlm is not None
    assert (vlm["answer"], vlm["confirmed"], vlm["error"]) == (None, None, "timeout")
    assert vlm["latency_ms"] is not None and vlm["latency_ms"] >= 400
    validate_alert(raised.alert)
    assert longest < 0.2  # no update waited for the 3-s answer (nor for the 0.4-s timeout)
    assert gate.stats()["timeout"] == 1


def test_a_vlm_that_is_down_lets_the_alert_out_unconfirmed() -> None:
    gate = _gate("http://127.0.0.1:9", timeout_s=1.0)  # the discard port: refused
    try:
        out, _ = _loop(_manager(gate), 25)
    finally:
        gate.close()
    (raised,) = out
    vlm = raised.alert["vlm"]
    assert vlm is not None and (vlm["confirmed"], vlm["error"]) == (None, "unavailable")
    validate_alert(raised.alert)


def test_the_question_crop_is_the_models_input() -> None:
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    frame[..., 2] = 255  # BGR red
    for hazard in HAZARD_QUESTIONS:
        crop = question_crop(frame, (0.98, 0.9, 1.0, 1.0), hazard, 96)  # at the frame's corner
        assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
        assert (crop[..., 0] == 255).all()  # RGB for the VLM


# ------------------------------------------------------------------ the agent, end to end
def _run_agent(
    vlm_url: str | None, timeout_s: float = 1.0, duration_s: float = 100.0
) -> tuple[list[Any], list[float]]:
    """The built-in site (seed 7: a no_vest alert at ~73 s, a no_helmet one at ~92 s of site
    time) for 100 s with the VLM — the config's openai server, else ``--vlm on`` (the shipped
    GGUF). 20 s of site time follow the second alert's question, so a 0.5 s wall-clock timeout
    always expires before the run ends, however fast it runs. Returns the alert records and the
    wall time of every frame."""
    import tempfile

    from edge.console import RunConsole
    from edge.runner import RunOptions, prepare

    with tempfile.TemporaryDirectory(prefix="sitehawk-vlm-gate-") as tmp_name:
        tmp = Path(tmp_name)
        config = None
        if vlm_url is not None:
            from edge.sim.device_config import device_config_for_site
            from edge.sim.generate import generate_site

            cfg = device_config_for_site(generate_site(7, duration_s=600.0))
            vlm = {"backend": "openai", "url": vlm_url, "timeout_s": timeout_s}
            cfg = cfg.model_copy(update={"vlm": cfg.vlm.model_validate(vlm)})
            config = tmp / "device.yaml"
            config.write_text(cfg.to_yaml())
        opts = RunOptions(
            config=config,
            seed=None if config is not None else 7,
            duration_s=duration_s,
            policy="greedy",
            out=tmp / "run",
            outbox=tmp / "outbox.sqlite3",
            start_s=0.0,
            report=False,
            perception="sim",
            vlm=None if config is not None else True,
        )
        run = prepare(opts, RunConsole(file=io.StringIO(), live=False))
        records: list[Any] = []
        frames: list[float] = []
        run.agent.on_alert.append(records.append)
        run.agent.on_frame.append(lambda _: frames.append(time.monotonic()))
        try:
            run.agent.run(duration_s)
        finally:
            run.agent.stop()
            run.outbox.close()
    return records, frames


def test_the_agent_loop_goes_on_while_the_vlm_is_slow(vlm_server: Any) -> None:
    url, handler = vlm_server
    handler.delay_s = 2.5
    records, frames = _run_agent(url, timeout_s=0.5)
    asked = [r.alert for r in records if r.alert["vlm"] is not None]
    assert asked, "seed 7 raises a VLM-checked alert within 100 s"
    for alert in asked:
        # timed out (or turned away while the worker still waits on an earlier question)
        assert alert["vlm"]["error"] in ("timeout", "unavailable"), alert["vlm"]
        assert alert["vlm"]["confirmed"] is None and alert["vlm"]["answer"] is None
        validate_alert(alert)
    assert handler.asked  # the question reached the server
    gaps = np.diff(frames)
    assert gaps.max() < 1.0, f"a frame waited {gaps.max():.2f} s (the VLM answers after 2.5 s)"


def test_an_alert_whose_question_is_in_flight_goes_out_when_the_agent_stops(
    vlm_server: Any,
) -> None:
    """The run ends ~1 s of site time after seed 7's first alert asked the VLM, which answers
    after 5 s (its timeout is 10 s): the stopping agent waits STOP_VLM_WAIT_S for the answer,
    then raises the alert as a timeout rather than dropping a ripe hazard."""
    url, handler = vlm_server
    handler.delay_s = 5.0
    records, frames = _run_agent(url, timeout_s=10.0, duration_s=74.0)
    asked = [r for r in records if r.alert["vlm"] is not None]
    assert len(asked) == 1 and handler.asked
    (record,) = asked
    assert record.alert["state"] == "raised" and record.alert["hazard"] == "no_vest"
    assert record.alert["vlm"]["error"] == "timeout" and record.alert["vlm"]["confirmed"] is None
    assert record.alert["vlm"]["question"] == HAZARD_QUESTIONS["no_vest"].question
    validate_alert(record.alert)


def test_run_vlm_on_asks_the_shipped_gguf() -> None:
    pytest.importorskip("llama_cpp")
    records, _ = _run_agent(None)
    asked = [r.alert for r in records if r.alert["vlm"] is not None]
    assert asked, "seed 7 raises a VLM-checked alert within 100 s"
    for alert in asked:
        validate_alert(alert)
        assert alert["vlm"]["error"] is None and alert["vlm"]["answer"] in ("yes", "no")
        assert (
            alert["models"]["vlm"]
            == json.loads(
                (Path(__file__).resolve().parents[2] / "models/vlm/vlm.manifest.json").read_text()
            )["files"]["text"]["sha256"]
        )
