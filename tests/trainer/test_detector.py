"""Detector data, evaluation and training: annotations match pixels, COCO scoring, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.geometry import PTZPose, pan_tilt_of_point
from edge.sim.generate import generate_site
from edge.sim.render import Renderer
from edge.sim.world import Site
from trainer.detect.dataset import annotate, build_dataset, merge_views, render_views
from trainer.detect.evaluate import coco_metrics


def _without_worker(spec, worker_id: str):  # noqa: ANN001, ANN202 - SiteSpec in, SiteSpec out
    return spec.model_copy(
        update={
            "workers": [w for w in spec.workers if w.id != worker_id],
            "attribute_events": [e for e in spec.attribute_events if e.worker != worker_id],
        }
    )


def test_annotated_boxes_bound_the_rendered_pixels() -> None:
    """Render a worker close up, render again without them: the pixels that change lie in the
    annotated person box and fill it (the box is tight)."""
    spec = generate_site(3, duration_s=600)
    site = Site(spec)
    t = 50.0
    workers = site.workers_at(t)
    cam = spec.camera
    mount = (cam.position[0], cam.position[1], cam.height_m)
    checked = 0
    renderer = Renderer(site)
    for i in range(len(spec.workers)):
        h = float(site.heights[i])
        point = np.array([workers.xy[i, 0], workers.xy[i, 1], h / 2])
        pan, tilt, rng = pan_tilt_of_point(mount, cam.heading_deg, point)
        # zoom so the worker is ~250 px tall in 1280×720
        zoom = float(np.clip(60.0 / np.degrees(2 * np.arctan(640 / (250 * rng / h))), 1, 30))
        pose = PTZPose(float(pan), float(tilt), zoom)
        frame, truth = renderer.render(pose, t, 1280, 720, truth=True, noise=False)
        assert truth is not None
        anns = annotate(truth)
        persons = [
            a for a, o in zip(anns, truth.owner, strict=False) if a["category_id"] == 1 and o == i
        ]
        if not persons or persons[0]["iscrowd"]:
            continue  # hidden behind something: annotated as an ignore region instead
        spec2 = _without_worker(spec, spec.workers[i].id)
        empty, _ = Renderer(Site(spec2)).render(pose, t, 1280, 720, truth=False, noise=False)
        changed = np.abs(frame.image.astype(int) - empty.image.astype(int)).max(axis=2) > 12
        x, y, w, hh = persons[0]["bbox"]
        # other workers may be drawn differently without this one (indices shift); and the
        # worker's shadow on the ground is not part of the person
        for a in anns:
            if a["category_id"] == 1 and a is not persons[0]:
                ox, oy, ow, oh = (int(v) for v in a["bbox"])
                changed[max(oy - 3, 0) : oy + oh + 4, max(ox - 3, 0) : ox + ow + 4] = False
        changed[int(y + hh - 0.1 * hh / 1.75) :] = False
        ys, xs = np.nonzero(changed)
        inside = (xs >= x - 2) & (xs <= x + w + 2) & (ys >= y - 2) & (ys <= y + hh + 2)
        assert inside.mean() > 0.98, "changed pixels outside the annotated box"
        # the box is tight: the silhouette spans ≥ 90 % of its height and ≥ 70 % of its width
        assert (ys.max() - ys.min()) >= 0.9 * (hh - 0.1 * hh / 1.75)
        assert (xs.max() - xs.min()) >= 0.7 * w
        # the head box holds the head: the changed pixels in its top rows lie inside it
        heads = [
            a
            for a, o in zip(anns, truth.owner, strict=False)
            if a["category_id"] in (2, 3) and o == i
        ]
        hx, hy, hw, hh2 = heads[0]["bbox"]
        top = changed[int(hy) : int(hy + hh2 * 0.5)]
        tys, txs = np.nonzero(top)
        assert ((txs >= hx - 2) & (txs <= hx + hw + 2)).mean() > 0.98
        checked += 1
        if checked == 2:
            break
    assert checked >= 2


def test_small_hidden_and_cut_boxes_are_ignore_regions(tmp_path: Path) -> None:
    meta = build_dataset(tmp_path / "ds", 12, "val", progress=False)
    coco = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert meta["num_images"] == 12 and len(coco["images"]) == 12
    reasons = {a["ignore_reason"] for a in coco["annotations"] if a["iscrowd"]}
    assert "too_small" in reasons
    for a in coco["annotations"]:
        assert (a["ignore_reason"] is not None) == bool(a["iscrowd"])
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 1280.01 and y + h <= 720.01
        if a["ignore_reason"] is None:
            assert h >= 8.0
    assert all(800 <= img["seed"] <= 999 for img in coco["images"])


def test_dataset_build_resumes_and_refuses_held_out_seeds(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    build_dataset(root, 6, "train", progress=False)
    first = (root / "annotations.json").read_text()
    (root / "labels" / "000003.json").unlink()  # an interrupted run
    build_dataset(root, 6, "train", progress=False)
    assert (root / "annotations.json").read_text() == first
    with pytest.raises(ValueError, match="held out"):
        build_dataset(tmp_path / "x", 2, "train", seeds=[1000])
    with pytest.raises(ValueError, match="split is 'train'"):
        build_dataset(root, 6, "val", seeds=list(range(0, 800)), progress=False)


def test_perfect_detections_score_one_in_every_bucket() -> None:
    views = list(render_views(list(range(1000, 1010)), range(30)))
    gt = merge_views(views)
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    m = coco_metrics(gt, dets)
    assert m["map50"] == pytest.approx(1.0)
    for name, row in m["per_class"].items():
        for bucket, ap in row["ap50_by_size"].items():
            has_gt = row["num_gt_by_size"][bucket] > 0
            assert (ap is not None) == has_gt, (name, bucket)
            if has_gt:
                assert ap == pytest.approx(1.0), (name, bucket)
    # dropping every head_bare detection of 16-32 px zeroes that bucket only
    heights = {id(d): d["bbox"][3] for d in dets}
    kept = [d for d in dets if not (d["category_id"] == 3 and 16 <= heights[id(d)] < 32)]
    m2 = coco_metrics(gt, kept)
    bare = m2["per_class"]["head_bare"]
    if bare["num_gt_by_size"]["16-32"]:
        assert bare["ap50_by_size"]["16-32"] == pytest.approx(0.0)
    assert m2["per_class"]["person"]["ap50"] == pytest.approx(1.0)


def test_boxes_found_but_placed_loosely_score_at_iou_01_not_05() -> None:
    """``ap10_by_size`` separates finding an object from placing its box: every detection
    shifted right by 60 % of its width (IoU 0.25 with its object)."""
    views = list(render_views(list(range(1000, 1004)), range(12)))
    gt = merge_views(views)
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": [a["bbox"][0] + 0.6 * a["bbox"][2], *a["bbox"][1:]],
            "score": 1,
        }
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    m = coco_metrics(gt, dets)
    for name, row in m["per_class"].items():
        for bucket, n in row["num_gt_by_size"].items():
            if n:
                # (not exactly 1: in a crowd a shifted box can land on the neighbour instead)
                assert row["ap10_by_size"][bucket] >= 0.9, (name, bucket)
                assert row["ap50_by_size"][bucket] == pytest.approx(0.0), (name, bucket)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from trainer.detect.train import Recipe, train

    root = tmp_path_factory.mktemp("det")
    recipe = replace(
        Recipe.load("tiny"), train_data=str(root / "train"), val_data=str(root / "val")
    )
    train(recipe, root / "run", progress=False)
    return root, recipe


def test_tiny_training_writes_checkpoints_curves_and_resumes(tiny_run) -> None:  # noqa: ANN001
    import torch

    from trainer.detect.train import train

    root, recipe = tiny_run
    run = root / "run"
    for name in ("last.pt", "best.pt", "metrics.jsonl", "curves.png", "model.json"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["step"] == recipe.steps
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_map50" in r for r in rows)
    with pytest.raises(ValueError, match="--resume"):
        train(recipe, run, progress=False)
    longer = replace(recipe, steps=recipe.steps + 2)
    with pytest.raises(ValueError, match="another recipe"):
        train(longer, run, resume=True, progress=False)
    model_info = json.loads((run / "model.json").read_text())
    assert model_info["params"] > 0 and model_info["flops"] > 0


def test_the_shipped_model_size_limits_hold() -> None:
    from trainer.detect.model import SiteDetector, count_params
    from trainer.detect.train import Recipe

    cfg = Recipe.load("default").model_config()
    assert count_params(SiteDetector(cfg)) <= 2_000_000
    assert cfg.input_size == (320, 320)


def _worker_targets(person: list[float], head: list[float], vest: list[float]):  # noqa: ANN202
    """One worker's person, head (helmet) and vest boxes as detector targets, none ignored."""
    import torch

    from trainer.detect.loss import Targets

    return Targets(
        boxes=torch.tensor([person, head, vest]),
        classes=torch.tensor([0, 1, 3]),
        ignore=torch.zeros(3, dtype=torch.bool),
    )


def test_a_small_worker_keeps_positives_beside_its_own_head_and_vest() -> None:
    """A location predicts one box: the worker must not lose every location to its head/vest."""
    from trainer.detect.loss import DetectionLoss, assign
    from trainer.detect.model import DetectorConfig, SiteDetector

    model = SiteDetector(DetectorConfig())
    loss = DetectionLoss(model)
    centres, strides, levels = loss.grid(192, 320)
    # a worker 10 input px tall (40 px of the 1280×720 frame) at (101, 61), with head and vest
    t = _worker_targets(
        [99.5, 56.0, 102.5, 66.0], [100.4, 56.0, 101.6, 57.5], [99.6, 58.0, 102.4, 61.5]
    )
    for scale, worker_has_positives in ((None, False), (loss.class_scale, True)):
        gt, _ = assign(centres, strides, levels, t, scale)
        assert bool((gt == 0).any()) is worker_has_positives
        assert bool((gt == 1).any()) and bool((gt == 2).any())  # head and vest keep theirs
    gt, _ = assign(centres, strides, levels, t, loss.class_scale)
    assert set(levels[gt == 0].tolist()) == {1}  # the worker went one level up (stride 8)
    with pytest.raises(ValueError, match="unknown classes"):
        DetectionLoss(model, level_scale={"worker": 2.0})


def test_a_worker_with_its_own_box_group_keeps_its_stride_4_locations() -> None:
    """With ``own_box_classes``, a small worker and its head and vest each get positives on the
    finest level; the exported rows of each group score only that group's classes; and the loss
    trains both groups' boxes."""
    import torch

    from trainer.detect.loss import DetectionLoss
    from trainer.detect.model import DetectorConfig, SiteDetector

    with pytest.raises(ValueError, match="unknown classes"):
        DetectorConfig(own_box_classes=("worker",))
    cfg = DetectorConfig(widths=(8, 16, 16, 32, 32), neck=(16, 16, 16), own_box_classes=("person",))
    assert cfg.box_groups == [[1, 2, 3, 4, 5], [0]]
    model = SiteDetector(cfg)
    out = model.eval()(torch.rand(1, 3, 64, 96))
    per_level = [(64 // s) * (96 // s) for s in cfg.strides]
    assert out.shape == (1, 4 + 6, 2 * sum(per_level))
    rows = out[0, 4:].T  # (2 n, C); per level: the shared group's rows, then the person rows
    start = 0
    for k in per_level:
        shared, person = rows[start : start + k], rows[start + k : start + 2 * k]
        assert torch.all(shared[:, 0] == 0) and torch.all(shared[:, 1:] > 0)
        assert torch.all(person[:, 1:] == 0) and torch.all(person[:, 0] > 0)
        start += 2 * k

    loss = DetectionLoss(model.train(), level_scale={"person": 2.0})
    t = _worker_targets(
        [49.5, 26.0, 52.5, 32.0], [50.4, 26.0, 51.6, 27.5], [49.6, 27.5, 52.4, 29.5]
    )
    total, parts = loss(torch.rand(1, 3, 64, 96), [t])
    assert parts["pos"] >= 3  # the worker's own positives plus its head's and vest's
    total.backward()
    box_grad = model.heads[0].box.weight.grad
    assert box_grad is not None
    assert box_grad[:4].abs().sum() > 0 and box_grad[4:].abs().sum() > 0  # both groups learn


def test_a_dfl_box_decodes_its_edge_distributions_and_learns_from_them() -> None:
    """``box_bins``: each edge's distance is the expectation of a distribution over bins one
    stride apart from -1 stride; a box with all its mass on one bin per edge decodes to those
    distances, and the distribution focal loss is least at the target's two bins."""
    import torch

    from trainer.detect.loss import DetectionLoss, dfl, edge_targets
    from trainer.detect.model import DetectorConfig, SiteDetector

    with pytest.raises(ValueError, match="box_bins"):
        DetectorConfig(box_bins=1)
    cfg = DetectorConfig(widths=(8, 16, 16, 32, 32), neck=(16, 16, 16), box_bins=6)
    model = SiteDetector(cfg)
    raw = torch.full((1, 4 * 6, 2, 3), -30.0)
    for edge, k in enumerate((1, 2, 3, 0)):  # left 0, top 1, right 2, bottom -1 strides
        raw[0, edge * 6 + k] = 30.0
    cx, cy, w, h = model.decode_level(raw, 8)[0, :, 4]  # location (row 1, col 1): centre (12, 12)
    # x0 = 12, x1 = 12 + 16 = 28; y0 = 12 - 8 = 4, y1 = 12 - 8 = 4 → a sliver of 0.05 strides
    assert (float(cx), float(w)) == pytest.approx((20.0, 16.0))
    assert float(h) == pytest.approx(0.05 * 8)
    # targets in bin units: a box (10, 4, 30, 20) around a location centred at (12, 12), stride 8
    t = edge_targets(torch.tensor([[12.0, 12.0]]), torch.tensor([8.0]),
                     torch.tensor([[10.0, 4.0, 30.0, 20.0]]), 6)  # fmt: skip
    assert t[0].tolist() == pytest.approx([1.25, 2.0, 3.25, 2.0])
    logits = torch.zeros(1, 4, 6, requires_grad=True)
    loss = dfl(logits, t)
    loss.backward()
    assert logits.grad is not None
    assert bool((logits.grad[0, 0, 1:3] < 0).all()) and bool((logits.grad[0, 0, 3:] > 0).all())
    # the whole loss trains the box channels of every bin
    det_loss = DetectionLoss(model.train())
    targets = _worker_targets(
        [49.5, 26.0, 52.5, 32.0], [50.4, 26.0, 51.6, 27.5], [49.6, 27.5, 52.4, 29.5]
    )
    total, parts = det_loss(torch.rand(1, 3, 64, 96), [targets])
    assert parts["dfl"] > 0
    total.backward()
    grad = model.heads[0].box.weight.grad
    assert grad is not None and bool((grad.abs().sum((1, 2, 3)) > 0).all())


def test_boxes_sit_on_the_pixels_opencv_draws() -> None:
    """The renderer's shapes are drawn by OpenCV (integer coordinates at pixel centres, edge
    pixels filled); the annotations' ``DRAWN_GROWTH_PX`` puts a projected box on the drawn
    pixels in COCO's convention (pixel k covers [k, k + 1)): over random sub-pixel positions
    the drawn rectangles' centres and sizes match the grown boxes' on average."""
    from edge.sim.raster import quad
    from trainer.detect.dataset import DRAWN_GROWTH_PX

    rng = np.random.default_rng(0)
    errors = []
    for _ in range(1000):
        x0, y0 = rng.uniform(10, 50, 2)
        w, h = rng.uniform(2, 12, 2)
        img = np.zeros((80, 80), dtype=np.uint8)
        quad(img, [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)], 255)
        ys, xs = np.nonzero(img)
        x1, y1 = x0 + w + DRAWN_GROWTH_PX, y0 + h + DRAWN_GROWTH_PX  # the annotation
        errors.append((xs.min() - x0, xs.max() + 1 - x1, ys.min() - y0, ys.max() + 1 - y1))
    bias = np.mean(errors, axis=0)  # left, right, top, bottom edge
    assert np.abs(bias).max() < 0.1, bias
