"""Training sets built from snapshots and files: point-in-time joins of labels to features."""

from __future__ import annotations

from chronoml.datasets.pit import (
    DatasetError,
    FeatureSpec,
    JoinSpec,
    TrainingSet,
    build_training_set,
)

__all__ = ["DatasetError", "FeatureSpec", "JoinSpec", "TrainingSet", "build_training_set"]
