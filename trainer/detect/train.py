"""Training the detector: ``sitehawk-train detector --recipe NAME_OR_YAML --out DIR [--resume]``.

A recipe (``trainer/detect/recipes/*.yaml``) names the datasets (built first when missing), the
architecture, the optimiser and the schedule. Training runs on letterboxed 320×192 canvases (a
1280×720 frame shrinks to 320×180; the network is fully convolutional, so the 320×320 export
sees the same pixels with more padding) with horizontal flips and colour jitter, AdamW with a
warm-up and cosine decay, and an exponential moving average of the weights (what is evaluated
and exported). Every ``eval_every`` steps the EMA model is scored on the validation set with
pycocotools; ``DIR`` holds ``last.pt`` (everything needed to resume), ``best.pt`` (best val
mAP@0.5), ``metrics.jsonl`` and ``curves.png``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml

from edge.perception.detection import CLASSES
from edge.perception.preprocess import Letterbox, letterbox
from trainer.detect.dataset import build_dataset, load_coco
from trainer.detect.evaluate import coco_metrics, coco_results
from trainer.detect.loss import DEFAULT_LEVEL_SCALE, DetectionLoss, Targets
from trainer.detect.model import DetectorConfig, SiteDetector, count_flops, count_params

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class Recipe:
    """Everything a training run depends on."""

    name: str = "default"
    train_data: str = "data/detect/train"
    train_num: int = 6000
    val_data: str = "data/detect/val"
    val_num: int = 300
    steps: int = 3000
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 150
    ema_decay: float = 0.998
    eval_every: int = 500
    seed: int = 0
    threads: int = 2
    train_size: list[int] = field(default_factory=lambda: [192, 320])  # (height, width)
    hflip: float = 0.5
    color_jitter: float = 0.15
    model: dict[str, Any] = field(default_factory=dict)  # DetectorConfig overrides
    # per-class factor on the box size that picks its pyramid level (trainer/detect/loss.py)
    level_scale: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LEVEL_SCALE))

    @classmethod
    def load(cls, name_or_path: str) -> Recipe:
        """A recipe by name (``trainer/detect/recipes/<name>.yaml``) or YAML path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = RECIPES_DIR / f"{name_or_path}.yaml"
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
            raise ValueError(f"{path}: no such recipe (built-in recipes: {known})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a recipe is a mapping of settings")
        known_fields = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known_fields)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known_fields)}")
        return cls(**raw)

    def model_config(self) -> DetectorConfig:
        try:
            return DetectorConfig.from_dict(self.model)
        except TypeError as exc:
            raise ValueError(f"recipe {self.name}: model: {exc}") from None


# ------------------------------------------------------------------------------------ data
class CanvasSet:
    """Letterboxed canvases (RGB uint8) and their targets, held in memory."""

    def __init__(self, root: Path, height: int, width: int, progress: bool):
        from tqdm import tqdm

        coco = load_coco(root)
        self.coco = coco
        by_image: dict[int, list[dict[str, Any]]] = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        n = len(coco["images"])
        self.canvases = np.empty((n, height, width, 3), dtype=np.uint8)
        self.targets: list[Targets] = []
        self.letterboxes: list[Letterbox] = []
        self.image_ids: list[int] = []
        for k, img in enumerate(tqdm(coco["images"], desc=f"load {root}", disable=not progress)):
            image = cv2.imread(str(root / img["file_name"]), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{root / img['file_name']}: cannot read the image")
            canvas, info = letterbox(image, width, height)
            self.canvases[k] = canvas[..., ::-1]
            anns = by_image.get(img["id"], [])
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
            self.targets.append(
                Targets(
                    torch.from_numpy(info.to_input(xyxy)),
                    torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long),
                    torch.tensor([bool(a["iscrowd"]) for a in anns], dtype=torch.bool),
                )
            )
            self.letterboxes.append(info)
            self.image_ids.append(img["id"])

    def __len__(self) -> int:
        return len(self.targets)


def augment(
    canvases: np.ndarray, targets: list[Targets], recipe: Recipe, rng: np.random.Generator
) -> tuple[torch.Tensor, list[Targets]]:
    """A batch tensor (B, 3, H, W) in 0…1 with flips and colour jitter, and its targets."""
    x = torch.from_numpy(canvases).permute(0, 3, 1, 2).float().div_(255.0)
    width = x.shape[3]
    out_t = []
    for i, t in enumerate(targets):
        boxes = t.boxes
        if rng.random() < recipe.hflip:
            x[i] = x[i].flip(-1)
            boxes = boxes.clone()
            boxes[:, [0, 2]] = width - t.boxes[:, [2, 0]]
        out_t.append(Targets(boxes, t.classes, t.ignore))
        j = recipe.color_jitter
        if j > 0:
            gain = torch.from_numpy(rng.uniform(1 - j, 1 + j, (3, 1, 1)).astype(np.float32))
            x[i] = (x[i] * gain + float(rng.uniform(-j, j)) * 0.3).clamp_(0.0, 1.0)
    return x, out_t


# ------------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def validate(model: torch.nn.Module, val: CanvasSet, batch: int = 16) -> dict[str, Any]:
    """COCO metrics of ``model`` on the validation canvases."""
    model.eval()
    classes: list[str | None] = list(CLASSES)
    dets: list[dict[str, Any]] = []
    for s in range(0, len(val), batch):
        x = torch.from_numpy(val.canvases[s : s + batch]).permute(0, 3, 1, 2).float() / 255.0
        out = model(x).numpy()
        for k in range(out.shape[0]):
            i = s + k
            dets += coco_results(val.image_ids[i], out[k : k + 1], val.letterboxes[i], classes)
    return coco_metrics(val.coco, dets)


# --------------------------------------------------------------------------------- training
class WeightEMA:
    """Exponential moving average of a model's weights and BatchNorm statistics.

    The decay ramps up from 0 (``decay · (1 − exp(−updates / ramp))``, as YOLOv5 does), so the
    average follows the model closely early on instead of dragging its random initial weights
    along for thousands of steps. Written here rather than with ``torch.optim.swa_utils``: the
    ramp and the integer BatchNorm counters need handling it does not do.
    """

    def __init__(self, model: torch.nn.Module, decay: float, ramp: float = 300.0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.ramp))
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach(), alpha=1.0 - d)
            else:
                value.copy_(current[name])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _lr_lambda(recipe: Recipe):  # noqa: ANN202 - a closure for LambdaLR
    def f(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def train(recipe: Recipe, out: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """Train per ``recipe`` into ``out``; returns the path of the best checkpoint."""
    from tqdm import tqdm

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    out.mkdir(parents=True, exist_ok=True)
    last, best = out / "last.pt", out / "best.pt"
    if last.exists() and not resume:
        raise ValueError(f"{last} exists: pass --resume to continue it, or choose another --out")
    for data, num, split in (
        (recipe.train_data, recipe.train_num, "train"),
        (recipe.val_data, recipe.val_num, "val"),
    ):
        build_dataset(Path(data), num, split, progress=progress)
    h, w = recipe.train_size
    train_set = CanvasSet(Path(recipe.train_data), h, w, progress)
    val_set = CanvasSet(Path(recipe.val_data), 320, 320, progress)

    cfg = recipe.model_config()
    # channels-last convolutions are ~30 % faster in oneDNN on this kind of CPU
    model = SiteDetector(cfg).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = WeightEMA(model, recipe.ema_decay)
    opt = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe))
    loss_fn = DetectionLoss(model, level_scale=recipe.level_scale)
    step, best_map = 0, -1.0
    rng = np.random.default_rng(recipe.seed)
    if resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        if ckpt.get("recipe") != asdict(recipe):
            raise ValueError(f"{last}: was trained with another recipe; resume needs the same one")
        model.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        ema.updates = int(ckpt["ema_n"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, best_map = int(ckpt["step"]), float(ckpt["best_map50"])
        rng.bit_generator.state = ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
    info = {
        "params": count_params(model),
        "flops": count_flops(model, *cfg.input_size),
        "input_size": list(cfg.input_size),
    }
    (out / "model.json").write_text(json.dumps({**info, "config": cfg.to_dict()}, indent=2))
    metrics_path = out / "metrics.jsonl"

    def save(path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "ema": ema.module.state_dict(),
                "ema_n": ema.updates,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "best_map50": best_map,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "recipe": asdict(recipe),
                "model_config": cfg.to_dict(),
                "info": info,
            },
            tmp,
        )
        tmp.replace(path)

    order = rng.permutation(len(train_set))
    cursor = 0
    bar = tqdm(total=recipe.steps, initial=step, desc="train", disable=not progress)
    running: dict[str, float] = {}
    t0 = time.perf_counter()
    while step < recipe.steps:
        model.train()
        if cursor + recipe.batch > len(order):
            order, cursor = rng.permutation(len(train_set)), 0
        idx = np.sort(order[cursor : cursor + recipe.batch])
        cursor += recipe.batch
        x, targets = augment(
            train_set.canvases[idx], [train_set.targets[i] for i in idx], recipe, rng
        )
        loss, parts = loss_fn(x.contiguous(memory_format=torch.channels_last), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        ema.update(model)
        step += 1
        for k, v in parts.items():
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        bar.update(1)
        bar.set_postfix(loss=f"{running['loss']:.3f}", box=f"{running['box']:.3f}")
        if step % 20 == 0:
            with metrics_path.open("a") as fh:
                row = {"step": step, **parts, "lr": sched.get_last_lr()[0]}
                row["elapsed_s"] = round(time.perf_counter() - t0, 1)
                fh.write(json.dumps(row) + "\n")
        if step % recipe.eval_every == 0 or step == recipe.steps:
            m = validate(ema.module, val_set)
            row = {"step": step, "val_map50": m["map50"], "val_map50_95": m["map50_95"]}
            row.update({f"val_ap50_{k}": v["ap50"] for k, v in m["per_class"].items()})
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            bar.write(f"step {step}: val mAP50 {m['map50']:.3f}, mAP50:95 {m['map50_95']:.3f}")
            if m["map50"] > best_map:
                best_map = m["map50"]
                save(best)
            save(last)
            plot_curves(metrics_path, out / "curves.png")
    bar.close()
    if not best.exists():
        save(best)
    return best


def plot_curves(metrics_path: Path, png: Path) -> None:
    """Training loss and validation mAP over steps (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train_rows = [r for r in rows if "loss" in r]
    val_rows = [r for r in rows if "val_map50" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if train_rows:
        steps = [r["step"] for r in train_rows]
        for key in ("loss", "cls", "box"):
            a.plot(steps, [r[key] for r in train_rows], label=key)
        a.set_yscale("log")
        a.legend()
    a.set_xlabel("step")
    a.set_title("training loss")
    if val_rows:
        steps = [r["step"] for r in val_rows]
        b.plot(steps, [r["val_map50"] for r in val_rows], "o-", label="mAP@0.5")
        b.plot(steps, [r["val_map50_95"] for r in val_rows], "o-", label="mAP@0.5:0.95")
        for name in ("person", "head_helmet", "head_bare"):
            key = f"val_ap50_{name}"
            vals = [r.get(key) for r in val_rows]
            b.plot(steps, [v if v is not None else float("nan") for v in vals], "--", label=name)
        b.legend(fontsize=8)
    b.set_ylim(0, 1)
    b.set_xlabel("step")
    b.set_title("validation (EMA weights)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
