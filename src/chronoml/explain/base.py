"""The interface every explainer implements (tree and model-agnostic ones alike)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from chronoml.domain.explanation import Background, Explanation


class Explainer:
    """Explains rows of the frame the model takes (columns in the model's order)."""

    name: str = ""
    output_scale: str = ""
    background: Background
    note: str | None = None
    per_row_cost: str = "low"  # "high" for model-agnostic explainers

    def explain(self, df: pd.DataFrame) -> list[Explanation]:
        raise NotImplementedError

    def explain_matrix(self, mat: np.ndarray[Any, Any], columns: list[str]) -> list[Explanation]:
        """The same for a float matrix in the model's column order (the gateway's fast path)."""
        return self.explain(pd.DataFrame(mat, columns=columns, copy=False))
