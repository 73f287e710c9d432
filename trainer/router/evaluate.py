"""Score a router offline on an outcome table (RouterBench-style), with RouteLLM's metrics.

Reference points on the same table: ``random`` (the expected outcome of a uniformly random
expert), ``best_single`` (the expert with the highest mean score, always), ``oracle`` (per prompt
the best-scoring expert, the cheapest among ties) and ``supervised`` (the kNN full-information
baseline). ``gap_recovered = (quality − random) / (oracle − random)``.

With exactly two experts (a strong and a weak model, as RouteLLM studies) the router's score
``ŝ_strong − ŝ_weak`` ranks the prompts; sending the top fraction *c* to the strong model gives
PGR(c) = (quality(c) − weak) / (strong − weak). ``apgr`` is the area under PGR over c ∈ [0, 1]
(trapezoids over every cut), ``cpt50`` the smallest c with PGR ≥ 0.5 (a fraction of calls).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.router.bandit import Router
from trainer.router.outcomes import OutcomeTable

#: λ values of the curve (costs normalised by the router's ``cost_scale``).
DEFAULT_LAMBDAS = tuple(float(x) for x in np.round(np.linspace(0.0, 1.0, 21), 3))


def _point(table: OutcomeTable, choice: np.ndarray) -> dict[str, float]:
    rows = np.arange(len(table))
    return {
        "quality": float(table.scores[rows, choice].mean()),
        "cost": float(table.costs[rows, choice].mean()),
    }


def oracle_choice(table: OutcomeTable) -> np.ndarray:
    """Per prompt the best-scoring expert, the cheapest among ties."""
    best = table.scores.max(axis=1, keepdims=True)
    masked_cost = np.where(np.isclose(table.scores, best), table.costs, np.inf)
    return np.argmin(masked_cost, axis=1)


def _gap(quality: float, random_q: float, oracle_q: float) -> float:
    span = oracle_q - random_q
    return float((quality - random_q) / span) if span > 1e-12 else 1.0


def route_llm_metrics(table: OutcomeTable, advantage: np.ndarray) -> dict[str, float]:
    """APGR and CPT(50%) for a two-expert table; ``advantage`` ranks prompts for the strong one."""
    if len(table.experts) != 2:
        raise ValueError("APGR and CPT(50%) need exactly two experts")
    means = table.scores.mean(axis=0)
    strong, weak = int(np.argmax(means)), int(np.argmin(means))
    if strong == weak:
        strong, weak = 1, 0
    order = np.argsort(-advantage, kind="stable")
    n = len(table)
    weak_total = table.scores[:, weak].sum()
    gains = table.scores[order, strong] - table.scores[order, weak]
    quality = (weak_total + np.concatenate([[0.0], np.cumsum(gains)])) / n  # k = 0..n to strong
    span = means[strong] - means[weak]
    pgr = (quality - means[weak]) / span if span > 1e-12 else np.ones_like(quality)
    fractions = np.arange(n + 1) / n
    reached = np.nonzero(pgr >= 0.5)[0]
    return {
        "apgr": float(np.sum((pgr[1:] + pgr[:-1]) / 2.0 * np.diff(fractions))),
        "cpt50": float(fractions[reached[0]]) if len(reached) else 1.0,
    }


def _aligned(router: Router, table: OutcomeTable) -> OutcomeTable:
    """``table`` with its expert columns in the router's order."""
    if sorted(table.experts) != sorted(router.experts):
        raise ValueError(
            f"the table's experts {table.experts} differ from the router's {router.experts}"
        )
    order = [table.experts.index(e) for e in router.experts]
    return OutcomeTable(
        table.prompts, router.experts, table.scores[:, order], table.costs[:, order], table.domains
    )


def _advantage(score: np.ndarray, strong: int) -> np.ndarray:
    return score[:, strong] - score[:, 1 - strong]


def evaluate(
    router: Router,
    table: OutcomeTable,
    lam: float = 0.0,
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS,
) -> dict[str, Any]:
    """The eval JSON: router, random, best_single, supervised, oracle and the λ curve."""
    table = _aligned(router, table)
    # one embedding pass; every λ reuses the expected scores and costs
    score, cost, _ = router.bandit.predict(router.embed(table.prompts))
    cost = np.maximum(cost, 0.0)
    sup_score, sup_cost = router.supervised_expected(table.prompts)
    random_point = {"quality": float(table.scores.mean()), "cost": float(table.costs.mean())}
    best = int(np.argmax(table.scores.mean(axis=0)))
    oracle_point = _point(table, oracle_choice(table))
    routed = _point(table, np.argmax(score - lam * cost, axis=1))
    supervised = _point(table, np.argmax(sup_score - lam * sup_cost, axis=1))
    for point in (routed, supervised):
        point["gap_recovered"] = _gap(
            point["quality"], random_point["quality"], oracle_point["quality"]
        )
    if len(table.experts) == 2:
        routed.update(route_llm_metrics(table, _advantage(score, best)))
        supervised.update(route_llm_metrics(table, _advantage(sup_score, best)))
    curve = [
        {"lambda": float(x), **_point(table, np.argmax(score - x * cost, axis=1))} for x in lambdas
    ]
    return {
        "router": routed,
        "random": random_point,
        "best_single": _point(table, np.full(len(table), best)),
        "supervised": supervised,
        "oracle": oracle_point,
        "curve": curve,
    }


def supervised_curve(
    router: Router, table: OutcomeTable, lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
) -> list[dict[str, float]]:
    """The kNN baseline's quality/cost over λ (for the plot)."""
    table = _aligned(router, table)
    score, cost = router.supervised_expected(table.prompts)
    return [
        {"lambda": float(x), **_point(table, np.argmax(score - x * cost, axis=1))} for x in lambdas
    ]


def per_expert(table: OutcomeTable) -> dict[str, dict[str, float]]:
    """Mean score and cost of every expert, overall and per surface domain."""
    out: dict[str, dict[str, float]] = {}
    domains = sorted({d for d in table.domains if d})
    for j, expert in enumerate(table.experts):
        row = {"all": float(table.scores[:, j].mean()), "cost": float(table.costs[:, j].mean())}
        for d in domains:
            mask = np.array([x == d for x in table.domains])
            row[d] = float(table.scores[mask, j].mean())
        out[expert] = row
    return out


def plot(
    result: dict[str, Any], sup_curve: list[dict[str, float]], experts: dict[str, Any], path: Path
) -> Path:
    """Quality against cost: the router's λ curve, the kNN baseline, each expert, the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curve = result["curve"]
    ax.plot(
        [p["cost"] for p in curve],
        [p["quality"] for p in curve],
        "o-",
        label="router (LinUCB, λ sweep)",
    )
    ax.plot(
        [p["cost"] for p in sup_curve],
        [p["quality"] for p in sup_curve],
        "s--",
        alpha=0.7,
        label="kNN full-information",
    )
    for name, row in experts.items():
        ax.scatter([row["cost"]], [row["all"]], marker="^", s=60)
        ax.annotate(name, (row["cost"], row["all"]), textcoords="offset points", xytext=(4, 4))
    for key, marker in (("oracle", "*"), ("random", "x")):
        ax.scatter(
            [result[key]["cost"]],
            [result[key]["quality"]],
            marker=marker,
            s=120,
            label=key,
            color="black",
        )
    ax.set_xlabel("mean cost per request (10⁶ parameters × tokens)")
    ax.set_ylabel("mean score")
    ax.set_title("expert router on held-out prompts")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
