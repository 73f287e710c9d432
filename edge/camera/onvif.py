"""The ONVIF PTZ controller: a :class:`~edge.camera.ptz.PTZDriver` for any ONVIF Profile S/T camera.

SOAP over HTTP with zeep (sync, pure Python) and the ONVIF WSDLs shipped in ``onvif_wsdl/``;
the virtual camera's ONVIF service (:mod:`edge.camera.onvif_server`) answers the same requests,
so this one class drives a simulated and a real camera.

* :meth:`OnvifPTZ.connect` (the only place that discovers; call it before the run):
  ``GetSystemDateAndTime`` (the camera's clock offset, folded into the WS-Security timestamps),
  ``GetServices`` (``GetCapabilities`` on older cameras) → the media and PTZ service addresses,
  media ``GetProfiles`` → the profile named ``profile_token`` or the first with a PTZ
  configuration, PTZ ``GetNode`` → the node's generic spaces → :class:`PTZSpaces` (the unit
  mapping: :mod:`edge.camera.onvif_common`).
* Credentials: WS-Security UsernameToken with a password digest (Zulu timestamps, corrected by
  the clock offset); HTTP Digest as well, for cameras that ask for it at the HTTP level.
* Every HTTP call has a timeout (``timeout_s`` for connect and each read). A call that cannot
  reach the camera is tried ``attempts`` times with a short backoff; when it still fails the
  controller raises :class:`OnvifError` (naming the URL and the operation) and refuses further
  calls without touching the network for a backoff that doubles up to ``max_backoff_s`` — the
  agent is never held up by a dead camera. A SOAP fault is the camera's answer: not retried;
  ``ter:NotAuthorized`` (or HTTP 401) raises :class:`OnvifAuthError`.
* Moves are clamped to the mount's limits and rate-limited (``min_command_interval_s`` between
  commands: a command that comes sooner waits out the rest of the interval). ``RelativeMove``
  is sent as an ``AbsoluteMove`` from the last target (or the ``GetStatus`` pose), so its
  meaning does not depend on a camera's translation space.
* ``ContinuousMove`` carries its ``Timeout``; ``Stop`` stops both axes. A camera that ignores
  either is caught by :meth:`OnvifPTZ.get_status`: still ``MOVING`` ``stop_grace_s`` after a
  Stop (or after a ContinuousMove's timeout ran out) → Stop is sent again, at most
  ``max_stop_resends`` times per stop (``num_stop_resends`` counts them).
* Presets: :meth:`get_presets`, :meth:`goto_preset`, :meth:`set_preset`, :meth:`remove_preset`;
  media URIs: :meth:`stream_uri` (``GetStreamUri``, RTSP over TCP), :meth:`snapshot_uri`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.camera.onvif_common import (
    NS_MEDIA,
    NS_PTZ,
    PAN_TILT_POSITION_SPACE,
    PAN_TILT_SPEED_SPACE,
    PAN_TILT_VELOCITY_SPACE,
    SERVICES,
    ZOOM_POSITION_SPACE,
    ZOOM_SPEED_SPACE,
    ZOOM_VELOCITY_SPACE,
    PTZSpaces,
    wsdl_document,
    zeep_settings,
)
from edge.camera.ptz import PTZError, PTZStatus
from edge.geometry import PTZPose
from firmware_config.camera import CameraMountSpec

log = logging.getLogger(__name__)


class OnvifError(PTZError):
    """An ONVIF call failed; the message names the URL and the operation."""

    def __init__(self, url: str, operation: str, problem: str):
        super().__init__(f"ONVIF {operation} at {url}: {problem}")
        self.url, self.operation, self.problem = url, operation, problem


class OnvifAuthError(OnvifError):
    """The camera refused the credentials (not retried)."""


@dataclass(frozen=True)
class OnvifSettings:
    """How to reach one ONVIF camera, and the controller's tuning."""

    url: str  # device service, e.g. http://192.168.1.64/onvif/device_service
    username: str | None = None
    password: str | None = None
    profile_token: str | None = None  # None: the first media profile with a PTZ configuration
    timeout_s: float = 3.0  # connect and each read of every HTTP call
    attempts: int = 2  # tries of one call that cannot reach the camera
    retry_backoff_s: float = 0.2  # between those tries (doubling)
    min_backoff_s: float = 1.0  # calls refused after a failed call (doubling per failure) ...
    max_backoff_s: float = 30.0  # ... up to this
    min_command_interval_s: float = 0.1  # rate limit of move/stop commands
    stop_grace_s: float = 0.5  # still moving this long after a Stop: send it again
    max_stop_resends: int = 3
    pan_range_deg: tuple[float, float] | None = None  # pan at the generic x range's ends
    tilt_range_deg: tuple[float, float] | None = None  # (None: the mount's limits)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ONVIF url must be http(s)://HOST[:PORT]/PATH, got {self.url!r}")
        if self.timeout_s <= 0 or self.attempts < 1:
            raise ValueError("timeout_s must be positive and attempts at least 1")
        if self.password is not None and not self.username:
            raise ValueError("an ONVIF password needs a username")

    @classmethod
    def from_config(cls, source: Any, **tuning: Any) -> OnvifSettings:
        """From a device config's ``cameras[].onvif`` (``firmware_config.device.OnvifSource``)."""
        return cls(
            url=str(source.url),
            username=source.username,
            password=source.password_value(),
            profile_token=source.profile_token,
            **tuning,
        )


@dataclass(frozen=True)
class OnvifPreset:
    """A preset the camera stores: its token, name and pose (None when it reports none)."""

    token: str
    name: str
    pose: PTZPose | None


@dataclass(frozen=True)
class OnvifCameraInfo:
    """What :meth:`OnvifPTZ.connect` found."""

    profile_token: str
    media_url: str
    ptz_url: str
    spaces: PTZSpaces
    clock_offset_s: float  # the camera's clock minus ours


def _username_token(username: str, password: str, offset: dt.timedelta) -> Any:
    """A WS-Security UsernameToken (digest) stamped with the camera's clock."""
    from zeep.wsse.username import UsernameToken

    class _CameraClockToken(UsernameToken):
        def apply(self, envelope: Any, headers: Any) -> Any:
            # a fresh Created per request, in the camera's time (cameras reject stale stamps)
            self.created = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + offset
            try:
                return super().apply(envelope, headers)
            finally:
                self.created = None

    # Zulu timestamps: some firmwares (Hikvision) reject a "+00:00" offset in Created
    return _CameraClockToken(username, password, use_digest=True, zulu_timestamp=True)


class OnvifPTZ:
    """ONVIF PTZ controller of one camera (see the module doc); no I/O until :meth:`connect`."""

    def __init__(
        self,
        settings: OnvifSettings,
        mount: CameraMountSpec,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.mount = mount
        self.limits = mount.limits
        self._monotonic, self._sleep = monotonic, sleep
        self._lock = threading.RLock()
        self._services: dict[str, Any] = {}
        self._session: Any = None
        self.info: OnvifCameraInfo | None = None
        self._failures = 0
        self._refuse_until = -math.inf
        self._last_error = ""
        self._last_command_t = -math.inf
        self._target: PTZPose | None = None  # the last absolute target (None after other moves)
        self._idle_due: float | None = None  # when the head should be idle (after Stop/timeout)
        self._stop_resends = 0
        self._last_pose: PTZPose | None = None
        self._speed_spaces = (False, False)  # the node has generic speed spaces (pan/tilt, zoom)
        self.num_commands = 0
        self.num_calls = 0
        self.num_errors = 0
        self.num_stop_resends = 0

    # ------------------------------------------------------------------ connection
    def connect(self) -> OnvifCameraInfo:
        """Discover the services, the profile and the PTZ spaces (network I/O)."""
        with self._lock:
            if self.info is not None:
                return self.info
            import requests
            from requests.auth import HTTPDigestAuth

            s = self.settings
            self._session = requests.Session()
            if s.username:
                self._session.auth = HTTPDigestAuth(s.username, s.password or "")
            # 1. the camera's clock, unauthenticated (ONVIF pre-auth), for the token's timestamps
            device = self._service("device", s.url, authenticated=False)
            answer = self._call(device, "device", "GetSystemDateAndTime", retry=True)
            offset = _clock_offset(answer)
            self._services.clear()
            device = self._service("device", s.url, offset=offset)
            # 2. service addresses
            media_url, ptz_url = self._service_addresses(device)
            media = self._service("media", media_url, offset=offset)
            ptz = self._service("ptz", ptz_url, offset=offset)
            # 3. the media profile with PTZ
            profiles = self._call(media, "media", "GetProfiles", retry=True) or []
            profile = self._choose_profile(profiles)
            config = profile.PTZConfiguration
            # 4. the node's generic spaces
            node = self._call(ptz, "ptz", "GetNode", retry=True, NodeToken=config.NodeToken)
            spaces = self._spaces(node)
            self._services = {"device": device, "media": media, "ptz": ptz}
            self.info = OnvifCameraInfo(
                profile.token, media_url, ptz_url, spaces, offset.total_seconds()
            )
            log.info(
                "ONVIF camera at %s: profile %s, PTZ at %s, clock offset %.1f s",
                s.url, profile.token, ptz_url, offset.total_seconds(),
            )  # fmt: skip
            return self.info

    def close(self) -> None:
        """Drop the HTTP session (idempotent)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            self._services.clear()
            self.info = None

    def _service(
        self,
        name: str,
        address: str,
        *,
        offset: dt.timedelta = dt.timedelta(0),
        authenticated: bool = True,
    ) -> Any:
        from zeep import Client
        from zeep.transports import Transport

        s = self.settings
        wsse = None
        if authenticated and s.username:
            wsse = _username_token(s.username, s.password or "", offset)
        transport = Transport(
            session=self._session, timeout=s.timeout_s, operation_timeout=s.timeout_s
        )
        client = Client(
            wsdl=wsdl_document(name), transport=transport, wsse=wsse, settings=zeep_settings()
        )
        proxy = client.create_service(SERVICES[name][1], address)
        proxy._sitehawk_url = address  # the URL errors name
        return proxy

    def _rebase(self, xaddr: str) -> str:
        """A service address on the configured host: cameras behind NAT report inner IPs."""
        configured = urllib.parse.urlsplit(self.settings.url)
        given = urllib.parse.urlsplit(xaddr)
        return urllib.parse.urlunsplit(
            (configured.scheme, configured.netloc, given.path, given.query, "")
        )

    def _service_addresses(self, device: Any) -> tuple[str, str]:
        """(media, PTZ) service URLs from GetServices, else GetCapabilities."""
        from zeep.exceptions import Fault

        addresses: dict[str, str] = {}
        try:
            services = self._call(device, "device", "GetServices", IncludeCapability=False)
            for service in services or []:
                addresses[str(service.Namespace)] = str(service.XAddr)
        except OnvifError as exc:
            if not isinstance(exc.__cause__, Fault):
                raise
        media, ptz = addresses.get(NS_MEDIA), addresses.get(NS_PTZ)
        if media is None or ptz is None:  # an older camera: GetCapabilities
            caps = self._call(device, "device", "GetCapabilities", Category="All")
            media = media or _xaddr(getattr(caps, "Media", None))
            ptz = ptz or _xaddr(getattr(caps, "PTZ", None))
        if media is None:
            raise OnvifError(self.settings.url, "GetServices", "the camera has no media service")
        if ptz is None:
            raise OnvifError(
                self.settings.url, "GetServices", "the camera has no PTZ service: configure it "
                "as an `rtsp` camera (fixed view) instead",
            )  # fmt: skip
        return self._rebase(media), self._rebase(ptz)

    def _choose_profile(self, profiles: list[Any]) -> Any:
        wanted = self.settings.profile_token
        tokens = [str(p.token) for p in profiles]
        if wanted is not None:
            for profile in profiles:
                if profile.token == wanted:
                    if profile.PTZConfiguration is None:
                        raise OnvifError(
                            self.settings.url, "GetProfiles",
                            f"profile {wanted!r} has no PTZ configuration",
                        )  # fmt: skip
                    return profile
            raise OnvifError(
                self.settings.url, "GetProfiles",
                f"no media profile {wanted!r} (profile_token); the camera has {tokens}",
            )  # fmt: skip
        for profile in profiles:
            if profile.PTZConfiguration is not None:
                return profile
        raise OnvifError(
            self.settings.url, "GetProfiles", f"no media profile with PTZ among {tokens}"
        )

    def _spaces(self, node: Any) -> PTZSpaces:
        supported = node.SupportedPTZSpaces
        url = self.settings.url

        def find(kind: str, uri: str, *, required: bool = True) -> Any:
            for space in getattr(supported, kind, None) or []:
                if str(space.URI) == uri:
                    return space
            if required:
                raise OnvifError(
                    url, "GetNode", f"the PTZ node offers no {uri.rsplit('/', 2)[-2]} "
                    f"{uri.rsplit('/', 1)[-1]} ({kind}); this controller drives generic spaces",
                )  # fmt: skip
            return None

        def rng(r: Any, default: tuple[float, float]) -> tuple[float, float]:
            return (float(r.Min), float(r.Max)) if r is not None else default

        pan_tilt = find("AbsolutePanTiltPositionSpace", PAN_TILT_POSITION_SPACE)
        zoom = find("AbsoluteZoomPositionSpace", ZOOM_POSITION_SPACE, required=False)
        velocity = find("ContinuousPanTiltVelocitySpace", PAN_TILT_VELOCITY_SPACE)
        zoom_velocity = find("ContinuousZoomVelocitySpace", ZOOM_VELOCITY_SPACE, required=False)
        self._speed_spaces = (
            find("PanTiltSpeedSpace", PAN_TILT_SPEED_SPACE, required=False) is not None,
            find("ZoomSpeedSpace", ZOOM_SPEED_SPACE, required=False) is not None,
        )
        lim = self.limits
        s = self.settings
        return PTZSpaces(
            pan_deg=s.pan_range_deg or (lim.pan_min_deg, lim.pan_max_deg),
            tilt_deg=s.tilt_range_deg or (lim.tilt_min_deg, lim.tilt_max_deg),
            zoom_max=lim.zoom_max if zoom is not None else 1.0,
            pan_x=rng(pan_tilt.XRange, (-1.0, 1.0)),
            tilt_y=rng(pan_tilt.YRange, (-1.0, 1.0)),
            zoom_z=rng(zoom.XRange, (0.0, 1.0)) if zoom is not None else (0.0, 1.0),
            pan_v=rng(velocity.XRange, (-1.0, 1.0)),
            tilt_v=rng(velocity.YRange, (-1.0, 1.0)),
            zoom_v=rng(zoom_velocity.XRange, (-1.0, 1.0)) if zoom_velocity else (-1.0, 1.0),
        )

    # ------------------------------------------------------------------ calls
    def _call(
        self, proxy: Any, service: str, operation: str, *, retry: bool = True, **kwargs: Any
    ) -> Any:
        """One SOAP call with timeouts, retries, the failure backoff and clear errors."""
        import requests
        from zeep.exceptions import Fault, TransportError, XMLParseError, XMLSyntaxError

        url = getattr(proxy, "_sitehawk_url", self.settings.url)
        name = f"{service}.{operation}"
        now = self._monotonic()
        if now < self._refuse_until:
            raise OnvifError(
                url, name, f"camera unavailable, next try in {self._refuse_until - now:.1f} s "
                f"(last error: {self._last_error})",
            )  # fmt: skip
        s = self.settings
        attempts = s.attempts if retry else 1
        problem = ""
        for attempt in range(attempts):
            self.num_calls += 1
            try:
                result = getattr(proxy, operation)(**kwargs)
            except Fault as fault:
                subcodes = [getattr(q, "localname", str(q)) for q in (fault.subcodes or [])]
                detail = f"{fault.message} ({', '.join(['fault', *subcodes])})"
                if "NotAuthorized" in subcodes:
                    raise OnvifAuthError(
                        url, name, f"the camera refused the credentials of user "
                        f"{s.username!r}: {detail}; check cameras.<id>.onvif.username/password",
                    ) from fault  # fmt: skip
                raise OnvifError(url, name, f"the camera answered with a fault: {detail}") from (
                    fault
                )
            except TransportError as exc:
                if exc.status_code == 401:
                    raise OnvifAuthError(
                        url, name, f"HTTP 401: the camera refused the credentials of user "
                        f"{s.username!r}",
                    ) from exc  # fmt: skip
                problem = f"HTTP {exc.status_code}: {exc.message}"
            except (XMLSyntaxError, XMLParseError) as exc:
                raise OnvifError(url, name, f"not an ONVIF answer: {exc}") from exc
            except requests.exceptions.Timeout:
                problem = f"no answer within {s.timeout_s:g} s"
            except requests.exceptions.ConnectionError as exc:
                problem = f"cannot connect: {_root_cause(exc)}"
            except requests.exceptions.RequestException as exc:
                problem = f"HTTP error: {exc}"
            else:
                self._failures = 0
                self._refuse_until = -math.inf
                return result
            if attempt + 1 < attempts:
                self._sleep(s.retry_backoff_s * 2**attempt)
        self.num_errors += 1
        self._failures += 1
        backoff = min(s.max_backoff_s, s.min_backoff_s * 2 ** (self._failures - 1))
        self._refuse_until = self._monotonic() + backoff
        self._last_error = problem
        tries = f"{attempts} tries" if attempts > 1 else "1 try"
        log.warning(
            "ONVIF %s at %s: %s (%s); retrying in %.1f s", name, url, problem, tries, backoff
        )
        raise OnvifError(url, name, f"{problem} ({tries}); next try in {backoff:g} s")

    def _ptz_call(self, operation: str, **kwargs: Any) -> Any:
        info = self.connect()
        ptz = self._services.get("ptz")
        if ptz is None:
            raise OnvifError(self.settings.url, f"ptz.{operation}", "not connected")
        return self._call(ptz, "ptz", operation, ProfileToken=info.profile_token, **kwargs)

    def _throttle(self) -> None:
        """Wait out the rest of ``min_command_interval_s`` since the last command."""
        wait_s = self._last_command_t + self.settings.min_command_interval_s - self._monotonic()
        if wait_s > 0:
            self._sleep(wait_s)
        self._last_command_t = self._monotonic()

    def _clamp(self, pan_deg: float, tilt_deg: float, zoom: float) -> PTZPose:
        lim = self.limits
        return PTZPose(
            min(max(pan_deg, lim.pan_min_deg), lim.pan_max_deg),
            min(max(tilt_deg, lim.tilt_min_deg), lim.tilt_max_deg),
            min(max(zoom, 1.0), lim.zoom_max),
        )

    # ------------------------------------------------------------------ PTZDriver
    def absolute_move(self, pan_deg: float, tilt_deg: float, zoom: float) -> None:
        """AbsoluteMove to a pose (clamped to the limits) at the maximum speeds."""
        with self._lock:
            info = self.connect()
            target = self._clamp(pan_deg, tilt_deg, zoom)
            x, y, z = info.spaces.to_position(target)
            position: dict[str, Any] = {
                "PanTilt": {"x": x, "y": y, "space": PAN_TILT_POSITION_SPACE},
                "Zoom": {"x": z, "space": ZOOM_POSITION_SPACE},
            }
            speed: dict[str, Any] = {}
            pan_tilt_speed, zoom_speed = self._speed_spaces
            if pan_tilt_speed:
                speed["PanTilt"] = {"x": 1.0, "y": 1.0, "space": PAN_TILT_SPEED_SPACE}
            if zoom_speed:
                speed["Zoom"] = {"x": 1.0, "space": ZOOM_SPEED_SPACE}
            self._throttle()
            self._ptz_call("AbsoluteMove", Position=position, Speed=speed or None)
            self.num_commands += 1
            self._target, self._idle_due = target, None

    def relative_move(
        self, pan_deg: float = 0.0, tilt_deg: float = 0.0, zoom_factor: float = 1.0
    ) -> None:
        """Move by an offset from the last target (or the current pose), as an AbsoluteMove."""
        with self._lock:
            base = self._target or self.get_status().pose
            self.absolute_move(
                base.pan_deg + pan_deg, base.tilt_deg + tilt_deg, base.zoom * max(zoom_factor, 1e-3)
            )

    def continuous_move(
        self, pan: float = 0.0, tilt: float = 0.0, zoom: float = 0.0, timeout_s: float = 1.0
    ) -> None:
        """ContinuousMove at fractions of the maximum speeds, with the ONVIF Timeout."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        with self._lock:
            info = self.connect()
            vx, vy, vz = info.spaces.to_velocity(pan, tilt, zoom)
            velocity = {
                "PanTilt": {"x": vx, "y": vy, "space": PAN_TILT_VELOCITY_SPACE},
                "Zoom": {"x": vz, "space": ZOOM_VELOCITY_SPACE},
            }
            self._throttle()
            self._ptz_call(
                "ContinuousMove", Velocity=velocity, Timeout=dt.timedelta(seconds=timeout_s)
            )
            self.num_commands += 1
            self._target = None
            self._idle_due = self._monotonic() + timeout_s
            self._stop_resends = 0

    def stop(self) -> None:
        """Stop pan, tilt and zoom."""
        with self._lock:
            self._throttle()
            self._ptz_call("Stop", PanTilt=True, Zoom=True)
            self.num_commands += 1
            self._target = None
            self._idle_due = self._monotonic()
            self._stop_resends = 0

    def get_status(self) -> PTZStatus:
        """GetStatus → pose and motion; re-sends Stop to a camera that ignored one."""
        with self._lock:
            info = self.connect()
            status = self._ptz_call("GetStatus")
            pose = self._pose_of(getattr(status, "Position", None), info) or self._last_pose
            if pose is None:
                raise OnvifError(
                    self.settings.url, "ptz.GetStatus", "the camera reports no position"
                )
            self._last_pose = pose
            move = getattr(status, "MoveStatus", None)
            moving = move is not None and "MOVING" in (
                str(getattr(move, "PanTilt", "") or ""),
                str(getattr(move, "Zoom", "") or ""),
            )
            if not moving:
                self._idle_due = None
            elif self._idle_due is not None:
                overdue = self._monotonic() - self._idle_due
                if overdue >= self.settings.stop_grace_s:
                    self._resend_stop(overdue)
            return PTZStatus(pose, moving)

    def _resend_stop(self, overdue_s: float) -> None:
        if self._stop_resends >= self.settings.max_stop_resends:
            return
        self._stop_resends += 1
        self.num_stop_resends += 1
        log.warning(
            "ONVIF camera at %s still moving %.1f s after it should have stopped: "
            "sending Stop again (%d/%d)",
            self.settings.url, overdue_s, self._stop_resends, self.settings.max_stop_resends,
        )  # fmt: skip
        self._ptz_call("Stop", PanTilt=True, Zoom=True)
        self._idle_due = self._monotonic()

    @staticmethod
    def _pose_of(position: Any, info: OnvifCameraInfo) -> PTZPose | None:
        if position is None or getattr(position, "PanTilt", None) is None:
            return None
        pan_tilt, zoom = position.PanTilt, getattr(position, "Zoom", None)
        z = float(zoom.x) if zoom is not None and zoom.x is not None else None
        return info.spaces.from_position(float(pan_tilt.x), float(pan_tilt.y), z)

    # ------------------------------------------------------------------ presets and media
    def get_presets(self) -> list[OnvifPreset]:
        """The camera's presets (GetPresets)."""
        with self._lock:
            info = self.connect()
            presets = self._ptz_call("GetPresets") or []
            return [
                OnvifPreset(
                    str(p.token), str(p.Name or p.token), self._pose_of(p.PTZPosition, info)
                )
                for p in presets
            ]

    def goto_preset(self, preset: str) -> None:
        """GotoPreset by token or name."""
        with self._lock:
            presets = self.get_presets()
            match = [p for p in presets if preset in (p.token, p.name)]
            if not match:
                names = ", ".join(p.name for p in presets) or "none"
                raise OnvifError(
                    self.settings.url, "ptz.GotoPreset", f"no preset {preset!r} (the camera has: "
                    f"{names})",
                )  # fmt: skip
            self._throttle()
            self._ptz_call("GotoPreset", PresetToken=match[0].token)
            self.num_commands += 1
            self._target, self._idle_due = match[0].pose, None

    def set_preset(self, name: str) -> str:
        """Store the current position as a preset named ``name``; returns its token."""
        with self._lock:
            return str(self._ptz_call("SetPreset", PresetName=name))

    def remove_preset(self, preset: str) -> None:
        """RemovePreset by token or name."""
        with self._lock:
            match = [p for p in self.get_presets() if preset in (p.token, p.name)]
            if match:
                self._ptz_call("RemovePreset", PresetToken=match[0].token)

    def stream_uri(self) -> str:
        """The profile's RTSP URL (GetStreamUri, RTP over RTSP over TCP), with the credentials."""
        return self._media_uri(
            "GetStreamUri",
            StreamSetup={"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
        )

    def snapshot_uri(self) -> str:
        """The profile's JPEG snapshot URL (GetSnapshotUri)."""
        return self._media_uri("GetSnapshotUri", credentials=False)

    def _media_uri(self, operation: str, credentials: bool = True, **kwargs: Any) -> str:
        with self._lock:
            info = self.connect()
            media = self._services["media"]
            answer = self._call(
                media, "media", operation, ProfileToken=info.profile_token, **kwargs
            )
            uri = str(answer.Uri)
            if credentials:
                uri = with_credentials(uri, self.settings.username, self.settings.password)
            return uri


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with ``username:password@`` unless it carries credentials or none are given."""
    parts = urllib.parse.urlsplit(url)
    if not username or parts.username:
        return url
    user = urllib.parse.quote(username, safe="")
    secret = f":{urllib.parse.quote(password, safe='')}" if password else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}{secret}@{parts.netloc}"))


def _xaddr(capability: Any) -> str | None:
    xaddr = getattr(capability, "XAddr", None) if capability is not None else None
    return str(xaddr) if xaddr else None


def _clock_offset(answer: Any) -> dt.timedelta:
    """The camera's UTC clock minus ours (zero when it does not say)."""
    try:
        utc = answer.UTCDateTime
        camera = dt.datetime(
            utc.Date.Year, utc.Date.Month, utc.Date.Day,
            utc.Time.Hour, utc.Time.Minute, utc.Time.Second,
            tzinfo=dt.timezone.utc,
        )  # fmt: skip
    except (AttributeError, TypeError, ValueError):
        return dt.timedelta(0)
    offset = camera - dt.datetime.now(dt.timezone.utc)
    # whole seconds only: the camera's clock has a 1 s resolution
    return dt.timedelta(0) if abs(offset.total_seconds()) < 2 else offset


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__
