"""
modeling_mre: multimodal relation extraction methods as HuggingFace models.

    from modeling_mre import load_mnre, MREProcessor, MMIBForRelationExtraction, compute_mre_metrics

Layout: `models/` holds what a saved model folder needs (it ships as remote code), `data/` the
readers and the feature cache, `training/` what `train_accelerate.py` needs, `hub/` model folders,
cards and uploads. Everything users call is importable from here, so moving a module never breaks
an import. `hub/` is imported when one of its names is first used: the models need none of it (nor
its figures' matplotlib), so `import modeling_mre` stays what a model needs.
"""

import importlib

from .atomic import atomic_folder
from .backbones import embedded_text_backbone, embedded_vision_backbone
from .data import (
    NER_TAGS,
    ImageFeatureCache,
    add_image_features,
    carve_validation_from_train,
    load_fewrel,
    load_mnre,
    load_more,
    load_twitter_mner,
    record_features,
    write_demo_dataset,
    write_mner_demo_dataset,
    write_more_demo_dataset,
)
from .metrics import compute_mre_metrics
from .models import (
    METHODS,
    NER_METHODS,
    NER_PIPELINE_TASK,
    PIPELINE_TASK,
    BaselineConfig,
    BaselineForRelationExtraction,
    BaselineForTokenClassification,
    BaselineNERConfig,
    DFMAConfig,
    DFMAForRelationExtraction,
    DFMAOutput,
    EntityRecognitionOutput,
    MethodPaper,
    MMIBConfig,
    MMIBForRelationExtraction,
    MMIBForTokenClassification,
    MMIBNERConfig,
    MMIBOutput,
    MMIBTokenClassificationOutput,
    MNERProcessor,
    MREConfig,
    MREPreTrainedModel,
    MREProcessor,
    MREVisualModel,
    MultimodalEntityRecognitionPipeline,
    MultimodalRelationExtractionPipeline,
    RelationExtractionOutput,
    ROCConfig,
    ROCForRelationExtraction,
    ROCOutput,
    VisualSlots,
    WMAJLConfig,
    WMAJLForRelationExtraction,
    WMAJLOutput,
    compute_ner_metrics,
    register_method,
)


__all__ = [
    "METHODS",
    "NER_METHODS",
    "NER_PIPELINE_TASK",
    "NER_TAGS",
    "PIPELINE_TASK",
    "BaselineConfig",
    "BaselineForRelationExtraction",
    "BaselineForTokenClassification",
    "BaselineNERConfig",
    "DFMAConfig",
    "DFMAForRelationExtraction",
    "DFMAOutput",
    "EntityRecognitionOutput",
    "ImageFeatureCache",
    "MethodPaper",
    "MMIBConfig",
    "MMIBForRelationExtraction",
    "MMIBForTokenClassification",
    "MMIBNERConfig",
    "MMIBOutput",
    "MMIBTokenClassificationOutput",
    "MNERProcessor",
    "MultimodalEntityRecognitionPipeline",
    "MREConfig",
    "MREPreTrainedModel",
    "MREProcessor",
    "MREVisualModel",
    "MultimodalRelationExtractionPipeline",
    "RelationExtractionOutput",
    "ROCConfig",
    "ROCForRelationExtraction",
    "ROCOutput",
    "VisualSlots",
    "WMAJLConfig",
    "WMAJLForRelationExtraction",
    "WMAJLOutput",
    "add_image_features",
    "atomic_folder",
    "carve_validation_from_train",
    "compute_mre_metrics",
    "compute_ner_metrics",
    "dataset_card",
    "embedded_text_backbone",
    "embedded_vision_backbone",
    "load_fewrel",
    "load_mnre",
    "load_more",
    "load_twitter_mner",
    "model_repo_files",
    "push_dataset",
    "push_model_folder",
    "record_features",
    "register_method",
    "save_hub_folder",
    "write_demo_dataset",
    "write_mner_demo_dataset",
    "write_model_card",
    "write_more_demo_dataset",
]

# Names of `modeling_mre.hub`, imported on first use (PEP 562).
_HUB_NAMES = (
    "dataset_card",
    "model_repo_files",
    "push_dataset",
    "push_model_folder",
    "save_hub_folder",
    "write_model_card",
)


def __getattr__(name: str):
    if name in _HUB_NAMES:
        return getattr(importlib.import_module(".hub", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HUB_NAMES])
