"""Models on tiny random configs: every supported backbone family, absent images, padding, freezing, save/load."""

import ast
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from transformers import AutoConfig, AutoModel, BertConfig, BertModel
from transformers.dynamic_module_utils import get_relative_import_files

from modeling_mre import (
    BaselineConfig,
    BaselineForRelationExtraction,
    MMIBConfig,
    MMIBForRelationExtraction,
)


HEAD, HEAD_END, TAIL, TAIL_END = 46, 47, 48, 49
TEXT_CONFIG = dict(
    model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
)
VISION_CONFIGS = {
    "clip_vision_model": dict(
        model_type="clip_vision_model",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    ),
    "vit": dict(
        model_type="vit",
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    ),
    "resnet": dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    "mobilenet_v2": dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35),
}


def mmib_config(vision="clip_vision_model", **kwargs):
    return MMIBConfig(
        text_config=TEXT_CONFIG,
        vision_config=VISION_CONFIGS[vision],
        num_labels=5,
        num_attention_heads=2,
        head_start_token_id=HEAD,
        tail_start_token_id=TAIL,
        **kwargs,
    )


def text_batch():
    # [CLS] <s> w </s> w <o> w </o> [SEP] [PAD]; the second row has the tail first and no padding.
    input_ids = torch.tensor(
        [[1, HEAD, 5, HEAD_END, 6, TAIL, 7, TAIL_END, 2, 0], [1, TAIL, 8, TAIL_END, 9, HEAD, 10, HEAD_END, 11, 2]]
    )
    attention_mask = (input_ids != 0).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize("vision", sorted(VISION_CONFIGS))
def test_mmib_trains_on_every_vision_backbone_family(vision):
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config(vision))
    batch = text_batch()
    outputs = model(
        **batch,
        pixel_values=torch.randn(2, 3, 32, 32),
        crop_pixel_values=torch.randn(2, 3, 3, 32, 32),
        crop_mask=torch.tensor([[True, False, False], [True, True, True]]),
        labels=torch.tensor([1, 0]),
    )
    assert outputs.logits.shape == (2, 5)
    assert outputs.pair_representation.shape == (2, 64)
    for name in ("classification_loss", "alignment_loss", "text_kl_loss", "image_kl_loss"):
        assert torch.isfinite(getattr(outputs, name)), name
    expected = outputs.classification_loss + outputs.alignment_loss + outputs.text_kl_loss + outputs.image_kl_loss
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert model.image_projection.weight.grad.abs().sum() > 0
    assert model.text_encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    # MMIB detaches its CNN: the frozen encoder gets no gradient and keeps its statistics.
    assert all(p.grad is None and not p.requires_grad for p in model.vision_encoder.parameters())
    assert not model.vision_encoder.training


def test_mmib_loss_weights_and_reduction_follow_the_config():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(
        mmib_config(
            alignment_loss_weight=0.5, text_kl_weight=0.0, image_kl_weight=2.0, classification_loss_reduction="mean"
        )
    ).eval()
    labels = torch.tensor([1, 0])
    outputs = model(**text_batch(), pixel_values=torch.randn(2, 3, 32, 32), labels=labels)
    torch.testing.assert_close(outputs.classification_loss, torch.nn.functional.cross_entropy(outputs.logits, labels))
    expected = outputs.classification_loss + 0.5 * outputs.alignment_loss + 2.0 * outputs.image_kl_loss
    torch.testing.assert_close(outputs.loss, expected)

    model.config.classification_loss_reduction = "sum"
    summed = model(**text_batch(), pixel_values=torch.randn(2, 3, 32, 32), labels=labels)
    torch.testing.assert_close(
        summed.classification_loss, torch.nn.functional.cross_entropy(summed.logits, labels, reduction="sum")
    )


def test_mmib_absent_image_is_not_a_blank_picture():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config()).eval()
    batch = text_batch()
    pixel_values = torch.randn(2, 3, 32, 32)
    absent = model(**batch, pixel_values=pixel_values, image_mask=torch.tensor([False, False])).logits
    # What the pixels of an absent image hold must not matter, and equals giving no pixels at all.
    absent_other_pixels = model(
        **batch, pixel_values=torch.zeros(2, 3, 32, 32), image_mask=torch.tensor([False, False])
    ).logits
    no_pixels = model(**batch).logits
    torch.testing.assert_close(absent, absent_other_pixels)
    torch.testing.assert_close(absent, no_pixels)
    present = model(**batch, pixel_values=pixel_values).logits
    assert not torch.allclose(present, absent)
    # Per example: the row with an image is the same as when the whole batch has images.
    mixed = model(**batch, pixel_values=pixel_values, image_mask=torch.tensor([True, False])).logits
    torch.testing.assert_close(mixed[0], present[0])
    torch.testing.assert_close(mixed[1], absent[1])


def test_mmib_output_does_not_depend_on_batch_padding():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config()).eval()
    batch = text_batch()
    pixel_values = torch.randn(2, 3, 32, 32)
    reference = model(**batch, pixel_values=pixel_values).logits
    padded_ids = torch.cat([batch["input_ids"], torch.zeros(2, 7, dtype=torch.long)], dim=1)
    padded = model(input_ids=padded_ids, attention_mask=(padded_ids != 0).long(), pixel_values=pixel_values).logits
    torch.testing.assert_close(padded, reference, atol=1e-5, rtol=1e-5)


def test_absent_crops_are_masked_out():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config()).eval()
    batch, pixel_values = text_batch(), torch.randn(2, 3, 32, 32)
    crops = torch.randn(2, 2, 3, 32, 32)
    no_crops = model(**batch, pixel_values=pixel_values).logits
    masked = model(
        **batch, pixel_values=pixel_values, crop_pixel_values=crops, crop_mask=torch.zeros(2, 2, dtype=torch.bool)
    ).logits
    torch.testing.assert_close(masked, no_crops)
    with_crops = model(**batch, pixel_values=pixel_values, crop_pixel_values=crops).logits
    assert not torch.allclose(with_crops, no_crops)


def test_each_example_is_independent_of_the_rest_of_the_batch():
    # Every visual slot (whole image, object tail, crops) must land on its own example: alone or
    # batched with others, an example gets the same logits.
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config(object_tails=True)).eval()
    batch = text_batch()
    pictures = {
        "pixel_values": torch.randn(2, 3, 32, 32),
        "image_mask": torch.tensor([True, True]),
        "crop_pixel_values": torch.randn(2, 2, 3, 32, 32),
        "crop_mask": torch.tensor([[True, False], [True, True]]),
        "tail_mask": torch.tensor([True, True]),
        "tail_box_features": torch.rand(2, 5),
        "tail_pixel_values": torch.randn(2, 3, 32, 32),
    }
    together = model(**batch, **pictures).logits
    for i in range(2):
        alone = model(**{k: v[i : i + 1] for k, v in {**batch, **pictures}.items()}).logits
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_object_tail_slot_reads_its_crop_and_its_box():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config(object_tails=True)).eval()
    batch, pixel_values = text_batch(), torch.randn(2, 3, 32, 32)
    tail = {"tail_mask": torch.tensor([True, True]), "tail_box_features": torch.rand(2, 5)}
    crops = torch.randn(2, 3, 32, 32)
    reference = model(**batch, pixel_values=pixel_values, tail_pixel_values=crops, **tail).logits
    other_crop = model(**batch, pixel_values=pixel_values, tail_pixel_values=crops.flip(0), **tail).logits
    other_box = model(
        **batch,
        pixel_values=pixel_values,
        tail_pixel_values=crops,
        tail_mask=tail["tail_mask"],
        tail_box_features=tail["tail_box_features"].flip(0),
    ).logits
    assert not torch.allclose(reference, other_crop) and not torch.allclose(reference, other_box)
    # Without its image the tail is placed by its box alone: the crop pixels are not read.
    no_image = torch.tensor([False, False])
    boxed = model(**batch, pixel_values=pixel_values, image_mask=no_image, tail_pixel_values=crops, **tail).logits
    boxed_other = model(
        **batch, pixel_values=pixel_values, image_mask=no_image, tail_pixel_values=crops.flip(0), **tail
    ).logits
    torch.testing.assert_close(boxed, boxed_other)
    torch.testing.assert_close(boxed, model(**batch, **tail).logits)
    # A text tail (tail_mask False) has no tail slot: the same as giving no tail inputs.
    text_tails = {"tail_mask": torch.tensor([False, False]), "tail_box_features": torch.zeros(2, 5)}
    torch.testing.assert_close(
        model(**batch, pixel_values=pixel_values, tail_pixel_values=crops, **text_tails).logits,
        model(**batch, pixel_values=pixel_values).logits,
    )
    with pytest.raises(ValueError, match="need their tail_box_features"):
        model(**batch, tail_mask=tail["tail_mask"])


def test_text_tail_model_has_no_object_tail_layers_and_refuses_object_tails():
    # Layers that MNRE's batches never reach would go untrained (and leave DDP waiting for their gradients).
    model = MMIBForRelationExtraction(mmib_config()).eval()
    assert not any("tail_box" in name for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="built for text tails only"):
        model(**text_batch(), tail_mask=torch.tensor([True, False]), tail_box_features=torch.rand(2, 5))


def test_object_tail_gets_gradients_to_its_layers():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config(object_tails=True)).train()
    outputs = model(
        **text_batch(),
        pixel_values=torch.randn(2, 3, 32, 32),
        tail_mask=torch.tensor([True, False]),
        tail_box_features=torch.rand(2, 5),
        tail_pixel_values=torch.randn(2, 3, 32, 32),
        labels=torch.tensor([1, 0]),
    )
    outputs.loss.backward()
    assert model.tail_box_projection.weight.grad.abs().sum() > 0


def test_sampling_only_in_training():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config())
    batch, pixel_values = text_batch(), torch.randn(2, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(
        model(**batch, pixel_values=pixel_values).logits, model(**batch, pixel_values=pixel_values).logits
    )
    model.train()
    first = model(**batch, pixel_values=pixel_values).logits
    second = model(**batch, pixel_values=pixel_values).logits
    assert not torch.allclose(first, second)
    assert not model.vision_encoder.training  # train() keeps the frozen encoder in eval mode


def test_unfrozen_vision_encoder_is_trained():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config("resnet", freeze_vision_encoder=False)).train()
    outputs = model(**text_batch(), pixel_values=torch.randn(2, 3, 32, 32), labels=torch.tensor([1, 0]))
    outputs.loss.backward()
    assert model.vision_encoder.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vision_encoder.parameters())


def test_baseline_reads_markers_and_ignores_images():
    torch.manual_seed(0)
    model = BaselineForRelationExtraction(
        BaselineConfig(text_config=TEXT_CONFIG, num_labels=5, head_start_token_id=HEAD, tail_start_token_id=TAIL)
    ).eval()
    assert model.config.vision_config is None
    batch = text_batch()
    outputs = model(**batch, labels=torch.tensor([1, 0]))
    hidden = model.text_encoder(**batch).last_hidden_state
    torch.testing.assert_close(outputs.pair_representation[0], torch.cat([hidden[0, 1], hidden[0, 5]]))
    torch.testing.assert_close(outputs.pair_representation[1], torch.cat([hidden[1, 5], hidden[1, 1]]))
    torch.testing.assert_close(model(**batch, pixel_values=torch.randn(2, 3, 32, 32)).logits, outputs.logits)


def test_missing_marker_is_a_clear_error():
    model = BaselineForRelationExtraction(
        BaselineConfig(text_config=TEXT_CONFIG, num_labels=5, head_start_token_id=HEAD, tail_start_token_id=TAIL)
    )
    with pytest.raises(ValueError, match=r"sequences \[1\] .* no <o> marker"):
        model(input_ids=torch.tensor([[1, HEAD, 5, TAIL, 2], [1, HEAD, 5, 6, 2]]))


def test_save_load_roundtrip_and_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config("mobilenet_v2")).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is MMIBForRelationExtraction
    assert type(AutoConfig.from_pretrained(tmp_path)) is MMIBConfig
    batch, pixel_values = text_batch(), torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        reloaded(**batch, pixel_values=pixel_values).logits, model(**batch, pixel_values=pixel_values).logits
    )


def test_from_backbones_loads_pretrained_encoder_weights(tmp_path):
    torch.manual_seed(0)
    text = BertModel(BertConfig(**{k: v for k, v in TEXT_CONFIG.items() if k != "model_type"}))
    text.save_pretrained(tmp_path / "text")
    vision = AutoModel.from_config(AutoConfig.for_model(**VISION_CONFIGS["resnet"]))
    vision.save_pretrained(tmp_path / "vision")
    model = MMIBForRelationExtraction.from_backbones(
        str(tmp_path / "text"),
        str(tmp_path / "vision"),
        num_labels=3,
        num_attention_heads=2,
        head_start_token_id=HEAD,
        tail_start_token_id=TAIL,
    )
    torch.testing.assert_close(
        model.text_encoder.embeddings.word_embeddings.weight, text.embeddings.word_embeddings.weight
    )
    assert model.text_encoder.pooler is None
    vision_weights = vision.state_dict()
    for name, tensor in model.vision_encoder.state_dict().items():
        torch.testing.assert_close(tensor, vision_weights[name])
    assert model.config.hidden_size == 32 and model.image_projection.in_features == 16


def test_text_projection_when_widths_differ():
    torch.manual_seed(0)
    model = MMIBForRelationExtraction(mmib_config(hidden_size=16))
    outputs = model(**text_batch(), pixel_values=torch.randn(2, 3, 32, 32))
    assert outputs.pair_representation.shape == (2, 32)
    with pytest.raises(StrictDataclassClassValidationError, match="not a multiple"):  # checked by the config
        mmib_config(hidden_size=15)


def test_config_fields_are_validated():
    # Typed fields, checked as transformers' own configs check theirs (huggingface_hub's @strict).
    with pytest.raises(StrictDataclassFieldValidationError, match="classification_loss_reduction"):
        MMIBConfig(classification_loss_reduction="max")
    with pytest.raises(StrictDataclassFieldValidationError, match="vision_feature_layers"):
        MMIBConfig(vision_feature_layers=[1.5])


def test_the_base_model_file_opens_with_the_contract_and_imports_no_pipeline_or_processor():
    # As in transformers, registration knows each task's processor and pipeline; the base sits below both.
    from modeling_mre.models import modeling_mre as base

    needed = {Path(path).name for path in get_relative_import_files(base.__file__)}
    assert not {name for name in needed if name.startswith(("pipeline_", "processing_"))}, needed
    definitions = [
        node
        for node in ast.parse(Path(base.__file__).read_text()).body
        if isinstance(node, (ast.ClassDef, ast.FunctionDef))
    ]
    names = [node.name for node in definitions]
    # Only small types (frozen dataclasses) come before the contract.
    for node in definitions[: names.index("MREPreTrainedModel")]:
        assert isinstance(node, ast.ClassDef) and "frozen=True" in ast.unparse(node.decorator_list), node.name
