"""
What a saved model folder needs, flat: configurations, models, the shared visual path, the
processor, the pipeline and image loading. These modules import only torch, transformers (with its
own huggingface_hub), PIL and each other (`from .module import Name`), so `save_pretrained` copies
them as remote code. This `__init__` is not copied: it registers the methods.

A method registers in one line, `register_method(ItsModelClass)` (`docs/adding-a-method.md`).
"""

from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_baseline import BaselineConfig
from .configuration_dfma import DFMAConfig
from .configuration_mmib import MMIBConfig
from .configuration_mre import MREConfig
from .configuration_roc import ROCConfig
from .configuration_wmajl import WMAJLConfig
from .modeling_baseline import BaselineForRelationExtraction
from .modeling_dfma import DFMAForRelationExtraction, DFMAOutput
from .modeling_mmib import MMIBForRelationExtraction, MMIBOutput
from .modeling_mre import MethodPaper, MREPreTrainedModel, RelationExtractionOutput
from .modeling_roc import ROCForRelationExtraction, ROCOutput
from .modeling_wmajl import WMAJLForRelationExtraction, WMAJLOutput
from .pipeline_mre import MultimodalRelationExtractionPipeline
from .processing_mre import MREProcessor
from .visual_mre import MREVisualModel, VisualSlots


PIPELINE_TASK = "multimodal-relation-extraction"

# method name (`train_accelerate.py --method`) -> model class, filled by `register_method`
METHODS: dict[str, type[MREPreTrainedModel]] = {}


def register_method(model_class: type[MREPreTrainedModel]) -> type[MREPreTrainedModel]:
    """
    Make a method known to `AutoConfig`, `AutoModel`, `AutoProcessor`, remote-code saving and
    `train_accelerate.py --method`, after checking its declarations (see `MREPreTrainedModel`).
    """
    name = getattr(model_class, "method_name", None)
    config_class = model_class.config_class
    if not name:
        raise ValueError(f"{model_class.__name__} declares no method_name")
    if name in METHODS and METHODS[name] is not model_class:
        raise ValueError(f"method {name!r} is already registered by {METHODS[name].__name__}")
    if config_class is MREConfig or not issubclass(config_class, MREConfig):
        raise ValueError(f"{model_class.__name__}.config_class must be its own MREConfig subclass")
    if model_class.paper is None:
        raise ValueError(f"{model_class.__name__} declares no paper (MethodPaper): its model card cites it")
    multimodal = issubclass(model_class, MREVisualModel)
    if multimodal != (model_class.visual_features is not None):
        raise ValueError(
            f"{model_class.__name__}: a method that reads pictures subclasses MREVisualModel and declares "
            "visual_features ('pooled', 'patches' or 'levels'); a text-only one does neither"
        )
    config_fields = set(config_class.__dataclass_fields__)
    unknown = {loss: field for loss, field in model_class.auxiliary_losses.items() if field not in config_fields}
    if unknown:
        raise ValueError(f"{model_class.__name__}: auxiliary loss weights {unknown} are not fields of {config_class.__name__}")
    fields = config_class.__dataclass_fields__
    switches = {
        part: field for part, field in model_class.ablations.items() if field not in fields or fields[field].default is not True
    }
    if switches:
        raise ValueError(f"{model_class.__name__}: ablation switches {switches} must be boolean config fields defaulting to True")
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoProcessor.register(config_class, MREProcessor, exist_ok=True)
    METHODS[name] = model_class
    return model_class


PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=MultimodalRelationExtractionPipeline, pt_model=AutoModel, type="multimodal"
)

register_method(BaselineForRelationExtraction)
register_method(MMIBForRelationExtraction)
register_method(WMAJLForRelationExtraction)
register_method(DFMAForRelationExtraction)
register_method(ROCForRelationExtraction)
