"""What the alert manager needs from durable storage, and an in-memory stand-in for tests.

On a device the :class:`StateStore` is the outbox's SQLite database (``edge/mqtt/outbox.py``), so
open hazard events and the ``seq`` counter survive a restart together with the queued messages.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class StateStore(Protocol):
    """Durable JSON key-value state plus the device's alert sequence counter."""

    def get(self, key: str) -> Any | None:
        """The JSON value stored under ``key``, or None."""
        ...

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (atomically)."""
        ...

    def next_seq(self) -> int:
        """The next alert ``seq``: atomic, starts at 1, strictly increasing across restarts."""
        ...


class MemoryStateStore:
    """A :class:`StateStore` in a dict; values go through JSON as they would on disk."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._seq = 0

    def get(self, key: str) -> Any | None:
        text = self._values.get(key)
        return None if text is None else json.loads(text)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = json.dumps(value, allow_nan=False)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq
