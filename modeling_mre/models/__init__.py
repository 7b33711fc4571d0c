"""
What a saved model folder needs, flat: configurations, models, the shared visual path, the
processor, the pipeline and image loading. These modules import only torch, transformers (with its
own huggingface_hub), PIL and each other (`from .module import Name`), so `save_pretrained` copies
them as remote code. This `__init__` is not copied: it registers each task's processor and pipeline, and the methods.

A method registers in one line, `register_method(ItsModelClass)` (`docs/adding-a-method.md`).
"""

from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_baseline import BaselineConfig, BaselineNERConfig
from .configuration_dfma import DFMAConfig
from .configuration_mmib import MMIBConfig, MMIBNERConfig
from .configuration_mre import MREConfig
from .configuration_roc import ROCConfig
from .configuration_wmajl import WMAJLConfig
from .entities_mner import bio_entities, compute_ner_metrics
from .modeling_baseline import BaselineForRelationExtraction
from .modeling_baseline_ner import BaselineForTokenClassification
from .modeling_dfma import DFMAForRelationExtraction, DFMAOutput
from .modeling_mmib import MMIBForRelationExtraction, MMIBOutput
from .modeling_mmib_ner import MMIBForTokenClassification, MMIBTokenClassificationOutput
from .modeling_mre import TASK_CLASSES, MethodPaper, MREPreTrainedModel, RelationExtractionOutput, TaskClasses
from .modeling_ner import EntityRecognitionMixin, EntityRecognitionOutput
from .modeling_roc import ROCForRelationExtraction, ROCOutput
from .modeling_wmajl import WMAJLForRelationExtraction, WMAJLOutput
from .pipeline_mner import MultimodalEntityRecognitionPipeline
from .pipeline_mre import NER_PIPELINE_TASK, PIPELINE_TASK, MultimodalRelationExtractionPipeline
from .processing_mner import MNERProcessor
from .processing_mre import MREProcessor
from .visual_mre import MREVisualModel, VisualSlots


# method name (`train_accelerate.py --method`) -> model class, filled by `register_method`: relation
# extractors in METHODS, entity recognizers (MNER) in NER_METHODS.
METHODS: dict[str, type[MREPreTrainedModel]] = {}
NER_METHODS: dict[str, type[MREPreTrainedModel]] = {}
# task -> (its methods, the auto class that loads them), filled by `_register_task`.
_TASKS: dict[str, tuple[dict[str, type[MREPreTrainedModel]], type]] = {}


def _register_task(task: str, methods: dict, auto_class: type, classes: TaskClasses):
    """
    A task's methods and auto class, and its processor and pipeline: `AutoProcessor` gets the processor
    for each method registered, `pipeline(task)` the pipeline, and every saved folder names both
    (`MREPreTrainedModel.save_pretrained` reads `TASK_CLASSES`).
    """
    _TASKS[task] = (methods, auto_class)
    TASK_CLASSES[task] = classes
    PIPELINE_REGISTRY.register_pipeline(
        classes.pipeline_task, pipeline_class=classes.pipeline_class, pt_model=auto_class, type="multimodal"
    )


def register_method(model_class: type[MREPreTrainedModel]) -> type[MREPreTrainedModel]:
    """
    Make a method known to `AutoConfig`, `AutoModel` (and `AutoModelForTokenClassification` for an entity
    recognizer), `AutoProcessor`, remote-code saving and `train_accelerate.py --method`, after checking
    its declarations (see `MREPreTrainedModel`).
    """
    name = getattr(model_class, "method_name", None)
    config_class = model_class.config_class
    if not name:
        raise ValueError(f"{model_class.__name__} declares no method_name")
    if model_class.task not in _TASKS:
        raise ValueError(f"{model_class.__name__}.task must be one of {sorted(_TASKS)}, got {model_class.task!r}")
    registry, task_auto_class = _TASKS[model_class.task]
    if name in registry and registry[name] is not model_class:
        raise ValueError(f"method {name!r} is already registered by {registry[name].__name__}")
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
        raise ValueError(
            f"{model_class.__name__}: auxiliary loss weights {unknown} are not fields of {config_class.__name__}"
        )
    fields = config_class.__dataclass_fields__
    switches = {
        part: field
        for part, field in model_class.ablations.items()
        if field not in fields or fields[field].default is not True
    }
    if switches:
        raise ValueError(
            f"{model_class.__name__}: ablation switches {switches} must be boolean config fields defaulting to True"
        )
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    if task_auto_class is not AutoModel:
        task_auto_class.register(config_class, model_class, exist_ok=True)
    AutoProcessor.register(config_class, TASK_CLASSES[model_class.task].processor_class, exist_ok=True)
    registry[name] = model_class
    return model_class


_register_task(
    "relation-extraction",
    METHODS,
    AutoModel,
    TaskClasses(MREProcessor, MultimodalRelationExtractionPipeline, PIPELINE_TASK),
)
_register_task(
    "token-classification",
    NER_METHODS,
    AutoModelForTokenClassification,
    TaskClasses(MNERProcessor, MultimodalEntityRecognitionPipeline, NER_PIPELINE_TASK),
)

register_method(BaselineForRelationExtraction)
register_method(MMIBForRelationExtraction)
register_method(WMAJLForRelationExtraction)
register_method(DFMAForRelationExtraction)
register_method(ROCForRelationExtraction)
register_method(BaselineForTokenClassification)
register_method(MMIBForTokenClassification)
