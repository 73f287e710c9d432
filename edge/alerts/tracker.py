"""Tracks of people, machines and fire/smoke in the camera's pan/tilt (world) coordinates.

A PTZ camera's pixels move whenever it pans or zooms, so a tracker in image coordinates would
split one worker into a new track at every camera move. :class:`WorldTracker` places each
detection in pan/tilt through the camera pose (:class:`edge.geometry.CameraView`) and associates
it with tracks there:

* **Association** is greedy on a cost matrix (numpy; scipy may be absent on the device): the
  angular distance between a detection's box centre and a track's last centre, divided by the
  object's angular height, so "near" means "within about one body" for a person at 10 m and at
  100 m alike, and at any zoom. The gate widens with the time a track was not seen (a walking
  person covers ~0.8 body heights a second), up to a cap.
* **Attributes** of people: heads (``head_helmet`` / ``head_bare``) and vests are assigned to the
  person box that contains them. A head counts as helmet evidence only when it is big enough to
  judge — the observation builder's rule: ``verify_head_px`` (16) pixels in a 1280-wide reference
  frame, from the person box (``HEAD_FRACTION`` of its height) or the head box, whichever is
  larger. Each counted head adds its detection score to the helmet or bare side. Vests work the
  same way on the torso (``TORSO_FRACTION``): a vest inside the torso at judging resolution is
  vest evidence; a fully visible, resolvable torso without one is no-vest evidence (weighted by
  the person's score). Evidence decays with ``evidence_half_life_s`` so a helmet taken off shows.
* **Ground position** comes from the box's bottom centre on the flat-ground model (skipped when
  the box is cut by the frame's bottom edge), smoothed.
* **Lifetime**: a track that is in view, big enough to be detected, and yet not seen for
  ``lost_in_view_s`` dies. One outside the current view is not "unseen", only out of view; it is
  kept and aged out after ``out_of_view_s``.
* **Machines** are *moving* when their box in pan/tilt changes over a few seconds beyond the
  detector's jitter (a working excavator slews and swings its arm; a truck drives): the spread of
  one-second box averages over ``motion_window_s``, relative to the box size.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge.geometry import REFERENCE_WIDTH_PX, CameraView, PTZPose, direction, focal_px, wrap_deg
from edge.matching import greedy_pairs
from edge.perception.detection import Detection
from edge.policy.observation import HEAD_FRACTION, TORSO_FRACTION, ObservationConfig
from firmware_config.camera import CameraMountSpec

TRACKED_KINDS = ("person", "machine", "fire_smoke")

#: Head centre above a person box's centre, as a fraction of the box height.
_HEAD_OFFSET = 0.5 - HEAD_FRACTION / 2


@dataclass(frozen=True)
class TrackerConfig:
    """Association, lifetime, attribute and motion constants of the :class:`WorldTracker`."""

    gate_sizes: float = 1.0  # a detection may join a track within this many object heights
    max_gate_sizes: float = 3.0  # cap of the gate after the widening below
    person_gate_growth_per_s: float = 0.8  # ~1.4 m/s walking over a 1.75 m body
    machine_gate_growth_per_s: float = 0.6
    fire_gate_growth_per_s: float = 0.2
    max_size_ratio: float = 2.0  # angular sizes of a track and its detection differ at most so
    lone_head_gate_sizes: float = 0.5  # a head without a person box joins a track this close
    min_hits: int = 3  # detections before a track is confirmed (rules use confirmed tracks)
    lost_in_view_s: float = 2.0  # confirmed track in view and detectable, yet unseen: dies
    tentative_lost_s: float = 1.0  # unconfirmed track unseen this long (anywhere): dies
    out_of_view_s: float = 60.0  # any track not seen for this long dies
    detectable_px: float = 12.0  # reference px an object needs before a miss counts against it
    verify_head_px: float = ObservationConfig.verify_head_px
    verify_torso_px: float = 16.0
    verify_smoke_px: float = ObservationConfig.verify_smoke_px
    evidence_half_life_s: float = 15.0
    ground_smoothing: float = 0.5  # weight of a new ground fix in the running estimate
    size_smoothing: float = 0.3  # weight of a new angular size in the running estimate
    edge_margin_px: float = 2.0  # a box this close to the frame border counts as cut off
    motion_window_s: float = 8.0
    motion_bin_s: float = 1.0
    motion_min_bins: int = 4
    moving_on: float = 0.25  # spread of binned boxes / box size that means "moving"
    moving_off: float = 0.15  # below this it stops (hysteresis)
    moving_hold_s: float = 30.0  # keep the last verdict this long while the machine is unseen


@dataclass
class AttributeEvidence:
    """Score-weighted, time-decayed votes on whether a person wears an item (helmet, vest)."""

    worn: float = 0.0
    missing: float = 0.0
    num_judged: int = 0  # frames in which the item could be judged
    last_judged_t: float | None = None

    def decay(self, factor: float) -> None:
        self.worn *= factor
        self.missing *= factor

    def missing_probability(self, prior_weight: float = 1.0) -> float:
        """Share of the evidence saying "missing", shrunk towards 0 by ``prior_weight`` votes."""
        return self.missing / (self.missing + self.worn + prior_weight)


@dataclass
class Track:
    """One tracked object. Angles are the box centre at the last sighting."""

    id: str
    kind: str  # "person", "machine" or "fire_smoke"
    pan_deg: float
    tilt_deg: float
    height_deg: float  # angular height (zoom-invariant size), smoothed
    width_deg: float
    score: float  # running average of detection scores
    first_seen_t: float
    last_seen_t: float
    hits: int = 1
    confirmed: bool = False
    seen_now: bool = True  # detected in the latest update
    bbox_norm: tuple[float, float, float, float] | None = None  # in the frame where last seen
    zoom: float = 1.0  # zoom of that frame
    size_ref_px: float = 0.0  # box height in reference pixels in that frame
    ground_xy: tuple[float, float] | None = None  # flat-ground estimate, site metres
    ground_t: float | None = None  # time of the last ground fix
    unseen_in_view_s: float = 0.0
    in_view: bool = True  # in the latest frame and big enough to be detected there
    helmet: AttributeEvidence = field(default_factory=AttributeEvidence)
    vest: AttributeEvidence = field(default_factory=AttributeEvidence)
    # person: head detections whose centre lies in the box (or just above it: a head may stick
    # out) in the latest frame it was seen — 1 for one visible worker, 0 for a box whose upper
    # body is hidden, 2+ for a box spanning workers who stand one behind the other
    heads_in_box: int | None = None
    smoke_evidence: float = 0.0  # fire: decayed score sum at verifying resolution
    moving: bool = False  # machine: box changing beyond jitter
    motion: float = 0.0  # machine: last motion statistic
    motion_t: float | None = None  # machine: when the motion statistic was last computed
    box_history: deque[tuple[float, tuple[float, float, float, float]]] = field(
        default_factory=deque, repr=False
    )


@dataclass
class _Measurement:
    """One detection placed in pan/tilt."""

    det: Detection
    pan: float
    tilt: float
    height_deg: float
    width_deg: float
    box_deg: tuple[float, float, float, float]  # pan_left, tilt_bottom, pan_right, tilt_top
    ground: tuple[float, float] | None
    cut_top: bool
    cut_bottom: bool
    cut_side: bool


def containment(inner: tuple[float, ...], outer: tuple[float, ...]) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    x0, y0 = max(inner[0], outer[0]), max(inner[1], outer[1])
    x1, y1 = min(inner[2], outer[2]), min(inner[3], outer[3])
    area = max((inner[2] - inner[0]) * (inner[3] - inner[1]), 1e-9)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / area


def angular_distance_deg(pan_a: float, tilt_a: float, pan_b: float, tilt_b: float) -> float:
    """Approximate angle between two pan/tilt directions (pan shrinks with cos tilt)."""
    d_pan = float(wrap_deg(pan_b - pan_a)) * math.cos(math.radians((tilt_a + tilt_b) / 2))
    return math.hypot(d_pan, tilt_b - tilt_a)


class WorldTracker:
    """Tracks of one camera in pan/tilt; feed it every frame's detections with the pose."""

    def __init__(
        self,
        camera: CameraMountSpec,
        config: TrackerConfig | None = None,
        *,
        session: str | None = None,
    ):
        self.camera = camera
        self.config = config or TrackerConfig()
        self.position = (
            float(camera.position[0]),
            float(camera.position[1]),
            float(camera.height_m),
        )
        # track ids carry a per-instance token, so ids of a restarted agent never collide with
        # the ids its predecessor used in persisted alert events
        self.session = session if session is not None else uuid.uuid4().hex[:6]
        self.tracks: list[Track] = []
        self._next_id = 1
        self._t_prev: float | None = None

    def view(self, pose: PTZPose, width: int, height: int) -> CameraView:
        """The camera view of a frame of this size at this pose."""
        return CameraView(
            self.position,
            float(self.camera.heading_deg),
            pose,
            width,
            height,
            self.camera.limits.fov_h_1x_deg,
        )

    def get(self, track_id: str) -> Track | None:
        return next((tr for tr in self.tracks if tr.id == track_id), None)

    # ------------------------------------------------------------------ main entry
    def update(
        self, detections: list[Detection], pose: PTZPose, width: int, height: int, t: float
    ) -> list[Track]:
        """Fold one frame's detections (taken at ``pose``, ``t`` seconds) into the tracks."""
        cfg = self.config
        view = self.view(pose, width, height)
        dt = 0.0 if self._t_prev is None else max(0.0, t - self._t_prev)
        self._t_prev = t
        decay = 0.5 ** (dt / cfg.evidence_half_life_s)
        for tr in self.tracks:
            tr.seen_now = False
            tr.helmet.decay(decay)
            tr.vest.decay(decay)
            tr.smoke_evidence *= decay

        tracked = [d for d in detections if d.cls in TRACKED_KINDS]
        measurements = self._measure(tracked, view)
        matched: dict[int, Track] = {}  # index into `tracked` -> track
        for kind in TRACKED_KINDS:
            idx = [k for k, d in enumerate(tracked) if d.cls == kind]
            matched.update(self._associate(kind, [measurements[k] for k in idx], idx, t))
        for k, tr in matched.items():
            self._apply(tr, measurements[k], view, t)

        people = [(k, tr) for k, tr in matched.items() if tr.kind == "person"]
        self._attributes(people, tracked, detections, view, t)
        for tr in self.tracks:
            if tr.kind == "machine":
                self._update_motion(tr, t)
        self._age(view, dt, t)
        return list(self.tracks)

    # ------------------------------------------------------------------ steps
    def _measure(self, dets: list[Detection], view: CameraView) -> list[_Measurement]:
        if not dets:
            return []
        cfg = self.config
        boxes = np.array([d.bbox for d in dets], dtype=np.float64)
        x0, y0, x1, y1 = boxes.T
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # centre, top, bottom, left and right mid-points of every box
        uv = np.stack(
            [
                np.stack([cx, cy], -1),
                np.stack([cx, y0], -1),
                np.stack([cx, y1], -1),
                np.stack([x0, cy], -1),
                np.stack([x1, cy], -1),
            ],
            1,
        )
        pans, tilts = view.pixel_to_pan_tilt(uv)
        ground = view.pixel_to_ground(uv[:, 2])
        m = cfg.edge_margin_px
        out = []
        for k, d in enumerate(dets):
            pan_c, tilt_c = float(pans[k, 0]), float(tilts[k, 0])
            height_deg = max(float(tilts[k, 1] - tilts[k, 2]), 1e-6)
            width_deg = abs(float(wrap_deg(pans[k, 4] - pans[k, 3]))) * math.cos(
                math.radians(tilt_c)
            )
            gx, gy = float(ground[k, 0]), float(ground[k, 1])
            out.append(
                _Measurement(
                    d,
                    pan_c,
                    tilt_c,
                    height_deg,
                    max(width_deg, 1e-6),
                    (
                        float(pans[k, 3]),
                        float(tilts[k, 2]),
                        float(pans[k, 4]),
                        float(tilts[k, 1]),
                    ),
                    (gx, gy) if math.isfinite(gx) and math.isfinite(gy) else None,
                    cut_top=d.bbox[1] <= m,
                    cut_bottom=d.bbox[3] >= view.height - m,
                    cut_side=d.bbox[0] <= m or d.bbox[2] >= view.width - m,
                )
            )
        return out

    def _gate_growth(self, kind: str) -> float:
        cfg = self.config
        return {
            "person": cfg.person_gate_growth_per_s,
            "machine": cfg.machine_gate_growth_per_s,
        }.get(kind, cfg.fire_gate_growth_per_s)

    def _associate(
        self, kind: str, meas: list[_Measurement], idx: list[int], t: float
    ) -> dict[int, Track]:
        """Greedy assignment by size-scaled angular distance; new tracks for the rest."""
        cfg = self.config
        tracks = [tr for tr in self.tracks if tr.kind == kind]
        out: dict[int, Track] = {}
        if tracks and meas:
            t_pan = np.array([tr.pan_deg for tr in tracks])[:, None]
            t_tilt = np.array([tr.tilt_deg for tr in tracks])[:, None]
            t_size = np.array([tr.height_deg for tr in tracks])[:, None]
            m_pan = np.array([m.pan for m in meas])[None, :]
            m_tilt = np.array([m.tilt for m in meas])[None, :]
            m_size = np.array([m.height_deg for m in meas])[None, :]
            d_pan = np.asarray(wrap_deg(m_pan - t_pan)) * np.cos(np.radians((m_tilt + t_tilt) / 2))
            cost = np.hypot(d_pan, m_tilt - t_tilt) / np.maximum(np.maximum(t_size, m_size), 1e-6)
            unseen_s = np.array([t - tr.last_seen_t for tr in tracks])[:, None]
            gate = np.minimum(
                cfg.max_gate_sizes, cfg.gate_sizes + self._gate_growth(kind) * unseen_s
            )
            # sizes must agree; a box cut by the frame border may only be smaller
            cut = np.array([m.cut_top or m.cut_bottom or m.cut_side for m in meas])[None, :]
            too_big = m_size > cfg.max_size_ratio * t_size
            too_small = (t_size > cfg.max_size_ratio * m_size) & ~cut
            cost = np.where((cost <= gate) & ~too_big & ~too_small, cost, np.inf)
            order = np.argsort(cost, axis=None)
            finite = int(np.isfinite(cost).sum())  # the finite costs sort first
            ranked = (divmod(int(flat), len(meas)) for flat in order[:finite])
            for ti, mi in greedy_pairs(ranked):
                out[idx[mi]] = tracks[ti]
        for mi, m in enumerate(meas):
            if idx[mi] not in out:
                tr = Track(
                    id=f"{kind}-{self.session}-{self._next_id}",
                    kind=kind,
                    pan_deg=m.pan,
                    tilt_deg=m.tilt,
                    height_deg=m.height_deg,
                    width_deg=m.width_deg,
                    score=m.det.score,
                    first_seen_t=t,
                    last_seen_t=t,
                    hits=0,  # _apply counts this first sighting
                )
                self._next_id += 1
                self.tracks.append(tr)
                out[idx[mi]] = tr
        return out

    def _apply(self, tr: Track, m: _Measurement, view: CameraView, t: float) -> None:
        cfg = self.config
        a = cfg.size_smoothing
        if tr.hits == 0:
            tr.height_deg, tr.width_deg = m.height_deg, m.width_deg
        elif not (m.cut_top or m.cut_bottom or m.cut_side):  # a cut box understates the size
            tr.height_deg = (1 - a) * tr.height_deg + a * m.height_deg
            tr.width_deg = (1 - a) * tr.width_deg + a * m.width_deg
        tr.score = m.det.score if tr.hits == 0 else 0.7 * tr.score + 0.3 * m.det.score
        tr.pan_deg, tr.tilt_deg = m.pan, m.tilt
        tr.hits += 1
        tr.confirmed = tr.confirmed or tr.hits >= cfg.min_hits
        tr.last_seen_t = t
        tr.seen_now = True
        tr.unseen_in_view_s = 0.0
        x0, y0, x1, y1 = m.det.bbox
        w, h = view.width, view.height
        tr.bbox_norm = (
            min(max(x0 / w, 0.0), 1.0),
            min(max(y0 / h, 0.0), 1.0),
            min(max(x1 / w, 0.0), 1.0),
            min(max(y1 / h, 0.0), 1.0),
        )
        tr.zoom = view.pose.zoom
        tr.size_ref_px = m.det.height * REFERENCE_WIDTH_PX / w
        if m.ground is not None and not m.cut_bottom:
            g = cfg.ground_smoothing
            fresh = tr.ground_t is not None and t - tr.ground_t <= 2.0
            if tr.ground_xy is None or not fresh:
                tr.ground_xy = m.ground
            else:
                tr.ground_xy = (
                    (1 - g) * tr.ground_xy[0] + g * m.ground[0],
                    (1 - g) * tr.ground_xy[1] + g * m.ground[1],
                )
            tr.ground_t = t
        if tr.kind == "fire_smoke" and tr.size_ref_px >= cfg.verify_smoke_px:
            tr.smoke_evidence += m.det.score
        if tr.kind == "machine" and not (m.cut_top or m.cut_bottom or m.cut_side):
            tr.box_history.append((t, m.box_deg))

    def _attributes(
        self,
        people: list[tuple[int, Track]],
        tracked: list[Detection],
        detections: list[Detection],
        view: CameraView,
        t: float,
    ) -> None:
        """Assign heads and vests to person boxes and add the evidence they give."""
        cfg = self.config
        ref = REFERENCE_WIDTH_PX / view.width
        heads = [d for d in detections if d.cls in ("head_helmet", "head_bare")]
        vests = [d for d in detections if d.cls == "vest"]
        boxes = [tracked[k].bbox for k, _ in people]

        def owner(part: Detection, band: tuple[float, float]) -> int | None:
            """Index of the person box holding ``part`` with its centre in the height ``band``."""
            best, best_key = None, (0.5, -math.inf)
            cy = part.center[1]
            for j, (x0, y0, x1, y1) in enumerate(boxes):
                h = y1 - y0
                if not (y0 + band[0] * h <= cy <= y0 + band[1] * h):
                    continue
                key = (containment(part.bbox, (x0, y0, x1, y1)), -(x1 - x0) * h)
                if key > best_key:  # most contained, then the smallest box
                    best, best_key = j, key
            return best

        heads_of: dict[int, list[Detection]] = {}
        lone: list[Detection] = []
        for hd in heads:
            j = owner(hd, (-0.1, 0.4))
            if j is None:
                lone.append(hd)
            else:
                heads_of.setdefault(j, []).append(hd)
        vests_of: dict[int, list[Detection]] = {}
        for v in vests:
            j = owner(v, (0.15, 0.8))
            if j is not None:
                vests_of.setdefault(j, []).append(v)

        for j, (k, tr) in enumerate(people):
            person = tracked[k]
            x0, y0, x1, y1 = person.bbox
            top = y0 - 0.1 * (y1 - y0)  # a head may stick out a little, as owner()'s band
            tr.heads_in_box = sum(
                x0 <= hd.center[0] <= x1 and top <= hd.center[1] <= y1 for hd in heads
            )
            head_from_body = person.height * ref * HEAD_FRACTION
            judged = False
            for hd in heads_of.get(j, []):
                if max(head_from_body, hd.height * ref) >= cfg.verify_head_px:
                    judged = True
                    if hd.cls == "head_helmet":
                        tr.helmet.worn += hd.score
                    else:
                        tr.helmet.missing += hd.score
            if judged:
                tr.helmet.num_judged += 1
                tr.helmet.last_judged_t = t
            if person.height * ref * TORSO_FRACTION >= cfg.verify_torso_px:
                mine = vests_of.get(j, [])
                cut = (
                    person.bbox[0] <= cfg.edge_margin_px
                    or person.bbox[1] <= cfg.edge_margin_px
                    or person.bbox[2] >= view.width - cfg.edge_margin_px
                    or person.bbox[3] >= view.height - cfg.edge_margin_px
                )
                if mine:
                    tr.vest.worn += max(v.score for v in mine)
                elif not cut:  # absence only counts when the whole torso is in the frame
                    tr.vest.missing += person.score
                if mine or not cut:
                    tr.vest.num_judged += 1
                    tr.vest.last_judged_t = t
        if lone:
            self._lone_heads(lone, view, t)

    def _lone_heads(self, heads: list[Detection], view: CameraView, t: float) -> None:
        """A head with no person box around it still tells about the nearest person track."""
        cfg = self.config
        ref = REFERENCE_WIDTH_PX / view.width
        people = [tr for tr in self.tracks if tr.kind == "person"]
        if not people:
            return
        pans, tilts = view.pixel_to_pan_tilt(np.array([hd.center for hd in heads]))
        for hd, pan, tilt in zip(heads, np.atleast_1d(pans), np.atleast_1d(tilts), strict=True):
            if hd.height * ref < cfg.verify_head_px:
                continue
            best, best_cost = None, cfg.lone_head_gate_sizes
            for tr in people:
                head_tilt = tr.tilt_deg + _HEAD_OFFSET * tr.height_deg
                dist = angular_distance_deg(tr.pan_deg, head_tilt, float(pan), float(tilt))
                cost = dist / max(tr.height_deg, 1e-6)
                if cost <= best_cost:
                    best, best_cost = tr, cost
            if best is not None:
                if hd.cls == "head_helmet":
                    best.helmet.worn += hd.score
                else:
                    best.helmet.missing += hd.score
                best.helmet.num_judged += 1
                best.helmet.last_judged_t = t

    def _update_motion(self, tr: Track, t: float) -> None:
        cfg = self.config
        hist = tr.box_history
        while hist and t - hist[0][0] > cfg.motion_window_s:
            hist.popleft()
        keys = np.array([math.floor(ts / cfg.motion_bin_s) for ts, _ in hist], dtype=np.int64)
        bins, counts = np.unique(keys, return_counts=True)
        # a bin with a few samples (the window's ragged ends) is mostly jitter: leave it out
        full = bins[counts >= max(2.0, 0.5 * float(np.median(counts)))] if len(bins) else bins
        if len(full) >= cfg.motion_min_bins:
            arr = np.array([b for _, b in hist])
            ref_pan = arr[0, 0]
            arr[:, 0] = ref_pan + np.asarray(wrap_deg(arr[:, 0] - ref_pan))
            arr[:, 2] = ref_pan + np.asarray(wrap_deg(arr[:, 2] - ref_pan))
            width = max(float(np.median(arr[:, 2] - arr[:, 0])), 1e-6)
            height = max(float(np.median(arr[:, 3] - arr[:, 1])), 1e-6)
            means = np.array([arr[keys == b].mean(0) for b in full])
            spread = means.max(0) - means.min(0)
            # pan coordinates over the box's pan width, tilt coordinates over its height
            tr.motion = float(max(spread[0] / width, spread[2] / width, *(spread[[1, 3]] / height)))
            threshold = cfg.moving_off if tr.moving else cfg.moving_on
            tr.moving = tr.motion >= threshold
            tr.motion_t = t
        elif tr.motion_t is not None and t - tr.motion_t > cfg.moving_hold_s:
            tr.moving = False

    def _in_view_and_detectable(self, tr: Track, view: CameraView, f_ref: float) -> bool:
        if math.radians(tr.height_deg) * f_ref < self.config.detectable_px:
            return False
        point = np.asarray(self.position) + 10.0 * direction(
            view.heading_deg + tr.pan_deg, tr.tilt_deg
        )
        uv, z = view.project(point)
        return bool(z > 0 and 0 <= uv[0] <= view.width and 0 <= uv[1] <= view.height)

    def _age(self, view: CameraView, dt: float, t: float) -> None:
        cfg = self.config
        f_ref = focal_px(REFERENCE_WIDTH_PX, view.pose.zoom, view.fov_h_1x_deg)
        alive = []
        for tr in self.tracks:
            in_view = tr.seen_now or self._in_view_and_detectable(tr, view, f_ref)
            # only time between two frames that both showed the spot counts as "unseen"
            if not tr.seen_now and in_view and tr.in_view:
                tr.unseen_in_view_s += dt
            tr.in_view = in_view
            unseen_s = t - tr.last_seen_t
            if tr.confirmed:
                dead = tr.unseen_in_view_s > cfg.lost_in_view_s or unseen_s > cfg.out_of_view_s
            else:
                dead = unseen_s > cfg.tentative_lost_s
            if not dead:
                alive.append(tr)
        self.tracks = alive
