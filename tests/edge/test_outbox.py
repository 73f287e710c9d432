"""The durable outbox and state store (edge/mqtt/outbox.py), without a broker."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.mqtt.outbox import Outbox, OutboxError, StateStore

ALERT = "sitehawk/v1/site1/dev1/alert"
STATUS = "sitehawk/v1/site1/dev1/status"
OTA_STATE = "sitehawk/v1/site1/dev1/ota/state"


def snapshot_topic(n: int) -> str:
    return f"sitehawk/v1/site1/dev1/snapshot/a{n}"


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_pending_is_fifo_within_a_kind_status_first_snapshots_last(outbox: Outbox) -> None:
    outbox.put(snapshot_topic(1), b"jpeg-1", kind="snapshot")
    for i in range(3):
        outbox.put(ALERT, f"alert-{i}".encode(), kind="alert")
    outbox.put(STATUS, b"online", kind="status", retain=True)
    outbox.put(snapshot_topic(2), b"jpeg-2", kind="snapshot")

    pending = outbox.pending()
    assert [m.payload for m in pending] == [
        b"online", b"alert-0", b"alert-1", b"alert-2", b"jpeg-1", b"jpeg-2"
    ]  # fmt: skip
    assert pending[0].retain and not pending[1].retain
    assert all(m.qos == 1 for m in pending)
    assert [m.payload for m in outbox.pending(limit=2)] == [b"online", b"alert-0"]
    assert outbox.depth == 6


def test_ack_removes_and_refuse_moves_aside_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        first = box.put(ALERT, b"a1", kind="alert")
        second = box.put(ALERT, b"a2", kind="alert")
        third = box.put(ALERT, b"a3", kind="alert")
        assert box.ack(first)
        assert not box.ack(first), "acking twice is a no-op"
        assert box.refuse(second, 0x87, "Not authorized")
        assert not box.refuse(second, 0x87, "Not authorized"), "a refusal is counted once"
        assert [m.id for m in box.pending()] == [third]
        assert box.refused_count == 1 and box.depth == 1
    with Outbox(path) as reopened:  # counts and refused messages survive a restart
        assert reopened.refused_count == 1
        (refused,) = reopened.refused()
        assert refused.message.id == second and refused.message.payload == b"a2"
        assert refused.reason_code == 0x87 and refused.reason == "Not authorized"
        assert reopened.stats()["refused"] == 1 and reopened.depth == 1


def test_refused_table_is_bounded_but_the_count_is_not(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_refused=2) as box:
        for i in range(5):
            box.refuse(box.put(ALERT, f"a{i}".encode(), kind="alert"), 0x87)
        assert box.refused_count == 5
        assert [r.message.payload for r in box.refused()] == [b"a4", b"a3"]


def test_over_the_count_limit_the_oldest_snapshots_give_way(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db", max_messages=4) as box:
        box.put(snapshot_topic(1), b"s1", kind="snapshot")
        box.put(ALERT, b"a1", kind="alert")
        box.put(snapshot_topic(2), b"s2", kind="snapshot")
        box.put(STATUS, b"online", kind="status", retain=True)
        box.put(ALERT, b"a2", kind="alert")  # 5 > 4: s1 goes
        assert sorted(m.payload for m in box.pending()) == [b"a1", b"a2", b"online", b"s2"]
        box.put(ALERT, b"a3", kind="alert")  # s2 goes
        assert box.dropped_snapshots == 2 and not box.full
        # Only alerts and status left: alerts are never dropped, the outbox reports full.
        box.put(ALERT, b"a4", kind="alert")
        assert box.depth == 5 and box.full
        assert [m.payload for m in box.pending()] == [b"online", b"a1", b"a2", b"a3", b"a4"]
        # A snapshot that arrives while only alerts fill the outbox gives way itself.
        box.put(snapshot_topic(3), b"s3", kind="snapshot")
        assert box.dropped_snapshots == 3 and box.depth == 5
        for message in box.pending(limit=2):
            box.ack(message.id)
        assert not box.full and box.depth == 3


def test_the_byte_limit_evicts_snapshots_and_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_bytes=10_000) as box:
        for i in range(4):
            box.put(snapshot_topic(i), bytes(3_000), kind="snapshot")  # the 4th pushes s0 out
        alert_id = box.put(ALERT, bytes(1_500), kind="alert")  # and this one s1
        assert box.dropped_snapshots == 2
        assert [m.topic for m in box.pending()][1:] == [snapshot_topic(2), snapshot_topic(3)]
        assert box.pending()[0].id == alert_id
        assert box.num_bytes <= 10_000
        num_bytes = box.num_bytes
    with Outbox(path, max_bytes=10_000) as reopened:
        assert reopened.num_bytes == num_bytes and reopened.dropped_snapshots == 2


def test_a_status_supersedes_older_queued_status_on_the_same_topic(outbox: Outbox) -> None:
    outbox.put(STATUS, b"online-1", kind="status", retain=True)
    outbox.put(OTA_STATE, b"downloading", kind="status", retain=True)
    outbox.put(ALERT, b"a1", kind="alert")
    old = outbox.put(STATUS, b"online-2", kind="status", retain=True)
    newest = outbox.put(STATUS, b"stopped", kind="status", retain=True)
    pending = outbox.pending()
    assert [m.payload for m in pending] == [b"downloading", b"stopped", b"a1"]
    assert outbox.get(old) is None and outbox.get(newest) is not None
    assert outbox.depth == 3


def test_put_rejects_what_cannot_be_published(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="kind"):
        outbox.put(ALERT, b"x", kind="telemetry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="QoS 1"):
        outbox.put(ALERT, b"x", kind="alert", qos=0)
    with pytest.raises(ValueError, match="topic"):
        outbox.put("sitehawk/v1/+/alert", b"x", kind="alert")
    with pytest.raises(TypeError, match="bytes"):
        outbox.put(ALERT, "text", kind="alert")  # type: ignore[arg-type]
    assert outbox.depth == 0


def test_next_seq_is_strictly_increasing_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        seqs = [box.state.next_seq() for _ in range(3)]
        assert box.state.next_boot() == 1
    state = StateStore(path)  # the state store also opens on its own
    seqs += [state.next_seq() for _ in range(3)]
    assert state.next_boot() == 2
    state.close()
    assert seqs == [1, 2, 3, 4, 5, 6]


def test_state_values_and_transactions(outbox: Outbox) -> None:
    state = outbox.state
    state.set("open_events", {"no_helmet:7": {"alert_id": "a1", "seq": 1}})
    state.set("events/a", 1)
    state.set("events/b", [1, 2])
    assert state.get("open_events") == {"no_helmet:7": {"alert_id": "a1", "seq": 1}}
    assert state.get("missing", "default") == "default"
    assert state.keys("events/") == ["events/a", "events/b"]
    assert state.delete("events/a") and not state.delete("events/a")

    # A put and a state update commit together or not at all.
    with pytest.raises(RuntimeError), outbox.transaction():
        seq = state.next_seq()
        outbox.put(ALERT, json.dumps({"seq": seq}).encode(), kind="alert")
        state.set("open_events", {})
        raise RuntimeError("crash between the two writes")
    assert outbox.depth == 0 and outbox.num_bytes == 0
    assert state.get("open_events") == {"no_helmet:7": {"alert_id": "a1", "seq": 1}}
    assert state.next_seq() == 1, "the rolled-back seq is not used up"
    with pytest.raises(ValueError, match="not a counter"):
        state.increment("open_events")


def test_threads_put_and_ack_concurrently(outbox: Outbox) -> None:
    num_producers, per_producer = 4, 100
    acked: list[int] = []
    done = threading.Event()

    def produce(n: int) -> None:
        for i in range(per_producer):
            outbox.put(ALERT, f"{n}-{i}".encode(), kind="alert")

    def consume() -> None:
        while not (done.is_set() and outbox.depth == 0):
            batch = outbox.pending(16)
            outbox.ack_many(m.id for m in batch)
            acked.extend(m.id for m in batch)

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(n,)) for n in range(num_producers)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    consumer.join(30)
    assert len(acked) == len(set(acked)) == num_producers * per_producer
    assert outbox.depth == 0 and outbox.num_bytes == 0


def test_a_corrupt_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=str(path)):
        Outbox(path)


# The writer prints "seq id" after each put returns, i.e. after the commit.
WRITER = """
import sys
from edge.mqtt.outbox import Outbox
box = Outbox(sys.argv[1])
while True:
    with box.transaction():
        seq = box.state.next_seq()
        message_id = box.put("sitehawk/v1/site1/dev1/alert", b"alert-%d" % seq, kind="alert")
    print(seq, message_id, flush=True)
"""


def test_a_sigkilled_writer_loses_nothing_it_reported_as_put(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    reported: list[tuple[int, int]] = []
    try:
        for line in writer.stdout:
            reported.append(tuple(map(int, line.split())))  # type: ignore[arg-type]
            if len(reported) == 200:
                writer.send_signal(signal.SIGKILL)  # mid-way: it keeps writing until it dies
                break
        reported += [tuple(map(int, line.split())) for line in writer.stdout]  # type: ignore[misc]
    finally:
        writer.kill()
        writer.wait(10)
    assert writer.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Outbox(path) as box:
        queued = {m.id: m.payload for m in box.pending(limit=100_000)}
        for seq, message_id in reported:
            assert queued.get(message_id) == b"alert-%d" % seq
        # Nothing half-applied: every committed seq has its alert, and vice versa.
        last_seq = box.state.get("seq")
        assert last_seq >= reported[-1][0]
        assert sorted(queued.values()) == sorted(b"alert-%d" % s for s in range(1, last_seq + 1))
        assert box.depth == len(queued) == last_seq
        assert box.state.next_seq() == last_seq + 1
