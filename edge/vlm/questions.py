"""The questions SiteHawk asks its VLM, and how their answers are read.

One source of truth for the trainer (which renders question–answer pairs from the virtual site)
and the device (which asks the same questions before an alert goes out): a hazard question is
phrased so that one canonical answer means *the hazard is there*. Answers are short canonical
words (``yes``, ``no``, numbers, colour names) compared after :func:`normalize_answer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Version of the question set; a model is trained for one version (its manifest says which).
QUESTION_SET_VERSION = "sitehawk.vqa/3"
#: The ``zone`` view: a square crop centred on the suspected intruder, this many of their
#: heights wide — enough to show the painted zone boundary near them at the model's 96 px (the
#: person is ~24 px tall). The trainer renders the view so; the gate cuts it so. (vqa/1 asked
#: about a whole zone seen obliquely: intruders a few pixels tall, at chance; vqa/2 cut 6
#: heights, the person ~16 px tall among others, and asked about workers up to 10 m away.)
ZONE_VIEW_PERSON_HEIGHTS = 4.0
#: The zone question is about workers this close to a zone's boundary (inside or out): only then
#: does the zone view show the painted line, and only there can the ground position's error
#: make an intrusion out of a worker who stands outside. A worker deeper inside is inside
#: whatever the error: the gate does not ask (the alert goes out with ``vlm: null``), and the
#: trainer renders no such view (a view with no line in it does not show the answer).
ZONE_ASK_MAX_BOUNDARY_M = 2.5


@dataclass(frozen=True)
class HazardQuestion:
    """A yes/no question whose answer confirms or contradicts one hazard type."""

    hazard: str
    question: str
    answer_if_hazard: str  # "yes" or "no"
    view: str  # "worker" (a crop around one person), "zone" (a wider one around a person) or "view"


HAZARD_QUESTIONS: dict[str, HazardQuestion] = {
    "no_helmet": HazardQuestion(
        "no_helmet", "is the worker in the centre wearing a hard hat?", "no", "worker"
    ),
    "no_vest": HazardQuestion(
        "no_vest", "is the worker in the centre wearing a hi-vis vest?", "no", "worker"
    ),
    "zone_intrusion": HazardQuestion(
        "zone_intrusion",
        "is the worker in the centre inside the machine's exclusion zone?",
        "yes",
        "zone",
    ),
    "fire_smoke": HazardQuestion(
        "fire_smoke", "is there smoke or fire in the image?", "yes", "view"
    ),
}

_PUNCT = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
_SYNONYMS = {
    "yeah": "yes",
    "yep": "yes",
    "true": "yes",
    "nope": "no",
    "false": "no",
    "grey": "gray",
    "colour": "color",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
}


def normalize_answer(text: str | None) -> str:
    """Lower-case, strip punctuation and articles, map synonyms: what exact match compares."""
    if text is None:
        return ""
    words = _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip().split(" ")
    words = [_SYNONYMS.get(w, w) for w in words if w and w not in ("a", "an", "the")]
    return " ".join(words)


def yes_no(text: str | None) -> bool | None:
    """``True`` for an answer that starts with yes, ``False`` for no, else ``None``."""
    norm = normalize_answer(text)
    first = norm.split(" ", 1)[0] if norm else ""
    if first == "yes":
        return True
    if first == "no":
        return False
    return None


def confirmation(
    hazard: str, answer_text: str | None, confidence: float | None, min_confidence: float = 0.8
) -> bool | None:
    """DESIGN.md's gate: True confirms, False is a *confident* contradiction, else None.

    Only ``False`` may suppress an alert; a missing, unparseable or unconfident answer is None
    and the alert goes out unconfirmed.
    """
    q = HAZARD_QUESTIONS.get(hazard)
    said = yes_no(answer_text)
    if q is None or said is None:
        return None
    agrees = said == (q.answer_if_hazard == "yes")
    if agrees:
        return True
    if confidence is not None and confidence >= min_confidence:
        return False
    return None
