"""Length-grouped batches (`train_accelerate.py --group_by_length`)."""

import random

from modeling_mre.training import LengthGroupedSampler, example_lengths


def batches(sampler, batch_size):
    order = list(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(groups, lengths):
    return sum(len(group) * max(lengths[i] for i in group) for group in groups)


def test_batches_group_similar_lengths_and_cover_every_example_once():
    lengths = [random.Random(i).randint(8, 80) for i in range(1000)]
    sampler = LengthGroupedSampler(lengths, batch_size=32, seed=1)
    grouped = batches(sampler, 32)
    assert sorted(i for group in grouped for i in group) == list(range(1000))
    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    random_batches = [shuffled[i : i + 32] for i in range(0, 1000, 32)]
    # Padding to each batch's longest: far fewer tokens than random batches need.
    assert padded_tokens(grouped, lengths) < 0.7 * padded_tokens(random_batches, lengths)


def test_the_order_depends_on_seed_and_epoch_only():
    lengths = list(range(300))
    first, again = LengthGroupedSampler(lengths, 16, seed=5), LengthGroupedSampler(lengths, 16, seed=5)
    assert list(first) == list(again)  # a resumed run replays the epoch
    before = list(first)
    first.set_epoch(1)
    assert list(first) != before
    assert list(LengthGroupedSampler(lengths, 16, seed=6)) != before


def test_lengths_are_the_processors(processor):
    rows = {
        "tokens": [["obama", "visits", "berlin"], ["merkel", "with", "obama", "today", "in", "berlin"]],
        "head": [{"name": "obama", "start": 0, "end": 1}, {"name": "merkel", "start": 0, "end": 1}],
        "tail": [{"name": "berlin", "start": 2, "end": 3}, {"name": "berlin", "start": 5, "end": 6}],
    }
    import datasets

    lengths = example_lengths(datasets.Dataset.from_dict(rows), processor)
    encoded = processor(tokens=rows["tokens"], head=rows["head"], tail=rows["tail"])
    assert lengths == encoded["attention_mask"].sum(dim=1).tolist() and lengths[0] < lengths[1]
