"""Asking the VLM without ever blocking the control loop.

:class:`VLMWorker` owns one backend and one worker thread. The control loop calls
:meth:`VLMWorker.submit` (returns at once with a :class:`VLMRequest`) and later polls
:meth:`VLMRequest.answer`; a request that is not answered within its ``timeout_s`` resolves as
``error="timeout"``, a full queue or a dead backend as ``error="unavailable"``. A llama.cpp call
cannot be interrupted, so a timed-out question still occupies the worker until it finishes —
the bounded queue then turns new questions away instead of piling them up.

Typical use by the alert path (see docs/vlm.md)::

    worker = VLMWorker(make_backend("llama_cpp", "models/vlm"), timeout_s=2.0)
    worker.start()
    req = worker.submit(crop_rgb, HAZARD_QUESTIONS["no_helmet"].question)
    ...  # next frames
    if req.done():
        answer = req.answer()  # VLMAnswer; error="timeout" once timeout_s has passed
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edge.vlm.backend import VLMAnswer, VLMBackend

log = logging.getLogger(__name__)


@dataclass
class VLMRequest:
    """One question in flight; resolves exactly once."""

    image_rgb: np.ndarray
    question: str
    timeout_s: float
    submitted: float = field(default_factory=time.monotonic)
    _event: threading.Event = field(default_factory=threading.Event, repr=False)
    _answer: VLMAnswer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resolve(self, answer: VLMAnswer) -> bool:
        """Set the answer unless one is already set; True when this call set it."""
        with self._lock:
            if self._answer is not None:
                return False
            self._answer = answer
        self._event.set()
        return True

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) - self.submitted >= self.timeout_s

    def done(self) -> bool:
        """Answered, failed or timed out (never blocks)."""
        if self._answer is None and self.expired():
            self._time_out()
        return self._answer is not None

    def answer(self) -> VLMAnswer | None:
        """The answer if :meth:`done`, else None (never blocks)."""
        return self._answer if self.done() else None

    def wait(self, timeout_s: float | None = None) -> VLMAnswer:
        """Block up to the request's remaining time (tests, tools — not the control loop)."""
        remaining = self.timeout_s - (time.monotonic() - self.submitted)
        limit = remaining if timeout_s is None else min(remaining, timeout_s)
        self._event.wait(max(0.0, limit))
        if self._answer is None:
            self._time_out()
        assert self._answer is not None
        return self._answer

    def _time_out(self) -> None:
        self.resolve(VLMAnswer.failed("timeout", (time.monotonic() - self.submitted) * 1000.0))


class VLMWorker:
    """One backend behind a bounded queue and a daemon thread."""

    def __init__(self, backend: VLMBackend, *, timeout_s: float = 2.0, max_queue: int = 2):
        if timeout_s <= 0 or max_queue < 1:
            raise ValueError("timeout_s must be > 0 and max_queue ≥ 1")
        self.backend = backend
        self.timeout_s = timeout_s
        self._queue: queue.Queue[VLMRequest | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._load_error: str | None = None
        self.counts = {"asked": 0, "answered": 0, "timeout": 0, "unavailable": 0}

    def start(self) -> None:
        """Start the thread; the backend loads there, so a slow model load blocks nobody."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sitehawk-vlm", daemon=True)
        self._thread.start()

    @property
    def available(self) -> bool:
        """Loaded and running (False while loading, after a load failure or after stop)."""
        alive = self._thread is not None and self._thread.is_alive()
        return alive and self._ready.is_set() and self._load_error is None

    def submit(
        self, image_rgb: np.ndarray, question: str, timeout_s: float | None = None
    ) -> VLMRequest:
        """Queue a question; returns at once. A full queue or a dead backend fails it now."""
        req = VLMRequest(image_rgb, question, timeout_s or self.timeout_s)
        self.counts["asked"] += 1
        if self._load_error is not None or self._thread is None or not self._thread.is_alive():
            self._fail(req, self._load_error or "VLM worker not running")
            return req
        try:
            self._queue.put_nowait(req)
        except queue.Full:
            self._fail(req, "VLM queue full")
        return req

    def ask(
        self, image_rgb: np.ndarray, question: str, timeout_s: float | None = None
    ) -> VLMAnswer:
        """Submit and wait (for tools and tests; the control loop uses :meth:`submit`)."""
        answer = self.submit(image_rgb, question, timeout_s).wait()
        if answer.error == "timeout":
            self.counts["timeout"] += 1
        return answer

    def stop(self, join_timeout_s: float = 1.0) -> None:
        """Ask the thread to finish after its current question; close the backend there."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=join_timeout_s)
        self._thread.join(join_timeout_s)

    def _fail(self, req: VLMRequest, detail: str) -> None:
        self.counts["unavailable"] += 1
        req.resolve(VLMAnswer.failed("unavailable", 0.0, detail))

    def _run(self) -> None:
        try:
            self.backend.load()
        except Exception as exc:  # any load failure means "unavailable", reported per request
            self._load_error = f"VLM backend failed to load: {exc}"
            log.error(self._load_error)
            self._ready.set()
            self._drain()
            return
        self._ready.set()
        try:
            while True:
                req = self._queue.get()
                if req is None:
                    break
                if req.done():  # timed out while waiting in the queue: do not spend time on it
                    continue
                try:
                    answer = self.backend.ask(req.image_rgb, req.question)
                except Exception as exc:  # a failed question must not kill the worker
                    log.warning("VLM question failed: %s", exc)
                    answer = VLMAnswer.failed("unavailable", 0.0, str(exc))
                if req.resolve(answer):
                    self.counts["answered" if answer.error is None else "unavailable"] += 1
        finally:
            self.backend.close()

    def _drain(self) -> None:
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                return
            if req is not None:
                self._fail(req, self._load_error or "VLM worker stopped")
