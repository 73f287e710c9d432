"""`sitehawk-edge subscribe`: watch a device's alerts and status without writing code.

Subscribes (MQTT 5, QoS 1) to ``{prefix}/{site}/{device}/alert`` and ``…/status`` (``+`` for
every site or device), validates each alert against the ``alert.v1.json`` the package ships and
pretty-prints it. A message that is not valid JSON or not a valid alert is printed with what is
wrong with it — field by field — and never stops the watch. ``count`` / ``timeout_s`` end it
(for scripts and tests).
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from edge.alerts.schema import AlertValidationError, validate_alert
from edge.mqtt.contract import DEFAULT_TOPIC_PREFIX, check_topic_prefix

_STATE_STYLE = {"raised": "bold red", "cleared": "bold green"}
_STATUS_STYLE = {"online": "green", "offline": "red", "stopped": "yellow"}


class SubscribeError(ValueError):
    """The watch cannot start (bad URL, unreadable file, broker unreachable or refusing)."""


@dataclass
class SubscribeOptions:
    """Options of `sitehawk-edge subscribe` (see its --help)."""

    url: str
    site: str = "+"
    device: str = "+"
    prefix: str = DEFAULT_TOPIC_PREFIX
    count: int | None = None  # stop after this many alert messages (valid or not)
    timeout_s: float | None = None
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    connect_timeout_s: float = 10.0


@dataclass
class WatchResult:
    alerts: int = 0
    invalid: int = 0
    statuses: int = 0
    timed_out: bool = False


def topic_filters(opts: SubscribeOptions) -> list[str]:
    check_topic_prefix(opts.prefix)
    for what, value in (("--site", opts.site), ("--device", opts.device)):
        if not value or any(c in value for c in "/#") or ("+" in value and value != "+"):
            raise SubscribeError(f"{what} {value!r}: one topic level, or + for all")
    base = f"{opts.prefix}/{opts.site}/{opts.device}"
    return [f"{base}/alert", f"{base}/status"]


def describe_alert(topic: str, payload: bytes) -> tuple[Text, bool]:
    """The printout of one alert message and whether it is valid."""
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        text = Text(f"INVALID alert on {topic}: not JSON ({exc})", style="bold red")
        text.append(f"\n  payload: {payload[:200]!r}")
        return text, False
    try:
        validate_alert(message)
    except AlertValidationError as exc:
        text = Text(f"INVALID alert on {topic}: does not match alert.v1.json", style="bold red")
        for line in str(exc).splitlines():
            text.append(f"\n  {line}")
        return text, False
    a, loc, ev = message, message["location"], message["evidence"]
    text = Text()
    text.append(f"ALERT {a['state'].upper():<8}", style=_STATE_STYLE.get(a["state"], ""))
    text.append(f" {a['hazard']}", style="bold")
    text.append(
        f"  severity {a['severity']}  confidence {a['confidence']:.2f}  "
        f"[{a['site_id']}/{a['device_id']}/{a['camera_id']}]  seq {a['seq']}"
    )
    text.append(f"\n  alert_id   {a['alert_id']}   first seen {a['first_seen']}   ts {a['ts']}")
    ground = loc["ground_xy_m"]
    where = f"   ground ({ground[0]:.1f}, {ground[1]:.1f}) m" if ground else ""
    bbox = ", ".join(f"{v:.3f}" for v in loc["bbox"])
    text.append(
        f"\n  location   pan {loc['pan_deg']:.2f}°  tilt {loc['tilt_deg']:.2f}°  "
        f"zoom {loc['zoom']:.1f}×  bbox [{bbox}]{where}"
    )
    text.append(
        f"\n  evidence   {ev['snapshot_topic']}  {ev['width']}x{ev['height']}  "
        f"sha256 {ev['snapshot_sha256'][:16]}…"
    )
    vlm = a["vlm"]
    if vlm is None:
        text.append("\n  vlm        not asked")
    else:
        answer = vlm["answer"] if vlm["answer"] is not None else f"no answer ({vlm['error']})"
        text.append(f"\n  vlm        {vlm['question']} → {answer} (confirmed: {vlm['confirmed']})")
    models = ", ".join(f"{k} {v[:12]}" for k, v in a["models"].items()) or "none"
    text.append(f"\n  models     {models}   agent {a['agent_version']}")
    levels = topic.split("/")
    if len(levels) >= 3 and (levels[-3], levels[-2]) != (a["site_id"], a["device_id"]):
        text.append(
            f"\n  warning: published under {levels[-3]}/{levels[-2]} but says "
            f"{a['site_id']}/{a['device_id']}",
            style="yellow",
        )
    return text, True


def describe_status(topic: str, payload: bytes, retained: bool) -> Text:
    """One line per status message."""
    levels = topic.split("/")
    who = "/".join(levels[-3:-1]) if len(levels) >= 3 else topic
    try:
        status = json.loads(payload)
        state = str(status["state"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return Text(f"STATUS {who}: unreadable status message {payload[:120]!r}", style="red")
    text = Text("STATUS ")
    text.append(f"{who}: ")
    text.append(state, style=_STATUS_STYLE.get(state, "bold"))
    extra = [
        f"{key} {status[key]}"
        for key in ("boot_seq", "agent_version", "outbox_depth", "outbox_full", "refused", "ts")
        if key in status
    ]
    text.append("  " + "  ".join(extra))
    if retained:
        text.append("  (retained)", style="dim")
    return text


def watch(opts: SubscribeOptions, console: Console | None = None) -> WatchResult:
    """Connect, subscribe and print until ``count`` alerts, ``timeout_s`` or Ctrl-C."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from pydantic import ValidationError

    from firmware_config.device import MqttSettings

    console = console or Console(highlight=False, soft_wrap=True)
    try:
        url = MqttSettings(url=opts.url)
    except ValidationError as exc:
        problems = "; ".join(err["msg"] for err in exc.errors(include_url=False))
        raise SubscribeError(f"--mqtt {opts.url}: {problems}") from None
    filters = topic_filters(opts)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"sitehawk-subscribe-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5,
    )
    if opts.username:
        password = None
        if opts.password_file is not None:
            try:
                password = opts.password_file.read_text().strip()
            except OSError as exc:
                raise SubscribeError(f"--password-file {opts.password_file}: {exc}") from None
        client.username_pw_set(opts.username, password)
    if url.use_tls:
        try:
            context = ssl.create_default_context(cafile=str(opts.ca_file) if opts.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise SubscribeError(f"--ca-file {opts.ca_file}: {exc}") from None
        client.tls_set_context(context)
    inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
    subscribed = threading.Event()
    refused: list[str] = []

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            subscribed.set()
            return
        c.subscribe([(f, 1) for f in filters])

    def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failures = [str(r) for r in reasons if r.is_failure]
        refused.extend(f"subscription refused: {r}" for r in failures)
        subscribed.set()

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        inbox.put((message.topic, bytes(message.payload), bool(message.retain)))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(url.host, url.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise SubscribeError(f"cannot connect to {url.host}:{url.port}: {exc}") from None
    client.loop_start()
    try:
        if not subscribed.wait(opts.connect_timeout_s):
            raise SubscribeError(f"no answer from {url.host}:{url.port} in time")
        if refused:
            raise SubscribeError(f"{url.host}:{url.port}: {'; '.join(refused)}")
        console.print(f"watching {', '.join(filters)} on {url.host}:{url.port}", style="dim")
        return _print_messages(inbox, opts, console)
    finally:
        client.loop_stop()
        client.disconnect()


def _print_messages(
    inbox: queue.Queue[tuple[str, bytes, bool]], opts: SubscribeOptions, console: Console
) -> WatchResult:
    result = WatchResult()
    deadline = None if opts.timeout_s is None else time.monotonic() + opts.timeout_s
    while opts.count is None or result.alerts < opts.count:
        wait_s = 0.5 if deadline is None else deadline - time.monotonic()
        if deadline is not None and wait_s <= 0:
            result.timed_out = True
            break
        try:
            topic, payload, retained = inbox.get(timeout=min(max(wait_s, 0.0), 0.5))
        except queue.Empty:
            continue
        if topic.endswith("/status"):
            result.statuses += 1
            console.print(describe_status(topic, payload, retained))
            continue
        text, valid = describe_alert(topic, payload)
        result.alerts += 1
        result.invalid += not valid
        console.print(text)
    return result
