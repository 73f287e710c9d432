"""``sitehawk-export vlm``: a VLM checkpoint → text GGUF + mmproj GGUF + manifest (+ parity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from firmware_config.cli_common import CommandError


def register(subparsers: Any) -> None:
    """Add the ``vlm`` subcommand."""
    p = subparsers.add_parser(
        "vlm", help="export a VLM checkpoint to GGUF + mmproj for llama.cpp, with parity checks"
    )
    p.add_argument("checkpoint", type=Path, help="transformers checkpoint folder (Idefics3)")
    p.add_argument(
        "--out", type=Path, default=Path("models/vlm"), help="output folder (default: %(default)s)"
    )
    p.add_argument(
        "--verify-data",
        type=Path,
        help="held-out VQA folder: check answers and logits against transformers",
    )
    p.add_argument(
        "--num",
        type=int,
        default=200,
        help="questions for the answer parity (default: %(default)s)",
    )
    p.set_defaults(handler=_cmd_vlm)


def _cmd_vlm(args: argparse.Namespace) -> int:
    import torch

    from export.vlm import export_vlm, verify_vlm

    torch.set_num_threads(1)
    if not (args.checkpoint / "config.json").is_file():
        raise CommandError(f"{args.checkpoint}: not a checkpoint folder (no config.json)")
    manifest = export_vlm(args.checkpoint, args.out)
    for role, entry in manifest["files"].items():
        print(
            f"{role:7s} {args.out / entry['path']}  {entry['bytes']} bytes  {entry['sha256'][:16]}…"
        )
    if args.verify_data is not None:
        parity = verify_vlm(args.checkpoint, args.out, args.verify_data, args.num)
        print(json.dumps(parity, indent=2))
    print(f"wrote {args.out / 'vlm.manifest.json'}")
    return 0
