"""
BIO tags to entities, and the entity-level scores of MNER as the Twitter-2015/2017 papers compute them
(seqeval's `classification_report` in its default mode). Pure Python: the pipeline groups a post's tagged
words into entities with the same reading of the tags as the metric scores them.
"""

from collections.abc import Sequence
from typing import Any


def bio_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """
    The entities `(type, start, end)` (end exclusive) of one BIO tag sequence, read as seqeval's default
    (conlleval) mode reads them: an entity starts at a `B-` tag, or at an `I-` tag that does not continue
    an entity of its type (after `O` or another type: Twitter-2015 has such tags), and runs over the
    `I-` tags of its type that follow.
    """
    entities, current = [], None  # current: [type, start]
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, entity_type = tag.partition("-")
        if prefix not in ("B", "I", "O") or (prefix == "O") == bool(entity_type):
            raise ValueError(f"tag {tag!r} at position {position} is not O, B-<type> or I-<type>")
        continues = prefix == "I" and current is not None and current[0] == entity_type
        if current is not None and not continues:
            entities.append((current[0], current[1], position))
            current = None
        if prefix != "O" and not continues:
            current = [entity_type, position]
    return entities


def _scores(num_correct: int, num_predicted: int, num_gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1, 0.0 where a denominator is 0."""
    precision = num_correct / num_predicted if num_predicted else 0.0
    recall = num_correct / num_gold if num_gold else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def compute_ner_metrics(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """
    Entity-level micro precision, recall and F1 (an entity counts when its span and its type are both
    exact), per-type scores and token accuracy over BIO tag sequences, as seqeval computes them in its
    default mode (see `bio_entities`). Figures are fractions in [0, 1].

    Args:
        predictions: Predicted tag names, one sequence per sentence.
        references: Gold tag names, the same lengths.

    Returns:
        `dict` with `micro_precision`, `micro_recall`, `micro_f1`, `accuracy` (of tokens), `per_type`
        (`{type: {"precision", "recall", "f1", "support"}}`, every type predicted or gold) and `num_sentences`.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(references)} references")
    predicted, gold = set(), set()
    correct_tokens = num_tokens = 0
    for sentence, (predicted_tags, gold_tags) in enumerate(zip(predictions, references)):
        if len(predicted_tags) != len(gold_tags):
            raise ValueError(
                f"sentence {sentence}: {len(predicted_tags)} predicted tags for {len(gold_tags)} gold tags"
            )
        predicted.update((sentence, *entity) for entity in bio_entities(predicted_tags))
        gold.update((sentence, *entity) for entity in bio_entities(gold_tags))
        correct_tokens += sum(p == g for p, g in zip(predicted_tags, gold_tags))
        num_tokens += len(gold_tags)
    correct = predicted & gold
    per_type = {}
    for entity_type in sorted({entity[1] for entity in predicted | gold}):
        counts = [sum(entity[1] == entity_type for entity in group) for group in (correct, predicted, gold)]
        precision, recall, f1 = _scores(*counts)
        per_type[entity_type] = {"precision": precision, "recall": recall, "f1": f1, "support": counts[2]}
    precision, recall, f1 = _scores(len(correct), len(predicted), len(gold))
    return {
        "micro_precision": precision,
        "micro_recall": recall,
        "micro_f1": f1,
        "accuracy": correct_tokens / num_tokens if num_tokens else 0.0,
        "per_type": per_type,
        "num_sentences": len(references),
    }
