"""
Image features computed once per distinct picture with a frozen vision encoder, then reused every epoch.

A frozen vision encoder (MMIB's, like HVPNeT's) gives a picture the same features at every step;
encoding the pictures again each epoch only repeats work. `add_image_features` keys every picture
of a dataset (whole image, object crop, object tail's crop) by a hash of its content, encodes each
distinct picture once into an `ImageFeatureCache` on disk (what the method declares it reads,
`visual_features`, flat as `get_image_features` gives it), and gives back the rows with the pictures'
keys in place of the pictures. `cache.stack(records)` batches them the way `MREProcessor` batches
pixels, and the model reads them as `image_features`, `crop_features` and `tail_features` instead of
pixels, with the same logits:

    dataset, cache = add_image_features(load_mnre("MNRE/"), model, processor)
    batch = processor(tokens=..., head=..., tail=...)          # text only
    batch.update(cache.stack(records))
    outputs = model(**batch)

A cache is a folder per vision encoder (its weights, the features it gives, the picture preparation
and the storage dtype): `cache.json`, then shards that each encoding pass writes whole, `<name>.keys`
(16-byte picture keys) beside `<name>.features` (their features, one row each), read memory-mapped.
MNRE's 12,247 training rows hold 7,356 images: stored per picture, a picture shared by several rows
(and its crops) is stored once, whatever the dataset, split or run that meets it again.
"""

import hashlib
import json
import os
import uuid
from pathlib import Path

import datasets
import numpy as np
import torch

from ..models.images_mre import center_box_to_corners, crop_to_box, load_image, normalised_box, processor_pixels


KEY_BYTES = 16
KEY_FEATURES = {"image_key": datasets.Value("string"), "crop_keys": datasets.List(datasets.Value("string"))}

# Pictures per vision-encoder call. On CPU a few at a time run fastest (MobileNetV2 on 2 cores: 1.5x
# the images per second of calls of 64, benchmarks/HISTORY.md); a GPU wants large calls.
CPU_ENCODING_BATCH_SIZE, GPU_ENCODING_BATCH_SIZE = 16, 256


def can_cache_image_features(model) -> bool:
    """Whether `model` reads pictures through a frozen vision encoder, whose features never change."""
    return model.pretrained_submodules().get("vision_encoder") == "frozen"


def _content_key(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=KEY_BYTES).hexdigest()


def _picture_key(image: dict | None) -> str | None:
    """The key of an undecoded `datasets.Image` value: a hash of its file's bytes; None for no picture."""
    if image is None:
        return None
    if image.get("bytes") is not None:
        return _content_key(image["bytes"])
    with open(image["path"], "rb") as file:
        return _content_key(file.read())


def _tail_key(image_key: str | None, tail_box) -> str | None:
    """An object tail's crop is its image's pixels inside its box: the key of both."""
    if image_key is None or tail_box is None:
        return None
    return _content_key(f"{image_key} tail {[float(value) for value in tail_box]}".encode())


def _keys_of_rows(batch, max_object_crops: int, object_tails: bool) -> dict[str, list]:
    """The keys of a batch of rows' pictures, from their undecoded storage (an Arrow table)."""
    image_keys = [_picture_key(image) for image in batch["image"].to_pylist()]
    keys = {
        "image_key": image_keys,
        # As the processor reads crops: the absent ones dropped, then the first max_object_crops.
        "crop_keys": [
            [_picture_key(crop) for crop in crops or [] if crop is not None][:max_object_crops]
            for crops in batch["crops"].to_pylist()
        ],
    }
    if object_tails:
        keys["tail_key"] = [_tail_key(key, box) for key, box in zip(image_keys, batch["tail_box"].to_pylist())]
    return keys


class ImageFeatureCache:
    """
    The features of distinct pictures under one vision encoder, stored once each in a folder and read
    memory-mapped (see the module's docstring for the layout). Open one with `for_model`, fill it with
    `add_image_features`; it pickles as its path, so DataLoader workers reopen it.

    Attributes:
        path (`Path`): the cache's folder.
        dtype (`np.dtype`): how features are stored (float16 or float32); they are read as float32.
        feature_size (`int`): values per picture, the model's `image_feature_size`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta = json.loads((self.path / "cache.json").read_text())
        self.dtype, self.feature_size = np.dtype(meta["dtype"]), meta["feature_size"]
        self._shards, self._shard_names, self._index = [], [], {}
        self.refresh()

    def __getstate__(self):
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    @classmethod
    def for_model(
        cls, model, processor, dtype: torch.dtype = torch.float16, cache_dir: str | os.PathLike | None = None
    ):
        """
        The cache of `model`'s frozen vision encoder with `processor`'s picture preparation, stored in
        `dtype`: under `cache_dir` (default: the `datasets` cache, `HF_DATASETS_CACHE`), in a folder
        named by a fingerprint of the vision weights, the features read and the preparation, created
        empty if new. A model whose features differ in any of these never reads another's cache.
        """
        if dtype not in (torch.float16, torch.float32):
            raise ValueError(f"image features are stored as torch.float16 or torch.float32, not {dtype}")
        root = (
            Path(cache_dir)
            if cache_dir is not None
            else Path(datasets.config.HF_DATASETS_CACHE) / "modeling_mre_image_features"
        )
        path = root / _fingerprint(model, processor, dtype)
        if not (path / "cache.json").is_file():
            path.mkdir(parents=True, exist_ok=True)
            meta = {
                "dtype": str(dtype).removeprefix("torch."),
                "feature_size": model.image_feature_size,
                "visual_features": model.visual_features,
                "model": type(model).__name__,
            }
            staged = path / f".cache.json.{uuid.uuid4().hex}"
            staged.write_text(json.dumps(meta, indent=2))
            os.replace(staged, path / "cache.json")  # processes creating it at once write the same
        return cls(path)

    def refresh(self):
        """Read the shards that other processes finished since this cache was opened."""
        for keys_file in sorted(self.path.glob("*.keys")):
            if keys_file.stem in self._shard_names:
                continue
            raw = keys_file.read_bytes()
            features_file = keys_file.with_suffix(".features")
            count = len(raw) // KEY_BYTES
            expected = count * self.feature_size * self.dtype.itemsize
            size = features_file.stat().st_size if features_file.is_file() else None
            if len(raw) % KEY_BYTES or size != expected:
                raise ValueError(
                    f"{features_file}: a shard of {count} pictures holds {expected} bytes of features, found {size}: "
                    "the cache was changed outside add_image_features; delete the folder to encode again"
                )
            shard = len(self._shards)
            self._shards.append(np.memmap(features_file, dtype=self.dtype, mode="r", shape=(count, self.feature_size)))
            self._shard_names.append(keys_file.stem)
            for row in range(count):
                self._index[raw[row * KEY_BYTES : (row + 1) * KEY_BYTES].hex()] = (shard, row)

    def features(self, keys: list[str]) -> np.ndarray:
        """The features of the pictures `keys`, `(len(keys), feature_size)` in float32."""
        out = np.empty((len(keys), self.feature_size), dtype=np.float32)
        for i, key in enumerate(keys):
            try:
                shard, row = self._index[key]
            except KeyError:
                raise KeyError(
                    f"picture {key} is not in the image feature cache {self.path}: these rows were keyed for "
                    "another cache; run add_image_features with this model and processor"
                ) from None
            out[i] = self._shards[shard][row]
        return out

    def stack(self, records: list[dict]) -> dict[str, torch.Tensor]:
        """
        `image_features` (batch, feature) with `image_mask` (batch,), `crop_features` (batch, crops,
        feature) with `crop_mask` (batch, crops) when any row has crops, and `tail_features` (batch,
        feature) when any row has an object tail's crop, for rows of `add_image_features`: absent
        pictures are zeros and masked out, as `MREProcessor` does with pixels; `{}` without any picture.
        """
        wholes = [record["image_key"] for record in records]
        crops = [record["crop_keys"] or [] for record in records]
        tails = [record.get("tail_key") for record in records]
        if not any(wholes) and not any(crops) and not any(tails):
            return {}
        image_features, image_mask = self._one_per_row(wholes)
        batch = {"image_features": image_features, "image_mask": image_mask}
        num_crops = max(len(keys) for keys in crops)
        if num_crops:
            crop_mask = torch.tensor([[j < len(keys) for j in range(num_crops)] for keys in crops])
            crop_features = torch.zeros(len(records), num_crops, self.feature_size)
            crop_features[crop_mask] = torch.from_numpy(self.features([key for keys in crops for key in keys]))
            batch.update(crop_features=crop_features, crop_mask=crop_mask)
        if any(tails):
            # Which rows' crop is real follows from tail_mask and image_mask, as with pixels.
            batch["tail_features"] = self._one_per_row(tails)[0]
        return batch

    def _one_per_row(self, keys: list[str | None]) -> tuple[torch.Tensor, torch.BoolTensor]:
        """Each row's picture features `(rows, feature)`, zeros where its key is None, and which rows have one."""
        present = torch.tensor([key is not None for key in keys])
        features = torch.zeros(len(keys), self.feature_size)
        features[present] = torch.from_numpy(self.features([key for key in keys if key is not None]))
        return features, present

    def _write_shard(self, pictures):
        """
        Append `(key, features)` pairs, in chunks, as one new shard: written to hidden files first and
        renamed into place when complete (the keys file last), so a killed pass leaves no shard at all.
        """
        name = f"{uuid.uuid4().hex}"
        features_tmp, keys_tmp = self.path / f".{name}.features", self.path / f".{name}.keys"
        written = 0
        try:
            with open(features_tmp, "wb") as features_out, open(keys_tmp, "wb") as keys_out:
                for keys, features in pictures:
                    stored = features.astype(self.dtype)
                    if not np.isfinite(stored).all():
                        raise ValueError(
                            f"image features of up to {np.abs(features).max():.3g} overflow {self.dtype}: "
                            "cache them with dtype=torch.float32"
                        )
                    features_out.write(np.ascontiguousarray(stored).tobytes())
                    keys_out.write(b"".join(bytes.fromhex(key) for key in keys))
                    written += len(keys)
                for out in (features_out, keys_out):
                    out.flush()
                    os.fsync(out.fileno())
            if written:
                os.replace(features_tmp, self.path / f"{name}.features")
                os.replace(keys_tmp, self.path / f"{name}.keys")
        finally:
            for leftover in (features_tmp, keys_tmp):
                leftover.unlink(missing_ok=True)
        self.refresh()


def _fingerprint(model, processor, dtype: torch.dtype) -> str:
    """Changes whenever the vision weights, the features read, the picture preparation or the storage change."""
    what = (
        model.visual_features,
        model.config.vision_feature_layers,
        model.config.vision_grid_size,
        model.feature_shapes(),
        model.pool_feature_tokens.__qualname__,
        str(dtype),
    )
    digest = hashlib.sha256(repr(what).encode())
    digest.update(processor.image_processor.to_json_string().encode())
    for name, tensor in model.vision_encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def add_image_features(
    dataset: datasets.Dataset | datasets.DatasetDict,
    model,
    processor,
    batch_size: int = 64,
    encoding_batch_size: int | None = None,
    dtype: torch.dtype = torch.float16,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[datasets.Dataset | datasets.DatasetDict, ImageFeatureCache]:
    """
    Encode every distinct picture of `dataset` (modeling_mre's record schema) with
    `model.get_image_features`, on the pixels `processor` prepares, into `model`'s
    `ImageFeatureCache` (see `ImageFeatureCache.for_model` for `dtype` and `cache_dir`), and give the
    rows back with `image_key` (None without an image) and `crop_keys` (one per kept crop), with
    object tails (MORE) `tail_key` (None without an image), in place of `image` and `crops`.

    A picture already in the cache, from this dataset, another split or an earlier run, is not encoded
    again; the rows' keys are cached by `datasets` like any `map`. `batch_size` rows are keyed at a
    time, and the new pictures are decoded, encoded and appended to disk `encoding_batch_size` at a
    time (default: 16 on CPU, 256 on a GPU), each chunk's features written before the next is encoded,
    so the pass holds a chunk or two whatever the dataset's size; the cache's index takes about 150
    bytes per distinct picture. At MNRE's full scale (ViT-B/32 levels, 36,268 pictures) the memory the
    pass allocated peaked 206 MiB above its start, against 174 MiB at 1/128 of it, and it completed in
    a 2 GiB memory limit (benchmarks/RESULTS.md). Its resident size grows further as it reads the rows: a
    file-backed dataset's Arrow files are memory-mapped, and their pages (pictures stored as bytes)
    count as resident until the kernel reclaims them, which it does under memory pressure.

    float16, the default, halves the disk of float32: every method's logits stay within 1e-3 of
    float32's (`tests/method_contract.py`; the embedded MobileNetV2's in benchmarks/RESULTS.md); pass
    `dtype=torch.float32` for the exact logits of the pixel path. A DatasetDict's splits share one cache.

    Raises:
        ValueError: the model reads no pictures, or its vision encoder is trained (its features would
            change every step); `can_cache_image_features` tells beforehand.
    """
    if not can_cache_image_features(model):
        raise ValueError(
            f"{type(model).__name__} reads no pictures through a frozen vision encoder (freeze_vision_encoder=False, "
            "or a text-only method): there are no fixed features to cache"
        )
    cache = ImageFeatureCache.for_model(model, processor, dtype, cache_dir)
    if isinstance(dataset, datasets.DatasetDict):
        splits = {
            name: _add_keys(part, model, processor, cache, batch_size, encoding_batch_size)
            for name, part in dataset.items()
        }
        return datasets.DatasetDict(splits), cache
    return _add_keys(dataset, model, processor, cache, batch_size, encoding_batch_size), cache


def _add_keys(dataset, model, processor, cache: ImageFeatureCache, batch_size: int, encoding_batch_size: int | None):
    object_tails = "tail_box" in dataset.column_names
    # Pictures as stored ({"bytes", "path"}), never decoded to be keyed: only new ones are decoded.
    pictures = dataset.select_columns(["image", "crops", *(["tail_box"] if object_tails else [])]).with_format("arrow")
    key_features = datasets.Features(KEY_FEATURES)
    if object_tails:
        key_features["tail_key"] = datasets.Value("string")
    keys = pictures.map(
        _keys_of_rows,
        batched=True,
        batch_size=batch_size,
        remove_columns=pictures.column_names,
        features=key_features,
        fn_kwargs={"max_object_crops": processor.max_object_crops, "object_tails": object_tails},
        new_fingerprint=hashlib.sha256(
            f"{dataset._fingerprint} keys {processor.max_object_crops}".encode()
        ).hexdigest()[:32],
        desc="Keying pictures",
    ).with_format(None)
    chunk_size = encoding_batch_size or (
        GPU_ENCODING_BATCH_SIZE if model.device.type == "cuda" else CPU_ENCODING_BATCH_SIZE
    )
    cache._write_shard(_encode_new_pictures(keys, pictures, model, processor, cache, batch_size, chunk_size))
    return datasets.concatenate_datasets([dataset.remove_columns(["image", "crops"]), keys], axis=1)


def _encode_new_pictures(keys, pictures, model, processor, cache, batch_size: int, chunk_size: int):
    """`(keys, features)` chunks of the pictures of the rows that the cache lacks, each encoded once."""
    pending, queued = [], set()  # (key, picture reader) to encode; keys met in this pass
    for start in range(0, len(keys), batch_size):
        rows = keys[start : start + batch_size]
        tail_keys = rows.get("tail_key", [None] * len(rows["image_key"]))

        def is_new(key):
            return key is not None and key not in cache and key not in queued

        needed = [
            row
            for row, (image_key, crop_keys, tail_key) in enumerate(
                zip(rows["image_key"], rows["crop_keys"], tail_keys)
            )
            if any(map(is_new, (image_key, *crop_keys, tail_key)))
        ]
        if not needed:
            continue
        # Only rows with a new picture read their pictures.
        refs = pictures[[start + row for row in needed]].to_pydict()
        for i, row in enumerate(needed):
            image, crops = refs["image"][i], [c for c in refs["crops"][i] or [] if c is not None]
            named = [(rows["image_key"][row], image, None)]
            named += [(key, crop, None) for key, crop in zip(rows["crop_keys"][row], crops)]
            if tail_keys[row] is not None:
                named.append((tail_keys[row], image, {"box": center_box_to_corners(refs["tail_box"][i])}))
            for key, picture, tail in named:
                if is_new(key):
                    queued.add(key)
                    pending.append((key, picture, tail))
            while len(pending) >= chunk_size:
                yield _encode(pending[:chunk_size], model, processor)
                del pending[:chunk_size]
    if pending:
        yield _encode(pending, model, processor)


def _encode(pending, model, processor) -> tuple[list[str], np.ndarray]:
    images = []
    for _, picture, tail in pending:
        image = load_image(picture)
        # As the processor crops an object tail from its image.
        images.append(crop_to_box(image, normalised_box(tail, image, "tail")) if tail is not None else image)
    pixels = processor_pixels(processor.image_processor, images)
    with torch.no_grad():
        features = model.get_image_features(pixels.to(model.device)).float().cpu().numpy()
    return [key for key, _, _ in pending], features
