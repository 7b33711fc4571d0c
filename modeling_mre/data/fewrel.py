"""
Reader of FewRel's JSON layout (`{relation: [instance, ...]}`, FewRel 1.0 and 2.0, and the sets FewRel 2.0
redistributes: NYT, PubMed, SemEval-2010 Task 8) into the record schema: text-only relation sets that a
description-conditioned model (ROC) trains on beside MNRE, or is measured on.
"""

import json
import os
from pathlib import Path
from typing import Any

import datasets

from ..models.processing_mre import entity_pair_problem
from .schema import build_split, is_int, record_features


def load_fewrel(
    path: str | os.PathLike, split: str = "train", *, cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """
    Read a FewRel-layout file: one JSON object mapping each relation to its instances, an instance
    `{"tokens": [...], "h": [name, id, [[token indices], ...]], "t": [...]}`. Each instance becomes a row
    of the record schema (`record_features`) with no image; its head and tail are their first mention
    (FewRel gives one), a run of consecutive token indices, named by the tokens it spans (the file's
    name may differ in spacing: `wilson's` for the tokens `wilson 's`). The `relation` column is a
    `ClassLabel` over the file's relations in file order; ids are `<split>-<relation>-<n>`.

    Raises:
        ValueError: the file is empty, not one JSON object of lists, or an instance is malformed; the
            message names the file, the relation and the instance's index, and quotes no more than the field.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as file:
            data = json.load(file)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping each relation to its instances")
    rows = []
    for relation, instances in data.items():
        if not isinstance(instances, list) or not instances:
            raise ValueError(f"{path}, relation {relation!r}: expected a non-empty list of instances")
        for index, instance in enumerate(instances):
            rows.append(
                _row(
                    instance,
                    f"{path}, relation {relation!r}, instance {index}",
                    f"{split}-{relation}-{index}",
                    relation,
                )
            )
    return build_split(split, rows, record_features(list(data)), cache_dir)


def _row(instance: Any, where: str, row_id: str, relation: str) -> dict[str, Any]:
    if not isinstance(instance, dict):
        raise ValueError(f"{where}: expected an object with 'tokens', 'h' and 't'")
    tokens = instance.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(token, str) for token in tokens):
        raise ValueError(f"{where}, field 'tokens': expected a non-empty list of strings")
    spans = {
        role: _span(instance.get(key), len(tokens), f"{where}, field '{key}'")
        for role, key in (("head", "h"), ("tail", "t"))
    }
    problem = entity_pair_problem(spans["head"], spans["tail"])
    if problem is not None:
        raise ValueError(f"{where}, field 't': {problem}")
    head, tail = ({"name": " ".join(tokens[start:end]), "start": start, "end": end} for start, end in spans.values())
    return {
        "id": row_id,
        "tokens": tokens,
        "head": head,
        "tail": tail,
        "image": None,
        "image_id": None,
        "crops": [],
        "relation": relation,
    }


def _span(entity: Any, num_tokens: int, where: str) -> tuple[int, int]:
    """The `(start, end)` token span of `[name, id, [[indices], ...]]`'s first mention."""
    if not isinstance(entity, list) or len(entity) != 3 or not isinstance(entity[2], list) or not entity[2]:
        raise ValueError(f"{where}: expected [name, id, [[token indices], ...]]")
    indices = entity[2][0]
    if not isinstance(indices, list) or not indices or not all(is_int(i) for i in indices):
        raise ValueError(
            f"{where}: its first mention must be a non-empty list of token indices, got {indices!r}"[:300]
        )
    start, end = indices[0], indices[-1] + 1
    if indices != list(range(start, end)) or not 0 <= start < end <= num_tokens:
        raise ValueError(
            f"{where}: token indices {indices} are not consecutive indices of the {num_tokens} tokens"[:300]
        )
    return start, end
