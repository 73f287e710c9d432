"""What an evaluation shows people: recall/TTD plots, the baselines HTML report, episode videos.

The plots and the report draw the :class:`~trainer.evaluate.EvalRun` results of the evaluation
harness (:mod:`trainer.evaluate`); the video replays one episode of a policy through the harness,
the camera view beside the site panorama with the ground-truth hazards.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.policy.base import Policy
from edge.policy.observation import Observation
from edge.sim.ptz import PTZCommand
from trainer.envs.episode import EpisodeConfig, SearchEpisode
from trainer.evaluate import (
    RECALL_WINDOW_S,
    RESULT_KEYS,
    EvalRun,
    check_seeds,
    load_policy,
    policy_name,
    run_episode,
    summarize,
)

__all__ = ["html_report", "plot_comparison", "plot_run", "recall_curve", "write_video"]


# ------------------------------------------------------------------------------- plots
def recall_curve(run: EvalRun, horizon_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Share of hazards confirmed within τ seconds of onset, for τ on a 0.5 s grid."""
    horizon = horizon_s if horizon_s is not None else run.episode_s
    taus = np.arange(0.0, horizon + 1e-9, 0.5)
    ttd, det = run.ttds(), run.detected()
    if not len(ttd):
        return taus, np.zeros_like(taus)
    return taus, ((ttd[None, :] <= taus[:, None]) & det[None, :]).mean(axis=1)


def plot_run(run: EvalRun, path: str | Path) -> Path:
    """Recall-vs-time-since-onset curve and TTD histogram of one policy → PNG."""
    plt = _pyplot()
    path = Path(path)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    taus, rec = recall_curve(run)
    ax0.plot(taus, rec, color="C0")
    ax0.axvline(RECALL_WINDOW_S, color="0.6", ls=":", lw=1)
    ax0.set(xlabel="time since onset (s)", ylabel="share of hazards confirmed", ylim=(0, 1.02))
    ax0.set_title(f"{run.policy}: recall vs time")
    ttd, det = run.ttds(), run.detected()
    bins = np.linspace(0, run.episode_s, 25)
    ax1.hist(ttd[det], bins=bins, color="C0", label="confirmed")
    ax1.hist(ttd[~det], bins=bins, color="C3", alpha=0.6, label="missed (onset → end)")
    ax1.set(xlabel="time to detection (s)", ylabel="hazards")
    ax1.set_title(f"{len(ttd)} hazards, {len(run.episodes)} episodes")
    ax1.legend()
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(runs: Sequence[EvalRun], path: str | Path) -> Path:
    """Bars of mean TTD and recall per policy, and their recall-vs-time curves → PNG."""
    plt = _pyplot()
    path = Path(path)
    results = [summarize(r) for r in runs]
    names = [r.policy for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    x = np.arange(len(runs))
    colors = [f"C{i}" for i in range(len(runs))]
    axes[0].bar(x, [r["ttd_mean_s"] or 0.0 for r in results], color=colors)
    axes[0].set(
        ylabel="mean TTD (s), missed = onset → end", title="time to detection (lower is better)"
    )
    width = 0.4
    axes[1].bar(
        x - width / 2, [r["recall"] or 0.0 for r in results], width, color=colors, label="recall"
    )
    axes[1].bar(
        x + width / 2,
        [r["recall_30s"] or 0.0 for r in results],
        width,
        color=colors,
        alpha=0.5,
        hatch="//",
        label="within 30 s",
    )
    axes[1].set(
        ylabel="share of hazards confirmed", ylim=(0, 1.05), title="recall (higher is better)"
    )
    from matplotlib.patches import Patch

    axes[1].legend(
        handles=[
            Patch(facecolor="0.45", label="recall"),
            Patch(facecolor="0.45", alpha=0.5, hatch="//", label="within 30 s"),
        ],
        loc="upper left",
    )
    for ax in axes[:2]:
        ax.set_xticks(x, names, rotation=20)
    for run, color in zip(runs, colors, strict=True):
        taus, rec = recall_curve(run)
        axes[2].plot(taus, rec, color=color, label=run.policy)
    axes[2].set(xlabel="time since onset (s)", ylabel="share confirmed", ylim=(0, 1.02))
    axes[2].set_title("recall vs time since onset")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    seeds = runs[0].seeds if runs else []
    fig.suptitle(
        f"{len(seeds)} sites (seeds {_seed_text(seeds)}), {runs[0].episode_s:.0f} s episodes"
        if runs
        else ""
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _seed_text(seeds: Sequence[int]) -> str:
    if not seeds:
        return ""
    if list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ",".join(str(s) for s in seeds)


def html_report(results: Sequence[dict[str, Any]], png: str | Path, path: str | Path) -> Path:
    """A self-contained HTML page: the comparison table and the PNG (embedded)."""
    path = Path(path)
    cols = [k for k in RESULT_KEYS if k not in ("seeds", "perception")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r[c]))}</td>" for c in cols) + "</tr>"
        for r in results
    )
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    seeds = results[0]["seeds"] if results else []
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>SiteHawk baselines</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th{{background:#f3f3f3}}td:first-child{{text-align:left}}</style></head>
<body><h1>SiteHawk — PTZ search baselines</h1>
<p>{len(seeds)} held-out sites (seeds {html.escape(_seed_text(seeds))}), perception
<code>{html.escape(str(results[0]["perception"]) if results else "")}</code>. TTD = time from a
hazard's onset to the first frame in which it is resolvable; a missed hazard counts as onset →
episode end. travel_deg = mean pan + tilt travel per episode.</p>
<table><tr>{head}</tr>{rows}</table>
<p><img src="data:image/png;base64,{image}" style="max-width:100%"></p>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


# ------------------------------------------------------------------------------- video
def write_video(
    policy: str | Path | Policy,
    seed: int,
    path: str | Path,
    *,
    config: EpisodeConfig | None = None,
    view_width_px: int = 480,
    panorama_every_s: float = 1.0,
    allow_train_seeds: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
) -> Path:
    """One episode as an mp4: the camera view (rendered ``view_width_px`` wide, in the episode
    frames' aspect) beside the site panorama with the camera's footprint and the ground-truth
    hazards. Plays in real time (``control_hz`` frames per second)."""
    import cv2

    from edge.sim.panorama import render_panorama

    check_seeds([seed], allow_train_seeds)
    cfg = config or EpisodeConfig()
    agent = load_policy(policy, **(policy_kwargs or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Any = None
    state: dict[str, Any] = {"pano": None}
    name = policy_name(policy)
    frame_w, frame_h = cfg.frame_size
    view_w = int(view_width_px)
    view_h = max(2, int(round(view_w * frame_h / frame_w / 2)) * 2)  # even sizes for the codec

    def frame(episode: SearchEpisode, obs: Observation, command: PTZCommand) -> None:
        nonlocal writer
        virtual = episode.virtual
        assert virtual is not None
        t = virtual.t
        pano = state["pano"]
        if pano is None or t - pano.t >= panorama_every_s - 1e-9:
            lim = virtual.spec.camera.limits
            tilt_range = (max(lim.tilt_min_deg - 15.0, -85.0), float(lim.tilt_max_deg))
            pano = render_panorama(virtual.renderer, t, tilt_range=tilt_range, width_px=900)
            pano = pano.resized(int(round(pano.width * view_h / pano.height)))
            state["pano"] = pano
        view, _ = virtual.renderer.render(
            virtual.pose, t, view_w, view_h, index=virtual.frame_index, truth=False
        )
        right = dataclasses.replace(pano, t=t).annotate(virtual.site)
        pano.draw_footprint(
            right, virtual.pose, width=view_w, height=view_h, label=f"{virtual.pose.zoom:.1f}x"
        )
        if right.shape[0] != view_h:  # the panorama's rounded height may be a pixel off
            right = cv2.resize(right, (right.shape[1], view_h), interpolation=cv2.INTER_AREA)
        canvas = np.concatenate([view.image, right], axis=1)
        header = np.full((28, canvas.shape[1], 3), 30, dtype=np.uint8)
        found = sum(h.confirmed_s is not None for h in episode.hazards.values())
        started = sum(h.onset_s <= t for h in episode.hazards.values())
        text = (
            f"{name}  seed {seed}  t={t:6.1f}s  pan {virtual.pose.pan_deg:6.1f}  "
            f"tilt {virtual.pose.tilt_deg:5.1f}  zoom {virtual.pose.zoom:4.1f}x  "
            f"confirmed {found}/{started}"
        )
        cv2.putText(
            header, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1, cv2.LINE_AA
        )
        canvas = np.ascontiguousarray(np.concatenate([header, canvas], axis=0))
        if writer is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
            h, w = canvas.shape[:2]
            writer = cv2.VideoWriter(str(path), fourcc, float(cfg.control_hz), (w, h))
            if not writer.isOpened():
                raise ValueError(f"{path}: OpenCV cannot write an mp4v video here")
        writer.write(canvas)

    try:
        run_episode(agent, seed, cfg, on_step=frame)
    finally:
        if writer is not None:
            writer.release()
    return path
