"""Real Mosquitto brokers and MQTT subscribers for the integration tests.

``mosquitto_broker(tls=..., auth=..., persistence=...)`` starts a private ``mosquitto`` on a free
127.0.0.1 port with a config written into the test's tmp dir (never the system broker on 1883):

* TLS: a test CA and a server certificate for 127.0.0.1/localhost, made once per session with
  the ``openssl`` CLI; clients verify the broker against ``broker.ca_file``.
* auth: a password file (``mosquitto_passwd``) and an ACL under which each device may publish
  only under ``sitehawk/v1/<site>/<device>/#``; user ``observer`` may read ``sitehawk/v1/#``.
* persistence on: ``stop()`` then ``start()`` brings back the same port, sessions and queues.

``mqtt_subscriber(broker, ...)`` is an independent paho client with a persistent session
(clean_start=False, session expiry) that records everything it receives.

Everything started here is killed at teardown. Tests skip (not fail) without the binaries.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BROKER_HOST = "127.0.0.1"
TOPIC_PREFIX = "sitehawk/v1"
#: Devices the auth broker knows: (site, device); the username is "<site>-<device>".
AUTH_DEVICES = (("site1", "dev1"), ("site1", "dev2"))
OBSERVER = "observer"
START_TIMEOUT_S = 10.0


def _find(binary: str) -> str | None:
    # Mosquitto lives in /usr/sbin, which is not on every user's PATH.
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((BROKER_HOST, 0))
        return int(probe.getsockname()[1])


def _run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}")


# ---------------------------------------------------------------------------------------------
# test CA
@dataclass(frozen=True)
class TestCA:
    """A CA, a server certificate signed by it, and an unrelated CA for negative tests."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    other_ca_file: Path


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3",
            "-subj", f"/CN=SiteHawk test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        directory,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A test CA and a server certificate for 127.0.0.1 and localhost (made with openssl)."""
    if _find("openssl") is None:
        pytest.skip("the openssl CLI is not installed: cannot make the test CA for TLS tests")
    directory = tmp_path_factory.mktemp("test-ca")
    ca_key, ca_cert = _make_ca(directory, "ca")
    _, other_ca = _make_ca(directory, "other-ca")
    server_key, server_csr, server_cert = (
        directory / f"server.{ext}" for ext in ("key", "csr", "crt")
    )
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _run(
        [
            "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(server_key), "-out", str(server_csr), "-subj", "/CN=localhost",
        ],
        directory,
    )  # fmt: skip
    _run(
        [
            "openssl", "x509", "-req", "-in", str(server_csr), "-CA", str(ca_cert),
            "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(server_cert), "-days", "3",
            "-extfile", str(extensions),
        ],
        directory,
    )  # fmt: skip
    return TestCA(ca_cert, server_cert, server_key, other_ca)


# ---------------------------------------------------------------------------------------------
# the broker
def device_username(site_id: str, device_id: str) -> str:
    return f"{site_id}-{device_id}"


@dataclass
class MosquittoBroker:
    """One private Mosquitto process; ``stop``/``start`` keep its port, config and data."""

    binary: str
    workdir: Path
    port: int
    tls: TestCA | None = None
    auth: bool = False
    persistence: bool = True
    #: username -> password (auth brokers): "<site>-<device>" per AUTH_DEVICES, and "observer".
    passwords: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    num_starts: int = 0

    host = BROKER_HOST

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        return self.tls.ca_file if self.tls else None

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def credentials(self, site_id: str, device_id: str) -> tuple[str, str]:
        """(username, password) of a device on an auth broker."""
        user = device_username(site_id, device_id)
        return user, self.passwords[user]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, num_lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-num_lines:])

    def write_config(self) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.auth else 'true'}",
            # Run as root, Mosquitto would drop to the `mosquitto` user, which cannot read our
            # tmp files; naming the current user keeps it (ignored when not root).
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type all",
            "connection_messages true",
            "max_queued_messages 100000",
        ]
        if self.persistence:
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data}/"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "tls_version tlsv1.2",
            ]
        if self.auth:
            lines += [f"password_file {self._write_passwords()}", f"acl_file {self._write_acl()}"]
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _write_passwords(self) -> Path:
        passwd = _find("mosquitto_passwd")
        if passwd is None:
            pytest.skip("mosquitto_passwd is not installed: cannot make the broker's password file")
        path = self.workdir / "passwords"
        self.passwords = {device_username(s, d): f"{s}-{d}-secret" for s, d in AUTH_DEVICES}
        self.passwords[OBSERVER] = "observer-secret"
        for i, (user, password) in enumerate(self.passwords.items()):
            _run(
                [passwd, "-b", *(["-c"] if i == 0 else []), str(path), user, password], self.workdir
            )
        return path

    def _write_acl(self) -> Path:
        path = self.workdir / "acl"
        blocks = [f"user {OBSERVER}\ntopic read {TOPIC_PREFIX}/#\n"]
        for site, device in AUTH_DEVICES:
            base = f"{TOPIC_PREFIX}/{site}/{device}"
            blocks.append(
                f"user {device_username(site, device)}\n"
                f"topic write {base}/#\n"
                f"topic read {base}/ota/cmd\n"
            )
        path.write_text("\n".join(blocks))
        return path

    def start(self) -> None:
        """Start (or restart) on the same port and wait until it accepts connections."""
        if self.running:
            raise RuntimeError("broker already running")
        config = self.workdir / "mosquitto.conf"
        if not config.exists():
            config = self.write_config()
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        self.num_starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode} on port {self.port}:\n"
                    f"{self.log_tail()}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} in time:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop cleanly (SIGTERM: it saves its persistence file), or kill when it hangs."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


BrokerFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_broker(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[BrokerFactory]:
    """Factory: ``mosquitto_broker(tls=False, auth=False, persistence=True, start=True)``."""
    binary = _find("mosquitto")
    if binary is None:
        pytest.skip(
            "mosquitto is not installed (apt-get install mosquitto): no broker to test with"
        )
    brokers: list[MosquittoBroker] = []

    def make(
        *, tls: bool = False, auth: bool = False, persistence: bool = True, start: bool = True
    ) -> MosquittoBroker:
        test_ca: TestCA | None = request.getfixturevalue("test_ca") if tls else None
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between the probe and the bind
            broker = MosquittoBroker(
                binary=binary,
                workdir=tmp_path_factory.mktemp("mosquitto"),
                port=_free_port(),
                tls=test_ca,
                auth=auth,
                persistence=persistence,
            )
            brokers.append(broker)
            broker.write_config()
            if not start:
                return broker
            try:
                broker.start()
                return broker
            except RuntimeError as exc:
                last_error = exc
        raise RuntimeError(f"could not start mosquitto: {last_error}")

    yield make
    for broker in brokers:
        broker.kill()


# ---------------------------------------------------------------------------------------------
# an independent subscriber
@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A paho MQTT 5 subscriber with a persistent session that records what arrives."""

    def __init__(
        self,
        broker: MosquittoBroker,
        topic_filter: str,
        client_id: str,
        username: str | None,
        password: str | None,
        session_expiry_s: int,
    ):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.broker = broker
        self.topic_filter = topic_filter
        self.messages: list[Received] = []
        self.num_resumed_sessions = 0  # reconnects that found the broker kept our session
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        if username:
            self.client.username_pw_set(username, password)
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *args: self._connected.clear()
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry_s
        self.client.connect(broker.host, broker.port, keepalive=10, clean_start=False,
                            properties=properties)  # fmt: skip
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"subscriber could not subscribe:\n{broker.log_tail()}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        self._connected.set()
        # A resumed session keeps its subscription (and the messages queued for it).
        if flags.session_present:
            self.num_resumed_sessions += 1
            self._subscribed.set()
        else:
            client.subscribe(self.topic_filter, qos=1)

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected (e.g. after a broker restart)."""
        return self._connected.wait(timeout_s)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), message.qos, bool(message.retain))
            )

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout_s: float) -> bool:
        """Poll until ``predicate(messages)`` holds (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.received()):
                return True
            time.sleep(0.05)
        return predicate(self.received())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SubscriberFactory = Callable[..., Subscriber]


@pytest.fixture
def mqtt_subscriber() -> Iterator[SubscriberFactory]:
    """Factory: ``mqtt_subscriber(broker, topic_filter="sitehawk/v1/#", client_id=None,
    username=None, password=None, session_expiry_s=3600)``; observer credentials are used on an
    auth broker unless others are given."""
    subscribers: list[Subscriber] = []

    def make(
        broker: MosquittoBroker,
        topic_filter: str = f"{TOPIC_PREFIX}/#",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        session_expiry_s: int = 3600,
    ) -> Subscriber:
        if broker.auth and username is None:
            username, password = OBSERVER, broker.passwords[OBSERVER]
        client_id = client_id or f"test-subscriber-{len(subscribers)}-{os.getpid()}"
        subscriber = Subscriber(
            broker, topic_filter, client_id, username, password, session_expiry_s
        )
        subscribers.append(subscriber)
        return subscriber

    yield make
    for subscriber in subscribers:
        subscriber.close()
