"""The router: LinUCB over prompt embeddings, learned from bandit feedback.

Why LinUCB (Li et al., 2010, disjoint arms):

* it learns what we need at decision time — each expert's *expected score* (and cost) for a
  prompt, as a ridge regression on the embedding — so the quality/cost weight λ in
  ``reward = score − λ·cost`` is applied when routing, per deployment or per request, without
  retraining; a policy-gradient router learns one policy for one λ;
* exploration is principled and deterministic: the upper confidence bound ``θₑ·x + α‖x‖_{Aₑ⁻¹}``
  tries an expert exactly while its estimate for this kind of prompt is uncertain, with a regret
  bound for linear rewards;
* an update is a rank-one (Sherman–Morrison) step, so served feedback updates the router online
  in microseconds.

While fitting on an outcome table in ``bandit`` mode the router sees only the outcome of the
expert it chose (the table's other columns stay hidden), with λ drawn per round from the training
range so the data cover every trade-off it will be asked for. ``full`` mode updates every expert
each round (full information, for comparison). The full-information *baseline* is separate: a
k-nearest-neighbour regressor of every expert's score and cost on the same embeddings
(scikit-learn), as RouterBench's kNN routers do.

LinUCB is written here (about 60 lines of numpy) because the libraries that have it do not expose
per-request λ or a cost head; the kNN baseline, the TF-IDF/LSA embedding and all linear algebra
come from scikit-learn and numpy.

Costs are divided by ``cost_scale`` (the costliest expert's mean cost on the training table), so
λ = 1 means "one full point of score is worth the average request of the costliest expert".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.router.embed import TfidfEmbedder
from trainer.router.outcomes import OutcomeTable

SCHEMA = "sitehawk.router/1"


@dataclass
class LinUCBConfig:
    """Hyper-parameters of the bandit fit."""

    alpha: float = 0.5  #: width of the confidence bound (exploration)
    ridge: float = 1.0  #: prior precision of every arm's ridge regression
    epochs: int = 3  #: passes over the training prompts (one choice per prompt per pass)
    lambda_max: float = 1.0  #: λ is drawn uniformly from [0, lambda_max] each training round
    seed: int = 0


class LinUCB:
    """Disjoint LinUCB: one ridge regression of score and of cost per arm."""

    def __init__(self, num_arms: int, dim: int, ridge: float = 1.0) -> None:
        self.dim = dim
        self.a_inv = np.stack([np.eye(dim) / ridge for _ in range(num_arms)])
        self.b_score = np.zeros((num_arms, dim))
        self.b_cost = np.zeros((num_arms, dim))
        self.counts = np.zeros(num_arms, dtype=np.int64)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For rows ``x`` (n, d): expected score, expected cost and UCB width, each (n, arms)."""
        theta_score = np.einsum("aij,aj->ai", self.a_inv, self.b_score)
        theta_cost = np.einsum("aij,aj->ai", self.a_inv, self.b_cost)
        score = x @ theta_score.T
        cost = x @ theta_cost.T
        width = np.sqrt(np.maximum(np.einsum("ni,aij,nj->na", x, self.a_inv, x), 0.0))
        return score, cost, width

    def choose(self, x: np.ndarray, lam: float, alpha: float) -> int:
        """The arm with the highest optimistic reward for one context ``x`` (d,)."""
        score, cost, width = self.predict(x[None, :])
        return int(np.argmax(score[0] + alpha * width[0] - lam * np.maximum(cost[0], 0.0)))

    def update(self, arm: int, x: np.ndarray, score: float, cost: float) -> None:
        """Add one observation of ``arm`` (Sherman–Morrison rank-one update of A⁻¹)."""
        a_inv = self.a_inv[arm]
        ax = a_inv @ x
        self.a_inv[arm] = a_inv - np.outer(ax, ax) / (1.0 + x @ ax)
        self.b_score[arm] += score * x
        self.b_cost[arm] += cost * x
        self.counts[arm] += 1


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1))])


class Router:
    """Embedding + LinUCB + the kNN full-information baseline; saved to and loaded from a DIR."""

    def __init__(
        self,
        experts: list[str],
        embedder: TfidfEmbedder,
        bandit: LinUCB,
        cost_scale: float,
        config: LinUCBConfig,
        supervised: Any = None,
        feedback: str = "bandit",
    ) -> None:
        self.experts = experts
        self.embedder = embedder
        self.bandit = bandit
        self.cost_scale = cost_scale
        self.config = config
        self.supervised = supervised
        self.feedback = feedback

    # --------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        table: OutcomeTable,
        feedback: str = "bandit",
        config: LinUCBConfig | None = None,
        dim: int = 64,
        knn_k: int = 10,
    ) -> Router:
        """Fit the embedding, the bandit (``bandit`` or ``full`` feedback) and the kNN baseline."""
        if feedback not in ("bandit", "full"):
            raise ValueError(f"feedback must be 'bandit' or 'full', got {feedback!r}")
        from sklearn.neighbors import KNeighborsRegressor

        config = config or LinUCBConfig()
        embedder = TfidfEmbedder(dim=dim, seed=config.seed).fit(table.prompts)
        x = _with_bias(embedder.transform(table.prompts))
        cost_scale = float(table.costs.mean(axis=0).max()) or 1.0
        costs = table.costs / cost_scale
        bandit = LinUCB(len(table.experts), x.shape[1], ridge=config.ridge)
        rng = np.random.default_rng(config.seed)
        for _ in range(config.epochs):
            for i in rng.permutation(len(table)):
                if feedback == "full":
                    for arm in range(len(table.experts)):
                        bandit.update(arm, x[i], table.scores[i, arm], costs[i, arm])
                    continue
                lam = float(rng.uniform(0.0, config.lambda_max))
                arm = bandit.choose(x[i], lam, config.alpha)
                bandit.update(arm, x[i], table.scores[i, arm], costs[i, arm])
        knn = KNeighborsRegressor(n_neighbors=min(knn_k, len(table)))
        knn.fit(x[:, :-1], np.hstack([table.scores, costs]))
        return cls(table.experts, embedder, bandit, cost_scale, config, knn, feedback)

    # --------------------------------------------------------------------------- routing
    def embed(self, prompts: list[str]) -> np.ndarray:
        """Bias-augmented embeddings of ``prompts``."""
        return _with_bias(self.embedder.transform(prompts))

    def expected(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The bandit's expected score and (raw-unit) cost of every expert, each (n, experts)."""
        score, cost, _ = self.bandit.predict(self.embed(prompts))
        return score, np.maximum(cost, 0.0) * self.cost_scale

    def route(self, prompts: list[str], lam: float = 0.0) -> np.ndarray:
        """Index of the chosen expert per prompt: argmax of expected score − λ·cost (greedy)."""
        score, cost, _ = self.bandit.predict(self.embed(prompts))
        return np.argmax(score - lam * np.maximum(cost, 0.0), axis=1)

    def decide(self, prompt: str, lam: float = 0.0) -> tuple[int, np.ndarray]:
        """One request: the chosen expert's index and every expert's expected score."""
        score, cost, _ = self.bandit.predict(self.embed([prompt]))
        return int(np.argmax(score[0] - lam * np.maximum(cost[0], 0.0))), score[0]

    def supervised_expected(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The kNN baseline's expected score and normalised cost of every expert."""
        if self.supervised is None:
            raise ValueError("this router has no supervised baseline")
        pred = self.supervised.predict(self.embedder.transform(prompts))
        k = len(self.experts)
        return pred[:, :k], pred[:, k:]

    def route_supervised(self, prompts: list[str], lam: float = 0.0) -> np.ndarray:
        """The kNN baseline's choice per prompt, with the same rule."""
        score, cost = self.supervised_expected(prompts)
        return np.argmax(score - lam * cost, axis=1)

    def update(self, prompt: str, expert: str, score: float, cost: float) -> None:
        """Online update from served feedback: ``expert`` answered ``prompt`` and got ``score``."""
        if expert not in self.experts:
            raise ValueError(f"unknown expert {expert!r}; choose from {self.experts}")
        x = self.embed([prompt])[0]
        self.bandit.update(self.experts.index(expert), x, score, cost / self.cost_scale)

    # ----------------------------------------------------------------------- persistence
    def save(self, out: Path) -> Path:
        """Write ``router.json``, ``embedder.joblib``, ``linucb.npz`` and ``supervised.joblib``."""
        import joblib

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.embedder.save(out / "embedder.joblib")
        np.savez(
            out / "linucb.npz",
            a_inv=self.bandit.a_inv,
            b_score=self.bandit.b_score,
            b_cost=self.bandit.b_cost,
            counts=self.bandit.counts,
        )
        if self.supervised is not None:
            joblib.dump(self.supervised, out / "supervised.joblib")
        meta = {
            "schema": SCHEMA,
            "experts": self.experts,
            "cost_scale": self.cost_scale,
            "feedback": self.feedback,
            "algorithm": "linucb-disjoint",
            "embedding": {"kind": "tfidf-char-lsa", "dim": self.embedder.dim},
            "config": asdict(self.config),
            "observations": {
                e: int(c) for e, c in zip(self.experts, self.bandit.counts, strict=True)
            },
        }
        (out / "router.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: Path) -> Router:
        """Load a router folder written by :meth:`save` (trusted files: joblib is pickle)."""
        import joblib

        path = Path(path)
        meta_path = path / "router.json"
        if not meta_path.is_file():
            raise ValueError(f"{path}: not a router folder (no router.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("schema") != SCHEMA:
            raise ValueError(f"{meta_path}: schema {meta.get('schema')!r}, expected {SCHEMA!r}")
        arrays = np.load(path / "linucb.npz")
        bandit = LinUCB(len(meta["experts"]), arrays["a_inv"].shape[1])
        bandit.a_inv = arrays["a_inv"].copy()
        bandit.b_score = arrays["b_score"].copy()
        bandit.b_cost = arrays["b_cost"].copy()
        bandit.counts = arrays["counts"].copy()
        sup_path = path / "supervised.joblib"
        return cls(
            experts=list(meta["experts"]),
            embedder=TfidfEmbedder.load(path / "embedder.joblib"),
            bandit=bandit,
            cost_scale=float(meta["cost_scale"]),
            config=LinUCBConfig(**meta["config"]),
            supervised=joblib.load(sup_path) if sup_path.is_file() else None,
            feedback=str(meta.get("feedback", "bandit")),
        )
