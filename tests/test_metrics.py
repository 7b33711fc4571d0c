from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_mre.metrics import compute_mre_metrics


LABELS = ["None", "A", "B"]


def peers_eval_result(pred: list[int], gold: list[int], rel2id: dict[str, int]) -> dict[str, float]:
    """The OpenNRE-style loop of HVPNeT/MKGformer `eval_result`, transcribed as plainly as possible."""
    neg = -1
    for name in ["NA", "na", "no_relation", "Other", "Others", "none", "None"]:
        if name in rel2id:
            neg = rel2id[name]
            break
    correct = correct_positive = pred_positive = gold_positive = 0
    for golden, guess in zip(gold, pred, strict=True):
        if golden == guess:
            correct += 1
            if golden != neg:
                correct_positive += 1
        if golden != neg:
            gold_positive += 1
        if guess != neg:
            pred_positive += 1
    acc = correct / len(gold)
    micro_p = correct_positive / pred_positive if pred_positive else 0.0
    micro_r = correct_positive / gold_positive if gold_positive else 0.0
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    return {"acc": acc, "micro_p": micro_p, "micro_r": micro_r, "micro_f1": micro_f1}


def test_hand_computed_case():
    # gold  None None A A B B
    # pred  None A    A B B B
    # correct: #0 (None), #2 (A), #4, #5 (B) -> accuracy 4/6
    # predicted positive: #1..#5 = 5; gold positive: #2..#5 = 4; correct positive: #2, #4, #5 = 3
    # P = 3/5, R = 3/4, F1 = 2 * 0.6 * 0.75 / 1.35 = 2/3
    # A: predicted at #1, #2, tp #2, support 2 -> P 1/2, R 1/2, F1 1/2
    # B: predicted at #3, #4, #5, tp #4, #5, support 2 -> P 2/3, R 1, F1 0.8
    metrics = compute_mre_metrics([0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2], LABELS)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["micro_precision"] == pytest.approx(0.6)
    assert metrics["micro_recall"] == pytest.approx(0.75)
    assert metrics["micro_f1"] == pytest.approx(2 / 3)
    assert metrics["num_examples"] == 6
    assert metrics["per_relation"] == {
        "A": {"precision": pytest.approx(0.5), "recall": pytest.approx(0.5), "f1": pytest.approx(0.5), "support": 2},
        "B": {"precision": pytest.approx(2 / 3), "recall": pytest.approx(1.0), "f1": pytest.approx(0.8), "support": 2},
    }
    # rows gold (None, A, B), columns predicted
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]


def test_predicting_negative_is_never_a_true_positive():
    metrics = compute_mre_metrics([0, 0, 0], [0, 0, 0], LABELS)
    assert metrics["accuracy"] == 1.0
    # No positive predicted and none gold: every micro figure has a zero denominator.
    assert (metrics["micro_precision"], metrics["micro_recall"], metrics["micro_f1"]) == (0.0, 0.0, 0.0)
    assert metrics["per_relation"]["A"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_wrong_positive_costs_precision_and_recall():
    # Gold A A. Answering None on the second instance costs recall only...
    abstain = compute_mre_metrics([1, 0], [1, 1], LABELS)
    assert (abstain["micro_precision"], abstain["micro_recall"]) == (1.0, 0.5)
    # ...answering the wrong positive B costs both.
    wrong = compute_mre_metrics([1, 2], [1, 1], LABELS)
    assert (wrong["micro_precision"], wrong["micro_recall"]) == (0.5, 0.5)
    assert wrong["per_relation"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


@pytest.mark.parametrize(
    "labels, negative",
    [
        (["A", "none", "B"], "none"),
        (["NA", "None", "A"], "NA"),
        (["Other", "no_relation"], "no_relation"),
        (["A", "None"], "None"),
    ],
)
def test_negative_label_detection(labels, negative):
    references = list(range(len(labels)))
    metrics = compute_mre_metrics(references, references, labels)
    assert set(metrics["per_relation"]) == set(labels) - {negative}
    assert metrics["micro_f1"] == 1.0


def test_explicit_and_missing_negative_label():
    metrics = compute_mre_metrics([0, 1, 2], [0, 1, 1], ["A", "B", "C"], negative_label="C")
    assert set(metrics["per_relation"]) == {"A", "B"}
    assert (metrics["micro_precision"], metrics["micro_recall"]) == (1.0, 2 / 3)
    # No negative label at all: every label is positive, so micro P = R = accuracy (as in the peers' code).
    metrics = compute_mre_metrics([0, 1, 2], [0, 1, 1], ["A", "B", "C"])
    assert metrics["micro_precision"] == metrics["micro_recall"] == metrics["accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="negative_label 'X'"):
        compute_mre_metrics([0], [0], ["A"], negative_label="X")


def test_empty_and_invalid_inputs():
    metrics = compute_mre_metrics([], [], LABELS)
    assert metrics["num_examples"] == 0 and metrics["accuracy"] == 0.0 and metrics["micro_f1"] == 0.0
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        compute_mre_metrics([0, 1], [0, 1, 2], LABELS)
    with pytest.raises(ValueError, match="outside"):
        compute_mre_metrics([0, 3], [0, 1], LABELS)
    with pytest.raises(ValueError, match="one-dimensional"):
        compute_mre_metrics([[0, 1]], [[0, 1]], LABELS)


def test_array_and_tensor_inputs_agree():
    predictions, references = [0, 1, 1, 2, 2, 2], [0, 0, 1, 1, 2, 2]
    expected = compute_mre_metrics(predictions, references, LABELS)
    assert compute_mre_metrics(np.array(predictions), np.array(references), LABELS) == expected
    assert compute_mre_metrics(torch.tensor(predictions), torch.tensor(references), tuple(LABELS)) == expected
    assert all(isinstance(expected[key], float) for key in ("accuracy", "micro_precision", "micro_recall", "micro_f1"))


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=40).map(
            lambda pairs: (n, pairs)
        )
    )
)
def test_matches_peers_eval_result(case):
    num_labels, pairs = case
    labels = ["None"] + [f"/r/{i}" for i in range(1, num_labels)]
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    ours = compute_mre_metrics(predictions, references, labels)
    peers = peers_eval_result(predictions, references, {name: i for i, name in enumerate(labels)})
    assert ours["accuracy"] == pytest.approx(peers["acc"])
    assert ours["micro_precision"] == pytest.approx(peers["micro_p"])
    assert ours["micro_recall"] == pytest.approx(peers["micro_r"])
    assert ours["micro_f1"] == pytest.approx(peers["micro_f1"])
    assert sum(stats["support"] for stats in ours["per_relation"].values()) == sum(r != 0 for r in references)


@pytest.fixture(scope="module")
def evaluate_module():
    return evaluate.load(str(Path(__file__).parents[1] / "metrics" / "mre"))


@settings(max_examples=50, deadline=None, database=None)
@given(
    st.sampled_from([["None", "A", "B"], ["A", "none", "B"], ["NA", "None", "A"], ["A", "B", "C"]]),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), max_size=30),
    st.sampled_from([None, "B"]),
)
def test_evaluate_module_equals_the_function(evaluate_module, labels, pairs, negative_label):
    # Loaded offline from the repository folder; empty inputs, the negative-label search (None, none,
    # NA before None, no negative at all) and an explicit negative label included.
    if negative_label not in (None, *labels):
        negative_label = None
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    ours = evaluate_module.compute(
        predictions=predictions, references=references, label_names=labels, negative_label=negative_label
    )
    assert ours == compute_mre_metrics(predictions, references, labels, negative_label=negative_label)


def test_evaluate_module_accumulates_batches_and_names_what_is_missing(evaluate_module):
    evaluate_module.add_batch(predictions=[0, 1], references=[0, 0])
    evaluate_module.add(predictions=2, references=2)
    assert evaluate_module.compute(label_names=LABELS) == compute_mre_metrics([0, 1, 2], [0, 0, 2], LABELS)
    with pytest.raises(ValueError, match="outside"):
        evaluate_module.compute(predictions=[3], references=[1], label_names=LABELS)


def test_evaluate_module_computes_from_ids_alone_as_the_hub_widget_calls_it(evaluate_module):
    # The widget passes predictions and references only: ids name themselves and 0 is the negative class.
    ids = evaluate_module.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    assert ids == compute_mre_metrics([0, 1, 2, 2], [0, 1, 1, 2], ["0", "1", "2"], negative_label="0")
    assert ids["micro_f1"] == pytest.approx(2 / 3) and set(ids["per_relation"]) == {"1", "2"}
    other = evaluate_module.compute(predictions=[0, 1, 2], references=[0, 1, 1], negative_label=2)
    assert set(other["per_relation"]) == {"0", "1"}


def test_the_metric_folder_ships_the_package_metric_as_a_real_file():
    folder = Path(__file__).parents[1] / "metrics" / "mre"
    shipped = folder / "mre_metrics.py"
    assert not shipped.is_symlink()  # a git push of a symlink leaves it dangling on the Hub
    assert shipped.read_text() == (Path(__file__).parents[1] / "modeling_mre" / "metrics.py").read_text()


def test_the_mner_evaluate_module_is_the_package_metric():
    from modeling_mre import compute_ner_metrics

    folder = Path(__file__).parents[1] / "metrics" / "mner"
    shipped = folder / "entities_mner.py"
    assert not shipped.is_symlink()
    assert (
        shipped.read_text() == (Path(__file__).parents[1] / "modeling_mre" / "models" / "entities_mner.py").read_text()
    )
    module = evaluate.load(str(folder))
    predictions = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG"]]
    references = [["B-PER", "O", "O", "B-LOC"], ["B-ORG"]]
    module.add_batch(predictions=predictions[:1], references=references[:1])
    module.add(predictions=predictions[1], references=references[1])
    assert module.compute() == compute_ner_metrics(predictions, references)
