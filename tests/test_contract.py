"""The method contracts (tests/method_contract.py, tests/ner_contract.py) over every registered method."""

import pytest
import torch
from method_contract import MethodContract
from ner_contract import NERMethodContract

from modeling_mre import METHODS, NER_METHODS


@pytest.fixture(params=sorted(METHODS))
def method_class(request):
    return METHODS[request.param]


@pytest.fixture(params=sorted(NER_METHODS))
def ner_class(request):
    return NER_METHODS[request.param]


class TestRegisteredMethods(MethodContract):
    pass


class TestRegisteredEntityRecognizers(NERMethodContract):
    pass


def test_registration_checks_the_declarations():
    from modeling_mre import BaselineConfig, MethodPaper, MMIBConfig, MREVisualModel, register_method
    from modeling_mre.models import BaselineForRelationExtraction

    class Nameless(BaselineForRelationExtraction):
        method_name = ""

    class Uncited(BaselineForRelationExtraction):
        method_name, paper = "uncited", None

    class Blind(MREVisualModel):  # reads pictures but does not say which features
        config_class, method_name, paper = MMIBConfig, "blind", MethodPaper(title="t")

    class Unweighted(BaselineForRelationExtraction):
        method_name, auxiliary_losses = "unweighted", {"extra_loss": "extra_loss_weight"}

    class Taken(BaselineForRelationExtraction):
        method_name = "mmib"

    class Unswitched(BaselineForRelationExtraction):  # an ablation needs a boolean switch that defaults on
        method_name, ablations = "unswitched", {"dropout": "classifier_dropout"}

    for model_class, message in (
        (Nameless, "declares no method_name"),
        (Uncited, "declares no paper"),
        (Blind, "declares visual_features"),
        (Unweighted, "not fields of BaselineConfig"),
        (Taken, "already registered"),
        (Unswitched, "must be boolean config fields defaulting to True"),
    ):
        with pytest.raises(ValueError, match=message):
            register_method(model_class)
    assert BaselineConfig.model_type == "mre-baseline" and set(METHODS) == {"baseline", "dfma", "mmib", "roc", "wmajl"}
    assert set(NER_METHODS) == {"baseline", "mmib"}  # entity recognizers register under their method's name


def test_unknown_visual_inputs_are_refused(processor):
    from method_contract import build_model, encode

    model = build_model(METHODS["mmib"], processor).eval()
    with pytest.raises(TypeError, match=r"unexpected visual inputs \['pixel_value'\]"):
        model(**{("pixel_value" if key == "pixel_values" else key): value for key, value in encode(processor).items()})


def test_wrong_argument_types_name_the_argument(processor):
    from method_contract import build_model
    from transformers import pipeline

    from modeling_mre import PIPELINE_TASK

    extract = pipeline(PIPELINE_TASK, model=build_model(METHODS["mmib"], processor).eval(), processor=processor)
    good = {"text": "obama visits berlin", "head": "obama", "tail": "berlin"}
    for bad, message in (
        ({**good, "text": 42}, "text must be a str, got int"),
        ({**good, "head": None}, "head must be a string, .* got NoneType"),
        ({**good, "image": 3.5}, "image must be a file path, .* got float"),
        ("obama visits berlin", "each input must be a dict"),
    ):
        with pytest.raises(TypeError, match=message):
            extract(bad)
    with pytest.raises(TypeError, match="top_k must be an int of at least 1, got '2' \\(str\\)"):
        extract(good, top_k="2")


def test_call_arguments_are_checked_before_any_work(processor):
    from method_contract import build_model
    from transformers import pipeline

    from modeling_mre import PIPELINE_TASK

    extract = pipeline(PIPELINE_TASK, model=build_model(METHODS["mmib"], processor).eval(), processor=processor)
    text = "obama visits berlin today"
    good = {"text": text, "head": "obama", "tail": "berlin"}
    # As transformers' text classification: no top_k is the best relation, top_k=None every relation.
    assert len(extract(good)) == 1
    everything = extract(good, top_k=None)
    assert len(everything) == extract.model.config.num_labels
    assert [r["score"] for r in everything] == sorted((r["score"] for r in everything), reverse=True)
    assert extract(good, top_k=2) == everything[:2]
    for arguments, error, message in (
        ({"threshold": "0.5"}, TypeError, "threshold must be a number in \\[0, 1\\], got '0.5' \\(str\\)"),
        ({"threshold": 1.5}, ValueError, "threshold must be a number in \\[0, 1\\], got 1.5"),
        ({"top_k": 3}, TypeError, "top_k applies to one pair"),
        ({"batch_size": 0}, ValueError, "batch_size must be an int of at least 1, got 0"),
    ):
        with pytest.raises(error, match=message):
            extract(text=text, entities=["obama", "berlin"], **arguments)
    # A whole post's argument given for one pair, or a misspelt one, is refused by name rather than ignored.
    with pytest.raises(TypeError, match="threshold filters the pairs of a whole post"):
        extract(good, threshold=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'topk'"):
        extract(good, topk=2)


def test_relation_names_and_placeholders_are_checked(processor):
    with pytest.raises(TypeError, match="relation names must be non-empty strings, got 1 \\(int\\)"):
        processor.encode_relations({1: "{head} founded {tail}"})
    with pytest.raises(
        ValueError, match="relation 'founded_by': its description names \\{haed\\}; .* only \\{head\\} and \\{tail\\}"
    ):
        processor.encode_relations(
            {"founded_by": ["{tail} founded {head}", "{haed} was founded by {tail}"]}, [("a", "b")]
        )
    assert processor.encode_relations({"founded_by": "{head} was founded by {tail}"}, [("a", "b")])[
        "relation_names"
    ] == ["founded_by"]


def test_processor_options_are_checked_by_name(processor):
    from modeling_mre import MNERProcessor, MREProcessor

    for cls, option, value, error in (
        (MREProcessor, "max_length", "128", TypeError),
        (MREProcessor, "max_object_crops", -1, ValueError),
        (MNERProcessor, "stride", 2.0, TypeError),
    ):
        with pytest.raises(error, match=f"{option} must be an int of at least"):
            cls(image_processor=processor.image_processor, tokenizer=processor.tokenizer, **{option: value})


def test_whole_posts_give_every_ordered_pair(processor, tmp_path):
    from method_contract import build_model, picture
    from transformers import BertConfig, BertForTokenClassification, pipeline

    from modeling_mre import PIPELINE_TASK

    extract = pipeline(PIPELINE_TASK, model=build_model(METHODS["mmib"], processor).eval(), processor=processor)
    text = "obama visits berlin today with merkel"
    post = extract(text=text, entities=["obama", "berlin", (31, 37), "today"], image=picture(0))
    assert len(post) == 12  # four entities: every ordered pair
    assert {(p["head"], p["tail"]) for p in post} == {
        (a, b)
        for a in ("obama", "berlin", "merkel", "today")
        for b in ("obama", "berlin", "merkel", "today")
        if a != b
    }
    first = post[0]
    assert text[slice(*first["head_offsets"])] == first["head"]
    alone = extract(text=text, head=first["head_offsets"], tail=first["tail_offsets"], image=picture(0))[0]
    assert (first["relation"], first["score"]) == (alone["relation"], pytest.approx(alone["score"], abs=1e-5))
    # threshold drops the pairs whose best relation scores under it
    kept = extract(text=text, entities=["obama", "berlin", "merkel"], image=picture(0), threshold=0.3)
    assert all(p["score"] >= 0.3 and p["relation"] != "None" for p in kept)
    assert len(kept) == sum(
        r["score"] >= 0.3 and r["relation"] != "None"
        for r in extract(text=text, entities=["obama", "berlin", "merkel"], image=picture(0))
    )

    # The entities from a token-classification model (a tiny random one, saved here).
    ner_config = BertConfig(
        vocab_size=processor.tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=20,
        num_labels=3,
        id2label={0: "O", 1: "B-ENT", 2: "I-ENT"},
        label2id={"O": 0, "B-ENT": 1, "I-ENT": 2},
    )
    ner = BertForTokenClassification(ner_config)
    with torch.no_grad():  # every word its own entity: B-ENT wins everywhere
        ner.classifier.weight.zero_()
        ner.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    ner.save_pretrained(tmp_path / "ner")
    processor.tokenizer.save_pretrained(tmp_path / "ner")
    found = pipeline("token-classification", model=str(tmp_path / "ner"), aggregation_strategy="simple")(text)
    spans = {(f["start"], f["end"]) for f in found}
    assert len(spans) == len(text.split())
    post = extract(text=text, ner_model=str(tmp_path / "ner"))
    assert len(post) == len(spans) * (len(spans) - 1)
    assert {p["head_offsets"] for p in post} <= spans
    with pytest.raises(TypeError, match="entities must be a list"):
        extract(text=text, entities="obama")


def test_whole_post_entities_once_and_ner_model_named(processor, tmp_path):
    from method_contract import build_model
    from transformers import pipeline

    from modeling_mre import PIPELINE_TASK
    from modeling_mre.hub import save_hub_folder

    model = build_model(METHODS["mmib"], processor).eval()
    extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
    text = "obama visits berlin today"
    # The same entity as a string and as its offsets is one entity: two entities, two ordered pairs.
    post = extract(text=text, entities=["obama", (0, 5), "berlin", (13, 19)])
    assert sorted((p["head_offsets"], p["tail_offsets"]) for p in post) == [((0, 5), (13, 19)), ((13, 19), (0, 5))]
    with pytest.raises(FileNotFoundError, match=f"ner_model '{tmp_path / 'absent'}' is not a model folder"):
        extract(text=text, ner_model=str(tmp_path / "absent"))
    save_hub_folder(model, processor, tmp_path / "relations")
    with pytest.raises(
        ValueError, match=f"is a relation extractor \\({PIPELINE_TASK}\\); ner_model needs an entity recognizer"
    ):
        extract(text=text, ner_model=str(tmp_path / "relations"))
