"""Image features computed once with the frozen vision encoder give the logits of the pixel path."""

import argparse

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from modeling_mre import BaselineConfig, BaselineForRelationExtraction, MMIBConfig, MMIBForRelationExtraction
from modeling_mre.data.schema import record_features
from modeling_mre.data.feature_cache import add_image_features, stack_image_features
from modeling_mre.training import make_collate_fn

TEXT_CONFIG = dict(
    model_type="bert", vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
)
# MobileNetV2 has BatchNorm: features are only reusable because the frozen encoder stays in eval mode.
VISION_CONFIG = dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35)


def make_model(processor, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = MMIBConfig(
        text_config=TEXT_CONFIG, vision_config=VISION_CONFIG, num_labels=3, num_attention_heads=2,
        head_start_token_id=processor.head_start_token_id, tail_start_token_id=processor.tail_start_token_id, **kwargs,
    )
    return MMIBForRelationExtraction(config)


def picture(seed, size=(48, 40)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def make_dataset(num_rows=7):
    """Rows with a whole image (rows 0-2 share one), without one, and with 0 to 3 object crops."""
    rows = {name: [] for name in record_features(["None", "a", "b"])}
    for i in range(num_rows):
        image_id = "shared.jpg" if i < 3 else f"image_{i}.jpg"
        rows["id"].append(f"train-{i}")
        rows["tokens"].append(["obama", "visits", "berlin", "today"] if i % 2 else ["merkel", "with", "obama"])
        rows["head"].append({"name": "x", "start": 0, "end": 1})
        rows["tail"].append({"name": "y", "start": 2, "end": 3})
        rows["image"].append(None if i == 4 else picture(0 if i < 3 else i))
        rows["image_id"].append(image_id)
        rows["crops"].append([picture(100 + 10 * i + j, (20, 30)) for j in range(i % 4)])
        rows["relation"].append(i % 3)
    return datasets.Dataset.from_dict(rows, features=record_features(["None", "a", "b"]))


def count_encoded_pictures(model):
    """Wrap `model.get_image_features` to count the pictures it encodes."""
    encoded = []
    original = model.get_image_features

    def counting(pixel_values):
        encoded.append(len(pixel_values))
        return original(pixel_values)

    model.get_image_features = counting
    return encoded


def test_cached_features_give_the_logits_and_loss_of_pixels(processor):
    model = make_model(processor)
    dataset = make_dataset()
    cached = add_image_features(dataset, model, processor, batch_size=3)
    assert "image" not in cached.column_names and "crops" not in cached.column_names
    assert cached[4]["image_features"] is None and len(cached[3]["crop_features"]) == 3

    with_pixels = make_collate_fn(processor, uses_images=True)(list(dataset))
    with_features = make_collate_fn(processor, uses_images=True, cached_image_features=True)(list(cached))
    assert "pixel_values" not in with_features and "image_features" not in with_pixels
    torch.testing.assert_close(with_features["crop_mask"], with_pixels["crop_mask"])

    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**with_features).logits, model(**with_pixels).logits)
    # In training mode too: same sampling noise and dropout, same loss.
    model.train()
    torch.manual_seed(1)
    loss_with_pixels = model(**with_pixels).loss
    torch.manual_seed(1)
    torch.testing.assert_close(model(**with_features).loss, loss_with_pixels)


def make_object_tail_dataset():
    """MORE-like rows: object tails on a shared image (rows 0-2), on their own image, and without an image."""
    features = record_features(["None", "a", "b"], object_tails=True)
    rows = {name: [] for name in features}
    for i in range(6):
        rows["id"].append(f"train-{i}")
        rows["tokens"].append(["obama", "visits", "berlin"] if i % 2 else ["merkel", "with", "obama"])
        rows["head"].append({"name": "x", "start": 0, "end": 1})
        rows["tail"].append({"name": f"object_{i}", "start": None, "end": None})
        rows["tail_box"].append([0.3 + 0.05 * i, 0.5, 0.4, 0.6 - 0.05 * i])
        rows["tail_caption"].append(None)
        rows["image"].append(None if i == 4 else picture(0 if i < 3 else i))
        rows["image_id"].append("shared.jpg" if i < 3 else f"image_{i}.jpg")
        rows["crops"].append([])
        rows["relation"].append(i % 3)
    return datasets.Dataset.from_dict(rows, features=features)


def test_cached_tail_crops_give_the_logits_of_pixels(processor):
    model = make_model(processor, object_tails=True).eval()
    encoded = count_encoded_pictures(model)
    dataset = make_object_tail_dataset()
    cached = add_image_features(dataset, model, processor, batch_size=4)
    # The shared image is encoded once; each tail crop is its own picture (none without an image).
    assert sum(encoded) == 3 + 5
    assert cached[4]["tail_features"] is None and cached[1]["tail_features"] != cached[2]["tail_features"]
    with_pixels = make_collate_fn(processor, uses_images=True)(list(dataset))
    with_features = make_collate_fn(processor, uses_images=True, cached_image_features=True)(list(cached))
    assert "tail_pixel_values" in with_pixels and "tail_features" in with_features
    with torch.no_grad():
        torch.testing.assert_close(model(**with_features).logits, model(**with_pixels).logits)


def test_each_picture_is_encoded_once(processor):
    model = make_model(processor)
    encoded = count_encoded_pictures(model)
    dataset = make_dataset()
    # Rows 0-2 share their image, across map batches of 2 as well; row 4 has none.
    add_image_features(dataset, model, processor, batch_size=2)
    whole_images, crops = 1 + 3, sum(len(c) for c in dataset["crops"])
    assert sum(encoded) == whole_images + crops


def test_features_are_cached_on_disk_for_the_same_weights_only(processor, tmp_path):
    make_dataset().save_to_disk(tmp_path / "data")
    dataset = datasets.load_from_disk(tmp_path / "data")  # file-backed, as readers give
    first = add_image_features(dataset, make_model(processor, seed=0), processor)

    same_weights = make_model(processor, seed=0)
    encoded = count_encoded_pictures(same_weights)
    again = add_image_features(dataset, same_weights, processor)
    assert encoded == []
    assert again[0]["image_features"] == first[0]["image_features"]

    other_weights = make_model(processor, seed=1)
    encoded = count_encoded_pictures(other_weights)
    add_image_features(dataset, other_weights, processor)
    assert sum(encoded) > 0


def test_stack_image_features_without_pictures_is_empty():
    assert stack_image_features([{"image_features": None, "crop_features": []}] * 2) == {}
    only_crops = stack_image_features([{"image_features": None, "crop_features": [[1.0, 2.0]]}])
    assert only_crops["image_features"].shape == (1, 2) and not only_crops["image_mask"].any()
    torch.testing.assert_close(only_crops["crop_features"], torch.tensor([[[1.0, 2.0]]]))


def test_trained_vision_encoder_is_not_cached(processor):
    model = make_model(processor, freeze_vision_encoder=False)
    with pytest.raises(ValueError, match="no fixed features to cache"):
        add_image_features(make_dataset(), model, processor)


def test_pixels_and_features_cannot_be_mixed(processor):
    model = make_model(processor).eval()
    inputs = processor(text="obama visits berlin", head="obama", tail="berlin", images=picture(0))
    features = model.get_image_features(inputs["pixel_values"])
    with pytest.raises(ValueError, match="not both"):
        model(**inputs, image_features=features)
    with pytest.raises(ValueError, match="must have"):
        model(input_ids=inputs["input_ids"], image_features=features[:, :5])


def test_train_script_caches_exactly_when_the_vision_encoder_is_frozen(processor, train_script):
    frozen, trained = make_model(processor), make_model(processor, freeze_vision_encoder=False)

    text_only = BaselineForRelationExtraction(BaselineConfig(text_config=frozen.config.text_config, num_labels=5))

    def decide(flag, model):
        args = argparse.Namespace(cache_image_features=flag, method="m")
        return train_script.use_feature_cache(args, model)

    assert decide(None, frozen) and not decide(None, trained) and not decide(None, text_only)
    assert not decide(False, frozen)
    with pytest.raises(ValueError, match="frozen vision encoder"):
        decide(True, trained)
    assert train_script.parse_args(["--no_cache_image_features"]).cache_image_features is False
