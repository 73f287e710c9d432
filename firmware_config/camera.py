"""What a device knows about its camera: the PTZ head's limits and where it is mounted.

Shared by the device configuration, the simulator (which builds a virtual camera from the same
description) and the policy's observation builder (which needs the mount to place detections).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

XY = Annotated[list[float], Field(min_length=2, max_length=2, description="[x, y] in site metres")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PTZLimitsSpec(_Strict):
    """Mechanical and optical limits of the PTZ head."""

    pan_min_deg: float = Field(-170.0, description="Pan limit, left of the mount heading")
    pan_max_deg: float = Field(170.0, description="Pan limit, right of the mount heading")
    tilt_min_deg: float = Field(-60.0, description="Lowest tilt (negative = down)")
    tilt_max_deg: float = Field(10.0, description="Highest tilt")
    zoom_max: float = Field(30.0, ge=1.0, description="Optical zoom range is 1×…zoom_max")
    fov_h_1x_deg: float = Field(60.0, gt=1.0, lt=170.0, description="Horizontal FOV at 1×")
    pan_speed_dps: float = Field(120.0, gt=0, description="Maximum pan speed, degrees/s")
    tilt_speed_dps: float = Field(90.0, gt=0, description="Maximum tilt speed, degrees/s")
    zoom_speed_lps: float = Field(
        1.7, gt=0, description="Maximum zoom speed in natural-log units/s (1×→30× ≈ 2 s)"
    )
    latency_s: float = Field(0.1, ge=0, description="Delay between a command and motion")

    @model_validator(mode="after")
    def _ranges(self) -> PTZLimitsSpec:
        if self.pan_min_deg >= self.pan_max_deg:
            raise ValueError("pan_min_deg must be below pan_max_deg")
        if self.tilt_min_deg >= self.tilt_max_deg:
            raise ValueError("tilt_min_deg must be below tilt_max_deg")
        return self


class CameraMountSpec(_Strict):
    """Where the PTZ camera hangs: a pole at ``position`` looking at ``heading_deg`` when pan=0."""

    id: str = Field("cam0", description="Camera id, used in alerts and topics")
    position: XY = Field(description="Pole foot [x, y] in site metres")
    height_m: float = Field(gt=1.0, le=100.0, description="Camera height above ground")
    heading_deg: float = Field(description="Compass direction of pan=0 (0 = +y, clockwise)")
    limits: PTZLimitsSpec = Field(
        default_factory=PTZLimitsSpec, description="Mechanical and optical limits of the PTZ head"
    )
