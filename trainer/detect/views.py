"""The view sampler: which PTZ views of which sites the detector is trained and scored on.

A PTZ camera sees the site wide (zoom 1–3×, workers a few pixels tall) and zoomed in on
something (a worker, a machine, a fire) at every size in between. The sampler draws both, so
every size bucket of the evaluation (box height in a 1280×720 frame: ``<16``, ``16-32``,
``32-64``, ``>=64``) is populated:

* ``wide`` (25 %): pan uniform over the work areas' pan range, tilt at the work areas' centre
  ± 5°, zoom log-uniform in 1–3×;
* ``target`` (75 %): at a random site time a random worker (45 %), a worker *during* one of the
  site's ``no_helmet``/``no_vest`` events (25 %, at a random time inside the event: bare heads
  are rare on a site but matter most), a machine (15 %) or a fire while it burns (15 %); a
  kind the site lacks falls back to a random worker. The zoom makes the target a log-uniform
  14–900 px tall (a machine 60–700 px, a fire 40–600 px), clamped to the camera's 1–30×, and
  the view is offset from it by up to ±35 % of the field of view in each axis. (Workers up to
  900 px: a head ≥ 64 px needs a worker ~500 px tall; down to 14 px: workers 16–32 px tall,
  the hardest bucket to place, are a fifth of the worker views. ``sitehawk.views/1`` drew
  24–480 px.)

Each view is a pure function of ``(site seed, view index)``: a dataset or an evaluation can be
regenerated, resumed or extended exactly. :data:`SAMPLER` documents the numbers (recorded in
datasets and eval JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge.geometry import PTZPose, fov_h_deg, fov_v_deg, pan_tilt_of_point
from edge.sim.world import Site

FRAME_W, FRAME_H = 1280, 720


@dataclass(frozen=True)
class ViewSampler:
    """The sampler's parameters (see the module docstring)."""

    wide_share: float = 0.25
    wide_zoom: tuple[float, float] = (1.0, 3.0)
    wide_tilt_jitter_deg: float = 5.0
    worker_px: tuple[float, float] = (14.0, 900.0)
    machine_px: tuple[float, float] = (60.0, 700.0)
    fire_px: tuple[float, float] = (40.0, 600.0)
    # worker, hazard worker, machine, fire
    target_weights: tuple[float, float, float, float] = (0.45, 0.25, 0.15, 0.15)
    offset_fov: float = 0.35
    frame: tuple[int, int] = (FRAME_W, FRAME_H)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (recorded in datasets and eval results)."""
        return {"name": "sitehawk.views/2", **asdict(self)}


SAMPLER = ViewSampler()


@dataclass(frozen=True)
class View:
    """One sampled view: when and where the camera looks."""

    t: float
    pose: PTZPose
    kind: str  # "wide" | "worker" | "machine" | "fire"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_view(
    site: Site, seed: int, index: int, sampler: ViewSampler = SAMPLER, t_margin_s: float = 1.0
) -> View:
    """View ``index`` of the site with ``seed`` (deterministic)."""
    spec = site.spec
    cam = spec.camera
    lim = cam.limits
    mount = (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))
    rng = np.random.default_rng([seed, index, 0x5EED])
    t = float(rng.uniform(t_margin_s, max(t_margin_s, spec.duration_s - t_margin_s)))
    fov_1x = float(lim.fov_h_1x_deg)

    def clamp_pose(pan: float, tilt: float, zoom: float) -> PTZPose:
        return PTZPose(
            float(np.clip(pan, lim.pan_min_deg, lim.pan_max_deg)),
            float(np.clip(tilt, lim.tilt_min_deg, lim.tilt_max_deg)),
            float(np.clip(zoom, 1.0, lim.zoom_max)),
        )

    if rng.random() < sampler.wide_share:
        pts = np.concatenate([np.asarray(a, dtype=np.float64) for a in spec.work_areas])
        pts3 = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
        pans, _, _ = pan_tilt_of_point(mount, cam.heading_deg, pts3)
        centre = np.append(pts.mean(axis=0), 0.0)
        _, tilt_c, _ = pan_tilt_of_point(mount, cam.heading_deg, centre)
        pan = rng.uniform(float(np.min(pans)), float(np.max(pans)))
        tilt = float(tilt_c) + rng.uniform(-1, 1) * sampler.wide_tilt_jitter_deg
        zoom = _log_uniform(rng, *sampler.wide_zoom)
        return View(t, clamp_pose(pan, tilt, zoom), "wide")

    attribute_events = [h for h in site.hazards if h.type in ("no_helmet", "no_vest")]
    weights = np.asarray(sampler.target_weights, dtype=np.float64)
    weights[1] *= bool(attribute_events)
    weights[2] *= bool(spec.machines)
    weights[3] *= bool(spec.fires)
    kind = ("worker", "hazard", "machine", "fire")[int(rng.choice(4, p=weights / weights.sum()))]
    if kind in ("worker", "hazard"):
        if kind == "hazard":
            event = attribute_events[int(rng.integers(len(attribute_events)))]
            t = float(rng.uniform(event.start_s, event.end_s))
            assert event.worker is not None
            i = event.worker
        workers = site.workers_at(t)
        if kind == "worker":
            i = int(rng.integers(len(workers.xy)))
        h = float(site.heights[i])
        point = np.array([workers.xy[i, 0], workers.xy[i, 1], h / 2.0])
        size_m, px = h, sampler.worker_px
    elif kind == "machine":
        i = int(rng.integers(len(spec.machines)))
        state = site.machine_at(i, t)
        size_m = 4.0
        point = np.array([state.xy[0], state.xy[1], size_m / 2.0])
        px = sampler.machine_px
    else:
        f = spec.fires[int(rng.integers(len(spec.fires)))]
        t = float(rng.uniform(f.start_s, f.end_s))
        size_m = max(f.size_m, 1.0) * 1.5
        point = np.array([f.position[0], f.position[1], size_m / 2.0])
        px = sampler.fire_px
    pan_t, tilt_t, rng_m = pan_tilt_of_point(mount, cam.heading_deg, point)
    want_px = _log_uniform(rng, *px)
    # pinhole: size_px = size_m * focal / range, focal = (W/2) / tan(fov/2)
    w, h_px = sampler.frame
    focal = want_px * float(rng_m) / size_m
    fov = float(np.degrees(2.0 * np.arctan((w / 2.0) / focal)))
    zoom = float(np.clip(fov_1x / fov, 1.0, lim.zoom_max))
    off_h = fov_h_deg(zoom, fov_1x) * sampler.offset_fov
    off_v = fov_v_deg(zoom, w, h_px, fov_1x) * sampler.offset_fov
    return View(
        t,
        clamp_pose(
            float(pan_t) + rng.uniform(-1, 1) * off_h,
            float(tilt_t) + rng.uniform(-1, 1) * off_v,
            zoom,
        ),
        kind,
    )
