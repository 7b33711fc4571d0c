"""Image features computed once with the frozen vision encoder give the logits of the pixel path."""

import argparse
import copy
import weakref

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from modeling_mre import BaselineConfig, BaselineForRelationExtraction, MMIBConfig, MMIBForRelationExtraction
from modeling_mre.data.feature_cache import ImageFeatureCache, add_image_features
from modeling_mre.data.schema import record_features
from modeling_mre.training import make_collate_fn


TEXT_CONFIG = dict(
    model_type="bert", vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
)
# MobileNetV2 has BatchNorm: features are only reusable because the frozen encoder stays in eval mode.
# At its default initializer_range a random MobileNetV2's features vanish (about 1e-24): these are O(1).
VISION_CONFIG = dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35, initializer_range=0.3)


def make_model(processor, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = MMIBConfig(
        text_config=TEXT_CONFIG,
        vision_config=VISION_CONFIG,
        num_labels=3,
        num_attention_heads=2,
        head_start_token_id=processor.head_start_token_id,
        tail_start_token_id=processor.tail_start_token_id,
        **kwargs,
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


def test_cached_features_give_the_logits_and_loss_of_pixels(processor, tmp_path):
    model = make_model(processor)
    dataset = make_dataset()
    cached, cache = add_image_features(
        dataset, model, processor, batch_size=3, dtype=torch.float32, cache_dir=tmp_path
    )
    assert "image" not in cached.column_names and "crops" not in cached.column_names
    assert cached[4]["image_key"] is None and len(cached[3]["crop_keys"]) == 3
    assert cached[0]["image_key"] == cached[2]["image_key"] != cached[3]["image_key"]

    with_pixels = make_collate_fn(processor, uses_images=True)(list(dataset))
    with_features = make_collate_fn(processor, uses_images=True, image_feature_cache=cache)(list(cached))
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


def test_cached_tail_crops_give_the_logits_of_pixels(processor, tmp_path):
    model = make_model(processor, object_tails=True).eval()
    encoded = count_encoded_pictures(model)
    dataset = make_object_tail_dataset()
    cached, cache = add_image_features(
        dataset, model, processor, batch_size=4, dtype=torch.float32, cache_dir=tmp_path
    )
    # The shared image is encoded once; each tail crop is its own picture (none without an image).
    assert sum(encoded) == 3 + 5
    assert cached[4]["tail_key"] is None and cached[1]["tail_key"] != cached[2]["tail_key"]
    with_pixels = make_collate_fn(processor, uses_images=True)(list(dataset))
    with_features = make_collate_fn(processor, uses_images=True, image_feature_cache=cache)(list(cached))
    assert "tail_pixel_values" in with_pixels and "tail_features" in with_features
    with torch.no_grad():
        torch.testing.assert_close(model(**with_features).logits, model(**with_pixels).logits)


def test_each_distinct_picture_is_encoded_and_stored_once(processor, tmp_path):
    model = make_model(processor)
    encoded = count_encoded_pictures(model)
    dataset = make_dataset()
    # Rows 0-2 share their image, across batches of 2 too; row 4 has none; all rows again, as MNRE
    # repeats a post's image and crops for each of its entity pairs.
    twice = datasets.concatenate_datasets([dataset, dataset])
    cached, cache = add_image_features(
        twice, model, processor, batch_size=2, encoding_batch_size=3, cache_dir=tmp_path
    )
    distinct = 1 + 3 + sum(len(c) for c in dataset["crops"])
    assert sum(encoded) == len(cache) == distinct
    assert max(encoded) <= 3  # new pictures go to the encoder and to disk a chunk at a time
    (shard,) = tmp_path.glob("*/*.features")
    assert shard.stat().st_size == distinct * model.image_feature_size * 2  # float16
    assert cached[0]["crop_keys"] == cached[len(dataset)]["crop_keys"] == []
    assert cached[3]["crop_keys"] == cached[len(dataset) + 3]["crop_keys"]


def test_the_pass_holds_features_of_a_chunk_or_two_however_many_pictures(processor, tmp_path):
    """The memory bound of `add_image_features`: each chunk's features go to disk before the next chunks are
    encoded, so as many are alive at 4x the distinct pictures as at 1x (a pass keeping them would hold 4x)."""

    def most_alive_and_chunks(num_rows):
        model = make_model(processor)
        alive, most, chunks = set(), [0], []
        original = model.get_image_features

        def tracked(pixel_values):
            # Features in memory of our own, so their lifetime is seen whatever tensors or arrays view them.
            memory = original(pixel_values).detach().numpy().copy()
            alive.add(id(memory))
            weakref.finalize(memory, alive.discard, id(memory))
            most[0] = max(most[0], len(alive))
            chunks.append(len(pixel_values))
            return torch.from_numpy(memory)

        model.get_image_features = tracked
        add_image_features(
            make_dataset(num_rows),
            model,
            processor,
            batch_size=2,
            encoding_batch_size=2,
            cache_dir=tmp_path / str(num_rows),
        )
        return most[0], len(chunks)

    (alive_1x, chunks_1x), (alive_4x, chunks_4x) = most_alive_and_chunks(8), most_alive_and_chunks(32)
    assert chunks_4x >= 4 * chunks_1x - 4 and chunks_1x >= 8  # 17 and 77 distinct pictures, 2 a chunk
    assert alive_1x == alive_4x <= 2


def test_a_later_run_encodes_only_pictures_it_has_not_met(processor, tmp_path):
    model = make_model(processor)
    dataset = make_dataset()
    first, cache = add_image_features(dataset.select(range(4)), model, processor, cache_dir=tmp_path)
    encoded = count_encoded_pictures(model)
    # A dataset sharing pictures with the first (another split, another run): only its new ones.
    splits = datasets.DatasetDict({"train": dataset.select(range(2, 7)), "validation": dataset.select(range(5, 7))})
    cached, same_cache = add_image_features(splits, model, processor, cache_dir=tmp_path)
    new_pictures = 2 + sum(len(c) for c in dataset["crops"][4:])  # rows 5 and 6 have images, row 4 has none
    assert sum(encoded) == new_pictures and len(same_cache) == len(cache) + new_pictures
    assert cached["train"][0]["image_key"] == first[2]["image_key"]
    for split in cached.values():  # every row's pictures are there
        same_cache.stack(list(split))


def test_features_are_reused_for_the_same_weights_dtype_and_preparation_only(processor, tmp_path):
    make_dataset().save_to_disk(tmp_path / "data")
    dataset = datasets.load_from_disk(tmp_path / "data")  # file-backed, as readers give
    first, cache = add_image_features(dataset, make_model(processor, seed=0), processor, cache_dir=tmp_path / "cache")

    same_weights = make_model(processor, seed=0)
    encoded = count_encoded_pictures(same_weights)
    again, same_cache = add_image_features(dataset, same_weights, processor, cache_dir=tmp_path / "cache")
    assert encoded == [] and same_cache.path == cache.path
    np.testing.assert_array_equal(
        same_cache.features([again[0]["image_key"]]), cache.features([first[0]["image_key"]])
    )

    for model, dtype in (
        (make_model(processor, seed=1), torch.float16),
        (make_model(processor, seed=0), torch.float32),
    ):
        encoded = count_encoded_pictures(model)
        _, other_cache = add_image_features(dataset, model, processor, dtype=dtype, cache_dir=tmp_path / "cache")
        assert sum(encoded) == len(other_cache) == len(cache) and other_cache.path != cache.path


def test_a_failed_encoding_pass_leaves_no_shard_and_the_next_completes(processor, tmp_path):
    model = make_model(processor)
    original = model.get_image_features
    calls = []

    def failing(pixel_values):
        calls.append(len(pixel_values))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(pixel_values)

    model.get_image_features = failing
    with pytest.raises(RuntimeError, match="killed"):
        add_image_features(make_dataset(), model, processor, encoding_batch_size=2, cache_dir=tmp_path / "cache")
    (folder,) = (tmp_path / "cache").iterdir()
    assert sorted(path.name for path in folder.iterdir()) == ["cache.json"]
    model.get_image_features = original
    cached, cache = add_image_features(
        make_dataset(), model, processor, encoding_batch_size=2, cache_dir=tmp_path / "cache"
    )
    cache.stack(list(cached))


def test_a_damaged_shard_is_named_and_a_copy_reopens_the_folder(processor, tmp_path):
    cached, cache = add_image_features(make_dataset(), make_model(processor), processor, cache_dir=tmp_path)
    reopened = copy.deepcopy(cache)  # through __getstate__/__setstate__, as pickling to DataLoader workers
    keys = [cached[3]["image_key"], *cached[3]["crop_keys"]]
    np.testing.assert_array_equal(reopened.features(keys), cache.features(keys))
    with pytest.raises(KeyError, match="is not in the image feature cache"):
        cache.features(["0" * 32])
    (shard,) = cache.path.glob("*.features")
    with open(shard, "r+b") as file:
        file.truncate(shard.stat().st_size - 2)
    with pytest.raises(ValueError, match=f"{shard}: a shard of"):
        ImageFeatureCache(cache.path)


def test_float16_storage_refuses_features_it_cannot_hold(processor, tmp_path):
    model = make_model(processor)
    original = model.get_image_features
    model.get_image_features = lambda pixel_values: original(pixel_values) * 1e6
    with pytest.raises(ValueError, match="overflow float16.*dtype=torch.float32"):
        add_image_features(make_dataset(), model, processor, cache_dir=tmp_path)
    _, cache = add_image_features(make_dataset(), model, processor, dtype=torch.float32, cache_dir=tmp_path)
    assert cache.dtype == np.float32


def test_stacking_rows_without_pictures(processor, tmp_path):
    _, cache = add_image_features(make_dataset(), make_model(processor), processor, cache_dir=tmp_path)
    assert cache.stack([{"image_key": None, "crop_keys": []}] * 2) == {}


def test_trained_vision_encoder_is_not_cached(processor, tmp_path):
    model = make_model(processor, freeze_vision_encoder=False)
    with pytest.raises(ValueError, match="no fixed features to cache"):
        add_image_features(make_dataset(), model, processor, cache_dir=tmp_path)


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
