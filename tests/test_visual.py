"""The shared visual path on every vision backbone family and every kind of feature a method reads."""

import pytest
import torch
from torch import nn

from modeling_mre import MREConfig, MREVisualModel


VISION_CONFIGS = {
    "clip_vision_model": dict(
        model_type="clip_vision_model",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    ),
    "vit": dict(
        model_type="vit",
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    ),
    "resnet": dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    "mobilenet_v2": dict(
        model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35, initializer_range=0.3
    ),  # O(1) features
}
TEXT_CONFIG = dict(
    model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
)
HIDDEN = 20


def probe(kind: str, vision: str, **config_kwargs) -> MREVisualModel:
    """A bare multimodal model reading `kind`: the visual path alone, as a method's __init__ builds it."""

    class Probe(MREVisualModel):
        config_class = MREConfig
        visual_features = kind

        def __init__(self, config):
            super().__init__(config)
            self.build_visual_path(HIDDEN)
            if kind == "levels":  # as a levels method would: each level mapped by its own layer
                self.level_projections = nn.ModuleList(
                    nn.Linear(channels, HIDDEN) for _, channels in self.feature_shapes()
                )
            self.post_init()

        def project_pictures(self, levels):
            if kind != "levels":
                return super().project_pictures(levels)
            return torch.cat([project(level) for project, level in zip(self.level_projections, levels)], dim=2)

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
    tokens = visual.tokens_per_slot
    levels = model.feature_shapes()
    assert tokens == (1 if kind == "pooled" else sum(level_tokens for level_tokens, _ in levels))
    assert visual.states.shape == (3, slots * tokens, HIDDEN)
    assert visual.slot_mask.tolist() == [[True, True, False], [False, True, True], [True, False, False]]
    states, mask = visual.states.view(3, slots, tokens, HIDDEN), visual.mask.view(3, slots, tokens)
    assert not states[0, 2].any() and not states[2, 1:].any()  # absent crops are zeros, and masked
    assert mask[0, :2].all() and not mask[0, 2].any() and not mask[2, 1:].any()
    if kind == "levels":  # absence is the method's to read, from slot_mask
        assert not states[1, 0].any() and not mask[1, 0].any()
    else:  # example 1 has no image: only the "no image" token of its first slot is real
        assert mask[1, 0, 0] and not mask[1, 0, 1:].any()
        torch.testing.assert_close(states[1, 0, 0], model.no_image_embedding.weight[0])
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


def test_a_levels_method_must_map_its_levels():
    model = probe("levels", "resnet")
    with pytest.raises(NotImplementedError, match="override project_pictures"):
        MREVisualModel.project_pictures(model, ())


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
def test_the_feature_cache_stores_what_the_method_reads(kind, processor, tmp_path):
    # The cache holds each picture's flat features of the declared kind; batched back, they give the
    # slots that the pixels give.
    from test_feature_cache import make_dataset

    from modeling_mre import add_image_features

    model = probe(kind, "mobilenet_v2", vision_grid_size=2)
    dataset = make_dataset()
    cached, cache = add_image_features(dataset, model, processor, dtype=torch.float32, cache_dir=tmp_path)
    assert cache.feature_size == model.image_feature_size
    records = list(dataset)
    pixels = processor(
        tokens=[r["tokens"] for r in records],
        head=[r["head"] for r in records],
        tail=[r["tail"] for r in records],
        images=[r["image"] for r in records],
        crops=[r["crops"] for r in records],
    )
    visual_keys = ("pixel_values", "image_mask", "crop_pixel_values", "crop_mask")
    with torch.no_grad():
        from_pixels = model.encode_images(len(records), **{key: pixels[key] for key in visual_keys})
        from_cache = model.encode_images(len(records), **cache.stack(list(cached)))
    torch.testing.assert_close(from_pixels.mask, from_cache.mask)
    torch.testing.assert_close(from_pixels.states, from_cache.states, atol=1e-5, rtol=1e-5)


def test_reading_the_feature_shapes_leaves_a_trained_encoder_as_it_was():
    model = probe("patches", "mobilenet_v2", freeze_vision_encoder=False).train()
    statistics = {name: buffer.clone() for name, buffer in model.vision_encoder.named_buffers()}
    model.feature_shapes()
    assert model.vision_encoder.training
    for name, buffer in model.vision_encoder.named_buffers():
        torch.testing.assert_close(buffer, statistics[name], msg=name)


@pytest.mark.parametrize("kind", ["pooled", "patches", "levels"])
def test_an_object_tail_has_its_slot_with_or_without_its_crop(kind):
    # Example 0: an object tail with its image and crop; 1: an object tail without the image (its box
    # alone places it); 2: a text tail.
    model = probe(kind, "vit", object_tails=True)
    inputs = pictures()
    del inputs["crop_pixel_values"], inputs["crop_mask"]
    boxes = torch.rand(3, 5)
    inputs.update(
        tail_mask=torch.tensor([True, True, False]),
        tail_box_features=boxes,
        tail_pixel_values=torch.randn(3, 3, 32, 32),
    )
    with torch.no_grad():
        visual = model.encode_images(3, **inputs)
        box = model.tail_box_projection(boxes)
        crop = model.project_pictures(
            model.split_levels(model.get_image_features(inputs["tail_pixel_values"][:1])[None])
        )
    tokens = visual.tokens_per_slot
    states = visual.states.view(3, 2, tokens, HIDDEN)  # whole image, object tail
    assert visual.slot_mask.tolist() == [[True, True], [False, True], [True, False]]
    assert visual.mask.view(3, 2, tokens)[:, 1].tolist() == [[True] * tokens, [True] * tokens, [False] * tokens]
    torch.testing.assert_close(states[1, 1], box[1].expand(tokens, -1))  # the box, without a crop to add to
    torch.testing.assert_close(states[0, 1], crop[0, 0] + box[0])  # the crop's tokens plus the box
    assert not states[2, 1].any()
