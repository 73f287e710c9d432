"""The site's light: sun direction, ambient, exposure, distance haze and sky colours.

One :class:`Lighting` per site, built from its lighting spec; every part of a view (ground, sky,
boxes, figures) is lit and hazed with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.sim.spec import LightingSpec

SKY_ZENITH_BGR = np.array([200.0, 150.0, 95.0])
SKY_HORIZON_BGR = np.array([235.0, 215.0, 195.0])


def bgr(rgb: list[int]) -> np.ndarray:
    """A spec colour (RGB) as a BGR float vector, OpenCV's channel order."""
    return np.array([rgb[2], rgb[1], rgb[0]], dtype=np.float64)


@dataclass(frozen=True)
class Lighting:
    """Light and haze of one site."""

    sun: np.ndarray  # (3,) unit vector towards the sun
    ambient: float
    exposure: float
    haze: float
    sky_zenith: np.ndarray  # BGR float, exposed
    sky_horizon: np.ndarray  # BGR float, exposed; distant things fade into it

    @classmethod
    def from_spec(cls, light: LightingSpec) -> Lighting:
        """The lighting a site's spec describes."""
        sun = np.array(
            [
                math.sin(math.radians(light.sun_azimuth_deg))
                * math.cos(math.radians(light.sun_elevation_deg)),
                math.cos(math.radians(light.sun_azimuth_deg))
                * math.cos(math.radians(light.sun_elevation_deg)),
                math.sin(math.radians(light.sun_elevation_deg)),
            ]
        )
        return cls(
            sun,
            light.ambient,
            light.exposure,
            light.haze,
            SKY_ZENITH_BGR * light.exposure,
            SKY_HORIZON_BGR * light.exposure,
        )

    def haze_factor(self, dist_m: float | np.ndarray) -> float | np.ndarray:
        """How far (0..``haze``) a colour at ``dist_m`` fades towards the horizon sky."""
        return self.haze * (1.0 - np.exp(-np.asarray(dist_m) / 250.0))
