"""What ``raygym evaluate`` scores: one model, or the ensemble of a search's top-k models that
``raygym predict --top-k`` maps with (``--ensemble``): the members :mod:`raygym.predict.ensemble`
keeps, with its weights, scored through one path (:func:`raygym.evaluate.load_scorer`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygym.predict.ensemble import DEFAULT_MARGIN, EnsemblePlan, EnsembleWeights


@dataclass(frozen=True)
class ScoredModels:
    """One model (``plan`` None) or an ensemble: its kept ``members`` (best first) and their
    ``weights`` (summing to 1)."""

    members: list[Path]
    weights: list[float]
    plan: EnsemblePlan | None = None

    @classmethod
    def of(cls, model: Path | Sequence[Path], *, margin: float = DEFAULT_MARGIN,
           weights: EnsembleWeights = "score") -> ScoredModels:
        """``model``: one artifact folder, or several (best first) to ensemble by the rule of
        :func:`~raygym.predict.ensemble.plan_ensemble` (reads their cards, loads nothing)."""
        if isinstance(model, str | Path):
            return cls([Path(model)], [1.0])
        candidates = [Path(m) for m in model]
        if len(candidates) == 1:
            return cls(candidates, [1.0])
        from raygym.inference.artifact import read_model_card
        from raygym.predict.ensemble import plan_ensemble

        plan = plan_ensemble(candidates, [read_model_card(p).metrics for p in candidates],
                             margin=margin, weights=weights)
        return cls(plan.kept, plan.kept_weights, plan)

    @property
    def candidates(self) -> list[Path]:
        """Every model offered, kept or not (best first)."""
        return self.members if self.plan is None else list(self.plan.members)

    @property
    def first(self) -> Path:
        return self.members[0]

    @property
    def home(self) -> Path:
        """The model folder; for an ensemble, the search results folder its members were
        exported to (the folder holding ``best/``)."""
        if self.plan is None:
            return self.first
        parent = self.plan.members[0].parent
        return parent.parent if parent.name == "best" else parent

    @property
    def label(self) -> str:
        """``x/best``; ``ensemble of rank1_a, rank2_b`` (the members kept)."""
        from raygym.evaluate import model_label

        return model_label(self.first) if self.plan is None else ensemble_label(self.members)

    def folder_name(self, name: str) -> str:
        """The report folder's name for the evaluation ``name`` (``evaluation_test``):
        unchanged for one model; ``evaluation_test_top3_ensemble`` for an ensemble of 3
        candidates (written beside ``best/``, never inside it)."""
        return name if self.plan is None else f"{name}_top{len(self.plan.members)}_ensemble"

    def to_json(self) -> dict[str, Any]:
        """For metrics.json: the rule and each candidate's score, weight and use (empty for one
        model)."""
        return {} if self.plan is None else {"ensemble": self.plan.to_json()}


def ensemble_label(members: Sequence[Path]) -> str:
    """``ensemble of rank1_a, rank2_b``: an ensemble named by the members it kept."""
    return "ensemble of " + ", ".join(Path(p).name for p in members)
