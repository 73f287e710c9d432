"""Ground truth of rendered frames: detector boxes, occlusion, and which hazards are resolvable.

Computed from the same projected geometry the frame was drawn from: the six detector classes'
boxes (workers' person / head / vest boxes, one box per machine, one per fire), whether each is
hidden behind a structure or machine (a ray–box slab test), and, per active hazard, whether it is
*resolvable* in this view (:class:`Resolvability`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.geometry import REFERENCE_WIDTH_PX, CameraView
from edge.sim.boxes import Box
from edge.sim.figures import WorkerGeometry
from edge.sim.raster import NEAR_M
from edge.sim.world import (
    HEAD_RADIUS_M,
    TORSO_BOTTOM_M,
    TORSO_TOP_M,
    FireState,
    Site,
    WorkerState,
)

# indices into edge.perception.detection.CLASSES
CLS_PERSON, CLS_HEAD_HELMET, CLS_HEAD_BARE, CLS_VEST, CLS_MACHINE, CLS_FIRE = range(6)


@dataclass(frozen=True)
class Resolvability:
    """Pixel sizes, in a 1280×720 rendering of the view, at which a hazard can be verified."""

    head_px: float = 16.0
    torso_px: float = 16.0
    person_px: float = 16.0
    smoke_px: float = 32.0
    min_visible: float = 0.6


@dataclass
class HazardView:
    """One active hazard as seen in one frame."""

    id: str
    type: str
    in_view: bool
    resolvable: bool
    size_ref_px: float  # the relevant part's height in 1280×720 reference pixels
    bbox: tuple[float, float, float, float] | None


@dataclass
class FrameTruth:
    """Ground truth of one rendered frame (pixel boxes are in that frame's coordinates)."""

    t: float
    width: int
    height: int
    boxes: np.ndarray  # (K, 4) float32 x_min, y_min, x_max, y_max (not clipped)
    classes: np.ndarray  # (K,) int, index into CLASSES
    visible: np.ndarray  # (K,) fraction of the box inside the frame
    occluded: np.ndarray  # (K,) bool: hidden behind a structure or machine
    ref_height_px: np.ndarray  # (K,) box height in reference (1280-wide) pixels
    owner: np.ndarray  # (K,) index of the worker / machine / fire the box belongs to
    hazards: list[HazardView] = field(default_factory=list)


class TruthBuilder:
    """Builds the :class:`FrameTruth` of views of one site; holds its static occluders."""

    def __init__(self, site: Site, static: list[Box]):
        self.site = site
        self._num_static = len(static)
        # of the structures, only buildings and containers hide what is behind them
        self._occluder_idx = np.array(
            [i for i, b in enumerate(static) if b.kind in ("building", "container")], dtype=int
        )
        occluders = [static[i].corners for i in self._occluder_idx]
        self._static_occluders = _box_frames(
            np.stack(occluders) if occluders else np.zeros((0, 8, 3))
        )

    def frame_truth(
        self,
        cv: CameraView,
        t: float,
        res: Resolvability,
        workers: WorkerState,
        geo: WorkerGeometry,
        machine_boxes: list[Box],
        machine_uv: tuple[np.ndarray, np.ndarray],
        box_in_view: np.ndarray,
        fires: list[FireState],
    ) -> FrameTruth:
        """Truth of the frame drawn in ``cv`` at ``t``.

        ``machine_uv`` is the projection (uv, z) of the machine parts' corners and
        ``box_in_view`` says, per box (static, then machine parts), whether it reaches into the
        view; both come from drawing the frame.
        """
        ref = REFERENCE_WIDTH_PX / cv.width
        boxes: list[np.ndarray] = []
        classes: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        n = len(workers.xy)
        idx = np.flatnonzero(geo.in_front & geo.onscreen)
        occ_head = np.zeros(n, dtype=bool)
        occ_torso = np.zeros(n, dtype=bool)
        if len(idx):
            hm = self.site.heights[idx]
            x, y_ = workers.xy[idx, 0], workers.xy[idx, 1]
            head_pts = np.stack([x, y_, hm - HEAD_RADIUS_M], -1)
            torso_pts = np.stack([x, y_, hm * (TORSO_BOTTOM_M + TORSO_TOP_M) / 2 / 1.75], -1)
            # only boxes that reach into the view can hide a point in it
            n_static = self._num_static
            pick = box_in_view[self._occluder_idx]
            frames: _Frames = tuple(a[pick] for a in self._static_occluders)
            solid = [
                b.corners
                for k, b in enumerate(machine_boxes)
                if b.solid and box_in_view[n_static + k]
            ]
            if solid:
                frames = _concat_frames(frames, _box_frames(np.stack(solid)))
            occ = _occluded(np.asarray(cv.position), np.concatenate([head_pts, torso_pts]), frames)
            occ_head[idx] = occ[: len(idx)]
            occ_torso[idx] = occ[len(idx) :]
            person = geo.person_box[idx]
            head = geo.head_box[idx]
            torso = geo.torso_box[idx]
            boxes += [person, head]
            classes += [
                np.full(len(idx), CLS_PERSON),
                np.where(workers.helmet[idx], CLS_HEAD_HELMET, CLS_HEAD_BARE),
            ]
            owners += [idx, idx]
            vest_idx = workers.vest[idx]
            boxes.append(torso[vest_idx])
            classes.append(np.full(int(vest_idx.sum()), CLS_VEST))
            owners.append(idx[vest_idx])
        machine_visible = _machine_truth(cv, machine_boxes, machine_uv, boxes, classes, owners)
        fire_boxes = {}
        for fire in fires:
            fb = _fire_box(cv, fire)
            if fb is not None:
                fire_boxes[fire.index] = fb
                boxes.append(fb[None])
                classes.append(np.array([CLS_FIRE]))
                owners.append(np.array([fire.index]))
        all_boxes = (
            np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
        )
        all_cls = np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64)
        all_own = np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)
        visible = _visible_fraction(all_boxes, cv.width, cv.height)
        is_machine = all_cls == CLS_MACHINE
        if is_machine.any():
            # clipped machine boxes are fully "inside"; report the share of the machine shown
            visible[is_machine] = np.asarray(machine_visible, dtype=np.float32)
        occluded = np.zeros(len(all_cls), dtype=bool)
        is_worker = (all_cls == CLS_PERSON) | (all_cls == CLS_VEST)
        occluded[is_worker] = occ_torso[all_own[is_worker]]
        is_head = (all_cls == CLS_HEAD_HELMET) | (all_cls == CLS_HEAD_BARE)
        occluded[is_head] = occ_head[all_own[is_head]]
        keep = visible > 0
        ref_h = (all_boxes[:, 3] - all_boxes[:, 1]) * ref
        hazards = self._hazard_views(cv, t, res, geo, occ_head, occ_torso, fire_boxes, ref)
        return FrameTruth(
            t,
            cv.width,
            cv.height,
            all_boxes[keep],
            all_cls[keep],
            visible[keep],
            occluded[keep],
            ref_h[keep],
            all_own[keep],
            hazards,
        )

    def _hazard_views(self, cv, t, res, geo, occ_head, occ_torso, fire_boxes, ref):
        """Each active hazard as seen in the frame, and whether it is resolvable there."""
        out = []
        for hz in self.site.active_hazards(t):
            box = None
            size = 0.0
            occluded = False
            if hz.type == "fire_smoke":
                fb = fire_boxes.get(hz.fire)
                if fb is not None:
                    box = fb
                    size = float(fb[3] - fb[1]) * ref
                need = res.smoke_px
            else:
                wi = hz.worker
                if wi is None or not geo.in_front[wi]:
                    box = None
                elif hz.type == "no_helmet":
                    box, occluded, need = geo.head_box[wi], bool(occ_head[wi]), res.head_px
                elif hz.type == "no_vest":
                    box, occluded, need = geo.torso_box[wi], bool(occ_torso[wi]), res.torso_px
                else:
                    box, occluded, need = geo.person_box[wi], bool(occ_torso[wi]), res.person_px
                if box is not None:
                    size = float(box[3] - box[1]) * ref
                need = {"no_helmet": res.head_px, "no_vest": res.torso_px}.get(
                    hz.type, res.person_px
                )
            if box is None:
                out.append(HazardView(hz.id, hz.type, False, False, 0.0, None))
                continue
            frac = _visible_fraction_of(box, cv.width, cv.height)
            in_view = frac > 0 and not occluded
            resolvable = in_view and frac >= res.min_visible and size >= need
            out.append(HazardView(hz.id, hz.type, in_view, resolvable, size, _as_box(box)))
        return out


def _machine_truth(cv, machine_boxes, machine_uv, boxes, classes, owners) -> list[float]:
    """Append one box per machine in the frame; return the share of each machine shown.

    A machine's box is the union of its parts that are in the frame: an articulated crane's
    full extent would cover half the sky while only its mast is visible.
    """
    uv, z = machine_uv
    if not len(machine_boxes):
        return []
    owner = np.array([b.owner for b in machine_boxes])
    part = np.concatenate([uv.min(axis=1), uv.max(axis=1)], axis=1)  # (P, 4)
    clipped = np.empty_like(part)
    clipped[:, 0::2] = np.clip(part[:, 0::2], 0, cv.width)
    clipped[:, 1::2] = np.clip(part[:, 1::2], 0, cv.height)
    shown = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    behind = (z <= NEAR_M).any(axis=1)
    area_part = np.maximum(part[:, 2] - part[:, 0], 0) * np.maximum(part[:, 3] - part[:, 1], 0)
    area_clip = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) * shown
    fractions: list[float] = []
    if not (shown & ~behind).any():
        return fractions
    for mi in sorted(set(owner[shown].tolist())):
        mine = owner == mi
        if behind[mine].any() or not shown[mine].any():
            continue
        c = clipped[mine & shown]
        boxes.append(np.array([[c[:, 0].min(), c[:, 1].min(), c[:, 2].max(), c[:, 3].max()]]))
        classes.append(np.array([CLS_MACHINE]))
        owners.append(np.array([mi]))
        fractions.append(float(area_clip[mine].sum() / max(area_part[mine].sum(), 1e-9)))
    return fractions


def _fire_box(cv: CameraView, fire: FireState) -> np.ndarray | None:
    """Box of a fire's flames and smoke plume; None when any of it is behind the camera."""
    base = np.array([fire.xy[0], fire.xy[1], 0.0])
    r = fire.size_m * (0.35 + 0.25 * 5) * fire.intensity
    pts = np.array(
        [
            base + [-r, 0, 0],
            base + [r, 0, 0],
            base + [0, -r, 0],
            base + [0, r, 0],
            base + [-r, 0, fire.plume_m + r],
            base + [r, 0, fire.plume_m + r],
        ]
    )
    uv, z = cv.project(pts)
    if (z <= NEAR_M).any():
        return None
    return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])


def _as_box(box: np.ndarray) -> tuple[float, float, float, float]:
    return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))


def _visible_fraction_of(box, width: int, height: int) -> float:
    """Scalar version of :func:`_visible_fraction` for one box (no array overhead)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    w = max(min(x1, width) - max(x0, 0.0), 0.0)
    h = max(min(y1, height) - max(y0, 0.0), 0.0)
    return w * h / area


def _visible_fraction(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.float32)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 3], 0, height)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return (np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0) / area).astype(np.float32)


_Frames = tuple[np.ndarray, np.ndarray, np.ndarray]


def _box_frames(boxes: np.ndarray) -> _Frames:
    """Origin (B, 3), unit axes (B, 3, 3) and edge lengths (B, 3) of boxes (B, 8, 3)."""
    origin = boxes[:, 0]
    axes = np.stack([boxes[:, 1] - origin, boxes[:, 3] - origin, boxes[:, 4] - origin], 1)
    lengths = np.linalg.norm(axes, axis=2)
    return origin, axes / np.maximum(lengths[..., None], 1e-9), lengths


def _concat_frames(a: _Frames, b: _Frames) -> _Frames:
    return (
        np.concatenate([a[0], b[0]]),
        np.concatenate([a[1], b[1]]),
        np.concatenate([a[2], b[2]]),
    )


def _occluded(cam: np.ndarray, points: np.ndarray, frames: _Frames) -> np.ndarray:
    """Is the segment camera → point blocked by any box? Slab test, vectorised over boxes."""
    origin, unit, lengths = frames
    if not len(points) or not len(origin):
        return np.zeros(len(points), dtype=bool)
    s = ((cam - origin)[:, None, :] @ unit.transpose(0, 2, 1))[:, 0]  # (B, 3) camera, box coords
    e = (points[None] - origin[:, None]) @ unit.transpose(0, 2, 1)  # (B, P, 3)
    d = e - s[:, None]
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0 = -s[:, None] / d
    t1 = (lengths - s)[:, None] / d
    enter = np.minimum(t0, t1).max(axis=2)
    leave = np.maximum(t0, t1).min(axis=2)
    return ((enter <= leave) & (leave > 0) & (enter < 0.97)).any(axis=0)
