"""DFMA's own parts (the contract suite covers what every method shares)."""

import pytest
import torch

from method_contract import TINY_TEXT, build_model, encode, picture
from modeling_mre import PIPELINE_TASK, DFMAForRelationExtraction, MMIBForRelationExtraction


def dfma(processor, **overrides):
    return build_model(DFMAForRelationExtraction, processor, **overrides).eval()


def other_pictures(processor):
    return processor(text=["a b"] * 3, head=["a"] * 3, tail=["b"] * 3, images=[picture(7), None, picture(8)])["pixel_values"]


def test_pyramid_prompts_reach_every_text_layer(processor, monkeypatch):
    from modeling_mre.models import modeling_dfma

    text_config = {**TINY_TEXT, "num_hidden_layers": 3, "vocab_size": len(processor.tokenizer)}
    model = dfma(processor, text_config=text_config, use_mutual_fusion=False)
    seen = []
    attend = modeling_dfma.visual_prefix_attention

    def spy(module, query, key, value, attention_mask, visual_prefix=None, **kwargs):
        seen.append((module.layer_idx, None if visual_prefix is None else visual_prefix.keys[module.layer_idx].shape))
        return attend(module, query, key, value, attention_mask, visual_prefix=visual_prefix, **kwargs)

    monkeypatch.setitem(modeling_dfma.AttentionInterface._global_mapping, modeling_dfma.PREFIX_ATTENTION, spy)
    batch = encode(processor)  # 3 posts: an image and 2 crops, nothing, an image and 1 crop
    with torch.no_grad():
        outputs = model(**batch)
        # Without MMF the image reaches the logits only through the prefix.
        assert not torch.allclose(outputs.logits, model(**{**batch, "pixel_values": other_pictures(processor)}).logits)
    pictures, prompt_length, heads = 1 + 2, model.config.prompt_length, TINY_TEXT["num_attention_heads"]
    assert seen[:3] == [(layer, (3, heads, pictures * prompt_length, 48 // heads)) for layer in range(3)]
    # level gates: per text layer and picture, a distribution over the pyramid's levels
    assert outputs.level_weights.shape == (3, 3, pictures, 2)
    torch.testing.assert_close(outputs.level_weights.sum(-1), torch.ones(3, 3, pictures))
    assert outputs.image_weight is None


def test_an_absent_picture_leaves_the_text_encoder_as_it_is_alone(processor):
    model = dfma(processor, use_mutual_fusion=False)
    batch = encode(processor)
    visual = {key: batch[key] for key in ("pixel_values", "image_mask", "crop_pixel_values", "crop_mask")}
    with torch.no_grad():
        alone = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        prompted = model.text_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            visual_prefix=model.pyramid_prompts(*model.pyramid_states(3, **visual))[0],
        ).last_hidden_state
    torch.testing.assert_close(prompted[1], alone[1])  # the post without pictures
    assert not torch.allclose(prompted[0], alone[0])


def test_the_balance_gate_is_returned_and_reaches_the_pipeline(processor):
    from transformers import pipeline

    model = dfma(processor)
    with torch.no_grad():
        outputs = model(**encode(processor))
    assert outputs.image_weight.shape == (3,) and ((outputs.image_weight > 0) & (outputs.image_weight < 1)).all()
    extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    results = extract([example, {**example, "image": None}], batch_size=2, top_k=2)
    for result in results:
        assert all(0 < r["image_weight"] < 1 for r in result) and result[0]["image_weight"] == result[1]["image_weight"]
    assert results[0][0]["image_weight"] != results[1][0]["image_weight"]
    post = extract(text="obama visits berlin today", entities=["obama", "berlin"], image=picture(0))
    assert all("image_weight" in pair for pair in post)
    mmib = pipeline(PIPELINE_TASK, model=build_model(MMIBForRelationExtraction, processor).eval(), processor=processor)
    assert "image_weight" not in mmib(example)[0]  # only methods that weigh the image say so


def test_each_module_can_be_switched_off(processor):
    batch = encode(processor)
    without_pfe = dfma(processor, use_pyramid_prompts=False)
    without_mmf = dfma(processor, use_mutual_fusion=False)
    assert not hasattr(without_pfe, "pyramid_prompts") and not hasattr(without_mmf, "fusion_layers")
    with torch.no_grad():
        for model in (without_pfe, without_mmf):  # each still reads the image through the other
            assert not torch.allclose(model(**batch).logits, model(**{**batch, "pixel_values": other_pictures(processor)}).logits)
        assert without_pfe(**batch).level_weights is None


def test_roberta_is_prefixed_and_an_encoder_that_cannot_be_gets_a_clear_error(processor):
    roberta = {**TINY_TEXT, "model_type": "roberta", "vocab_size": len(processor.tokenizer), "max_position_embeddings": 40}
    model = dfma(processor, text_config=roberta)
    with torch.no_grad():
        assert torch.isfinite(model(**encode(processor)).logits).all()
    mpnet = {**TINY_TEXT, "model_type": "mpnet", "vocab_size": len(processor.tokenizer)}
    with pytest.raises(ValueError, match=r"MPNetModel \(mpnet\) does not use: use a BERT-family encoder"):
        dfma(processor, text_config=mpnet)
    dfma(processor, text_config=mpnet, use_pyramid_prompts=False)  # MMF alone needs no prefix


def test_default_pyramid_of_the_embedded_mobilenet():
    from transformers import AutoModel

    from modeling_mre import embedded_vision_backbone
    from modeling_mre.models.modeling_dfma import pyramid_layers

    encoder = AutoModel.from_pretrained(embedded_vision_backbone()).eval()
    layers = pyramid_layers(encoder, 224)
    with torch.no_grad():
        states = encoder(pixel_values=torch.zeros(1, 3, 224, 224), output_hidden_states=True).hidden_states
    sizes = [states[layer].shape[-1] for layer in layers]
    assert sizes == [56, 28, 14, 7] and len(layers) == 4
    # each level is the deepest state at its resolution
    assert all(layer + 1 == len(states) or states[layer + 1].shape[-1] != states[layer].shape[-1] for layer in layers)
