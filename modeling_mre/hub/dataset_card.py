"""
The dataset card of a `DatasetDict` of modeling_mre's record schema: what the columns hold, rows with
pictures and crops, the relation distribution per split, licence and citation. The parquet shards
and the card's `dataset_info`/`configs` metadata are `DatasetDict.push_to_hub`'s (`pushes.push_dataset`).
"""

from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
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


def dataset_card(dataset: datasets.DatasetDict, *, name: str, repo_id: str) -> DatasetCard:
    """
    The card of `dataset` as the repository `repo_id` publishes it: our metadata (licence, task,
    tags, size) and text. `push_dataset` adds the `dataset_info` and `configs` of `push_to_hub`.

    Args:
        dataset: The splits, as a reader of `modeling_mre` returns them (`load_mnre`).
        name: Which dataset this is, for the card text: `mnre`, `more`, `demo`, ... (`hub_cards/datasets/`).
        repo_id: The repository the usage snippet loads.
    """
    facts = lookup(DATASET_FACTS, name, "dataset")
    if not dataset:
        raise ValueError("the DatasetDict has no split")
    features = next(iter(dataset.values())).features
    label_names = features["relation"].names
    split_rows, distribution = [], []
    for split, split_dataset in dataset.items():
        if split_dataset.features != features:  # one column table and label list describe every split
            raise ValueError(f"split {split!r} has other features than the first split")
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
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / "dataset_card.md"),
        title=facts["title"],
        description=read_template_text("datasets", f"{name}.md"),
        repo_id=repo_id,
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
