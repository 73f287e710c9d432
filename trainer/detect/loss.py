"""Target assignment and the detector's loss.

Assignment (centre sampling, FCOS/YOLOX style, without anchors): every ground-truth box goes to
one pyramid level by its longer side in input pixels times its class's *level scale* (< 16 →
stride 4, < 64 → stride 8, else stride 16); the locations of that level whose centres lie within
one stride of the box centre (and always the one nearest to it) are its positives. A location
claimed by several boxes takes the smallest.

The level scale exists because a location predicts one box: a worker's head and vest lie inside
the worker's box, near its centre, and at equal scale they take every location the worker has —
a small worker (4–16 input px tall) then has no positive at all and is never learnt. Scaling the
worker's size up (× 4 by default) puts workers one or two levels coarser than their own heads
and vests, where nothing competes for their centre.

Locations near an *ignore* box (too small, hidden, cut by the frame) are left out of the
classification loss instead of being taught "background".

Loss: Quality Focal Loss on the class scores — a positive's target is the IoU of its predicted
box with its ground truth, so the best-placed of several overlapping predictions scores highest
and survives NMS — plus a GIoU box loss on the positives, and for a DFL box (``box_bins``) the
distribution focal loss on each edge's bins. All are averaged over the positives.
(torchvision has the box ops but may not be installed beside this torch; these few lines are
written here.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.detect.model import SiteDetector

#: Longer side (input pixels) below which a box goes to stride 4, 8; larger ones go to stride 16.
LEVEL_LIMITS = (16.0, 64.0)
#: Per-class factor on the size that chooses the level (classes not named: 1).
DEFAULT_LEVEL_SCALE: dict[str, float] = {"person": 4.0}


@dataclass
class Targets:
    """Ground truth of one image in input pixels."""

    boxes: torch.Tensor  # (K, 4) x_min, y_min, x_max, y_max
    classes: torch.Tensor  # (K,) long
    ignore: torch.Tensor  # (K,) bool


def box_xyxy(cxcywh: torch.Tensor) -> torch.Tensor:
    half = cxcywh[..., 2:4] / 2
    return torch.cat([cxcywh[..., :2] - half, cxcywh[..., :2] + half], -1)


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of paired boxes (..., 4) xyxy."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter + 1e-9
    iou = inter / union
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    hull = cw * ch + 1e-9
    return iou, iou - (hull - union) / hull


def level_of(boxes: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Pyramid level (0, 1, 2) of each box by its longer side (× its ``scale``, if given)."""
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    if scale is not None:
        side = side * scale
    lo, hi = LEVEL_LIMITS
    return (side >= lo).long() + (side >= hi).long()


def assign(
    centres: torch.Tensor,
    strides: torch.Tensor,
    levels: torch.Tensor,
    t: Targets,
    class_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per location: index of its ground-truth box (−1 none) and whether it is ignored.

    ``centres`` (N, 2), ``strides`` (N,) and ``levels`` (N,) describe the locations of all
    levels, concatenated; ``class_scale`` (C,) is each class's level scale (1 if not given).
    """
    n = centres.shape[0]
    gt = torch.full((n,), -1, dtype=torch.long)
    ignored = torch.zeros(n, dtype=torch.bool)
    if t.boxes.shape[0] == 0:
        return gt, ignored
    c = (t.boxes[:, :2] + t.boxes[:, 2:]) / 2  # (K, 2)
    lvl = level_of(t.boxes, None if class_scale is None else class_scale[t.classes])  # (K,)
    dx = (centres[:, None, 0] - c[None, :, 0]).abs()  # (N, K)
    dy = (centres[:, None, 1] - c[None, :, 1]).abs()
    same_level = levels[:, None] == lvl[None, :]
    r = strides[:, None]
    near = same_level & (dx <= r) & (dy <= r)
    # always the nearest location of the box's level
    dist = torch.where(same_level, dx + dy, torch.full_like(dx, float("inf")))
    nearest = dist.argmin(0)  # (K,)
    near[nearest, torch.arange(len(nearest))] = True
    area = (t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1])
    real = near & ~t.ignore[None, :]
    cost = torch.where(real, area[None, :].expand_as(real), torch.full_like(dx, float("inf")))
    best_cost, best = cost.min(1)
    has = torch.isfinite(best_cost)
    gt[has] = best[has]
    ignored = (near & t.ignore[None, :]).any(1) & ~has
    return gt, ignored


class DetectionLoss:
    """QFL + GIoU over a batch; ``__call__`` returns (total, parts)."""

    def __init__(
        self,
        model: SiteDetector,
        box_weight: float = 2.0,
        beta: float = 2.0,
        level_scale: Mapping[str, float] | None = None,
        dfl_weight: float = 0.5,
    ):
        self.model = model
        self.box_weight = box_weight
        self.dfl_weight = dfl_weight
        self.beta = beta
        classes = model.cfg.classes
        scale = dict(DEFAULT_LEVEL_SCALE if level_scale is None else level_scale)
        unknown = sorted(set(scale) - set(classes))
        if unknown:
            raise ValueError(f"level_scale: unknown classes {unknown}; classes: {list(classes)}")
        self.class_scale = torch.tensor([float(scale.get(c, 1.0)) for c in classes])
        self._grid: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}

    def grid(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (height, width)
        if key not in self._grid:
            cs, ss, ls = [], [], []
            for level, s in enumerate(self.model.cfg.strides):
                h, w = height // s, width // s
                ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                cs.append(torch.stack([(xs + 0.5) * s, (ys + 0.5) * s], -1).reshape(-1, 2))
                ss.append(torch.full((h * w,), float(s)))
                ls.append(torch.full((h * w,), level, dtype=torch.long))
            self._grid[key] = (torch.cat(cs).float(), torch.cat(ss), torch.cat(ls))
        return self._grid[key]  # type: ignore[return-value]

    def __call__(
        self, images: torch.Tensor, targets: list[Targets]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        b, _, height, width = images.shape
        levels = self.model.levels(images)
        logits = torch.cat([cls.reshape(b, cls.shape[1], -1) for _, cls in levels], 2)
        pred_logit = logits.transpose(1, 2)  # (B, N, C)
        centres, strides, lvls = self.grid(height, width)
        target_cls = torch.zeros_like(pred_logit)
        ignored_cls = torch.zeros_like(pred_logit, dtype=torch.bool)
        box_loss = pred_logit.new_zeros(())
        dfl_loss = pred_logit.new_zeros(())
        num_pos = 0
        bins = self.model.cfg.box_bins
        # each box group is assigned on its own: its classes' boxes compete only with each other
        for g, members in enumerate(self.model.cfg.box_groups):
            raw = [self.model.group_box(box, g) for box, _ in levels]
            pred_box = box_xyxy(
                torch.cat(
                    [
                        self.model.decode_level(r, stride)
                        for r, stride in zip(raw, self.model.cfg.strides, strict=True)
                    ],
                    2,
                ).transpose(1, 2)
            )  # (B, N, 4)
            group = torch.tensor(members)
            subsets = [_subset(t, torch.isin(t.classes, group)) for t in targets]
            assigned = [assign(centres, strides, lvls, t, self.class_scale) for t in subsets]
            gt_idx, ignored = zip(*assigned, strict=True)
            gi = torch.stack(gt_idx)  # (B, N)
            ignored_cls[..., group] = torch.stack(ignored)[..., None]
            pos = gi >= 0
            if not pos.any():
                continue
            num_pos += int(pos.sum())
            bi, ni = pos.nonzero(as_tuple=True)
            counts = torch.tensor([len(t.boxes) for t in subsets])
            offsets = torch.cumsum(counts, 0) - counts
            flat = offsets[bi] + gi[bi, ni]
            gt_boxes = torch.cat([t.boxes for t in subsets])[flat]
            gt_cls = torch.cat([t.classes for t in subsets])[flat]
            iou, gio = giou(pred_box[bi, ni], gt_boxes)
            box_loss = box_loss + (1.0 - gio).sum()
            if bins:
                dist_logits = torch.cat([r.reshape(b, 4, bins, -1) for r in raw], 3)
                dist_logits = dist_logits.permute(0, 3, 1, 2)[bi, ni]  # (P, 4, bins)
                dfl_loss = dfl_loss + dfl(
                    dist_logits, edge_targets(centres[ni], strides[ni], gt_boxes, bins)
                )
            target_cls[bi, ni, gt_cls] = iou.detach().clamp(min=0.01)
        num_pos = max(num_pos, 1)
        box_loss = box_loss / num_pos
        dfl_loss = dfl_loss / num_pos
        p = torch.sigmoid(pred_logit)
        qfl = F.binary_cross_entropy_with_logits(pred_logit, target_cls, reduction="none")
        qfl = qfl * (target_cls - p).abs().pow(self.beta)
        qfl = qfl[~ignored_cls].sum() / num_pos
        total = qfl + self.box_weight * box_loss + self.dfl_weight * dfl_loss
        parts = {
            "loss": float(total.detach()),
            "cls": float(qfl.detach()),
            "box": float(box_loss.detach()),
            "pos": float(num_pos) / b,
        }
        if bins:
            parts["dfl"] = float(dfl_loss.detach())
        return total, parts


def edge_targets(
    centres: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor, bins: int
) -> torch.Tensor:
    """Distances (P, 4) of the left, top, right and bottom edges of ``boxes`` from the
    locations' ``centres``, in strides, as bin positions (bin k is k - 1 strides), clamped to
    the bins' range."""
    s = strides[:, None]
    d = torch.cat([centres - boxes[:, :2], boxes[:, 2:] - centres], 1) / s
    return (d + 1.0).clamp(0.0, bins - 1 - 1e-3)


def dfl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss (Li et al., GFL, 2020), summed over positives: cross-entropy
    towards the two bins around each continuous target, weighted by nearness; averaged over
    the four edges. ``logits`` (P, 4, bins), ``target`` (P, 4) in bin units."""
    left = target.floor().long()
    w_right = target - left
    logp = F.log_softmax(logits, -1)
    lo = logp.gather(-1, left[..., None]).squeeze(-1)
    hi = logp.gather(-1, (left + 1).clamp(max=logits.shape[-1] - 1)[..., None]).squeeze(-1)
    return -((1 - w_right) * lo + w_right * hi).mean(-1).sum()


def _subset(t: Targets, keep: torch.Tensor) -> Targets:
    return Targets(t.boxes[keep], t.classes[keep], t.ignore[keep])
