"""``sitehawk-export detector CKPT --out models/detector.onnx [--int8]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``detector`` subcommand."""
    p = subparsers.add_parser(
        "detector",
        help="export a detector checkpoint to ONNX with its manifest (parity-checked)",
        description="Export a detector training checkpoint (.pt, its EMA weights) to ONNX, "
        "write <stem>.manifest.json beside it, and check torch vs ONNX Runtime on rendered "
        "frames.",
    )
    p.add_argument("checkpoint", type=Path, help="training checkpoint (best.pt / last.pt)")
    p.add_argument(
        "--out", type=Path, default=Path("models/detector.onnx"), help="(default: %(default)s)"
    )
    p.add_argument(
        "--parity-frames", type=int, default=50, help="frames of the parity check (default: 50)"
    )
    p.add_argument(
        "--int8", action="store_true", help="also write <stem>.int8.onnx (static QDQ int8)"
    )
    p.add_argument(
        "--calib-frames", type=int, default=64, help="int8 calibration frames (default: 64)"
    )
    p.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="the checkpoint's EMA weights (default) or its raw model weights",
    )
    p.set_defaults(handler=_cmd_detector)


def _cmd_detector(args: argparse.Namespace) -> int:
    from export.detector import ExportError, export_detector
    from firmware_config.cli_common import CommandError

    if not args.checkpoint.is_file():
        raise CommandError(f"{args.checkpoint}: no such checkpoint")
    try:
        summary = export_detector(
            args.checkpoint,
            args.out,
            parity=args.parity_frames,
            int8=args.int8,
            calib_frames=args.calib_frames,
            weights=args.weights,
        )
    except (ValueError, ExportError) as exc:
        raise CommandError(str(exc), exit_code=1) from None
    par = summary["parity"]
    print(
        f"wrote {summary['onnx']} + {summary['manifest']}: {summary['params']:,} params, "
        f"{summary['flops'] / 1e9:.2f} GFLOPs"
    )
    print(
        f"parity on {par['frames']} frames: max abs diff {par['max_abs_diff']:.2e}, "
        f"{par['detections']} detections, {par['mismatched_frames']} frames differ"
    )
    if "int8" in summary:
        print(f"wrote {summary['int8']['onnx']} ({json.dumps(summary['int8']['quantization'])})")
    return 0
