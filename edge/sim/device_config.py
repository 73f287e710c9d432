"""The device config that matches a virtual site: its camera, and one zone per machine.

What a site engineer would write for a real site, derived from the virtual site's own layout, so
a device config drives the simulated site exactly as it drives a real one: the camera mount, PTZ
limits and work areas are the site's, each machine's exclusion zone becomes a ground-plane zone
that is active while a machine inside it moves, and the camera source is the site itself.
Lives in `edge` because `firmware_config` (the config schema) must not import the simulator.
"""

from __future__ import annotations

import re
from pathlib import Path

from edge.sim.spec import SiteSpec
from firmware_config.device import CameraConfig, DeviceConfig, VirtualSource, ZoneConfig


def _topic_safe(text: str) -> str:
    """``text`` with every character an id may not hold replaced by '-'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", text)[:64] or "x"


def device_config_for_site(
    spec: SiteSpec,
    device_id: str | None = None,
    site_id: str | None = None,
    *,
    site_file: str | Path | None = None,
) -> DeviceConfig:
    """The config for a virtual site: its camera, mount and work areas, one zone per machine.

    The camera's source is the site's seed (with its duration) unless ``site_file`` is given:
    pass the file the spec was loaded from when it is not exactly what its seed generates (an
    edited or hand-made site). Ids default to ``vsite-<seed>`` and ``site-<seed>`` (the site's
    name for a site without a seed).
    """
    if site_file is None and spec.seed is None:
        raise ValueError(f"site {spec.name!r} has no seed: pass the site_file it was loaded from")
    tag = str(spec.seed) if spec.seed is not None else _topic_safe(spec.name)
    if site_file is not None:
        source = VirtualSource(site_file=Path(site_file).resolve())
    else:
        source = VirtualSource(seed=spec.seed, duration_s=spec.duration_s)
    camera_id = _topic_safe(spec.camera.id)
    mount = spec.camera.model_copy(update={"id": camera_id}, deep=True)
    camera = CameraConfig(
        id=camera_id,
        virtual=source,
        mount=mount,
        work_areas=[[list(p) for p in area] for area in spec.work_areas],
    )
    zones = [
        ZoneConfig(
            id=_topic_safe(machine.id),
            polygon=[list(p) for p in machine.zone],
            active={"while_machine_moving": True},
        )
        for machine in spec.machines
    ]
    return DeviceConfig(
        device_id=f"vsite-{tag}" if device_id is None else device_id,
        site_id=f"site-{tag}" if site_id is None else site_id,
        cameras=[camera],
        zones=zones,
    )
