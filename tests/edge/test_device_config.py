"""A virtual site's own device config: it validates, matches the site, round-trips through YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.cli import main
from edge.policy.base import POLICIES
from edge.sim.device_config import device_config_for_site
from edge.sim.generate import generate_site
from edge.sim.spec import HAZARD_TYPES as SITE_HAZARD_TYPES
from firmware_config.cli import main as fleet_main
from firmware_config.device import (
    HAZARD_TYPES,
    POLICY_NAMES,
    DeviceConfig,
    WhileMachineMoving,
    load_device_config,
)


@pytest.mark.parametrize("seed", [0, 3, 7, 1000])
def test_config_matches_the_site(seed: int) -> None:
    spec = generate_site(seed)
    cfg = device_config_for_site(spec)
    DeviceConfig.model_validate(cfg.model_dump())  # valid as data, not only as built
    assert (cfg.device_id, cfg.site_id) == (f"vsite-{seed}", f"site-{seed}")
    [camera] = cfg.cameras
    assert camera.virtual is not None and camera.virtual.seed == seed
    assert camera.virtual.duration_s == spec.duration_s
    assert camera.id == spec.camera.id
    assert camera.mount == spec.camera  # position, height, heading and PTZ limits
    assert camera.work_areas == spec.work_areas
    assert len(spec.machines) > 0
    assert [z.id for z in cfg.zones] == [m.id for m in spec.machines]
    for zone, machine in zip(cfg.zones, spec.machines, strict=True):
        assert zone.polygon == machine.zone
        assert isinstance(zone.active, WhileMachineMoving)
        assert zone.activity == "while_machine_moving" and zone.schedule == []
    assert cfg.models.detector is None  # simulated perception: fine on a virtual camera


def test_ids_can_be_chosen_and_are_checked() -> None:
    spec = generate_site(2)
    cfg = device_config_for_site(spec, device_id="jetson-7", site_id="yard")
    assert (cfg.device_id, cfg.site_id) == ("jetson-7", "yard")
    with pytest.raises(ValueError, match="not a valid id"):
        device_config_for_site(spec, device_id="a/b")


def test_a_site_without_seed_needs_its_file(tmp_path: Path) -> None:
    spec = generate_site(4).model_copy(update={"seed": None, "name": "north yard"})
    with pytest.raises(ValueError, match="no seed"):
        device_config_for_site(spec)
    site_file = tmp_path / "site.yaml"
    spec.save(site_file)
    cfg = device_config_for_site(spec, site_file=site_file)
    assert cfg.device_id == "vsite-north-yard"
    assert cfg.cameras[0].virtual is not None
    assert cfg.cameras[0].virtual.site_file == site_file.resolve()


def test_site_config_command_round_trips_through_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "conf" / "device.yaml"  # the folder is created
    assert main(["site", "config", "--seed", "7", "--out", str(out)]) == 0
    spec = generate_site(7)
    assert f"{len(spec.machines)} zones" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# SiteHawk device config (sitehawk.device/1) for virtual site seed 7")
    assert yaml.safe_load(text)["cameras"][0]["virtual"] == {"seed": 7, "duration_s": 600.0}
    assert load_device_config(out) == device_config_for_site(spec)
    assert fleet_main(["validate", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: ok\n"


def test_site_config_from_a_site_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site_file = tmp_path / "site.yaml"
    assert main(["site", "generate", "--seed", "5", "--out", str(site_file), "--workers", "3"]) == 0
    out = tmp_path / "device.yaml"
    args = ["site", "config", "--site", str(site_file), "--out", str(out), "--site-id", "yard"]
    assert main(args) == 0
    # written relative to the config's folder, so the two files can move together
    assert yaml.safe_load(out.read_text())["cameras"][0]["virtual"] == {"site_file": "site.yaml"}
    cfg = load_device_config(out)
    assert cfg.site_id == "yard"
    assert cfg.cameras[0].virtual is not None
    assert cfg.cameras[0].virtual.site_file == site_file.resolve()
    assert cfg == device_config_for_site(
        generate_site(5, num_workers=3), site_id="yard", site_file=site_file
    )


def test_site_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "device.yaml"
    assert main(["site", "config", "--seed", "7", "--out", str(out), "--device-id", "a/b"]) == 2
    err = capsys.readouterr().err
    assert "error: --device-id: 'a/b' is not a valid id" in err
    assert not out.exists()  # nothing half-written
    assert main(["site", "config", "--seed", "7", "--out", str(tmp_path / "device.toml")]) == 2
    assert ".yaml or .yml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc_info:  # one source is required
        main(["site", "config", "--out", str(out)])
    assert exc_info.value.code == 2


def test_config_enums_match_the_edge_registries() -> None:
    """firmware_config cannot import edge, so its copies of these names are checked here."""
    assert set(POLICY_NAMES) == set(POLICIES)
    assert tuple(HAZARD_TYPES) == tuple(SITE_HAZARD_TYPES)
