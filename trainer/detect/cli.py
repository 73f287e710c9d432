"""``sitehawk-train dataset detect``, ``detector`` and ``detector-eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.evaluate import seeds_arg


def register_dataset(dataset_subparsers: Any) -> None:
    """``sitehawk-train dataset detect``."""
    p = dataset_subparsers.add_parser(
        "detect",
        help="render PTZ views with COCO annotations for the detector",
        description="Render N views (1280×720) of virtual sites with COCO annotations of the "
        "six detector classes; resumable (rerun to continue or extend).",
    )
    p.add_argument("--num", type=int, required=True, help="number of views")
    p.add_argument("--out", type=Path, required=True, help="dataset folder")
    p.add_argument(
        "--split",
        choices=("train", "val", "test"),
        default="train",
        help="site seeds: train 0-799, val 800-999, test 1000-1199 (default: %(default)s)",
    )
    p.add_argument("--seeds", type=seeds_arg, help="override the split's site seeds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_dataset)


def register(subparsers: Any) -> None:
    """``sitehawk-train detector`` and ``detector-eval``."""
    p = subparsers.add_parser(
        "detector",
        help="train the hazard detector from a recipe",
        description="Train the detector (datasets named by the recipe are rendered first when "
        "missing). Writes last.pt, best.pt, metrics.jsonl and curves.png into --out.",
    )
    p.add_argument("--recipe", default="default", help="recipe name (default, tiny) or a YAML file")
    p.add_argument("--out", type=Path, default=Path("runs/detector"), help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    e = subparsers.add_parser(
        "detector-eval",
        help="COCO mAP of a detector (checkpoint or ONNX) on rendered views",
        description="Render views of the given sites with the documented view sampler, run the "
        "model (a .pt checkpoint in torch, or an exported model through the edge backend) and "
        "score it with pycocotools: mAP@0.5, mAP@0.5:0.95, per class and per size bucket.",
    )
    e.add_argument("--model", type=Path, required=True, help=".pt checkpoint or .onnx model")
    e.add_argument(
        "--seeds",
        type=seeds_arg,
        default=seeds_arg("1000-1199"),
        help="site seeds (default: 1000-1199)",
    )
    e.add_argument("--num", type=int, default=1000, help="views to render (default: 1000)")
    e.add_argument("--json", type=Path, required=True, help="write the metrics here")
    e.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
    e.add_argument(
        "--weights",
        choices=("ema", "model"),
        default="ema",
        help="for a .pt checkpoint: its EMA weights (default) or raw model weights",
    )
    e.add_argument(
        "--attributes",
        choices=("as-generated", "randomized"),
        default="as-generated",
        help="workers' helmets and vests as the sites were generated (default), or taken off at "
        "random as in the training data (more bare heads: steadier head_bare figures)",
    )
    e.add_argument(
        "--allow-train-seeds", action="store_true", help="allow seeds < 1000 (debugging only)"
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(handler=_cmd_eval)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from trainer.detect.dataset import build_dataset

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    meta = build_dataset(args.out, args.num, args.split, args.seeds, progress=not args.no_progress)
    print(
        f"{args.out}: {meta['num_images']} views, {meta['num_annotations']} boxes "
        f"({meta['num_ignore']} ignore regions); per class: {meta['per_class']}"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trainer.detect.train import Recipe, train

    recipe = Recipe.load(args.recipe)
    best = train(recipe, args.out, resume=args.resume, progress=not args.no_progress)
    print(f"best checkpoint: {best}; curves: {args.out / 'curves.png'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from trainer.detect.evaluate import evaluate_model, format_table, save_json

    if min(args.seeds) < 1000 and not args.allow_train_seeds:
        raise ValueError(
            "detector-eval scores held-out sites (seeds >= 1000); pass --allow-train-seeds to "
            "score training sites"
        )
    result = evaluate_model(
        args.model,
        args.seeds,
        args.num,
        threads=args.threads,
        progress=not args.no_progress,
        weights=args.weights,
        randomize=args.attributes == "randomized",
    )
    save_json(result, args.json)
    print(format_table(result))
    print(f"wrote {args.json}")
    return 0
