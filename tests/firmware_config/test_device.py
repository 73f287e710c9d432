"""The device config: loading, every validation rule's `file:field` line, the CLI, the schema."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware_config.cli import DEFAULT_SCHEMA_PATH, main
from firmware_config.device import (
    SCHEMA_PATH,
    DeviceConfig,
    DeviceConfigError,
    ZoneSchedule,
    device_config_schema_text,
    load_device_config,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "device.yaml"
MINIMAL = {"device_id": "dev-1", "site_id": "site-1", "cameras": [{"virtual": {"seed": 7}}]}
SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]
ONVIF_CAMERA = {
    "onvif": {"url": "http://10.0.0.5/onvif/device_service", "username": "u", "password": "p"},
    "mount": {"position": [0, 0], "height_m": 12, "heading_deg": 90},
    "work_areas": [SQUARE],
}


def write(path: Path, data: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(DeviceConfigError) as exc_info:
        load_device_config(path)
    assert str(exc_info.value) == "\n".join(exc_info.value.problems)
    return exc_info.value.problems


def config(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


# ---------------------------------------------------------------------------------- loading
def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_device_config(write(tmp_path / "device.yaml", MINIMAL))
    assert cfg.schema_version == "sitehawk.device/1"
    assert (cfg.device_id, cfg.site_id, cfg.timezone) == ("dev-1", "site-1", "UTC")
    camera = cfg.cameras[0]
    assert (camera.id, camera.source_kind, camera.frame_rate_hz) == ("cam0", "virtual", 10.0)
    assert camera.source.seed == 7 and camera.mount is None
    assert cfg.policy.name == "patrol" and cfg.mqtt is None and cfg.vlm.backend == "none"
    assert cfg.zones == [] and cfg.models.detector is None
    # every hazard has a rule, each with its own type's defaults
    assert cfg.hazards.rule("no_helmet").severity == "medium"
    assert cfg.hazards.rule("no_vest").severity == "low"
    assert cfg.hazards.rule("zone_intrusion").severity == "high"
    assert cfg.hazards.rule("zone_intrusion").vlm_check is False
    assert cfg.hazards.rule("fire_smoke").cooldown_s == 60
    assert cfg.outbox.max_bytes == 256 * 2**20


def test_a_partly_given_rule_keeps_its_own_defaults(tmp_path: Path) -> None:
    data = config(hazards={"no_vest": {"dwell_s": 5}, "fire_smoke": {"enabled": False}})
    cfg = load_device_config(write(tmp_path / "device.yaml", data))
    assert cfg.hazards.no_vest.dwell_s == 5 and cfg.hazards.no_vest.severity == "low"
    assert cfg.hazards.fire_smoke.enabled is False and cfg.hazards.fire_smoke.cooldown_s == 60


def test_yaml_and_toml_give_the_same_config(tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path / "device.yml",
        """\
        device_id: dev-1
        site_id: site-1
        cameras:
          - virtual: {seed: 7}
        zones:
          - id: pit
            polygon: [[0, 0], [10, 0], [10, 10], [0, 10]]
            active: {schedule: [["07:30", "17:00"]]}
        mqtt: {url: "mqtt://broker:1883", username: u, password: p}
        """.replace("        ", ""),
    )
    toml_file = write(
        tmp_path / "device.toml",
        textwrap.dedent(
            """\
            device_id = "dev-1"
            site_id = "site-1"

            [[cameras]]
            virtual = { seed = 7 }

            [[zones]]
            id = "pit"
            polygon = [[0, 0], [10, 0], [10, 10], [0, 10]]
            active = { schedule = [[07:30:00, "17:00"]] }  # a TOML time works too

            [mqtt]
            url = "mqtt://broker:1883"
            username = "u"
            password = "p"
            """
        ),
    )
    from_yaml, from_toml = load_device_config(yaml_file), load_device_config(toml_file)
    assert from_yaml == from_toml
    assert isinstance(from_toml.zones[0].active, ZoneSchedule)
    assert from_toml.zones[0].activity == "schedule"
    assert from_toml.zones[0].schedule == [("07:30", "17:00")]
    assert from_toml.mqtt is not None and from_toml.mqtt.password_value() == "p"


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "sitehawk"
    write(conf / "certs" / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    write(conf / "mqtt.password", "s3cret\n")
    data = config(
        mqtt={
            "url": "mqtts://broker:8883",
            "tls": {"ca_file": "certs/ca.pem"},
            "username": "dev-1",
            "password_file": "mqtt.password",
        },
        models={"detector": "../models/detector.onnx"},  # resolved, not required to exist
    )
    path = write(conf / "device.yaml", data)
    monkeypatch.chdir(tmp_path)  # elsewhere: the config's folder counts, not the cwd
    cfg = load_device_config(Path("etc/sitehawk/device.yaml"))
    assert cfg.mqtt is not None and cfg.mqtt.tls is not None
    assert cfg.mqtt.tls.ca_file == conf / "certs" / "ca.pem"
    assert cfg.mqtt.password_value() == "s3cret"
    assert cfg.models.detector == tmp_path / "etc" / "models" / "detector.onnx"
    assert cfg.mqtt.client_id == "dev-1" and cfg.mqtt.use_tls and cfg.mqtt.port == 8883
    # written back relative to the config's folder, and loaded back the same
    text = cfg.to_yaml(relative_to=conf)
    assert "ca_file: certs/ca.pem" in text and "password_file: mqtt.password" in text
    assert load_device_config(write(conf / "copy.yaml", text)) == cfg
    # a missing file names the resolved path
    (conf / "certs" / "ca.pem").unlink()
    assert problems(path) == [
        f"{path}:mqtt.tls.ca_file: no such file: {conf / 'certs' / 'ca.pem'} "
        "(relative paths are resolved against the config file's folder)"
    ]


# ---------------------------------------------------------------------------------- the rules
def _bad_configs(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    secret = write(tmp_path / "pw.txt", "pw\n")
    virtual = {"virtual": {"seed": 1}}
    return [
        # exactly one camera source
        (config(cameras=[{"id": "cam0"}]), "cameras.0", "exactly one source is required"),
        (
            config(cameras=[{**virtual, "rtsp": {"url": "rtsp://cam/1"}}]),
            "cameras.0",
            "(got virtual and rtsp)",
        ),
        (config(cameras=[{"virtual": {}}]), "cameras.0.virtual", "set seed or site_file"),
        # polygons
        (config(zones=[{"id": "z", "polygon": [[0, 0], [1, 1]]}]), "zones.0.polygon", "at least 3"),
        (
            config(zones=[{"id": "z", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]),
            "zones.0.polygon",
            "the outline crosses itself: edge 0-1 meets edge 2-3",
        ),
        (
            config(zones=[{"id": "z", "polygon": [[0, 0], [5, 0], [10, 0]]}]),
            "zones.0.polygon",
            "the points lie on one line",
        ),
        (
            config(zones=[{"id": "z", "polygon": [[0, 0], [5, 0], [5, 0], [0, 5]]}]),
            "zones.0.polygon",
            "points 1 and 2 are the same point",
        ),
        (
            config(zones=[{"id": "z", "polygon": [[0, 0], [10, 0], [5, 0], [5, 5]]}]),
            "zones.0.polygon",
            "doubles back",
        ),
        # schedules
        (
            config(
                zones=[{"id": "z", "polygon": SQUARE, "active": {"schedule": [["7:30", "12:00"]]}}]
            ),
            "zones.0.active.schedule.0.0",
            "'7:30' is not a time of day",
        ),
        (
            config(
                zones=[{"id": "z", "polygon": SQUARE, "active": {"schedule": [["08:00", "24:00"]]}}]
            ),
            "zones.0.active.schedule.0.1",
            'use "HH:MM"',
        ),
        (
            config(
                zones=[{"id": "z", "polygon": SQUARE, "active": {"schedule": [["08:00", "08:00"]]}}]
            ),
            "zones.0.active.schedule.0",
            "it would be empty",
        ),
        (
            config(zones=[{"id": "z", "polygon": SQUARE, "active": "sometimes"}]),
            "zones.0.active",
            'must be "always"',
        ),
        # MQTT URL
        (
            config(mqtt={"url": "http://broker:1883"}),
            "mqtt.url",
            "the scheme must be mqtt:// or mqtts://",
        ),
        (config(mqtt={"url": "mqtt://broker"}), "mqtt.url", "has no port"),
        (config(mqtt={"url": "mqtt://:1883"}), "mqtt.url", "has no host"),
        (config(mqtt={"url": "mqtt://broker:99999"}), "mqtt.url", "port must be a number"),
        (config(mqtt={"url": "mqtt://u:pw@broker:1883"}), "mqtt.url", "not in the URL"),
        # password vs password_file
        (
            config(
                mqtt={
                    "url": "mqtt://b:1883",
                    "username": "u",
                    "password": "x",
                    "password_file": str(secret),
                }
            ),
            "mqtt.password_file",
            "set either password or password_file, not both",
        ),
        (
            config(
                cameras=[
                    {
                        **ONVIF_CAMERA,
                        "onvif": {**ONVIF_CAMERA["onvif"], "password_file": str(secret)},
                    }
                ],
                models={"detector": "d.onnx"},
            ),
            "cameras.0.onvif.password_file",
            "not both",
        ),
        (config(mqtt={"url": "mqtt://b:1883", "password": "x"}), "mqtt.username", "required when"),
        # TLS files
        (
            config(mqtt={"url": "mqtts://b:8883", "tls": {"ca_file": "nope/ca.pem"}}),
            "mqtt.tls.ca_file",
            f"no such file: {tmp_path / 'nope' / 'ca.pem'}",
        ),
        (
            config(mqtt={"url": "mqtts://b:8883", "tls": {"cert_file": str(tmp_path)}}),
            "mqtt.tls.cert_file",
            "not a file",
        ),
        (
            config(mqtt={"url": "mqtt://b:1883", "tls": {"ca_file": str(secret)}}),
            "mqtt.tls",
            "use mqtts://",
        ),
        # topic-safe ids
        (config(device_id="dev/1"), "device_id", "'dev/1' is not a valid id"),
        (config(site_id="site+a"), "site_id", "(not '+')"),
        (config(cameras=[{**virtual, "id": "cam#0"}]), "cameras.0.id", "MQTT topic levels"),
        (config(zones=[{"id": "pit 1", "polygon": SQUARE}]), "zones.0.id", "(not ' ')"),
        (config(device_id=""), "device_id", "at least 1 character"),
        # cross-field checks
        (config(policy={"name": "learned"}), "models.policy", "required by policy.name 'learned'"),
        (config(cameras=[ONVIF_CAMERA]), "models.detector", "simulated perception only works"),
        (
            config(cameras=[{"rtsp": {"url": "rtsp://cam/1"}}], models={"detector": "d.onnx"}),
            "cameras.0.mount",
            "required for an rtsp camera",
        ),
        (
            config(cameras=[{**ONVIF_CAMERA, "work_areas": []}], models={"detector": "d.onnx"}),
            "cameras.0.work_areas",
            "required for an onvif camera",
        ),
        (
            config(cameras=[{**virtual, "id": "a", "mount": {**ONVIF_CAMERA["mount"], "id": "b"}}]),
            "cameras.0.mount.id",
            "differs from the camera id 'a'",
        ),
        (
            config(
                cameras=[
                    {**ONVIF_CAMERA, "presets": [{"name": "p", "pan_deg": 200, "tilt_deg": 0}]}
                ],
                models={"detector": "d.onnx"},
            ),
            "cameras.0.presets.0.pan_deg",
            "outside the mount's limits -170..170",
        ),
        (
            config(cameras=[virtual, virtual]),
            "cameras.1.id",
            "duplicate id 'cam0' (also cameras.0)",
        ),
        (
            config(zones=[{"id": "z", "polygon": SQUARE}, {"id": "z", "polygon": SQUARE}]),
            "zones.1.id",
            "duplicate id 'z'",
        ),
        (
            config(policy={"control_hz": 20}),
            "policy.control_hz",
            "faster than the frame rate of camera 'cam0' (10 Hz)",
        ),
        (config(vlm={"backend": "openai"}), "vlm.url", "required by backend 'openai'"),
        (config(vlm={"backend": "llamacpp"}), "models.vlm", "required by vlm.backend 'llamacpp'"),
        # plain field errors name the allowed values and what was given
        (
            config(zones=[{"id": "z", "polygon": SQUARE, "severity": "severe"}]),
            "zones.0.severity",
            "'low', 'medium', 'high' or 'critical' (got 'severe')",
        ),
        (config(timezone="Mars/Olympus"), "timezone", "unknown time zone 'Mars/Olympus'"),
        (config(outbox={"max_bytes": "1 KiB"}), "outbox.max_bytes", "at least 1 MiB"),
        (config(schema_version="sitehawk.device/2"), "schema_version", "'sitehawk.device/1'"),
        (
            config(mqtt={"url": "mqtt://b:1883", "usrname": "u"}),
            "mqtt.usrname",
            "unknown field 'usrname'; did you mean 'username'?",
        ),
        (config(camera=[]), "camera", "did you mean 'cameras'?"),
    ]


def test_every_rule_reports_its_file_and_field(tmp_path: Path) -> None:
    cases = _bad_configs(tmp_path)
    for i, (data, field, message) in enumerate(cases):
        path = write(tmp_path / f"case{i}.yaml", data)
        lines = problems(path)
        assert any(line.startswith(f"{path}:{field}: ") and message in line for line in lines), (
            f"case {i}: expected {path}:{field}: …{message}…, got {lines}"
        )


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = {
        "device_id": "dev/1",
        "site_id": "site-1",
        "cameras": [{"virtual": {"seed": 7}, "frame_rate_hz": 0}],
        "zones": [
            {"id": "z", "polygon": [[0, 0], [1, 1]]},
            {"id": "y", "polygon": SQUARE, "active": {"schedule": [["7", "08:00"]]}},
        ],
        "policy": {"name": "learned"},
        "mqtt": {"url": "mqtt://broker"},
        "extra": 1,
    }
    path = write(tmp_path / "device.yaml", data)
    lines = problems(path)
    fields = [line.removeprefix(f"{path}:").split(": ", 1)[0] for line in lines]
    assert fields == [
        "device_id",
        "cameras.0.frame_rate_hz",
        "zones.0.polygon",
        "zones.1.active.schedule.0.0",
        "models.policy",
        "mqtt.url",
        "extra",
    ]


def test_unquoted_yaml_times_are_explained(tmp_path: Path) -> None:
    text = yaml.safe_dump(MINIMAL) + "zones:\n  - {id: z, polygon: [[0,0],[1,0],[1,1]], "
    path = write(tmp_path / "device.yaml", text + "active: {schedule: [[07:00, 17:30]]}}\n")
    assert problems(path) == [
        f"{path}:zones.0.active.schedule.0.1: got the number 1050: YAML reads an unquoted "
        '17:30 as a base-60 number; quote it: "17:30"'
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("device.json", "{}", "unsupported file type '.json': use .yaml, .yml or .toml"),
        ("device.yaml", "", "the file is empty"),
        (
            "device.yaml",
            "- a\n- b\n",
            "expected a mapping (field: value) at the top level, got list",
        ),
        ("device.yaml", "a: [1\n", "not valid YAML (line 2, column 1)"),
        (
            "device.yaml",
            "device_id: a\ndevice_id: b\n",
            "duplicate key 'device_id' (first on line 1)",
        ),
        ("device.toml", "device_id = \n", "not valid TOML"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    [line] = problems(path)
    assert line.startswith(f"{path}: ") and message in line, line


def test_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_secrets_are_masked_and_never_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "device.yaml", config(mqtt={"url": "mqtt://u:hunter2@b", "password": 12345})
    )
    text = "\n".join(problems(path))
    assert "hunter2" not in text and "12345" not in text
    assert "mqtt://u:***@b" in text
    cfg = DeviceConfig.model_validate(
        config(mqtt={"url": "mqtt://b:1883", "username": "u", "password": "hunter2"})
    )
    assert "hunter2" not in repr(cfg)
    assert "password: hunter2" in cfg.to_yaml()  # the file a device is given holds it


def test_zone_schedule_windows_may_run_past_midnight() -> None:
    schedule = ZoneSchedule(schedule=[["22:00", "06:00"], ["12:00", "13:00"]])
    inside = [dt.time(h, m) for h, m in ((22, 0), (23, 59), (0, 0), (5, 59), (12, 30))]
    outside = [dt.time(h, m) for h, m in ((6, 0), (11, 59), (13, 0), (21, 59))]
    assert all(schedule.contains(t) for t in inside)
    assert not any(schedule.contains(t) for t in outside)


def test_closed_rings_are_accepted() -> None:
    ring = [*SQUARE, SQUARE[0]]
    cfg = DeviceConfig.model_validate(config(zones=[{"id": "z", "polygon": ring}]))
    assert cfg.zones[0].polygon == SQUARE


# ---------------------------------------------------------------------------------- CLI
def test_validate_prints_ok_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.yaml", MINIMAL)
    bad = write(tmp_path / "bad.yaml", config(device_id="a/b", mqtt={"url": "mqtt://b"}))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok\n"
    assert main(["validate", str(good), str(bad), str(tmp_path / "missing.toml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: ok"
    assert [line.split(": ", 1)[0] for line in out[1:]] == [
        f"{bad}:device_id",
        f"{bad}:mqtt.url",
        f"{tmp_path / 'missing.toml'}",
    ]


def test_validate_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc_info:
        main(["validate"])
    assert exc_info.value.code == 2
    assert "FILE" in capsys.readouterr().err


def test_example_config_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"{EXAMPLE}: ok\n"
    cfg = load_device_config(EXAMPLE)
    assert [c.source_kind for c in cfg.cameras] == ["onvif"]
    assert cfg.cameras[0].onvif is not None and cfg.cameras[0].onvif.stream_url
    assert len(cfg.zones) == 2 and cfg.mqtt is not None and cfg.mqtt.use_tls


def test_schema_on_disk_is_current() -> None:
    """Fails when DeviceConfig changed: run `sitehawk-fleet schema` and commit the file."""
    assert SCHEMA_PATH == DEFAULT_SCHEMA_PATH
    assert SCHEMA_PATH.read_text(encoding="utf-8") == device_config_schema_text(), (
        "firmware_config/schemas/device.v1.json is out of date: run `sitehawk-fleet schema`"
    )


def test_schema_command_writes_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schemas" / "device.v1.json"
    assert main(["schema", "--check", "--out", str(out)]) == 1  # missing
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == device_config_schema_text()
    assert main(["schema", "--check", "--out", str(out)]) == 0
    assert main(["schema", "--check"]) == 0  # the shipped copy
    out.write_text(out.read_text(encoding="utf-8").replace("sitehawk.device/1", "x"))
    capsys.readouterr()
    assert main(["schema", "--check", "--out", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err
    schema = json.loads(device_config_schema_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"device_id", "site_id", "cameras"}
    assert schema["properties"]["device_id"]["pattern"] == "^[A-Za-z0-9_-]+$"


def test_every_field_has_a_description() -> None:
    schema = json.loads(device_config_schema_text())
    missing = {
        f"{name}.{field}"
        for name, model in [("DeviceConfig", schema), *schema["$defs"].items()]
        for field, prop in model.get("properties", {}).items()
        if "description" not in prop
    }
    assert not missing


def test_cli_import_is_light() -> None:
    code = "import sys, firmware_config.cli; assert 'pydantic' not in sys.modules, 'pydantic'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
