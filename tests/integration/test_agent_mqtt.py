"""`sitehawk-edge run --mqtt` against a real Mosquitto: alerts reach an independent subscriber
exactly as written to alerts.jsonl, the retained status ends `stopped`, `sitehawk-edge subscribe`
prints validated alerts, and a restarted device does not raise its open events again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edge.alerts.schema import load_alert_schema
from edge.cli import main
from edge.mqtt import StateStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: Seed 5: two workers without helmets from t ≈ 4 s (a bare head is raised at ~14 s).
SEED = 5
SITE, DEVICE = f"site-{SEED}", f"vsite-{SEED}"
BASE = f"sitehawk/v1/{SITE}/{DEVICE}"


def _run(tmp_path: Path, broker_url: str, name: str, duration_s: float, *extra: str) -> Path:
    out = tmp_path / name
    argv = ["run", "--seed", str(SEED), "--duration", f"{duration_s:g}", "--mqtt", broker_url]
    argv += ["--out", str(out), "--outbox", str(tmp_path / "outbox.sqlite3"), *extra]
    assert main(argv) == 0
    return out


def _subscribe(broker_url: str, *args: str) -> subprocess.Popen[str]:
    """`sitehawk-edge subscribe` in its own process; returns once it is subscribed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "subscribe", "--mqtt", broker_url, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "watching ..." once the subscription is acknowledged
    assert first.startswith("watching"), first + proc.stdout.read()
    return proc


def test_run_publishes_alerts_and_a_final_stopped_status(
    tmp_path: Path, mosquitto_broker: Any, mqtt_subscriber: Any
) -> None:
    broker = mosquitto_broker()
    subscriber = mqtt_subscriber(broker)  # sitehawk/v1/#, independent of the agent's code
    watcher = _subscribe(broker.url, "--site", SITE, "--count", "1", "--timeout", "120")
    out = _run(tmp_path, broker.url, "run", 30)

    lines = (out / "alerts.jsonl").read_text().splitlines()
    assert lines, "a 30 s run on seed 5 raised no alert"
    assert subscriber.wait_for(
        lambda msgs: sum(m.topic == f"{BASE}/alert" for m in msgs) >= len(lines), 10
    )
    alerts = subscriber.received(f"{BASE}/alert")
    # exactly the bytes alerts.jsonl holds, in the same order, each once
    assert [m.payload for m in alerts] == [line.encode() for line in lines]
    validator = Draft202012Validator(load_alert_schema())
    messages = [json.loads(m.payload) for m in alerts]
    for message in messages:
        assert not [e.message for e in validator.iter_errors(message)]
    assert all(m.qos == 1 and not m.retain for m in alerts)
    # the evidence JPEG of each raised alert arrived on its snapshot topic, sha256 as announced
    for message in messages:
        if message["state"] != "raised":
            continue
        evidence = message["evidence"]
        assert evidence["snapshot_topic"] == f"{BASE}/snapshot/{message['alert_id']}"
        snapshots = subscriber.received(evidence["snapshot_topic"])
        assert len(snapshots) == 1
        assert hashlib.sha256(snapshots[0].payload).hexdigest() == evidence["snapshot_sha256"]
    # the retained status a late subscriber gets says the device stopped
    late = mqtt_subscriber(broker, topic_filter=f"{BASE}/status")
    assert late.wait_for(lambda msgs: len(msgs) >= 1, 10)
    status = json.loads(late.received()[-1].payload)
    assert status["state"] == "stopped" and status["outbox_depth"] == 0
    assert status["boot_seq"] == 1 and status["refused"] == 0
    states = [json.loads(m.payload)["state"] for m in subscriber.received(f"{BASE}/status")]
    assert states[0] == "online" and states[-1] == "stopped"
    summary = json.loads((out / "status.json").read_text())
    assert summary["run"]["delivered"] is True and summary["state"] == "stopped"
    # `sitehawk-edge subscribe --count 1` printed the first alert, validated
    printed, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, printed
    assert "ALERT RAISED" in printed and messages[0]["alert_id"] in printed
    assert "INVALID" not in printed


def test_subscribe_prints_invalid_alerts_with_their_problems(
    mosquitto_broker: Any, mqtt_subscriber: Any
) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    broker = mosquitto_broker()
    watcher = _subscribe(broker.url, "--count", "3", "--timeout", "60")
    publisher = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    good = _valid_alert()
    bad = {**good, "confidence": 1.5}
    del bad["seq"]
    for payload in (b"{not json", json.dumps(bad).encode(), json.dumps(good).encode()):
        publisher.publish(f"{BASE}/alert", payload, qos=1).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()
    printed, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, printed
    assert printed.count("INVALID alert") == 2
    assert "not JSON" in printed
    assert "confidence" in printed and "seq" in printed  # the fields at fault
    assert "ALERT RAISED" in printed and good["alert_id"] in printed


def test_subscribe_times_out_with_exit_1_and_refuses_bad_urls(mosquitto_broker: Any) -> None:
    broker = mosquitto_broker()
    watcher = _subscribe(broker.url, "--count", "1", "--timeout", "1")
    printed, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 1 and "timed out" in printed
    bad = subprocess.run(
        [sys.executable, "-m", "edge.cli", "subscribe", "--mqtt", "http://127.0.0.1:1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--mqtt" in bad.stderr


def test_a_restarted_device_does_not_raise_its_open_events_again(
    tmp_path: Path, mosquitto_broker: Any, mqtt_subscriber: Any
) -> None:
    broker = mosquitto_broker()
    subscriber = mqtt_subscriber(broker, topic_filter=f"{BASE}/alert")
    first = _run(tmp_path, broker.url, "first", 30)
    state = StateStore(tmp_path / "outbox.sqlite3")
    open_after_first = {e["alert_id"]: e for e in state.get("alerts/open/cam0")["events"]}
    assert open_after_first, "the first run left no open event: nothing to test"
    assert state.get("virtual/cam0")["t"] == pytest.approx(30.0)
    state.close()
    events_of_first = {
        a["alert_id"]: a["event_id"]
        for a in json.loads((first / "status.json").read_text())["score"]["cam0"]["alert_outcomes"]
    }
    open_events = {events_of_first[i] for i in open_after_first if events_of_first.get(i)}
    assert open_events, "the open alerts of the first run match no hazard event of the site"

    # the second run starts where the first stopped (same outbox/state database)
    second = _run(tmp_path, broker.url, "second", 20)
    summary = json.loads((second / "status.json").read_text())
    camera = summary["run"]["cameras"]["cam0"]
    assert camera["resumed"] is True and camera["start_t"] == pytest.approx(30.0)
    assert summary["boot_seq"] == 2
    outcomes = summary["score"]["cam0"]["alert_outcomes"]
    reraised = [a for a in outcomes if a["event_id"] in open_events]
    assert not reraised, f"the second run raised open events again: {reraised}"

    # ... and each open event either stays open under its old alert id or is cleared under it
    # (whether the policy looks at it again within 20 s is the policy's business; the manager
    # tests cover re-keying a restored event to a new track)
    state = StateStore(tmp_path / "outbox.sqlite3")
    open_after_second = {e["alert_id"]: e for e in state.get("alerts/open/cam0")["events"]}
    state.close()
    second_lines = [json.loads(x) for x in (second / "alerts.jsonl").read_text().splitlines()]
    cleared = {a["alert_id"] for a in second_lines if a["state"] == "cleared"}
    for alert_id in open_after_first:
        assert alert_id in open_after_second or alert_id in cleared, alert_id
    # the device's messages: seq strictly increasing across the restart, no duplicate raise
    assert subscriber.wait_for(lambda msgs: len(msgs) >= _num_lines(first, second), 10)
    messages = [json.loads(m.payload) for m in subscriber.received()]
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs))
    raised = [m["alert_id"] for m in messages if m["state"] == "raised"]
    assert len(raised) == len(set(raised))
    stamps = [m["ts"] for m in messages]
    assert stamps == sorted(stamps)  # timestamps never go back across the restart


def _num_lines(*runs: Path) -> int:
    return sum(len((run / "alerts.jsonl").read_text().splitlines()) for run in runs)


def _valid_alert() -> dict[str, Any]:
    alert_id = str(uuid.uuid4())
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "schema": "sitehawk.alert/1",
        "alert_id": alert_id,
        "state": "raised",
        "seq": 7,
        "site_id": SITE,
        "device_id": DEVICE,
        "camera_id": "cam0",
        "hazard": "no_helmet",
        "severity": "medium",
        "confidence": 0.9,
        "first_seen": now,
        "ts": now,
        "location": {
            "pan_deg": 12.5,
            "tilt_deg": -4.0,
            "zoom": 4.0,
            "bbox": [0.1, 0.2, 0.15, 0.3],
            "ground_xy_m": [10.0, 20.0],
        },
        "evidence": {
            "snapshot_topic": f"{BASE}/snapshot/{alert_id}",
            "snapshot_sha256": "ab" * 32,
            "width": 1280,
            "height": 720,
        },
        "vlm": None,
        "models": {},
        "agent_version": "0.1.0",
    }
