"""MqttLink + Outbox against a real Mosquitto (fixtures in conftest.py): delivery on PUBACK only,
outages, ACL refusals, TLS and passwords, the last will, telemetry, a clean stop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.mqtt import LinkSettings, MqttLink, Outbox, StatusInfo, Topics

pytestmark = pytest.mark.integration

PREFIX = "sitehawk/v1"
SITE, DEVICE = "site1", "dev1"
TOPICS = Topics(PREFIX, SITE, DEVICE)
STATUS_FIELDS = {
    "state", "boot_seq", "agent_version", "models", "ts", "outbox_depth", "outbox_full", "refused"
}  # fmt: skip
# Fast reconnects keep the tests short; the defaults (0.5 s doubling to 30 s) are for devices.
FAST_RECONNECT = {"reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "connect_timeout_s": 5.0}


def alert_payload(seq: int, state: str = "raised") -> tuple[str, bytes]:
    alert_id = str(uuid.uuid4())
    body = {"schema": "sitehawk.alert/1", "alert_id": alert_id, "state": state, "seq": seq}
    return alert_id, json.dumps(body).encode()


def alert_ids(received: list) -> list[str]:
    return [json.loads(m.payload)["alert_id"] for m in received if m.topic == TOPICS.alert]


def statuses(received: list) -> list[dict]:
    return [json.loads(m.payload) for m in received if m.topic == TOPICS.status]


@pytest.fixture
def make_link(tmp_path: Path) -> Iterator:
    """Factory for links on their own outbox; every link is stopped at teardown."""
    links: list[MqttLink] = []

    def make(
        url: str, topics: Topics = TOPICS, outbox: Outbox | None = None, **settings
    ) -> MqttLink:
        if outbox is None:
            outbox = Outbox(tmp_path / f"outbox-{len(links)}.db")
        settings.setdefault("client_id", f"{topics.site_id}-{topics.device_id}")
        for key, value in FAST_RECONNECT.items():
            settings.setdefault(key, value)
        info = StatusInfo(
            boot_seq=outbox.state.next_boot(),
            agent_version="0.1.0-test",
            models={"detector": "ab" * 32},
        )
        link = MqttLink(LinkSettings(url=url, **settings), outbox, topics, info)
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop(timeout_s=1.0)
        link.outbox.close()


def test_messages_reach_a_subscriber_exactly_as_queued(
    mosquitto_broker, mqtt_subscriber, make_link
):
    broker = mosquitto_broker()
    subscriber = mqtt_subscriber(broker)
    link = make_link(broker.url)
    queued = [alert_payload(seq) for seq in range(1, 21)]
    for _, payload in queued:
        link.outbox.put(TOPICS.alert, payload, kind="alert")
    jpeg = bytes(range(256)) * 40
    link.outbox.put(TOPICS.snapshot(queued[0][0]), jpeg, kind="snapshot")

    link.start()
    assert link.wait_drained(10), link.stats()
    assert subscriber.wait_for(lambda got: len(alert_ids(got)) == 20 and len(got) >= 22, 10)

    alerts = subscriber.received(TOPICS.alert)
    assert [m.payload for m in alerts] == [payload for _, payload in queued]
    assert all(m.qos == 1 for m in alerts)
    (snapshot,) = subscriber.received(TOPICS.snapshot(queued[0][0]))
    assert snapshot.payload == jpeg and snapshot.qos == 1
    assert link.outbox.depth == 0 and link.refused == 0 and link.num_acked >= 22

    # The online status is retained: a subscriber arriving later still gets it.
    late = mqtt_subscriber(broker, topic_filter=TOPICS.status)
    assert late.wait_for(lambda got: len(got) == 1, 5)
    (retained,) = late.received()
    assert retained.retain and retained.qos == 1
    status = json.loads(retained.payload)
    assert set(status) == STATUS_FIELDS
    assert status["state"] == "online" and status["boot_seq"] == 1
    assert status["agent_version"] == "0.1.0-test" and status["models"] == {"detector": "ab" * 32}
    assert status["ts"].endswith("Z") and status["outbox_full"] is False


def test_no_matching_subscribers_is_a_successful_puback(mosquitto_broker, make_link):
    broker = mosquitto_broker()
    link = make_link(broker.url)
    for seq in range(5):
        link.outbox.put(TOPICS.alert, alert_payload(seq)[1], kind="alert")
    link.start()
    assert link.wait_drained(10)  # Mosquitto answers 0x10 here: nobody subscribes
    assert link.refused == 0 and link.outbox.refused() == []


def run_outage(broker, subscriber, link: MqttLink, outage_s: float) -> None:
    """Alerts flow, the broker stops while more are being queued (some in flight), stays down
    ``outage_s``, comes back: every alert arrives."""
    queued: list[str] = []
    seq = iter(range(1, 10_000))

    def produce(count: int, interval_s: float) -> None:
        for _ in range(count):
            alert_id, payload = alert_payload(next(seq))
            link.outbox.put(TOPICS.alert, payload, kind="alert")
            queued.append(alert_id)
            time.sleep(interval_s)

    link.start()
    assert link.wait_connected(10)
    produce(5, 0.0)
    assert subscriber.wait_for(lambda got: len(alert_ids(got)) == 5, 10)

    producer = threading.Thread(target=produce, args=(200, 0.005))
    producer.start()  # the broker goes down while this one puts alerts
    time.sleep(0.2)
    broker.stop()
    producer.join()
    produce(3, 0.0)  # and at least 3 alerts are raised during the outage
    assert not link.connected
    assert link.outbox.depth >= 3
    time.sleep(outage_s)
    assert link.last_error is not None and "refused" in link.last_error.lower()

    broker.start()
    assert link.wait_connected(outage_s + 15), link.stats()
    assert link.wait_drained(20), link.stats()
    assert subscriber.wait_for(lambda got: set(alert_ids(got)) >= set(queued), 20)
    received = alert_ids(subscriber.received())
    assert set(received) == set(queued), "no alert is lost"
    assert link.reconnects >= 1 and link.outbox.depth == 0
    assert subscriber.num_resumed_sessions >= 1, "broker persistence kept the subscriber's session"
    # Duplicates (re-sent after the drop) are possible and recognisable by alert_id + state.
    print(f"{len(queued)} alerts, {len(received) - len(set(received))} duplicates")


def test_broker_outage_loses_nothing(mosquitto_broker, mqtt_subscriber, make_link):
    broker = mosquitto_broker(persistence=True)
    subscriber = mqtt_subscriber(broker, topic_filter=TOPICS.alert)
    run_outage(broker, subscriber, make_link(broker.url), outage_s=3.0)


@pytest.mark.slow
def test_broker_outage_of_30_s_loses_nothing(mosquitto_broker, mqtt_subscriber, make_link):
    broker = mosquitto_broker(persistence=True)
    subscriber = mqtt_subscriber(broker, topic_filter=TOPICS.alert)
    link = make_link(broker.url, reconnect_min_s=0.5, reconnect_max_s=5.0)
    run_outage(broker, subscriber, link, outage_s=30.0)


def test_acl_refusal_is_set_aside_and_reported(mosquitto_broker, mqtt_subscriber, make_link):
    broker = mosquitto_broker(auth=True)
    observer = mqtt_subscriber(broker)
    username, password = broker.credentials(SITE, DEVICE)
    link = make_link(broker.url, username=username, password=password)
    link.start()
    assert link.wait_connected(10), link.last_error

    good_id, good = alert_payload(1)
    link.outbox.put(TOPICS.alert, good, kind="alert")
    foreign = Topics(PREFIX, SITE, "dev2")  # another device's prefix: the ACL says no
    link.outbox.put(foreign.alert, alert_payload(2)[1], kind="alert")
    assert link.wait_drained(10)
    later_id, later = alert_payload(3)
    link.outbox.put(TOPICS.alert, later, kind="alert")
    assert link.wait_drained(10)

    assert link.refused == 1 and link.connected and link.running
    (refused,) = link.outbox.refused()
    assert refused.message.topic == foreign.alert
    assert refused.reason_code == 0x87 and "authori" in refused.reason.lower()
    assert observer.wait_for(lambda got: alert_ids(got) == [good_id, later_id], 5)
    assert observer.received(foreign.alert) == []
    # The refusal is visible remotely: a fresh status carries the count.
    assert observer.wait_for(lambda got: any(s["refused"] == 1 for s in statuses(got)), 5)


def test_tls_and_password(mosquitto_broker, mqtt_subscriber, make_link, test_ca):
    broker = mosquitto_broker(tls=True, auth=True)
    assert broker.url.startswith("mqtts://")
    observer = mqtt_subscriber(broker)
    username, password = broker.credentials(SITE, DEVICE)
    link = make_link(broker.url, username=username, password=password, ca_file=broker.ca_file)
    link.start()
    assert link.wait_connected(10), link.last_error
    alert_id, payload = alert_payload(1)
    link.outbox.put(TOPICS.alert, payload, kind="alert")
    assert observer.wait_for(lambda got: alert_ids(got) == [alert_id], 10)


def test_a_wrong_password_is_reported_and_retried(mosquitto_broker, make_link):
    broker = mosquitto_broker(tls=True, auth=True)
    username, _ = broker.credentials(SITE, DEVICE)
    link = make_link(broker.url, username=username, password="wrong", ca_file=broker.ca_file)
    link.outbox.put(TOPICS.alert, alert_payload(1)[1], kind="alert")
    link.start()
    deadline = time.monotonic() + 10
    while link.num_connect_failures < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link.num_connect_failures >= 2, "it keeps retrying (with backoff)"
    assert link.running and not link.connected
    # Mosquitto 2.0 answers a bad password with 0x87 "Not authorized" (not 0x86).
    assert "refused the connection" in link.last_error and "0x8" in link.last_error
    assert link.outbox.depth == 1, "the alert waits"


def test_a_broker_certificate_from_another_ca_is_rejected(mosquitto_broker, make_link, test_ca):
    broker = mosquitto_broker(tls=True)
    link = make_link(broker.url, ca_file=test_ca.other_ca_file)
    link.start()
    deadline = time.monotonic() + 10
    while link.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not link.connected
    assert "certificate verify failed" in (link.last_error or "").lower()


LINK_PROCESS = """
import sys, time
from edge.mqtt import MqttLink, LinkSettings, Outbox, StatusInfo, Topics
url, db = sys.argv[1:3]
outbox = Outbox(db)
info = StatusInfo(boot_seq=outbox.state.next_boot(), agent_version="will-test")
settings = LinkSettings(url=url, client_id="site1-dev1", keepalive_s=5)
link = MqttLink(settings, outbox, Topics("sitehawk/v1", "site1", "dev1"), info)
link.start()
assert link.wait_connected(10) and link.wait_drained(10), link.stats()
print("online", flush=True)
time.sleep(120)
"""


def test_the_last_will_says_offline_when_the_agent_is_killed(
    mosquitto_broker, mqtt_subscriber, tmp_path
):
    broker = mosquitto_broker()
    observer = mqtt_subscriber(broker, topic_filter=TOPICS.status)
    agent = subprocess.Popen(
        [sys.executable, "-c", LINK_PROCESS, broker.url, str(tmp_path / "agent.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "online"
        assert observer.wait_for(lambda got: [s["state"] for s in statuses(got)] == ["online"], 5)
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        agent.kill()
        agent.wait(10)
    assert observer.wait_for(lambda got: statuses(got)[-1]["state"] == "offline", 10)
    online, offline = statuses(observer.received())
    assert offline["boot_seq"] == online["boot_seq"] == 1
    assert set(offline) == STATUS_FIELDS
    late = mqtt_subscriber(broker, topic_filter=TOPICS.status)
    assert late.wait_for(lambda got: len(got) == 1, 5)
    assert late.received()[0].retain and statuses(late.received())[0]["state"] == "offline"


QUEUE_AND_DIE = """
import sys, uuid, json
from edge.mqtt import MqttLink, LinkSettings, Outbox, StatusInfo, Topics
url, db, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
outbox = Outbox(db)
topics = Topics("sitehawk/v1", "site1", "dev1")
info = StatusInfo(boot_seq=outbox.state.next_boot(), agent_version="kill-test")
link = MqttLink(LinkSettings(url=url, client_id="site1-dev1"), outbox, topics, info)
link.start()  # the broker is down: nothing can leave
for _ in range(count):
    body = {"alert_id": str(uuid.uuid4()), "state": "raised", "seq": outbox.state.next_seq()}
    outbox.put(topics.alert, json.dumps(body).encode(), kind="alert")
    print(body["alert_id"], flush=True)
print("queued", flush=True)
import time; time.sleep(120)
"""


def test_the_outbox_resumes_after_the_agent_is_killed(
    mosquitto_broker, mqtt_subscriber, make_link, tmp_path
):
    broker = mosquitto_broker(start=False)
    db = tmp_path / "agent.db"
    agent = subprocess.Popen(
        [sys.executable, "-c", QUEUE_AND_DIE, broker.url, str(db), "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        queued = []
        for line in agent.stdout:  # ends early if the agent dies first
            if line.strip() == "queued":
                break
            queued.append(line.strip())
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    finally:
        agent.kill()
        agent.wait(10)
    assert len(queued) == 20

    broker.start()
    subscriber = mqtt_subscriber(broker, topic_filter=TOPICS.alert)
    link = make_link(broker.url, outbox=Outbox(db))  # the restarted agent
    assert link.status_info.boot_seq == 2
    link.start()
    assert link.wait_drained(10), link.stats()
    assert subscriber.wait_for(lambda got: alert_ids(got) == queued, 10)


def test_telemetry_is_qos0_and_never_queued(mosquitto_broker, mqtt_subscriber, make_link):
    broker = mosquitto_broker(persistence=True)
    subscriber = mqtt_subscriber(broker, topic_filter=TOPICS.telemetry)
    link = make_link(broker.url)
    link.start()
    assert link.wait_connected(10) and link.wait_drained(10)
    puts_before = link.outbox.put_count

    assert link.publish_telemetry(b'{"fps": 10}')
    assert subscriber.wait_for(lambda got: len(got) == 1, 5)
    assert subscriber.received()[0].qos == 0 and subscriber.received()[0].payload == b'{"fps": 10}'

    broker.stop()
    deadline = time.monotonic() + 5
    while link.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not link.connected
    assert not link.publish_telemetry(b'{"fps": "offline"}'), "dropped while offline"
    assert link.outbox.put_count == puts_before and link.outbox.depth == 0

    broker.start()
    # QoS 0 is not queued for an offline subscriber either: publish once both are back.
    assert link.wait_connected(15) and subscriber.wait_connected(15)
    assert link.publish_telemetry(b'{"fps": 11}')
    assert subscriber.wait_for(lambda got: len(got) == 2, 10)
    assert [m.payload for m in subscriber.received()] == [b'{"fps": 10}', b'{"fps": 11}']
    assert link.telemetry_dropped == 1


def test_stop_publishes_a_retained_stopped_status_and_no_will(
    mosquitto_broker, mqtt_subscriber, make_link
):
    broker = mosquitto_broker()
    observer = mqtt_subscriber(broker, topic_filter=TOPICS.status)
    link = make_link(broker.url)
    link.start()
    assert link.wait_connected(10) and link.wait_drained(10)
    assert observer.wait_for(lambda got: len(got) == 1, 5)
    for seq in range(10):
        link.outbox.put(TOPICS.alert, alert_payload(seq)[1], kind="alert")
    assert link.stop(timeout_s=5.0), "everything queued was delivered before the disconnect"
    assert not link.running and not link.connected
    assert observer.wait_for(lambda got: statuses(got)[-1]["state"] == "stopped", 5)
    time.sleep(0.5)  # a will would arrive now
    assert [s["state"] for s in statuses(observer.received())] == ["online", "stopped"]
    late = mqtt_subscriber(broker, topic_filter=TOPICS.status)
    assert late.wait_for(lambda got: len(got) == 1, 5)
    assert statuses(late.received())[0]["state"] == "stopped"


def test_settings_and_topics_refuse_bad_values(tmp_path):
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        LinkSettings(url="http://broker:1883", client_id="d")
    with pytest.raises(ValueError, match="mqtts://"):
        LinkSettings(url="mqtt://broker", client_id="d", ca_file="ca.pem")
    with pytest.raises(ValueError, match="username"):
        LinkSettings(url="mqtt://broker", client_id="d", password="p")
    with pytest.raises(ValueError, match="extra"):
        LinkSettings(url="mqtt://broker", client_id="d", qos=2)
    settings = LinkSettings(url="mqtts://broker.example", client_id="d")
    assert (settings.host, settings.port, settings.use_tls) == ("broker.example", 8883, True)
    assert LinkSettings(url="mqtt://10.0.0.2:1884", client_id="d").port == 1884
    with pytest.raises(ValueError, match="device id"):
        Topics(PREFIX, SITE, "dev/1")
    with pytest.raises(ValueError, match="site id"):
        Topics(PREFIX, "site+", DEVICE)
    with pytest.raises(ValueError, match="alert id"):
        TOPICS.snapshot("a#b")
    assert TOPICS.status == "sitehawk/v1/site1/dev1/status"
    assert TOPICS.snapshot("1f0c") == "sitehawk/v1/site1/dev1/snapshot/1f0c"
    assert (TOPICS.ota_cmd, TOPICS.ota_state) == (
        "sitehawk/v1/site1/dev1/ota/cmd",
        "sitehawk/v1/site1/dev1/ota/state",
    )
    # Files are read at start(), and a missing one is named.
    outbox = Outbox(tmp_path / "o.db")
    missing = tmp_path / "missing-ca.pem"
    link = MqttLink(
        LinkSettings(url="mqtts://127.0.0.1:1", client_id="d", ca_file=missing),
        outbox,
        TOPICS,
        StatusInfo(boot_seq=1, agent_version="x"),
    )
    with pytest.raises(ValueError, match="mqtt.tls.ca_file.*missing-ca.pem"):
        link.start()
    outbox.close()


def test_link_settings_resolve_the_device_config(tmp_path):
    from firmware_config.device import MqttSettings as DeviceMqttSettings

    password_file = tmp_path / "mqtt-password"
    password_file.write_text("s3cret\n")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("(a CA)")
    device_mqtt = DeviceMqttSettings(
        url="mqtts://broker.site:8883",
        username="site1-dev1",
        password_file=password_file,
        tls={"ca_file": ca_file},
    )
    settings = LinkSettings.from_config(device_mqtt, "dev1", reconnect_max_s=5.0)
    assert settings.client_id == "dev1", "the client id defaults to the device id"
    assert settings.password is not None and settings.password.get_secret_value() == "s3cret"
    assert settings.ca_file == ca_file and settings.cert_file is None
    assert (settings.host, settings.port, settings.reconnect_max_s) == ("broker.site", 8883, 5.0)
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="cert_file"):
        LinkSettings(url="mqtts://b:8883", client_id="d", key_file=tmp_path / "k.pem")
