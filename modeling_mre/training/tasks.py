"""
The tasks `train_accelerate.py` trains, as a table: what differs between relation extraction and entity
recognition (datasets and their reader, label names, processor and methods, batches, evaluation) is a
field of the task's `TrainingTask`, so the script's `main` reads the same for both.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import load_mnre, load_more, load_twitter_mner, write_demo_dataset, write_mner_demo_dataset
from ..metrics import compute_mre_metrics
from ..models import METHODS, NER_METHODS, MNERProcessor, MREProcessor, compute_ner_metrics
from ..models.processing_mner import merge_windows
from .collate import make_collate_fn, make_ner_collate_fn
from .sampling import example_lengths


@dataclass(frozen=True)
class TrainingTask:
    """
    One task `train_accelerate.py` trains.

    Attributes:
        name: The models' `task` (`"relation-extraction"`, `"token-classification"`).
        description: How error messages name the task.
        datasets: The `--dataset` names it trains on; `demo_dataset`, one of them, is written on the fly
            and needs no `--data_dir`.
        methods: The registry of its methods (`--method`), filled by `register_method`.
        processor_class: The processor its methods read.
        flags: The command-line options only this task takes; the other tasks refuse them.
        read: `(dataset, data_dir, *, image_dir, crop_dir, demo_dir, seed)` -> the `DatasetDict` of the
            dataset named `dataset` (the demo is written to `demo_dir`).
        label_names: The train split's `features` -> the label names, in id order.
        config_from_data: The train split -> config fields the data decides.
        make_collate_fns: `(processor, uses_images, image_feature_cache)` -> the training and the
            evaluation `collate_fn`.
        example_lengths: `(train split, processor)` -> each row's length, for `--group_by_length`.
        evaluate: `(model, dataloader, accelerator, label_names, description)` -> the metrics: `micro_f1`
            (the best epoch's criterion), `micro_precision`, `micro_recall`, `accuracy` and the task's own.
    """

    name: str
    description: str
    datasets: tuple[str, ...]
    demo_dataset: str
    methods: Mapping[str, type]
    processor_class: type
    flags: tuple[str, ...]
    read: Callable[..., Any]
    label_names: Callable[[Any], list[str]]
    config_from_data: Callable[[Any], dict[str, Any]]
    make_collate_fns: Callable[..., tuple[Callable, Callable]]
    example_lengths: Callable[[Any, Any], list[int]]
    evaluate: Callable[..., dict[str, Any]]


def read_relations(dataset, data_dir, *, image_dir=None, crop_dir=None, demo_dir=None, seed=0):
    """MNRE or MORE from `data_dir`; `demo`: the synthetic set, written to `demo_dir` in MNRE's layout."""
    if dataset == "more":
        return load_more(data_dir, image_dir=image_dir)
    if dataset == "demo":
        data_dir = write_demo_dataset(demo_dir, seed=seed)
    return load_mnre(data_dir, image_dir=image_dir)


def read_entities(dataset, data_dir, *, image_dir=None, crop_dir=None, demo_dir=None, seed=0):
    """Twitter-2015 or Twitter-2017 from `data_dir`; `demo-mner`: the synthetic set, written to `demo_dir`."""
    if dataset == "demo-mner":
        data_dir = write_mner_demo_dataset(demo_dir, seed=seed)
    return load_twitter_mner(data_dir, image_dir=image_dir, crop_dir=crop_dir)


def evaluate_relations(model, dataloader, accelerator, label_names, description):
    """`compute_mre_metrics` of the argmax relations over the whole split, gathered from every process."""
    model.eval()
    predictions, references = [], []
    for batch in tqdm(dataloader, desc=description, leave=False, disable=not accelerator.is_local_main_process):
        with torch.no_grad():
            logits = model(**batch).logits
        batch_predictions, batch_references = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
        predictions.append(batch_predictions.cpu())
        references.append(batch_references.cpu())
    return compute_mre_metrics(torch.cat(predictions), torch.cat(references), label_names)


def evaluate_entities(model, dataloader, accelerator, label_names, description):
    """seqeval's entity-level scores of the posts' word tags (the CRF's decoding, windows merged)."""
    model.eval()
    tagger = accelerator.unwrap_model(model)
    posts = []  # (predicted tag names, gold tag names) per post
    for batch in tqdm(dataloader, desc=description, leave=False, disable=not accelerator.is_local_main_process):
        word_ids, windows, gold = (
            batch.pop("word_ids"),
            batch.pop("overflow_to_sample_mapping"),
            batch.pop("word_tags"),
        )
        batch.pop("labels")
        with torch.no_grad():
            logits = model(**batch).logits
        predicted, _ = tagger.decode(logits, batch["first_subword_mask"])
        merged = merge_windows(word_ids.cpu(), windows.cpu(), predicted, len(gold))
        batch_posts = [([label_names[t] for t in p], [label_names[t] for t in g]) for p, g in zip(merged, gold)]
        # Batch by batch: at the last batch, gather_for_metrics drops the duplicates that evened it out.
        posts += accelerator.gather_for_metrics(batch_posts, use_gather_object=True)
    return compute_ner_metrics([p for p, _ in posts], [g for _, g in posts])


RELATION_EXTRACTION = TrainingTask(
    name="relation-extraction",
    description="relation extraction",
    datasets=("demo", "mnre", "more"),
    demo_dataset="demo",
    methods=METHODS,
    processor_class=MREProcessor,
    flags=("hold_out_relations", "validation_from_train"),
    read=read_relations,
    label_names=lambda features: features["relation"].names,
    # MORE's relations point at an object in the image: the model reads its box as the tail.
    config_from_data=lambda train: {"object_tails": "tail_box" in train.column_names},
    make_collate_fns=lambda *args: (make_collate_fn(*args),) * 2,
    example_lengths=example_lengths,
    evaluate=evaluate_relations,
)
ENTITY_RECOGNITION = TrainingTask(
    name="token-classification",
    description="entity recognition",
    datasets=("twitter2015", "twitter2017", "demo-mner"),
    demo_dataset="demo-mner",
    methods=NER_METHODS,
    processor_class=MNERProcessor,
    flags=(),
    read=read_entities,
    label_names=lambda features: features["ner_tags"].feature.names,
    config_from_data=lambda train: {},
    # Evaluation batches keep the words and windows that scoring whole posts needs.
    make_collate_fns=lambda *args: (make_ner_collate_fn(*args), make_ner_collate_fn(*args, for_evaluation=True)),
    # Words rather than tokens: each word reads about one subword, and counting them needs no tokenizer.
    example_lengths=lambda train, processor: [len(tokens) for tokens in train["tokens"]],
    evaluate=evaluate_entities,
)
TASKS = {task.name: task for task in (RELATION_EXTRACTION, ENTITY_RECOGNITION)}


def task_of_dataset(dataset: str) -> TrainingTask:
    """The task whose `datasets` name `dataset`."""
    for task in TASKS.values():
        if dataset in task.datasets:
            return task
    known = [name for task in TASKS.values() for name in task.datasets]
    raise ValueError(f"no task trains on dataset {dataset!r}; datasets: {', '.join(known)}")
