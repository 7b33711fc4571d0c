"""The shared visual path on every vision backbone family and every kind of feature a method reads."""

import pytest
import torch

from modeling_mre import MREConfig, MREVisualModel

VISION_CONFIGS = {
    "clip_vision_model": dict(
        model_type="clip_vision_model", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, image_size=32, patch_size=8,
    ),
    "vit": dict(model_type="vit", hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                image_size=32, patch_size=8),
    "resnet": dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    "mobilenet_v2": dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35),
}
TEXT_CONFIG = dict(model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=37)
HIDDEN = 20


def probe(kind: str, vision: str, **config_kwargs) -> MREVisualModel:
    """A bare multimodal model reading `kind`: the visual path alone, as a method's __init__ builds it."""

    class Probe(MREVisualModel):
        config_class = MREConfig
        visual_features = kind

        def __init__(self, config):
            super().__init__(config)
            self.build_visual_path(HIDDEN)
            self.post_init()

    if kind == "levels":
        config_kwargs.setdefault("vision_feature_layers", [1, 2])
    config = MREConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIGS[vision], **config_kwargs)
    torch.manual_seed(0)
    return Probe(config).eval()


def pictures(batch_size=3, crops=2):
    torch.manual_seed(1)
    return {
        "pixel_values": torch.randn(batch_size, 3, 32, 32),
        "image_mask": torch.tensor([True, False, True]),
        "crop_pixel_values": torch.randn(batch_size, crops, 3, 32, 32),
        "crop_mask": torch.tensor([[True, False], [True, True], [False, False]]),
    }


@pytest.mark.parametrize("vision", sorted(VISION_CONFIGS))
@pytest.mark.parametrize("kind", ["pooled", "patches", "levels"])
def test_every_kind_on_every_backbone_family(kind, vision):
    model = probe(kind, vision, vision_grid_size=2)
    inputs = pictures()
    with torch.no_grad():
        features = model.get_image_features(inputs["pixel_values"])
        assert features.shape == (3, model.image_feature_size)
        visual = model.encode_images(3, **inputs)
        # The same slots from the features a frozen encoder's cache would hold.
        cached = model.encode_images(
            3,
            image_features=features,
            image_mask=inputs["image_mask"],
            crop_features=model.get_image_features(inputs["crop_pixel_values"].flatten(0, 1)).unflatten(0, (3, 2)),
            crop_mask=inputs["crop_mask"],
        )
    slots = 1 + 2  # whole image + two crops
    if kind == "levels":
        assert visual.states is None and visual.mask.shape == (3, slots)
        assert len(visual.levels) == 2
        for level, (tokens, channels) in zip(visual.levels, model.feature_shapes()):
            assert level.shape == (3, slots, tokens, channels)
            assert not level[1, 0].any() and not level[2, 1:].any()  # absent pictures are zeros
        for level, cached_level in zip(visual.levels, cached.levels):
            torch.testing.assert_close(level, cached_level)
    else:
        tokens = visual.tokens_per_slot
        assert tokens == (1 if kind == "pooled" else model.feature_shapes()[0][0])
        assert visual.states.shape == (3, slots * tokens, HIDDEN)
        mask = visual.mask.view(3, slots, tokens)
        # Example 1 has no image: only the "no image" token of its first slot is real.
        assert mask[1, 0, 0] and not mask[1, 0, 1:].any()
        torch.testing.assert_close(visual.states[1, 0], model.no_image_embedding.weight[0])
        assert mask[0, 0].all() and mask[0, 1].all() and not mask[0, 2].any() and not mask[2, 1:].any()
        torch.testing.assert_close(visual.states, cached.states)
    torch.testing.assert_close(visual.mask, cached.mask)


@pytest.mark.parametrize("vision", ["resnet", "mobilenet_v2"])
def test_cnn_maps_become_grid_tokens(vision):
    native = probe("patches", vision)
    pooled = probe("patches", vision, vision_grid_size=3)
    assert pooled.feature_shapes()[0][0] == 9
    assert native.feature_shapes()[0][1] == pooled.feature_shapes()[0][1]
    with torch.no_grad():
        assert pooled.get_image_features(torch.randn(2, 3, 32, 32)).shape == (2, pooled.image_feature_size)


def test_transformer_patches_keep_every_token():
    model = probe("patches", "vit")
    assert model.feature_shapes() == [((32 // 8) ** 2 + 1, 24)]  # patches and [CLS]


def test_levels_follow_the_configured_layers():
    model = probe("levels", "resnet", vision_feature_layers=[0, 1, 2], vision_grid_size=1)
    assert model.feature_shapes() == [(1, 8), (1, 8), (1, 16)]  # embedder, then each stage's channels
    assert not hasattr(model, "image_projection")  # a levels method projects each level itself


def test_pixels_are_cast_to_the_vision_encoders_dtype():
    model = probe("pooled", "mobilenet_v2").to(torch.bfloat16)
    with torch.no_grad():
        visual = model.encode_images(3, **pictures())
    assert visual.states.dtype == torch.bfloat16


def test_precomputed_features_of_the_wrong_kind_are_refused():
    model = probe("patches", "vit")
    with pytest.raises(ValueError, match=f"must have {model.image_feature_size} values"):
        model.encode_images(2, image_features=torch.randn(2, 24))  # pooled features for a patches reader


@pytest.mark.parametrize("kind", ["patches", "levels"])
def test_the_feature_cache_stores_what_the_method_reads(kind, processor):
    # The cache holds each picture's flat features of the declared kind; batched back, they give the
    # slots that the pixels give.
    from test_feature_cache import make_dataset

    from modeling_mre import add_image_features, stack_image_features

    model = probe(kind, "mobilenet_v2", vision_grid_size=2)
    dataset = make_dataset()
    cached = add_image_features(dataset, model, processor)
    assert len(cached[0]["image_features"]) == model.image_feature_size
    records = list(dataset)
    pixels = processor(
        tokens=[r["tokens"] for r in records], head=[r["head"] for r in records], tail=[r["tail"] for r in records],
        images=[r["image"] for r in records], crops=[r["crops"] for r in records],
    )
    visual_keys = ("pixel_values", "image_mask", "crop_pixel_values", "crop_mask")
    with torch.no_grad():
        from_pixels = model.encode_images(len(records), **{key: pixels[key] for key in visual_keys})
        from_cache = model.encode_images(len(records), **stack_image_features(list(cached)))
    torch.testing.assert_close(from_pixels.mask, from_cache.mask)
    for a, b in zip(from_pixels.levels or [from_pixels.states], from_cache.levels or [from_cache.states]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_reading_the_feature_shapes_leaves_a_trained_encoder_as_it_was():
    model = probe("patches", "mobilenet_v2", freeze_vision_encoder=False).train()
    statistics = {name: buffer.clone() for name, buffer in model.vision_encoder.named_buffers()}
    model.feature_shapes()
    assert model.vision_encoder.training
    for name, buffer in model.vision_encoder.named_buffers():
        torch.testing.assert_close(buffer, statistics[name], msg=name)
