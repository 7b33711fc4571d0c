"""
Nothing users rely on changes: model folders saved by modeling_mre before the method kit
(commit 9631927, `tests/fixtures/pre_kit/`) load in today's package and give the logits and losses
recorded then, in eval mode and in a seeded training-mode forward (MMIB samples its bottleneck).
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import modeling_mre
from modeling_mre import BaselineForRelationExtraction, MMIBForRelationExtraction


FIXTURES = Path(__file__).parent / "fixtures" / "pre_kit"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
CLASSES = {
    "baseline": BaselineForRelationExtraction,
    "mmib": MMIBForRelationExtraction,
    "mmib_object_tails": MMIBForRelationExtraction,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_folder_saved_before_the_kit_gives_its_recorded_logits_and_losses(name):
    # No remote code: the folder holds only config.json and weights, and the registered classes load it.
    model = AutoModel.from_pretrained(FIXTURES / name)
    assert type(model) is CLASSES[name]
    inputs = load_file(FIXTURES / "inputs.safetensors")
    expected = EXPECTED[name]
    batch = {key: inputs[key] for key in expected["inputs"]}

    model.eval()
    with torch.no_grad():
        outputs = model(**batch)
    torch.testing.assert_close(outputs.logits, torch.tensor(expected["eval_logits"]), atol=1e-5, rtol=0)
    for loss, value in expected["eval_losses"].items():
        assert outputs[loss].item() == pytest.approx(value, abs=1e-5), loss

    model.train()
    torch.manual_seed(1)
    outputs = model(**batch)
    torch.testing.assert_close(outputs.logits.detach(), torch.tensor(expected["train_logits"]), atol=1e-5, rtol=0)
    for loss, value in expected["train_losses"].items():
        assert outputs[loss].item() == pytest.approx(value, abs=1e-5), loss


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seeded_initialisation_is_unchanged(name):
    # The recorded eval logits came from `torch.manual_seed(0); Model(config)`: same draws, same weights.
    config = AutoModel.from_pretrained(FIXTURES / name).config
    torch.manual_seed(0)
    model = CLASSES[name](config).eval()
    inputs = load_file(FIXTURES / "inputs.safetensors")
    with torch.no_grad():
        logits = model(**{key: inputs[key] for key in EXPECTED[name]["inputs"]}).logits
    torch.testing.assert_close(logits, torch.tensor(EXPECTED[name]["eval_logits"]), atol=1e-5, rtol=0)


def test_the_public_api_is_importable_from_the_top_level():
    for name in (
        "load_mnre",
        "load_more",
        "compute_mre_metrics",
        "MREProcessor",
        "write_demo_dataset",
        "add_image_features",
        "save_hub_folder",
        "write_model_card",
        "register_method",
        "METHODS",
    ):
        assert hasattr(modeling_mre, name), name
    assert set(modeling_mre.__all__) <= set(dir(modeling_mre))
