"""Visual question answering data rendered from virtual sites.

Each sample is a small square image rendered *at its final size* by pointing the virtual PTZ
camera at the object (a worker, a machine's exclusion zone, a fire, or a wider view) — never
resized down from a big frame — plus a question and a short canonical answer computed from the
simulator's ground truth (:mod:`edge.sim.world`, :class:`~edge.sim.truth.FrameTruth`).

Two splits:

* ``general`` — for base training: helmet and vest colours, machine kinds, whether a worker is
  in view, how many workers are in view, what is in the centre, whether the worker in the
  centre stands inside a zone's painted lines;
* ``hazard`` — the questions the agent asks before alerting (:data:`edge.vlm.questions.
  HAZARD_QUESTIONS`), yes and no balanced per hazard type.

``gate_views`` (hazard split): the share of samples drawn as the agent's VLM gate may have to ask
about them on a moving camera — smeared by the camera's motion (2–24 px of the 96-px image, the
renderer's own motion blur) and/or aimed off the object so that part of it is out of the image
(the gate's crop stops at the frame's edge). The answer is still the simulator's truth, also when
the picture no longer shows it (a head out of view): the model learns to doubt such views instead
of answering them confidently. Each sample records its ``view`` (``clear``, ``blur``, ``cut``,
``blur+cut``).

A dataset folder holds ``images/*.png`` (lossless, so a GGUF model sees the exact pixels),
``vqa.jsonl`` (one sample per line) and ``summary.json`` (counts, answer distribution and the
majority-class baseline per question type).
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.alerts.rules import distance_to_boundary
from edge.geometry import PTZPose, pan_tilt_of_point, points_in_polygon
from edge.sim.generate import HELD_OUT_SEED_MIN, generate_site
from edge.sim.render import (
    CLS_FIRE,
    CLS_HEAD_BARE,
    CLS_HEAD_HELMET,
    CLS_MACHINE,
    CLS_PERSON,
    FrameTruth,
    Renderer,
)
from edge.sim.world import Site
from edge.vlm.questions import (
    HAZARD_QUESTIONS,
    QUESTION_SET_VERSION,
    ZONE_ASK_MAX_BOUNDARY_M,
    ZONE_VIEW_PERSON_HEIGHTS,
    normalize_answer,
)

SPLITS = ("general", "hazard")
#: Question types of the general split.
GENERAL_TYPES = (
    "helmet_color",
    "vest_color",
    "machine_kind",
    "worker_present",
    "count_workers",
    "centre_object",
    "worker_in_zone",
)
HAZARD_TYPES = tuple(HAZARD_QUESTIONS)
GENERAL_QUESTIONS = {
    "helmet_color": "what colour is the worker's helmet?",
    "vest_color": "what colour is the worker's vest?",
    "machine_kind": "what kind of machine is this?",
    "worker_present": "is there a worker in the image?",
    "count_workers": "how many workers are in the image?",
    "centre_object": "what is in the centre of the image?",
    "worker_in_zone": "is the worker in the centre standing inside the painted lines?",
}
#: Named colours the generator's palettes map to (nearest in RGB).
COLOR_NAMES = {
    "white": (245, 245, 240),
    "yellow": (240, 230, 40),
    "orange": (255, 125, 20),
    "blue": (30, 80, 200),
    "red": (220, 40, 40),
}
IMAGE_SIZE_PX = 96
DEGRADE_PROB = 0.3  # share of crops drawn at lower resolution and upsampled (a far object)
#: Gate views: motion blur length in the image's pixels, and how far off the object the camera
#: aims (share of the FOV) so that part of it is out of view.
GATE_BLUR_PX = (2.0, 24.0)
GATE_CUT_JITTER = (0.25, 0.45)
GATE_VIEW_SHARES = {"blur": 0.4, "cut": 0.4, "blur+cut": 0.2}  # of the gate views
VIEWS = ("clear", *GATE_VIEW_SHARES)
#: Question types drawn as gate views (the zone question's view is cut around a still person).
GATE_VIEW_TYPES = ("no_helmet", "no_vest", "fire_smoke")
#: Zone views: no other worker's box centre within this many of the worker's heights of
#: theirs ("the worker in the centre" must name one person).
ZONE_CENTRE_CLEAR_HEIGHTS = 0.75
MAX_COUNT = 5


@dataclass
class VQASample:
    """One question about one rendered image."""

    id: str
    image: str  # path relative to the dataset folder
    question: str
    answer: str
    type: str  # hazard type or general question type
    seed: int
    t: float
    pan_deg: float
    tilt_deg: float
    zoom: float
    target: int | None = None  # worker / machine / fire index the question is about
    view: str = "clear"  # clear | blur | cut | blur+cut (see the module docstring)


# ------------------------------------------------------------------------------------ sites
class _SiteCache:
    """Sites (~1 s to generate, ~2 MB each) and their renderers (~0.5 s, ~37 MB each).

    A sample whose seed cannot give it (e.g. a "yes" zone question on a site without a zone
    intrusion) hops over the following seeds, so a dataset's tail cycles through many sites:
    up to ``sites`` of them stay cached, and a renderer is built only when a generator renders
    (the last ``renderers`` of them kept).
    """

    def __init__(self, renderers: int = 4, sites: int = 128):
        self.renderers, self.sites = renderers, sites
        self._sites: OrderedDict[int, Site] = OrderedDict()
        self._renderers: OrderedDict[int, Renderer] = OrderedDict()

    @staticmethod
    def _lru(items: OrderedDict[int, Any], seed: int, size: int, make: Callable[[], Any]) -> Any:
        if seed in items:
            items.move_to_end(seed)
            return items[seed]
        items[seed] = value = make()
        if len(items) > size:
            items.popitem(last=False)
        return value

    def get(self, seed: int) -> tuple[Site, Callable[[], Renderer]]:
        """The seed's site, and a function that gives its renderer (built on first use)."""
        site: Site = self._lru(self._sites, seed, self.sites, lambda: Site(generate_site(seed)))
        return site, lambda: self._lru(
            self._renderers, seed, self.renderers, lambda: Renderer(site)
        )


def _pose_towards(renderer: Renderer, point: Any, fov_deg: float) -> PTZPose:
    """The pose that centres ``point`` (x, y, z) with a square view ``fov_deg`` wide."""
    pan, tilt, _ = pan_tilt_of_point(renderer.cam_pos, renderer.heading, np.asarray(point))
    return PTZPose(float(pan), float(tilt), renderer.fov_1x / fov_deg)


def _aim_jittered(ctx: _Ctx, point: Any, fov_deg: float, jitter_share: float) -> PTZPose:
    """:func:`_pose_towards`, then pan and tilt each moved by up to ``jitter_share`` × the FOV."""
    pose = _pose_towards(ctx.renderer, point, fov_deg)
    if jitter_share == 0.0:
        return pose
    jitter = fov_deg * jitter_share
    return PTZPose(
        pose.pan_deg + float(ctx.rng.uniform(-jitter, jitter)),
        pose.tilt_deg + float(ctx.rng.uniform(-jitter, jitter)),
        pose.zoom,
    )


def _range_m(renderer: Renderer, point: Any) -> float:
    return float(np.linalg.norm(np.asarray(point, dtype=np.float64) - renderer.cam_pos))


def _render(
    renderer: Renderer,
    pose: PTZPose,
    t: float,
    size: int,
    index: int,
    rng: np.random.Generator,
    degrade: bool = True,
    motion_dps: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, FrameTruth]:
    """Render ``size``×``size``; sometimes at a lower resolution, upsampled (a far object);
    smeared by a camera turning at ``motion_dps``."""
    if degrade and rng.random() < DEGRADE_PROB:
        src = int(size * rng.uniform(0.55, 0.9))
        frame, truth = renderer.render(pose, t, src, src, index=index, motion_dps=motion_dps)
        image = cv2.resize(frame.image, (size, size), interpolation=cv2.INTER_LINEAR)
        assert truth is not None
        scale = size / src
        truth.boxes = truth.boxes * scale
        truth.width = truth.height = size
        return image, truth
    frame, truth = renderer.render(pose, t, size, size, index=index, motion_dps=motion_dps)
    assert truth is not None
    return frame.image, truth


def _color_name(rgb: Sequence[int]) -> str:
    c = np.asarray(rgb, dtype=np.float64)
    return min(COLOR_NAMES, key=lambda k: float(np.sum((np.asarray(COLOR_NAMES[k]) - c) ** 2)))


def _worker_clear(truth: FrameTruth, wi: int, min_visible: float = 0.95) -> bool:
    """The worker's person and head boxes are fully in the frame and not hidden."""
    person = (truth.classes == CLS_PERSON) & (truth.owner == wi)
    head = ((truth.classes == CLS_HEAD_HELMET) | (truth.classes == CLS_HEAD_BARE)) & (
        truth.owner == wi
    )
    if not person.any() or not head.any():
        return False
    return bool(
        (truth.visible[person] >= min_visible).all()
        and not truth.occluded[person].any()
        and not truth.occluded[head].any()
    )


def _color_share(image_bgr: np.ndarray, rgb: Sequence[int]) -> float:
    """Share of pixels with the hue of ``rgb`` and a strong saturation (a painted machine)."""
    hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
    pixel = np.array([[list(rgb)[::-1]]], dtype=np.uint8)
    ref = cv2.cvtColor(pixel, cv2.COLOR_BGR2HSV)[0, 0]
    hue_diff = np.abs(hsv[..., 0].astype(np.int16) - int(ref[0]))
    hue_diff = np.minimum(hue_diff, 180 - hue_diff)
    mask = (hue_diff <= 8) & (hsv[..., 1] >= 110) & (hsv[..., 2] >= 60)
    return float(mask.mean())


def _flame_pixels(image_bgr: np.ndarray, box: np.ndarray) -> int:
    """Bright orange-yellow flame pixels inside a fire's box."""
    h, w = image_bgr.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(math.ceil(box[2])), w), min(int(math.ceil(box[3])), h)
    if x1 <= x0 or y1 <= y0:
        return 0
    hsv = cv2.cvtColor(np.ascontiguousarray(image_bgr[y0:y1, x0:x1]), cv2.COLOR_BGR2HSV)
    flame = (hsv[..., 0] <= 30) & (hsv[..., 1] >= 90) & (hsv[..., 2] >= 200)
    return int(flame.sum())


def _visible_workers(truth: FrameTruth, min_px: float = 6.0) -> np.ndarray:
    """Owners of person boxes that a viewer would count: mostly in frame, unhidden, not tiny."""
    keep = (
        (truth.classes == CLS_PERSON)
        & (truth.visible >= 0.5)
        & ~truth.occluded
        & ((truth.boxes[:, 3] - truth.boxes[:, 1]) >= min_px)
    )
    return truth.owner[keep]


# ------------------------------------------------------------------------------ generators
@dataclass
class _Ctx:
    site: Site
    renderer_of: Callable[[], Renderer]
    seed: int
    rng: np.random.Generator
    size: int
    index: int
    view: str = "clear"  # how this sample is drawn (VIEWS)

    @property
    def renderer(self) -> Renderer:
        """The site's renderer (built when a generator first renders from this site)."""
        return self.renderer_of()

    def aim_jitter(self, default: float) -> float:
        """Share of the FOV the aim may be off the object: larger for a ``cut`` view."""
        return float(self.rng.uniform(*GATE_CUT_JITTER)) if "cut" in self.view else default

    def motion_dps(self, fov_deg: float) -> tuple[float, float]:
        """The camera's pan/tilt speed for a ``blur`` view (the renderer smears by it over a
        1/60 s exposure), mostly along pan; (0, 0) otherwise."""
        if "blur" not in self.view:
            return (0.0, 0.0)
        length_px = float(self.rng.uniform(*GATE_BLUR_PX))
        speed = length_px * 60.0 * fov_deg / self.size
        angle = float(self.rng.uniform(-0.5, 0.5))  # radians off the pan axis
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        return (sign * speed * math.cos(angle), speed * math.sin(angle))


#: image, answer, site time, pose, and the object asked about (worker / machine / fire index)
Rendered = tuple[np.ndarray, str, float, PTZPose, int | None]
Generator = Callable[[_Ctx, str | None], Rendered | None]


def _random_t(ctx: _Ctx) -> float:
    return float(ctx.rng.uniform(0.0, ctx.site.spec.duration_s - 1.0))


def _event_t(ctx: _Ctx, kind: str) -> tuple[float, int] | None:
    """A time inside a random hazard event of ``kind``, and its worker (or fire / machine)."""
    events = [h for h in ctx.site.hazards if h.type == kind]
    if not events:
        return None
    ev = events[int(ctx.rng.integers(len(events)))]
    end = min(ev.end_s, ctx.site.spec.duration_s) - 0.5
    if end <= ev.start_s:
        return None
    t = float(ctx.rng.uniform(ev.start_s, end))
    who = {"fire_smoke": ev.fire, "zone_intrusion": ev.worker}.get(kind, ev.worker)
    return (t, int(who)) if who is not None else None


def _worker_crop(
    ctx: _Ctx,
    t: float,
    wi: int,
    frac_range: tuple[float, float] = (0.45, 0.8),
    focus: str = "person",
) -> tuple[np.ndarray, FrameTruth, PTZPose] | None:
    """A crop centred (with a little jitter) on worker ``wi``.

    ``focus="person"``: the whole worker fills ``frac`` of the height. ``focus="head"``: head and
    shoulders (0.75 m) fill ``frac`` — what the agent crops around a head detection before asking
    about a hard hat, so that the helmet is ~20 px, not ~8.
    """
    ws = ctx.site.workers_at(t)
    h = float(ctx.site.heights[wi])
    if focus == "head":
        centre = np.array([ws.xy[wi, 0], ws.xy[wi, 1], h - 0.3])
        span_m = 0.75
    else:
        centre = np.array([ws.xy[wi, 0], ws.xy[wi, 1], h * 0.5])
        span_m = h
    rng_m = _range_m(ctx.renderer, centre)
    fov = math.degrees(2 * math.atan(span_m / 2 / rng_m)) / float(ctx.rng.uniform(*frac_range))
    pose = _aim_jittered(ctx, centre, fov, ctx.aim_jitter(0.08))
    motion = ctx.motion_dps(fov)
    image, truth = _render(ctx.renderer, pose, t, ctx.size, ctx.index, ctx.rng, motion_dps=motion)
    if "cut" in ctx.view:  # partly out of view on purpose; still not hidden behind anything
        ok = _in_view_unhidden(truth, wi)
    else:
        ok = _head_clear(truth, wi) if focus == "head" else _worker_clear(truth, wi)
    return (image, truth, pose) if ok else None


def _in_view_unhidden(truth: FrameTruth, wi: int, min_visible: float = 0.3) -> bool:
    """At least ``min_visible`` of the worker is in the image and nothing hides them (a ``cut``
    view: the head or the torso may be out of it)."""
    person = (truth.classes == CLS_PERSON) & (truth.owner == wi)
    mine = truth.owner == wi
    return bool(
        person.any()
        and (truth.visible[person] >= min_visible).all()
        and not truth.occluded[mine].any()
    )


def _head_clear(truth: FrameTruth, wi: int) -> bool:
    """The worker's head is fully in the frame and neither head nor body is hidden."""
    person = (truth.classes == CLS_PERSON) & (truth.owner == wi)
    head = ((truth.classes == CLS_HEAD_HELMET) | (truth.classes == CLS_HEAD_BARE)) & (
        truth.owner == wi
    )
    if not person.any() or not head.any():
        return False
    return bool(
        (truth.visible[head] >= 0.95).all()
        and not truth.occluded[head].any()
        and not truth.occluded[person].any()
    )


def _pick_worker(ctx: _Ctx, attr: str | None, want: bool) -> tuple[float, int] | None:
    """A (time, worker) whose ``attr`` (helmet / vest) is ``want``; via hazard events for False."""
    if attr is None or want:
        t = _random_t(ctx)
        ws = ctx.site.workers_at(t)
        ok = np.ones(ctx.site.num_workers, dtype=bool) if attr is None else getattr(ws, attr)
        idx = np.flatnonzero(ok)
        return (t, int(ctx.rng.choice(idx))) if len(idx) else None
    return _event_t(ctx, "no_helmet" if attr == "helmet" else "no_vest")


def _gen_kit(attr: str) -> Generator:
    """helmet / vest questions: yes/no (hazard split) or a colour name (general split)."""

    def gen(ctx: _Ctx, target: str | None) -> Rendered | None:
        # target: "yes"/"no" = wears the item; for colour questions "none" = does not
        want = target not in ("no", "none")
        picked = _pick_worker(ctx, attr, want)
        if picked is None:
            return None
        t, wi = picked
        if attr == "helmet":
            crop = _worker_crop(ctx, t, wi, (0.6, 0.9), focus="head")
        else:
            crop = _worker_crop(ctx, t, wi, (0.65, 0.95))
        if crop is None:
            return None
        image, _truth, pose = crop
        wears = bool(getattr(ctx.site.workers_at(t), attr)[wi])
        if target in ("yes", "no"):
            return image, "yes" if wears else "no", t, pose, wi
        spec = ctx.site.spec.workers[wi]
        color = spec.helmet_color if attr == "helmet" else spec.vest_color
        return image, _color_name(color) if wears else "none", t, pose, wi

    return gen


def _gen_machine_kind(ctx: _Ctx, target: str | None) -> Rendered | None:
    machines = ctx.site.spec.machines
    if not machines:
        return None
    mi = int(ctx.rng.integers(len(machines)))
    t = _random_t(ctx)
    state = ctx.site.machine_at(mi, t)
    centre = (state.xy[0], state.xy[1], 2.5)
    span_m = float(ctx.rng.uniform(12.0, 22.0))
    fov = math.degrees(2 * math.atan(span_m / 2 / _range_m(ctx.renderer, centre)))
    pose = _pose_towards(ctx.renderer, centre, fov)
    image, truth = _render(ctx.renderer, pose, t, ctx.size, ctx.index, ctx.rng)
    mine = (truth.classes == CLS_MACHINE) & (truth.owner == mi)
    if not mine.any() or truth.visible[mine].max() < 0.3:
        return None
    # machines have no occlusion flag: require the machine's paint to show in the picture
    c0, c1 = ctx.size * 3 // 10, ctx.size * 7 // 10
    if _color_share(image[c0:c1, c0:c1], machines[mi].color) < 0.1:
        return None
    return image, machines[mi].kind, t, pose, mi


def _wide_view(ctx: _Ctx, t: float) -> tuple[np.ndarray, FrameTruth, PTZPose]:
    """A view centred on a random ground point of the site, 3°–15° wide."""
    w, d = ctx.site.spec.size_m
    point = (float(ctx.rng.uniform(0, w)), float(ctx.rng.uniform(0, d)), 1.0)
    fov = float(ctx.rng.uniform(3.0, 15.0))
    pose = _pose_towards(ctx.renderer, point, fov)
    motion = ctx.motion_dps(fov)
    image, truth = _render(
        ctx.renderer, pose, t, ctx.size, ctx.index, ctx.rng, degrade=False, motion_dps=motion
    )
    return image, truth, pose


def _gen_worker_present(ctx: _Ctx, target: str | None) -> Rendered | None:
    t = _random_t(ctx)
    if target == "yes":
        picked = _pick_worker(ctx, None, True)
        if picked is None:
            return None
        t, wi = picked
        crop = _worker_crop(ctx, t, wi, (0.15, 0.8))
        if crop is None:
            return None
        image, _, pose = crop
        return image, "yes", t, pose, wi
    image, truth, pose = _wide_view(ctx, t)
    # "no" only when nobody at all is drawn there (not even a tiny or hidden figure)
    if (truth.classes == CLS_PERSON).any():
        return None
    return image, "no", t, pose, None


def _gen_count(ctx: _Ctx, target: str | None) -> Rendered | None:
    picked = _pick_worker(ctx, None, True)
    if picked is None:
        return None
    t, wi = picked
    crop = _worker_crop(ctx, t, wi, (0.12, 0.6))
    if crop is None:
        return None
    image, truth, pose = crop
    counted = set(_visible_workers(truth).tolist())
    every = set(truth.owner[truth.classes == CLS_PERSON].tolist())
    if counted != every or len(counted) > MAX_COUNT:  # ambiguous: partly hidden or tiny figures
        return None
    return image, str(len(counted)), t, pose, None


def _zone_state(site: Site, t: float, wi: int, active_only: bool) -> tuple[bool, float]:
    """(worker ``wi`` inside a zone, distance in metres to the nearest zone's boundary) at ``t``
    — for a worker inside, to the boundary of the zone they are in.

    ``active_only``: only zones whose machine works at ``t`` count as inside; a worker inside an
    idle machine's painted zone is then neither (returned as inside with distance -1, rejected).
    """
    xy = site.workers_at(t).xy[wi]
    nearest = math.inf
    for mi, zone in enumerate(site.zones):
        d = distance_to_boundary((float(xy[0]), float(xy[1])), zone)
        if points_in_polygon(xy[None], zone)[0]:
            if active_only and not site.zone_active(mi, t):
                return True, -1.0
            return True, d
        if not active_only or site.zone_active(mi, t):
            nearest = min(nearest, d)
    return False, nearest


def _alone_at_centre(
    truth: FrameTruth, wi: int, heights: float = ZONE_CENTRE_CLEAR_HEIGHTS
) -> bool:
    """No other worker's box centre lies within ``heights`` of worker ``wi``'s height of theirs:
    "the worker in the centre" names one person."""
    person = truth.classes == CLS_PERSON
    mine = person & (truth.owner == wi)
    if not mine.any():
        return False
    box = truth.boxes[mine][0]
    centre, h = (box[:2] + box[2:]) / 2, float(box[3] - box[1])
    others = truth.boxes[person & (truth.owner != wi)]
    if len(others) == 0:
        return True
    dist = np.linalg.norm((others[:, :2] + others[:, 2:]) / 2 - centre, axis=1)
    return bool((dist > heights * h).all())


def _zone_crop(ctx: _Ctx, t: float, wi: int) -> tuple[np.ndarray, PTZPose] | None:
    """The gate's zone view: a square centred on the worker, ``ZONE_VIEW_PERSON_HEIGHTS`` of
    their height wide (±15 %, as a detection box varies), so the painted boundary around them
    shows; None when the worker is partly out of frame or hidden."""
    ws = ctx.site.workers_at(t)
    h = float(ctx.site.heights[wi])
    centre = np.array([ws.xy[wi, 0], ws.xy[wi, 1], h * 0.5])
    ang = math.degrees(2 * math.atan(h / 2 / _range_m(ctx.renderer, centre)))
    fov = ang * ZONE_VIEW_PERSON_HEIGHTS * float(ctx.rng.uniform(0.85, 1.15))
    pose = _aim_jittered(ctx, centre, fov, 0.04)
    image, truth = _render(ctx.renderer, pose, t, ctx.size, ctx.index, ctx.rng)
    return (image, pose) if _worker_clear(truth, wi) and _alone_at_centre(truth, wi) else None


def _gen_zone_worker(general: bool) -> Generator:
    """Is the worker in the centre inside a machine's exclusion zone (its painted boundary)?

    The view is the one the agent's gate cuts around a suspected intruder (:func:`_zone_crop`).
    "yes": a worker during a zone-intrusion event (inside a working machine's zone). "no": the
    same workers walking in or out just outside the line, or any worker near an active zone (the
    near misses a ground-position error turns into an alert). The hazard split keeps to the
    question's domain, workers within ``ZONE_ASK_MAX_BOUNDARY_M`` of a boundary on either side;
    the general split (``general``: painted lines, active or not) adds workers anywhere on the
    site.
    """

    def gen(ctx: _Ctx, target: str | None) -> Rendered | None:
        site = ctx.site
        events = [h for h in site.hazards if h.type == "zone_intrusion"]
        mode = float(ctx.rng.random())
        if target == "yes" or (target is None and mode < 0.5):
            if not events:
                return None
            ev = events[int(ctx.rng.integers(len(events)))]
            end = min(ev.end_s, site.spec.duration_s) - 0.5
            if end <= ev.start_s or ev.worker is None:
                return None
            t, wi = float(ctx.rng.uniform(ev.start_s, end)), int(ev.worker)
        elif events and mode < 0.75:  # walking in or out: just outside the line
            ev = events[int(ctx.rng.integers(len(events)))]
            gap = float(ctx.rng.uniform(0.3, 8.0))
            t = ev.start_s - gap if ctx.rng.random() < 0.5 else ev.end_s + gap
            if ev.worker is None or not 0.0 <= t < site.spec.duration_s - 1.0:
                return None
            wi = int(ev.worker)
        else:  # a worker near an active zone (anywhere on the site, for the general split)
            t = _random_t(ctx)
            if site.num_workers == 0:
                return None
            wi = int(ctx.rng.integers(site.num_workers))
            if not general or mode < 0.9:
                inside, dist = _zone_state(site, t, wi, active_only=not general)
                if inside or dist > ZONE_ASK_MAX_BOUNDARY_M:
                    return None
        inside, dist = _zone_state(site, t, wi, active_only=not general)
        if dist < 0:  # inside an idle machine's zone: not an intrusion, but looks like one
            return None
        # the question's domain (edge.vlm.questions): workers near a boundary, inside or out;
        # deeper inside, the line is out of view and the gate does not ask
        if (inside or not general) and dist > ZONE_ASK_MAX_BOUNDARY_M:
            return None
        answer = "yes" if inside else "no"
        if target is not None and answer != target:
            return None
        crop = _zone_crop(ctx, t, wi)
        if crop is None:
            return None
        return crop[0], answer, t, crop[1], wi

    return gen


def _gen_fire(ctx: _Ctx, target: str | None) -> Rendered | None:
    site = ctx.site
    if target == "yes":
        ev = _event_t(ctx, "fire_smoke")
        if ev is None:
            return None
        t, fi = ev
        fire = next(f for f in site.fires_at(t) if f.index == fi)
        height = fire.plume_m + fire.size_m
        point = (fire.xy[0], fire.xy[1], height * float(ctx.rng.uniform(0.2, 0.5)))
        ang = math.degrees(2 * math.atan(height / 2 / _range_m(ctx.renderer, point)))
        fov = ang / float(ctx.rng.uniform(0.35, 0.9))
        pose = _aim_jittered(ctx, point, fov, ctx.aim_jitter(0.0))
        motion = ctx.motion_dps(fov)
        image, truth = _render(
            ctx.renderer, pose, t, ctx.size, ctx.index, ctx.rng, motion_dps=motion
        )
        fire_box = truth.classes == CLS_FIRE
        min_visible = 0.2 if "cut" in ctx.view else 0.5
        if not fire_box.any() or truth.visible[fire_box].max() < min_visible:
            return None
        # fires have no occlusion flag: the flames must show (not hidden behind a building)
        if _flame_pixels(image, truth.boxes[fire_box][0]) < 3:
            return None
        return image, "yes", t, pose, fi
    t = _random_t(ctx)
    if ctx.rng.random() < 0.5:
        picked = _pick_worker(ctx, None, True)
        if picked is None:
            return None
        t, wi = picked
        crop = _worker_crop(ctx, t, wi, (0.2, 0.8))
        if crop is None:
            return None
        image, truth, pose = crop
    else:
        image, truth, pose = _wide_view(ctx, t)
    if (truth.classes == CLS_FIRE).any():
        return None
    return image, "no", t, pose, None


def _gen_centre_object(ctx: _Ctx, target: str | None) -> Rendered | None:
    """A worker, a fire or bare ground in the centre (machines have their own question)."""
    if target == "worker":
        got = _gen_worker_present(ctx, "yes")
        if got is None:
            return None
        return got[0], "worker", got[2], got[3], got[4]
    if target == "fire":
        got = _gen_fire(ctx, "yes")
        if got is None:
            return None
        return got[0], "fire", got[2], got[3], got[4]
    t = _random_t(ctx)
    image, truth, pose = _wide_view(ctx, t)
    if len(truth.classes):  # nothing at all: no person, machine or fire in view
        return None
    return image, "ground", t, pose, None


GENERATORS: dict[str, Generator] = {
    "helmet_color": _gen_kit("helmet"),
    "vest_color": _gen_kit("vest"),
    "machine_kind": _gen_machine_kind,
    "worker_present": _gen_worker_present,
    "count_workers": _gen_count,
    "centre_object": _gen_centre_object,
    "worker_in_zone": _gen_zone_worker(general=True),
    "no_helmet": _gen_kit("helmet"),
    "no_vest": _gen_kit("vest"),
    "zone_intrusion": _gen_zone_worker(general=False),
    "fire_smoke": _gen_fire,
}


def _question(kind: str) -> str:
    if kind in HAZARD_QUESTIONS:
        return HAZARD_QUESTIONS[kind].question
    return GENERAL_QUESTIONS[kind]


def _plan(
    split: str, num: int, weights: Mapping[str, int] | None = None
) -> list[tuple[str, str | None]]:
    """(question type, wanted answer or None) for every sample, interleaved; ``weights`` (general
    split): a type drawn N times per cycle of the types instead of once."""
    out: list[tuple[str, str | None]] = []
    if split == "hazard":
        for i in range(num):
            kind = HAZARD_TYPES[i % len(HAZARD_TYPES)]
            out.append((kind, "yes" if (i // len(HAZARD_TYPES)) % 2 == 0 else "no"))
        return out
    cycle = [t for t in GENERAL_TYPES for _ in range((weights or {}).get(t, 1))]
    drawn: Counter[str] = Counter()
    for i in range(num):
        kind = cycle[i % len(cycle)]
        k = drawn[kind]  # this type's samples so far: its answers alternate over them
        drawn[kind] += 1
        target: str | None = None
        if kind in ("helmet_color", "vest_color"):
            target = "none" if k % 3 == 0 else "wears"  # a third without the item
        elif kind in ("worker_present", "worker_in_zone"):
            target = "yes" if k % 2 == 0 else "no"
        elif kind == "centre_object":
            target = ("worker", "fire", "ground")[k % 3]
        out.append((kind, target))
    return out


# -------------------------------------------------------------------------------- building
def build_dataset(
    split: str,
    num: int,
    seeds: Sequence[int],
    out: Path,
    *,
    size: int = IMAGE_SIZE_PX,
    progress: bool = True,
    tries_per_seed: int = 30,
    gate_views: float = 0.0,
    weights: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Render ``num`` samples of ``split`` from ``seeds`` into ``out``; returns the summary.

    ``weights`` (general split only): question type → how many times it is drawn per cycle of
    the types (default 1 each), e.g. ``{"worker_in_zone": 3}`` for a base that sees the zone
    relation three times as often.

    ``gate_views``: the share of :data:`GATE_VIEW_TYPES` samples drawn as the gate may see
    them (see the module docstring); their view is drawn from a generator of its own, so the
    clear samples are the same as with ``gate_views=0``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if not 0.0 <= gate_views <= 1.0:
        raise ValueError(f"--gate-views must be within 0-1, not {gate_views}")
    if num <= 0:
        raise ValueError(f"--num must be positive, not {num}")
    for kind, weight in (weights or {}).items():
        if split != "general" or kind not in GENERAL_TYPES:
            raise ValueError(
                f"--weight {kind}={weight}: weights are for the general split's question types "
                f"({', '.join(GENERAL_TYPES)})"
            )
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(f"--weight {kind}={weight}: must be a whole number >= 1")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    plan = _plan(split, num, weights)
    cache = _SiteCache()
    samples: list[VQASample] = []
    bar = _progress(num, f"vqa {split}", progress)
    try:
        for i, (kind, target) in enumerate(plan):
            home = i * len(seeds) // num  # contiguous blocks of samples per seed
            rendered = None
            seed = seeds[home]
            for hop in range(len(seeds)):
                seed = seeds[(home + hop) % len(seeds)]
                site, renderer_of = cache.get(seed)
                rng = np.random.default_rng([seed, i, hop])
                view = "clear"
                if kind in GATE_VIEW_TYPES and gate_views > 0.0:
                    view_rng = np.random.default_rng([seed, i, hop, 1])
                    if view_rng.random() < gate_views:
                        names = list(GATE_VIEW_SHARES)
                        shares = list(GATE_VIEW_SHARES.values())
                        view = str(view_rng.choice(names, p=shares))
                ctx = _Ctx(site, renderer_of, seed, rng, size, i, view)
                want = None if target == "wears" else target
                for _ in range(tries_per_seed):
                    rendered = GENERATORS[kind](ctx, want)
                    if rendered is not None and (target != "wears" or rendered[1] != "none"):
                        break
                    rendered = None
                if rendered is not None:
                    break
            if rendered is None:
                raise ValueError(
                    f"no {kind} sample with answer {target!r} on seeds {seeds[0]}..{seeds[-1]}: "
                    "use more seeds"
                )
            image, answer, t, pose, obj = rendered
            name = f"images/{i:06d}.png"
            cv2.imwrite(str(out / name), image)
            samples.append(
                VQASample(
                    id=f"{split}-{i:06d}",
                    image=name,
                    question=_question(kind),
                    answer=normalize_answer(answer),
                    type=kind,
                    seed=seed,
                    t=round(t, 3),
                    pan_deg=round(pose.pan_deg, 4),
                    tilt_deg=round(pose.tilt_deg, 4),
                    zoom=round(pose.zoom, 4),
                    target=obj,
                    view=ctx.view,
                )
            )
            bar.update(1)
    finally:
        bar.close()
    with open(out / "vqa.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(asdict(s)) + "\n")
    summary = summarize(samples)
    summary.update(
        {
            "schema": QUESTION_SET_VERSION,
            "split": split,
            "seeds": [min(seeds), max(seeds)],
            "held_out": min(seeds) >= HELD_OUT_SEED_MIN,
            "image_size_px": size,
            "gate_views": gate_views,
            "weights": dict(weights or {}),
            "views": dict(Counter(s.view for s in samples)),
        }
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def summarize(samples: Sequence[VQASample]) -> dict[str, Any]:
    """Counts, answer distribution and majority-class baseline (overall and per type)."""
    by_type: dict[str, Counter[str]] = {}
    for s in samples:
        by_type.setdefault(s.type, Counter())[s.answer] += 1
    per_type = {
        k: {
            "n": sum(c.values()),
            "answers": dict(c.most_common()),
            "majority_answer": c.most_common(1)[0][0],
            "majority_baseline": round(c.most_common(1)[0][1] / sum(c.values()), 4),
        }
        for k, c in sorted(by_type.items())
    }
    majority = sum(c.most_common(1)[0][1] for c in by_type.values())
    return {
        "n": len(samples),
        "majority_baseline": round(majority / max(len(samples), 1), 4),
        "per_type": per_type,
    }


def load_samples(folder: Path) -> list[VQASample]:
    """The samples of a dataset folder (``vqa.jsonl``), with a clear error when it is not one."""
    path = Path(folder) / "vqa.jsonl"
    if not path.is_file():
        raise ValueError(
            f"{folder}: not a VQA dataset (no vqa.jsonl); build one with "
            "`sitehawk-train dataset vqa`"
        )
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                out.append(VQASample(**json.loads(line)))
            except (TypeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{line_no}: bad sample: {exc}") from None
    return out


def load_image_rgb(folder: Path, sample: VQASample) -> np.ndarray:
    """The sample's image as an RGB uint8 array."""
    path = Path(folder) / sample.image
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot read image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def majority_baseline(samples: Sequence[VQASample]) -> float:
    """Accuracy of answering each question type with its most common answer."""
    return float(summarize(samples)["majority_baseline"])


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="q", dynamic_ncols=True)
