"""`sitehawk-edge`: the on-device command line — run the agent, watch its alerts, look at the
virtual site, model a real one.

Commands (each registers itself with one ``_add_*`` function listed in ``COMMANDS``; later ones —
``eval``, ``bench`` — slot in the same way):

* ``run``: the agent (the main job) — on the built-in virtual site, or a device config.
* ``eval``: run the agent on virtual sites and score its alerts (precision, recall, ...).
* ``tune-rules``: choose the hazard rules' thresholds for the best F1 on training sites.
* ``subscribe``: watch a device's alerts and status on a broker, validated and pretty-printed.
* ``render``: one picture of a site — panorama, plan view and PTZ views at several zooms.
* ``site generate`` / ``site show``: write a generated site as YAML; summarise a site file.
* ``site config``: write the device config (sitehawk.device/1) that matches a site's layout.

This module imports only the standard library at import time: ``sitehawk-edge --help`` works on a
bare device, and numpy/OpenCV/pydantic load inside the command that needs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from firmware_config.cli_common import CommandError, build_root_parser, run_cli

__all__ = ["CommandError", "build_parser", "main"]

if TYPE_CHECKING:
    from pydantic import ValidationError

    from edge.sim.spec import SiteSpec
    from edge.sim.world import Site

PROG = "sitehawk-edge"
DEFAULT_SEED = 7
#: Zooms of the PTZ views in the `render` picture (see :mod:`edge.sim.overview`).
RENDER_ZOOMS = (1.0, 4.0, 12.0, 30.0)


# ---------------------------------------------------------------------------------------------
# parser
def _add_render(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "render",
        help="draw one picture of a virtual site: panorama, plan view, PTZ views at 4 zooms",
        description="Render a virtual site at one instant into a single PNG: the panorama the "
        "PTZ camera can see with workers and hazards marked, a plan view, and PTZ views at "
        f"{', '.join(f'{z:g}x' for z in RENDER_ZOOMS)} aimed at an active hazard.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--seed", type=int, help=f"generate the site from this seed (default {DEFAULT_SEED})"
    )
    source.add_argument("--site", type=Path, help="load the site from this YAML file instead")
    p.add_argument("--out", type=Path, required=True, help="output image (PNG)")
    p.add_argument("--t", type=float, default=60.0, help="site time in seconds (default 60)")
    p.add_argument("--width", type=int, default=1920, help="picture width in pixels (default 1920)")
    p.set_defaults(handler=_cmd_render)


def _add_site(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "site",
        help="generate a site as YAML, or summarise a site file",
        description="Sites are YAML files (schema sitehawk.site/1): generate one, edit its layout "
        "to model a real site, check it with `site show`, use it with `render --site`.",
    )
    site_commands = p.add_subparsers(dest="site_command", metavar="SITE_COMMAND", title="commands")
    p.set_defaults(handler=lambda args: _print_help(p))
    gen = site_commands.add_parser(
        "generate", help="write a generated site as YAML", description="Write a generated site."
    )
    gen.add_argument("--seed", type=int, required=True, help="site seed (>= 1000: held out)")
    gen.add_argument("--out", type=Path, required=True, help="output YAML file")
    gen.add_argument(
        "--duration", type=float, default=600.0, help="site time the schedules cover, s"
    )
    gen.add_argument("--workers", type=int, help="number of workers (default: 20-40, by seed)")
    gen.set_defaults(handler=_cmd_site_generate)
    show = site_commands.add_parser(
        "show", help="summarise a site file", description="Validate and summarise a site file."
    )
    show.add_argument("file", type=Path, help="site YAML file")
    show.set_defaults(handler=_cmd_site_show)
    cfg = site_commands.add_parser(
        "config",
        help="write the device config that matches a site",
        description="Write the device config (sitehawk.device/1) for a virtual site's own "
        "layout: its camera mount, limits and work areas, one zone per machine (active while the "
        "machine moves), the site itself as the camera source. Check it with "
        "`sitehawk-fleet validate`.",
    )
    cfg_source = cfg.add_mutually_exclusive_group(required=True)
    cfg_source.add_argument("--seed", type=int, help="the site generated from this seed")
    cfg_source.add_argument("--site", type=Path, help="the site in this YAML file")
    cfg.add_argument("--out", type=Path, required=True, help="output device config (YAML)")
    cfg.add_argument("--device-id", help="device id (default vsite-<seed>)")
    cfg.add_argument("--site-id", help="site id (default site-<seed>)")
    cfg.set_defaults(handler=_cmd_site_config)


def _add_run(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "run",
        help="run the agent: on the built-in virtual site, or a device config (the main job)",
        description="Run the edge agent: frames -> detector -> tracker -> hazard rules -> alerts "
        "(outbox, MQTT), and the PTZ policy steering the camera. Without --config it runs on the "
        f"built-in virtual site (seed {DEFAULT_SEED}) with the shipped baseline policy. Prints "
        "each alert as it happens and a status line; writes alerts.jsonl, status.json and "
        "report.html into the run folder.",
    )
    p.add_argument("--config", type=Path, help="device config (YAML/TOML) to run")
    p.add_argument("--seed", type=int, help=f"built-in virtual site seed (default {DEFAULT_SEED})")
    p.add_argument(
        "--duration", type=float, default=120.0, help="site time to run, seconds (default 120)"
    )
    p.add_argument("--mqtt", metavar="URL", help="publish to this broker: mqtt://HOST:PORT")
    p.add_argument(
        "--realtime", action="store_true", help="pace the virtual site to the wall clock"
    )
    p.add_argument(
        "--policy", help="PTZ policy: static_wide, patrol, random, greedy, learned (default: "
        "greedy on the built-in site, the config's otherwise)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="run folder (default runs/<time>)")
    p.add_argument(
        "--outbox", type=Path, help="outbox database (default: the config's, else "
        "~/.local/state/sitehawk/<device>/outbox.sqlite3)",
    )  # fmt: skip
    p.add_argument(
        "--start", type=float, help="virtual site time to start at (default: where this device "
        "stopped last time, else 0)",
    )  # fmt: skip
    p.add_argument(
        "--size", default="1280x720", help="frame size WxH of the virtual camera (default 1280x720)"
    )
    p.add_argument(
        "--status-every", type=float, default=5.0, metavar="S",
        help="without a terminal, print the status line every S seconds (default 5)",
    )  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument(
        "--onvif", action="store_true", help="steer virtual cameras over ONVIF: each serves the "
        "ONVIF device/media/PTZ services on loopback and the agent drives it with the ONVIF PTZ "
        "controller a real camera gets (frames stay in-process)",
    )  # fmt: skip
    p.add_argument(
        "--perception", choices=("sim", "detector"),
        help="detector: the detector model (the config's models.detector, else the shipped "
        "models/detector.onnx); sim: simulated perception (virtual cameras only). Default: the "
        "config's detector if set, else sim",
    )  # fmt: skip
    p.add_argument(
        "--vlm", choices=("on", "off"),
        help="ask the VLM before raising (rules with vlm_check; only a confident contradiction "
        "suppresses an alert). on: the config's VLM, else the shipped models/vlm/vlm.gguf "
        "in-process; off: none. Default: the config's vlm.backend; off on the built-in site",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_run)


def _add_subscribe(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "subscribe",
        help="watch a device's alerts and status on a broker (validated, pretty-printed)",
        description="Subscribe to sitehawk/v1/<site>/<device>/alert and .../status, validate "
        "each alert against alert.v1.json and print it; invalid messages are printed with what "
        "is wrong with them. Ends after --count alerts, after --timeout, or on Ctrl-C.",
    )
    p.add_argument("--mqtt", metavar="URL", required=True, help="broker: mqtt(s)://HOST:PORT")
    p.add_argument("--site", default="+", help="site id (default +: all)")
    p.add_argument("--device", default="+", help="device id (default +: all)")
    p.add_argument("--count", type=int, help="exit after this many alert messages")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password-file", type=Path, help="file holding the broker password")
    p.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    p.add_argument("--prefix", default="sitehawk/v1", help="topic prefix (default sitehawk/v1)")
    p.set_defaults(handler=_cmd_subscribe)


def _add_scored_perception(p: argparse.ArgumentParser) -> None:
    """``--perception`` of the commands that score the agent on virtual sites (eval, tune-rules)."""
    p.add_argument(
        "--perception", choices=("sim", "detector"), default="sim",
        help="simulated perception (sim, default) or the detector model (the config's "
        "models.detector, else the shipped models/detector.onnx)",
    )  # fmt: skip


def _add_jobs(p: argparse.ArgumentParser) -> None:
    """``--jobs`` of the commands that run one agent per seed (eval, tune-rules)."""
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N",
        help="run N seeds at a time in worker processes (default 1; the results are the same)",
    )  # fmt: skip


def _add_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="run the agent on virtual sites and score its alerts (precision, recall, ...)",
        description="For each seed, run the agent on that virtual site from site time 0 (a "
        "fresh temporary outbox per seed, no broker) and score its raised alerts against the "
        "site's hazard events: same type, the alert's pan/tilt within the event's object "
        "(+-2 deg), raised while the event was active (+5 s); each event matches at most one "
        "alert. Writes precision, recall, false alerts per hour, mean time to alert and the "
        "thresholds used to --json. Seeds < 1000 are training seeds (a warning).",
    )
    p.add_argument(
        "--seeds", required=True, metavar="A-B", help="site seeds: a range A-B (inclusive), "
        "a seed, or a comma-separated list of those; held-out sites are >= 1000",
    )  # fmt: skip
    p.add_argument(
        "--config", type=Path, help="device config whose hazard rules and policy to evaluate "
        "(its cameras and zones are replaced by each site's own)",
    )  # fmt: skip
    p.add_argument(
        "--policy", help="PTZ policy: static_wide, patrol, random, greedy, learned (default: "
        "the config's, else greedy)",
    )  # fmt: skip
    _add_scored_perception(p)
    p.add_argument(
        "--vlm", choices=("on", "off"), default="off",
        help="on: the rules with vlm_check ask the VLM before raising (the config's VLM, else "
        "the shipped models/vlm/vlm.gguf); default off",
    )  # fmt: skip
    p.add_argument(
        "--duration", type=float, default=120.0, help="site time per seed, seconds (default 120)"
    )
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="write the scores here")
    p.add_argument(
        "--vlm-off-json", type=Path, metavar="OUT",
        help="with --vlm on: also write the --vlm off scores here: each seed runs once more "
        "without the VLM (with vlm.look the camera steers to hazards the VLM waits on); with "
        "vlm.look false the alert manager is replayed without the gate on the run's recorded "
        "hazard observations instead (one run per seed for both figures)",
    )  # fmt: skip
    _add_jobs(p)
    p.set_defaults(handler=_cmd_eval)


def _add_tune_rules(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "tune-rules",
        help="choose each hazard rule's min_confidence and dwell_s for the best F1 on "
        "training sites; write a device config for eval --config",
        description="Run the agent once per training seed as `eval` does (no VLM), record every "
        "frame's hazard observations, then replay the alert manager offline over a grid of "
        "min_confidence (0.3-0.9, step 0.1) x dwell_s (0, 0.5, 1, 2, 3, 5 s) per hazard type "
        "and keep the F1-best point (precision and recall pooled over the seeds). Thresholds "
        "never move the camera (the policy acts on detections), so the replay is exact; it is "
        "checked against each run. Held-out seeds (>= 1000) are refused.",
    )
    p.add_argument(
        "--seeds", required=True, metavar="A-B", help="training site seeds (< 1000): a range "
        "A-B (inclusive), a seed, or a comma-separated list of those",
    )  # fmt: skip
    p.add_argument(
        "--config", type=Path, help="device config to start from (its rules, policy and "
        "models; the tuned thresholds replace its hazards.<type> min_confidence and dwell_s)",
    )  # fmt: skip
    p.add_argument(
        "--policy", help="PTZ policy (default: the config's, else greedy)"
    )  # fmt: skip
    _add_scored_perception(p)
    p.add_argument(
        "--duration", type=float, default=120.0, help="site time per seed, seconds (default 120)"
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE",
        help="write the tuned device config here (for sitehawk-edge eval --config FILE)",
    )  # fmt: skip
    p.add_argument(
        "--json", type=Path, metavar="FILE", help="write every grid point's figures here"
    )
    _add_jobs(p)
    p.set_defaults(handler=_cmd_tune_rules)


#: Every subcommand's registration function, in `--help` order.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    _add_run,
    _add_eval,
    _add_tune_rules,
    _add_subscribe,
    _add_render,
    _add_site,
)


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `handler` (args -> exit code) with `set_defaults`."""
    return build_root_parser(
        PROG,
        "SiteHawk on the device: look at the virtual site, model a real one.",
        __version__,
        COMMANDS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sitehawk-edge`; returns the process exit code."""
    return run_cli(build_parser(), argv)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# ---------------------------------------------------------------------------------------------
# site commands
def _load_spec(path: Path) -> SiteSpec:
    from edge.sim.spec import SiteFileError, SiteSpec

    try:
        return SiteSpec.load(path)
    except SiteFileError as exc:
        raise CommandError(str(exc)) from None


def _cmd_site_generate(args: argparse.Namespace) -> int:
    from edge.sim.generate import generate_site

    if args.duration <= 0:
        raise CommandError(f"--duration must be positive, got {args.duration:g}")
    if args.workers is not None and args.workers < 0:
        raise CommandError(f"--workers must be >= 0, got {args.workers}")
    spec = generate_site(args.seed, duration_s=args.duration, num_workers=args.workers)
    _writable(args.out)
    spec.save(args.out)
    print(
        f"wrote {args.out}: site seed {args.seed}, {spec.size_m[0]:.0f} x {spec.size_m[1]:.0f} m, "
        f"{len(spec.workers)} workers, {len(spec.machines)} machines, {spec.duration_s:g} s"
    )
    return 0


def _cmd_site_show(args: argparse.Namespace) -> int:
    from edge.sim.overview import hazard_subject
    from edge.sim.world import Site

    spec = _load_spec(args.file)
    site = Site(spec)
    print(f"{args.file}: {spec.schema_version}")
    for line in _site_table(spec, site):
        print(line)
    print()
    print(f"{'hazard':<20} {'start_s':>8} {'end_s':>8}  subject")
    for hz in site.hazards:
        print(f"{hz.id:<20} {hz.start_s:>8.1f} {hz.end_s:>8.1f}  {hazard_subject(spec, hz)}")
    if not site.hazards:
        print("(no hazard events)")
    return 0


def _cmd_site_config(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from edge.sim.device_config import device_config_for_site
    from edge.sim.generate import generate_site

    if args.out.suffix.lower() not in (".yaml", ".yml"):
        raise CommandError(f"--out {args.out}: write a .yaml or .yml file")
    if args.site is not None:
        spec, origin = _load_spec(args.site), f"site file {args.site}"
    else:
        spec, origin = generate_site(args.seed), f"virtual site seed {args.seed}"
    try:
        config = device_config_for_site(spec, args.device_id, args.site_id, site_file=args.site)
    except ValidationError as exc:  # a bad --device-id / --site-id, or a machine zone
        raise CommandError(_site_config_problems(exc, args.site or f"seed {args.seed}")) from None
    _writable(args.out)
    header = (
        f"SiteHawk device config ({config.schema_version}) for {origin}.\n"
        f"Written by `{PROG} site config`; check it with `sitehawk-fleet validate {args.out}`."
    )
    args.out.write_text(config.to_yaml(relative_to=args.out.parent, header=header))
    camera = config.cameras[0]
    print(
        f"wrote {args.out}: device {config.device_id} on site {config.site_id}, camera "
        f"{camera.id}, {len(config.zones)} zones (one per machine)"
    )
    return 0


def _site_config_problems(exc: ValidationError, origin: Path | str) -> str:
    from firmware_config.config_files import describe_error

    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if loc[0] in ("device_id", "site_id"):
            where = "--" + loc[0].replace("_", "-")
        elif loc[0] == "zones" and len(loc) > 1:  # zone i is machine i's exclusion zone
            where = f"{origin}:machines.{loc[1]}.zone"
        else:
            where = f"{origin}:{'.'.join(loc)}"
        lines.append(f"{where}: {describe_error(err)}")
    return "\n".join(lines)


def _site_table(spec: SiteSpec, site: Site) -> list[str]:
    cam, lim = spec.camera, spec.camera.limits
    kinds: dict[str, int] = {}
    for s in spec.structures:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    hazard_counts: dict[str, int] = {}
    for hz in site.hazards:
        hazard_counts[hz.type] = hazard_counts.get(hz.type, 0) + 1
    rows = [
        ("name", f"{spec.name} (seed {spec.seed})" if spec.seed is not None else spec.name),
        ("size", f"{spec.size_m[0]:.1f} x {spec.size_m[1]:.1f} m, {spec.duration_s:g} s"),
        (
            "camera",
            f"{cam.id} at ({cam.position[0]:.1f}, {cam.position[1]:.1f}), {cam.height_m:g} m high, "
            f"heading {cam.heading_deg:.1f} deg; pan {lim.pan_min_deg:g}..{lim.pan_max_deg:g}, "
            f"tilt {lim.tilt_min_deg:g}..{lim.tilt_max_deg:g}, zoom 1-{lim.zoom_max:g}x",
        ),
        ("structures", f"{len(spec.structures)} " + _counts(kinds)),
        (
            "machines",
            f"{len(spec.machines)} " + ", ".join(f"{m.id} ({m.kind})" for m in spec.machines),
        ),
        (
            "workers",
            f"{len(spec.workers)} ({sum(not w.helmet for w in spec.workers)} without helmet, "
            f"{sum(not w.vest for w in spec.workers)} without vest from the start)",
        ),
        ("fires", str(len(spec.fires))),
        ("hazards", f"{len(site.hazards)} events " + _counts(hazard_counts)),
    ]
    return [f"  {key:<11} {value}" for key, value in rows]


def _counts(counts: dict[str, int]) -> str:
    return "(" + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")" if counts else ""


def _writable(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"{out}: cannot create the folder: {exc.strerror}", 1) from None


# ---------------------------------------------------------------------------------------------
# run, subscribe
def _parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 16:
        raise CommandError(f"--size {text}: give WIDTHxHEIGHT, each at least 16, e.g. 1280x720")
    return size


def _cmd_run(args: argparse.Namespace) -> int:
    import logging

    from rich.logging import RichHandler

    from edge.console import RunConsole
    from edge.runner import RunError, RunOptions, execute, prepare

    opts = RunOptions(
        config=args.config,
        seed=args.seed,
        duration_s=args.duration,
        mqtt_url=args.mqtt,
        realtime=args.realtime,
        policy=args.policy,
        out=args.out,
        outbox=args.outbox,
        start_s=args.start,
        frame_size=_parse_size(args.size),
        status_interval_s=args.status_every,
        report=not args.no_report,
        onvif=args.onvif,
        perception=args.perception,
        vlm=None if args.vlm is None else args.vlm == "on",
    )
    root = logging.getLogger()
    with RunConsole(status_interval_s=opts.status_interval_s) as console:
        # warnings (a skipped frame, a lost broker) print above the live status line
        handler = RichHandler(console=console.console, show_path=False, show_time=False)
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        try:
            try:
                summary = execute(prepare(opts, console), opts, console)
            except RunError as exc:
                raise CommandError(str(exc)) from None
        finally:
            root.removeHandler(handler)
    return 130 if summary["run"]["interrupted"] else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from edge.evaluate import command

    return command(args)


def _cmd_tune_rules(args: argparse.Namespace) -> int:
    from edge.tune_rules import command

    return command(args)


def _cmd_subscribe(args: argparse.Namespace) -> int:
    from edge.subscribe import SubscribeError, SubscribeOptions, watch

    if args.count is not None and args.count < 1:
        raise CommandError(f"--count must be >= 1, got {args.count}")
    if args.timeout is not None and args.timeout <= 0:
        raise CommandError(f"--timeout must be positive, got {args.timeout:g}")
    opts = SubscribeOptions(
        url=args.mqtt,
        site=args.site,
        device=args.device,
        prefix=args.prefix,
        count=args.count,
        timeout_s=args.timeout,
        username=args.username,
        password_file=args.password_file,
        ca_file=args.ca_file,
    )
    try:
        result = watch(opts)
    except (SubscribeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        return 0
    if args.count is not None and result.alerts < args.count:
        print(
            f"{PROG} subscribe: timed out after {args.timeout:g} s with {result.alerts} of "
            f"{args.count} alerts",
            file=sys.stderr,
        )
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# render
def _cmd_render(args: argparse.Namespace) -> int:
    import cv2

    from edge.sim.generate import generate_site
    from edge.sim.overview import MIN_WIDTH_PX, render_overview
    from edge.sim.world import Site

    if args.width < MIN_WIDTH_PX:
        raise CommandError(f"--width must be at least {MIN_WIDTH_PX} pixels, got {args.width}")
    if args.site is not None:
        spec = _load_spec(args.site)
        source = str(args.site)
    else:
        seed = DEFAULT_SEED if args.seed is None else args.seed
        spec = generate_site(seed)
        source = f"seed {seed}"
    if not 0.0 <= args.t <= spec.duration_s:
        raise CommandError(f"--t must lie in 0..{spec.duration_s:g} s (the site's duration)")
    overview = render_overview(Site(spec), args.t, args.width, source=source, zooms=RENDER_ZOOMS)
    _writable(args.out)
    if not cv2.imwrite(str(args.out), overview.image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise CommandError(f"{args.out}: cannot write the image (is the suffix .png?)", 1)
    for line in overview.summary:
        print(line)
    size_kb = args.out.stat().st_size / 1024
    h, w = overview.image.shape[:2]
    print(f"wrote {args.out} ({w}x{h} px, {size_kb:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
