"""Cameras as the agent sees them: frame sources and PTZ drivers behind small protocols.

* :mod:`edge.camera.source` — :class:`~edge.camera.source.Frame` and the
  :class:`~edge.camera.source.FrameSource` protocol (virtual site, video file, RTSP);
* :mod:`edge.camera.ptz` — the :class:`~edge.camera.ptz.PTZDriver` protocol (ONVIF PTZ service
  calls) and the dispatch of a policy's command onto it;
* :mod:`edge.camera.virtual` — the virtual PTZ camera on the simulated site, its in-process PTZ
  driver and the simulated detector bound to it (the only modules here that see the simulator).
"""
