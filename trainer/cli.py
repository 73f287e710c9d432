"""``sitehawk-train``: evaluate PTZ policies, compare and tune the baselines.

Subcommands (heavy imports happen inside each handler, so ``--help`` is instant):

* ``eval`` — one policy (a registered name, an ONNX export or an SB3 zip) on held-out seeds:
  a table, the eval JSON, optionally a recall plot and a video of one episode;
* ``baselines`` — static_wide, patrol, greedy, random and oracle on the same seeds: one table,
  ``baselines.json``, ``baselines.png`` and ``report.html``;
* ``tune-baselines`` — grid search over the patrol and greedy parameters on *training* seeds.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from firmware_config.cli_common import run_cli
from trainer.evaluate import seeds_arg

#: Modules that add their own subcommands: each has ``register(subparsers)`` and may have
#: ``register_dataset(dataset_subparsers)`` for a ``sitehawk-train dataset <kind>`` builder. They
#: import their heavy dependencies inside the handlers, so ``--help`` stays fast.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "trainer.detect.cli",
    "trainer.vlm.cli",
    "trainer.router.cli",
)

#: Grids of ``tune-baselines``: the parameters that matter most, around the hand-set values.
#: The winners (``--seeds 0-59``) are the dataclass defaults in ``edge/policy/baselines.py``.
TUNING_GRIDS: dict[str, dict[str, list[Any]]] = {
    "patrol": {
        "zoom_margin": [1.0, 1.1],
        "band_ratio": [1.15, 1.4, 2.0],
        "edge_margin": [0.02, 0.05],
    },
    "greedy": {
        "recheck_s": [15.0, 25.0],
        "verify_timeout_s": [0.0, 0.2],
        "wide_dwell_steps": [1, 2],
    },
}
#: Columns of the result tables: (key, header).
TABLE_COLUMNS = (
    ("hazards", "hazards"),
    ("ttd_mean_s", "TTD mean s"),
    ("ttd_p90_s", "TTD p90 s"),
    ("ttd_detected_mean_s", "TTD found s"),
    ("recall_30s", "recall@30s"),
    ("recall", "recall"),
    ("missed", "missed"),
    ("travel_deg", "travel °/ep"),
    ("steps_per_s", "steps/s"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitehawk-train",
        description="Train-side tools for SiteHawk: evaluate PTZ policies, compare and tune "
        "the baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate one policy on held-out virtual sites")
    ev.add_argument(
        "--policy",
        required=True,
        help="registered name (static_wide, patrol, greedy, random, oracle), an exported ONNX "
        "policy (<stem>.manifest.json beside it) or a Stable-Baselines3 .zip",
    )
    _common(ev, default_seeds="1000-1049")
    ev.add_argument("--json", type=Path, required=True, help="write the eval JSON here")
    ev.add_argument("--plot", type=Path, help="write a recall-vs-time + TTD histogram PNG here")
    ev.add_argument("--video", type=Path, help="write one episode (the first seed) as an mp4 here")
    ev.set_defaults(handler=_cmd_eval)

    bl = sub.add_parser("baselines", help="compare the baselines on held-out sites")
    _common(bl, default_seeds="1000-1009")
    bl.add_argument(
        "--out",
        type=Path,
        default=Path("runs/baselines"),
        help="output folder (default: %(default)s)",
    )
    bl.set_defaults(handler=_cmd_baselines)

    tn = sub.add_parser(
        "tune-baselines", help="grid-search the patrol and greedy parameters on training seeds"
    )
    tn.add_argument(
        "--seeds", type=seeds_arg, default=seeds_arg("0-19"), help="training seeds (default: 0-19)"
    )
    tn.add_argument(
        "--policies",
        default="patrol,greedy",
        help="comma-separated policies to tune (default: %(default)s)",
    )
    tn.add_argument("--episode-s", type=float, default=120.0, help="episode length, seconds")
    tn.add_argument("--json", type=Path, help="write every combination's result here")
    tn.add_argument("--no-progress", action="store_true", help="no progress bar")
    tn.set_defaults(handler=_cmd_tune)

    ds = sub.add_parser("dataset", help="render training data from virtual sites")
    dataset_sub = ds.add_subparsers(dest="dataset_kind", metavar="KIND", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_dataset"):
            module.register_dataset(dataset_sub)
    return parser


def _common(p: argparse.ArgumentParser, default_seeds: str) -> None:
    p.add_argument(
        "--seeds",
        type=seeds_arg,
        default=seeds_arg(default_seeds),
        help=f"seeds: A-B, A,B,C or a mix (default: {default_seeds}; held-out seeds are ≥ 1000)",
    )
    p.add_argument(
        "--perception",
        choices=("sim", "detector"),
        default="sim",
        help="simulated perception, or the trained detector (default: %(default)s)",
    )
    p.add_argument(
        "--detector-model",
        type=Path,
        help="detector for --perception detector (default: the shipped models/detector.onnx)",
    )
    p.add_argument(
        "--episode-s", type=float, default=120.0, help="episode length, seconds (default: 120)"
    )
    p.add_argument(
        "--allow-train-seeds",
        action="store_true",
        help="allow seeds < 1000 (training sites): for debugging and tuning only",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------------- handlers
def _episode_base(args: argparse.Namespace) -> Any:
    """The episode settings the options change (None: the defaults)."""
    if args.detector_model is None:
        return None
    from trainer.envs.episode import EpisodeConfig

    return EpisodeConfig(detector_model=str(args.detector_model))


def _cmd_eval(args: argparse.Namespace) -> int:
    from trainer.evaluate import episode_config, run_policy, save_json, summarize
    from trainer.report import plot_run, write_video

    run = run_policy(
        args.policy,
        args.seeds,
        perception=args.perception,
        config=_episode_base(args),
        episode_s=args.episode_s,
        progress=not args.no_progress,
        allow_train_seeds=args.allow_train_seeds,
    )
    result = summarize(run)
    _print_table([result], title=f"{result['policy']} on {len(args.seeds)} sites")
    save_json(result, args.json)
    print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot_run(run, args.plot)}")
    if args.video:
        cfg = episode_config(
            _episode_base(args), perception=args.perception, episode_s=args.episode_s
        )
        path = write_video(
            args.policy,
            args.seeds[0],
            args.video,
            config=cfg,
            allow_train_seeds=args.allow_train_seeds,
        )
        print(f"wrote {path}")
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    from trainer.evaluate import BASELINES, run_policy, save_json, summarize
    from trainer.report import html_report, plot_comparison

    runs = [
        run_policy(
            name,
            args.seeds,
            perception=args.perception,
            config=_episode_base(args),
            episode_s=args.episode_s,
            progress=not args.no_progress,
            allow_train_seeds=args.allow_train_seeds,
        )
        for name in BASELINES
    ]
    results = [summarize(r) for r in runs]
    _print_table(results, title=f"PTZ search baselines on {len(args.seeds)} sites")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_json(
        {
            "schema": "sitehawk.baselines/1",
            "seeds": list(args.seeds),
            "episode_s": args.episode_s,
            "perception": args.perception,
            "results": {r["policy"]: r for r in results},
        },
        out / "baselines.json",
    )
    png = plot_comparison(runs, out / "baselines.png")
    report = html_report(results, png, out / "report.html")
    print(f"wrote {out / 'baselines.json'}, {png}, {report}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from trainer.evaluate import HELD_OUT_SEED_MIN, episode_config, grid_search, save_json

    held_out = [s for s in args.seeds if s >= HELD_OUT_SEED_MIN]
    if held_out:
        raise ValueError(
            f"tune on training seeds (< {HELD_OUT_SEED_MIN}); {held_out[:5]} are held out"
        )
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in TUNING_GRIDS]
    if unknown:
        raise ValueError(f"no tuning grid for {unknown}; choose from {sorted(TUNING_GRIDS)}")
    cfg = episode_config(episode_s=args.episode_s)
    report: dict[str, Any] = {"seeds": list(args.seeds), "episode_s": args.episode_s}
    for name in names:
        ranked = grid_search(
            name, TUNING_GRIDS[name], args.seeds, config=cfg, progress=not args.no_progress
        )
        rows = [{"params": p, **r} for p, r in ranked]
        _print_table(
            [{**r, "policy": _params_text(p)} for p, r in ranked],
            title=f"{name}: {len(ranked)} combinations on seeds {args.seeds[0]}-{args.seeds[-1]}",
        )
        best_params, best = ranked[0]
        print(
            f"best {name}: {_params_text(best_params)}  ttd_mean_s={best['ttd_mean_s']}  "
            f"recall={best['recall']}"
        )
        report[name] = rows
    if args.json:
        save_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _print_table(results: Sequence[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("policy", style="bold")
    for _, header in TABLE_COLUMNS:
        table.add_column(header, justify="right")
    for r in results:
        table.add_row(str(r["policy"]), *(_fmt(r[key]) for key, _ in TABLE_COLUMNS))
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sitehawk-train``; returns the exit code (2 for bad input)."""
    # bad input (seeds, policy file, perception mode) raises ValueError: one line, exit 2
    return run_cli(build_parser(), argv, user_errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
