"""The edge agent loop (issue 4): frames → detector → tracker → rules → alerts; policy → PTZ.

Runs the real agent on the virtual site with simulated perception. The agent's own code must not
see ground truth: only the virtual camera and the simulated detector backend may import the
simulator (checked statically and in a fresh interpreter).
"""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from jsonschema import Draft202012Validator

import edge.agent as agent_module
from edge.agent import Agent, AgentSettings, AlertRecord, CameraSetup, FrameReport
from edge.alerts.rules import DEFAULT_HAZARD_RULES
from edge.alerts.schema import load_alert_schema
from edge.camera.ptz import PTZDriver
from edge.camera.source import Frame, FrameSource, frame_problem
from edge.camera.virtual import SimulatedDetector, SiteClock, VirtualCamera
from edge.cli import main
from edge.device_setup import default_outbox_path, rule_specs, zone_specs
from edge.geometry import PTZPose
from edge.mqtt import Outbox
from edge.policy import PolicyContext, make_policy
from edge.policy.observation import Observation
from edge.sim.device_config import device_config_for_site
from edge.sim.generate import generate_site
from edge.sim.ptz import RelativeMove
from edge.sim.scoring import RaisedAlert, event_extent, score_alerts
from edge.sim.virtual import VirtualSite
from edge.sim.world import Site
from firmware_config.device import MqttSettings

REPO = Path(__file__).resolve().parents[2]
GROUND_TRUTH_MODULES = (
    "edge.sim.world",
    "edge.sim.render",
    "edge.sim.generate",
    "edge.sim.perception",
    "edge.sim.virtual",
    "edge.sim.panorama",
    "edge.sim.scoring",
    "edge.camera.virtual",
)
#: Seed 5 has two workers without helmets from t ≈ 4 s: alerts come early.
SEED = 5


def _agent(
    tmp_path: Path,
    *,
    seed: int = SEED,
    source: FrameSource | None = None,
    policy: str = "greedy",
    size: tuple[int, int] = (640, 360),
    link: Any = None,
    clock: Any = None,
    telemetry_interval_s: float = 5.0,
) -> tuple[Agent, VirtualCamera, Outbox]:
    spec = generate_site(seed)
    camera = VirtualCamera(VirtualSite(spec), size=size)
    config = device_config_for_site(spec)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    settings = AgentSettings(
        site_id=config.site_id,
        device_id=config.device_id,
        rules=rule_specs(config),
        zones=zone_specs(config),
        alert_log=tmp_path / "alerts.jsonl",
        telemetry_interval_s=telemetry_interval_s,
    )
    setup = CameraSetup(
        camera_id="cam0",
        mount=spec.camera,
        source=source or camera,
        detector=SimulatedDetector(camera, seed=seed),
        ptz=camera.ptz,
        policy=make_policy(policy),
        policy_context=PolicyContext(spec.camera, spec.work_areas, control_hz=5.0),
        policy_seed=seed,
    )
    agent = Agent(settings, [setup], outbox, link=link, clock=clock or SiteClock(camera))
    return agent, camera, outbox


# ------------------------------------------------------------------ no ground truth
def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    "module",
    [
        "edge/agent.py",
        "edge/camera/source.py",
        "edge/camera/ptz.py",
        "edge/perception/backend.py",
        "edge/telemetry.py",
        "edge/device_setup.py",
    ],
)
def test_agent_code_imports_no_ground_truth(module: str) -> None:
    imported = _imports(REPO / module)
    assert imported, "the ast walk found no imports at all"
    bad = sorted(n for n in imported if n.startswith(GROUND_TRUTH_MODULES))
    assert not bad, f"{module} imports {bad}"


def test_agent_pulls_in_no_ground_truth_transitively(assert_no_ground_truth_imported: Any) -> None:
    assert_no_ground_truth_imported("edge.agent", "edge.device_setup", "edge.camera.ptz")


def test_the_agent_sees_frames_detections_and_poses_only() -> None:
    # the camera loop's inputs: a Frame (image, t, pose, index) and the detector's output
    assert [f.name for f in Frame.__dataclass_fields__.values()] == ["image", "t", "pose", "index"]
    source = inspect.getsource(agent_module)
    for word in ("FrameTruth", "truth", "hazards", "Site("):
        assert word not in source.replace("ground truth", ""), word


# ------------------------------------------------------------------ a run on the virtual site
def test_a_30_s_run_raises_valid_alerts_with_increasing_seq(tmp_path: Path) -> None:
    agent, camera, outbox = _agent(tmp_path)
    records: list[AlertRecord] = []
    frames: list[FrameReport] = []
    agent.on_alert.append(records.append)
    agent.on_frame.append(frames.append)
    agent.run(30.0)
    assert agent.stop() is True  # no link: nothing waits
    assert len(frames) == 300 == camera.num_frames  # 10 frames per site second
    assert frames[0].t == 0.0 and frames[-1].t == pytest.approx(29.9)
    raised = [r for r in records if r.alert["state"] == "raised"]
    assert raised, "a 30 s run on seed 5 (two bare heads from 4 s) raised no alert"

    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [line.encode() for line in lines] == [r.payload for r in records]  # exactly as built
    validator = Draft202012Validator(load_alert_schema())
    messages = [json.loads(line) for line in lines]
    for message in messages:
        errors = [e.message for e in validator.iter_errors(message)]
        assert not errors, errors
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    for record in raised:  # evidence: the JPEG whose sha256 the alert carries
        image = cv2.imdecode(np.frombuffer(record.snapshot_jpeg or b"", np.uint8), 1)
        assert image is not None and image.shape[:2] == (360, 640)
    # without a broker nothing is queued, but the state lives in the outbox database
    assert outbox.depth == 0
    assert outbox.state.get("seq") == seqs[-1]
    assert outbox.state.get("boot_seq") == 1
    assert outbox.state.get("alerts/open/cam0")["events"]
    # message timestamps follow site time on the virtual site: first_seen → ts spans the dwell
    for m in messages:
        if m["state"] == "raised":
            span = _utc(m["ts"]) - _utc(m["first_seen"])
            assert span >= timedelta(seconds=DEFAULT_HAZARD_RULES[m["hazard"]].dwell_s - 0.01)
    telemetry = agent.telemetry()
    assert telemetry["frames"] == 300 and telemetry["frames_skipped"] == 0
    assert set(telemetry["latency_ms"]) == {
        "capture", "detect", "track", "rules", "alerts", "policy", "total"
    }  # fmt: skip
    total = telemetry["latency_ms"]["total"]
    assert 0 < total["p50"] <= total["p90"] <= total["p99"]
    outbox.close()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_raised_alerts_score_against_the_site_events(tmp_path: Path) -> None:
    agent, camera, outbox = _agent(tmp_path)
    records: list[AlertRecord] = []
    agent.on_alert.append(records.append)
    agent.run(30.0)
    agent.stop()
    raised = [
        RaisedAlert(
            r.alert["alert_id"],
            r.alert["hazard"],
            r.t,
            r.alert["location"]["pan_deg"],
            r.alert["location"]["tilt_deg"],
        )
        for r in records
        if r.alert["state"] == "raised"
    ]
    score = score_alerts(camera.site.site, raised, 0.0, 30.0)
    assert score.num_matched >= 1 and score.precision is not None and score.precision > 0.5
    outbox.close()


# ------------------------------------------------------------------ control rate, PTZ driver
@dataclass
class CountingPolicy:
    """Moves a little right every control step; records when it was asked."""

    name: str = "counting"
    times: list[float] = field(default_factory=list)

    def reset(self, ctx: PolicyContext, seed: int | None = None) -> None:
        self.times.clear()

    def act(self, obs: Observation) -> RelativeMove:
        self.times.append(obs.t)
        return RelativeMove(pan_deg=1.0)


def test_the_policy_acts_at_the_control_rate_and_moves_the_head(tmp_path: Path) -> None:
    agent, camera, outbox = _agent(tmp_path)
    policy = CountingPolicy()
    agent.cameras[0].setup.policy = policy
    start_pan = camera.pose.pan_deg
    agent.run(4.0)
    agent.stop()
    assert isinstance(camera.ptz, PTZDriver)
    assert len(policy.times) == 20  # 5 Hz over 4 s of 10 fps frames
    assert np.allclose(np.diff(policy.times), 0.2)
    assert camera.ptz.num_commands == 20
    assert camera.pose.pan_deg == pytest.approx(start_pan + 19.0, abs=1.5)  # latency 0.1 s
    outbox.close()


# ------------------------------------------------------------------ corrupt frames
class CorruptingSource:
    """Passes the camera's frames on, but spoils some of them."""

    def __init__(self, camera: VirtualCamera, spoil: dict[int, str]):
        self.camera = camera
        self.camera_id = camera.camera_id
        self.spoil = spoil
        self.num_reads = 0

    def read(self) -> Frame | None:
        frame = self.camera.read()
        k, self.num_reads = self.num_reads, self.num_reads + 1
        assert frame is not None
        how = self.spoil.get(k)
        if how == "none":
            return None
        if how == "dtype":
            return replace(frame, image=frame.image.astype(np.float32))
        if how == "shape":
            return replace(frame, image=frame.image[..., 0])
        if how == "no_image":
            return replace(frame, image=None)  # type: ignore[arg-type]
        return frame

    def close(self) -> None:
        self.camera.close()


def test_a_corrupt_frame_is_skipped_and_counted(tmp_path: Path) -> None:
    spec = generate_site(SEED)
    camera = VirtualCamera(VirtualSite(spec), size=(320, 180))
    spoil = {3: "none", 5: "dtype", 8: "shape", 13: "no_image"}
    agent, _, outbox = _agent(tmp_path, source=CorruptingSource(camera, spoil))
    # the detector must be bound to the camera the corrupting source wraps
    agent.cameras[0].setup.detector = SimulatedDetector(camera, seed=SEED)
    agent.start()
    reports = [agent.step() for _ in range(30)]
    agent.stop()
    assert sum(len(r) for r in reports) == 26
    assert dict(agent.cameras[0].skipped) == {"missing": 1, "dtype": 1, "shape": 1, "no_image": 1}
    assert agent.telemetry()["frames_skipped"] == 4
    assert agent.telemetry()["cameras"][0]["frames_skipped"]["dtype"] == 1
    outbox.close()


def test_frame_problem_names_the_defect() -> None:
    good = Frame(np.zeros((4, 6, 3), np.uint8), 0.0, PTZPose(0, 0, 1), 0)
    assert frame_problem(good) is None
    assert frame_problem(None) == "missing"
    assert frame_problem(replace(good, image=np.zeros((4, 6, 3), np.int16))) == "dtype"
    assert frame_problem(replace(good, image=np.zeros((4, 6, 4), np.uint8))) == "shape"
    assert frame_problem(replace(good, t=float("nan"))) == "metadata"
    assert frame_problem("a frame") == "type"


# ------------------------------------------------------------------ telemetry through a link
class FakeLink:
    """Records what the agent hands an MQTT link (the real one is tested with Mosquitto)."""

    def __init__(self) -> None:
        self.telemetry: list[dict[str, Any]] = []
        self.started = self.stopped_with = None
        self.status_info = None
        self.connected, self.reconnects = True, 0

    @property
    def running(self) -> bool:
        return bool(self.started) and self.stopped_with is None

    def start(self) -> None:
        self.started = True

    def publish_telemetry(self, payload: bytes) -> bool:
        self.telemetry.append(json.loads(payload))
        return True

    def stop(self, state: str = "stopped", timeout_s: float = 10.0) -> bool:
        self.stopped_with = state
        return True


class SteppingClock:
    """Wall and monotonic time that advance 50 ms per reading of monotonic()."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        self.t += 0.05
        return self.t


def test_telemetry_goes_out_every_interval_with_stage_latencies(tmp_path: Path) -> None:
    link = FakeLink()
    agent, _, outbox = _agent(
        tmp_path, link=link, clock=SteppingClock(), telemetry_interval_s=1.0, size=(320, 180)
    )
    agent.run(3.0)
    assert link.started and link.status_info is agent.status_info
    agent.stop()
    assert link.stopped_with == "stopped"
    assert len(link.telemetry) >= 3
    message = link.telemetry[-1]
    for key in ("fps", "latency_ms", "outbox_depth", "outbox_full", "refused", "reconnects"):
        assert key in message, key
    assert "temperatures" in message  # null where /sys/class/thermal has no zones
    assert set(message["latency_ms"]["detect"]) == {"p50", "p90", "p99"}
    status = agent.status()
    assert status["state"] == "stopped" and status["boot_seq"] == 1
    assert set(status) == {
        "state", "boot_seq", "agent_version", "models", "ts", "outbox_depth", "outbox_full",
        "refused",
    }  # fmt: skip
    outbox.close()


# ------------------------------------------------------------------ DeviceConfig adapter
def test_device_config_maps_onto_rules_zones_and_the_outbox_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = device_config_for_site(generate_site(7))
    config = config.model_copy(
        update={
            "hazards": config.hazards.model_copy(
                update={"no_vest": config.hazards.no_vest.model_copy(update={"dwell_s": 4.0})}
            )
        }
    )
    rules = rule_specs(config)
    assert rules["no_vest"].dwell_s == 4.0 and rules["no_vest"].severity == "low"
    assert rules["no_helmet"].require_vlm is True  # vlm_check → require_vlm
    assert rules["zone_intrusion"].require_vlm is False
    zones = zone_specs(config)
    assert [z.id for z in zones] == [z.id for z in config.zones]
    assert all(z.active == "while_machine_moving" for z in zones)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_outbox_path("vsite-7") == tmp_path / "state/sitehawk/vsite-7/outbox.sqlite3"


def test_scoring_matches_type_place_and_time() -> None:
    site = Site(generate_site(SEED))
    event = next(h for h in site.hazards if h.type == "no_helmet" and h.start_s < 10)
    t = event.start_s + 5.0
    extent = event_extent(site, event, t)
    assert extent is not None
    pan, tilt = extent.centre
    hit = RaisedAlert("a", "no_helmet", t, pan, tilt)
    score = score_alerts(site, [hit, replace(hit, alert_id="b", t=t + 1)], 0.0, 30.0)
    found = [e for e in score.events if e.id == event.id][0]
    assert found.alert_id == "a" and found.tta_s == pytest.approx(5.0)
    by_id = {a.alert_id: a.event_id for a in score.alerts}
    assert by_id["a"] == event.id  # each event matches one alert at most
    assert by_id["b"] != event.id
    far = replace(hit, alert_id="c", pan_deg=pan + 10.0)
    wrong_type = replace(hit, alert_id="d", hazard="no_vest")
    late = replace(hit, alert_id="e", t=event.end_s + 6.0)
    for alert in (far, wrong_type, late):
        outcome = score_alerts(site, [alert], 0.0, site.spec.duration_s).alerts[0]
        assert outcome.event_id != event.id, alert
    margin = replace(hit, alert_id="f", pan_deg=extent.pan_max + 1.9)
    assert score_alerts(site, [margin], 0.0, 30.0).alerts[0].event_id is not None


# ------------------------------------------------------------------ the command
def test_sitehawk_edge_run_writes_alerts_status_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["run", "--seed", str(SEED), "--duration", "10", "--start", "4", "--out", str(out)]
    assert main([*argv, "--outbox", str(tmp_path / "outbox.sqlite3")]) == 0
    printed = capsys.readouterr().out
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and status["boot_seq"] == 1
    assert status["run"]["cameras"]["cam0"]["frames"] == 100
    assert status["run"]["cameras"]["cam0"]["start_t"] == 4.0
    assert status["telemetry"]["latency_ms"]["total"]["p50"] > 0
    assert "fps" in printed and "p50 ms" in printed  # the status line
    lines = (out / "alerts.jsonl").read_text().splitlines()
    assert lines, "seed 5 from 4 s: a bare head is raised within 10 s"
    first = json.loads(lines[0])
    assert first["alert_id"][:8] in printed and "RAISED" in printed  # printed as it happened
    report = (out / "report.html").read_text()
    assert "panorama-cam0.jpg" in report and first["alert_id"][:8] in report
    assert cv2.imread(str(out / "panorama-cam0.jpg")) is not None
    snapshot = out / "snapshots" / f"{first['alert_id']}.jpg"
    assert snapshot.read_bytes()[:2] == b"\xff\xd8"
    assert status["score"]["cam0"]["alerts"] >= 1


def test_run_refuses_a_real_camera_config_before_any_network_io(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the example's camera is at a LAN address: the run must stop at what it cannot run (the
    # missing detector model) before it connects to any camera
    code = main(["run", "--config", str(REPO / "examples/device.yaml"), "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "models.detector" in err and "detector.onnx" in err


def test_run_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert main(["run", "--mqtt", "http://x:1", "--out", str(tmp_path)]) == 2
    assert "--mqtt" in capsys.readouterr().err
    assert main(["run", "--policy", "oracle", "--out", str(tmp_path)]) == 2
    assert "--policy oracle" in capsys.readouterr().err
    assert main(["run", "--duration", "0", "--out", str(tmp_path)]) == 2
    assert "--duration" in capsys.readouterr().err
    # the built-in site covers any duration; a --start past its end is refused
    assert main(["run", "--start", "5000", "--duration", "5", "--out", str(tmp_path)]) == 2
    assert "--start" in capsys.readouterr().err


def test_realtime_paces_the_virtual_site_to_the_wall_clock() -> None:
    wall = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds

    camera = VirtualCamera(
        VirtualSite(generate_site(SEED)),
        size=(64, 36),
        realtime=True,
        monotonic=lambda: wall[0],
        sleep=sleep,
    )
    for _ in range(5):
        frame = camera.read()
        assert frame is not None
        wall[0] += 0.03  # processing takes 30 ms of the 100 ms frame period
    assert frame.t == pytest.approx(0.4)
    assert slept == pytest.approx([0.07] * 4)


def test_a_tls_file_the_link_cannot_load_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = generate_site(SEED)
    bad_ca = tmp_path / "ca.crt"
    bad_ca.write_text("not a certificate\n")
    mqtt = MqttSettings(url="mqtts://127.0.0.1:1", tls={"ca_file": str(bad_ca)})
    config = device_config_for_site(spec).model_copy(update={"mqtt": mqtt})
    path = tmp_path / "device.yaml"
    path.write_text(config.to_yaml())
    argv = ["run", "--config", str(path), "--duration", "1", "--out", str(tmp_path / "run")]
    assert main([*argv, "--outbox", str(tmp_path / "outbox.sqlite3")]) == 2
    err = capsys.readouterr().err
    assert "mqtt.tls.ca_file" in err and "ca.crt" in err
