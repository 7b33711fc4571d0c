"""The MRE metric exactly as the MNRE peers compute it (OpenNRE-style `eval_result`)."""

from collections.abc import Sequence
from typing import Any

import numpy as np


# Same order as the peers' search, so the same label is chosen when a label set holds several.
NEGATIVE_LABEL_CANDIDATES = ("NA", "na", "no_relation", "Other", "Others", "none", "None")


def _as_ids(values: Any, what: str, num_labels: int) -> np.ndarray:
    # `tolist` covers numpy arrays and torch tensors on any device without importing torch.
    ids = np.asarray(values.tolist() if hasattr(values, "tolist") else list(values), dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_labels):
        raise ValueError(f"{what} holds ids outside [0, {num_labels}) for {num_labels} labels")
    return ids


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def compute_mre_metrics(
    predictions: Sequence[int] | Any,
    references: Sequence[int] | Any,
    label_names: Sequence[str],
    negative_label: str | None = None,
) -> dict[str, Any]:
    """
    Accuracy over all instances and micro precision/recall/F1 over the non-negative relations.

    A prediction counts as a true positive only when it equals a gold label that is not the negative
    one, so predicting the wrong positive relation costs both precision and recall. The negative
    label is `negative_label` or else the first of `NEGATIVE_LABEL_CANDIDATES` in `label_names`;
    when there is none, every label counts as positive (as in the peers' code). Zero denominators
    give 0.0. Figures are fractions in [0, 1].

    Args:
        predictions: Predicted label ids (list, numpy array or 1-D tensor).
        references: Gold label ids, same length.
        label_names: Label names indexed by id.
        negative_label: Name of the "no relation" label, overriding the automatic choice.

    Returns:
        `dict` with `accuracy`, `micro_precision`, `micro_recall`, `micro_f1`, `num_examples` and
        `per_relation` (`{name: {"precision", "recall", "f1", "support"}}` for each non-negative label)
        and `confusion_matrix` (counts as nested lists, rows gold and columns predicted, in id order).
    """
    label_names = list(label_names)
    predictions = _as_ids(predictions, "predictions", len(label_names))
    references = _as_ids(references, "references", len(label_names))
    if predictions.shape != references.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")

    if negative_label is not None:
        if negative_label not in label_names:
            raise ValueError(f"negative_label {negative_label!r} is not among label_names")
        negative_id = label_names.index(negative_label)
    else:
        negative_id = next((label_names.index(n) for n in NEGATIVE_LABEL_CANDIDATES if n in label_names), -1)

    correct = predictions == references
    predicted_positive = predictions != negative_id
    gold_positive = references != negative_id
    correct_positive = int(np.sum(correct & gold_positive))
    precision = _ratio(correct_positive, int(predicted_positive.sum()))
    recall = _ratio(correct_positive, int(gold_positive.sum()))

    per_relation = {}
    for label_id, name in enumerate(label_names):
        if label_id == negative_id:
            continue
        true_positive = int(np.sum(correct & (references == label_id)))
        support = int(np.sum(references == label_id))
        label_precision = _ratio(true_positive, int(np.sum(predictions == label_id)))
        label_recall = _ratio(true_positive, support)
        per_relation[name] = {
            "precision": label_precision,
            "recall": label_recall,
            "f1": _f1(label_precision, label_recall),
            "support": support,
        }

    return {
        "accuracy": _ratio(int(correct.sum()), len(references)),
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": _f1(precision, recall),
        "per_relation": per_relation,
        "confusion_matrix": np.bincount(references * len(label_names) + predictions, minlength=len(label_names) ** 2)
        .reshape(len(label_names), len(label_names))
        .tolist(),
        "num_examples": len(references),
    }
