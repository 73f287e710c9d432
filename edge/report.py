"""The report of a `sitehawk-edge run`: ``report.html`` with its pictures beside it.

What a site engineer looks at after a run:

* the numbers — frames, frame rate, per-stage latency (p50/p90/p99), alerts, outbox and broker;
* the site panorama with the camera's path (the centre of its view at every control step, a
  line coloured from the start of the run to its end), the view at each raised alert, and every
  hazard event of the run's window boxed green when an alert found it and red when it was missed;
* one row per hazard event (found by which alert, how fast) and per alert, with its evidence
  snapshot (``snapshots/<alert_id>.jpg``, the JPEG the alert published).

Found and missed come from scoring the raised alerts against the virtual site's hazard events
(:mod:`edge.sim.scoring`) — ground truth, read here, after the run, never by the agent.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge.agent import AlertRecord
from edge.geometry import pan_tilt_of_point
from edge.sim.panorama import HAZARD_COLORS, Panorama, render_panorama
from edge.sim.scoring import EventOutcome, Extent, RaisedAlert, Score, event_extent, score_alerts

if TYPE_CHECKING:
    from edge.runner import PreparedRun, VirtualRig

PANORAMA_WIDTH_PX = 2400
FOUND_BGR = (60, 200, 60)
MISSED_BGR = (40, 40, 235)
PATH_THICKNESS = 2
PATH_OPACITY = 0.7
#: Tilt shown above and below the work areas and the camera's path.
TILT_MARGIN_DEG = 6.0
TILT_MARGIN_TOP_DEG = 12.0  # machines and structures stand above the work areas


def score_run(rig: VirtualRig, records: list[AlertRecord]) -> Score:
    """Score the alerts this camera raised during the run against its site's hazard events."""
    raised = [
        RaisedAlert(
            r.alert["alert_id"],
            r.alert["hazard"],
            r.t,
            r.alert["location"]["pan_deg"],
            r.alert["location"]["tilt_deg"],
        )
        for r in records
        if r.camera_id == rig.camera_id and r.alert["state"] == "raised"
    ]
    return score_alerts(rig.site.site, raised, rig.start_t, max(rig.camera.t, rig.start_t))


def write_report(run: PreparedRun, summary: dict[str, Any], scores: dict[str, Score]) -> Path:
    """Write ``report.html``, ``panorama-<camera>.jpg`` and ``snapshots/`` into the run folder."""
    out = run.run_dir
    snap_dir = out / "snapshots"
    numbers: dict[str, int] = {}  # alert_id -> the number shown on the panorama and in the table
    for record in run.records:
        if record.alert["state"] == "raised":
            numbers.setdefault(record.alert["alert_id"], len(numbers) + 1)
        if record.snapshot_jpeg is not None:
            snap_dir.mkdir(exist_ok=True)
            (snap_dir / f"{record.alert['alert_id']}.jpg").write_bytes(record.snapshot_jpeg)
    sections = []
    for rig in run.rigs:
        score = scores[rig.camera_id]
        picture = f"panorama-{rig.camera_id}.jpg"
        image = draw_run_panorama(rig, score, run.records, numbers)
        cv2.imwrite(str(out / picture), image, [cv2.IMWRITE_JPEG_QUALITY, 88])
        sections.append(_camera_section(rig, score, picture, numbers))
    page = _PAGE.format(
        title=html.escape(f"SiteHawk run — {run.config.device_id} on {run.config.site_id}"),
        summary=_summary_table(summary),
        latency=_latency_table(summary["telemetry"]["latency_ms"]),
        cameras="\n".join(sections),
        alerts=_alerts_table(run.records, numbers, scores),
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# the panorama
def draw_run_panorama(
    rig: VirtualRig, score: Score, records: list[AlertRecord], numbers: dict[str, int]
) -> np.ndarray:
    """The site at the end of the run with the camera path, alert views and hazard events."""
    site = rig.site
    events = {h.id: h for h in site.site.hazards}
    boxes: list[tuple[EventOutcome, Extent]] = []
    for outcome in score.events:
        event = events[outcome.id]
        if outcome.alert_t is not None:
            t = outcome.alert_t
        else:  # the middle of its active time within the run
            t = (max(outcome.start_s, score.t_start) + min(outcome.end_s, score.t_end)) / 2
        extent = event_extent(site.site, event, min(t, event.end_s - 1e-3))
        if extent is not None:
            boxes.append((outcome, extent))
    t_end = max(rig.start_t, min(rig.camera.t, site.spec.duration_s - 1e-3))
    tilts = [pose.tilt_deg for _, pose in rig.path]
    tilts += [v for _, e in boxes for v in (e.tilt_min, e.tilt_max)]
    pano = render_panorama(
        site.renderer, t_end, tilt_range=_tilt_range(rig, tilts), width_px=PANORAMA_WIDTH_PX
    )
    dimmed = (pano.image.astype(np.float32) * 0.8).astype(np.uint8)  # the marks stand out
    path = dimmed.copy()
    _draw_path(path, pano, rig.path)
    img = np.ascontiguousarray(cv2.addWeighted(path, PATH_OPACITY, dimmed, 1 - PATH_OPACITY, 0))
    raised = [r for r in records if r.camera_id == rig.camera_id and r.alert["state"] == "raised"]
    for record in raised:
        color = HAZARD_COLORS.get(record.alert["hazard"], (255, 255, 255))
        pano.draw_footprint(img, record.pose, color=color, thickness=1, width=1280, height=720)
    for outcome, extent in boxes:
        x0, y0 = pano.to_pixel(extent.pan_min, extent.tilt_max)
        x1, y1 = pano.to_pixel(extent.pan_max, extent.tilt_min)
        color = FOUND_BGR if outcome.found else MISSED_BGR
        pad = 4
        p0, p1 = (int(x0) - pad, int(y0) - pad), (int(x1) + pad, int(y1) + pad)
        cv2.rectangle(img, p0, p1, color, 2, cv2.LINE_AA)
        label = f"{outcome.id} {'found' if outcome.found else 'MISSED'}"
        _tag(img, label, (p0[0], p0[1] - 4), color)
    for record in raised:
        loc = record.alert["location"]
        x, y = pano.to_pixel(loc["pan_deg"], loc["tilt_deg"])
        number = numbers.get(record.alert["alert_id"], 0)
        cv2.circle(img, (int(x), int(y)), 9, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), 9, (0, 0, 0), 1, cv2.LINE_AA)
        text = str(number)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        org = (int(x) - tw // 2, int(y) + th // 2)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _tilt_range(rig: VirtualRig, tilts: list[float]) -> tuple[float, float]:
    """Tilts that hold where the camera looked and the hazard events, with a margin (the
    foreground below a pole-mounted camera is mostly empty ground). The work areas stand in
    before the camera has moved."""
    cam = rig.spec.camera
    if not tilts:
        mount = (float(cam.position[0]), float(cam.position[1]), float(cam.height_m))
        corners = np.array([[x, y, 0.0] for area in rig.spec.work_areas for x, y in area])
        tilts = [float(t) for t in pan_tilt_of_point(mount, cam.heading_deg, corners)[1]]
    lo = max(cam.limits.tilt_min_deg, min(tilts) - TILT_MARGIN_DEG)
    hi = min(cam.limits.tilt_max_deg, max(tilts) + TILT_MARGIN_TOP_DEG)
    return (lo, hi) if hi - lo > 5.0 else (cam.limits.tilt_min_deg, cam.limits.tilt_max_deg)


def _draw_path(img: np.ndarray, pano: Panorama, path: list[tuple[float, Any]]) -> None:
    """The view centre over time as a polyline coloured from the first step to the last."""
    if len(path) < 2:
        return
    pans = np.array([pose.pan_deg for _, pose in path])
    tilts = np.array([pose.tilt_deg for _, pose in path])
    xs, ys = pano.to_pixel(pans, tilts)
    pts = np.round(np.stack([xs, ys], -1) * 16).astype(np.int32)
    ramp = np.linspace(0, 255, len(path)).astype(np.uint8).reshape(-1, 1)
    colors = cv2.applyColorMap(ramp, cv2.COLORMAP_PLASMA).reshape(-1, 3)
    for k in range(len(pts) - 1):
        color = tuple(int(c) for c in colors[k])
        a, b = tuple(int(v) for v in pts[k]), tuple(int(v) for v in pts[k + 1])
        cv2.line(img, a, b, color, PATH_THICKNESS, cv2.LINE_AA, shift=4)
    for k in (0, len(pts) - 1):
        centre = (int(pts[k][0]) >> 4, int(pts[k][1]) >> 4)
        cv2.circle(img, centre, 7, tuple(int(c) for c in colors[k]), -1, cv2.LINE_AA)


def _tag(img: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int]) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    h, w = img.shape[:2]
    x = int(np.clip(org[0], 0, max(w - tw - 4, 0)))
    y = int(np.clip(org[1], th + 3, h - base - 1))
    cv2.rectangle(img, (x, y - th - 3), (x + tw + 4, y + base - 1), color, -1)
    cv2.putText(img, text, (x + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)


# ---------------------------------------------------------------------------------------------
# the page
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _summary_table(summary: dict[str, Any]) -> str:
    run, tel = summary["run"], summary["telemetry"]
    rows = [
        ("source", run["source"]),
        ("device / site", f"{run['device_id']} / {run['site_id']}"),
        ("policy", run["policy"]),
        ("site time", f"{run['duration_s']:g} s" + (" (real time)" if run["realtime"] else "")),
        ("wall time", f"{run['wall_s']:.1f} s (site time ×{_fmt(run['speed'])})"),
        ("frames", f"{tel['frames']} ({tel['frames_skipped']} skipped), {tel['fps']:.1f} fps"),
        ("alerts", f"{tel['alerts']['raised']} raised, {tel['alerts']['cleared']} cleared"),
        ("outbox", f"depth {tel['outbox_depth']}, refused {tel['refused']} ({run['outbox']})"),
        ("broker", run["mqtt"] or "none (alerts only written locally)"),
        ("status", f"{summary.get('state', '–')}, boot {summary.get('boot_seq', '–')}"),
        ("agent", f"{summary.get('agent_version', '–')}, models {summary.get('models') or '–'}"),
    ]
    return "\n".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)


def _latency_table(latency: dict[str, dict[str, float | None]]) -> str:
    head = "<tr><th>stage</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr>"
    rows = [
        f"<tr><td>{html.escape(stage)}</td>"
        + "".join(f"<td class=num>{_fmt(q.get(p))}</td>" for p in ("p50", "p90", "p99"))
        + "</tr>"
        for stage, q in latency.items()
    ]
    return head + "\n".join(rows)


def _camera_section(rig: VirtualRig, score: Score, picture: str, numbers: dict[str, int]) -> str:
    head = (
        "<tr><th>hazard event</th><th>type</th><th>active (site s)</th><th>found by</th>"
        "<th>time to alert</th></tr>"
    )
    rows = []
    for e in score.events:
        found = (
            f"alert #{numbers.get(e.alert_id, '?')} at {e.alert_t:.1f} s"
            if e.alert_id and e.alert_t is not None
            else "<span class=missed>missed</span>"
        )
        rows.append(
            f"<tr><td>{html.escape(e.id)}</td><td>{html.escape(e.type)}</td>"
            f"<td>{e.start_s:.1f} – {e.end_s:.1f}</td><td>{found}</td>"
            f"<td class=num>{_fmt(e.tta_s, 1)}</td></tr>"
        )
    stats = (
        f"{score.num_matched} of {len(score.events)} events found, {len(score.alerts)} alerts "
        f"raised: precision {_fmt(score.precision)}, recall {_fmt(score.recall)}, false alerts "
        f"per hour {score.false_alerts_per_hour:.0f}, mean time to alert "
        f"{_fmt(score.tta_mean_s, 1)} s (match: same type, within the object "
        f"±{score.margin_deg:g}°, while active +{score.grace_s:g} s)"
    )
    window = f"site time {score.t_start:.1f} – {score.t_end:.1f} s"
    resumed = " (resumed where the device stopped)" if rig.resumed else ""
    return f"""
<h2>Camera {html.escape(rig.camera_id)} — virtual site {html.escape(rig.spec.name)}</h2>
<p>{window}{resumed}. {stats}.</p>
<figure><a href="{picture}"><img class=pano src="{picture}" alt="site panorama"></a>
<figcaption>The site at the end of the run (dimmed). Line: the centre of the camera's view at
every control step, from dark (start) to yellow (end). Thin outlines: the view when an alert was
raised, in the hazard's colour; numbered dots: where the alert placed the hazard. Boxes: the
run's hazard events where their subject was — <span class=found>green: found</span>,
<span class=missed>red: missed</span>.</figcaption></figure>
<table>{head}
{"".join(rows) or "<tr><td colspan=5>no hazard events in this window</td></tr>"}
</table>"""


def _alerts_table(
    records: list[AlertRecord], numbers: dict[str, int], scores: dict[str, Score]
) -> str:
    matched = {
        a.alert_id: a.event_id for score in scores.values() for a in score.alerts if a.event_id
    }
    head = (
        "<tr><th>#</th><th>site t</th><th>state</th><th>hazard</th><th>severity</th>"
        "<th>conf</th><th>pan / tilt / zoom</th><th>alert_id · seq</th><th>event</th>"
        "<th>evidence</th></tr>"
    )
    rows = []
    for r in records:
        a, loc = r.alert, r.alert["location"]
        snap = f"snapshots/{a['alert_id']}.jpg"
        img = f'<a href="{snap}"><img class=snap src="{snap}" alt="snapshot"></a>'
        event = matched.get(a["alert_id"]) if a["state"] == "raised" else None
        event_cell = html.escape(event) if event else ("–" if a["state"] != "raised" else "none")
        rows.append(
            f"<tr class={a['state']}><td>{numbers.get(a['alert_id'], '')}</td>"
            f"<td class=num>{r.t:.1f}</td><td>{a['state']}</td><td>{a['hazard']}</td>"
            f"<td>{a['severity']}</td><td class=num>{a['confidence']:.2f}</td>"
            f"<td class=num>{loc['pan_deg']:.2f}° / {loc['tilt_deg']:.2f}° / {loc['zoom']:.1f}×"
            f"</td><td><code>{a['alert_id'][:8]}</code> · {a['seq']}</td><td>{event_cell}</td>"
            f"<td>{img if a['state'] == 'raised' else '(same as raised)'}</td></tr>"
        )
    return head + "\n".join(rows) if rows else "<tr><td>no alerts in this run</td></tr>"


_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.8em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
img.pano {{ width: 100%; border: 1px solid #999; }}
img.snap {{ width: 240px; }}
tr.cleared {{ color: #666; }}
.found {{ color: #1a8c1a; font-weight: bold; }}
.missed {{ color: #c62828; font-weight: bold; }}
.side {{ display: flex; gap: 2em; flex-wrap: wrap; }}
figcaption {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>{title}</h1>
<div class=side><table>{summary}</table><table>{latency}</table></div>
{cameras}
<h2>Alerts</h2>
<p>Every alert message of the run (alerts.jsonl holds them exactly as published); the evidence
is the JPEG published on the alert's snapshot topic.</p>
<table>{alerts}</table>
</body></html>
"""
