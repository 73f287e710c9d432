"""`sitehawk-edge run`: build the agent from a device config (or the built-in virtual site), run
it, and write the run folder.

* No ``--config``: the built-in virtual site (seed 7 unless ``--seed``) with its own device config
  (:func:`~edge.sim.device_config.device_config_for_site`) and the shipped baseline policy
  (``greedy``; ``--policy`` picks another). ``--config FILE`` runs a device's configuration.
* Virtual cameras resume: the site time and PTZ pose where a device stopped are kept in its
  state database (beside the outbox), so the next run continues the site where the last one
  ended, just as a real site goes on while a device restarts — and the open hazard events the
  outbox database holds stay consistent with what the camera sees. ``--start S`` starts the site
  at ``S`` instead; a site that would run past its end starts over at 0.
* Message timestamps on a virtual site follow site time (:class:`~edge.camera.virtual.SiteClock`),
  starting from now or, when later, from where the device's previous run left its clock, so a
  device's timestamps never go back across restarts even when the site ran ahead of real time.
* Real cameras: an ``onvif`` camera is steered through the ONVIF PTZ controller
  (:class:`~edge.camera.onvif.OnvifPTZ`, connected before the run: a camera that cannot be
  reached or refuses the credentials stops the start with the camera's field named) and its video
  is read from ``stream_url`` or the camera's ``GetStreamUri`` (:class:`~edge.camera.stream.
  VideoSource`, RTSP over TCP, the pose from ``GetStatus``); an ``rtsp`` camera has a fixed view
  (its preset ``home`` or first preset, else pan 0, tilt 0, 1x) and runs only the ``static_wide``
  policy, which then issues no commands.
* ``--onvif``: every virtual camera also serves the ONVIF services on loopback
  (:class:`~edge.camera.onvif_server.VirtualOnvifServer`, with a fresh password) and the agent
  steers it through :class:`~edge.camera.onvif.OnvifPTZ` — the code path of a real camera — while
  its frames stay in-process.
* The VLM gate (issue 5): ``vlm.backend`` ``llamacpp`` (``models.vlm``, in-process) or
  ``openai`` (``vlm.url``) builds a :class:`~edge.alerts.vlm_gate.WorkerVlmGate` that the rules
  with ``vlm_check`` ask before raising (:func:`build_vlm_gate`); ``--vlm on`` turns it on with
  the shipped ``models/vlm/vlm.gguf`` where the config has no VLM (the built-in site never has),
  ``--vlm off`` turns a configured one off. The model loads in the VLM worker's thread.
* The run folder (``--out``, default ``runs/<time>``) gets ``alerts.jsonl`` (every alert as
  published), ``status.json`` (the final status message plus run statistics and, on a virtual
  site, the score) and ``report.html`` (:mod:`edge.report`).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge import __version__
from edge.agent import Agent, AlertRecord, CameraSetup, Clock, FrameReport, SystemClock
from edge.alerts.schema import format_utc
from edge.alerts.vlm_gate import WorkerVlmGate
from edge.camera.onvif import OnvifError, OnvifPTZ, OnvifSettings, with_credentials
from edge.camera.onvif_server import VirtualOnvifServer
from edge.camera.ptz import PTZDriver
from edge.camera.stream import VideoSource, mask_url
from edge.camera.virtual import SimulatedDetector, SiteClock, VirtualCamera
from edge.console import RunConsole
from edge.device_setup import (
    ModelFileError,
    agent_settings,
    model_digests,
    outbox_path,
    policy_context,
)
from edge.geometry import PTZPose
from edge.mqtt import (
    LinkSettings,
    LinkSettingsError,
    MqttLink,
    Outbox,
    OutboxError,
    StatusInfo,
    Topics,
)
from edge.perception.backend import Detector
from edge.policy.base import POLICIES, Policy, make_policy
from edge.sim.spec import SiteFileError, SiteSpec
from edge.sim.virtual import VirtualSite
from firmware_config.camera import CameraMountSpec
from firmware_config.device import CameraConfig, DeviceConfig

DEFAULT_SEED = 7
#: The camera path kept for the report is thinned by half whenever it grows past this.
MAX_PATH_POINTS = 20_000
DEFAULT_DURATION_S = 120.0
#: The policy the built-in virtual site runs: the shipped baseline (a learned model later).
SHIPPED_POLICY = "greedy"
#: The detector the repository ships (`bash scripts/train_detector.sh` rebuilds it).
SHIPPED_DETECTOR = Path(__file__).resolve().parents[1] / "models" / "detector.onnx"
#: Site time between checkpoints of a virtual camera's clock and pose.
CHECKPOINT_INTERVAL_S = 1.0
#: The one policy a camera without PTZ (rtsp) runs: its fixed view is the static wide view.
FIXED_VIEW_POLICY = "static_wide"
#: The VLM the repository ships (GGUF + mmproj + manifest; docs/vlm.md), for ``--vlm on``.
SHIPPED_VLM = Path(__file__).resolve().parents[1] / "models" / "vlm" / "vlm.gguf"
#: llama.cpp threads of the in-process VLM: one, so the control loop keeps a core.
VLM_THREADS = 1
#: The ONVIF user of a virtual camera served with --onvif (its password is fresh per run).
VIRTUAL_ONVIF_USER = "sitehawk"


class RunError(ValueError):
    """The run cannot start; the message names the option, field, file or camera at fault."""


@dataclass
class RunOptions:
    """The options of `sitehawk-edge run` (see its --help)."""

    config: Path | None = None
    seed: int | None = None
    duration_s: float = DEFAULT_DURATION_S
    mqtt_url: str | None = None
    realtime: bool = False
    policy: str | None = None
    out: Path | None = None
    outbox: Path | None = None
    start_s: float | None = None
    frame_size: tuple[int, int] = (1280, 720)
    status_interval_s: float = 5.0
    report: bool = True
    onvif: bool = False  # steer virtual cameras through their ONVIF service on loopback
    perception: str | None = None  # "sim" | "detector" | None (see detector_model)
    vlm: bool | None = None  # --vlm on / off; None: the config's vlm.backend (see apply_vlm_option)


@dataclass
class VirtualRig:
    """One virtual camera of the run and what the report needs of its site."""

    camera_id: str
    spec: SiteSpec
    site: VirtualSite
    camera: VirtualCamera
    start_t: float
    resumed: bool
    checkpoint_key: str
    #: The agent clock's reading at this camera's last checkpoint (an earlier run), if any.
    saved_wall: datetime | None = None
    path: list[tuple[float, PTZPose]] = field(default_factory=list)  # (t, pose) per control step
    last_checkpoint_t: float = -float("inf")


@dataclass
class StreamRig:
    """One real camera of the run: ONVIF PTZ + its video, or a fixed RTSP stream."""

    camera_id: str
    kind: str  # "onvif" | "rtsp"
    source: VideoSource
    ptz: OnvifPTZ | None
    where: str  # the camera's URL (password masked), for messages


@dataclass
class PreparedRun:
    """Everything built, nothing started."""

    config: DeviceConfig
    origin: str  # where the config came from, in words
    policy_name: str
    run_dir: Path
    outbox: Outbox
    agent: Agent
    rigs: list[VirtualRig]
    clock: Clock
    records: list[AlertRecord] = field(default_factory=list)
    streams: list[StreamRig] = field(default_factory=list)
    #: Virtual cameras' ONVIF services (--onvif), stopped when the run ends.
    servers: list[VirtualOnvifServer] = field(default_factory=list)
    #: ONVIF controllers of the virtual cameras (--onvif), by camera id.
    onvif_ptz: dict[str, OnvifPTZ] = field(default_factory=dict)

    def close_cameras(self) -> None:
        """Close the ONVIF sessions and stop the virtual ONVIF services (idempotent)."""
        for ptz in [*self.onvif_ptz.values(), *(s.ptz for s in self.streams if s.ptz)]:
            ptz.close()
        for server in self.servers:
            server.stop()


# ---------------------------------------------------------------------------------------------
# configuration
def resolve_config(opts: RunOptions) -> tuple[DeviceConfig, str, bool]:
    """(config, origin, built_in) from ``--config`` or the built-in virtual site."""
    from pydantic import ValidationError

    from firmware_config.device import DeviceConfigError, MqttSettings, load_device_config

    if opts.config is not None:
        if opts.seed is not None:
            raise RunError("--seed is for the built-in virtual site; --config names its source")
        try:
            config = load_device_config(opts.config)
        except DeviceConfigError as exc:
            raise RunError(str(exc)) from None
        origin, built_in = f"config {opts.config}", False
    else:
        from edge.sim.device_config import device_config_for_site
        from edge.sim.generate import generate_site

        seed = DEFAULT_SEED if opts.seed is None else opts.seed
        if seed < 0:
            raise RunError(f"--seed must be >= 0, got {seed}")
        # the built-in site's schedules cover the run, however long (a soak runs 2,000 s)
        config = device_config_for_site(
            generate_site(seed, duration_s=max(600.0, float(opts.duration_s)))
        )
        origin, built_in = f"built-in virtual site, seed {seed}", True
    if opts.mqtt_url is not None:
        try:
            mqtt = MqttSettings(url=opts.mqtt_url, client_id=config.device_id)
        except ValidationError as exc:
            problems = "; ".join(err["msg"] for err in exc.errors(include_url=False))
            raise RunError(f"--mqtt {opts.mqtt_url}: {problems}") from None
        if config.mqtt is not None:  # keep the device's credentials and TLS files, change the URL
            mqtt = config.mqtt.model_copy(update={"url": mqtt.url})
        config = config.model_copy(update={"mqtt": mqtt})
    return config, origin, built_in


def apply_vlm_option(config: DeviceConfig, vlm: bool | None) -> DeviceConfig:
    """``--vlm``: None keeps the config's ``vlm``; off sets ``vlm.backend: none``; on keeps a
    configured backend, else llama.cpp with ``models.vlm`` (the shipped model when unset)."""
    if vlm is None or (vlm and config.vlm.backend != "none"):
        return config
    if not vlm:
        return config.model_copy(update={"vlm": config.vlm.model_copy(update={"backend": "none"})})
    model = config.models.vlm if config.models.vlm is not None else SHIPPED_VLM
    return config.model_copy(
        update={
            "vlm": config.vlm.model_copy(update={"backend": "llamacpp"}),
            "models": config.models.model_copy(update={"vlm": Path(model)}),
        }
    )


def build_vlm_gate(config: DeviceConfig) -> WorkerVlmGate | None:
    """The VLM gate of ``config.vlm`` (None for ``backend: none``); nothing is loaded or
    started here (:meth:`Agent.start` starts the worker, which loads the model in its thread).

    Raises :class:`RunError` naming ``models.vlm`` when the model files are missing or do not
    match their manifest.
    """
    from edge.alerts.vlm_gate import DEFAULT_IMAGE_SIZE
    from edge.vlm.backend import LlamaCppBackend, OpenAIHTTPBackend, VLMModelFiles, VLMUnavailable
    from edge.vlm.worker import VLMWorker

    settings = config.vlm
    backend: LlamaCppBackend | OpenAIHTTPBackend
    if settings.backend == "none":
        return None
    if settings.backend == "llamacpp":
        assert config.models.vlm is not None  # DeviceConfig requires it for llamacpp
        try:
            files = VLMModelFiles.find(Path(config.models.vlm))
        except VLMUnavailable as exc:
            raise RunError(f"models.vlm {config.models.vlm}: {exc}") from None
        backend = LlamaCppBackend(files, n_threads=VLM_THREADS)
        size = int(files.manifest.get("image_size_px") or DEFAULT_IMAGE_SIZE)
        # the views the model learnt to judge (export/vlm.py trained_views): asked about those
        views = files.manifest.get("trained_views") or {}
        max_blur = float(views.get("max_blur_px", 0.0))
        partly_out = bool(views.get("partly_out_of_view", False))
    else:
        assert settings.url is not None  # DeviceConfig requires it for openai
        backend = OpenAIHTTPBackend(
            str(settings.url),
            model=settings.model or "sitehawk-vlm",
            timeout_s=settings.timeout_s,
        )
        size = DEFAULT_IMAGE_SIZE
        max_blur, partly_out = 0.0, False  # a server's model: still, whole views only
    worker = VLMWorker(backend, timeout_s=settings.timeout_s, max_queue=settings.max_queue)
    return WorkerVlmGate(
        worker, image_size=size, max_blur_model_px=max_blur, partly_out_of_view=partly_out
    )


def check_cameras(config: DeviceConfig) -> None:
    """Refuse sources and models this build cannot run, naming the camera and the source."""
    for cam in config.cameras:
        if cam.source_kind == "virtual":
            continue
        if cam.mount is None:  # validated; an invariant for the code below
            raise RunError(f"cameras.{cam.id}.mount: required for an {cam.source_kind} camera")
    detector = config.models.detector
    if detector is not None and not Path(detector).is_file():
        raise RunError(f"models.detector: {detector}: no such model file")


def detector_model(opts: RunOptions, config: DeviceConfig) -> Path | None:
    """The detector model the run's cameras use, or None for simulated perception.

    ``--perception sim`` forces simulated perception (virtual cameras only); ``detector`` forces
    the model (the config's, else the shipped one). By default a config's `models.detector` is
    used when set; the built-in site runs simulated perception until the shipped detector's
    alerts match it (`sitehawk-edge eval --perception detector` measures that; README).
    """
    if opts.perception == "sim":
        return None
    configured = Path(config.models.detector) if config.models.detector is not None else None
    if configured is not None:
        return configured
    if opts.perception == "detector":
        if not SHIPPED_DETECTOR.is_file():
            raise RunError(
                f"--perception detector: no models.detector in the config and no shipped "
                f"detector at {SHIPPED_DETECTOR}"
            )
        return SHIPPED_DETECTOR
    return None


def load_detector(path: Path, field: str = "models.detector") -> Detector:
    """The model detector for ``path`` (ONNX Runtime or TensorRT); errors name the field."""
    from edge.perception.detector import ModelDetector
    from edge.perception.manifest import DetectorModelError

    try:
        return ModelDetector(path)
    except DetectorModelError as exc:
        raise RunError(f"{field}: {exc}") from None


def choose_policy(opts: RunOptions, config: DeviceConfig, built_in: bool) -> str:
    name = opts.policy or (SHIPPED_POLICY if built_in else config.policy.name)
    if name not in POLICIES:
        raise RunError(f"--policy {name}: unknown policy; choose one of {', '.join(POLICIES)}")
    for cam in config.cameras:
        if cam.source_kind == "rtsp" and name != FIXED_VIEW_POLICY:
            where = "--policy" if opts.policy else "policy.name"
            raise RunError(
                f"{where} {name}: camera {cam.id} is an rtsp camera (cameras.{cam.id}.rtsp): it "
                f"has no PTZ to steer, so only {FIXED_VIEW_POLICY} runs on it; configure it as "
                "an onvif camera to steer it"
            )
    return name


def build_policy(name: str, config: DeviceConfig) -> Policy:
    """A fresh policy instance (one per camera) with the config's parameters."""
    params = dict(config.policy.params) if name == config.policy.name else {}
    if name == "learned":
        if config.models.policy is None:
            raise RunError(
                "policy learned: no policy model is configured (models.policy) and none is "
                "shipped yet; use a baseline (--policy greedy)"
            )
        params["path"] = config.models.policy
    try:
        return make_policy(name, **params)
    except TypeError as exc:
        raise RunError(f"policy.params: {exc}") from None
    except ValueError as exc:  # e.g. a policy manifest that does not fit
        raise RunError(f"policy {name}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# virtual cameras
def _load_site(cam: CameraConfig) -> SiteSpec:
    from edge.sim.generate import generate_site

    source = cam.virtual
    assert source is not None
    if source.site_file is not None:
        try:
            return SiteSpec.load(source.site_file)
        except SiteFileError as exc:
            raise RunError(f"cameras.{cam.id}.virtual.site_file: {exc}") from None
    assert source.seed is not None
    return generate_site(source.seed, duration_s=source.duration_s or 600.0)


def _site_key(spec: SiteSpec) -> str:
    return f"seed {spec.seed}" if spec.seed is not None else f"site {spec.name}"


def build_virtual_rig(
    cam: CameraConfig, opts: RunOptions, outbox: Outbox, console: RunConsole
) -> VirtualRig:
    """The virtual camera of ``cam``, resumed where this device stopped (see the module doc)."""
    spec = _load_site(cam)
    if opts.duration_s > spec.duration_s:
        raise RunError(
            f"--duration {opts.duration_s:g}: the virtual site of camera {cam.id} covers only "
            f"{spec.duration_s:g} s of site time"
        )
    key = f"virtual/{cam.id}"
    saved = outbox.state.get(key)
    start_t, pose, resumed = 0.0, None, False
    if opts.start_s is not None:
        start_t = opts.start_s
        if start_t < 0 or start_t + opts.duration_s > spec.duration_s:
            raise RunError(
                f"--start {start_t:g} with --duration {opts.duration_s:g} runs past the end of "
                f"the virtual site of camera {cam.id} ({spec.duration_s:g} s)"
            )
    elif isinstance(saved, dict) and saved.get("site") == _site_key(spec):
        saved_t = float(saved.get("t", 0.0))
        if saved_t + opts.duration_s <= spec.duration_s:
            start_t, resumed = saved_t, True
            pan, tilt, zoom = (float(v) for v in saved["pose"])
            pose = PTZPose(pan, tilt, zoom)
        else:
            console.print(
                f"virtual site of camera {cam.id} reached its end ({spec.duration_s:g} s): "
                "starting it over at 0 s"
            )
    saved_wall = None
    if isinstance(saved, dict) and isinstance(saved.get("wall"), str):
        try:
            saved_wall = datetime.fromisoformat(saved["wall"].replace("Z", "+00:00"))
        except ValueError:
            saved_wall = None
    site = VirtualSite(spec, start_t=start_t, start_pose=pose)
    site.frame_index = int(round(start_t * cam.frame_rate_hz))  # fresh perception noise
    camera = VirtualCamera(
        site,
        camera_id=cam.id,
        frame_rate_hz=cam.frame_rate_hz,
        size=opts.frame_size,
        realtime=opts.realtime,
    )
    return VirtualRig(cam.id, spec, site, camera, start_t, resumed, key, saved_wall)


def _checkpoint(rig: VirtualRig, outbox: Outbox, clock: Clock) -> None:
    pose = rig.camera.pose
    outbox.state.set(
        rig.checkpoint_key,
        {
            "site": _site_key(rig.spec),
            "t": round(rig.camera.t, 6),
            "pose": [pose.pan_deg, pose.tilt_deg, pose.zoom],
            "wall": format_utc(clock.now()),
        },
    )
    rig.last_checkpoint_t = rig.camera.t


def _site_clock(rigs: list[VirtualRig]) -> SiteClock:
    """Message timestamps follow site time (see SiteClock), from now — or from where the last
    run's clock stopped when that is later (a fast site runs ahead of real time), so a device's
    timestamps never go back across restarts."""
    start = datetime.now(timezone.utc)
    floors = [rig.saved_wall for rig in rigs if rig.saved_wall is not None]
    return SiteClock(rigs[0].camera, wall_start=max([start, *floors]))


# ---------------------------------------------------------------------------------------------
# real cameras (ONVIF PTZ + RTSP, or a fixed RTSP stream)
def fixed_pose(cam: CameraConfig) -> PTZPose:
    """The view of a camera without PTZ: its preset `home`, else its first preset, else level."""
    presets = {p.name: p for p in cam.presets}
    preset = presets.get("home") or (cam.presets[0] if cam.presets else None)
    if preset is None:
        return PTZPose(0.0, 0.0, 1.0)
    return PTZPose(preset.pan_deg, preset.tilt_deg, preset.zoom)


def build_stream_rig(cam: CameraConfig, console: RunConsole) -> StreamRig:
    """The ONVIF controller (connected) and video source of a real camera."""
    assert cam.mount is not None, "check_cameras: real cameras have a mount"
    if cam.rtsp is not None:
        url = str(cam.rtsp.url)
        source = VideoSource(url, camera_id=cam.id, pose=fixed_pose(cam))
        return StreamRig(cam.id, "rtsp", source, None, mask_url(url))
    onvif = cam.onvif
    assert onvif is not None, "validated: exactly one source"
    ptz = OnvifPTZ(OnvifSettings.from_config(onvif), cam.mount)
    try:
        ptz.connect()
        if onvif.stream_url is not None:
            url = with_credentials(str(onvif.stream_url), onvif.username, onvif.password_value())
        else:
            url = ptz.stream_uri()
    except OnvifError as exc:
        ptz.close()
        raise RunError(f"cameras.{cam.id}.onvif: {exc}") from None
    console.print(f"camera {cam.id}: ONVIF PTZ at {onvif.url}, video {mask_url(url)}")
    source = VideoSource(url, camera_id=cam.id, ptz=ptz)
    return StreamRig(cam.id, "onvif", source, ptz, str(onvif.url))


def stream_detector(cam: CameraConfig, model: Path | None) -> Detector:
    """The detector of a real camera: the `models.detector` backend (simulated perception needs
    the virtual site's ground truth)."""
    if model is None:
        raise RunError(
            f"cameras.{cam.id}: an {cam.source_kind} camera needs a detector model "
            "(models.detector); simulated perception works only on the virtual site"
        )
    return load_detector(model)


def serve_virtual_onvif(
    rig: VirtualRig, cam: CameraConfig, mount: CameraMountSpec, opts: RunOptions
) -> tuple[VirtualOnvifServer, OnvifPTZ]:
    """--onvif: the virtual camera's ONVIF service on loopback and the controller that drives it.

    The site runs on its own clock, faster than real time unless --realtime, so the command
    rate limit (meant for a real camera's wall clock) is off then.
    """
    password = secrets.token_urlsafe(12)
    presets = [(p.name, PTZPose(p.pan_deg, p.tilt_deg, p.zoom)) for p in cam.presets]
    server = VirtualOnvifServer(
        rig.camera, username=VIRTUAL_ONVIF_USER, password=password, presets=presets
    )
    url = server.start()
    settings = OnvifSettings(url, VIRTUAL_ONVIF_USER, password)
    if not opts.realtime:
        settings = dataclasses.replace(settings, min_command_interval_s=0.0)
    ptz = OnvifPTZ(settings, mount)
    try:
        ptz.connect()
    except OnvifError as exc:
        server.stop()
        raise RunError(f"cameras.{cam.id}: the virtual camera's ONVIF service: {exc}") from None
    return server, ptz


# ---------------------------------------------------------------------------------------------
# prepare, run, finish
def prepare(opts: RunOptions, console: RunConsole) -> PreparedRun:
    """Build the agent and its parts; nothing is started and nothing is published yet."""
    if opts.duration_s <= 0:
        raise RunError(f"--duration must be positive, got {opts.duration_s:g}")
    config, origin, built_in = resolve_config(opts)
    config = apply_vlm_option(config, opts.vlm)
    check_cameras(config)
    policy_name = choose_policy(opts, config, built_in)
    detector_path = detector_model(opts, config)
    try:
        models = model_digests(config, ("policy",) if policy_name == "learned" else ())
        models.update(model_digests(config, ("vlm",)) if config.vlm.backend == "llamacpp" else {})
    except ModelFileError as exc:
        raise RunError(str(exc)) from None
    run_dir = opts.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--out {run_dir}: cannot create the folder: {exc.strerror}") from None
    db_path = opts.outbox or outbox_path(config)
    try:
        outbox = Outbox(db_path, config.outbox.max_messages, int(config.outbox.max_bytes))
    except (OutboxError, ValueError) as exc:
        raise RunError(f"outbox: {exc}") from None
    rigs: list[VirtualRig] = []
    streams: list[StreamRig] = []
    servers: list[VirtualOnvifServer] = []
    onvif_ptz: dict[str, OnvifPTZ] = {}
    try:
        cameras = []
        for cam in config.cameras:
            if cam.source_kind != "virtual":
                assert cam.mount is not None
                detector = stream_detector(cam, detector_path)  # before any network I/O
                stream = build_stream_rig(cam, console)
                streams.append(stream)
                steered = stream.ptz is not None
                cameras.append(
                    CameraSetup(
                        camera_id=cam.id,
                        mount=cam.mount,
                        source=stream.source,
                        detector=detector,
                        ptz=stream.ptz,
                        policy=build_policy(policy_name, config) if steered else None,
                        policy_context=(
                            policy_context(config, cam, cam.mount, []) if steered else None
                        ),
                    )
                )
                continue
            rig = build_virtual_rig(cam, opts, outbox, console)
            rigs.append(rig)
            mount = cam.mount or rig.spec.camera.model_copy(update={"id": cam.id})
            ctx = policy_context(config, cam, mount, rig.spec.work_areas)
            ptz: PTZDriver = rig.camera.ptz
            if opts.onvif:
                server, ptz = serve_virtual_onvif(rig, cam, mount, opts)
                servers.append(server)
                onvif_ptz[cam.id] = ptz
            cameras.append(
                CameraSetup(
                    camera_id=cam.id,
                    mount=mount,
                    source=rig.camera,
                    detector=(
                        SimulatedDetector(rig.camera, seed=rig.spec.seed or 0)
                        if detector_path is None
                        else load_detector(detector_path)
                    ),
                    ptz=ptz,
                    policy=build_policy(policy_name, config),
                    policy_context=ctx,
                    policy_seed=rig.spec.seed,
                )
            )
        settings = agent_settings(config, alert_log=run_dir / "alerts.jsonl", models=models)
        link = None
        if config.mqtt is not None:
            link_settings = LinkSettings.from_config(config.mqtt, config.device_id)
            topics = Topics(link_settings.topic_prefix, config.site_id, config.device_id)
            link = MqttLink(link_settings, outbox, topics, StatusInfo(0, __version__, models))
        # message timestamps follow site time only when every camera is on a virtual site
        clock: Clock = _site_clock(rigs) if rigs and not streams else SystemClock()
        agent = Agent(
            settings, cameras, outbox, link=link, clock=clock, vlm_gate=build_vlm_gate(config)
        )
    except BaseException:
        for server in servers:
            server.stop()
        for item in [*onvif_ptz.values(), *(s.ptz for s in streams if s.ptz is not None)]:
            item.close()
        for stream in streams:
            stream.source.close()
        outbox.close()
        raise
    return PreparedRun(
        config, origin, policy_name, run_dir, outbox, agent, rigs, clock,
        streams=streams, servers=servers, onvif_ptz=onvif_ptz,
    )  # fmt: skip


@contextmanager
def _stop_on_sigterm(agent: Agent) -> Iterator[None]:
    """SIGTERM ends the run like the end of --duration (only from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(run: PreparedRun, opts: RunOptions, console: RunConsole) -> dict[str, Any]:
    """Run the agent for ``opts.duration_s`` of site time; write status.json and the report."""
    agent, outbox = run.agent, run.outbox
    rigs = {rig.camera_id: rig for rig in run.rigs}
    end_t = {rig.camera_id: rig.start_t + opts.duration_s for rig in run.rigs}

    def on_alert(record: AlertRecord) -> None:
        console.alert(record)
        if record.snapshot_jpeg is not None:
            # evidence goes to disk at once: a long run must not hold every JPEG in memory
            snap_dir = run.run_dir / "snapshots"
            snap_dir.mkdir(parents=True, exist_ok=True)
            (snap_dir / f"{record.alert['alert_id']}.jpg").write_bytes(record.snapshot_jpeg)
            record = dataclasses.replace(record, snapshot_jpeg=None)
        run.records.append(record)

    def on_frame(report: FrameReport) -> None:
        rig = rigs.get(report.camera_id)
        if rig is not None:
            if report.command is not None or not rig.path:
                rig.path.append((report.t, report.pose))
                if len(rig.path) > MAX_PATH_POINTS:  # keep memory flat on long runs
                    rig.path[:] = rig.path[::2]
            if rig.camera.t - rig.last_checkpoint_t >= CHECKPOINT_INTERVAL_S:
                _checkpoint(rig, outbox, run.clock)
        if console.due():
            console.status(agent.telemetry(), report.t, end_t.get(report.camera_id))

    agent.on_alert.append(on_alert)
    agent.on_frame.append(on_frame)
    for rig in run.rigs:
        how = "resumed where this device stopped" if rig.resumed else "from"
        steered = run.onvif_ptz.get(rig.camera_id)
        over = f", PTZ over ONVIF at {steered.settings.url}" if steered is not None else ""
        console.print(
            f"{run.config.device_id} on {run.config.site_id}: camera {rig.camera_id} on the "
            f"virtual site ({_site_key(rig.spec)}), site time {how} {rig.start_t:g} s, "
            f"{opts.duration_s:g} s{' in real time' if opts.realtime else ' as fast as it runs'}"
            f", policy {run.policy_name}{over}"
        )
    for stream in run.streams:
        console.print(
            f"{run.config.device_id} on {run.config.site_id}: camera {stream.camera_id} "
            f"({stream.kind} at {stream.where}), {opts.duration_s:g} s, "
            + (f"policy {run.policy_name}" if stream.ptz is not None else "fixed view")
        )
    if run.config.mqtt is not None:
        console.print(f"publishing to {run.config.mqtt.url} (outbox {outbox.path})")
    else:
        console.print(f"no broker (--mqtt): alerts go to {run.run_dir / 'alerts.jsonl'} only")
    wall_start = time.monotonic()
    interrupted = False
    try:
        try:
            with _stop_on_sigterm(agent):
                agent.start()
                agent.run(opts.duration_s)
        except KeyboardInterrupt:
            interrupted = True
            console.print("interrupted: stopping")
        except LinkSettingsError as exc:  # a TLS file the link cannot load
            raise RunError(str(exc)) from None
        finally:
            delivered = agent.stop()
            run.close_cameras()
            for rig in run.rigs:
                if rig.camera.num_frames:
                    _checkpoint(rig, outbox, run.clock)
        wall_s = time.monotonic() - wall_start
        telemetry = agent.telemetry()
        console.end_live()  # the final status stays on screen as an ordinary line
        console.status({**telemetry, "connected": None}, None, None)  # the link is stopped
        summary = _write_results(run, opts, telemetry, wall_s, delivered, interrupted, console)
    finally:
        outbox.close()
    return summary


def _write_results(
    run: PreparedRun,
    opts: RunOptions,
    telemetry: dict[str, Any],
    wall_s: float,
    delivered: bool,
    interrupted: bool,
    console: RunConsole,
) -> dict[str, Any]:
    from edge.report import score_run, write_report

    agent = run.agent
    scores = {rig.camera_id: score_run(rig, run.records) for rig in run.rigs}
    site_s = sum(rig.camera.num_frames / rig.camera.frame_rate_hz for rig in run.rigs)
    status = agent.status("stopped") if agent.status_info is not None else {}
    summary = {
        **status,
        "run": {
            "source": run.origin,
            "device_id": run.config.device_id,
            "site_id": run.config.site_id,
            "policy": run.policy_name,
            "cameras": {
                rig.camera_id: {
                    "start_t": rig.start_t,
                    "end_t": round(rig.camera.t, 3),
                    "resumed": rig.resumed,
                    "frames": rig.camera.num_frames,
                    "frame_size": list(rig.camera.size),
                }
                for rig in run.rigs
            }
            | {
                stream.camera_id: {
                    "source": stream.kind,
                    "url": stream.where,
                    "frames": stream.source.num_frames,
                    "reconnects": stream.source.reconnects,
                    "problems": dict(stream.source.problems),
                    "onvif": _onvif_stats(stream.ptz),
                }
                for stream in run.streams
            },
            "onvif": {cam: _onvif_stats(ptz) for cam, ptz in run.onvif_ptz.items()} or None,
            "duration_s": opts.duration_s,
            "wall_s": round(wall_s, 3),
            "speed": round(site_s / wall_s, 3) if wall_s > 0 else None,
            "realtime": opts.realtime,
            "interrupted": interrupted,
            "mqtt": run.config.mqtt.url if run.config.mqtt is not None else None,
            "delivered": delivered if run.config.mqtt is not None else None,
            "outbox": str(run.outbox.path),
            "alerts_file": "alerts.jsonl",
        },
        "telemetry": telemetry,
        "score": {cam: score.to_json() for cam, score in scores.items()},
    }
    (run.run_dir / "status.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"run folder {run.run_dir}: alerts.jsonl, status.json"]
    if opts.report:
        report = write_report(run, summary, scores)
        lines[0] += f", {report.name}"
    for cam, score in scores.items():
        lines.append(
            f"camera {cam}: {len(score.alerts)} alerts raised, {score.num_matched} of "
            f"{len(score.events)} hazard events found"
            + (f", precision {score.precision:.2f}" if score.precision is not None else "")
            + (f", recall {score.recall:.2f}" if score.recall is not None else "")
        )
    if run.config.mqtt is not None and not delivered:
        lines.append(
            f"not everything reached the broker: {run.outbox.depth} message(s) wait in "
            f"{run.outbox.path} for the next run"
        )
    refused = run.outbox.refused_count
    if run.config.mqtt is not None and refused:
        # refused messages left the outbox, but they did not reach subscribers: say so
        lines.append(
            f"the broker has refused {refused} message(s) of this device so far (e.g. not "
            f"authorised for the topic): "
            f"kept aside in {run.outbox.path}; check the device's credentials and ACL"
        )
    for line in lines:
        console.print(line)
    return summary


def _onvif_stats(ptz: OnvifPTZ | None) -> dict[str, Any] | None:
    """An ONVIF controller's counters for status.json."""
    if ptz is None:
        return None
    return {
        "url": ptz.settings.url,
        "commands": ptz.num_commands,
        "calls": ptz.num_calls,
        "errors": ptz.num_errors,
        "stop_resends": ptz.num_stop_resends,
    }
