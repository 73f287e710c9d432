"""Hazard events from detections: world-frame tracking, hazard rules, and the alert manager.

``tracker`` keeps people, machines and fire/smoke in the camera's pan/tilt coordinates, ``rules``
turns tracks into per-frame hazard observations, ``manager`` turns those into ``raised`` /
``cleared`` alert messages (``schema`` holds their JSON Schema). Nothing here reads simulator
ground truth: only detections, the camera pose, the frame and the time.
"""
