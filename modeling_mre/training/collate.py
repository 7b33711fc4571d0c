"""Batches for training and evaluation: dataset rows through `MREProcessor` (relations) or `MNERProcessor` (entities)."""

import torch

from ..data.feature_cache import stack_image_features
from ..models import MNERProcessor, MREProcessor
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


def make_ner_collate_fn(
    processor: MNERProcessor, uses_images: bool, cached_image_features: bool = False, for_evaluation: bool = False
):
    """
    A `collate_fn` for MNER rows (`load_twitter_mner`'s): the processor's windows with `labels`; with cached
    features, each window gets its post's. `for_evaluation` also keeps what scoring the posts needs:
    `word_ids`, `overflow_to_sample_mapping` and `word_tags` (each post's gold tag ids, a list per post).
    """
    read_pictures = uses_images and not cached_image_features

    def collate(records):
        batch = processor(
            tokens=[r["tokens"] for r in records],
            word_labels=[r["ner_tags"] for r in records],
            images=[r["image"] for r in records] if read_pictures else None,
            crops=[r["crops"] for r in records] if read_pictures else None,
            return_word_ids=True,
        )
        windows = batch["overflow_to_sample_mapping"]
        if cached_image_features:
            batch.update({name: value[windows] for name, value in stack_image_features(records).items()})
        if for_evaluation:
            batch["word_tags"] = [r["ner_tags"] for r in records]
        else:
            del batch["word_ids"], batch["overflow_to_sample_mapping"]
        return batch

    return collate
