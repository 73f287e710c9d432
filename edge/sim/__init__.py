"""The virtual construction site: the data engine for training, evaluation, the demo and tests.

- :mod:`edge.sim.spec` — the site description (YAML round trip),
- :mod:`edge.sim.generate` — sites from a seed (seeds ≥ 1000 are held out),
- :mod:`edge.sim.world` — the site at any site time, and its hazard events (ground truth),
- :mod:`edge.sim.render` — pinhole rendering of any PTZ view, with per-frame ground truth
  (helpers: :mod:`~edge.sim.boxes`, :mod:`~edge.sim.figures`, :mod:`~edge.sim.shading`,
  :mod:`~edge.sim.raster`; ground truth in :mod:`~edge.sim.truth`),
- :mod:`edge.sim.ptz` — the PTZ head's kinematics and ONVIF-like commands,
- :mod:`edge.sim.perception` — simulated detections from ground truth,
- :mod:`edge.sim.virtual` — camera + site + clock in one object,
- :mod:`edge.sim.panorama` — what the camera can see, as one picture with pan/tilt mapping,
- :mod:`edge.sim.overview` — the ``sitehawk-edge render`` picture (panorama, plan, PTZ views).
"""
