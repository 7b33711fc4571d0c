"""
A `DatasetDict` of modeling_mre's record schema written as its Hub dataset repository holds it:
parquet shards with the images embedded, and a dataset card whose metadata gives the features back.
"""

import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.table import embed_table_storage
from datasets.utils.metadata import MetadataConfigs
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, DatasetCardData

from .cards import DATASET_FACTS, TEMPLATES_DIR, lookup, read_template_text


# The Hub has no relation-extraction task: a dataset card names the closest one (a relation is a class
# of the text given its entity pair).
DATASET_TASK_CATEGORY = "text-classification"
# What the columns of modeling_mre's record schema hold, for the dataset card.
_COLUMN_CONTENT = {
    "id": "`<split>-<line index>` in the source file",
    "tokens": "the pre-tokenised text",
    "head": "head entity: its text and token span",
    "tail": "tail entity: its text and token span (an object tail has its name and no span)",
    "tail_box": "tail object box in the image (normalised centre x, centre y, width, height)",
    "tail_caption": "caption of the tail object, or None",
    "image": "the post's picture, or None when it is not available",
    "image_id": "file name of the picture in the source release",
    "crops": "visual-grounding object crops of the picture (may be empty)",
    "relation": "the relation from head to tail",
}


def _feature_type(feature: Any) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({feature.num_classes} names)"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.Image):
        return "Image"
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return f"list of {_feature_type(feature.feature)}"
    if isinstance(feature, dict):
        return "{" + ", ".join(f"{key}: {_feature_type(value)}" for key, value in feature.items()) + "}"
    return type(feature).__name__


def _size_category(num_rows: int) -> str:
    for limit, category in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if num_rows < limit:
            return category
    return "n>1M"


def _split_statistics(dataset: datasets.Dataset, num_labels: int) -> tuple[int, int | None, np.ndarray]:
    """Rows with an image, object crops in all (None without a `crops` column), and relation counts."""
    with_image, num_crops = 0, 0 if "crops" in dataset.column_names else None
    counts = np.zeros(num_labels, dtype=np.int64)
    for batch in dataset.with_format("arrow").iter(batch_size=1000):
        if "image" in batch.column_names:
            with_image += len(batch) - batch["image"].null_count
        if num_crops is not None:
            num_crops += int(pc.sum(pc.list_value_length(batch["crops"])).as_py() or 0)
        counts += np.bincount(batch["relation"].to_numpy(), minlength=num_labels)
    return with_image, num_crops, counts


def export_dataset(
    dataset: datasets.DatasetDict,
    folder: str | os.PathLike,
    *,
    name: str = "mnre",
    repo_id: str | None = None,
    max_shard_size: str | int = "500MB",
) -> list[str]:
    """
    Write a `DatasetDict` of modeling_mre's record schema into `folder` as its Hub dataset repository
    would hold it, the layout `Dataset.push_to_hub` produces: `data/<split>-0000i-of-0000N.parquet`
    shards with the image bytes embedded, and a README.md dataset card whose `dataset_info` and
    `configs` metadata make `load_dataset(folder)` (or of the pushed repository) give back the same
    features, `ClassLabel` names included.

    Args:
        dataset: The splits, as a reader of `modeling_mre` returns them (`load_mnre`).
        folder: A new or empty folder.
        name: Which dataset this is, for the card text: `mnre`, `more` or `demo`.
        repo_id: The repository the card's usage snippet names; defaults to the folder itself.
        max_shard_size: Upper size of a parquet shard, as in `push_to_hub`.

    Returns:
        The paths written, relative to `folder`.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: export into a new folder, so that no stale shard is published")
    facts = lookup(DATASET_FACTS, name, "dataset")
    if not dataset:
        raise ValueError("the DatasetDict has no split to export")
    features = next(iter(dataset.values())).features
    label_names = features["relation"].names
    max_shard_bytes = convert_file_size_to_int(max_shard_size)

    (folder / "data").mkdir(parents=True, exist_ok=True)
    written, split_rows = [], []
    info = DatasetInfo(features=features, splits=SplitDict(), download_size=0, dataset_size=0)
    distribution = []
    for split, split_dataset in dataset.items():
        if split_dataset.features != features:
            raise ValueError(f"split {split!r} has other features than the first split")
        # The same size estimate (images included) that Dataset.push_to_hub cuts its shards by.
        num_bytes = split_dataset._estimate_nbytes()
        num_shards = max(1, min(len(split_dataset), num_bytes // max_shard_bytes + 1))
        for index in range(num_shards):
            shard = split_dataset.shard(num_shards=num_shards, index=index, contiguous=True)
            # Image columns hold file paths; the parquet must carry the bytes (file names are kept).
            shard = shard.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
            path = f"data/{split}-{index:05d}-of-{num_shards:05d}.parquet"
            info.download_size += shard.to_parquet(folder / path)
            written.append(path)
        info.splits.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=len(split_dataset)))
        info.dataset_size += num_bytes
        with_image, num_crops, counts = _split_statistics(split_dataset, len(label_names))
        split_rows.append(
            {"name": split, "num_rows": len(split_dataset), "with_image": with_image, "num_crops": num_crops}
        )
        distribution.append(counts)

    card_data = DatasetCardData(
        language=["en"],
        license=facts["license"],
        pretty_name=facts["title"],
        task_categories=[DATASET_TASK_CATEGORY],
        tags=["relation-extraction", "multimodal", "image", "modeling_mre"],
        size_categories=[_size_category(sum(len(split_dataset) for split_dataset in dataset.values()))],
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": split, "path": f"data/{split}-*"} for split in dataset]}}
    ).to_dataset_card_data(card_data)
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "dataset_card.md"),
        title=facts["title"],
        description=read_template_text("datasets", f"{name}.md"),
        repo_id=repo_id or str(folder),
        first_split=next(iter(dataset)),
        features=[
            {"name": column, "type": _feature_type(feature), "content": _COLUMN_CONTENT.get(column, "")}
            for column, feature in features.items()
        ],
        splits=split_rows,
        split_names=list(dataset),
        label_distribution=[
            {"name": label, "id": label_id, "counts": [int(counts[label_id]) for counts in distribution]}
            for label_id, label in enumerate(label_names)
        ],
        citation=f"```bibtex\n{facts['citation']}\n```" if facts["citation"] else "Nothing to cite.",
    )
    card.save(folder / "README.md")
    return sorted(written + ["README.md"])
