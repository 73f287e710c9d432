"""The evidence snapshot of an alert: the frame with the hazard's box drawn, as a JPEG.

The snapshot is the **full frame** (scaled down to ``max_width``) rather than a crop: it shows
where on the site the hazard is, an alert is usually raised at the zoom that resolved the hazard
(so the box is big enough to see), and a subscriber can crop with the alert's ``location.bbox``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def render_snapshot(
    frame: np.ndarray,
    bbox: Sequence[float],
    label: str,
    *,
    max_width: int = 1280,
    jpeg_quality: int = 85,
) -> tuple[bytes, int, int]:
    """The evidence JPEG: the whole frame, scaled to ``max_width``, with the box drawn.

    ``bbox`` is normalised 0-1. Returns (jpeg bytes, width, height). The frame is not modified.
    """
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.shape[0] < 1:
        raise ValueError(
            f"frame: expected a uint8 HxW or HxWx3 BGR image, got {frame.dtype} {frame.shape}"
        )
    h, w = frame.shape[:2]
    if w > max_width:
        size = (max_width, max(1, round(h * max_width / w)))
        img = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    else:
        img = frame.copy()
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = np.ascontiguousarray(img)
    height, width = img.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in bbox)
    p0 = (round(x0 * width), round(y0 * height))
    p1 = (round(x1 * width), round(y1 * height))
    thickness = max(2, round(width / 400))
    cv2.rectangle(img, p0, p1, (0, 0, 255), thickness)
    scale = max(0.5, width / 1600)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = p0[1] - 4 if p0[1] - th - base - 4 >= 0 else min(p1[1] + th + 4, height - base)
    cv2.rectangle(img, (p0[0], ty - th - 2), (p0[0] + tw + 4, ty + base), (0, 0, 255), -1)
    cv2.putText(
        img,
        label,
        (p0[0] + 2, ty),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError("cv2.imencode could not encode the evidence snapshot as JPEG")
    return buf.tobytes(), width, height
