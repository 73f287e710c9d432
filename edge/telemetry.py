"""Per-stage latency statistics, frame rate, device temperatures: the numbers telemetry carries.

* :class:`StageTimings` keeps the last ``window`` durations of each pipeline stage and reports
  p50/p90/p99 in milliseconds (numpy over a few hundred floats: microseconds, once per report).
* :class:`RateMeter` is frames per second of wall-clock time over a sliding window.
* :func:`read_temperatures` reads Linux thermal zones (``/sys/class/thermal``: CPU, GPU, SoC on a
  Jetson); None where there are none (containers, most VMs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np

#: The agent's pipeline stages, in order; ``total`` is the whole frame.
STAGES = ("capture", "detect", "track", "rules", "alerts", "policy", "total")
PERCENTILES = (50, 90, 99)
THERMAL_ROOT = Path("/sys/class/thermal")


class StageTimings:
    """Rolling p50/p90/p99 of each stage's duration over the last ``window`` frames."""

    def __init__(self, stages: Iterable[str] = STAGES, window: int = 600):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.stages = tuple(stages)
        self._samples: dict[str, deque[float]] = {s: deque(maxlen=window) for s in self.stages}
        self.counts: dict[str, int] = dict.fromkeys(self.stages, 0)

    def add(self, stage: str, seconds: float) -> None:
        """Record one duration (seconds) of ``stage``."""
        self._samples[stage].append(seconds * 1000.0)
        self.counts[stage] += 1

    def percentiles_ms(self, stage: str) -> dict[str, float | None]:
        """``{"p50": ms, "p90": ms, "p99": ms}`` of the recent samples (None before any)."""
        samples = self._samples[stage]
        if not samples:
            return {f"p{q}": None for q in PERCENTILES}
        values = np.percentile(np.fromiter(samples, dtype=np.float64), PERCENTILES)
        return {f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, values, strict=True)}

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Every stage's percentiles, for telemetry and status files."""
        return {stage: self.percentiles_ms(stage) for stage in self.stages}


class RateMeter:
    """Events per second over the last ``window_s`` seconds (by the caller's clock)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self) -> float:
        """Events per second; 0 before two events."""
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def read_temperatures(root: Path = THERMAL_ROOT) -> dict[str, float] | None:
    """Thermal zone temperatures in °C by zone type (``cpu-thermal``, ``GPU-therm``…), or None."""
    if not root.is_dir():
        return None
    out: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
            name = (zone / "type").read_text().strip() or zone.name
        except (OSError, ValueError):
            continue
        if name in out:
            name = f"{name}-{zone.name.removeprefix('thermal_zone')}"
        out[name] = round(millideg / 1000.0, 1)
    return out or None
