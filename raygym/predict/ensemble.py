"""Which of a search's top-k models a prediction ensembles, and with what weight.

The rule (``raygym predict --top-k``, :class:`~raygym.predict.predictor.Predictor`, and so
``raygym.predict_file`` / ``raygym.Predictor``):

1. Each member's score is its validation mean IoU at the epoch whose weights it holds
   (``model_card.json`` ``metrics.val_mean_iou``, written when the model was exported).
2. A member more than ``margin`` below the best member's score is left out (never loaded), so
   a weak k-th model does not drag the map down. ``margin`` is in mean IoU (default 0.05).
3. The kept members' softmax is averaged with weights proportional to their scores
   (``weights="score"``) or equal (``"equal"``), summing to 1.

Scores within the margin differ by noise as much as by skill (two seeds of one configuration
rank a search's configurations with a Spearman correlation of only 0.66 on the S2 set, see
the README), so the kept members' weights stay close to equal; the margin does the work of
keeping a clearly weaker model out. A member whose card has no finite score (an artifact made
outside ``raygym train`` / ``search``) makes the rule fall back to: every member kept, equal
weights; the plan says so. ``margin=1`` with ``weights="equal"`` is the plain average of all k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raygym.errors import RaygymError

EnsembleWeights = Literal["score", "equal"]
WEIGHT_MODES: tuple[str, ...] = ("score", "equal")
SCORE_KEY = "val_mean_iou"
DEFAULT_MARGIN = 0.05
_TOLERANCE = 1e-9  # a score exactly at the margin is kept whatever the float rounding


def _finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


def check_rule(margin: float, weights: str) -> None:
    """Refuse a negative / NaN ``margin`` or an unknown ``weights`` mode.

    Raises:
        RaygymError: naming ``--ensemble-margin`` or ``--ensemble-weights``.
    """
    if not (isinstance(margin, int | float) and margin >= 0):
        raise RaygymError(f"ensemble margin must be >= 0 (got {margin})",
                          key="--ensemble-margin", fix="e.g. --ensemble-margin 0.05")
    if weights not in WEIGHT_MODES:
        raise RaygymError(f"ensemble weights must be one of {', '.join(WEIGHT_MODES)} "
                          f"(got {weights!r})", key="--ensemble-weights")


def ensemble_weights(scores: Sequence[float | None], *, margin: float = DEFAULT_MARGIN,
                     weights: EnsembleWeights = "score") -> list[float]:
    """The weight of each member (0: left out), from the members' validation scores.

    Args:
        scores: each member's validation mean IoU (in ``[0, 1]``; None / NaN: unknown).
        margin: members more than this below the best score are left out (>= 0).
        weights: ``score``: kept members in proportion to their scores; ``equal``.

    Returns:
        One weight per member, in order, >= 0 and summing to 1. When any score is unknown:
        equal weights for all members (nothing can be judged).
    """
    check_rule(margin, weights)
    if not scores:
        raise RaygymError("no model to ensemble")
    n = len(scores)
    if not all(_finite(s) for s in scores):
        return [1.0 / n] * n
    known = [max(0.0, float(s)) for s in scores]  # type: ignore[arg-type]
    best = max(known)
    kept = [s >= best - margin - _TOLERANCE for s in known]
    raw = [(s if weights == "score" else 1.0) if k else 0.0
           for s, k in zip(known, kept, strict=True)]
    if sum(raw) <= 0:  # every kept score is 0: proportions say nothing
        raw = [1.0 if k else 0.0 for k in kept]
    total = sum(raw)
    return [r / total for r in raw]


@dataclass(frozen=True)
class EnsemblePlan:
    """The models a prediction uses: every candidate (best first), its score and weight."""

    members: tuple[Path, ...]
    scores: tuple[float | None, ...]
    weights: tuple[float, ...]
    margin: float
    mode: str

    @property
    def kept(self) -> list[Path]:
        return [m for m, w in zip(self.members, self.weights, strict=True) if w > 0]

    @property
    def kept_weights(self) -> list[float]:
        return [w for w in self.weights if w > 0]

    @property
    def scored(self) -> bool:
        """Every member had a validation score (else the equal-weight fallback applied)."""
        return all(_finite(s) for s in self.scores)

    def rule(self) -> str:
        """The rule that was applied, in one sentence."""
        if len(self.members) == 1:
            return "one model"
        if not self.scored:
            missing = [m.name for m, s in zip(self.members, self.scores, strict=True)
                       if not _finite(s)]
            return (f"no validation score ({SCORE_KEY}) in the model card of "
                    f"{', '.join(missing)}: all {len(self.members)} models kept, equal weights")
        how = "in proportion to it" if self.mode == "score" else "equally"
        return (f"models within {self.margin:g} validation mean IoU of the best kept, "
                f"weighted {how}")

    def to_json(self) -> dict[str, Any]:
        """For the outputs' metadata: the rule, and each member's score, weight and use."""
        return {"rule": self.rule(), "score": SCORE_KEY, "margin": self.margin,
                "weights": self.mode,
                "members": [{"model": m.name, "path": str(m), SCORE_KEY: s, "weight": w,
                             "kept": w > 0}
                            for m, s, w in zip(self.members, self.scores, self.weights,
                                               strict=True)]}

    def lines(self) -> list[str]:
        """What ``raygym predict`` prints: the rule, then one line per member."""
        if len(self.members) == 1:
            return []
        best = max((s for s in self.scores if _finite(s)), default=math.nan)
        out = [f"ensemble of {len(self.kept)} of {len(self.members)} models: {self.rule()}"]
        for m, s, w in zip(self.members, self.scores, self.weights, strict=True):
            score = f"val mIoU {s:.4f}" if _finite(s) else "val mIoU unknown"
            use = (f"weight {w:.3f}" if w > 0
                   else f"left out ({best - s:.4f} below the best)")  # type: ignore[operator]
            out.append(f"  {m.name}  {score}  {use}")
        return out


def member_score(metrics: dict[str, Any]) -> float | None:
    """A model card's validation mean IoU (``metrics.val_mean_iou``), None when absent."""
    value = metrics.get(SCORE_KEY)
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def plan_ensemble(members: Sequence[Path], metrics: Sequence[dict[str, Any]], *,
                  margin: float = DEFAULT_MARGIN, weights: EnsembleWeights = "score"
                  ) -> EnsemblePlan:
    """Apply :func:`ensemble_weights` to artifacts (``members``, best first) whose model
    cards hold ``metrics``."""
    scores = [member_score(m) for m in metrics]
    w = ensemble_weights(scores, margin=margin, weights=weights)
    return EnsemblePlan(tuple(Path(p) for p in members), tuple(scores), tuple(w),
                        float(margin), str(weights))
