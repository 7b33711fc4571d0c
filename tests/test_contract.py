"""The method contract (tests/method_contract.py) over every registered method."""

import pytest

from method_contract import MethodContract
from modeling_mre import METHODS


@pytest.fixture(params=sorted(METHODS))
def method_class(request):
    return METHODS[request.param]


class TestRegisteredMethods(MethodContract):
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

    for model_class, message in (
        (Nameless, "declares no method_name"),
        (Uncited, "declares no paper"),
        (Blind, "declares visual_features"),
        (Unweighted, "not fields of BaselineConfig"),
        (Taken, "already registered"),
    ):
        with pytest.raises(ValueError, match=message):
            register_method(model_class)
    assert BaselineConfig.model_type == "mre-baseline" and set(METHODS) == {"baseline", "mmib"}


def test_unknown_visual_inputs_are_refused(processor):
    from method_contract import build_model, encode

    model = build_model(METHODS["mmib"], processor).eval()
    with pytest.raises(TypeError, match=r"unexpected visual inputs \['pixel_value'\]"):
        model(**{("pixel_value" if key == "pixel_values" else key): value for key, value in encode(processor).items()})


def test_wrong_argument_types_name_the_argument(processor):
    from transformers import pipeline

    from method_contract import build_model
    from modeling_mre import PIPELINE_TASK

    extract = pipeline(PIPELINE_TASK, model=build_model(METHODS["mmib"], processor).eval(), processor=processor)
    good = {"text": "obama visits berlin", "head": "obama", "tail": "berlin"}
    for bad, message in (
        ({**good, "text": 42}, "text must be a str, got int"),
        ({**good, "head": None}, "head must be a string, .* got NoneType"),
        ({**good, "image": b"png bytes"}, "image must be a path, .* got bytes"),
        ("obama visits berlin", "each input must be a dict"),
    ):
        with pytest.raises(TypeError, match=message):
            extract(bad)
    with pytest.raises(TypeError, match="top_k must be an int, got str"):
        extract(good, top_k="2")
