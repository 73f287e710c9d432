"""One-to-one greedy matching, shared by the tracker, the alert manager and the scorer."""

from __future__ import annotations

from collections.abc import Iterable


def greedy_pairs(ranked: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Take ``(i, j)`` candidate pairs best first; skip a pair whose ``i`` or ``j`` is taken.

    No scipy on the device, and the sets matched per frame are small: greedy on a ranked list is
    enough and keeps each caller's own notion of "best".
    """
    used_i: set[int] = set()
    used_j: set[int] = set()
    out: list[tuple[int, int]] = []
    for i, j in ranked:
        if i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        out.append((i, j))
    return out
