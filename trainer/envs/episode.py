"""One search episode on a virtual site: the loop shared by the gym env and the eval harness.

Each control step: the policy's command goes to the PTZ head, the site advances ``1/control_hz``
seconds, the camera captures a frame, perception turns it into detections, the device's
observation builder folds them into the observation. Separately — as the evaluator, never as
input to the policy — the frame's ground truth says which active hazards are *resolvable* in this
view; the first such frame *confirms* a hazard. Reward: ``exp(-(t - onset) / tau)`` per confirmed
hazard, minus a small cost per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from edge.perception.detection import Detection
from edge.perception.detector import ModelDetector
from edge.policy.observation import Observation, ObservationBuilder, ObservationConfig
from edge.sim.perception import SimulatedPerception
from edge.sim.ptz import PTZCommand
from edge.sim.render import Frame, FrameTruth, Resolvability
from edge.sim.spec import SiteSpec
from edge.sim.virtual import VirtualSite

PERCEPTION_MODES = ("sim", "detector")


def load_episode_detector(path: str | None) -> ModelDetector:
    """The detector an episode runs (errors name the file; ValueError for bad input)."""
    from edge.perception.manifest import DetectorModelError
    from edge.runner import SHIPPED_DETECTOR

    model = Path(path) if path is not None else SHIPPED_DETECTOR
    try:
        return ModelDetector(model, threads=1)
    except DetectorModelError as exc:
        raise ValueError(f"perception 'detector': {exc}") from None


@dataclass(frozen=True)
class EpisodeConfig:
    """Timing, reward and observation settings of a search episode."""

    episode_s: float = 120.0
    control_hz: float = 5.0
    #: The frame the camera delivers, scaled down: the device's 16:9 aspect (60° × 36° at 1×),
    #: so the policy sees the geometry it will see on the device; the observation builder then
    #: resizes it to the square ``obs.view_size`` exactly as the device does.
    frame_size: tuple[int, int] = (160, 90)
    perception: str = "sim"
    #: ``perception="detector"``: the detector model (None: the shipped models/detector.onnx),
    #: and the size of the frame it gets — rendered at the same instant and pose as the
    #: observed frame, and shrunk to its 320×320 input as on the device.
    detector_model: str | None = None
    detector_frame_size: tuple[int, int] = (640, 360)
    reward_tau_s: float = 30.0
    time_cost: float = 0.002
    obs: ObservationConfig = field(default_factory=ObservationConfig)
    resolvability: Resolvability = field(default_factory=Resolvability)

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def num_steps(self) -> int:
        return int(round(self.episode_s * self.control_hz))


@dataclass
class HazardRecord:
    """What happened to one hazard during an episode."""

    id: str
    type: str
    onset_s: float
    end_s: float
    confirmed_s: float | None = None
    first_in_view_s: float | None = None

    @property
    def ttd_s(self) -> float | None:
        return None if self.confirmed_s is None else self.confirmed_s - self.onset_s


class SearchEpisode:
    """Runs one episode on one site; ``reset`` then ``step`` until ``done``."""

    def __init__(
        self,
        spec: SiteSpec,
        config: EpisodeConfig | None = None,
        *,
        perception_seed: int | None = None,
    ):
        self.config = config or EpisodeConfig()
        if self.config.perception not in PERCEPTION_MODES:
            raise ValueError(
                f"perception must be one of {PERCEPTION_MODES}, got {self.config.perception!r}"
            )
        self.detector = None
        if self.config.perception == "detector":
            self.detector = load_episode_detector(self.config.detector_model)
        if spec.duration_s < self.config.episode_s:
            raise ValueError(
                f"site covers {spec.duration_s} s, "
                f"shorter than the {self.config.episode_s} s episode"
            )
        self.spec = spec
        self.perception = SimulatedPerception(
            perception_seed if perception_seed is not None else (spec.seed or 0)
        )
        self.virtual: VirtualSite | None = None
        self.builder: ObservationBuilder | None = None

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> Observation:
        cfg = self.config
        self.virtual = VirtualSite(self.spec, resolvability=cfg.resolvability)
        self.builder = ObservationBuilder(self.spec.camera, cfg.obs)
        self.step_index = 0
        self.hazards: dict[str, HazardRecord] = {
            h.id: HazardRecord(h.id, h.type, h.start_s, h.end_s)
            for h in self.virtual.site.hazards
            if 0.0 <= h.start_s < cfg.episode_s
        }
        self.done = False
        obs, _ = self._observe()
        return obs

    @property
    def t(self) -> float:
        assert self.virtual is not None, "call reset() first"
        return self.virtual.t

    def step(self, command: PTZCommand) -> tuple[Observation, float, bool, dict]:
        """Apply one command for one control period; return (obs, reward, done, info)."""
        assert self.virtual is not None, "call reset() first"
        if self.done:
            raise RuntimeError("episode is over; call reset()")
        cfg = self.config
        self.virtual.command(command)
        self.virtual.advance(cfg.dt)
        self.step_index += 1
        obs, confirmed = self._observe()
        reward = -cfg.time_cost
        for rec in confirmed:
            reward += math.exp(-(rec.confirmed_s - rec.onset_s) / cfg.reward_tau_s)  # type: ignore[operator]
        self.done = self.step_index >= cfg.num_steps
        info = {"t": self.t, "confirmed": [r.id for r in confirmed], "hazards": self.hazard_info()}
        return obs, reward, self.done, info

    def _observe(self) -> tuple[Observation, list[HazardRecord]]:
        assert self.virtual is not None and self.builder is not None
        width, height = self.config.frame_size
        frame, truth = self.virtual.capture(width, height)
        assert truth is not None
        self.last_frame: Frame = frame
        self.last_truth: FrameTruth = truth
        if self.detector is None:
            detections = self.perception.detect(truth, frame.index)
        else:
            detections = self._detect(frame, width)
        self.last_detections = detections
        obs = self.builder.update(frame.image, detections, frame.pose, frame.t)
        confirmed = []
        for hv in truth.hazards:
            rec = self.hazards.get(hv.id)
            if rec is None:
                continue
            if hv.in_view and rec.first_in_view_s is None:
                rec.first_in_view_s = frame.t
            if hv.resolvable and rec.confirmed_s is None:
                rec.confirmed_s = frame.t
                confirmed.append(rec)
        return obs, confirmed

    def _detect(self, frame: Frame, width: int) -> list[Detection]:
        """The detector's detections, in the observed frame's pixels."""
        assert self.virtual is not None and self.detector is not None
        dw, dh = self.config.detector_frame_size
        big, _ = self.virtual.renderer.render(
            frame.pose, frame.t, dw, dh, index=frame.index, truth=False
        )
        k = width / dw
        return [
            replace(d, bbox=(d.bbox[0] * k, d.bbox[1] * k, d.bbox[2] * k, d.bbox[3] * k))
            for d in self.detector.detect_image(big.image)
        ]

    def hazard_info(self) -> dict[str, dict[str, float | str | None]]:
        """Each hazard's type, onset and confirmation time (None while unconfirmed)."""
        return {
            r.id: {"type": r.type, "onset_s": r.onset_s, "confirmed_s": r.confirmed_s}
            for r in self.hazards.values()
        }

    @property
    def travel_deg(self) -> float:
        assert self.virtual is not None
        return self.virtual.head.travel_deg
