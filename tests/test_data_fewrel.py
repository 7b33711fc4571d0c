import json

import pytest

from modeling_mre import load_fewrel


def instance(**overrides) -> dict:
    base = {
        "tokens": ["aspirin", "relieves", "the", "headache"],
        "h": ["aspirin", "C1", [[0]]],
        "t": ["the headache", "C2", [[2, 3]]],
    }
    base.update(overrides)
    return base


def write(tmp_path, data) -> str:
    path = tmp_path / "relations.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_rows_follow_the_record_schema_with_spans_from_the_token_indices(tmp_path):
    path = write(
        tmp_path,
        {"treats": [instance()], "causes": [instance(h=["headache", "C2", [[3]]], t=["aspirin", "C1", [[0]]])]},
    )
    dataset = load_fewrel(path, split="validation")
    assert dataset.features["relation"].names == ["treats", "causes"]  # file order
    first, second = dataset[0], dataset[1]
    assert first["id"] == "validation-treats-0" and first["image"] is None and first["crops"] == []
    assert first["head"] == {"name": "aspirin", "start": 0, "end": 1}
    assert first["tail"] == {"name": "the headache", "start": 2, "end": 4}
    assert second["relation"] == 1 and second["head"]["start"] == 3


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "not JSON"),
        ("[]", "expected a non-empty JSON object"),
        ({}, "expected a non-empty JSON object"),
        ({"treats": []}, "relation 'treats': expected a non-empty list of instances"),
        ({"treats": [instance(), "aspirin"]}, "relation 'treats', instance 1: expected an object"),
        ({"treats": [instance(tokens=[])]}, "instance 0, field 'tokens'"),
        (
            {"treats": [instance(h=["aspirin", "C1", [[0, 2]]])]},
            "instance 0, field 'h': token indices [0, 2] are not consecutive",
        ),
        (
            {"treats": [instance(t=["x", "C2", [[3, 4]]])]},
            "field 't': token indices [3, 4] are not consecutive indices of the 4 tokens",
        ),
        ({"treats": [instance(t=["x", "C2", []])]}, "field 't': expected [name, id, [[token indices], ...]]"),
        ({"treats": [instance(t=["aspirin", "C1", [[0]]])]}, "field 't': the tail is the same span as the head"),
    ],
)
def test_a_malformed_file_is_refused_naming_file_relation_and_instance(tmp_path, content, expected):
    path = write(tmp_path, content)
    with pytest.raises(ValueError) as error:
        load_fewrel(path)
    message = str(error.value)
    assert message.startswith(path) and expected in message
    assert len(message) < 400  # names the field, never quotes the file


def test_fewrel_2s_relation_sets_read_whole(zeroshot_dir):
    sizes = {"val_nyt.json": (25, 2500), "val_pubmed.json": (10, 1000), "val_semeval.json": (17, 8851)}
    for name, (relations, rows) in sizes.items():
        dataset = load_fewrel(zeroshot_dir / name)
        assert (len(dataset.features["relation"].names), len(dataset)) == (relations, rows)
        raw = json.loads((zeroshot_dir / name).read_text())
        for row in dataset.select(range(0, rows, 97)):
            relation = dataset.features["relation"].int2str(row["relation"])
            index = int(row["id"].rsplit("-", 1)[1])
            source = raw[relation][index]
            for role, key in (("head", "h"), ("tail", "t")):
                span = row[role]
                # The tokens' spelling; the file's name can differ in spacing only ("wilson's" for `wilson 's`).
                assert span["name"] == " ".join(source["tokens"][span["start"] : span["end"]])
                assert span["name"].replace(" ", "") == source[key][0].replace(" ", "")
