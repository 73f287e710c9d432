"""The detector interface every backend implements (simulated, ONNX Runtime, TensorRT).

The agent calls :meth:`Detector.detect` once per frame and gets :class:`~edge.perception.detection.
Detection` objects in that frame's pixel coordinates. A backend reports the model files it runs in
``models`` (name → sha256), which go into every alert and the status message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from edge.camera.source import Frame
from edge.perception.detection import Detection


@runtime_checkable
class Detector(Protocol):
    """Turns a frame into detections."""

    name: str

    @property
    def models(self) -> Mapping[str, str]:
        """Model name → sha256 of the files this backend runs (empty for simulated perception)."""
        ...

    def detect(self, frame: Frame) -> list[Detection]:
        """Detections in ``frame``'s pixel coordinates."""
        ...

    def close(self) -> None:
        """Release the backend (idempotent)."""
        ...
