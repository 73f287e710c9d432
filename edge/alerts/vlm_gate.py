"""The VLM gate: the question an alert asks before it is raised, off the control loop.

:class:`WorkerVlmGate` is the :data:`~edge.alerts.manager.VlmGate` the agent hands its
:class:`~edge.alerts.manager.AlertManager`\\ s. When a rule with ``require_vlm`` is about to
raise, the manager calls the gate with the observation, the frame and the pose; the gate cuts a
square crop around the detection (the view the model was trained on, per hazard type: head and
shoulders for ``no_helmet``, the whole worker for ``no_vest``, the intruder and the painted zone
boundary around them for ``zone_intrusion``, a wider view for ``fire_smoke``), scales it to the
model's image size, submits the hazard's yes/no question to a
:class:`~edge.vlm.worker.VLMWorker` (returns at once) and hands back a :class:`PendingQuestion`.
The manager polls it on later frames (never blocking); the worker's timeout bounds the wait.

The outcome follows DESIGN.md's gate rule through :func:`edge.vlm.questions.confirmation`:
``confirmed: false`` only for a confident contradiction (the only case that suppresses the
alert); a timeout, a failure (``error: "timeout"`` / ``"unavailable"``, ``answer: null``) or an
unconfident or unparseable answer gives ``confirmed: null`` and the alert goes out.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge.alerts.manager import LookTarget, NotYet
from edge.alerts.rules import HazardObservation
from edge.alerts.schema import VlmCheck
from edge.geometry import PTZPose, fov_v_deg
from edge.vlm.backend import VLMAnswer
from edge.vlm.questions import (
    HAZARD_QUESTIONS,
    ZONE_ASK_MAX_BOUNDARY_M,
    ZONE_VIEW_PERSON_HEIGHTS,
    confirmation,
)
from edge.vlm.worker import VLMRequest, VLMWorker

log = logging.getLogger(__name__)

#: The image size the shipped model was trained on (its manifest's ``image_size_px``).
DEFAULT_IMAGE_SIZE = 96
#: A contradiction suppresses only at this answer probability or above (docs/vlm.md).
DEFAULT_MIN_CONFIDENCE = 0.8
#: Crops are never smaller than this many frame pixels (tiny ones are upsampled, as in training).
MIN_CROP_PX = 16
#: Not asked (see :func:`unanswerable`): an object box within this many pixels of the frame's
#: edge, or a crop under this share of the model's input size (in frame pixels). 1: never an
#: upsampled crop — the model learnt from views rendered at its input size, and small crops
#: blown up to it were where it confirmed false alerts (a box spanning two workers at ~55 px);
#: the camera's look zooms in for a crop twice the input instead (session 8: 0.5 → 1 took
#: training seeds 0-19 from 6 to 4 false alerts at the same 17 events found).
EDGE_MARGIN_PX = 2.0
MIN_ASK_SCALE = 1.0
#: Not asked on this frame: the camera's motion smears the crop by more than this many pixels
#: of the model's input (for a model trained on still views; a fast pan smears a head by its
#: width). A model whose manifest declares ``trained_views`` is asked up to its ``max_blur_px``.
MAX_BLUR_MODEL_PX = 3.0
#: Not asked on this frame: the window would have to shift by more than this share of its side
#: to stay inside the frame — the worker would not be at the crop's centre, where the question
#: looks (a worker near the frame's edge, asked about, answered for whoever the centre showed).
MAX_OFF_CENTRE = 0.1

# Crop geometry per question view, in units of the detection box's height (person boxes) or
# its larger side (fire): the training data's framing (trainer/vlm/data.py: head and shoulders,
# 0.75 m of a ~1.75 m worker, fill 60-90 % of the crop, centred 0.3 m below the top of the head;
# a whole worker fills 65-95 %; the zone view is centred on the person and
# ZONE_VIEW_PERSON_HEIGHTS of their heights wide, as the trainer renders it).
_HEAD_SPAN = 0.75 / 1.75  # head and shoulders, as a share of the person's height
_HEAD_CENTRE = 0.3 / 1.75  # their centre below the top of the box, same units
_HEAD_FILL = 0.75
_WORKER_FILL = 0.8
_ZONE_SIDE = ZONE_VIEW_PERSON_HEIGHTS  # a person and the painted zone boundary around them
_VIEW_SIDE = 2.0  # fire/smoke and its surroundings
#: Median width / height of a worker's box (the virtual site's workers, arms included; 10-90 %:
#: 0.38-0.52): a worker cut by the frame's bottom edge gets its height back from its width.
PERSON_ASPECT = 0.43


def _cut_edges(
    shape: tuple[int, ...], bbox: tuple[float, float, float, float]
) -> tuple[bool, bool, bool, bool]:
    """Whether the box reaches the frame's left, top, right and bottom edge (within
    :data:`EDGE_MARGIN_PX`)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in bbox)
    m = EDGE_MARGIN_PX
    return x0 * w < m, y0 * h < m, x1 * w > w - m, y1 * h > h - m


def _crop_geometry(hazard: str) -> tuple[float, float]:
    """The question's crop for an object of height 1 centred at 0: (side, how far its centre
    lies above the object's centre), in object heights — the one framing :func:`_window` cuts
    and :func:`look_pose` aims for (the training data's, see the constants above)."""
    view = HAZARD_QUESTIONS[hazard].view if hazard in HAZARD_QUESTIONS else "view"
    if hazard == "no_helmet":
        return _HEAD_SPAN / _HEAD_FILL, 0.5 - _HEAD_CENTRE
    if view == "worker":
        return 1.0 / _WORKER_FILL, 0.0
    if view == "zone":
        return _ZONE_SIDE, 0.0
    return _VIEW_SIDE, 0.0


def _window(
    shape: tuple[int, ...], bbox: tuple[float, float, float, float], hazard: str
) -> tuple[float, float, float]:
    """The question's square window in frame pixels: centre x, centre y, side (unclamped) —
    :func:`_crop_geometry`'s framing around the box (its larger side for a wider view)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in bbox)
    bw, bh = max(x1 - x0, 0.0) * w, max(y1 - y0, 0.0) * h
    if hazard == "no_helmet" and _cut_edges(shape, bbox)[3]:
        bh = max(bh, bw / PERSON_ASPECT)  # legs out of view: the box is shorter than the worker
    side, centre_up = _crop_geometry(hazard)
    view = HAZARD_QUESTIONS[hazard].view if hazard in HAZARD_QUESTIONS else "view"
    extent = max(bw, bh) if view == "view" else bh
    return (x0 + x1) / 2 * w, y0 * h + bh * (0.5 - centre_up), side * extent


#: A look (:func:`look_pose`) frames the question's crop at this many times the model's input in
#: frame pixels — detail to spare, and room for a worker who keeps walking — but at most
#: :data:`LOOK_MAX_CROP_SHARE` of the frame's height, so the object stays whole in view.
LOOK_CROP_MODEL_SCALES = 2.0
LOOK_MAX_CROP_SHARE = 0.6


def look_pose(
    target: LookTarget,
    fov_h_1x_deg: float,
    zoom_max: float,
    width_px: int,
    height_px: int,
    model_px: int = DEFAULT_IMAGE_SIZE,
) -> PTZPose:
    """The pose that shows ``target`` as its question wants: the crop's centre in the middle of
    the frame, zoomed so the crop spans :data:`LOOK_CROP_MODEL_SCALES` × ``model_px`` frame
    pixels (at most :data:`LOOK_MAX_CROP_SHARE` of the frame's height), within 1×…``zoom_max``.
    Pan and tilt are the mount's (the caller clamps them to the head's limits)."""
    side, centre_up = _crop_geometry(target.hazard)
    size_deg = max(target.size_deg, 1e-3)
    crop_px = min(LOOK_CROP_MODEL_SCALES * model_px, LOOK_MAX_CROP_SHARE * height_px)
    want_fov_v = side * size_deg * height_px / crop_px
    widest_v = fov_v_deg(1.0, width_px, height_px, fov_h_1x_deg)
    half = math.radians(min(want_fov_v, widest_v)) / 2
    # fov_v = 2 atan(h/w · tan(fov_h / 2)) with fov_h = fov_h_1x / zoom, solved for the zoom
    fov_h = 2 * math.degrees(math.atan(math.tan(half) * width_px / height_px))
    zoom = min(max(fov_h_1x_deg / max(fov_h, 1e-6), 1.0), zoom_max)
    return PTZPose(target.pan_deg, target.tilt_deg + centre_up * size_deg, zoom)


def _off_centre_px(shape: tuple[int, ...], cx: float, cy: float, side: float) -> float:
    """How far :func:`question_crop` shifts the window to keep it inside the frame (pixels)."""
    h, w = shape[:2]
    n = min(max(side, float(MIN_CROP_PX)), float(min(h, w)))
    dx = max(n / 2 - cx, cx + n / 2 - w, 0.0)
    dy = max(n / 2 - cy, cy + n / 2 - h, 0.0)
    return math.hypot(dx, dy)


def question_crop(
    frame_bgr: np.ndarray, bbox: tuple[float, float, float, float], hazard: str, size: int
) -> np.ndarray:
    """The RGB ``size``×``size`` crop the VLM is asked about for ``hazard`` at ``bbox``.

    ``bbox`` is the observation's normalised [x_min, y_min, x_max, y_max]. The square window is
    shifted (never padded) to stay inside the frame and shrunk to the frame when larger.
    """
    h, w = frame_bgr.shape[:2]
    cx, cy, side = _window(frame_bgr.shape, bbox, hazard)
    side = min(max(side, float(MIN_CROP_PX)), float(min(h, w)))
    n = max(1, int(round(side)))
    left = int(round(min(max(cx - n / 2, 0.0), w - n)))
    top = int(round(min(max(cy - n / 2, 0.0), h - n)))
    crop = frame_bgr[top : top + n, left : left + n]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (size, size), interpolation=interp)
    return np.ascontiguousarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))


def unanswerable(
    shape: tuple[int, ...],
    bbox: tuple[float, float, float, float],
    hazard: str,
    size: int,
    blur_px: float = 0.0,
    *,
    max_blur_model_px: float = MAX_BLUR_MODEL_PX,
    partly_out_of_view: bool = False,
) -> str | None:
    """Why the model cannot judge ``hazard`` at ``bbox`` in a frame of ``shape`` (None: it can).

    The model learnt only from views that show what the question is about (trainer/vlm/data.py
    rejects a worker partly out of frame, and renders every crop at 55-100 % of its input size),
    and it answers anything else confidently all the same — a worker whose head is above the
    frame's top edge was "wearing a hard hat" at p = 0.97. So the gate does not ask when the
    object's box reaches the frame's edge where that can hide what is asked about (within
    :data:`EDGE_MARGIN_PX`; for ``no_helmet`` the top and the sides — a worker whose legs are out
    of view still shows the head, and the crop takes the worker's height from the box's width,
    :data:`PERSON_ASPECT`; for ``fire_smoke`` none — flames partly in view are still flames, as
    in the training data), or when the crop is under :data:`MIN_ASK_SCALE` of the model's
    input in frame pixels, or when the crop's window would have to shift by more than
    :data:`MAX_OFF_CENTRE` of its side to stay in the frame (the worker would not be at the
    centre the question asks about; not for ``fire_smoke``), or when the camera's motion during
    the exposure (``blur_px``, in frame pixels: the alert manager's estimate) smears the crop by
    more than :data:`MAX_BLUR_MODEL_PX` of the model's input (a model trained on still views never
    saw a smeared helmet). The gate then answers
    :class:`~edge.alerts.manager.NotYet` and the manager asks again on a later frame; when none
    comes in time the alert goes out unasked (``vlm: null``), as DESIGN.md's gate wants for any
    VLM that cannot answer.

    A model trained on such views (its manifest's ``trained_views``: ``--gate-views`` data) has
    learnt to doubt what they cannot show, so it is asked about them: ``partly_out_of_view``
    lifts the edge and centring rules and ``max_blur_model_px`` raises the blur limit to what
    it saw.
    """
    *sides, bottom = _cut_edges(shape, bbox)  # sides: left, top, right
    if hazard == "fire_smoke":
        cut = False  # flames partly in view are still flames (training fires: >= 50 % in view)
    elif hazard == "no_helmet":
        cut = any(sides)  # the head shows unless the top or a side is cut; legs may be out
    else:
        cut = any(sides) or bottom
    if cut and not partly_out_of_view:
        return "the object reaches the frame's edge"
    cx, cy, side = _window(shape, bbox, hazard)
    if side < MIN_ASK_SCALE * size:
        return f"the crop is {side:.0f} px, under {MIN_ASK_SCALE:g} of the model's {size} px"
    off_centre = _off_centre_px(shape, cx, cy, side) > MAX_OFF_CENTRE * side
    if off_centre and hazard != "fire_smoke" and not partly_out_of_view:
        return "the crop would not be centred on the object (its window leaves the frame)"
    side = max(side, float(MIN_CROP_PX))
    limit = max(MAX_BLUR_MODEL_PX, max_blur_model_px)
    if blur_px * size / side > limit:
        return (
            f"the camera's motion blurs the view ({blur_px:.1f} px over a {side:.0f} px crop, "
            f"over {limit:g} px of the model's {size})"
        )
    return None


def heads_problem(observation: HazardObservation) -> str | None:
    """Why the worker's box does not show one worker (None: it does, or nobody counted).

    The question asks about "the worker in the centre", and the crop is cut around the box. A
    box holding two or more head detections spans workers standing one behind the other: its
    centre falls between them (any person hazard). A box holding none, for the helmet and vest
    questions, is a worker whose upper body is hidden (a machine's arm in front: a legs-only
    box) or too small for a head to show: the crop would show no head or vest to judge. Such
    crops were answered "no vest" with confidence on sites where every worker wore one.
    """
    n = observation.heads_in_box
    if n is None:
        return None
    if n >= 2:
        return f"the worker's box holds {n} heads (workers one behind the other)"
    if n == 0 and observation.type in ("no_helmet", "no_vest"):
        return "no head detected in the worker's box (upper body hidden or too small)"
    return None


def near_zone_boundary(observation: HazardObservation) -> bool:
    """Whether the zone question is asked about this intrusion: its worker stands within
    :data:`~edge.vlm.questions.ZONE_ASK_MAX_BOUNDARY_M` of the zone's boundary (or the rule did
    not say how far), where the zone view shows the painted line and where the ground position's
    error can turn a worker outside into an intrusion."""
    return observation.boundary_m is None or observation.boundary_m <= ZONE_ASK_MAX_BOUNDARY_M


def vlm_check(
    hazard: str, question: str, answer: VLMAnswer, min_confidence: float = DEFAULT_MIN_CONFIDENCE
) -> VlmCheck:
    """The alert's ``vlm`` object for one answer (or timeout / failure), per DESIGN.md."""
    error = answer.error if answer.error in ("timeout", "unavailable") else None
    if answer.error is not None and error is None:
        error = "unavailable"  # an unknown error kind is still a failure: never suppress
    confirmed = (
        None
        if error is not None
        else confirmation(hazard, answer.text, answer.confidence, min_confidence)
    )
    latency = answer.latency_ms
    return {
        "question": question,
        "answer": None if error is not None else answer.text,
        "confirmed": confirmed,
        "latency_ms": round(latency, 1) if math.isfinite(latency) and latency >= 0 else None,
        "error": error,  # type: ignore[typeddict-item]  # narrowed to the two kinds above
    }


@dataclass
class PendingQuestion:
    """One hazard question in flight (a :class:`~edge.alerts.manager.PendingVlmCheck`)."""

    hazard: str
    question: str
    request: VLMRequest
    gate: WorkerVlmGate

    def poll(self) -> VlmCheck | None:
        """The ``vlm`` object once answered, timed out or failed; None meanwhile (never
        blocks)."""
        answer = self.request.answer()
        if answer is None:
            return None
        check = vlm_check(self.hazard, self.question, answer, self.gate.min_confidence)
        self.gate.record(check)
        return check


class WorkerVlmGate:
    """Asks a :class:`~edge.vlm.worker.VLMWorker` before an alert is raised (never blocks).

    ``image_size``: the crop's side in pixels (the model's input; the shipped model's 96).
    ``counts`` (for telemetry and tests): ``asked``, ``confirmed``, ``contradicted``,
    ``unconfirmed`` (answered without a verdict), ``timeout``, ``unavailable``, ``not_yet``
    (frames whose view the model cannot judge: :func:`unanswerable`; the alert manager asks
    again on a later frame).
    """

    def __init__(
        self,
        worker: VLMWorker,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        max_blur_model_px: float = MAX_BLUR_MODEL_PX,
        partly_out_of_view: bool = False,
    ):
        if image_size < 8:
            raise ValueError(f"image_size: {image_size} is too small")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence: {min_confidence} is not within 0-1")
        self.worker = worker
        self.image_size = image_size
        self.min_confidence = min_confidence
        self.max_blur_model_px = max_blur_model_px
        self.partly_out_of_view = partly_out_of_view
        self.counts: Counter[str] = Counter()

    def __call__(
        self,
        observation: HazardObservation,
        frame: np.ndarray,
        pose: PTZPose,
        blur_px: float = 0.0,
    ) -> PendingQuestion | NotYet | None:
        """Submit the hazard's question about a crop of ``frame``; None for a hazard type
        without a question (the alert goes out with ``vlm: null``); :class:`NotYet` for a view
        the model cannot judge (:func:`unanswerable`; counted as ``not_yet``, one per frame):
        the manager asks again on a later frame."""
        q = HAZARD_QUESTIONS.get(observation.type)
        if q is None:
            return None
        if observation.type == "zone_intrusion" and not near_zone_boundary(observation):
            self.counts["not_asked_deep_inside"] += 1
            return None  # inside whatever the ground position's error: the alert goes out
        why = heads_problem(observation) or unanswerable(
            frame.shape,
            observation.bbox,
            observation.type,
            self.image_size,
            blur_px,
            max_blur_model_px=self.max_blur_model_px,
            partly_out_of_view=self.partly_out_of_view,
        )
        if why is not None:
            self.counts["not_yet"] += 1
            log.debug("%s %s: VLM not asked yet: %s", observation.type, observation.key, why)
            return NotYet(why)
        crop = question_crop(frame, observation.bbox, observation.type, self.image_size)
        self.counts["asked"] += 1
        request = self.worker.submit(crop, q.question)
        return PendingQuestion(observation.type, q.question, request, self)

    def start(self) -> None:
        """Start the worker (the backend loads in its thread: nothing waits for it)."""
        self.worker.start()

    def record(self, check: VlmCheck) -> None:
        """Count one outcome."""
        if check["error"] is not None:
            self.counts[check["error"]] += 1
        elif check["confirmed"] is True:
            self.counts["confirmed"] += 1
        elif check["confirmed"] is False:
            self.counts["contradicted"] += 1
        else:
            self.counts["unconfirmed"] += 1

    def stats(self) -> dict[str, Any]:
        """Counts for telemetry / status (every key present, zeros included)."""
        keys = (
            "asked",
            "not_yet",
            "confirmed",
            "contradicted",
            "unconfirmed",
            "timeout",
            "unavailable",
            "not_asked_deep_inside",
        )
        return {k: int(self.counts[k]) for k in keys}

    def close(self) -> None:
        """Stop the worker (after its current question; the backend closes in its thread)."""
        self.worker.stop()
