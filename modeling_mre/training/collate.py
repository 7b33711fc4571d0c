"""Batches for training and evaluation: dataset rows through `MREProcessor` (relations) or `MNERProcessor` (entities)."""

import torch

from ..data.feature_cache import ImageFeatureCache
from ..models import MNERProcessor, MREProcessor
from ..models.images_mre import record_tail


def make_collate_fn(processor: MREProcessor, uses_images: bool, image_feature_cache: ImageFeatureCache | None = None):
    """A `collate_fn` giving the processor's tensors and `labels`; with a feature cache (rows of
    `add_image_features`), the features of the rows' pictures instead of their pixels."""
    read_pictures = uses_images and image_feature_cache is None

    def collate(records):
        batch = processor(
            tokens=[r["tokens"] for r in records],
            head=[r["head"] for r in records],
            tail=[record_tail(r) for r in records],
            images=[r["image"] for r in records] if read_pictures else None,
            crops=[r["crops"] for r in records] if read_pictures else None,
        )
        if image_feature_cache is not None:
            batch.update(image_feature_cache.stack(records))
        batch["labels"] = torch.tensor([r["relation"] for r in records])
        return batch

    return collate


def make_ner_collate_fn(
    processor: MNERProcessor,
    uses_images: bool,
    image_feature_cache: ImageFeatureCache | None = None,
    for_evaluation: bool = False,
):
    """
    A `collate_fn` for MNER rows (`load_twitter_mner`'s): the processor's windows with `labels`; with a
    feature cache, each window gets its post's picture features. `for_evaluation` also keeps what scoring the posts needs:
    `word_ids`, `overflow_to_sample_mapping` and `word_tags` (each post's gold tag ids, a list per post).
    """
    read_pictures = uses_images and image_feature_cache is None

    def collate(records):
        batch = processor(
            tokens=[r["tokens"] for r in records],
            word_labels=[r["ner_tags"] for r in records],
            images=[r["image"] for r in records] if read_pictures else None,
            crops=[r["crops"] for r in records] if read_pictures else None,
            return_word_ids=True,
        )
        windows = batch["overflow_to_sample_mapping"]
        if image_feature_cache is not None:
            batch.update({name: value[windows] for name, value in image_feature_cache.stack(records).items()})
        if for_evaluation:
            batch["word_tags"] = [r["ner_tags"] for r in records]
        else:
            del batch["word_ids"], batch["overflow_to_sample_mapping"]
        return batch

    return collate
