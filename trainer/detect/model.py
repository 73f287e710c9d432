"""SiteHawk's detector: a small single-stage, anchor-free CNN with a YOLO-format output.

Backbone of plain 3×3 convolutions (BatchNorm + ReLU: convolutions run close to the CPU's
matmul rate, depthwise ones would not) down to stride 32, a top-down feature pyramid, and one
head per level at strides 4, 8 and 16 — stride 4 because a worker's head in a wide 1280×720
view letterboxed to 320 px is 4–8 px tall. Each head location predicts a box centre offset and a
log size relative to its stride, and a score per class.

The network decodes its own output, so the exported graph produces exactly the YOLOv8/YOLO11
detection format the edge decoder reads: ``[B, 4 + classes, N]`` with ``cx, cy, w, h`` in input
pixels and sigmoid class scores (N = 80² + 40² + 20² = 8400 at 320×320).

*Box groups*: a location predicts one box per group of classes. By default every class shares
one box; ``own_box_classes`` gives the classes named there a second box of their own at every
location (the exported graph then has one row per location and group: N = 2 × 8400, each row
scoring only its group's classes). A worker's vest and head lie at the centre of the worker's
box; with one box per location they compete for the same locations, and a small worker either
loses them or has to move to a coarser level where its 3-px-wide box is placed too loosely.

*DFL box* (``box_bins`` = N ≥ 2, as YOLOv8 / GFL): instead of a centre offset and a log size, a
location predicts for each of the box's four edges a distribution over N bins one stride apart
(bin k: the edge k − 1 strides from the location's centre — a location may lie just outside a
worker 2 px wide) and decodes the edge at the distribution's expectation. Trained with the
distribution focal loss beside GIoU (:mod:`trainer.detect.loss`), it places edges between the
bins, where a single regressed number had to be right to the sub-pixel. The decoding (the
softmax's expectation, :meth:`SiteDetector.edge_distances`) is part of the graph: the exported
output stays in YOLO format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from edge.perception.detection import CLASSES


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture hyper-parameters."""

    num_classes: int = len(CLASSES)
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)  # strides 2, 4, 8, 16, 32
    depths: tuple[int, ...] = (0, 1, 2, 2, 1)  # residual blocks per stage
    neck: tuple[int, ...] = (32, 48, 64)  # pyramid channels at strides 4, 8, 16
    strides: tuple[int, ...] = (4, 8, 16)
    input_size: tuple[int, int] = (320, 320)  # (height, width) of the exported input
    max_log_size: float = 6.0  # box sizes are exp(≤ this) × stride
    prior_prob: float = 0.01  # initial class score (focal-loss style bias init)
    classes: tuple[str, ...] = field(default=CLASSES)
    # classes with a box of their own at every location (a second box group); () = one group
    own_box_classes: tuple[str, ...] = ()
    # 0: a box is a centre offset and a log size; N > 1: each edge's distance from the location
    # is a distribution over N bins one stride apart, from -1 stride (DFL box, see the module)
    box_bins: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.own_box_classes) - set(self.classes))
        if unknown:
            raise ValueError(
                f"own_box_classes: unknown classes {unknown}; classes: {list(self.classes)}"
            )
        if set(self.own_box_classes) == set(self.classes):
            raise ValueError("own_box_classes: name some classes, not all of them")
        if self.box_bins == 1 or self.box_bins < 0:
            raise ValueError(f"box_bins: {self.box_bins}; 0 (offset + log size) or >= 2 bins")

    @property
    def box_channels(self) -> int:
        """Raw box channels per box group."""
        return 4 * max(self.box_bins, 1)

    @property
    def box_groups(self) -> list[list[int]]:
        """Class indices of each box group: the shared box first, then ``own_box_classes``."""
        own = [i for i, c in enumerate(self.classes) if c in self.own_box_classes]
        shared = [i for i in range(len(self.classes)) if i not in own]
        return [shared, own] if own else [shared]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DetectorConfig:
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**kwargs)


class ConvBN(nn.Sequential):
    """Conv → BatchNorm → ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """x + conv3×3(conv1×1(x)) with a half-width bottleneck."""

    def __init__(self, c: int):
        super().__init__()
        self.a = ConvBN(c, c // 2, 1)
        self.b = nn.Sequential(nn.Conv2d(c // 2, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.b(self.a(x)))


class Head(nn.Module):
    """Per-level head: a 3×3 conv, then 1×1 to 4 box channels per box group + C class channels."""

    def __init__(
        self,
        c: int,
        num_classes: int,
        prior_prob: float,
        num_groups: int = 1,
        box_channels: int = 4,
    ):
        super().__init__()
        self.conv = ConvBN(c, c, 3)
        self.box = nn.Conv2d(c, box_channels * num_groups, 1)
        self.cls = nn.Conv2d(c, num_classes, 1)
        assert self.box.bias is not None and self.cls.bias is not None
        nn.init.zeros_(self.box.weight)
        nn.init.zeros_(self.box.bias)
        bias = -float(torch.log(torch.tensor((1 - prior_prob) / prior_prob)))
        nn.init.constant_(self.cls.bias, bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return self.box(y), self.cls(y)


class SiteDetector(nn.Module):
    """The detector. ``forward`` returns the decoded ``[B, 4 + C, N]`` output."""

    def __init__(self, cfg: DetectorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DetectorConfig()
        w, d = cfg.widths, cfg.depths
        stages: list[nn.Module] = []
        c_prev = 3
        for c, n in zip(w, d, strict=True):
            stages.append(nn.Sequential(ConvBN(c_prev, c, 3, 2), *[ResBlock(c) for _ in range(n)]))
            c_prev = c
        self.stages = nn.ModuleList(stages)
        # pyramid: lateral 1×1 from strides 4, 8, 16 (stages 1..3) and the top (stage 4)
        n4, n8, n16 = cfg.neck
        self.top = ConvBN(w[4], n16, 1)
        self.lat16 = ConvBN(w[3], n16, 1)
        self.lat8 = ConvBN(w[2], n8, 1)
        self.lat4 = ConvBN(w[1], n4, 1)
        self.fuse16 = ConvBN(n16, n16, 3)
        self.red16 = ConvBN(n16, n8, 1)
        self.fuse8 = ConvBN(n8, n8, 3)
        self.red8 = ConvBN(n8, n4, 1)
        self.fuse4 = ConvBN(n4, n4, 3)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        groups = cfg.box_groups
        self.heads = nn.ModuleList(
            Head(c, cfg.num_classes, cfg.prior_prob, len(groups), cfg.box_channels)
            for c in cfg.neck
        )
        # (G, C, 1): which class scores each box group's rows carry
        masks = torch.zeros(len(groups), cfg.num_classes, 1)
        for g, members in enumerate(groups):
            masks[g, members] = 1.0
        self.group_masks: torch.Tensor
        self.register_buffer("group_masks", masks, persistent=False)
        # DFL box: the 1×1 convolution's weights of edge_distances (a constant of the graph)
        bins = max(cfg.box_bins, 1)
        dfl = torch.stack([torch.arange(bins, dtype=torch.float32) - 1.0, torch.ones(bins)])
        self.dfl_weight: torch.Tensor
        self.register_buffer("dfl_weight", dfl.view(2, bins, 1, 1), persistent=False)

    def levels(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Raw (box, cls) maps per level (strides 4, 8, 16)."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        _, c4, c8, c16, c32 = feats
        p16 = self.fuse16(self.lat16(c16) + self.up(self.top(c32)))
        p8 = self.fuse8(self.lat8(c8) + self.up(self.red16(p16)))
        p4 = self.fuse4(self.lat4(c4) + self.up(self.red8(p8)))
        return [head(p) for head, p in zip(self.heads, (p4, p8, p16), strict=True)]

    def group_box(self, box: torch.Tensor, group: int) -> torch.Tensor:
        """One box group's raw channels of a level's box map."""
        n = self.cfg.box_channels
        return box[:, n * group : n * (group + 1)]

    def edge_distances(self, box: torch.Tensor) -> torch.Tensor:
        """DFL box: raw (B, 4·bins, H, W) → expected distances (B, 4, H, W) of the left, top,
        right and bottom edges from the location's centre, in strides (bin k is k - 1).

        The softmax's expectation written as exp, a channel max and one 1×1 convolution
        (numerator Σ e_k (k − 1) and denominator Σ e_k): ONNX Runtime runs a ``Softmax`` over a
        non-last axis through transposes, 10 of the model's 13.5 ms here; written so, the same
        model runs in 5.1 ms (the difference to the softmax is < 2e-6)."""
        b, _, h, w = box.shape
        bins = self.cfg.box_bins
        x = box.reshape(b * 4, bins, h, w)
        e = torch.exp(x - x.amax(1, keepdim=True))
        num_den = torch.nn.functional.conv2d(e, self.dfl_weight.to(box.dtype))
        return (num_den[:, 0] / num_den[:, 1]).reshape(b, 4, h, w)

    def decode_level(self, box: torch.Tensor, stride: int) -> torch.Tensor:
        """One group's raw box map → (B, 4, H·W) cx, cy, w, h in input pixels."""
        b, _, h, w = box.shape
        ys = torch.arange(h, dtype=box.dtype, device=box.device).view(1, h, 1)
        xs = torch.arange(w, dtype=box.dtype, device=box.device).view(1, 1, w)
        if self.cfg.box_bins:
            d = self.edge_distances(box)
            cx = (xs + 0.5 + (d[:, 2] - d[:, 0]) / 2) * stride
            cy = (ys + 0.5 + (d[:, 3] - d[:, 1]) / 2) * stride
            # edges may cross (both distances near -1): keep a sliver of a box
            bw = (d[:, 0] + d[:, 2]).clamp(min=0.05) * stride
            bh = (d[:, 1] + d[:, 3]).clamp(min=0.05) * stride
            return torch.stack([cx, cy, bw, bh], 1).reshape(b, 4, h * w)
        cx = (xs + 0.5 + box[:, 0]) * stride
        cy = (ys + 0.5 + box[:, 1]) * stride
        m = self.cfg.max_log_size
        bw = torch.exp(box[:, 2].clamp(-m, m)) * stride
        bh = torch.exp(box[:, 3].clamp(-m, m)) * stride
        return torch.stack([cx, cy, bw, bh], 1).reshape(b, 4, h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        num_groups = self.group_masks.shape[0]
        for (box, cls), stride in zip(self.levels(x), self.cfg.strides, strict=True):
            b = box.shape[0]
            scores = torch.sigmoid(cls).reshape(b, cls.shape[1], -1)
            for g in range(num_groups):
                group_scores = scores if num_groups == 1 else scores * self.group_masks[g]
                outs.append(
                    torch.cat([self.decode_level(self.group_box(box, g), stride), group_scores], 1)
                )
        return torch.cat(outs, 2)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, height: int, width: int) -> float:
    """FLOPs (2 × multiply-adds) of one forward pass at batch 1, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width))
    model.train(was_training)
    return float(counter.get_total_flops())
