"""
modeling_mre: multimodal relation extraction methods as HuggingFace models.

    from modeling_mre import load_mnre, MREProcessor, MMIBForRelationExtraction, compute_mre_metrics

Layout: `models/` holds what a saved model folder needs (it ships as remote code), `data/` the
readers and the feature cache, `training/` what `train_accelerate.py` needs, `hub/` model folders,
cards and uploads. Everything users call is importable from here, so moving a module never breaks
an import.
"""

from .atomic import atomic_folder
from .backbones import embedded_text_backbone, embedded_vision_backbone
from .data import (
    add_image_features,
    carve_validation_from_train,
    load_mnre,
    load_more,
    record_features,
    stack_image_features,
    write_demo_dataset,
    write_more_demo_dataset,
)
from .hub import (
    export_dataset,
    model_repo_files,
    push_dataset_folder,
    push_model_folder,
    save_hub_folder,
    write_model_card,
)
from .metrics import compute_mre_metrics
from .models import (
    METHODS,
    PIPELINE_TASK,
    BaselineConfig,
    BaselineForRelationExtraction,
    DFMAConfig,
    DFMAForRelationExtraction,
    DFMAOutput,
    MethodPaper,
    MMIBConfig,
    MMIBForRelationExtraction,
    MMIBOutput,
    MREConfig,
    MREPreTrainedModel,
    MREProcessor,
    MREVisualModel,
    MultimodalRelationExtractionPipeline,
    RelationExtractionOutput,
    ROCConfig,
    ROCForRelationExtraction,
    ROCOutput,
    VisualSlots,
    WMAJLConfig,
    WMAJLForRelationExtraction,
    WMAJLOutput,
    register_method,
)

__all__ = [
    "METHODS",
    "PIPELINE_TASK",
    "BaselineConfig",
    "BaselineForRelationExtraction",
    "DFMAConfig",
    "DFMAForRelationExtraction",
    "DFMAOutput",
    "MethodPaper",
    "MMIBConfig",
    "MMIBForRelationExtraction",
    "MMIBOutput",
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
    "embedded_text_backbone",
    "embedded_vision_backbone",
    "export_dataset",
    "load_mnre",
    "load_more",
    "model_repo_files",
    "push_dataset_folder",
    "push_model_folder",
    "record_features",
    "register_method",
    "save_hub_folder",
    "stack_image_features",
    "write_demo_dataset",
    "write_model_card",
    "write_more_demo_dataset",
]
