"""The durable outbox and the agent's persistent state: one SQLite database (WAL).

Alerts, snapshots and status messages wait in the outbox until the broker acknowledges them with
a successful PUBACK (DESIGN.md, "Rules behind it"), so a broker outage or a SIGKILL loses
nothing. A message the broker refuses (PUBACK reason code >= 0x80, e.g. 0x87 not authorised) is
moved to the ``refused`` table and counted, never silently dropped.

The outbox is bounded by a message count and a byte total. When a put goes over either bound the
oldest *snapshots* give way first (counted in ``dropped_snapshots``); alerts and status are never
dropped: if only they remain, the outbox grows past its bound and :attr:`Outbox.full` turns true,
which the status and telemetry messages report. A status message supersedes the queued status
messages on the same topic, since only the latest retained status matters.

:class:`StateStore` keeps small JSON values on the same database (the alert ``seq`` counter, the
``boot_seq``, open hazard events). ``with outbox.transaction():`` makes a put and state updates
atomic together, e.g. "raise alert" and "remember the open event".

Durability: ``synchronous=FULL`` by default, so every committed put, ack and counter survives a
SIGKILL *and* a power cut (a Jetson on a site loses power; ``NORMAL`` in WAL mode survives a
process crash but may lose the last commits on power loss, which could re-issue a ``seq``).
One connection, guarded by a lock, serves every thread (agent thread, MQTT sender thread).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

MessageKind = Literal["alert", "snapshot", "status"]
MESSAGE_KINDS: tuple[str, ...] = get_args(MessageKind)
#: Send order between kinds (FIFO within a kind): status is tiny and says the device is alive;
#: alerts are what subscribers wait for; snapshots are large and may wait.
PRIORITY: dict[str, int] = {"status": 0, "alert": 1, "snapshot": 2}
Synchronous = Literal["FULL", "NORMAL"]

SCHEMA_VERSION = 1
DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
#: Refused messages kept for inspection (the all-time count is kept apart and never shrinks).
DEFAULT_MAX_REFUSED = 1_000
#: Largest WAL file kept after a checkpoint: snapshots pass through it.
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    -- AUTOINCREMENT: ids are never reused, so a late PUBACK can't remove a newer message
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    priority    INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    created_ts  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_send_order ON messages (priority, id);
CREATE INDEX IF NOT EXISTS messages_by_kind ON messages (kind, topic, id);
CREATE TABLE IF NOT EXISTS refused (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    qos         INTEGER NOT NULL,
    retain      INTEGER NOT NULL,
    created_ts  REAL    NOT NULL,
    refused_ts  REAL    NOT NULL,
    reason_code INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class OutboxError(Exception):
    """The outbox database cannot be opened or used (the message names the file)."""


@dataclass(frozen=True)
class OutboxMessage:
    """One queued message, as it will be published."""

    id: int
    kind: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_ts: float


@dataclass(frozen=True)
class RefusedMessage:
    """A message the broker refused, kept aside with the PUBACK reason."""

    message: OutboxMessage
    reason_code: int
    reason: str
    refused_ts: float


class _Database:
    """One SQLite connection shared by threads under a re-entrant lock, with nestable
    transactions (the outermost one commits)."""

    def __init__(self, path: str | Path, synchronous: Synchronous, busy_timeout_s: float = 10.0):
        if synchronous not in get_args(Synchronous):
            raise ValueError(
                f"synchronous must be one of {get_args(Synchronous)}, not {synchronous!r}"
            )
        self.path = Path(path)
        self.lock = threading.RLock()
        self._depth = 0
        self._rollback_hooks: list[Callable[[], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; ours are explicit BEGIN IMMEDIATE.
            self.conn = sqlite3.connect(
                str(self.path),
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"{self.path}: cannot open the outbox database: {exc}") from exc
        try:
            self._configure(synchronous)
        except sqlite3.Error as exc:
            self.conn.close()
            raise OutboxError(f"{self.path}: not a usable outbox database: {exc}") from exc

    def _configure(self, synchronous: Synchronous) -> None:
        conn = self.conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode=WAL refused (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} was written by a newer SiteHawk (this one knows "
                f"{SCHEMA_VERSION})"
            )
        with self.transaction():
            # One statement at a time: executescript() would COMMIT our transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def add_rollback_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every rollback (to reload in-memory mirrors of the tables)."""
        self._rollback_hooks.append(hook)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                for hook in self._rollback_hooks:
                    hook()
                raise
            finally:
                self._depth = 0

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _get_counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _add_counter(conn: sqlite3.Connection, name: str, delta: int) -> int:
    value = _get_counter(conn, name) + delta
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )
    return value


_MESSAGE_COLUMNS = "id, kind, topic, payload, qos, retain, created_ts"


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    return OutboxMessage(
        id=int(row[0]),
        kind=str(row[1]),
        topic=str(row[2]),
        payload=bytes(row[3]),
        qos=int(row[4]),
        retain=bool(row[5]),
        created_ts=float(row[6]),
    )


class Outbox:
    """Durable, bounded FIFO of MQTT messages that leave only on a successful PUBACK.

    One instance per database file per process (it mirrors the depth and byte total in memory).
    Thread-safe.
    """

    def __init__(
        self,
        path: str | Path,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        max_refused: int = DEFAULT_MAX_REFUSED,
        synchronous: Synchronous = "FULL",
    ):
        if max_messages < 1 or max_bytes < 1 or max_refused < 0:
            raise ValueError(
                "outbox limits must be positive: "
                f"max_messages={max_messages}, max_bytes={max_bytes}, max_refused={max_refused}"
            )
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.max_refused = max_refused
        self._db = _Database(path, synchronous)
        self._db.add_rollback_hook(self._load_mirrors)
        self._state = StateStore._on(self._db)
        #: Puts since this instance opened; a sender compares it to know when to look again.
        self.put_count = 0
        self._warned_full = False
        self._load_mirrors()

    # ------------------------------------------------------------------ lifecycle
    @property
    def path(self) -> Path:
        return self._db.path

    def close(self) -> None:
        """Close the database (pending messages stay in it for the next start)."""
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def state(self) -> StateStore:
        """The :class:`StateStore` on this database (same connection, same transactions)."""
        return self._state

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group puts, acks and state updates into one atomic commit (nestable)."""
        return self._db.transaction()

    def _load_mirrors(self) -> None:
        with self._db.lock:
            conn = self._db.conn
            count, total = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
            ).fetchone()
            self._depth = int(count)
            self._num_bytes = int(total)
            self._refused_count = _get_counter(conn, "refused")
            self._dropped_snapshots = _get_counter(conn, "dropped_snapshots")

    # ------------------------------------------------------------------ queue
    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        kind: MessageKind,
        qos: int = 1,
        retain: bool = False,
    ) -> int:
        """Queue a message durably (committed when this returns); return its id.

        A status message replaces the queued status messages on the same topic. When the put
        goes over a bound the oldest snapshots are dropped (possibly this one, when it is a
        snapshot); alerts and status are always kept, and :attr:`full` reports the overflow.
        """
        if kind not in PRIORITY:
            raise ValueError(f"kind must be one of {MESSAGE_KINDS}, not {kind!r}")
        if qos != 1:
            raise ValueError(
                f"outbox messages are QoS 1 (got qos={qos}); QoS 0 telemetry is published "
                "directly and never queued"
            )
        if not topic or any(c in topic for c in "+#\0"):
            raise ValueError(f"invalid publish topic {topic!r} (empty, or has + # or NUL)")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        data = bytes(payload)
        size = len(data) + len(topic.encode())
        with self._db.transaction() as conn:
            if kind == "status":
                self._delete_where(conn, "kind = 'status' AND topic = ?", (topic,))
            cur = conn.execute(
                "INSERT INTO messages (priority, kind, topic, payload, qos, retain, size, "
                "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (PRIORITY[kind], kind, topic, data, qos, int(retain), size, time.time()),
            )
            message_id = cur.lastrowid
            assert message_id is not None
            self._depth += 1
            self._num_bytes += size
            self._evict_snapshots(conn)
            self.put_count += 1
        return message_id

    def _delete_where(self, conn: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> int:
        rows = conn.execute(f"SELECT id, size FROM messages WHERE {where}", args).fetchall()
        for message_id, size in rows:
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._depth -= 1
            self._num_bytes -= int(size)
        return len(rows)

    def _over_limit(self) -> bool:
        return self._depth > self.max_messages or self._num_bytes > self.max_bytes

    def _evict_snapshots(self, conn: sqlite3.Connection) -> None:
        dropped = 0
        while self._over_limit():
            row = conn.execute(
                "SELECT id, topic, size FROM messages WHERE kind = 'snapshot' ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                break
            conn.execute("DELETE FROM messages WHERE id = ?", (row[0],))
            self._depth -= 1
            self._num_bytes -= int(row[2])
            dropped += 1
            log.warning("outbox over its limit: dropped the oldest snapshot (%s)", row[1])
        if dropped:
            self._dropped_snapshots = _add_counter(conn, "dropped_snapshots", dropped)
        if self._over_limit() and not self._warned_full:
            log.error(
                "outbox full: %d messages / %d bytes (limits %d / %d) and no snapshot left to "
                "drop; alerts are kept over the limit",
                self._depth,
                self._num_bytes,
                self.max_messages,
                self.max_bytes,
            )
        self._warned_full = self._over_limit()

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        """The next messages to send: status, then alerts, then snapshots; oldest first."""
        with self._db.lock:
            rows = self._db.conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY priority, id LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [_message(row) for row in rows]

    def get(self, message_id: int) -> OutboxMessage | None:
        """The queued message with this id, or None when it has left the outbox."""
        with self._db.lock:
            row = self._db.conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
        return _message(row) if row else None

    def ack(self, message_id: int) -> bool:
        """Remove a message the broker accepted; False when it was already gone."""
        return self.ack_many([message_id]) == 1

    def ack_many(self, message_ids: Iterable[int]) -> int:
        """Remove several accepted messages in one commit; return how many were still queued."""
        ids = list(message_ids)
        if not ids:
            return 0
        with self._db.transaction() as conn:
            removed = 0
            for message_id in ids:
                removed += self._delete_where(conn, "id = ?", (message_id,))
            if not self._over_limit():
                self._warned_full = False
        return removed

    def refuse(self, message_id: int, reason_code: int, reason: str = "") -> bool:
        """Move a message the broker refused to the ``refused`` table and count it.

        False when the message was no longer queued (then nothing is counted).
        """
        with self._db.transaction() as conn:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS}, size FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO refused (id, kind, topic, payload, qos, retain, "
                "created_ts, refused_ts, reason_code, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[:7], time.time(), int(reason_code), reason),
            )
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            self._depth -= 1
            self._num_bytes -= int(row[7])
            self._refused_count = _add_counter(conn, "refused", 1)
            conn.execute(
                "DELETE FROM refused WHERE id NOT IN "
                "(SELECT id FROM refused ORDER BY refused_ts DESC, id DESC LIMIT ?)",
                (self.max_refused,),
            )
        log.warning(
            "broker refused %s message %d on %s: reason 0x%02X %s",
            row[1],
            message_id,
            row[2],
            reason_code,
            reason,
        )
        return True

    def refused(self, limit: int = 100) -> list[RefusedMessage]:
        """The most recently refused messages, newest first."""
        with self._db.lock:
            rows = self._db.conn.execute(
                f"SELECT {_MESSAGE_COLUMNS}, reason_code, reason, refused_ts FROM refused "
                "ORDER BY refused_ts DESC, id DESC LIMIT ?",
                (int(limit),),
            ).fetchall()
        return [
            RefusedMessage(_message(row[:7]), int(row[7]), str(row[8]), float(row[9]))
            for row in rows
        ]

    # ------------------------------------------------------------------ counters
    @property
    def depth(self) -> int:
        """Messages waiting for a PUBACK."""
        return self._depth

    @property
    def num_bytes(self) -> int:
        """Bytes waiting (payloads + topics)."""
        return self._num_bytes

    @property
    def full(self) -> bool:
        """True while alerts/status alone keep the outbox over its bounds."""
        return self._over_limit()

    @property
    def refused_count(self) -> int:
        """Messages the broker ever refused (persists across restarts)."""
        return self._refused_count

    @property
    def dropped_snapshots(self) -> int:
        """Snapshots ever dropped to keep the outbox within its bounds (persists)."""
        return self._dropped_snapshots

    def stats(self) -> dict[str, Any]:
        """Counters for status and telemetry messages."""
        return {
            "outbox_depth": self.depth,
            "outbox_bytes": self.num_bytes,
            "outbox_full": self.full,
            "refused": self.refused_count,
            "dropped_snapshots": self.dropped_snapshots,
        }


class StateStore:
    """Small JSON values by key, on the outbox database; every write is committed durably."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL"):
        self._db = _Database(path, synchronous)

    @classmethod
    def _on(cls, db: _Database) -> StateStore:
        store = cls.__new__(cls)
        store._db = db
        return store

    def close(self) -> None:
        self._db.close()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group several writes (and outbox puts, on a shared database) into one commit."""
        return self._db.transaction()

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        with self._db.lock:
            row = self._db.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, text),
            )

    def delete(self, key: str) -> bool:
        """Remove ``key``; False when it was not there."""
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM state WHERE key = ?", (key,)).rowcount > 0

    def keys(self, prefix: str = "") -> list[str]:
        """Stored keys that start with ``prefix``, sorted."""
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT key FROM state WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def increment(self, key: str) -> int:
        """Atomically add one to the integer under ``key`` (0 when absent); return the new value."""
        with self._db.transaction():
            current = self.get(key, 0)
            if not isinstance(current, int) or isinstance(current, bool):
                raise ValueError(f"state key {key!r} holds {current!r}, not a counter")
            self.set(key, current + 1)
        return current + 1

    def next_seq(self) -> int:
        """The next alert ``seq``: strictly increasing across restarts and crashes."""
        return self.increment("seq")

    def next_boot(self) -> int:
        """Count one more agent start and return it (the status ``boot_seq``)."""
        return self.increment("boot_seq")
