"""Labels for logged decisions: what a label is, and which labels fit which outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chronoml.errors import InvalidInput


class FeedbackError(InvalidInput):
    """A label that cannot be recorded; ``status`` is the HTTP status to answer with."""

    code = "bad_feedback"

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message, field, status)


@dataclass(frozen=True)
class Label:
    """A label for a logged decision, and/or context about it that arrived later.

    ``label`` is None only when the item carries ``context`` alone.
    """

    decision_id: str
    label: Any
    observed_at: int | None = None
    context: dict[str, Any] | None = None


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "int" if v.is_integer() else "float"
    if isinstance(v, str):
        return "str"
    return "other"


def check_label(output: Any, label: Any) -> Any:
    """The label, if its type fits the decision's output; FeedbackError otherwise.

    A classifier that answered 0/1 takes integer labels (1.0 counts as 1), one
    that answered strings takes strings; a regressor takes any finite number; one that
    answered its class scores takes a class.
    """
    out, lab = _kind(output), _kind(label)
    if lab == "other" or label is None:
        raise FeedbackError(
            f"label must be a number, string or boolean, got {label!r}", field="label"
        )
    if isinstance(label, float) and not math.isfinite(label):
        raise FeedbackError("label must be finite", field="label")
    if out == "float":
        if lab in ("int", "float"):
            return float(label)
    elif out == "int":
        if lab == "int":
            return int(label)
    elif out == lab:
        return label
    elif out == "other":
        # an answer of class scores (a pyfunc returning probabilities): the label is a class
        return int(label) if lab == "int" and not isinstance(label, bool) else label
    raise FeedbackError(
        f"label {label!r} does not fit this model's outputs (it answered {output!r}): "
        f"expected {'a number' if out == 'float' else 'an integer' if out == 'int' else 'a ' + out}",
        field="label",
    )
