"""Soak test of the edge agent: does its memory stay flat over 20,000 frames?

Runs the agent exactly as `sitehawk-edge run` does (:func:`edge.runner.prepare` and
:func:`edge.runner.execute`: the built-in virtual site, seed 7, the shipped baseline policy, its
status line and alert printing — sent to /dev/null here — checkpoints, alert records and camera
path), with no broker and a temporary outbox, for 20,000 frames (``--duration 2000`` site
seconds at 10 frames per site second) as fast as it runs. The site is generated to cover the
whole run (the built-in 600-s site cannot hold 2,000 s).

Every 500 frames it samples the process's resident set size (psutil when installed, else
``VmRSS`` from /proc/self/status) and the frame rate since the last sample. Target (issue 4):
RSS grows by at most 20 MB between frame 2,000 (warmed up: caches, rolling windows and the
tracker's population filled) and frame 20,000.

    python benchmarks/agent_soak.py                 # 20,000 frames, a few minutes
    python benchmarks/agent_soak.py --frames 4000   # shorter: baseline at frame 400
    python benchmarks/agent_soak.py --frames 3000 --tracemalloc   # which lines grew (~20x slower)

Prints a table (frame, RSS MB, fps) and writes JSON (default
``benchmarks/results/agent_soak.json``) with the samples, the RSS at the baseline frame and at
the end, the growth, PASS/FAIL and the machine (CPU, cores, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge.agent import FrameReport
from edge.console import RunConsole
from edge.runner import SHIPPED_POLICY, RunOptions, execute, prepare
from edge.sim.device_config import device_config_for_site
from edge.sim.generate import generate_site

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "agent_soak.json"
DEFAULT_FRAMES = 20_000
FRAME_RATE_HZ = 10.0  # the virtual camera's default
SAMPLE_EVERY = 500
BASELINE_FRAME = 2_000
TARGET_GROWTH_MB = 20.0
SITE_DURATION_S = 600.0  # the generator's default; longer runs get a longer site
MB = 1024.0 * 1024.0
TRACE_DEPTH = 8  # frames per traced allocation (deeper is slower still)


def rss_bytes() -> int:
    """This process's resident set size."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # kB
        raise RuntimeError("no psutil and no VmRSS in /proc/self/status") from None


def rss_source() -> str:
    try:
        import psutil  # noqa: F401

        return "psutil"
    except ImportError:
        return "/proc/self/status VmRSS"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "load_avg_1_5_15_start": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "rss_source": rss_source(),
    }


@dataclass
class Sample:
    frame: int
    rss_mb: float
    fps: float | None  # frames per wall second since the previous sample
    alerts: int  # alert messages (raised + cleared) so far
    tracks: int  # the tracker's live tracks at this frame


@dataclass
class Report:
    created: str
    frames: int
    seed: int
    policy: str
    frame_size: list[int]
    machine: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    baseline_frame: int = 0
    rss_baseline_mb: float | None = None
    final_frame: int = 0
    rss_final_mb: float | None = None
    growth_mb: float | None = None
    target_growth_mb: float = TARGET_GROWTH_MB
    result: str = ""
    wall_s: float = 0.0
    fps_mean: float | None = None
    alerts: dict[str, int] = field(default_factory=dict)
    tracemalloc_top: list[str] = field(default_factory=list)


def baseline_frame(frames: int) -> int:
    """Frame 2,000 on the full run; 10 % of a shorter one (on a sample)."""
    if frames >= 10 * BASELINE_FRAME:
        return BASELINE_FRAME
    return max(SAMPLE_EVERY, (frames // 10) // SAMPLE_EVERY * SAMPLE_EVERY) if frames else 0


def soak(frames: int, seed: int, size: tuple[int, int], trace: bool) -> Report:
    duration_s = frames / FRAME_RATE_HZ
    report = Report(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        frames=frames,
        seed=seed,
        policy=SHIPPED_POLICY,
        frame_size=list(size),
        machine=machine_info(),
    )
    spec = generate_site(seed, duration_s=max(SITE_DURATION_S, duration_s))
    config = device_config_for_site(spec)  # what `sitehawk-edge run` builds for its own site
    base = baseline_frame(frames)
    report.baseline_frame = base
    with (
        tempfile.TemporaryDirectory(prefix="sitehawk-soak-") as tmp_name,
        open(os.devnull, "w", encoding="utf-8") as devnull,
    ):
        tmp = Path(tmp_name)
        config_path = tmp / "device.yaml"
        config_path.write_text(config.to_yaml(header="benchmarks/agent_soak.py"))
        opts = RunOptions(
            config=config_path,
            duration_s=duration_s,
            policy=SHIPPED_POLICY,
            out=tmp / "run",
            outbox=tmp / "outbox.sqlite3",
            start_s=0.0,
            frame_size=size,
            report=False,
        )
        console = RunConsole(file=devnull, live=False)
        run = prepare(opts, console)
        tracker = run.agent.cameras[0].tracker
        count = 0
        last = [time.perf_counter(), 0]  # time and frame of the previous sample
        snapshot: list[tracemalloc.Snapshot] = []

        def sample(frame: int) -> None:
            now = time.perf_counter()
            fps = (frame - last[1]) / (now - last[0]) if frame > last[1] else None
            last[0], last[1] = now, frame
            s = Sample(
                frame,
                round(rss_bytes() / MB, 2),
                round(fps, 1) if fps is not None else None,
                sum(run.agent.alert_counts.values()),
                len(getattr(tracker, "tracks", ())),
            )
            report.samples.append(s)
            print(_row(s), flush=True)
            if trace and frame == base:
                snapshot.append(tracemalloc.take_snapshot())

        def on_frame(_: FrameReport) -> None:
            nonlocal count
            count += 1
            if count % SAMPLE_EVERY == 0 or count == base:
                sample(count)

        run.agent.on_frame.append(on_frame)
        print(
            f"soak: {frames} frames ({duration_s:g} s of site time, seed {seed}, policy "
            f"{SHIPPED_POLICY}, {size[0]}x{size[1]}), RSS every {SAMPLE_EVERY} frames "
            f"({rss_source()})"
        )
        print(_header())
        if trace:
            tracemalloc.start(TRACE_DEPTH)
        sample(0)
        start = time.perf_counter()
        summary = execute(run, opts, console)
        report.wall_s = round(time.perf_counter() - start, 2)
        if count % SAMPLE_EVERY:
            sample(count)
        if trace and snapshot:
            stats = tracemalloc.take_snapshot().compare_to(snapshot[0], "traceback")
            report.tracemalloc_top = [
                f"{s.size_diff / 1024:+.1f} KiB in {s.count_diff:+d} blocks: "
                + " <- ".join(f"{f.filename}:{f.lineno}" for f in list(s.traceback)[::-1][:4])
                for s in stats[:15]
            ]
            tracemalloc.stop()
        report.alerts = dict(summary["telemetry"]["alerts"])
    report.final_frame = count
    report.fps_mean = round(count / report.wall_s, 1) if report.wall_s > 0 else None
    by_frame = {s.frame: s.rss_mb for s in report.samples}
    report.rss_baseline_mb = by_frame.get(base)
    report.rss_final_mb = by_frame.get(count)
    if report.rss_baseline_mb is not None and report.rss_final_mb is not None:
        report.growth_mb = round(report.rss_final_mb - report.rss_baseline_mb, 2)
        ok = report.growth_mb <= TARGET_GROWTH_MB
        report.result = "PASS" if ok else "FAIL"
        if frames < DEFAULT_FRAMES:
            report.result += f" (short run: the target is for {DEFAULT_FRAMES} frames)"
    report.machine["load_avg_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


def _header() -> str:
    return f"{'frame':>7} {'RSS MB':>9} {'fps':>7} {'alerts':>7} {'tracks':>7}"


def _row(s: Sample) -> str:
    fps = f"{s.fps:.1f}" if s.fps is not None else "-"
    return f"{s.frame:>7} {s.rss_mb:>9.1f} {fps:>7} {s.alerts:>7} {s.tracks:>7}"


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the table and the verdict, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--frames", type=int, default=DEFAULT_FRAMES, help=f"frames (default {DEFAULT_FRAMES})"
    )
    parser.add_argument("--seed", type=int, default=7, help="virtual site seed (default 7)")
    parser.add_argument("--size", default="1280x720", help="frame size WxH (default 1280x720)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace Python allocations and list the lines whose memory grew from the baseline "
        "frame to the end, allocation site first (about 20 times slower: use --frames 3000)",
    )
    args = parser.parse_args(argv)
    if args.frames < SAMPLE_EVERY:
        parser.error(f"--frames must be at least {SAMPLE_EVERY}")
    report = soak(args.frames, args.seed, _parse_size(args.size), args.tracemalloc)
    print()
    print(
        f"RSS {report.rss_baseline_mb} MB at frame {report.baseline_frame}, "
        f"{report.rss_final_mb} MB at frame {report.final_frame}: growth {report.growth_mb} MB "
        f"(target <= {TARGET_GROWTH_MB:g} MB) -> {report.result}"
    )
    print(
        f"{report.final_frame} frames in {report.wall_s:.1f} s ({report.fps_mean} fps), alerts "
        f"{report.alerts}, load {report.machine['load_avg_1_5_15_end']}"
    )
    for line in report.tracemalloc_top:
        print("  " + line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(report)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
