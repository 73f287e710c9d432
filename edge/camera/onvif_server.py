"""The virtual camera's ONVIF services over HTTP: device management, media and PTZ on loopback.

DESIGN.md: "The virtual camera exposes the same ONVIF services, so the same code drives a
simulated and a real camera." :class:`VirtualOnvifServer` serves SOAP 1.2 over HTTP (a standard
library ``ThreadingHTTPServer``) and drives a :class:`~edge.camera.virtual.VirtualCamera`'s PTZ
head, so :class:`edge.camera.onvif.OnvifPTZ` — the controller a device uses for a Hikvision or
an Axis — steers the virtual camera through the same requests.

* Requests are parsed and responses rendered by zeep with the ONVIF WSDLs
  (:func:`~edge.camera.onvif_common.wsdl_document`): every response is schema-checked as it is
  rendered, so the service answers exactly the XML a camera would. Only SOAP faults are built
  by hand (zeep has no server side for them).
* Operations: device ``GetSystemDateAndTime``, ``GetCapabilities``, ``GetServices``,
  ``GetDeviceInformation``; media ``GetProfiles``, ``GetProfile``, ``GetStreamUri``,
  ``GetSnapshotUri``; PTZ ``GetServiceCapabilities``, ``GetNodes``, ``GetNode``,
  ``GetConfigurations``, ``GetConfiguration``, ``GetConfigurationOptions``, ``GetStatus``,
  ``AbsoluteMove``, ``RelativeMove``, ``ContinuousMove``, ``Stop``, ``GetPresets``,
  ``SetPreset``, ``GotoPreset``, ``RemovePreset``, ``GotoHomePosition``. Anything else gets the
  ``ter:ActionNotSupported`` fault.
* Security: with a username, every operation but the ONVIF core's pre-authentication ones
  (``GetSystemDateAndTime``, ``GetCapabilities``, ``GetServices``, ...) needs a WS-Security
  UsernameToken (password digest or text); a missing or wrong one gets the SOAP 1.2 fault
  ``env:Sender / ter:NotAuthorized`` (HTTP 400), a digest whose ``Created`` is more than 5 min
  off the camera's clock too.
* Spaces: the generic ones, spanning the virtual head's limits (see
  :class:`~edge.camera.onvif_common.PTZSpaces`); times (``ContinuousMove`` timeouts) are the
  virtual camera's site seconds.
* ``GetSnapshotUri`` points at ``/onvif/snapshot.jpg``: a JPEG of the current view (HTTP Basic
  authentication with the same credentials).
* ``ignore_stops``: the next N ``Stop`` requests are answered but not applied — a camera that
  ignores Stop, for the controller's re-send test.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from edge.camera.onvif_common import (
    NS_ERROR,
    NS_SOAP12,
    NS_WSSE,
    NS_WSU,
    PAN_TILT_POSITION_SPACE,
    PAN_TILT_SPEED_SPACE,
    PAN_TILT_TRANSLATION_SPACE,
    PAN_TILT_VELOCITY_SPACE,
    PASSWORD_DIGEST,
    PASSWORD_TEXT,
    SERVICES,
    ZOOM_POSITION_SPACE,
    ZOOM_SPEED_SPACE,
    ZOOM_TRANSLATION_SPACE,
    ZOOM_VELOCITY_SPACE,
    PTZSpaces,
    wsdl_document,
)
from edge.camera.virtual import VirtualCamera
from edge.geometry import PTZPose

log = logging.getLogger(__name__)

#: ONVIF core spec: operations a device answers before authentication.
PRE_AUTH_OPERATIONS = frozenset(
    {
        "GetSystemDateAndTime",
        "GetCapabilities",
        "GetServices",
        "GetServiceCapabilities",
        "GetWsdlUrl",
        "GetEndpointReference",
        "GetHostname",
    }
)
PATHS = {
    "/onvif/device_service": "device",
    "/onvif/media_service": "media",
    "/onvif/ptz_service": "ptz",
}
SNAPSHOT_PATH = "/onvif/snapshot.jpg"
MAX_CLOCK_SKEW_S = 300.0
MAX_REQUEST_BYTES = 1 << 20
NODE_TOKEN = "node_1"
PTZ_CONFIG_TOKEN = "ptz_config_1"
MAX_PRESETS = 64
#: Timeout of a ContinuousMove that names none (the PTZ configuration's DefaultPTZTimeout).
DEFAULT_PTZ_TIMEOUT_S = 10.0


class OnvifFault(Exception):
    """A SOAP fault to answer with: the ONVIF subcode (``ter:…``), a reason, an HTTP status."""

    def __init__(self, subcode: str, reason: str, *, sender: bool = True):
        super().__init__(reason)
        self.subcode, self.reason, self.sender = subcode, reason, sender

    @property
    def http_status(self) -> int:
        # SOAP 1.2 HTTP binding: a Sender fault is 400, a Receiver fault 500
        return 400 if self.sender else 500


@dataclass
class _Preset:
    token: str
    name: str
    pose: PTZPose


class VirtualOnvifServer:
    """ONVIF device + media + PTZ services of one virtual camera, on ``host:port`` (loopback)."""

    def __init__(
        self,
        camera: VirtualCamera,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        profile_token: str = "profile_1",
        presets: Sequence[tuple[str, PTZPose]] = (),
        stream_uri: str | None = None,
        snapshot_size: tuple[int, int] = (640, 360),
        clock: Callable[[], dt.datetime] | None = None,
    ):
        if password is not None and not username:
            raise ValueError("a password needs a username")
        self.camera = camera
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.profile_token = profile_token
        self.stream_uri = stream_uri
        self.snapshot_size = snapshot_size
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        limits = camera.site.spec.camera.limits
        self.spaces = PTZSpaces.from_limits(limits)
        self._presets = [_Preset(f"preset_{i + 1}", n, p) for i, (n, p) in enumerate(presets)]
        self._next_preset = len(self._presets) + 1
        self._home = camera.site.home_pose()
        self._state_lock = threading.Lock()
        #: Stop requests still to ignore (a camera that ignores Stop); see the module doc.
        self.ignore_stops = 0
        self.num_requests = 0
        self.num_refused = 0
        self.operations: list[str] = []  # every operation answered, in order
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The device service URL (what a device config's ``onvif.url`` names)."""
        return f"{self.base_url}/onvif/device_service"

    def start(self) -> str:
        """Bind and serve in a background thread; returns the device service URL."""
        if self._httpd is not None:
            return self.url
        for service in SERVICES:
            wsdl_document(service)  # parse once, before the first request
        handler = type("_Handler", (_Handler,), {"server_impl": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"onvif-{self.camera.camera_id}", daemon=True
        )
        self._thread.start()
        log.info("virtual ONVIF camera %s at %s", self.camera.camera_id, self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> VirtualOnvifServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ SOAP
    def handle_soap(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Answer one SOAP request: (HTTP status, response envelope)."""
        from lxml import etree

        service = PATHS.get(path)
        if service is None:
            return 404, b""
        self.num_requests += 1
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
            try:
                envelope = etree.fromstring(body, parser=parser)
            except etree.XMLSyntaxError as exc:
                raise OnvifFault("ter:WellFormed", f"not well-formed XML: {exc}") from None
            body_node = envelope.find(f"{{{NS_SOAP12}}}Body")
            if envelope.tag != f"{{{NS_SOAP12}}}Envelope" or body_node is None:
                raise OnvifFault("ter:WellFormed", "not a SOAP 1.2 envelope with a body")
            if not len(body_node):
                raise OnvifFault("ter:WellFormed", "not a SOAP 1.2 envelope with a body")
            request_node = body_node[0]
            qname = etree.QName(request_node)
            operation_name = qname.localname
            binding = wsdl_document(service).bindings[SERVICES[service][1]]
            if qname.namespace != SERVICES[service][2]:
                raise OnvifFault(
                    "ter:ActionNotSupported", f"{qname.text} is not an operation of the {service} "
                    "service",
                )  # fmt: skip
            try:
                operation = binding.get(operation_name)
            except ValueError:
                raise OnvifFault(
                    "ter:ActionNotSupported", f"{operation_name} is not supported"
                ) from None
            handler = getattr(self, f"_{service}_{operation_name}", None)
            if handler is None:
                raise OnvifFault("ter:ActionNotSupported", f"{operation_name} is not supported")
            if self.username is not None and operation_name not in PRE_AUTH_OPERATIONS:
                self._authenticate(envelope)
            # the wrapper element itself: zeep's deserialize would unwrap a one-field request
            request = operation.input.body.parse(request_node, wsdl_document(service).types)
            result = handler(request) or {}
            self.operations.append(f"{service}.{operation_name}")
            message = operation.output.serialize(**result)
            return 200, etree.tostring(message.content, xml_declaration=True, encoding="utf-8")
        except OnvifFault as fault:
            if fault.subcode == "ter:NotAuthorized":
                self.num_refused += 1
            return fault.http_status, _fault_envelope(fault)
        except Exception as exc:  # a bug or a request the schema cannot take: the camera's fault
            log.exception("virtual ONVIF camera: %s request failed", service)
            failed = OnvifFault("ter:Action", f"{type(exc).__name__}: {exc}", sender=False)
            return failed.http_status, _fault_envelope(failed)

    def _authenticate(self, envelope: Any) -> None:
        """Check the WS-Security UsernameToken; raise the NotAuthorized fault otherwise."""
        token = envelope.find(
            f"{{{NS_SOAP12}}}Header/{{{NS_WSSE}}}Security/{{{NS_WSSE}}}UsernameToken"
        )
        refused = OnvifFault("ter:NotAuthorized", "Sender not Authorized")
        if token is None:
            raise refused
        username = token.findtext(f"{{{NS_WSSE}}}Username")
        password_node = token.find(f"{{{NS_WSSE}}}Password")
        if username != self.username or password_node is None:
            raise refused
        given = (password_node.text or "").strip()
        expected_password = self.password or ""
        kind = password_node.get("Type", PASSWORD_TEXT)
        if kind == PASSWORD_DIGEST:
            nonce_text = token.findtext(f"{{{NS_WSSE}}}Nonce") or ""
            created = token.findtext(f"{{{NS_WSU}}}Created") or ""
            try:
                nonce = base64.b64decode(nonce_text, validate=True)
            except (binascii.Error, ValueError):
                raise refused from None
            digest = hashlib.sha1(nonce + created.encode() + expected_password.encode()).digest()
            if not hmac.compare_digest(base64.b64encode(digest).decode(), given):
                raise refused
            try:
                stamp = dt.datetime.fromisoformat(created.strip().replace("Z", "+00:00"))
            except ValueError:
                raise refused from None
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.timezone.utc)
            if abs((self._clock() - stamp).total_seconds()) > MAX_CLOCK_SKEW_S:
                raise refused
        elif kind == PASSWORD_TEXT:
            if not hmac.compare_digest(given, expected_password):
                raise refused
        else:
            raise refused

    def check_basic_auth(self, header: str | None) -> bool:
        """HTTP Basic credentials of a snapshot request (always true without a username)."""
        if self.username is None:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.username and hmac.compare_digest(password, self.password or "")

    def snapshot_jpeg(self) -> bytes:
        """A JPEG of what the camera sees now (no ground truth, no frame counter change)."""
        import cv2

        camera = self.camera
        with camera.lock:
            site = camera.site
            frame, _ = site.renderer.render(
                site.pose, site.t, *self.snapshot_size, index=site.frame_index, truth=False
            )
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok, "JPEG encoding of a rendered view cannot fail"
        return bytes(data.tobytes())

    # ------------------------------------------------------------------ device service
    def _device_GetSystemDateAndTime(self, request: Any) -> dict[str, Any]:
        now = self._clock().astimezone(dt.timezone.utc)
        return {
            "SystemDateAndTime": {
                "DateTimeType": "Manual",
                "DaylightSavings": False,
                "TimeZone": {"TZ": "UTC0"},
                "UTCDateTime": {
                    "Time": {"Hour": now.hour, "Minute": now.minute, "Second": now.second},
                    "Date": {"Year": now.year, "Month": now.month, "Day": now.day},
                },
            }
        }

    def _device_GetDeviceInformation(self, request: Any) -> dict[str, Any]:
        from edge import __version__

        return {
            "Manufacturer": "SiteHawk",
            "Model": "Virtual PTZ camera",
            "FirmwareVersion": __version__,
            "SerialNumber": self.camera.camera_id,
            "HardwareId": "virtual",
        }

    def _device_GetServices(self, request: Any) -> dict[str, Any]:
        return {
            "Service": [
                {
                    "Namespace": namespace,
                    "XAddr": f"{self.base_url}{path}",
                    "Version": {"Major": 2, "Minor": 40},
                }
                for path, service in PATHS.items()
                for namespace in (SERVICES[service][2],)
            ]
        }

    def _device_GetCapabilities(self, request: Any) -> dict[str, Any]:
        paths = {service: path for path, service in PATHS.items()}
        return {
            "Capabilities": {
                "Device": {"XAddr": f"{self.base_url}{paths['device']}"},
                "Media": {
                    "XAddr": f"{self.base_url}{paths['media']}",
                    "StreamingCapabilities": {
                        "RTPMulticast": False,
                        "RTP_TCP": True,
                        "RTP_RTSP_TCP": True,
                    },
                },
                "PTZ": {"XAddr": f"{self.base_url}{paths['ptz']}"},
            }
        }

    # ------------------------------------------------------------------ media service
    def _profile(self) -> dict[str, Any]:
        return {
            "token": self.profile_token,
            "fixed": True,
            "Name": "main",
            "PTZConfiguration": self._ptz_configuration(),
        }

    def _check_profile(self, token: str | None) -> None:
        if token != self.profile_token:
            raise OnvifFault("ter:NoProfile", f"no media profile {token!r}")

    def _media_GetProfiles(self, request: Any) -> dict[str, Any]:
        return {"Profiles": [self._profile()]}

    def _media_GetProfile(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        return {"Profile": self._profile()}

    def _media_GetStreamUri(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        if self.stream_uri is None:
            raise OnvifFault(
                "ter:ActionNotSupported",
                "the virtual camera has no RTSP stream: its frames stay in-process",
            )
        return {"MediaUri": self._media_uri(self.stream_uri)}

    def _media_GetSnapshotUri(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        return {"MediaUri": self._media_uri(f"{self.base_url}{SNAPSHOT_PATH}")}

    @staticmethod
    def _media_uri(uri: str) -> dict[str, Any]:
        return {
            "Uri": uri,
            "InvalidAfterConnect": False,
            "InvalidAfterReboot": False,
            "Timeout": dt.timedelta(0),
        }

    # ------------------------------------------------------------------ PTZ service
    def _spaces(self) -> dict[str, Any]:
        s = self.spaces
        return {
            "AbsolutePanTiltPositionSpace": [_space2d(PAN_TILT_POSITION_SPACE, s.pan_x, s.tilt_y)],
            "AbsoluteZoomPositionSpace": [_space1d(ZOOM_POSITION_SPACE, s.zoom_z)],
            "RelativePanTiltTranslationSpace": [
                _space2d(PAN_TILT_TRANSLATION_SPACE, (-1.0, 1.0), (-1.0, 1.0))
            ],
            "RelativeZoomTranslationSpace": [_space1d(ZOOM_TRANSLATION_SPACE, (-1.0, 1.0))],
            "ContinuousPanTiltVelocitySpace": [
                _space2d(PAN_TILT_VELOCITY_SPACE, s.pan_v, s.tilt_v)
            ],
            "ContinuousZoomVelocitySpace": [_space1d(ZOOM_VELOCITY_SPACE, s.zoom_v)],
            "PanTiltSpeedSpace": [_space1d(PAN_TILT_SPEED_SPACE, (0.0, 1.0))],
            "ZoomSpeedSpace": [_space1d(ZOOM_SPEED_SPACE, (0.0, 1.0))],
        }

    def _ptz_configuration(self) -> dict[str, Any]:
        s = self.spaces
        return {
            "token": PTZ_CONFIG_TOKEN,
            "Name": "ptz",
            "UseCount": 1,
            "NodeToken": NODE_TOKEN,
            "DefaultAbsolutePantTiltPositionSpace": PAN_TILT_POSITION_SPACE,
            "DefaultAbsoluteZoomPositionSpace": ZOOM_POSITION_SPACE,
            "DefaultRelativePanTiltTranslationSpace": PAN_TILT_TRANSLATION_SPACE,
            "DefaultRelativeZoomTranslationSpace": ZOOM_TRANSLATION_SPACE,
            "DefaultContinuousPanTiltVelocitySpace": PAN_TILT_VELOCITY_SPACE,
            "DefaultContinuousZoomVelocitySpace": ZOOM_VELOCITY_SPACE,
            "DefaultPTZSpeed": {"PanTilt": {"x": 1.0, "y": 1.0}, "Zoom": {"x": 1.0}},
            "DefaultPTZTimeout": dt.timedelta(seconds=DEFAULT_PTZ_TIMEOUT_S),
            "PanTiltLimits": {"Range": _space2d(PAN_TILT_POSITION_SPACE, s.pan_x, s.tilt_y)},
            "ZoomLimits": {"Range": _space1d(ZOOM_POSITION_SPACE, s.zoom_z)},
        }

    def _node(self) -> dict[str, Any]:
        return {
            "token": NODE_TOKEN,
            "FixedHomePosition": True,
            "Name": "virtual head",
            "SupportedPTZSpaces": self._spaces(),
            "MaximumNumberOfPresets": MAX_PRESETS,
            "HomeSupported": True,
        }

    def _ptz_GetServiceCapabilities(self, request: Any) -> dict[str, Any]:
        return {
            "Capabilities": {
                "EFlip": False,
                "Reverse": False,
                "GetCompatibleConfigurations": False,
                "MoveStatus": True,
                "StatusPosition": True,
            }
        }

    def _ptz_GetNodes(self, request: Any) -> dict[str, Any]:
        return {"PTZNode": [self._node()]}

    def _ptz_GetNode(self, request: Any) -> dict[str, Any]:
        if request.NodeToken != NODE_TOKEN:
            raise OnvifFault("ter:NoEntity", f"no PTZ node {request.NodeToken!r}")
        return {"PTZNode": self._node()}

    def _ptz_GetConfigurations(self, request: Any) -> dict[str, Any]:
        return {"PTZConfiguration": [self._ptz_configuration()]}

    def _ptz_GetConfiguration(self, request: Any) -> dict[str, Any]:
        token = request.PTZConfigurationToken
        if token != PTZ_CONFIG_TOKEN:
            raise OnvifFault("ter:NoConfig", f"no PTZ configuration {token!r}")
        return {"PTZConfiguration": self._ptz_configuration()}

    def _ptz_GetConfigurationOptions(self, request: Any) -> dict[str, Any]:
        token = request.ConfigurationToken
        if token != PTZ_CONFIG_TOKEN:
            raise OnvifFault("ter:NoConfig", f"no PTZ configuration {token!r}")
        return {
            "PTZConfigurationOptions": {
                "Spaces": self._spaces(),
                "PTZTimeout": {"Min": dt.timedelta(seconds=0.1), "Max": dt.timedelta(seconds=60)},
            }
        }

    def _ptz_GetStatus(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        status = self.camera.ptz.get_status()
        x, y, z = self.spaces.to_position(status.pose)
        state = "MOVING" if status.moving else "IDLE"
        return {
            "PTZStatus": {
                "Position": {
                    "PanTilt": {"x": x, "y": y, "space": PAN_TILT_POSITION_SPACE},
                    "Zoom": {"x": z, "space": ZOOM_POSITION_SPACE},
                },
                "MoveStatus": {"PanTilt": state, "Zoom": state},
                "UtcTime": self._clock(),
            }
        }

    def _target_pose(self, position: Any) -> PTZPose:
        """A PTZVector in the generic position spaces -> the head's pose (missing axes stay)."""
        current = self.camera.ptz.get_status().pose
        cx, cy, cz = self.spaces.to_position(current)
        pan_tilt = getattr(position, "PanTilt", None) if position is not None else None
        zoom = getattr(position, "Zoom", None) if position is not None else None
        x, y, z = cx, cy, cz
        if pan_tilt is not None:
            _check_space(pan_tilt, PAN_TILT_POSITION_SPACE)
            x, y = float(pan_tilt.x), float(pan_tilt.y)
        if zoom is not None:
            _check_space(zoom, ZOOM_POSITION_SPACE)
            z = float(zoom.x)
        s = self.spaces
        axes = ((x, s.pan_x, "pan"), (y, s.tilt_y, "tilt"), (z, s.zoom_z, "zoom"))
        for value, (lo, hi), axis in axes:
            if not min(lo, hi) - 1e-6 <= value <= max(lo, hi) + 1e-6:
                message = f"{axis} {value:g} is outside {lo:g}..{hi:g}"
                raise OnvifFault("ter:InvalidPosition", message)
        return self.spaces.from_position(x, y, z)

    def _ptz_AbsoluteMove(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        pose = self._target_pose(request.Position)
        self.camera.ptz.absolute_move(pose.pan_deg, pose.tilt_deg, pose.zoom)

    def _ptz_RelativeMove(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        translation = request.Translation
        pan_tilt = getattr(translation, "PanTilt", None)
        zoom = getattr(translation, "Zoom", None)
        d_pan = d_tilt = 0.0
        factor = 1.0
        if pan_tilt is not None:
            _check_space(pan_tilt, PAN_TILT_TRANSLATION_SPACE)
            d_pan, d_tilt = self.spaces.translation_to_deg(float(pan_tilt.x), float(pan_tilt.y))
        if zoom is not None:
            _check_space(zoom, ZOOM_TRANSLATION_SPACE)
            current = self.camera.ptz.get_status().pose
            _, _, z = self.spaces.to_position(current)
            target = self.spaces.from_position(0.0, 0.0, z + float(zoom.x)).zoom
            factor = target / current.zoom
        self.camera.ptz.relative_move(d_pan, d_tilt, factor)

    def _ptz_ContinuousMove(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        velocity = request.Velocity
        pan_tilt = getattr(velocity, "PanTilt", None)
        zoom = getattr(velocity, "Zoom", None)
        vx = vy = vz = 0.0
        if pan_tilt is not None:
            _check_space(pan_tilt, PAN_TILT_VELOCITY_SPACE)
            vx, vy = float(pan_tilt.x), float(pan_tilt.y)
        if zoom is not None:
            _check_space(zoom, ZOOM_VELOCITY_SPACE)
            vz = float(zoom.x)
        pan, tilt, zoom_f = self.spaces.from_velocity(vx, vy, vz)
        timeout = request.Timeout
        timeout_s = (
            timeout.total_seconds() if isinstance(timeout, dt.timedelta) else DEFAULT_PTZ_TIMEOUT_S
        )
        if timeout_s <= 0:
            raise OnvifFault("ter:InvalidArgVal", f"Timeout must be positive, got {timeout!r}")
        self.camera.ptz.continuous_move(pan, tilt, zoom_f, timeout_s)

    def _ptz_Stop(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        with self._state_lock:
            if self.ignore_stops > 0:
                self.ignore_stops -= 1
                return
        self.camera.ptz.stop()

    def _ptz_GetPresets(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        with self._state_lock:
            presets = list(self._presets)
        result = []
        for preset in presets:
            x, y, z = self.spaces.to_position(preset.pose)
            result.append(
                {
                    "token": preset.token,
                    "Name": preset.name,
                    "PTZPosition": {
                        "PanTilt": {"x": x, "y": y, "space": PAN_TILT_POSITION_SPACE},
                        "Zoom": {"x": z, "space": ZOOM_POSITION_SPACE},
                    },
                }
            )
        return {"Preset": result}

    def _find_preset(self, token: str | None) -> _Preset:
        for preset in self._presets:
            if preset.token == token:
                return preset
        raise OnvifFault("ter:NoToken", f"no preset {token!r}")

    def _ptz_SetPreset(self, request: Any) -> dict[str, Any]:
        self._check_profile(request.ProfileToken)
        pose = self.camera.ptz.get_status().pose
        with self._state_lock:
            if request.PresetToken:
                preset = self._find_preset(request.PresetToken)
                preset.pose = pose
                if request.PresetName:
                    preset.name = request.PresetName
                return {"PresetToken": preset.token}
            name = request.PresetName or f"preset {self._next_preset}"
            if any(p.name == name for p in self._presets):
                raise OnvifFault("ter:PresetExist", f"a preset named {name!r} exists")
            if len(self._presets) >= MAX_PRESETS:
                raise OnvifFault("ter:TooManyPresets", f"at most {MAX_PRESETS} presets")
            preset = _Preset(f"preset_{self._next_preset}", name, pose)
            self._next_preset += 1
            self._presets.append(preset)
        return {"PresetToken": preset.token}

    def _ptz_GotoPreset(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        with self._state_lock:
            pose = self._find_preset(request.PresetToken).pose
        self.camera.ptz.absolute_move(pose.pan_deg, pose.tilt_deg, pose.zoom)

    def _ptz_RemovePreset(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        with self._state_lock:
            self._presets.remove(self._find_preset(request.PresetToken))

    def _ptz_GotoHomePosition(self, request: Any) -> None:
        self._check_profile(request.ProfileToken)
        home = self._home
        self.camera.ptz.absolute_move(home.pan_deg, home.tilt_deg, home.zoom)


def _space2d(uri: str, x: tuple[float, float], y: tuple[float, float]) -> dict[str, Any]:
    return {"URI": uri, "XRange": {"Min": x[0], "Max": x[1]}, "YRange": {"Min": y[0], "Max": y[1]}}


def _space1d(uri: str, x: tuple[float, float]) -> dict[str, Any]:
    return {"URI": uri, "XRange": {"Min": x[0], "Max": x[1]}}


def _check_space(vector: Any, generic: str) -> None:
    space = getattr(vector, "space", None)
    if space not in (None, "", generic):
        raise OnvifFault("ter:SpaceNotSupported", f"space {space} is not supported")


def _fault_envelope(fault: OnvifFault) -> bytes:
    """A SOAP 1.2 fault with an ONVIF subcode, e.g. env:Sender / ter:NotAuthorized."""
    from lxml import etree

    env = f"{{{NS_SOAP12}}}"
    nsmap = {"env": NS_SOAP12, "ter": NS_ERROR}
    envelope = etree.Element(f"{env}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{env}Body")
    node = etree.SubElement(body, f"{env}Fault")
    code = etree.SubElement(node, f"{env}Code")
    etree.SubElement(code, f"{env}Value").text = "env:Sender" if fault.sender else "env:Receiver"
    subcode = etree.SubElement(code, f"{env}Subcode")
    etree.SubElement(subcode, f"{env}Value").text = fault.subcode
    reason = etree.SubElement(node, f"{env}Reason")
    text = etree.SubElement(reason, f"{env}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = fault.reason
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


class _Handler(BaseHTTPRequestHandler):
    """HTTP front of :class:`VirtualOnvifServer` (POST: SOAP; GET: the snapshot)."""

    server_impl: VirtualOnvifServer
    protocol_version = "HTTP/1.1"
    server_version = "SiteHawkVirtualCamera/1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_REQUEST_BYTES:
            self._reply(413 if length > 0 else 411, b"", "text/plain")
            return
        body = self.rfile.read(length)
        status, payload = self.server_impl.handle_soap(urlsplit(self.path).path, body)
        self._reply(status, payload, "application/soap+xml; charset=utf-8")

    def do_GET(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != SNAPSHOT_PATH:
            self._reply(404, b"", "text/plain")
            return
        if not self.server_impl.check_basic_auth(self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="sitehawk"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._reply(200, self.server_impl.snapshot_jpeg(), "image/jpeg")

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("virtual ONVIF camera: " + format, *args)
