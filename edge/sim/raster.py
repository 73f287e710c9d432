"""Pixel conventions and drawing primitives shared by the renderer's modules.

Shapes are drawn with OpenCV in fixed point (``SHIFT`` sub-pixel bits) so that small, distant
things move smoothly instead of jumping a whole pixel; nothing closer to the camera than
``NEAR_M`` is drawn.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

NEAR_M = 0.5
SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
ONE = 1 << SHIFT


def fixed_point(uv: np.ndarray) -> np.ndarray:
    """Pixel coordinates → cv2's fixed point (``shift`` bits), clipped so int32 cannot overflow.

    At 30× zoom a corner just beside the camera's axis projects millions of pixels away; the
    clip moves such far-off vertices along the image plane, which leaves what is drawn inside the
    frame all but unchanged.
    """
    return np.round(np.clip(np.nan_to_num(uv), -1e6, 1e6) * ONE).astype(np.int32)


def rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color) -> None:
    """Fill the axis-aligned rectangle with corners (x0, y0) and (x1, y1), clipped to ``img``."""
    h, w = img.shape[:2]
    a, b = max(int(round(x0)), 0), min(int(round(x1)) + 1, w)
    c, d = max(int(round(y0)), 0), min(int(round(y1)) + 1, h)
    if a < b and c < d:
        img[c:d, a:b] = color


def quad(img: np.ndarray, pts: list[tuple[float, float]], color) -> None:
    """Fill a convex polygon given in pixel coordinates."""
    arr = fixed_point(np.array(pts))
    cv2.fillConvexPoly(img, arr, color, lineType=cv2.LINE_8, shift=SHIFT)


def ellipse_poly(cx: float, cy: float, rx: float, ry: float, n: int = 12) -> np.ndarray:
    """An axis-aligned ellipse as an ``n``-gon in fixed point."""
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.round(np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], -1) * ONE).astype(np.int32)
