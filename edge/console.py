"""What `sitehawk-edge run` prints: one line per alert, and a live status line.

On a terminal the status line is a rich ``Live`` display that stays at the bottom while alert
lines scroll above it; anywhere else (a pipe, a log file, CI) the status is printed as an
ordinary line every ``status_interval_s`` seconds instead, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from edge.agent import AlertRecord

#: Stages shown in the status line (all of them are in status.json and telemetry).
STATUS_STAGES = ("capture", "detect", "track", "alerts", "policy", "total")
_STATE_STYLE = {"raised": "bold red", "cleared": "green"}
_SEVERITY_STYLE = {
    "low": "cyan",
    "medium": "yellow",
    "high": "bold magenta",
    "critical": "bold red",
}


def alert_line(record: AlertRecord) -> Text:
    """``t  STATE  hazard  severity  confidence  pan/tilt/zoom  camera  alert_id prefix``."""
    a = record.alert
    loc = a["location"]
    text = Text()
    text.append(f"{record.t:8.1f} s  ")
    text.append(f"{a['state'].upper():<8}", style=_STATE_STYLE.get(a["state"], ""))
    text.append(f" {a['hazard']:<15}")
    text.append(f"{a['severity']:<9}", style=_SEVERITY_STYLE.get(a["severity"], ""))
    text.append(f"conf {a['confidence']:.2f}  ")
    text.append(
        f"pan {loc['pan_deg']:7.2f}°  tilt {loc['tilt_deg']:6.2f}°  {loc['zoom']:5.1f}×  "
        f"{a['camera_id']}  seq {a['seq']:<4} {a['alert_id'][:8]}"
    )
    return text


def status_line(telemetry: dict[str, Any], t: float | None, end_t: float | None) -> Text:
    """fps, stage p50s, outbox depth, alerts and link state, from a telemetry message."""
    latency = telemetry["latency_ms"]
    stages = "  ".join(
        f"{stage} {latency[stage]['p50']:.1f}"
        for stage in STATUS_STAGES
        if latency.get(stage, {}).get("p50") is not None
    )
    text = Text()
    if t is not None:
        text.append(f"site t {t:7.1f}" + (f"/{end_t:.0f} s" if end_t is not None else " s"))
        text.append("  ")
    text.append(f"{telemetry['fps']:5.1f} fps", style="bold")
    text.append(f"  p50 ms: {stages}" if stages else "  p50 ms: -")
    alerts = telemetry["alerts"]
    text.append(f"  outbox {telemetry['outbox_depth']}")
    if telemetry["outbox_full"]:
        text.append(" FULL", style="bold red")
    text.append(f"  alerts {alerts['raised']} raised / {alerts['cleared']} cleared")
    if telemetry.get("connected") is not None:
        state = "connected" if telemetry["connected"] else "offline"
        text.append(f"  mqtt {state}", style="green" if telemetry["connected"] else "red")
    if telemetry.get("refused"):
        text.append(f" refused {telemetry['refused']}", style="bold red")
    return text


class RunConsole:
    """Prints alerts as they happen and keeps a status line (live on a terminal)."""

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        status_interval_s: float = 5.0,
        refresh_s: float = 0.25,
        live: bool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.console = Console(file=file or sys.stdout, highlight=False, soft_wrap=True)
        self.live_enabled = self.console.is_terminal if live is None else live
        # on a terminal long lines wrap (a cropped status line hides its end); in logs they don't
        self.console.soft_wrap = not self.live_enabled
        self.status_interval_s = status_interval_s
        self.refresh_s = refresh_s
        self._monotonic = monotonic
        self._live: Live | None = None
        self._last_status = -float("inf")

    def __enter__(self) -> RunConsole:
        if self.live_enabled:
            self._live = Live(Text(""), console=self.console, auto_refresh=False, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end_live()

    def end_live(self) -> None:
        """Stop the live display (the lines printed after it stay)."""
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print above the live line (or plainly)."""
        self.console.print(*objects, **kwargs)

    def alert(self, record: AlertRecord) -> None:
        self.console.print(alert_line(record))

    def due(self) -> bool:
        """Whether the status line should be refreshed now (cheap; call it every frame)."""
        interval = self.refresh_s if self._live is not None else self.status_interval_s
        return self._monotonic() - self._last_status >= interval

    def status(self, telemetry: dict[str, Any], t: float | None, end_t: float | None) -> None:
        """Show the status line (live) or print it as a line."""
        self._last_status = self._monotonic()
        line = status_line(telemetry, t, end_t)
        if self._live is not None:
            self._live.update(line, refresh=True)
        else:
            self.console.print(line)
