"""Cameras as the agent sees them: frame sources and PTZ drivers behind small protocols.

* :mod:`edge.camera.source` — :class:`~edge.camera.source.Frame` and the
  :class:`~edge.camera.source.FrameSource` protocol (virtual site, video file, RTSP);
* :mod:`edge.camera.ptz` — the :class:`~edge.camera.ptz.PTZDriver` protocol (ONVIF PTZ service
  calls) and the dispatch of a policy's command onto it;
* :mod:`edge.camera.virtual` — the virtual PTZ camera on the simulated site, its in-process PTZ
  driver and the simulated detector bound to it (the only modules here that see the simulator);
* :mod:`edge.camera.onvif` — the ONVIF PTZ controller (zeep, WS-Security) for real cameras and
  the virtual one; :mod:`edge.camera.onvif_common` — the WSDLs and the unit ↔ ONVIF space
  mapping; :mod:`edge.camera.onvif_server` — the virtual camera's ONVIF services over HTTP;
* :mod:`edge.camera.stream` — video file and RTSP frame sources (OpenCV/FFmpeg, reconnects).
"""
