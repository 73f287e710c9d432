"""What the ONVIF PTZ controller and the virtual camera's ONVIF service share.

* The ONVIF service descriptions (``onvif_wsdl/``: device management, media, PTZ), parsed once
  per process with zeep (:func:`wsdl_document`): the controller's zeep client builds requests
  from them, the virtual camera's service parses requests and renders responses with the same
  schema, so both sides speak exactly the XML a real camera does.
* :class:`PTZSpaces` — the mapping between the agent's units (degrees from the mount heading,
  optical zoom factor, velocities as fractions of each axis' maximum speed) and a camera's ONVIF
  *generic* spaces (DESIGN.md: the driver maps units onto the camera's spaces itself):

  - pan/tilt position: ``PositionGenericSpace`` is linear in angle over the camera's mechanical
    range, so ``pan_deg`` (``tilt_deg``) at the ends of that range map onto the space's
    ``XRange`` (``YRange``) ends, linearly in between; by default the range is the mount's
    ``limits`` (``pan_min_deg…pan_max_deg``, ``tilt_min_deg…tilt_max_deg``), i.e. the limits
    must be the camera's full generic range (a 360° dome: −180…180 with ``heading_deg`` the
    compass direction at x = 0). Positive pan is to the right, positive tilt up, as in ONVIF.
  - zoom position: ``PositionGenericSpace`` (0…1 on most cameras) is linear in the optical
    factor: the range's low end is 1×, its high end ``zoom_max``.
  - velocities: ``VelocityGenericSpace`` (−1…1) — a fraction ``f`` of the axis' maximum speed
    is ``f × XRange.Max`` (``f ≥ 0``) or ``−f × XRange.Min`` (``f < 0``).
  - translations (``RelativeMove``): ``TranslationGenericSpace`` uses the position space's
    scale (Δx of 1 is half the pan range).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.geometry import PTZPose
from firmware_config.camera import PTZLimitsSpec

WSDL_DIR = Path(__file__).resolve().parent / "onvif_wsdl"

NS_DEVICE = "http://www.onvif.org/ver10/device/wsdl"
NS_MEDIA = "http://www.onvif.org/ver10/media/wsdl"
NS_PTZ = "http://www.onvif.org/ver20/ptz/wsdl"
NS_SCHEMA = "http://www.onvif.org/ver10/schema"
NS_ERROR = "http://www.onvif.org/ver10/error"
NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)

#: service -> (WSDL file, binding QName, namespace)
SERVICES: dict[str, tuple[str, str, str]] = {
    "device": ("devicemgmt.wsdl", f"{{{NS_DEVICE}}}DeviceBinding", NS_DEVICE),
    "media": ("media.wsdl", f"{{{NS_MEDIA}}}MediaBinding", NS_MEDIA),
    "ptz": ("ptz.wsdl", f"{{{NS_PTZ}}}PTZBinding", NS_PTZ),
}

_SPACES = "http://www.onvif.org/ver10/tptz"
PAN_TILT_POSITION_SPACE = f"{_SPACES}/PanTiltSpaces/PositionGenericSpace"
PAN_TILT_TRANSLATION_SPACE = f"{_SPACES}/PanTiltSpaces/TranslationGenericSpace"
PAN_TILT_VELOCITY_SPACE = f"{_SPACES}/PanTiltSpaces/VelocityGenericSpace"
PAN_TILT_SPEED_SPACE = f"{_SPACES}/PanTiltSpaces/GenericSpeedSpace"
ZOOM_POSITION_SPACE = f"{_SPACES}/ZoomSpaces/PositionGenericSpace"
ZOOM_TRANSLATION_SPACE = f"{_SPACES}/ZoomSpaces/TranslationGenericSpace"
ZOOM_VELOCITY_SPACE = f"{_SPACES}/ZoomSpaces/VelocityGenericSpace"
ZOOM_SPEED_SPACE = f"{_SPACES}/ZoomSpaces/ZoomGenericSpeedSpace"

_documents: dict[str, Any] = {}
_documents_lock = threading.Lock()


class OnvifSetupError(RuntimeError):
    """The ONVIF support files or libraries are missing from this install."""


def wsdl_document(service: str) -> Any:
    """The parsed WSDL of ``service`` ("device", "media", "ptz"), loaded once per process."""
    with _documents_lock:
        document = _documents.get(service)
        if document is None:
            try:
                from zeep.transports import Transport
                from zeep.wsdl import Document
            except ImportError as exc:  # pragma: no cover - zeep is a base dependency
                raise OnvifSetupError(
                    "ONVIF needs the zeep SOAP library: pip install 'zeep>=4.2,<5'"
                ) from exc
            path = WSDL_DIR / SERVICES[service][0]
            if not path.is_file():
                raise OnvifSetupError(
                    f"{path}: the ONVIF WSDL files are missing from this install "
                    "(edge/camera/onvif_wsdl must be shipped with the package)"
                )
            # zeep's annotation wants the class; it takes (and needs) an instance
            document = Document(str(path), Transport(), settings=zeep_settings())  # type: ignore[arg-type]
            _documents[service] = document
        return document


def zeep_settings() -> Any:
    """zeep settings for ONVIF: tolerant parsing (cameras add vendor extensions), no DTDs."""
    from zeep import Settings

    return Settings(strict=False, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True)


@dataclass(frozen=True)
class PTZSpaces:
    """A camera's ONVIF generic spaces and the angles and zoom they span (see the module doc)."""

    pan_deg: tuple[float, float]  # pan at x = pan_x[0] and at x = pan_x[1]
    tilt_deg: tuple[float, float]  # tilt at y = tilt_y[0] and at y = tilt_y[1]
    zoom_max: float  # optical factor at z = zoom_z[1] (1x at zoom_z[0])
    pan_x: tuple[float, float] = (-1.0, 1.0)  # AbsolutePanTiltPositionSpace XRange
    tilt_y: tuple[float, float] = (-1.0, 1.0)  # ... YRange
    zoom_z: tuple[float, float] = (0.0, 1.0)  # AbsoluteZoomPositionSpace XRange
    pan_v: tuple[float, float] = (-1.0, 1.0)  # ContinuousPanTiltVelocitySpace XRange
    tilt_v: tuple[float, float] = (-1.0, 1.0)  # ... YRange
    zoom_v: tuple[float, float] = (-1.0, 1.0)  # ContinuousZoomVelocitySpace XRange

    def __post_init__(self) -> None:
        for name in ("pan_deg", "tilt_deg", "pan_x", "tilt_y", "zoom_z"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo == hi:
                raise ValueError(f"PTZ space {name}: an empty or invalid range {lo:g}..{hi:g}")
        if self.zoom_max < 1.0:
            raise ValueError(f"PTZ space zoom_max must be >= 1, got {self.zoom_max:g}")

    @classmethod
    def from_limits(cls, limits: PTZLimitsSpec, **ranges: tuple[float, float]) -> PTZSpaces:
        """Spaces spanning the mount's limits (the default calibration)."""
        return cls(
            pan_deg=(limits.pan_min_deg, limits.pan_max_deg),
            tilt_deg=(limits.tilt_min_deg, limits.tilt_max_deg),
            zoom_max=limits.zoom_max,
            **ranges,
        )

    # ----------------------------------------------------------------- positions
    def to_position(self, pose: PTZPose) -> tuple[float, float, float]:
        """Agent pose -> generic (x, y, z), clamped to the spaces' ranges."""
        x = _clamp(_lerp(pose.pan_deg, self.pan_deg, self.pan_x), self.pan_x)
        y = _clamp(_lerp(pose.tilt_deg, self.tilt_deg, self.tilt_y), self.tilt_y)
        if self.zoom_max > 1.0:
            z = _lerp(pose.zoom, (1.0, self.zoom_max), self.zoom_z)
        else:
            z = self.zoom_z[0]
        return x, y, _clamp(z, self.zoom_z)

    def from_position(self, x: float, y: float, z: float | None) -> PTZPose:
        """Generic (x, y, z) -> agent pose (``z`` None: 1x)."""
        pan = _lerp(x, self.pan_x, self.pan_deg)
        tilt = _lerp(y, self.tilt_y, self.tilt_deg)
        zoom = 1.0
        if z is not None and self.zoom_max > 1.0:
            zoom = _lerp(_clamp(z, self.zoom_z), self.zoom_z, (1.0, self.zoom_max))
        return PTZPose(pan, tilt, max(1.0, zoom))

    def translation_to_deg(self, dx: float, dy: float) -> tuple[float, float]:
        """A generic pan/tilt translation in degrees (the position space's scale)."""
        pan_scale = (self.pan_deg[1] - self.pan_deg[0]) / (self.pan_x[1] - self.pan_x[0])
        tilt_scale = (self.tilt_deg[1] - self.tilt_deg[0]) / (self.tilt_y[1] - self.tilt_y[0])
        return dx * pan_scale, dy * tilt_scale

    # ----------------------------------------------------------------- velocities
    def to_velocity(self, pan: float, tilt: float, zoom: float) -> tuple[float, float, float]:
        """Fractions (−1…1) of the maximum speeds -> generic velocities."""
        return (
            _to_speed(pan, self.pan_v),
            _to_speed(tilt, self.tilt_v),
            _to_speed(zoom, self.zoom_v),
        )

    def from_velocity(self, vx: float, vy: float, vz: float) -> tuple[float, float, float]:
        """Generic velocities -> fractions (−1…1) of the maximum speeds."""
        return (
            _from_speed(vx, self.pan_v),
            _from_speed(vy, self.tilt_v),
            _from_speed(vz, self.zoom_v),
        )


def _lerp(value: float, src: tuple[float, float], dst: tuple[float, float]) -> float:
    return dst[0] + (value - src[0]) * (dst[1] - dst[0]) / (src[1] - src[0])


def _clamp(value: float, bounds: tuple[float, float]) -> float:
    lo, hi = min(bounds), max(bounds)
    return min(max(value, lo), hi)


def _to_speed(fraction: float, bounds: tuple[float, float]) -> float:
    f = min(max(fraction, -1.0), 1.0)
    return f * bounds[1] if f >= 0 else -f * bounds[0]


def _from_speed(value: float, bounds: tuple[float, float]) -> float:
    if value >= 0:
        return min(value / bounds[1], 1.0) if bounds[1] > 0 else 0.0
    return max(-value / bounds[0], -1.0) if bounds[0] < 0 else 0.0
