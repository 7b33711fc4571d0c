"""The zero-shot benchmark's reading of SemEval-2010 Task 8 (benchmarks/new_relations.py --zeroshot)."""

import importlib.util
from pathlib import Path

import pytest


SEMEVAL = Path(__file__).parents[1].parent / "shared" / "data" / "zeroshot" / "val_semeval.json"


@pytest.fixture(scope="module")
def new_relations():
    spec = importlib.util.spec_from_file_location(
        "new_relations", Path(__file__).parents[1] / "benchmarks" / "new_relations.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_two_directions_of_a_relation_swap_the_pair(new_relations):
    relations = new_relations.semeval_relations(
        ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Entity-Destination(e1,e2)"]
    )
    assert relations["Cause-Effect(e1,e2)"][0] == "{head} causes {tail}"
    assert relations["Cause-Effect(e2,e1)"] == [
        "{tail} causes {head}",
        "{head} is an effect of {tail}",
        "{tail} is an event or object that leads to {head}",
    ]
    assert new_relations.inverse("Cause-Effect(e2,e1)") == "Cause-Effect(e1,e2)"
    assert new_relations.inverse("Entity-Destination(e1,e2)") == "Entity-Destination(e2,e1)"  # not among the 17
    assert new_relations.macro_f1(["a", "a", "b"], ["a", "b", "b"], ["a", "b"]) == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_the_sample_holds_the_entities_at_their_offsets(new_relations):
    if not SEMEVAL.is_file():
        pytest.skip(
            f"SemEval-2010 Task 8 (FewRel's val_semeval.json) not found at {SEMEVAL} (research data, not shipped)"
        )
    sample = new_relations.semeval_sample(str(SEMEVAL), per_relation=3, seed=0)
    assert len(sample) == 17 * 3 and sample == new_relations.semeval_sample(str(SEMEVAL), per_relation=3, seed=0)
    assert set(new_relations.semeval_relations(sorted({row["relation"] for row in sample}))) == {
        row["relation"] for row in sample
    }
    first = sample[0]
    head, tail = first["text"][slice(*first["head"])], first["text"][slice(*first["tail"])]
    assert head and tail and head != tail and head == head.strip() and tail == tail.strip()


def test_a_filled_description_knows_where_each_entity_went():
    from relation_residual import filled

    text, head, tail = filled("{tail} is the capital of {head}, not {tail}", "France", "Paris")
    assert text == "Paris is the capital of France, not Paris"
    assert text[slice(*head)] == "France" and text[slice(*tail)] == "Paris" and tail == (0, 5)


def test_the_learned_pair_term_starts_at_the_untrained_cosine_and_then_moves():
    import torch
    from relation_residual import PairTerm

    torch.manual_seed(0)
    term = PairTerm(hidden=8, rank=4)
    sentences, candidates = torch.randn(3, 4, 8), torch.randn(3, 5, 3, 8)
    cosine = torch.nn.functional.cosine_similarity(sentences[:, None, 0], candidates[:, :, 0], dim=-1)
    torch.testing.assert_close(term(sentences, candidates, 0.05), cosine / 0.05)
    loss = torch.nn.functional.cross_entropy(term(sentences, candidates, 0.05), torch.tensor([1, 2, 3]))
    loss.backward()
    torch.optim.SGD(term.parameters(), lr=0.1).step()
    assert not torch.allclose(term(sentences, candidates, 0.05), cosine / 0.05)


def test_a_wikidata_definition_names_the_pair_and_drops_its_notes():
    from relation_retrieval import wikidata_definition

    assert wikidata_definition("subject has object as biological, foster, and/or adoptive child") == (
        "{head} has {tail} as biological, foster, and/or adoptive child"
    )
    assert (
        wikidata_definition("main creator(s) of a written work (use on works, not humans); use P2093 when unknown")
        == "{tail} is the main creator of a written work"
    )
    assert wikidata_definition("subject's ethnicity (consensus is that 1) the subject claims it") == (
        "{tail} is {head}'s ethnicity"
    )


def test_the_pair_term_trains_for_the_steps_asked_through_reshuffled_passes():
    import random

    from relation_residual import batches

    drawn = list(batches(list(range(10)), 4, random.Random(0), 5))
    assert len(drawn) == 5 and all(len(batch) == 4 for batch in drawn)  # 2 full batches a pass, 3 passes begun
    assert len(set(drawn[0] + drawn[1])) == 8 and len(set(drawn[2] + drawn[3])) == 8  # no row twice in a pass
