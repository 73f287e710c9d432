"""The virtual site's description: a typed, versioned model that round-trips through YAML.

A generated site and a hand-modelled real site are the same object: generate one with
:func:`edge.sim.generate.generate_site`, save it, edit the layout (structures, machines, zones,
camera mount), load it back. Everything time-varying (worker paths, machine schedules, hazard
events) is explicit here, so a file fully determines what the simulator shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_config.camera import XY, CameraMountSpec, PTZLimitsSpec

__all__ = ["CameraMountSpec", "PTZLimitsSpec", "SiteSpec", "SiteFileError"]

SITE_SCHEMA: Literal["sitehawk.site/1"] = "sitehawk.site/1"

RGB = Annotated[list[int], Field(min_length=3, max_length=3, description="[r, g, b], 0–255")]
Interval = Annotated[list[float], Field(min_length=2, max_length=2, description="[start_s, end_s]")]

HAZARD_TYPES = ("no_helmet", "no_vest", "zone_intrusion", "fire_smoke")
HazardType = Literal["no_helmet", "no_vest", "zone_intrusion", "fire_smoke"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class StructureSpec(_Strict):
    """A static box-shaped object: building shell, scaffold, container, material pile."""

    kind: Literal["building", "scaffold", "container", "pile"]
    center: XY
    size_m: list[float] = Field(min_length=3, max_length=3, description="[width, depth, height]")
    yaw_deg: float = 0.0
    color: RGB


class MachineSpec(_Strict):
    """A machine with an exclusion zone that is active while it works."""

    id: str
    kind: Literal["excavator", "crane", "truck"]
    position: XY = Field(description="Base position (trucks: start of the route)")
    yaw_deg: float = 0.0
    color: RGB = Field(default_factory=lambda: [240, 180, 20])
    zone: list[XY] = Field(min_length=3, description="Exclusion zone polygon, site metres")
    working: list[Interval] = Field(
        default_factory=list, description="Intervals of site time during which the machine works"
    )
    route: list[XY] = Field(
        default_factory=list, description="Trucks: the polyline driven back and forth while working"
    )


class WaypointSpec(_Strict):
    """A place on a worker's cyclic path and how long the worker stays there."""

    xy: XY
    dwell_s: float = Field(ge=0)
    activity: Literal["working", "standing"] = "working"


class ExcursionSpec(_Strict):
    """A scripted detour: the worker leaves its path, walks to ``target``, stays, returns."""

    target: XY
    leave_s: float = Field(ge=0, description="Site time the worker leaves its path")
    stay_s: float = Field(gt=0, description="Time spent at the target")


class WorkerSpec(_Strict):
    """A worker, its kit and its daily path (cycled)."""

    id: str
    height_m: float = Field(1.75, ge=1.4, le=2.1)
    helmet: bool = Field(True, description="Wears a helmet unless a no_helmet event says otherwise")
    vest: bool = Field(
        True, description="Wears a hi-vis vest unless a no_vest event says otherwise"
    )
    helmet_color: RGB = Field(default_factory=lambda: [245, 245, 240])
    vest_color: RGB = Field(default_factory=lambda: [210, 255, 40])
    shirt_color: RGB = Field(default_factory=lambda: [60, 80, 140])
    pants_color: RGB = Field(default_factory=lambda: [40, 45, 60])
    hair_color: RGB = Field(default_factory=lambda: [40, 30, 25])
    skin_color: RGB = Field(default_factory=lambda: [200, 160, 130])
    speed_mps: float = Field(1.2, gt=0.1, le=3.0)
    phase_s: float = Field(0.0, ge=0, description="Where in its path cycle the worker is at t=0")
    path: list[WaypointSpec] = Field(min_length=1)
    excursions: list[ExcursionSpec] = Field(default_factory=list)


class AttributeEventSpec(_Strict):
    """A worker takes off a helmet or vest for an interval."""

    type: Literal["no_helmet", "no_vest"]
    worker: str
    start_s: float = Field(ge=0)
    end_s: float

    @model_validator(mode="after")
    def _order(self) -> AttributeEventSpec:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


class FireSpec(_Strict):
    """Fire with a smoke plume at a ground point for an interval."""

    position: XY
    start_s: float = Field(ge=0)
    end_s: float
    size_m: float = Field(1.5, gt=0.2, le=10.0, description="Flame base diameter")

    @model_validator(mode="after")
    def _order(self) -> FireSpec:
        if self.end_s <= self.start_s:
            raise ValueError("end_s must be after start_s")
        return self


class GroundSpec(_Strict):
    """Surface layout painted on the ground plane."""

    color: RGB = Field(default_factory=lambda: [150, 125, 95], description="Bare earth")
    surround_color: RGB = Field(default_factory=lambda: [95, 120, 70], description="Off-site")
    roads: list[list[XY]] = Field(default_factory=list, description="Gravel roads (polylines)")
    road_width_m: float = 6.0
    pads: list[list[XY]] = Field(default_factory=list, description="Concrete/gravel pads")
    pits: list[list[XY]] = Field(default_factory=list, description="Excavations (darker earth)")


class LightingSpec(_Strict):
    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = Field(40.0, ge=5.0, le=90.0)
    ambient: float = Field(0.55, ge=0.1, le=1.0, description="Share of light that is not direct")
    exposure: float = Field(1.0, ge=0.4, le=1.6, description="Overall brightness factor")
    haze: float = Field(0.15, ge=0.0, le=0.8, description="Fade to sky colour with distance")


class SiteSpec(_Strict):
    """A whole construction site."""

    schema_version: Literal["sitehawk.site/1"] = SITE_SCHEMA
    name: str = "site"
    seed: int | None = Field(None, description="Seed it was generated from, if any")
    size_m: list[float] = Field(min_length=2, max_length=2, description="[width, depth]")
    duration_s: float = Field(600.0, gt=0, description="Site time the schedules cover")
    camera: CameraMountSpec
    work_areas: list[list[XY]] = Field(
        min_length=1, description="Polygons where workers can be: what a patrol must cover"
    )
    ground: GroundSpec = Field(default_factory=GroundSpec)
    lighting: LightingSpec = Field(default_factory=LightingSpec)
    structures: list[StructureSpec] = Field(default_factory=list)
    machines: list[MachineSpec] = Field(default_factory=list)
    workers: list[WorkerSpec] = Field(default_factory=list)
    attribute_events: list[AttributeEventSpec] = Field(default_factory=list)
    fires: list[FireSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SiteSpec:
        ids = [w.id for w in self.workers]
        if len(set(ids)) != len(ids):
            raise ValueError("worker ids must be unique")
        known = set(ids)
        for i, event in enumerate(self.attribute_events):
            if event.worker not in known:
                raise ValueError(f"attribute_events.{i}.worker: unknown worker {event.worker!r}")
        machine_ids = [m.id for m in self.machines]
        if len(set(machine_ids)) != len(machine_ids):
            raise ValueError("machine ids must be unique")
        return self

    # ------------------------------------------------------------------ I/O
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, width=100)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def load(cls, path: str | Path) -> SiteSpec:
        """Load a YAML site; errors name the file and the field at fault."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise SiteFileError(f"{path}: no such file") from None
        except yaml.YAMLError as exc:
            raise SiteFileError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise SiteFileError(f"{path}: expected a mapping at the top level")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise SiteFileError(format_validation_error(path, exc)) from None


class SiteFileError(ValueError):
    """A site file that cannot be used; the message names file and field."""


def format_validation_error(path: str | Path, exc: ValidationError) -> str:
    """One ``file:field: problem`` line per error."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{path}:{loc}: {err['msg']}")
    return "\n".join(lines)
