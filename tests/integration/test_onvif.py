"""A real ONVIF conversation over HTTP on loopback: the PTZ controller (zeep, WS-Security digest)
against the virtual camera's ONVIF service, and the agent steering a virtual site through it.

The virtual head moves only as site time advances, so each test advances the camera by reading
frames (``_advance``); every PTZ call is a real SOAP request to a real HTTP server.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.camera.onvif import OnvifAuthError, OnvifError, OnvifPTZ, OnvifSettings
from edge.camera.onvif_server import VirtualOnvifServer
from edge.camera.ptz import PTZDriver
from edge.camera.virtual import VirtualCamera
from edge.cli import main
from edge.console import RunConsole
from edge.geometry import PTZPose
from edge.runner import RunError, RunOptions, build_stream_rig, choose_policy
from edge.sim.virtual import VirtualSite
from firmware_config.device import DeviceConfig

pytestmark = pytest.mark.integration

USER, PASSWORD = "admin", "s3cret-pw"
FRAME_RATE_HZ = 10.0


@pytest.fixture
def camera() -> VirtualCamera:
    site = VirtualSite.from_seed(5, duration_s=120.0)
    return VirtualCamera(site, size=(64, 36), frame_rate_hz=FRAME_RATE_HZ, noise=False)


@pytest.fixture
def server(camera: VirtualCamera) -> Iterator[VirtualOnvifServer]:
    presets = [("gate", PTZPose(-45.0, -15.0, 6.0))]
    with VirtualOnvifServer(camera, username=USER, password=PASSWORD, presets=presets) as srv:
        yield srv


def _ptz(server: VirtualOnvifServer, camera: VirtualCamera, **tuning: Any) -> OnvifPTZ:
    tuning.setdefault("min_command_interval_s", 0.0)
    settings = OnvifSettings(server.url, USER, PASSWORD, timeout_s=5.0, **tuning)
    return OnvifPTZ(settings, camera.site.spec.camera)


def _advance(camera: VirtualCamera, seconds: float) -> None:
    for _ in range(round(seconds * FRAME_RATE_HZ)):
        camera.read()


def _close(a: PTZPose, b: PTZPose, tol: float = 1e-6) -> bool:
    return (
        abs(a.pan_deg - b.pan_deg) < tol
        and abs(a.tilt_deg - b.tilt_deg) < tol
        and abs(a.zoom - b.zoom) < tol * max(1.0, b.zoom)
    )


def test_connect_discovers_the_profile_and_spaces_and_reads_the_status(
    server: VirtualOnvifServer, camera: VirtualCamera
) -> None:
    ptz = _ptz(server, camera)
    assert isinstance(ptz, PTZDriver)
    assert server.operations == []  # no I/O before connect
    info = ptz.connect()
    assert info.profile_token == "profile_1"
    assert info.ptz_url.endswith("/onvif/ptz_service")
    limits = camera.site.spec.camera.limits
    assert info.spaces.pan_deg == (limits.pan_min_deg, limits.pan_max_deg)
    assert info.spaces.zoom_max == limits.zoom_max
    assert server.operations == [
        "device.GetSystemDateAndTime", "device.GetServices", "media.GetProfiles", "ptz.GetNode",
    ]  # fmt: skip
    status = ptz.get_status()
    assert _close(status.pose, camera.site.pose) and status.moving is False
    ptz.close()


def test_absolute_move_reaches_the_pose_and_clamps_to_the_limits(
    server: VirtualOnvifServer, camera: VirtualCamera
) -> None:
    ptz = _ptz(server, camera)
    ptz.absolute_move(30.0, -10.0, 4.0)
    assert ptz.get_status().moving  # the head pays its travel time
    _advance(camera, 3.0)
    status = ptz.get_status()
    assert _close(status.pose, PTZPose(30.0, -10.0, 4.0), 1e-6) and not status.moving
    assert _close(camera.site.pose, PTZPose(30.0, -10.0, 4.0), 1e-6)
    # out of range: clamped by the controller, so the camera never sees an invalid position
    ptz.absolute_move(500.0, -500.0, 100.0)
    _advance(camera, 6.0)
    lim = camera.site.spec.camera.limits
    assert _close(ptz.get_status().pose, PTZPose(lim.pan_max_deg, lim.tilt_min_deg, lim.zoom_max))
    # a relative move goes from the last target
    ptz.relative_move(pan_deg=-20.0, tilt_deg=5.0, zoom_factor=0.5)
    _advance(camera, 3.0)
    expected = PTZPose(lim.pan_max_deg - 20.0, lim.tilt_min_deg + 5.0, lim.zoom_max / 2)
    assert _close(camera.site.pose, expected, 1e-6)


def test_continuous_move_stops_by_itself_after_its_timeout(
    server: VirtualOnvifServer, camera: VirtualCamera
) -> None:
    ptz = _ptz(server, camera)
    start = ptz.get_status().pose
    ptz.continuous_move(pan=0.5, timeout_s=0.5)
    _advance(camera, 0.3)
    assert ptz.get_status().moving
    _advance(camera, 2.0)
    status = ptz.get_status()
    assert not status.moving
    speed = camera.site.spec.camera.limits.pan_speed_dps
    assert status.pose.pan_deg - start.pan_deg == pytest.approx(0.5 * speed * 0.5, abs=1e-6)
    assert status.pose.tilt_deg == pytest.approx(start.tilt_deg)


def test_stop_halts_a_continuous_move(server: VirtualOnvifServer, camera: VirtualCamera) -> None:
    ptz = _ptz(server, camera)
    ptz.continuous_move(tilt=-1.0, zoom=1.0, timeout_s=30.0)
    _advance(camera, 0.5)
    ptz.stop()
    _advance(camera, 0.5)
    halted = ptz.get_status()
    assert not halted.moving
    _advance(camera, 2.0)
    assert _close(ptz.get_status().pose, halted.pose)
    assert ptz.num_stop_resends == 0


def test_stop_is_sent_again_when_the_camera_ignores_it(
    server: VirtualOnvifServer, camera: VirtualCamera
) -> None:
    ptz = _ptz(server, camera, stop_grace_s=0.0)
    ptz.continuous_move(pan=1.0, timeout_s=30.0)
    _advance(camera, 0.5)
    server.ignore_stops = 1  # the camera answers the next Stop but keeps moving
    ptz.stop()
    _advance(camera, 0.5)
    assert ptz.get_status().moving  # still moving: the controller sends Stop again
    assert ptz.num_stop_resends == 1
    _advance(camera, 0.5)
    halted = ptz.get_status()
    assert not halted.moving
    _advance(camera, 1.0)
    assert _close(ptz.get_status().pose, halted.pose)
    assert server.operations.count("ptz.Stop") == 2


def test_a_continuous_move_whose_timeout_is_ignored_is_stopped() -> None:
    # the ContinuousMove timeout runs on the controller's clock too: past it, still moving → Stop
    site = VirtualSite.from_seed(5, duration_s=120.0)
    camera = VirtualCamera(site, size=(64, 36), noise=False)
    now = [0.0]
    with VirtualOnvifServer(camera, username=USER, password=PASSWORD) as server:
        settings = OnvifSettings(server.url, USER, PASSWORD, min_command_interval_s=0.0)
        ptz = OnvifPTZ(settings, site.spec.camera, monotonic=lambda: now[0])
        ptz.continuous_move(pan=1.0, timeout_s=60.0)  # the head keeps moving for 60 site s
        _advance(camera, 0.5)
        now[0] = 59.0  # the controller's clock: the timeout is not over yet
        assert ptz.get_status().moving and ptz.num_stop_resends == 0
        now[0] = 61.0  # over, and the camera still moves: it ignored the timeout
        assert ptz.get_status().moving and ptz.num_stop_resends == 1
        _advance(camera, 0.5)
        assert not ptz.get_status().moving


def test_commands_are_rate_limited(server: VirtualOnvifServer, camera: VirtualCamera) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    settings = OnvifSettings(server.url, USER, PASSWORD, min_command_interval_s=0.25)
    ptz = OnvifPTZ(settings, camera.site.spec.camera, monotonic=lambda: now[0], sleep=sleep)
    ptz.absolute_move(10.0, -10.0, 1.0)
    now[0] += 0.1
    ptz.absolute_move(20.0, -10.0, 1.0)  # 0.1 s later: waits out the other 0.15 s
    now[0] += 1.0
    ptz.stop()  # a second later: no wait
    assert slept == [pytest.approx(0.15)]
    assert server.operations.count("ptz.AbsoluteMove") == 2


def test_presets(server: VirtualOnvifServer, camera: VirtualCamera) -> None:
    ptz = _ptz(server, camera)
    presets = {p.name: p for p in ptz.get_presets()}
    assert set(presets) == {"gate"}
    gate = presets["gate"].pose
    assert gate is not None and _close(gate, PTZPose(-45.0, -15.0, 6.0), 1e-6)
    ptz.goto_preset("gate")
    _advance(camera, 3.0)
    assert _close(camera.site.pose, PTZPose(-45.0, -15.0, 6.0), 1e-6)
    ptz.absolute_move(60.0, -5.0, 2.0)
    _advance(camera, 3.0)
    token = ptz.set_preset("crane")
    ptz.goto_preset("gate")
    _advance(camera, 3.0)
    ptz.goto_preset(token)
    _advance(camera, 3.0)
    assert _close(camera.site.pose, PTZPose(60.0, -5.0, 2.0), 1e-6)
    ptz.remove_preset("crane")
    assert [p.name for p in ptz.get_presets()] == ["gate"]
    with pytest.raises(OnvifError, match="no preset 'nowhere'.*gate"):
        ptz.goto_preset("nowhere")


@pytest.mark.parametrize("user, password", [(USER, "wrong"), ("intruder", PASSWORD), (None, None)])
def test_bad_credentials_are_refused_with_a_clear_error(
    server: VirtualOnvifServer, camera: VirtualCamera, user: str | None, password: str | None
) -> None:
    ptz = OnvifPTZ(OnvifSettings(server.url, user, password), camera.site.spec.camera)
    with pytest.raises(OnvifAuthError) as refused:
        ptz.connect()
    message = str(refused.value)
    assert "media.GetProfiles" in message and "/onvif/media_service" in message
    assert "refused the credentials" in message and "NotAuthorized" in message
    assert server.num_refused == 1
    assert "ptz.AbsoluteMove" not in server.operations


def test_a_camera_that_does_not_answer_times_out_and_backs_off() -> None:
    # a socket that accepts connections (the kernel's backlog) but never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/onvif/device_service"
        site = VirtualSite.from_seed(5, duration_s=60.0)
        settings = OnvifSettings(url, USER, PASSWORD, timeout_s=0.3, attempts=2)
        ptz = OnvifPTZ(settings, site.spec.camera)
        started = time.monotonic()
        with pytest.raises(OnvifError) as timed_out:
            ptz.connect()
        assert time.monotonic() - started < 5.0  # 2 x 0.3 s + backoff, never a hang
        message = str(timed_out.value)
        assert url in message and "device.GetSystemDateAndTime" in message
        assert "no answer within 0.3 s (2 tries)" in message
        # the next call inside the backoff fails at once, without the network
        started = time.monotonic()
        with pytest.raises(OnvifError, match="camera unavailable, next try in"):
            ptz.absolute_move(0.0, 0.0, 1.0)
        assert time.monotonic() - started < 0.2


def test_snapshot_and_stream_uris(camera: VirtualCamera) -> None:
    stream = "rtsp://127.0.0.1:8554/main"
    with VirtualOnvifServer(camera, username=USER, password=PASSWORD, stream_uri=stream) as server:
        ptz = _ptz(server, camera)
        assert ptz.stream_uri() == f"rtsp://{USER}:{PASSWORD}@127.0.0.1:8554/main"
        snapshot = ptz.snapshot_uri()
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(snapshot, timeout=5)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(snapshot, headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Type"] == "image/jpeg"
            jpeg = response.read()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (360, 640, 3)


# ------------------------------------------------------------------ the runner's wiring
def _device_config(tmp_path: Path, camera: dict[str, Any], policy: str = "patrol") -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "device_id": "dev1",
            "site_id": "site1",
            "cameras": [
                {
                    "id": "cam1",
                    **camera,
                    "mount": {"position": [0, 0], "height_m": 12, "heading_deg": 0},
                    "work_areas": [[[0, 10], [10, 10], [10, 20]]],
                }
            ],
            "policy": {"name": policy},
            "models": {"detector": str(tmp_path / "detector.onnx")},
        }
    )


def test_an_rtsp_camera_runs_only_the_fixed_view_policy(tmp_path: Path) -> None:
    config = _device_config(tmp_path, {"rtsp": {"url": "rtsp://127.0.0.1:8554/s"}}, "greedy")
    with pytest.raises(RunError, match=r"policy.name greedy: camera cam1 is an rtsp camera"):
        choose_policy(RunOptions(), config, built_in=False)
    fixed = _device_config(tmp_path, {"rtsp": {"url": "rtsp://127.0.0.1:8554/s"}}, "static_wide")
    assert choose_policy(RunOptions(), fixed, built_in=False) == "static_wide"


def test_an_onvif_camera_is_connected_and_its_stream_asked_for(
    tmp_path: Path, camera: VirtualCamera
) -> None:
    password_file = tmp_path / "onvif.password"
    password_file.write_text(PASSWORD + "\n")
    stream = "rtsp://127.0.0.1:8554/main"
    with VirtualOnvifServer(camera, username=USER, password=PASSWORD, stream_uri=stream) as server:
        onvif = {"url": server.url, "username": USER, "password_file": str(password_file)}
        config = _device_config(tmp_path, {"onvif": onvif})
        with RunConsole(status_interval_s=60) as console:
            rig = build_stream_rig(config.cameras[0], console)
        assert rig.ptz is not None
        try:
            assert rig.kind == "onvif"
            assert rig.source.url == f"rtsp://{USER}:{PASSWORD}@127.0.0.1:8554/main"
            assert rig.source.ptz is rig.ptz
            assert "media.GetStreamUri" in server.operations
        finally:
            rig.ptz.close()


def test_an_onvif_camera_that_cannot_be_reached_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/onvif/device_service"
    config = _device_config(tmp_path, {"onvif": {"url": url}})
    with RunConsole(status_interval_s=60) as console, pytest.raises(RunError) as refused:
        build_stream_rig(config.cameras[0], console)
    message = str(refused.value)
    assert message.startswith("cameras.cam1.onvif: ONVIF device.GetSystemDateAndTime at")
    assert url in message and "cannot connect" in message


# ------------------------------------------------------------------ the agent over ONVIF
def test_the_agent_steers_a_virtual_site_over_onvif_and_raises_alerts(tmp_path: Path) -> None:
    # seed 5: a worker without a helmet is raised at ~12 s of site time (see test_agent_mqtt)
    out = tmp_path / "run"
    argv = ["run", "--seed", "5", "--duration", "16", "--onvif", "--no-report"]
    assert main([*argv, "--out", str(out), "--outbox", str(tmp_path / "outbox.sqlite3")]) == 0
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert any(a["state"] == "raised" and a["hazard"] == "no_helmet" for a in alerts)
    status = json.loads((out / "status.json").read_text())
    onvif = status["run"]["onvif"]["cam0"]
    assert onvif["url"].startswith("http://127.0.0.1:") and onvif["errors"] == 0
    camera_stats = status["telemetry"]["cameras"][0]
    # every policy command went over HTTP as an ONVIF request
    assert camera_stats["ptz_commands"] == onvif["commands"] > 0
    assert camera_stats["ptz_errors"] == 0
    assert status["score"]["cam0"]["precision"] == 1.0
