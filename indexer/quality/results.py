"""What an evaluation found (``indexer evaluate``, ``indexer train-head``): retrieval metrics
per method, and the whole evaluation as the report writes it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.quality.datasets import LabelledImage

if TYPE_CHECKING:
    pass


# The methods an evaluation compares: the model's vectors, and two baselines.
MODEL = "model"
COLOUR = "colour-histogram"
RANDOM = "random"


@dataclass(frozen=True)
class Scores:
    """Retrieval metrics of one method: the means, and the per-query values behind them."""

    summary: dict[str, float]
    # Metric name -> (n,) per query; NaN where the query has no relevant image.
    per_query: dict[str, np.ndarray]
    # (n,) bool: queries that count (their label has another image).
    valid: np.ndarray

    def standard_error(self, metric: str) -> float:
        """The standard error of ``metric``'s mean over the queries that count."""
        values = self.per_query[metric][self.valid]
        if len(values) < 2:
            return float("nan")
        return float(values.std(ddof=1) / math.sqrt(len(values)))

    def per_class(self, labels: Sequence[str], metric: str) -> dict[str, float]:
        values = self.per_query[metric]
        out: dict[str, float] = {}
        for label in sorted(set(labels)):
            mask = (np.asarray(labels) == label) & self.valid
            if mask.any():
                out[label] = float(values[mask].mean())
        return out


@dataclass
class MethodResult:
    name: str
    description: str
    scores: Scores
    neighbours: np.ndarray
    similarity: np.ndarray


@dataclass
class Evaluation:
    dataset: str
    items: list[LabelledImage]
    methods: dict[str, MethodResult]
    model: dict[str, Any]
    ks: tuple[int, ...]
    chance: float
    failed: dict[str, str]
    store: str
    seconds: dict[str, float]

    @property
    def labels(self) -> list[str]:
        return [item.label for item in self.items]

    def as_dict(self) -> dict[str, Any]:
        labels = self.labels
        classes, counts = np.unique(np.asarray(labels), return_counts=True)
        return {
            "dataset": {
                "source": self.dataset,
                "images": len(self.items),
                "classes": len(classes),
                "queries": int(next(iter(self.methods.values())).scores.valid.sum()),
                "failed": self.failed,
            },
            "model": self.model,
            "store": self.store,
            "ks": list(self.ks),
            "chance_precision": self.chance,
            "methods": {
                name: {"description": m.description, **rounded(m.scores.summary)}
                for name, m in self.methods.items()
            },
            "per_class": {
                str(label): {
                    "images": int(count),
                    **{
                        name: round_or_none(
                            m.scores.per_class(labels, f"P@{self._k_mid}").get(label)
                        )
                        for name, m in self.methods.items()
                    },
                }
                for label, count in zip(classes, counts, strict=True)
            },
            "per_class_metric": f"P@{self._k_mid}",
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }

    @property
    def _k_mid(self) -> int:
        return 5 if 5 in self.ks else self.ks[len(self.ks) // 2]


def round_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 4)


def rounded(summary: dict[str, float]) -> dict[str, float | None]:
    return {k: round_or_none(v) for k, v in summary.items()}
