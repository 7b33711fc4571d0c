"""
Image features computed once per image with a frozen vision encoder, then reused every epoch.

MMIB (like HVPNeT) never updates its vision encoder, so an image's pooled feature is the same at
every step; encoding the pictures again each epoch only repeats work. `add_image_features` encodes
every picture of a dataset once and stores the features as columns; `stack_image_features` batches
them the way `MREProcessor` batches pixels, and the model reads them as `image_features` and
`crop_features` instead of `pixel_values` and `crop_pixel_values`, with the same logits:

    dataset = add_image_features(load_mnre("MNRE/"), model, processor)
    batch = processor(tokens=..., head=..., tail=...)          # text only
    batch.update(stack_image_features(records))
    outputs = model(**batch)
"""

import hashlib

import datasets
import numpy as np
import torch


def _fingerprint(dataset: datasets.Dataset, model, processor) -> str:
    """Changes whenever the rows, the vision weights or the picture preparation change."""
    digest = hashlib.sha256(f"{dataset._fingerprint} {processor.max_object_crops}".encode())
    digest.update(processor.image_processor.to_json_string().encode())
    for name, tensor in model.vision_encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def add_image_features(
    dataset: datasets.Dataset | datasets.DatasetDict, model, processor, batch_size: int = 64
) -> datasets.Dataset | datasets.DatasetDict:
    """
    Replace the `image` and `crops` columns of `dataset` (modeling_mre's record schema) by
    `image_features` (a list of `feature_size` floats, None without an image) and `crop_features`
    (one such list per kept crop), computed with `model.get_image_features` on the pixels that
    `processor` prepares, in float32, without gradients. Rows sharing an `image_id` are encoded
    once. The new columns are cached by `datasets` under a fingerprint of the rows, the vision
    weights and the image preparation, so a later run on the same files reads them from disk.

    Raises:
        ValueError: the model's vision encoder is trained (its features would change every step).
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: add_image_features(part, model, processor, batch_size) for split, part in dataset.items()}
        )
    if not model.config.freeze_vision_encoder:
        raise ValueError("the vision encoder is trained (freeze_vision_encoder=False): its features cannot be cached")

    seen = {}  # image_id -> feature of a whole image already encoded
    device = model.device

    def encode(batch):
        # An empty or missing image_id identifies nothing: such rows are encoded one by one.
        keys = [key or None for key in batch.get("image_id", [None] * len(batch["image"]))]
        images, pending = [], set()
        for key, image in zip(keys, batch["image"]):
            repeated = key is not None and (key in seen or key in pending)
            images.append(None if repeated else image)
            if key is not None and image is not None:
                pending.add(key)
        inputs = processor(
            tokens=batch["tokens"], head=batch["head"], tail=batch["tail"], images=images, crops=batch["crops"]
        )
        pictures, image_rows, crop_rows = [], [], []
        if "pixel_values" in inputs:
            image_rows = inputs["image_mask"].nonzero().flatten().tolist()
            pictures.append(inputs["pixel_values"][image_rows])
        if "crop_mask" in inputs:
            crop_rows = inputs["crop_mask"].nonzero()[:, 0].tolist()
            pictures.append(inputs["crop_pixel_values"][inputs["crop_mask"]])
        features = []
        if pictures:
            with torch.no_grad():
                features = model.get_image_features(torch.cat(pictures).to(device)).float().cpu().numpy()

        image_features = [None] * len(images)
        for row, feature in zip(image_rows, features):
            image_features[row] = feature
            if keys[row] is not None:
                seen[keys[row]] = feature
        for row, image in enumerate(batch["image"]):
            if image is not None and image_features[row] is None:
                image_features[row] = seen[keys[row]]
        crop_features = [[] for _ in images]
        for row, feature in zip(crop_rows, features[len(image_rows) :]):
            crop_features[row].append(feature)
        return {"image_features": image_features, "crop_features": crop_features}

    features = datasets.Features({k: v for k, v in dataset.features.items() if k not in ("image", "crops")})
    features["image_features"] = datasets.List(datasets.Value("float32"))
    features["crop_features"] = datasets.List(datasets.List(datasets.Value("float32")))
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
    `image_features` (batch, feature) with `image_mask` (batch,), and `crop_features`
    (batch, crops, feature) with `crop_mask` (batch, crops) when any row has crops, from rows of
    `add_image_features`: absent pictures are zeros and masked out, as `MREProcessor` does with
    pixels, and a batch without any picture gives `{}`.
    """
    wholes = [record["image_features"] for record in records]
    crops = [record["crop_features"] or [] for record in records]
    present = [feature for feature in wholes if feature is not None]
    feature_size = len(present[0]) if present else next((len(c[0]) for c in crops if c), None)
    if feature_size is None:
        return {}
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
    return batch
