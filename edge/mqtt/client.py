"""The device's MQTT 5 link (paho-mqtt 2.x): status messages, telemetry and the outbox sender.

:class:`MqttLink` runs one background thread that owns the paho client and its socket. It
connects and reconnects with exponential backoff, registers the retained ``offline`` status as
the last will, queues a retained ``online`` status on every connect, and drains the
:class:`~edge.mqtt.outbox.Outbox` with QoS 1 through a bounded in-flight window. A message
leaves the outbox only on a PUBACK whose reason code is < 0x80 (0x10 "no matching subscribers"
is a success); a refused one (>= 0x80) goes to the outbox's ``refused`` table. Telemetry is
QoS 0, never queued and dropped while offline (DESIGN.md, "MQTT contract").

Why one thread and a fresh paho client per connection, rather than ``loop_start()``:

* paho keeps its own in-memory copy of unacknowledged messages and re-sends it on reconnect.
  Here the outbox is the only copy: each connection starts with an empty client and the outbox
  re-sends whatever was in flight when the connection dropped (duplicates are possible and
  fine: subscribers de-duplicate on ``alert_id`` + ``state``).
* a failed TCP/TLS connect raises with its cause (refused, certificate, DNS) into our loop, so
  :attr:`MqttLink.last_error` can say what is wrong instead of paho retrying silently.
* without paho's thread, only one thread may write to the socket: publishes from other threads
  (telemetry, status) are handed to the link's thread.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.mqtt.contract import StatusInfo, StatusState, Topics, status_payload
from edge.mqtt.outbox import Outbox
from edge.mqtt.settings import LinkSettings, LinkSettingsError

log = logging.getLogger(__name__)

#: PUBACK reason codes from here up are refusals (MQTT 5, 3.4.2.1).
FIRST_FAILURE_REASON = 0x80
#: How long the link's thread waits for socket activity before it looks at the outbox again.
POLL_S = 0.05
#: A connection that lasted this long resets the reconnect backoff to its minimum.
STABLE_CONNECTION_S = 5.0


def _reason_value(reason_code: Any) -> int:
    return int(getattr(reason_code, "value", reason_code))


class MqttLink:
    """Publishes one device's outbox, status and telemetry to its broker; see the module doc.

    Create it (no I/O), :meth:`start` it, and :meth:`stop` it. The outbox may be written from
    any thread while the link runs.
    """

    def __init__(self, settings: LinkSettings, outbox: Outbox, topics: Topics, status: StatusInfo):
        self.settings = settings
        self.outbox = outbox
        self.topics = topics
        self.status_info = status
        #: The latest connection problem, in words (None while none since the last connect).
        self.last_error: str | None = None
        self.reconnects = 0  # successful connections after the first one
        self.num_connects = 0
        self.num_connect_failures = 0
        self.num_sent = 0  # QoS 1 publishes handed to the socket (re-sends included)
        self.num_acked = 0
        self.num_refused = 0  # refusals seen by this link (outbox.refused_count is all-time)
        self.telemetry_sent = 0
        self.telemetry_dropped = 0

        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # telemetry slot and its counters
        self._telemetry: bytes | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._status_lock = threading.Lock()
        self._final_state: StatusState | None = None  # set by stop()
        self._stop_deadline = 0.0
        self._stop_status_id: int | None = None
        # The rest belongs to the link's thread.
        self._inflight: dict[int, tuple[int, str]] = {}  # paho mid -> (outbox id, kind)
        self._results: list[tuple[int, str, int, str]] = []  # (outbox id, kind, reason, name)
        self._window = settings.max_inflight
        self._dirty = True  # the outbox may hold more than the last look returned
        self._seen_put_count = -1
        self._session_ok = False
        self._connack_refused = False
        self._reported_full = False

    # ------------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        return self._connected.is_set()

    @property
    def refused(self) -> int:
        """Messages the broker ever refused (from the outbox, so it survives restarts)."""
        return self.outbox.refused_count

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Load the TLS files and start connecting in the background.

        Raises :class:`LinkSettingsError` naming the field or file when one cannot be used.
        """
        if self._thread is not None:
            raise RuntimeError("MqttLink.start() called twice")
        self._ssl_context = self._make_ssl_context()
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-{self.settings.client_id}", daemon=True
        )
        self._thread.start()

    def stop(self, state: StatusState = "stopped", timeout_s: float = 10.0) -> bool:
        """Queue the retained ``state`` status, wait up to ``timeout_s`` for the outbox to drain,
        then disconnect cleanly. Return True when everything queued was acknowledged.

        When the status could not be delivered the link disconnects with "disconnect with will
        message", so subscribers see ``offline`` rather than a stale ``online``.
        """
        if self._thread is None or self._stopping.is_set():
            return self.outbox.depth == 0
        with self._status_lock:
            self._final_state = state
            self._stop_deadline = time.monotonic() + timeout_s
        self._queue_status(state)
        self._stopping.set()
        self._thread.join(timeout_s + self.settings.connect_timeout_s + 5.0)
        if self._thread.is_alive():
            log.error("the MQTT thread did not stop in time; leaving it (daemon) behind")
        return self.outbox.depth == 0

    def publish_status(self, state: StatusState = "online") -> int:
        """Queue a retained status message now (e.g. after the models changed); its outbox id."""
        return self._queue_status(state)

    def publish_telemetry(self, payload: bytes) -> bool:
        """Hand a telemetry message to the link (QoS 0, never queued).

        False when it was dropped because the link is offline. Only the latest one waits for the
        link's thread; an unsent older one is replaced (and counted as dropped).
        """
        with self._lock:
            if not self._connected.is_set():
                self.telemetry_dropped += 1
                return False
            if self._telemetry is not None:
                self.telemetry_dropped += 1
            self._telemetry = bytes(payload)
        return True

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected (True) or the timeout passes (False)."""
        return self._connected.wait(timeout_s)

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the outbox is empty and nothing is in flight (True) or the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.depth or self._inflight:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def stats(self) -> dict[str, Any]:
        """Counters for telemetry and the status line."""
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "connect_failures": self.num_connect_failures,
            "in_flight": self.in_flight,
            "sent": self.num_sent,
            "acked": self.num_acked,
            "telemetry_sent": self.telemetry_sent,
            "telemetry_dropped": self.telemetry_dropped,
            "last_error": self.last_error,
            **self.outbox.stats(),
        }

    # ------------------------------------------------------------------ setup
    def _make_ssl_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if not settings.use_tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise LinkSettingsError(
                f"mqtt.tls.ca_file: cannot load {settings.ca_file}: {exc}"
            ) from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.cert_file is not None:
            key_file = str(settings.key_file) if settings.key_file is not None else None
            try:
                context.load_cert_chain(str(settings.cert_file), key_file)
            except (OSError, ssl.SSLError) as exc:
                raise LinkSettingsError(
                    f"mqtt.tls.cert_file/key_file: cannot load {settings.cert_file} / "
                    f"{settings.key_file}: {exc}"
                ) from exc
        return context

    def _new_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False,
        )
        client.connect_timeout = self.settings.connect_timeout_s
        client.max_inflight_messages_set(self.settings.max_inflight)
        if self.settings.username:
            password = self.settings.password
            client.username_pw_set(
                self.settings.username, password.get_secret_value() if password else None
            )
        if self._ssl_context is not None:
            client.tls_set_context(self._ssl_context)
        client.will_set(
            self.topics.status,
            status_payload("offline", self.status_info, self.outbox),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # ------------------------------------------------------------------ the link's thread
    def _run(self) -> None:
        settings = self.settings
        delay_s = settings.reconnect_min_s
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                session_ok = self._connect_and_serve()
            except Exception as exc:  # the supervisor loop: never let the thread die silently
                log.exception("MQTT link failed; reconnecting")
                self._note_error(f"internal error: {exc!r}")
                session_ok = False
            if self._stopping.is_set():
                break
            if session_ok and time.monotonic() - started >= STABLE_CONNECTION_S:
                delay_s = settings.reconnect_min_s
            wait_s = delay_s * random.uniform(0.8, 1.2)  # jitter: a fleet doesn't reconnect at once
            log.debug("MQTT reconnect in %.1f s", wait_s)
            self._stopping.wait(wait_s)
            delay_s = min(delay_s * 2, settings.reconnect_max_s)
        log.debug("MQTT link thread ends")

    def _connect_and_serve(self) -> bool:
        """One connection, from connect to its loss (or to stop); True if the broker accepted it."""
        settings = self.settings
        client = self._new_client()
        self._session_ok = False
        self._connack_refused = False
        try:
            client.connect(
                settings.host,
                settings.port,
                keepalive=settings.keepalive_s,
                clean_start=True,
                properties=Properties(PacketTypes.CONNECT),
            )
        except (OSError, ValueError) as exc:  # refused, DNS, timeout, TLS (ssl.SSLError)
            self.num_connect_failures += 1
            self._note_error(f"cannot connect to {settings.host}:{settings.port}: {exc}")
            return False
        connack_deadline = time.monotonic() + settings.connect_timeout_s
        try:
            while True:
                try:
                    rc = client.loop(timeout=POLL_S)
                except OSError as exc:
                    self._note_error(f"connection to {settings.host}:{settings.port} lost: {exc}")
                    break
                self._settle()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._connack_refused:
                    break
                if not self._session_ok:
                    if time.monotonic() > connack_deadline:
                        self.num_connect_failures += 1
                        self._note_error(
                            f"no CONNACK from {settings.host}:{settings.port} within "
                            f"{settings.connect_timeout_s:g} s"
                        )
                        break
                    continue
                if self._stopping.is_set() and self._ready_to_stop():
                    self._disconnect(client)
                    break
                self._send_telemetry(client)
                self._pump(client)
        finally:
            self._connected.clear()
            try:
                self._settle()  # PUBACKs that came with the last read still count
            finally:
                self._inflight.clear()  # the outbox still holds them: the next connection re-sends
            with self._lock:
                self._telemetry = None
            socket = client.socket()
            if socket is not None:
                socket.close()
        return self._session_ok

    def _ready_to_stop(self) -> bool:
        return (not self.outbox.depth and not self._inflight) or (
            time.monotonic() >= self._stop_deadline
        )

    def _disconnect(self, client: paho.Client) -> None:
        status_id = self._stop_status_id
        delivered = status_id is None or self.outbox.get(status_id) is None
        # 0x04 "disconnect with will message": the undelivered final status becomes `offline`.
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=0x00 if delivered else 0x04)
        client.disconnect(reasoncode=reason)
        deadline = time.monotonic() + 1.0
        while client.want_write() and time.monotonic() < deadline:
            if client.loop(timeout=POLL_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        log.info(
            "MQTT disconnected (%s status %s)",
            self._final_state,
            "delivered" if delivered else "not delivered: the broker publishes the will",
        )

    def _pump(self, client: paho.Client) -> None:
        """Fill the in-flight window from the outbox (only when it may hold something new)."""
        free = self._window - len(self._inflight)
        put_count = self.outbox.put_count
        if free <= 0 or (not self._dirty and put_count == self._seen_put_count):
            return
        self._seen_put_count = put_count
        inflight_ids = {message_id for message_id, _ in self._inflight.values()}
        limit = free + len(inflight_ids)
        batch = self.outbox.pending(limit)
        self._dirty = len(batch) == limit
        for message in [m for m in batch if m.id not in inflight_ids][:free]:
            info = client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain
            )
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The connection just went; the message stays queued for the next one.
                self._dirty = True
                break
            self._inflight[info.mid] = (message.id, message.kind)
            self.num_sent += 1

    def _settle(self) -> None:
        """Apply the PUBACKs collected by ``_on_publish`` to the outbox (acks in one commit)."""
        if not self._results:
            return
        results, self._results = self._results, []
        acked = [message_id for message_id, _, code, _ in results if code < FIRST_FAILURE_REASON]
        # counted first: a reader that sees the outbox drained (wait_drained) sees the count too
        self.num_acked += len(acked)
        self.outbox.ack_many(acked)
        refused_other_than_status = False
        for message_id, kind, code, name in results:
            if code >= FIRST_FAILURE_REASON and self.outbox.refuse(message_id, code, name):
                self.num_refused += 1
                refused_other_than_status |= kind != "status"
        # Make a refusal or a full outbox visible remotely without waiting for telemetry (a
        # refused status is not re-announced: that could loop).
        changed = refused_other_than_status or self.outbox.full != self._reported_full
        if changed and self._session_ok and not self._stopping.is_set():
            self._queue_status("online")

    def _send_telemetry(self, client: paho.Client) -> None:
        with self._lock:
            payload, self._telemetry = self._telemetry, None
        if payload is None:
            return
        info = client.publish(self.topics.telemetry, payload, qos=0, retain=False)
        with self._lock:
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.telemetry_sent += 1
            else:
                self.telemetry_dropped += 1

    def _queue_status(self, state: StatusState) -> int:
        # Once stop() has begun every status is the final one, and the newest is the one whose
        # delivery decides how to disconnect (each status supersedes the queued older ones).
        with self._status_lock:
            if self._final_state is not None:
                state = self._final_state
            self._reported_full = self.outbox.full
            payload = status_payload(state, self.status_info, self.outbox)
            message_id = self.outbox.put(self.topics.status, payload, kind="status", retain=True)
            if self._final_state is not None:
                self._stop_status_id = message_id
        return message_id

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("MQTT: %s", message)
        else:
            log.debug("MQTT: %s (again)", message)
        self.last_error = message

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = _reason_value(reason_code)
        if code >= FIRST_FAILURE_REASON:
            self._connack_refused = True
            self.num_connect_failures += 1
            self._note_error(
                f"{self.settings.host}:{self.settings.port} refused the connection: "
                f"{reason_code} (0x{code:02X})"
            )
            return
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        self._window = min(self.settings.max_inflight, int(receive_maximum or 65535))
        self._dirty = True
        self._session_ok = True
        if self.num_connects:
            self.reconnects += 1
        self.num_connects += 1
        self.last_error = None
        log.info(
            "MQTT connected to %s:%d as %s (window %d, outbox depth %d)",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            self._window,
            self.outbox.depth,
        )
        self._queue_status("online")  # or the final state, when stop() came first
        self._connected.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():
            why = (
                f"the broker disconnected us: {reason_code} (0x{_reason_value(reason_code):02X})"
                if flags.is_disconnect_packet_from_server
                else "the connection closed (broker down or network lost)"
            )
            self._note_error(f"connection to {self.settings.host}:{self.settings.port} lost: {why}")

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is not None:
            self._results.append((entry[0], entry[1], _reason_value(reason_code), str(reason_code)))
