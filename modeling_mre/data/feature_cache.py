"""
Image features computed once per image with a frozen vision encoder, then reused every epoch.

A frozen vision encoder (MMIB's, like HVPNeT's) gives a picture the same features at every step;
encoding the pictures again each epoch only repeats work. `add_image_features` encodes every
picture of a dataset once into what the method declares it reads (`visual_features`: pooled
vectors, patch tokens or per-level features, flat as `get_image_features` gives them) and stores
them as columns; `stack_image_features` batches them the way `MREProcessor` batches pixels, and the
model reads them as `image_features` and `crop_features` instead of `pixel_values` and
`crop_pixel_values`, with the same logits:

    dataset = add_image_features(load_mnre("MNRE/"), model, processor)
    batch = processor(tokens=..., head=..., tail=...)          # text only
    batch.update(stack_image_features(records))
    outputs = model(**batch)
"""

import hashlib

import datasets
import numpy as np
import torch

from ..models.processing_mre import picture_inputs, record_tail


def can_cache_image_features(model) -> bool:
    """Whether `model` reads pictures through a frozen vision encoder, whose features never change."""
    return model.pretrained_submodules().get("vision_encoder") == "frozen"


def _fingerprint(dataset: datasets.Dataset, model, processor) -> str:
    """Changes whenever the rows, the vision weights, the features read or the picture preparation change."""
    what = (model.visual_features, model.config.vision_feature_layers, model.config.vision_grid_size)
    digest = hashlib.sha256(f"{dataset._fingerprint} {processor.max_object_crops} {what}".encode())
    digest.update(processor.image_processor.to_json_string().encode())
    for name, tensor in model.vision_encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


# Pictures per vision-encoder call. On CPU a few at a time run fastest (MobileNetV2 on 2 cores: 1.5x
# the images per second of calls of 64, benchmarks/RESULTS.md); a GPU wants large calls.
CPU_ENCODING_BATCH_SIZE, GPU_ENCODING_BATCH_SIZE = 16, 256


def add_image_features(
    dataset: datasets.Dataset | datasets.DatasetDict,
    model,
    processor,
    batch_size: int = 64,
    encoding_batch_size: int | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """
    Replace the `image` and `crops` columns of `dataset` (modeling_mre's record schema) by
    `image_features` (a list of `model.image_feature_size` floats, None without an image) and `crop_features`
    (one such list per kept crop), computed with `model.get_image_features` on the pixels that
    `processor` prepares, in float32, without gradients; with object tails (MORE) also
    `tail_features`, the feature of each tail's crop (None without an image). Rows sharing an
    `image_id` have their whole image encoded once. The new columns are cached by `datasets` under a
    fingerprint of the rows, the vision weights and the image preparation, so a later run on the
    same files reads them from disk. `batch_size` rows are prepared at a time; their pictures go
    through the vision encoder `encoding_batch_size` at a time (default: 16 on CPU, 256 on a GPU).

    Raises:
        ValueError: the model reads no pictures, or its vision encoder is trained (its features would
            change every step); `can_cache_image_features` tells beforehand.
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {
                split: add_image_features(part, model, processor, batch_size, encoding_batch_size)
                for split, part in dataset.items()
            }
        )
    if not can_cache_image_features(model):
        raise ValueError(
            f"{type(model).__name__} reads no pictures through a frozen vision encoder (freeze_vision_encoder=False, "
            "or a text-only method): there are no fixed features to cache"
        )

    device = model.device
    chunk_size = encoding_batch_size or (GPU_ENCODING_BATCH_SIZE if device.type == "cuda" else CPU_ENCODING_BATCH_SIZE)
    seen = {}  # image_id -> feature of a whole image already encoded
    object_tails = "tail_box" in dataset.column_names

    def encode(batch):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        # An empty or missing image_id identifies nothing: such rows are encoded one by one.
        keys = [row.get("image_id") or None for row in rows]
        images, encode_whole, pending = [], [], set()
        for key, row in zip(keys, rows):
            repeated = key is not None and (key in seen or key in pending)
            # An object tail's crop is cut from its image, so that image is read even when repeated.
            images.append(None if repeated and row.get("tail_box") is None else row["image"])
            encode_whole.append(row["image"] is not None and not repeated)
            if key is not None and row["image"] is not None:
                pending.add(key)
        if object_tails:  # the processor places each tail's box in its picture
            inputs = processor(
                tokens=batch["tokens"], head=batch["head"], tail=[record_tail(row) for row in rows], images=images,
                crops=batch["crops"],
            )
        else:  # the pictures alone, whatever the task: rows to tag (MNER) have no head and tail
            inputs = picture_inputs(processor.image_processor, images, batch["crops"], [None] * len(rows), processor.max_object_crops)
        pictures, image_rows, crop_rows, tail_rows = [], [], [], []
        if "pixel_values" in inputs:
            image_rows = [row for row in range(len(rows)) if encode_whole[row]]
            pictures.append(inputs["pixel_values"][image_rows])
        if "crop_mask" in inputs:
            crop_rows = inputs["crop_mask"].nonzero()[:, 0].tolist()
            pictures.append(inputs["crop_pixel_values"][inputs["crop_mask"]])
        if "tail_pixel_values" in inputs:
            tail_rows = (inputs["tail_mask"] & inputs["image_mask"]).nonzero().flatten().tolist()
            pictures.append(inputs["tail_pixel_values"][tail_rows])
        features = []
        if pictures:
            with torch.no_grad():
                pictures = torch.cat(pictures)
                features = np.concatenate([
                    model.get_image_features(chunk.to(device)).float().cpu().numpy()
                    for chunk in pictures.split(chunk_size)
                ])

        image_features = [None] * len(rows)
        for row, feature in zip(image_rows, features):
            image_features[row] = feature
            if keys[row] is not None:
                seen[keys[row]] = feature
        for row, image in enumerate(batch["image"]):
            if image is not None and image_features[row] is None:
                image_features[row] = seen[keys[row]]
        crop_features = [[] for _ in rows]
        for row, feature in zip(crop_rows, features[len(image_rows) :]):
            crop_features[row].append(feature)
        encoded = {"image_features": image_features, "crop_features": crop_features}
        if object_tails:
            encoded["tail_features"] = [None] * len(rows)
            for row, feature in zip(tail_rows, features[len(image_rows) + len(crop_rows) :]):
                encoded["tail_features"][row] = feature
        return encoded

    features = datasets.Features({k: v for k, v in dataset.features.items() if k not in ("image", "crops")})
    features["image_features"] = datasets.List(datasets.Value("float32"))
    features["crop_features"] = datasets.List(datasets.List(datasets.Value("float32")))
    if object_tails:
        features["tail_features"] = datasets.List(datasets.Value("float32"))
    return dataset.map(
        encode,
        batched=True,
        batch_size=batch_size,
        remove_columns=["image", "crops"],
        features=features,
        new_fingerprint=_fingerprint(dataset, model, processor),
        desc="Encoding images once",
    )


def stack_image_features(records: list[dict]) -> dict[str, torch.Tensor]:
    """
    `image_features` (batch, feature) with `image_mask` (batch,), `crop_features` (batch, crops,
    feature) with `crop_mask` (batch, crops) when any row has crops, and `tail_features` (batch,
    feature) when any row has an object tail's crop, from rows of `add_image_features`: absent
    pictures are zeros and masked out, as `MREProcessor` does with pixels, and a batch without any
    picture gives `{}`.
    """
    wholes = [record["image_features"] for record in records]
    crops = [record["crop_features"] or [] for record in records]
    tails = [record.get("tail_features") for record in records]
    present = [feature for feature in wholes if feature is not None]
    some_feature = next((f for f in [*present, *(c[0] for c in crops if c), *tails] if f is not None), None)
    if some_feature is None:
        return {}
    feature_size = len(some_feature)
    image_mask = torch.tensor([feature is not None for feature in wholes])
    image_features = torch.zeros(len(records), feature_size)
    if present:
        image_features[image_mask] = torch.from_numpy(np.asarray(present, dtype=np.float32))
    batch = {"image_features": image_features, "image_mask": image_mask}
    num_crops = max(len(c) for c in crops)
    if num_crops:
        crop_mask = torch.tensor([[j < len(c) for j in range(num_crops)] for c in crops])
        crop_features = torch.zeros(len(records), num_crops, feature_size)
        crop_features[crop_mask] = torch.from_numpy(np.asarray([f for c in crops for f in c], dtype=np.float32))
        batch.update(crop_features=crop_features, crop_mask=crop_mask)
    if any(tail is not None for tail in tails):
        # Which rows' crop is real follows from tail_mask and image_mask, as with pixels.
        batch["tail_features"] = torch.from_numpy(
            np.asarray([tail if tail is not None else np.zeros(feature_size) for tail in tails], dtype=np.float32)
        )
    return batch
