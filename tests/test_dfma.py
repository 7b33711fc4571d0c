"""DFMA's own parts (the contract suite covers what every method shares)."""

import pytest
import torch
from method_contract import TINY_TEXT, build_model, encode, picture, row

from modeling_mre import PIPELINE_TASK, DFMAForRelationExtraction, MMIBForRelationExtraction


def dfma(processor, **overrides):
    return build_model(DFMAForRelationExtraction, processor, **overrides).eval()


def other_pictures(processor):
    return processor(text=["a b"] * 3, head=["a"] * 3, tail=["b"] * 3, images=[picture(7), None, picture(8)])[
        "pixel_values"
    ]


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
    assert outputs.level_weights.shape == (3, 3, pictures, 2)


def test_level_weights_weigh_chunks_of_one_level_each_and_read_the_pair(processor):
    model = dfma(processor, use_mutual_fusion=False)
    batch = encode(processor)
    visual = {key: batch[key] for key in ("pixel_values", "image_mask", "crop_pixel_values", "crop_mask")}
    with torch.no_grad():
        states, mask = model.pyramid_states(3, **visual)  # (batch, pictures, levels, P, bottleneck)
        pair = model.pair_embedding(batch["input_ids"])
        bias = torch.zeros(mask.shape)
        prompts = model.pyramid_prompts
        # Gates that give the second level everything: the prompts must not move when the first level does.
        prompts.gates.weight.zero_()
        prompts.gates.bias.copy_(torch.tensor([-30.0, 30.0] * prompts.num_layers))
        moved = states.clone()
        moved[:, :, 0] += 1.0
        first, weights = prompts(states, bias, pair)
        second, _ = prompts(moved, bias, pair)
        torch.testing.assert_close(second.keys, first.keys)
        assert (weights[..., 1] > 0.99).all()
        moved[:, :, 1] += 1.0
        assert not torch.allclose(prompts(moved, bias, pair)[0].keys, first.keys)
    # The gates read the entity pair: the same picture weighs its levels differently for another pair.
    model = dfma(processor, use_mutual_fusion=False)
    other_pair = processor(
        text=["obama visits berlin today with merkel"],
        head=["merkel"],
        tail=["today"],
        images=[picture(0)],
        crops=[[picture(2), picture(3)]],
    )
    with torch.no_grad():
        weights = model(**row(batch, 0)).level_weights
        assert not torch.allclose(model(**other_pair).level_weights, weights, atol=1e-4)


def test_an_absent_picture_leaves_the_text_encoder_as_it_is_alone(processor):
    model = dfma(processor, use_mutual_fusion=False)
    batch = encode(processor)
    visual = {key: batch[key] for key in ("pixel_values", "image_mask", "crop_pixel_values", "crop_mask")}
    with torch.no_grad():
        states, mask = model.pyramid_states(3, **visual)
        bias = torch.zeros(mask.shape).masked_fill(
            ~mask, torch.finfo(torch.float32).min
        )  # a gate of 1 where pictures exist
        alone = model.text_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        prompted = model.text_encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            visual_prefix=model.pyramid_prompts(states, bias, model.pair_embedding(batch["input_ids"]))[0],
        ).last_hidden_state
    torch.testing.assert_close(prompted[1], alone[1])  # the post without pictures
    assert not torch.allclose(prompted[0], alone[0])


def test_the_image_gate_is_zero_without_pictures_and_at_zero_leaves_the_text_alone(processor):
    batch = encode(processor)  # the second post has no picture
    for overrides in ({}, {"use_mutual_fusion": False}, {"use_pyramid_prompts": False}):
        model = dfma(processor, **overrides)
        with torch.no_grad():
            weights = model(**batch).image_weight
            assert weights[1] == 0.0 and (weights[[0, 2]] > 0).all(), overrides
            # The gate reads the pair: the same pictures, another pair, another weight.
            swapped = processor(
                text=["obama visits berlin today with merkel"],
                head=["merkel"],
                tail=["today"],
                images=[picture(0)],
                crops=[[picture(2), picture(3)]],
            )
            assert model(**swapped).image_weight[0] != weights[0], overrides
            text_only = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            assert not torch.allclose(model(**batch).logits[0], text_only[0], atol=1e-4)
            model.image_gate.bias.fill_(-1e4)  # a gate shut for every post: the text encoder alone
            shut = model(**batch)
        assert (shut.image_weight == 0).all()
        torch.testing.assert_close(shut.logits, text_only, atol=1e-5, rtol=1e-5)


def test_the_image_weight_reaches_the_pipeline_and_is_zero_without_an_image(processor, tmp_path):
    from transformers import pipeline

    from modeling_mre.hub import save_hub_folder

    save_hub_folder(dfma(processor), processor, tmp_path / "dfma")
    extract = pipeline(model=str(tmp_path / "dfma"), trust_remote_code=True)
    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    results = extract([example, {**example, "image": None}], batch_size=2, top_k=2)
    for result in results:  # one weight per post, whichever relation
        assert result[0]["image_weight"] == result[1]["image_weight"]
    assert results[0][0]["image_weight"] > 0 and results[1][0]["image_weight"] == 0.0
    post = extract(text="obama visits berlin today", entities=["obama", "berlin"])
    assert [pair["image_weight"] for pair in post] == [0.0, 0.0]
    mmib = pipeline(PIPELINE_TASK, model=build_model(MMIBForRelationExtraction, processor).eval(), processor=processor)
    assert "image_weight" not in mmib(example)[0]  # only methods that weigh the image say so


def test_each_module_can_be_switched_off(processor):
    batch = encode(processor)
    without_pfe = dfma(processor, use_pyramid_prompts=False)
    without_mmf = dfma(processor, use_mutual_fusion=False)
    assert not hasattr(without_pfe, "pyramid_prompts") and not hasattr(without_mmf, "fusion_layers")
    with torch.no_grad():
        for model in (without_pfe, without_mmf):  # each still reads the image through the other
            assert not torch.allclose(
                model(**batch).logits, model(**{**batch, "pixel_values": other_pictures(processor)}).logits
            )
        assert without_pfe(**batch).level_weights is None


def test_roberta_is_prefixed_and_an_encoder_that_cannot_be_gets_a_clear_error(processor):
    roberta = {
        **TINY_TEXT,
        "model_type": "roberta",
        "vocab_size": len(processor.tokenizer),
        "max_position_embeddings": 40,
    }
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
