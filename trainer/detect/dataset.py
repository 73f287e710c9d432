"""The detector dataset: rendered PTZ views of virtual sites with COCO annotations.

``sitehawk-train dataset detect --num N --out DIR --split train|val|test`` renders N views
(:mod:`trainer.detect.views`) at 1280×720 and writes::

    DIR/images/000000.jpg …         the frames (JPEG, quality 95)
    DIR/labels/000000.json …        one label file per frame (written after its image: resumable)
    DIR/annotations.json            COCO: images, annotations, categories (merged at the end)
    DIR/dataset.json                split, seeds, sampler, counts, versions

Sites are split by seed: ``train`` 0–799, ``val`` 800–999, ``test`` ≥ 1000 (held out). View
``i`` comes from site ``seeds[(i // per_site) % len(seeds)]`` and is a pure function of the seed
and ``i``: rerunning the command skips what exists and resumes, a larger N extends the set.

Training and validation sites get *attribute randomisation*: each worker goes without a helmet
with probability :data:`BARE_HEAD_SHARE` and without a vest with :data:`NO_VEST_SHARE` for the
whole site (on generated sites bare heads are rare — a few short events per hour — and a
detector must see many to learn them). Test sites are used exactly as generated.

Annotations: every ground-truth box of the six classes, clipped to the frame. A box is marked
*ignore* (``iscrowd: 1`` — COCO evaluators neither reward nor punish detections there) instead of
dropped when it is smaller than :data:`MIN_HEIGHT_PX` (frame pixels), hidden behind a structure
or machine, or less than half inside the frame; ``ignore_reason`` says which.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.perception.detection import CLASSES
from edge.sim.generate import generate_site
from edge.sim.render import FrameTruth, Renderer
from edge.sim.spec import SiteSpec
from edge.sim.world import Site
from trainer.detect.views import SAMPLER, View, sample_view

#: Boxes shorter than this (frame pixels of the 1280×720 frame) are annotated as ignore regions.
MIN_HEIGHT_PX = 8.0
#: A box less than this share inside the frame is annotated as an ignore region.
MIN_VISIBLE = 0.5
BARE_HEAD_SHARE = 0.3
NO_VEST_SHARE = 0.2
SPLIT_SEEDS = {"train": (0, 799), "val": (800, 999), "test": (1000, 1199)}
VIEWS_PER_SITE = 20
SITE_DURATION_S = 600.0
CATEGORIES = [
    {"id": i + 1, "name": name, "supercategory": "site"} for i, name in enumerate(CLASSES)
]


def split_seeds(split: str) -> list[int]:
    """The site seeds of a split."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLIT_SEEDS)}")
    lo, hi = SPLIT_SEEDS[split]
    return list(range(lo, hi + 1))


#: How much further right and down OpenCV's drawing of a shape reaches than its projection, in
#: COCO pixel coordinates (see :func:`annotate`).
DRAWN_GROWTH_PX = 1.0


def annotate(truth: FrameTruth) -> list[dict[str, Any]]:
    """COCO-style annotations (without ids) of one frame's ground truth.

    The renderer draws with OpenCV, which puts integer coordinates at pixel *centres* and fills
    a shape's edge pixels too: a shape projected to ``[x0, x1]`` covers, on average, COCO's
    ``[x0, x1 + 1]`` (pixel k covering ``[k, k + 1)``) — half a pixel to the right and one
    pixel wider. The boxes grow by that pixel (:data:`DRAWN_GROWTH_PX`) so they sit on the
    drawn pixels: a worker 16 px tall is 6 px wide, and under horizontal flips a half-pixel
    shift is one no model can learn.
    """
    out: list[dict[str, Any]] = []
    w, h = truth.width, truth.height
    for k in range(len(truth.boxes)):
        x0, y0, x1, y1 = (float(v) for v in truth.boxes[k])
        x1, y1 = x1 + DRAWN_GROWTH_PX, y1 + DRAWN_GROWTH_PX
        cx0, cy0 = min(max(x0, 0.0), w), min(max(y0, 0.0), h)
        cx1, cy1 = min(max(x1, 0.0), w), min(max(y1, 0.0), h)
        bw, bh = cx1 - cx0, cy1 - cy0
        if bw <= 0.0 or bh <= 0.0:
            continue
        reason = None
        if bool(truth.occluded[k]):
            reason = "occluded"
        elif float(truth.visible[k]) < MIN_VISIBLE:
            reason = "cut_by_frame"
        elif bh < MIN_HEIGHT_PX:
            reason = "too_small"
        out.append(
            {
                "category_id": int(truth.classes[k]) + 1,
                "bbox": [round(cx0, 2), round(cy0, 2), round(bw, 2), round(bh, 2)],
                "area": round(bw * bh, 2),
                "iscrowd": int(reason is not None),
                "ignore_reason": reason,
            }
        )
    return out


@dataclass
class RenderedView:
    """One rendered view with its annotations."""

    index: int
    seed: int
    view: View
    image: np.ndarray
    annotations: list[dict[str, Any]]


def randomize_attributes(spec: SiteSpec, seed: int) -> SiteSpec:
    """``spec`` with each worker's helmet / vest taken off at random (deterministic per seed)."""
    rng = np.random.default_rng([seed, 0xA77])
    workers = [
        w.model_copy(
            update={
                "helmet": bool(w.helmet and rng.random() >= BARE_HEAD_SHARE),
                "vest": bool(w.vest and rng.random() >= NO_VEST_SHARE),
            }
        )
        for w in spec.workers
    ]
    return spec.model_copy(update={"workers": workers})


def render_views(
    seeds: list[int],
    indices: range | list[int],
    per_site: int = VIEWS_PER_SITE,
    *,
    randomize: bool = False,
) -> Iterator[RenderedView]:
    """Render views ``indices`` (site ``seeds[(i // per_site) % len(seeds)]``), in order.

    ``randomize``: attribute randomisation (the training and validation sets; detector-eval
    ``--attributes randomized``).
    """
    width, height = SAMPLER.frame
    current: tuple[int, Site, Renderer] | None = None
    for i in indices:
        seed = seeds[(i // per_site) % len(seeds)]
        if current is None or current[0] != seed:
            spec = generate_site(seed, duration_s=SITE_DURATION_S)
            site = Site(randomize_attributes(spec, seed) if randomize else spec)
            current = (seed, site, Renderer(site))
        _, site, renderer = current
        view = sample_view(site, seed, i)
        frame, truth = renderer.render(view.pose, view.t, width, height, index=i)
        assert truth is not None
        yield RenderedView(i, seed, view, frame.image, annotate(truth))


def _label(rv: RenderedView, file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "width": int(rv.image.shape[1]),
        "height": int(rv.image.shape[0]),
        "seed": rv.seed,
        "index": rv.index,
        "view": {
            "t": round(rv.view.t, 3),
            "pan_deg": round(rv.view.pose.pan_deg, 4),
            "tilt_deg": round(rv.view.pose.tilt_deg, 4),
            "zoom": round(rv.view.pose.zoom, 4),
            "kind": rv.view.kind,
        },
        "annotations": rv.annotations,
    }


def build_dataset(
    out: Path,
    num: int,
    split: str = "train",
    seeds: list[int] | None = None,
    *,
    progress: bool = True,
    jpeg_quality: int = 95,
) -> dict[str, Any]:
    """Render (or resume) a dataset of ``num`` views into ``out``; returns ``dataset.json``."""
    from tqdm import tqdm

    seeds = seeds if seeds is not None else split_seeds(split)
    if split == "test" and min(seeds) < 1000:
        raise ValueError("the test split holds held-out sites only: seeds must be >= 1000")
    if split != "test" and max(seeds) >= 1000:
        raise ValueError(f"seeds >= 1000 are held out for testing; not for the {split} split")
    meta_path = out / "dataset.json"
    meta = {
        "schema": "sitehawk.detect-dataset/1",
        "split": split,
        "seeds": [min(seeds), max(seeds)]
        if seeds == list(range(seeds[0], seeds[-1] + 1))
        else seeds,
        "views_per_site": VIEWS_PER_SITE,
        "sampler": SAMPLER.describe(),
        "min_height_px": MIN_HEIGHT_PX,
        "min_visible": MIN_VISIBLE,
        "attribute_randomisation": (
            None if split == "test" else {"bare_head": BARE_HEAD_SHARE, "no_vest": NO_VEST_SHARE}
        ),
        "classes": list(CLASSES),
    }
    meta = json.loads(json.dumps(meta))  # tuples → lists, as the file holds them
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        for key in ("split", "seeds", "views_per_site", "sampler"):
            if old.get(key) != meta[key]:
                raise ValueError(
                    f"{meta_path}: {key} is {old.get(key)!r}, this run asks for {meta[key]!r}; "
                    "use another --out to build a different dataset"
                )
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(num) if not (out / "labels" / f"{i:06d}.json").is_file()]
    bar = tqdm(total=num, initial=num - len(todo), desc=f"render {split}", disable=not progress)
    for rv in render_views(seeds, todo, randomize=split != "test"):
        name = f"{rv.index:06d}.jpg"
        if not cv2.imwrite(
            str(out / "images" / name), rv.image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        ):
            raise OSError(f"{out / 'images' / name}: cannot write")
        label_tmp = out / "labels" / f"{rv.index:06d}.json.tmp"
        label_tmp.write_text(json.dumps(_label(rv, f"images/{name}")))
        label_tmp.replace(out / "labels" / f"{rv.index:06d}.json")  # the label marks it done
        bar.update(1)
    bar.close()
    coco = merge_labels(out, num)
    (out / "annotations.json").write_text(json.dumps(coco))
    anns = coco["annotations"]
    meta["num_images"] = num
    meta["num_annotations"] = len(anns)
    meta["num_ignore"] = sum(a["iscrowd"] for a in anns)
    meta["per_class"] = {
        c["name"]: sum(1 for a in anns if a["category_id"] == c["id"] and not a["iscrowd"])
        for c in CATEGORIES
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def coco_from_labels(labels: list[dict[str, Any]]) -> dict[str, Any]:
    """One COCO dict from per-image labels (image ids 1, 2, … in order)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, label in enumerate(labels):
        images.append(
            {
                "id": i + 1,
                "file_name": label["file_name"],
                "width": label["width"],
                "height": label["height"],
                "seed": label["seed"],
                "view": label["view"],
            }
        )
        for ann in label["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def merge_labels(out: Path, num: int) -> dict[str, Any]:
    """One COCO dict from the label files of images ``0 … num-1``."""
    return coco_from_labels(
        [json.loads((out / "labels" / f"{i:06d}.json").read_text()) for i in range(num)]
    )


def merge_views(views: list[RenderedView]) -> dict[str, Any]:
    """One COCO dict for views rendered in memory (image id = position + 1)."""
    return coco_from_labels([_label(rv, f"view-{rv.seed}-{rv.index}") for rv in views])


def load_coco(root: Path) -> dict[str, Any]:
    """A dataset's ``annotations.json`` (errors name the file)."""
    path = root / "annotations.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{path}: not found — build the dataset with `sitehawk-train dataset detect`"
        ) from None
