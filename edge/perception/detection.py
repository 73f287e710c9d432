"""The typed result every detector (simulated, ONNX, TensorRT) returns."""

from __future__ import annotations

from dataclasses import dataclass

#: The six detector classes, in model output order.
CLASSES = ("person", "head_helmet", "head_bare", "vest", "machine", "fire_smoke")


@dataclass(frozen=True)
class Detection:
    """One detected object in pixel coordinates of the frame it was found in."""

    cls: str
    score: float
    bbox: tuple[float, float, float, float]  # x_min, y_min, x_max, y_max, pixels

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2.0, (self.bbox[1] + self.bbox[3]) / 2.0)
