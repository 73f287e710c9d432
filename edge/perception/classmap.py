"""Mapping a model's class names onto SiteHawk's six detector classes.

SiteHawk's own detector outputs :data:`~edge.perception.detection.CLASSES` directly. A customer's
YOLO hard-hat model names its classes its own way (``Hardhat``, ``NO-Hardhat``, ``Safety Vest``,
``machinery`` …), often with *negative* classes: ``NO-Hardhat`` is a head without a helmet —
SiteHawk's ``head_bare``. :func:`build_class_map` maps each model class to a SiteHawk class or to
``None`` (dropped), from a table of common names, the negative-class rule and explicit overrides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from edge.perception.detection import CLASSES

#: Common class names (normalised: lower case, runs of non-letters → one space) → SiteHawk class.
ALIASES: dict[str, str] = {
    **{n: "person" for n in ("person", "people", "worker", "human", "pedestrian")},
    **{
        n: "head_helmet"
        for n in ("head helmet", "helmet", "hardhat", "hard hat", "safety helmet", "with helmet")
    },
    **{n: "head_bare" for n in ("head bare", "head", "bare head", "without helmet")},
    **{n: "vest" for n in ("vest", "safety vest", "hi vis", "hi vis vest", "reflective vest")},
    **{
        n: "machine"
        for n in (
            "machine",
            "machinery",
            "vehicle",
            "excavator",
            "truck",
            "dump truck",
            "crane",
            "loader",
            "bulldozer",
            "forklift",
        )
    },
    **{n: "fire_smoke" for n in ("fire smoke", "fire", "smoke", "flame", "flames")},
}
#: What the negation of a SiteHawk class is: "no hardhat" → a bare head. A negated class
#: without an entry (e.g. "NO-Safety Vest") has no SiteHawk class: the hazard rules infer a
#: missing vest from a person without one.
NEGATIONS: dict[str, str | None] = {"head_helmet": "head_bare", "vest": None}
_NEGATION = re.compile(r"^(no|not|without|missing)\s+(.*)$")


def normalise(name: str) -> str:
    """``"NO-Safety_Vest"`` → ``"no safety vest"``."""
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def map_class(name: str) -> str | None:
    """The SiteHawk class for a model class name, or None (not one SiteHawk uses)."""
    key = normalise(name)
    if key in ALIASES:
        return ALIASES[key]
    match = _NEGATION.match(key)
    if match:
        positive = ALIASES.get(match.group(2))
        return NEGATIONS.get(positive) if positive is not None else None
    return None


def build_class_map(
    model_classes: Sequence[str], overrides: Mapping[str, str | None] | None = None
) -> list[str | None]:
    """Per model class index, its SiteHawk class (None: dropped).

    ``overrides`` maps model class names to a SiteHawk class or None and wins over the table;
    a name that is not a model class, or a target that is not a SiteHawk class, is an error.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(model_classes))
    if unknown:
        raise ValueError(f"class map: {unknown} are not classes of the model {list(model_classes)}")
    for name, target in overrides.items():
        if target is not None and target not in CLASSES:
            raise ValueError(f"class map: {name!r} → {target!r} is not one of {list(CLASSES)}")
    return [overrides[n] if n in overrides else map_class(n) for n in model_classes]
