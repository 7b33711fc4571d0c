"""Batches for training and evaluation: dataset rows (the record schema) through `MREProcessor`."""

import torch

from ..data.feature_cache import stack_image_features
from ..models import MREProcessor
from ..models.processing_mre import record_tail


def make_collate_fn(processor: MREProcessor, uses_images: bool, cached_image_features: bool = False):
    """A `collate_fn` giving the processor's tensors and `labels`; with cached features, the rows'
    `image_features`/`crop_features` instead of pictures."""
    read_pictures = uses_images and not cached_image_features

    def collate(records):
        batch = processor(
            tokens=[r["tokens"] for r in records],
            head=[r["head"] for r in records],
            tail=[record_tail(r) for r in records],
            images=[r["image"] for r in records] if read_pictures else None,
            crops=[r["crops"] for r in records] if read_pictures else None,
        )
        if cached_image_features:
            batch.update(stack_image_features(records))
        batch["labels"] = torch.tensor([r["relation"] for r in records])
        return batch

    return collate
