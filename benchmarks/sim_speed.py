"""How fast the virtual site renders, and how many search-env steps per second it sustains.

Renders are measured on ONE core (the process pins itself to one CPU and limits OpenCV and the
BLAS/OpenMP pools to one thread), at 96×96 (the policy's observation) and 1280×720 (a device
frame), with and without ground truth, over random but realistic PTZ poses: points across the
work areas, half wide (1×–2×) and half zoomed (2×–30×), at random site times. Each figure is the
median of several timed repeats after a warm-up, both per CPU second (what one core delivers,
even on a shared machine; the targets are judged on it) and per wall-clock second. The targets
(≥ 1,500 frames/s at 96×96, ≥ 60 at 1280×720) are for rendering; the ground-truth rows show the
extra cost the training environment pays per step, without a target.

Env throughput is total steps/s of ``SiteHawk/PTZSearch-v0`` with random actions, in-process
(one env) and in gymnasium ``AsyncVectorEnv`` with 1, 2 and 4 worker processes (one thread
each; episode resets included, as in training).

    python benchmarks/sim_speed.py            # full run, ~30 s
    python benchmarks/sim_speed.py --quick    # a few seconds per figure
    python benchmarks/sim_speed.py --out results.json --cpu 1

Prints a table and writes JSON (default ``benchmarks/results/sim_speed.json``) with the machine's
CPU model, core count and load average, since figures on a shared machine are noisy.
"""

from __future__ import annotations

import os

# Thread pools are sized when numpy/OpenCV load: limit them before anything imports those.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge.geometry import PTZPose, pan_tilt_of_point  # noqa: E402
from edge.sim.generate import generate_site  # noqa: E402
from edge.sim.render import Renderer  # noqa: E402
from edge.sim.spec import SiteSpec  # noqa: E402
from edge.sim.world import Site, points_in_polygon  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sim_speed.json"
SITE_SEEDS = (1, 2, 3)
TARGETS_FPS = {(96, 96): 1500.0, (1280, 720): 60.0}
ENV_COUNTS = (1, 2, 4)


@dataclass
class Settings:
    """How much to measure."""

    repeats: int
    frames: dict[tuple[int, int], int]  # frames per timed repeat, by size
    warmup_frames: int
    env_steps: int  # timed vector steps per env count
    env_warmup_steps: int

    @classmethod
    def full(cls) -> Settings:
        return cls(7, {(96, 96): 600, (1280, 720): 60}, 30, 600, 30)

    @classmethod
    def quick(cls) -> Settings:
        return cls(3, {(96, 96): 150, (1280, 720): 15}, 10, 100, 10)


@dataclass
class RenderResult:
    """Frames/s of one (size, truth) configuration on one core.

    ``fps_cpu_*`` divide frames by the CPU time the (single-threaded) process used: what one core
    delivers, even while other jobs share it. ``fps_wall_*`` divide by wall-clock time: what this
    run got. The target is judged on the CPU-time median.
    """

    width: int
    height: int
    truth: bool
    fps_cpu_median: float
    fps_wall_median: float
    fps_wall_min: float
    fps_wall_max: float
    ms_per_frame_cpu: float
    repeats: int
    frames_per_repeat: int
    target_fps: float | None
    passed: bool | None


@dataclass
class EnvResult:
    """Total env steps/s with ``num_envs`` envs."""

    num_envs: int
    mode: str  # "in-process" or "AsyncVectorEnv"
    steps_per_s: float
    steps_per_s_per_env: float
    timed_steps: int


@dataclass
class Report:
    """Everything the benchmark writes."""

    benchmark: str = "sim_speed"
    created: str = ""
    quick: bool = False
    machine: dict[str, object] = field(default_factory=dict)
    render: list[RenderResult] = field(default_factory=list)
    env: list[EnvResult] = field(default_factory=list)


# ------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    """CPU, cores, load and software versions, for reading the figures in context."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "load_avg_1_5_15_start": [round(v, 2) for v in load],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


def pin_to_one_cpu(cpu: int | None) -> tuple[set[int], int]:
    """Restrict this process to one CPU (``cpu`` or the last available one); returns the old set."""
    available = set(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else max(available)
    if chosen not in available:
        raise SystemExit(
            f"--cpu {chosen}: not available to this process (have {sorted(available)})"
        )
    os.sched_setaffinity(0, {chosen})
    cv2.setNumThreads(1)
    return available, chosen


# ------------------------------------------------------------------ poses
def realistic_poses(spec: SiteSpec, count: int, rng: np.random.Generator) -> list[PTZPose]:
    """Poses aimed at random points of the work areas: half wide, half zoomed in."""
    cam = spec.camera
    mount = (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))
    lim = cam.limits
    areas = [np.asarray(a, dtype=np.float64) for a in spec.work_areas]
    poses: list[PTZPose] = []
    while len(poses) < count:
        area = areas[int(rng.integers(len(areas)))]
        lo, hi = area.min(axis=0), area.max(axis=0)
        xy = rng.uniform(lo, hi)
        if not points_in_polygon(xy[None], area)[0]:
            continue
        pan, tilt, _ = pan_tilt_of_point(mount, cam.heading_deg, np.array([xy[0], xy[1], 1.0]))
        if rng.random() < 0.5:
            zoom = float(np.exp(rng.uniform(0.0, math.log(2.0))))
        else:
            zoom = float(np.exp(rng.uniform(math.log(2.0), math.log(lim.zoom_max))))
        poses.append(
            PTZPose(
                float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
                float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
                zoom,
            )
        )
    return poses


# ------------------------------------------------------------------ render benchmark
def bench_render(settings: Settings) -> list[RenderResult]:
    """Frames/s per (size, truth), median over repeats, on the current (pinned) CPU."""
    rng = np.random.default_rng(0)
    scenes = []
    for seed in SITE_SEEDS:
        spec = generate_site(seed)
        renderer = Renderer(Site(spec))
        poses = realistic_poses(spec, 64, rng)
        times = rng.uniform(0.0, spec.duration_s, 64).tolist()
        scenes.append((renderer, poses, times))
    results = []
    for (width, height), frames in settings.frames.items():
        for truth in (False, True):
            wall_fps: list[float] = []
            cpu_fps: list[float] = []
            for repeat in range(settings.repeats + 1):
                n = settings.warmup_frames if repeat == 0 else frames
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                for k in range(n):
                    renderer, poses, times = scenes[k % len(scenes)]
                    j = (k // len(scenes) + 7 * repeat) % len(poses)
                    renderer.render(poses[j], times[j], width, height, index=k, truth=truth)
                wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
                if repeat > 0:  # repeat 0 is the warm-up
                    wall_fps.append(n / wall)
                    cpu_fps.append(n / max(cpu, 1e-9))
            cpu_median = statistics.median(cpu_fps)
            # the targets are for rendering a frame; ground truth (boxes, occlusion, which
            # hazards are resolvable) is the trainer's extra cost, reported beside it
            target = None if truth else TARGETS_FPS.get((width, height))
            results.append(
                RenderResult(
                    width,
                    height,
                    truth,
                    round(cpu_median, 1),
                    round(statistics.median(wall_fps), 1),
                    round(min(wall_fps), 1),
                    round(max(wall_fps), 1),
                    round(1000.0 / cpu_median, 3),
                    len(wall_fps),
                    frames,
                    target,
                    None if target is None else cpu_median >= target,
                )
            )
    return results


# ------------------------------------------------------------------ env benchmark
def make_env(episode_s: float = 120.0) -> Any:
    """A single-threaded PTZ search env (module-level: worker processes import it)."""
    cv2.setNumThreads(1)
    import gymnasium as gym

    import trainer.envs  # noqa: F401  (registers the env)

    return gym.make("SiteHawk/PTZSearch-v0", episode_s=episode_s)


def bench_env(settings: Settings) -> list[EnvResult]:
    """Total env steps/s: in-process, then AsyncVectorEnv with 1, 2 and 4 workers."""
    import functools

    import gymnasium as gym

    results = []
    rng = np.random.default_rng(0)
    env = make_env()
    env.reset(seed=0)
    steps = settings.env_steps
    for k in range(settings.env_warmup_steps + steps):
        if k == settings.env_warmup_steps:
            start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(int(rng.integers(7)))
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    results.append(EnvResult(1, "in-process", round(rate, 1), round(rate, 1), steps))
    env.close()
    for num in ENV_COUNTS:
        venv = gym.vector.AsyncVectorEnv(
            [functools.partial(make_env) for _ in range(num)], context="spawn"
        )
        try:
            venv.reset(seed=0)
            for k in range(settings.env_warmup_steps + steps):
                if k == settings.env_warmup_steps:
                    start = time.perf_counter()
                venv.step(rng.integers(0, 7, num))
            rate = steps * num / (time.perf_counter() - start)
        finally:
            venv.close()
        results.append(
            EnvResult(num, "AsyncVectorEnv", round(rate, 1), round(rate / num, 1), steps * num)
        )
    return results


# ------------------------------------------------------------------ output
def format_table(report: Report) -> str:
    """The human-readable summary."""
    m = report.machine
    lines = [
        f"sim_speed  {report.created}  {'(quick)' if report.quick else ''}",
        f"cpu: {m['cpu_model']}  cores: {m['cpu_count']}  "
        f"load avg (1/5/15 min) at start: {m['load_avg_1_5_15_start']}  "
        f"at end: {m.get('load_avg_1_5_15_end')}",
        f"renders pinned to CPU {m.get('render_cpu')} (1 thread); fps(cpu) = frames / CPU time "
        "used (what one core delivers under load), fps(wall) = frames / wall time; "
        "targets judged on fps(cpu)",
        "",
        f"{'render':<12}{'truth':<7}{'fps(cpu)':>10}{'fps(wall)':>11}{'wall min':>10}"
        f"{'wall max':>10}{'ms(cpu)':>9}{'target':>9}  result",
    ]
    for r in report.render:
        target = "-" if r.target_fps is None else f"≥{r.target_fps:.0f}"
        verdict = "-" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append(
            f"{f'{r.width}×{r.height}':<12}{'on' if r.truth else 'off':<7}"
            f"{r.fps_cpu_median:>10.1f}{r.fps_wall_median:>11.1f}{r.fps_wall_min:>10.1f}"
            f"{r.fps_wall_max:>10.1f}{r.ms_per_frame_cpu:>9.3f}{target:>9}  {verdict}"
        )
    if report.env:
        lines += ["", f"{'env':<26}{'envs':>5}{'steps/s':>10}{'per env':>10}"]
        for e in report.env:
            lines.append(
                f"{e.mode:<26}{e.num_envs:>5}{e.steps_per_s:>10.1f}{e.steps_per_s_per_env:>10.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (a few seconds a figure)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin renders to (default: last)"
    )
    parser.add_argument("--no-env", action="store_true", help="skip the env steps/s part")
    args = parser.parse_args(argv)

    settings = Settings.quick() if args.quick else Settings.full()
    report = Report(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        quick=args.quick,
        machine=machine_info(),
    )
    available, cpu = pin_to_one_cpu(args.cpu)
    report.machine["render_cpu"] = cpu
    report.render = bench_render(settings)
    os.sched_setaffinity(0, available)  # env workers spread over every CPU
    if not args.no_env:
        report.env = bench_env(settings)
    report.machine["load_avg_1_5_15_end"] = [round(v, 2) for v in os.getloadavg()]

    print(format_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
