"""Detector latency and accuracy: torch eager vs ONNX Runtime fp32 vs ONNX Runtime int8.

Side by side on this machine, with the same thread count for every runtime (torch in
``inference_mode``), batch 1 at 320×320, the warm-up excluded:

* latency of the model call (median, p90 over ``--runs`` calls on rendered frames), and of the
  whole edge pipeline for ORT fp32 (letterbox + model + decode/NMS);
* mAP@0.5 and mAP@0.5:0.95 of each on the same held-out views (``detector-eval``'s sampler);
* the latency floor: the model's FLOPs ÷ this CPU's measured fp32 matmul rate (1024² torch
  matmuls on the same threads), and each runtime's distance to it.

    python benchmarks/detector.py                         # models/detector.onnx (+ .int8.onnx)
    python benchmarks/detector.py --checkpoint runs/detector/best.pt --eval-num 300

The int8 model is ``models/detector.int8.onnx`` when present, else it is quantised into a
temporary folder (static QDQ, as ``sitehawk-export detector --int8`` does). Prints a table and
writes JSON (default ``benchmarks/results/detector.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "detector.json"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 30) -> float:
    """Median fp32 matmul rate (GFLOP/s) of torch on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def time_calls(fn: Any, inputs: list[Any], runs: int, warmup: int = 10) -> list[float]:
    """Wall time (ms) of ``fn(x)`` over ``runs`` calls cycling through ``inputs``."""
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    out = []
    for i in range(runs):
        x = inputs[i % len(inputs)]
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "detector.onnx")
    parser.add_argument("--int8", type=Path, help="int8 model (default: <model stem>.int8.onnx)")
    parser.add_argument(
        "--checkpoint", type=Path, help="torch checkpoint (default: the manifest's source)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed calls per runtime")
    parser.add_argument("--eval-num", type=int, default=400, help="views scored per runtime")
    parser.add_argument("--seeds", default="1000-1199", help="held-out sites for the mAP")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch

    from edge.perception.detector import ModelDetector
    from export.detector import quantize_int8
    from trainer.detect.dataset import merge_views, render_views
    from trainer.detect.evaluate import coco_metrics, detect_for_coco
    from trainer.detect.infer import TorchDetector, load_checkpoint_model
    from trainer.evaluate import parse_seeds

    torch.set_num_threads(args.threads)
    fp32 = ModelDetector(args.model, threads=args.threads)
    # the manifest's source reads "<checkpoint> (<ema|model> weights, step N)"
    source = fp32.manifest.source or ""
    ckpt = args.checkpoint or Path(source.split(" (")[0])
    if not ckpt.is_file():
        parser.error(f"--checkpoint {ckpt}: no such file (the torch model is needed)")
    model, _ = load_checkpoint_model(ckpt, ema="(model weights" not in source)
    torch_det = TorchDetector(model)
    tmp = tempfile.TemporaryDirectory(prefix="sitehawk-bench-")
    int8_path = args.int8 or args.model.with_name(f"{args.model.stem}.int8.onnx")
    if not int8_path.is_file():
        int8_path = Path(tmp.name) / "detector.int8.onnx"
        print(f"quantising {args.model} → {int8_path} (static QDQ) …")
        quantize_int8(args.model, int8_path, model)
        from export.detector import build_manifest
        from firmware_config.manifest import write_manifest_file

        write_manifest_file(int8_path, build_manifest(model, int8_path, str(ckpt)))
    int8 = ModelDetector(int8_path, threads=args.threads)

    seeds = parse_seeds(args.seeds)
    print(f"rendering {args.eval_num} held-out views …")
    views = list(render_views(seeds, range(args.eval_num)))
    gt = merge_views(views)
    inputs = [fp32.preprocess(v.image)[0] for v in views[:50]]
    torch_inputs = [torch.from_numpy(x) for x in inputs]

    @torch.inference_mode()
    def torch_call(x: torch.Tensor) -> Any:
        return model(x)

    flops = float(fp32.manifest.flops or 0.0)
    rate = matmul_gflops(args.threads)
    floor_ms = flops / (rate * 1e9) * 1000.0
    rows: dict[str, dict[str, Any]] = {}
    runtimes = [
        ("torch eager", lambda x: torch_call(x), torch_inputs, torch_det.raw),
        ("ORT fp32", fp32.engine.run, inputs, fp32.raw),
        ("ORT int8", int8.engine.run, inputs, int8.raw),
    ]
    for name, call, xs, raw in runtimes:
        print(f"{name}: timing {args.runs} calls …")
        ms = time_calls(call, xs, args.runs)
        print(f"{name}: scoring {len(views)} views …")
        dets = detect_for_coco(
            raw, ((v.index + 1, v.image) for v in views), list(model.cfg.classes)
        )
        m = coco_metrics(gt, dets)
        rows[name] = {
            "median_ms": statistics.median(ms),
            "p90_ms": _percentile(ms, 90),
            "map50": m["map50"],
            "map50_95": m["map50_95"],
            "x_floor": statistics.median(ms) / floor_ms if floor_ms else None,
        }
    pipeline = time_calls(fp32.detect_image, [v.image for v in views[:50]], args.runs)
    t_med = rows["torch eager"]["median_ms"]
    for r in rows.values():
        r["speedup_vs_torch"] = t_med / r["median_ms"]
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_avg": os.getloadavg(),
        },
        "threads": args.threads,
        "input": [1, 3, *fp32.manifest.input_hw],
        "params": fp32.manifest.params,
        "flops": flops,
        "matmul_gflops": rate,
        "floor_ms": floor_ms,
        "runtimes": rows,
        "ort_fp32_pipeline_ms": {
            "median": statistics.median(pipeline),
            "p90": _percentile(pipeline, 90),
        },
        "int8_map50_drop": rows["ORT fp32"]["map50"] - rows["ORT int8"]["map50"],
        "eval": {"views": len(views), "seeds": args.seeds},
        "models": {"fp32": str(args.model), "int8": str(int8_path), "checkpoint": str(ckpt)},
    }
    print()
    print(
        f"{'runtime':<13}{'median ms':>10}{'p90 ms':>9}{'× floor':>9}{'× torch':>9}"
        f"{'mAP50':>8}{'mAP50:95':>10}"
    )
    for name, r in rows.items():
        print(
            f"{name:<13}{r['median_ms']:>10.2f}{r['p90_ms']:>9.2f}{r['x_floor']:>9.2f}"
            f"{r['speedup_vs_torch']:>9.2f}{r['map50']:>8.3f}{r['map50_95']:>10.3f}"
        )
    print(
        f"floor: {flops / 1e9:.2f} GFLOPs ÷ {rate:.0f} GFLOP/s matmul = {floor_ms:.2f} ms; "
        f"ORT fp32 pipeline (letterbox + model + NMS): "
        f"{result['ort_fp32_pipeline_ms']['median']:.2f} ms median; "
        f"int8 mAP50 drop {result['int8_map50_drop']:+.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
