"""modeling_mre: multimodal relation extraction methods as HuggingFace models."""

from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_baseline import BaselineConfig
from .configuration_mmib import MMIBConfig
from .configuration_mre import MREConfig
from .modeling_baseline import BaselineForRelationExtraction
from .modeling_mmib import MMIBForRelationExtraction, MMIBOutput
from .modeling_mre import MREPreTrainedModel, RelationExtractionOutput
from .pipeline_mre import MultimodalRelationExtractionPipeline
from .processing_mre import MREProcessor

PIPELINE_TASK = "multimodal-relation-extraction"

# method name (as in `train_accelerate.py --method`) -> model class
MODEL_CLASSES = {
    "baseline": BaselineForRelationExtraction,
    "mmib": MMIBForRelationExtraction,
}

for _model_class in MODEL_CLASSES.values():
    AutoConfig.register(_model_class.config_class.model_type, _model_class.config_class)
    AutoModel.register(_model_class.config_class, _model_class)
    AutoProcessor.register(_model_class.config_class, MREProcessor)
    # What save_pretrained writes into `auto_map` and copies as remote code.
    _model_class.config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModel")
MREProcessor.register_for_auto_class("AutoProcessor")

PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=MultimodalRelationExtractionPipeline, pt_model=AutoModel, type="multimodal"
)

__all__ = [
    "PIPELINE_TASK",
    "MODEL_CLASSES",
    "MREConfig",
    "BaselineConfig",
    "MMIBConfig",
    "MREPreTrainedModel",
    "RelationExtractionOutput",
    "BaselineForRelationExtraction",
    "MMIBForRelationExtraction",
    "MMIBOutput",
    "MREProcessor",
    "MultimodalRelationExtractionPipeline",
]
