"""The overview picture of a virtual site at one instant, as ``sitehawk-edge render`` draws it.

One BGR image, top to bottom: a header (site, time, workers, machines, active hazards); the
panorama of everything the PTZ camera can see, with workers and hazards marked and the footprints
of the PTZ views drawn on it, beside a plan view (north up) of the site with the camera's fields of
view; a strip of PTZ views at several zooms aimed at an active hazard, each captioned with whether
the hazard is resolvable in it; and a legend. :func:`render_overview` returns the picture with the
text summary of what it shows.

Every view is rendered without sensor noise: the picture is about coverage against resolution,
and it is the same, byte for byte, for the same site, time and width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge.geometry import PTZPose, fov_h_deg, pan_tilt_of_point
from edge.sim.panorama import HAZARD_COLORS, WORKER_OK_COLOR, render_panorama
from edge.sim.render import Renderer
from edge.sim.spec import SiteSpec
from edge.sim.world import HEAD_RADIUS_M, TORSO_BOTTOM_M, TORSO_TOP_M, HazardEvent, Site

#: Zooms of the PTZ views when the caller names none: coverage against resolution at a glance.
DEFAULT_ZOOMS = (1.0, 4.0, 12.0, 30.0)
#: Footprint / frame colour of each PTZ view (BGR), in the order of the zooms.
VIEW_COLORS = ((255, 255, 255), (255, 255, 0), (255, 160, 40), (170, 110, 255))
#: Narrower pictures do not fit the header, captions and legend.
MIN_WIDTH_PX = 480
#: Which active hazard the zoom strip aims at first.
TARGET_PREFERENCE = ("no_helmet", "no_vest", "zone_intrusion", "fire_smoke")
#: The part of a hazard that must be resolved to see it.
PART_OF_HAZARD = {
    "no_helmet": "head",
    "no_vest": "torso",
    "zone_intrusion": "person",
    "fire_smoke": "smoke",
}
BACKGROUND = (32, 30, 28)


@dataclass(frozen=True)
class Overview:
    """The overview picture of a site at one instant, and what it shows in words."""

    image: np.ndarray
    """The picture: BGR, uint8, ``width_px`` wide."""
    target: HazardEvent | None
    """The hazard the PTZ views are aimed at; None when none is active."""
    summary: tuple[str, ...]
    """Lines of text: the site, the hazards active at ``t``, where the PTZ views are aimed."""


def render_overview(
    site: Site,
    t: float,
    width_px: int = 1920,
    *,
    source: str | None = None,
    zooms: Sequence[float] = DEFAULT_ZOOMS,
) -> Overview:
    """Draw the overview of ``site`` at site time ``t`` (s), ``width_px`` wide.

    ``source`` says in the header where the site came from (``"seed 7"``, a file name; default:
    the site's name). ``zooms`` are the zooms of the PTZ views, at most ``len(VIEW_COLORS)``;
    those above the camera's maximum are clipped to it.
    """
    spec = site.spec
    if width_px < MIN_WIDTH_PX:
        raise ValueError(f"width_px must be at least {MIN_WIDTH_PX}, got {width_px}")
    if not 0.0 <= t <= spec.duration_s:
        raise ValueError(f"t must lie in 0..{spec.duration_s:g} s (the site's duration), got {t:g}")
    if not 1 <= len(zooms) <= len(VIEW_COLORS) or min(zooms) < 1.0:
        raise ValueError(f"zooms must be 1 to {len(VIEW_COLORS)} values >= 1, got {tuple(zooms)}")
    renderer = Renderer(site)
    image, target = _compose(
        renderer, site, t, width_px, spec.name if source is None else source, zooms
    )
    return Overview(image, target, tuple(_summary(spec, site, t, target)))


def hazard_subject(spec: SiteSpec, hz: HazardEvent) -> str:
    """Who or where a hazard is: ``worker w13``, ``worker w04 in the zone of crane-1``, a fire."""
    if hz.fire is not None:
        x, y = spec.fires[hz.fire].position
        return f"fire at ({x:.1f}, {y:.1f})"
    who = f"worker {spec.workers[hz.worker].id}" if hz.worker is not None else "?"
    if hz.machine is not None:
        who += f" in the zone of {spec.machines[hz.machine].id}"
    return who


def _summary(spec: SiteSpec, site: Site, t: float, target: HazardEvent | None) -> list[str]:
    working = sum(site.machine_working(i, t) for i in range(len(spec.machines)))
    active = site.active_hazards(t)
    lines = [
        f"site {spec.name}: {spec.size_m[0]:.0f} x {spec.size_m[1]:.0f} m, "
        f"{len(spec.workers)} workers, {len(spec.machines)} machines ({working} working), "
        f"{len(spec.structures)} structures",
        f"hazards active at t={t:g} s: {len(active)}",
    ]
    lines += [f"  {hz.id:<20} {hazard_subject(spec, hz)}" for hz in active]
    if target is not None:
        lines.append(f"PTZ views aimed at {target.id}")
    else:
        upcoming = [hz for hz in site.hazards if hz.start_s > t]
        if upcoming:
            lines.append(f"next hazard: {upcoming[0].id} at t={upcoming[0].start_s:g} s")
    return lines


def _aim(renderer: Renderer, site: Site, t: float, hz: HazardEvent) -> PTZPose:
    """Pan/tilt at the part of the hazard that must be resolved (head, torso, person, smoke)."""
    if hz.fire is not None:
        fire = next(f for f in site.fires_at(t) if f.index == hz.fire)
        point = np.array([fire.xy[0], fire.xy[1], fire.plume_m * 0.45])
    else:
        assert hz.worker is not None
        xy = site.workers_at(t).xy[hz.worker]
        h = float(site.heights[hz.worker])
        z = {
            "no_helmet": h - HEAD_RADIUS_M,
            "no_vest": h * (TORSO_TOP_M + TORSO_BOTTOM_M) / 2 / 1.75,
        }.get(hz.type, h * 0.55)
        point = np.array([xy[0], xy[1], z])
    pan, tilt, _ = pan_tilt_of_point(renderer.cam_pos, renderer.heading, point)
    lim = renderer.spec.camera.limits
    return PTZPose(
        float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
        float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
        1.0,
    )


def _pick_target(renderer: Renderer, site: Site, t: float) -> HazardEvent | None:
    """The active hazard to zoom on: by type preference, the first one the camera can see."""
    active = sorted(
        site.active_hazards(t), key=lambda hz: (TARGET_PREFERENCE.index(hz.type), hz.start_s)
    )
    for hz in active:
        pose = _aim(renderer, site, t, hz)
        for zoom in (12.0, 1.0):
            view = PTZPose(pose.pan_deg, pose.tilt_deg, zoom)
            _, truth = renderer.render(view, t, 320, 180, truth=True, noise=False)
            assert truth is not None
            if any(h.id == hz.id and h.in_view for h in truth.hazards):
                return hz
    return active[0] if active else None


def _compose(
    renderer: Renderer, site: Site, t: float, width: int, source: str, zooms: Sequence[float]
) -> tuple[np.ndarray, HazardEvent | None]:
    """Compose the `render` picture: header, panorama | plan view, PTZ zoom strip, legend."""
    s = width / 1920.0
    margin = max(8, round(16 * s))
    title_h = round(30 * s) + 8
    spec = renderer.spec
    target = _pick_target(renderer, site, t)
    aim = _aim(renderer, site, t, target) if target is not None else _home(renderer)
    clipped = sorted({min(z, spec.camera.limits.zoom_max) for z in zooms})
    poses = [PTZPose(aim.pan_deg, aim.tilt_deg, z) for z in clipped]
    colors = VIEW_COLORS[: len(poses)]

    pano_w = round((width - 3 * margin) * 0.62)
    plan_w = width - 3 * margin - pano_w
    pano = render_panorama(renderer, t, width_px=2 * pano_w).resized(pano_w)
    pano_img = pano.image.copy()
    for pose, color in zip(reversed(poses), reversed(colors), strict=True):
        # small footprints carry no label (the tiles' frame colours and the legend name them)
        fp_w = float(np.ptp(pano.footprint(pose)[:, 0]))
        label = f"{pose.zoom:g}x view" if fp_w > 120 * s else None
        pano.draw_footprint(pano_img, pose, color=color, thickness=2, label=label)
    pano.annotate(site, pano_img, label_scale=0.42 * max(s, 0.8))
    # a pole inside the site sees 340 deg of pan: keep the plan view usable under a flat panorama
    row_h = max(pano.height, round(0.55 * plan_w))
    plan_img = _plan_view(renderer, site, t, (plan_w, row_h), poses, s)

    n = len(poses)
    tile_w = (width - (n + 1) * margin) // n
    tile_h = tile_w * 9 // 16
    caption_h = round(46 * s) + 6
    tiles = [_zoom_tile(renderer, t, pose, target, (tile_w, tile_h), s) for pose in poses]

    header_h = round(78 * s) + 10
    legend_h = round(34 * s) + 8
    height = header_h + title_h + row_h + margin + title_h + tile_h + caption_h + legend_h
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BACKGROUND
    working = sum(site.machine_working(i, t) for i in range(len(spec.machines)))
    active = site.active_hazards(t)
    _text(
        img, f"SiteHawk virtual site  -  {source}, t = {t:g} s", (margin, round(40 * s)), 1.1 * s, 2
    )
    _text(
        img,
        f"{spec.size_m[0]:.0f} x {spec.size_m[1]:.0f} m   |   {len(spec.workers)} workers   |   "
        f"{len(spec.machines)} machines ({working} working)   |   {len(active)} "
        f"hazard{'' if len(active) == 1 else 's'} active: "
        + (", ".join(hz.id for hz in active) or "none"),
        (margin, round(72 * s)),
        0.6 * s,
        1,
        (200, 200, 200),
    )
    y = header_h
    lim = spec.camera.limits
    _text(
        img,
        f"What the PTZ camera can see (pan {pano.pan_range[0]:.0f}..{pano.pan_range[1]:.0f} deg, "
        f"tilt {lim.tilt_min_deg:g}..{lim.tilt_max_deg:g} deg)",
        (margin, y + title_h - 10),
        0.6 * s,
    )
    _text(img, "Plan view (north up)", (2 * margin + pano_w, y + title_h - 10), 0.6 * s)
    y += title_h
    img[y : y + pano.height, margin : margin + pano_w] = pano_img
    img[y : y + row_h, 2 * margin + pano_w : width - margin] = plan_img
    y += row_h + margin
    what = (
        f"{target.id} ({PART_OF_HAZARD[target.type]}, {hazard_subject(spec, target)})"
        if target is not None
        else "the site (no hazard active at this time)"
    )
    _text(img, f"PTZ views aimed at {what}", (margin, y + title_h - 10), 0.6 * s)
    y += title_h
    for k, ((tile, lines, ok), color) in enumerate(zip(tiles, colors, strict=True)):
        x = margin + k * (tile_w + margin)
        img[y : y + tile_h, x : x + tile_w] = tile
        img[y - 2 : y, x - 2 : x + tile_w + 2] = color
        img[y + tile_h : y + tile_h + 2, x - 2 : x + tile_w + 2] = color
        img[y - 2 : y + tile_h + 2, x - 2 : x] = color
        img[y - 2 : y + tile_h + 2, x + tile_w : x + tile_w + 2] = color
        _text(img, lines[0], (x, y + tile_h + round(20 * s) + 2), 0.55 * s, 1, color)
        verdict = (120, 230, 120) if ok else (110, 110, 255)
        _text(img, lines[1], (x, y + tile_h + round(42 * s) + 2), 0.5 * s, 1, verdict)
    _legend(img, (margin, height - round(14 * s) - 4), s, zooms)
    return img, target


def _home(renderer: Renderer) -> PTZPose:
    """1×, pointed at the centre of the work areas (as ``VirtualSite.home_pose``)."""
    spec = renderer.spec
    pts = np.concatenate([np.asarray(a, dtype=np.float64) for a in spec.work_areas])
    pan, tilt, _ = pan_tilt_of_point(renderer.cam_pos, renderer.heading, np.append(pts.mean(0), 0))
    lim = spec.camera.limits
    return PTZPose(
        float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
        float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
        1.0,
    )


def _zoom_tile(
    renderer: Renderer,
    t: float,
    pose: PTZPose,
    target: HazardEvent | None,
    size: tuple[int, int],
    s: float,
) -> tuple[np.ndarray, list[str], bool]:
    """One PTZ view with the target boxed, and its two caption lines."""
    w, h = size
    # no sensor noise: the picture is about resolution, and noise triples the PNG's size
    frame, truth = renderer.render(pose, t, w, h, index=int(pose.zoom), truth=True, noise=False)
    assert truth is not None
    img = frame.image
    head = f"{pose.zoom:g}x zoom   FOV {fov_h_deg(pose.zoom, renderer.fov_1x):.1f} deg"
    if target is None:
        return img, [head, ""], True
    hv = next((hv for hv in truth.hazards if hv.id == target.id), None)
    part = PART_OF_HAZARD[target.type]
    need = {
        "head": renderer.res.head_px,
        "torso": renderer.res.torso_px,
        "person": renderer.res.person_px,
        "smoke": renderer.res.smoke_px,
    }[part]
    if hv is None or hv.bbox is None or not hv.in_view:
        return img, [head, f"{target.id} not in view"], False

    x0, y0, x1, y1 = hv.bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = max((x1 - x0) / 2 + 3, 9), max((y1 - y0) / 2 + 3, 9)
    cv2.rectangle(
        img,
        (int(cx - half_w), int(cy - half_h)),
        (int(cx + half_w), int(cy + half_h)),
        HAZARD_COLORS[target.type],
        max(1, round(2 * s)),
        cv2.LINE_AA,
    )
    verdict = "resolvable" if hv.resolvable else "NOT resolvable"
    inside = (
        (min(x1, w) - max(x0, 0)) * (min(y1, h) - max(y0, 0)) / max((x1 - x0) * (y1 - y0), 1e-9)
    )
    if hv.size_ref_px < need:
        why = f"{part} {hv.size_ref_px:.0f} px < {need:g} px"
    elif inside < renderer.res.min_visible:
        why = f"{part} {hv.size_ref_px:.0f} px but only {inside:.0%} in frame"
    else:
        why = f"{part} {hv.size_ref_px:.0f} px >= {need:g} px"
    line = f"{why} (at 1280x720): {verdict}"
    return img, [head, line], hv.resolvable


# ---------------------------------------------------------------------------------------------
# plan view and drawing helpers
def _plan_view(
    renderer: Renderer,
    site: Site,
    t: float,
    size: tuple[int, int],
    poses: Sequence[PTZPose],
    s: float,
) -> np.ndarray:
    """Top-down map: site, structures, machines and zones, workers, hazards, camera and FOV."""
    spec = renderer.spec
    w_px, h_px = size
    cam = np.array(renderer.cam_pos[:2])
    xs = [0.0, spec.size_m[0], float(cam[0])]
    ys = [0.0, spec.size_m[1], float(cam[1])]
    pad = 6.0
    x0, x1, y0, y1 = min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad
    scale = min(w_px / (x1 - x0), h_px / (y1 - y0))
    ox = (w_px - (x1 - x0) * scale) / 2
    oy = (h_px - (y1 - y0) * scale) / 2

    def px(points: Any) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        out = np.stack([ox + (p[:, 0] - x0) * scale, oy + (y1 - p[:, 1]) * scale], -1)
        return np.round(out * 16).astype(np.int32)

    def rect(center: Any, wd: tuple[float, float], yaw_deg: float) -> np.ndarray:
        c, sn = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
        local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * np.array(wd) / 2
        # compass yaw: local +y turns clockwise seen from above
        rot = np.array([[c, sn], [-sn, c]])
        return np.asarray(center) + local @ rot.T

    aa = cv2.LINE_AA
    img = np.empty((h_px, w_px, 3), np.uint8)
    surround = np.array(spec.ground.surround_color[::-1], dtype=np.float64)
    img[:] = tuple(int(v) for v in surround * 0.45 + 30)
    ground = tuple(int(v) for v in np.array(spec.ground.color[::-1]) * 0.75 + 40)
    site_poly = px(
        [[0, 0], [spec.size_m[0], 0], [spec.size_m[0], spec.size_m[1]], [0, spec.size_m[1]]]
    )
    cv2.fillPoly(img, [site_poly], ground, aa, shift=4)
    for road in spec.ground.roads:
        thick = max(1, int(spec.ground.road_width_m * scale))
        cv2.polylines(img, [px(road)], False, (150, 152, 155), thick, aa, shift=4)
    for pad_poly in spec.ground.pads:
        cv2.fillPoly(img, [px(pad_poly)], (175, 178, 180), aa, shift=4)
    for pit in spec.ground.pits:
        cv2.fillPoly(img, [px(pit)], tuple(int(v * 0.75) for v in ground), aa, shift=4)
    cv2.polylines(img, [site_poly], True, (70, 75, 80), 2, aa, shift=4)

    # camera field of view under everything else that moves
    overlay = img.copy()
    reach = float(np.max(np.hypot(np.array(xs) - cam[0], np.array(ys) - cam[1]))) + 10
    for pose, color in zip(poses, VIEW_COLORS, strict=False):
        yaw = renderer.heading + pose.pan_deg
        half = renderer.fov_1x / pose.zoom / 2
        angles = np.radians(np.linspace(yaw - half, yaw + half, 24))
        fan = np.concatenate(
            [cam[None], cam + reach * np.stack([np.sin(angles), np.cos(angles)], -1)]
        )
        if pose is poses[0]:
            cv2.fillPoly(overlay, [px(fan)], (235, 235, 235), aa, shift=4)
        cv2.polylines(img, [px(fan)], True, color, 1, aa, shift=4)
    cv2.addWeighted(overlay, 0.25, img, 0.75, 0, dst=img)

    for st in spec.structures:
        poly = px(rect(st.center, (st.size_m[0], st.size_m[1]), st.yaw_deg))
        color = _bgr(st.color)
        if st.kind == "scaffold":
            cv2.polylines(img, [poly], True, (120, 120, 130), 1, aa, shift=4)
        else:
            cv2.fillPoly(img, [poly], color, aa, shift=4)
            cv2.polylines(img, [poly], True, (60, 60, 60), 1, aa, shift=4)
    for mi, m in enumerate(spec.machines):
        active = site.zone_active(mi, t)
        zone = px(m.zone)
        if active:
            zone_overlay = img.copy()
            cv2.fillPoly(zone_overlay, [zone], (60, 60, 230), aa, shift=4)
            cv2.addWeighted(zone_overlay, 0.3, img, 0.7, 0, dst=img)
            cv2.polylines(img, [zone], True, (40, 40, 220), 2, aa, shift=4)
        else:
            cv2.polylines(img, [zone], True, (120, 120, 120), 1, aa, shift=4)
        state = site.machine_at(mi, t)
        body = {"excavator": (3.2, 4.6), "crane": (2.0, 2.0), "truck": (2.5, 7.5)}[m.kind]
        color = _bgr(m.color)
        if m.kind != "truck":
            yaw = math.radians(state.yaw_deg + state.slew_deg)
            arm = {"excavator": 8.0, "crane": 29.0}[m.kind]
            tail = {"excavator": 0.0, "crane": 16.0}[m.kind]
            d = np.array([math.sin(yaw), math.cos(yaw)])
            xy = np.array(state.xy)
            cv2.polylines(
                img,
                [px([xy - d * tail, xy + d * arm])],
                False,
                color,
                max(2, round(3 * s)),
                aa,
                shift=4,
            )
        poly = px(rect(state.xy, body, state.yaw_deg))
        cv2.fillPoly(img, [poly], color, aa, shift=4)
        cv2.polylines(img, [poly], True, (30, 30, 30), 1, aa, shift=4)
        lx, ly = px([state.xy])[0] / 16
        _text(img, m.id, (int(lx) + 8, int(ly) + 4), 0.4 * max(s, 0.8), 1, (30, 30, 30))

    workers = site.workers_at(t)
    hazards_of: dict[int, list[HazardEvent]] = {}
    for hz in site.active_hazards(t):
        if hz.worker is not None:
            hazards_of.setdefault(hz.worker, []).append(hz)
    radius = max(3, round(4.5 * s))
    for wi, xy in enumerate(workers.xy):
        c = px([xy])[0]
        if wi in hazards_of:
            continue
        cv2.circle(img, (int(c[0]), int(c[1])), radius * 16, WORKER_OK_COLOR, -1, aa, shift=4)
        cv2.circle(img, (int(c[0]), int(c[1])), radius * 16, (20, 60, 20), 1, aa, shift=4)
    for wi, hzs in hazards_of.items():
        c = px([workers.xy[wi]])[0]
        color = HAZARD_COLORS[hzs[0].type]
        cv2.circle(img, (int(c[0]), int(c[1])), (radius + 1) * 16, color, -1, aa, shift=4)
        cv2.circle(img, (int(c[0]), int(c[1])), (radius + 5) * 16, color, 2, aa, shift=4)
        label = ", ".join(hz.id for hz in hzs)
        _tag(
            img, label, (int(c[0] / 16) + radius + 7, int(c[1] / 16) + 5), 0.42 * max(s, 0.8), color
        )
    for fire in site.fires_at(t):
        c = px([fire.xy])[0]
        r = max(4, round(fire.size_m * scale))
        color = HAZARD_COLORS["fire_smoke"]
        cv2.circle(img, (int(c[0]), int(c[1])), r * 16, (0, 90, 255), -1, aa, shift=4)
        cv2.circle(img, (int(c[0]), int(c[1])), (r + 5) * 16, color, 2, aa, shift=4)
        ids = [hz.id for hz in site.active_hazards(t) if hz.fire == fire.index]
        _tag(
            img,
            ", ".join(ids) or "fire",
            (int(c[0] / 16) + r + 7, int(c[1] / 16) + 5),
            0.42 * max(s, 0.8),
            color,
        )

    # camera pole, scale bar, north arrow
    c = px([cam])[0]
    cv2.circle(img, (int(c[0]), int(c[1])), 7 * 16, (20, 20, 20), -1, aa, shift=4)
    cv2.circle(img, (int(c[0]), int(c[1])), 4 * 16, (255, 255, 255), -1, aa, shift=4)
    cam_label = f"{spec.camera.id} ({spec.camera.height_m:g} m pole)"
    lx = int(np.clip(c[0] / 16 + 10, 4, w_px - 8 - 10 * len(cam_label) * max(s, 0.8)))
    _tag(
        img,
        cam_label,
        (lx, int(c[1] / 16) + 18 if c[1] / 16 < h_px / 2 else int(c[1] / 16) - 12),
        0.42 * max(s, 0.8),
        (235, 235, 235),
    )
    bar_m = 20.0 if (x1 - x0) < 200 else 50.0
    bx, by = 12, h_px - 14
    cv2.line(img, (bx, by), (bx + int(bar_m * scale), by), (255, 255, 255), 2, aa)
    cv2.line(img, (bx, by - 5), (bx, by + 1), (255, 255, 255), 2, aa)
    cv2.line(
        img,
        (bx + int(bar_m * scale), by - 5),
        (bx + int(bar_m * scale), by + 1),
        (255, 255, 255),
        2,
        aa,
    )
    _text(img, f"{bar_m:g} m", (bx + int(bar_m * scale) + 6, by + 4), 0.45 * max(s, 0.8))
    nx, ny = w_px - 20, 44
    cv2.arrowedLine(img, (nx, ny), (nx, ny - 28), (255, 255, 255), 2, aa, tipLength=0.35)
    _text(img, "N", (nx - 6, ny + 18), 0.5 * max(s, 0.8))
    return img


def _bgr(rgb: Sequence[int]) -> tuple[int, int, int]:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def _text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    scale: float,
    thickness: int = 1,
    color: tuple[int, int, int] = (240, 240, 240),
) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)


def _tag(
    img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]
) -> None:
    """Text on a filled box of ``color`` (dark text), kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    h, w = img.shape[:2]
    x = max(0, min(org[0], w - tw - 6))
    y = max(th + 4, min(org[1], h - base - 2))
    cv2.rectangle(img, (x, y - th - 3), (x + tw + 5, y + base), color, -1)
    _text(img, text, (x + 2, y - 1), scale, 1, (0, 0, 0))


def _legend(img: np.ndarray, org: tuple[int, int], s: float, zooms: Sequence[float]) -> None:
    items: list[tuple[str, tuple[int, int, int]]] = [("worker", WORKER_OK_COLOR)]
    items += [(name, color) for name, color in HAZARD_COLORS.items()]
    items.append(("active exclusion zone", (40, 40, 220)))
    items += [(f"{z:g}x view", c) for z, c in zip(zooms, VIEW_COLORS, strict=False)]
    x, y = org
    scale = 0.5 * s
    for name, color in items:
        cv2.rectangle(img, (x, y - round(12 * s)), (x + round(14 * s), y + 2), color, -1)
        x += round(20 * s)
        _text(img, name, (x, y), scale, 1, (220, 220, 220))
        (tw, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x += tw + round(26 * s)
