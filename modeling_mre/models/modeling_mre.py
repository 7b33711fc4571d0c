"""
The contract every relation-extraction method fulfils: `MREPreTrainedModel`, whose docstring says
what a method declares, the output its forward returns, and what a saved folder names. The layers
methods share are in `layers_mre.py`, the shared visual path in `visual_mre.py`.
"""

import functools
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save, get_class_from_dynamic_module
from transformers.utils import ModelOutput

from .configuration_mre import MREConfig


# How a pretrained submodule trains: fine-tuned at the encoder learning rate (and the target of
# LoRA), never updated, or at the learning rate of the freshly initialised layers.
TrainingRole = Literal["encoder", "frozen", "new"]
# What a multimodal method reads of each picture (see `visual_mre.MREVisualModel.get_image_features`).
VisualFeatures = Literal["pooled", "patches", "levels"]


@dataclass(frozen=True)
class MethodPaper:
    """The paper a method implements, as its model card cites it (timm's `_cfg(paper_ids=..., origin_url=...)`)."""

    title: str
    citation: str | None = None
    code_url: str | None = None


@dataclass(frozen=True)
class TaskClasses:
    """A task's processor and pipeline, which a saved folder names (`auto_map`, `custom_pipelines`) and carries."""

    processor_class: type
    pipeline_class: type
    pipeline_task: str


# task -> its processor and pipeline, filled by registration (`modeling_mre.models`), as transformers'
# auto mappings know each model's processor: the base imports neither. A model loaded as remote code
# finds it empty; the config it was loaded with names them (see `save_pretrained`).
TASK_CLASSES: dict[str, TaskClasses] = {}


class MREPreTrainedModel(PreTrainedModel):
    """
    Base class of every relation-extraction method. Like PEFT's `BaseTuner`, it states what a method
    must define; registration (`modeling_mre.models.register_method`), the `--method` choices of
    `train_accelerate.py`, the model card's paper facts, the LoRA targets and `modules_to_save`,
    the optimizer's parameter groups and the feature cache all derive from these declarations and
    never from parameter names.

    A method subclass declares, on the class:

        - **method_name** (`str`): its name as users write it (`--method`, the registry, card files
          `hub_cards/methods/<method_name>.md` and `<method_name>_notes.md`).
        - **paper** (`MethodPaper` or `None`): the title, citation and code link its card cites.
        - **config_class**: its `MREConfig` subclass, with its own `model_type` (`mre-<name>`).
        - **visual_features** (`"pooled"`, `"patches"`, `"levels"` or `None`): what it reads of each
          picture through the shared visual path; `None` for a text-only method. A multimodal method
          subclasses `visual_mre.MREVisualModel`, which builds that path.
        - **auxiliary_losses** (`dict[str, str]`): each loss its output returns beside the
          classification loss (unweighted), mapped to the config field holding its weight;
          `combine_losses` adds them to the total and training logs each one.
        - **ablations** (`dict[str, str]`): each part of the method a user can remove, by name, mapped
          to the boolean config field (default `True`) that turns it off; `train_accelerate.py
          --config_overrides` sets them and `benchmarks/accuracy.py --ablations` runs each removed.
        - **task** (`"relation-extraction"` or `"token-classification"`): what it predicts, and so the
          processor and pipeline registration gives it (`TASK_CLASSES`). A method's entity recognizer
          (MNER) subclasses `modeling_ner.EntityRecognitionMixin`, which sets it, and registers under
          the same `method_name` as its relation extractor.

    and, when it holds pretrained submodules beyond the text encoder (and the vision encoder of a
    multimodal method), extends `pretrained_submodules()` with each one's `TrainingRole`. Every
    other child is a new layer: it trains at the new-layer learning rate and LoRA saves it whole.

    Its `__init__` builds the layers and ends with `self.post_init()` (which also freezes the frozen
    submodules); its `forward` takes the
    processor's outputs (and `labels`) and returns a `RelationExtractionOutput` subclass.
    """

    config_class = MREConfig
    # Every save copies the model's code, also for a model loaded as remote code (whose class was never
    # registered): a folder saved again after fine-tuning must load as the first one did.
    _auto_class = "AutoModel"
    base_model_prefix = "mre"
    main_input_name = "input_ids"
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = []

    method_name: ClassVar[str]
    paper: ClassVar[MethodPaper | None] = None
    visual_features: ClassVar[VisualFeatures | None] = None
    auxiliary_losses: ClassVar[dict[str, str]] = {}
    ablations: ClassVar[dict[str, str]] = {}
    task: ClassVar[str] = "relation-extraction"

    def pretrained_submodules(self) -> dict[str, TrainingRole]:
        """The children that start from pretrained weights (`from_backbones`), and how each trains."""
        return {"text_encoder": "encoder"}

    def apply_training_roles(self):
        """Keep every frozen submodule's weights and normalisation statistics fixed."""
        for name, role in self.pretrained_submodules().items():
            if role == "frozen":
                getattr(self, name).requires_grad_(False).eval()

    def post_init(self):
        super().post_init()
        self.apply_training_roles()

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen encoder also keeps its BatchNorm statistics: HVPNeT's drift in train mode.
        self.apply_training_roles()
        return self

    def combine_losses(self, classification_loss: torch.Tensor, **auxiliary: torch.Tensor) -> torch.Tensor:
        """The training loss: the classification loss plus each auxiliary loss times its config weight."""
        loss = classification_loss
        for name, weight_field in self.auxiliary_losses.items():
            loss = loss + getattr(self.config, weight_field) * auxiliary[name]
        return loss

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        `PreTrainedModel.save_pretrained` (and so `push_to_hub`), plus what makes the folder load where
        modeling_mre is not installed: `config.custom_pipelines` naming the task's pipeline, whose
        module is copied with the model's code, and `auto_map`'s `AutoProcessor` entry, both from the
        task's registered `TASK_CLASSES`. A model trained in any loop and saved with `model.save_pretrained`
        and `processor.save_pretrained` is a folder that `pipeline(folder, trust_remote_code=True)` runs.
        """
        classes = TASK_CLASSES.get(self.task)
        if classes is not None:
            auto_map = getattr(self.config, "auto_map", None) or {}
            self.config.auto_map = {**auto_map, "AutoProcessor": class_reference(classes.processor_class)}
            # One task only: with several, `pipeline(folder)` cannot infer which to run.
            self.config.custom_pipelines = {
                classes.pipeline_task: {
                    "impl": class_reference(classes.pipeline_class),
                    "pt": [self._auto_class],
                    "type": "multimodal",
                }
            }
            pipeline_classes = [classes.pipeline_class]
        else:
            pipeline_classes = self._pipeline_classes_of_source()
        super().save_pretrained(save_directory, *args, **kwargs)
        for pipeline_class in pipeline_classes:
            custom_object_save(pipeline_class, save_directory)

    def _pipeline_classes_of_source(self) -> list[type]:
        """
        As remote code, nothing registered the task: the pipelines the loaded folder's config names, from
        that folder (or Hub revision), as `pipeline(folder)` loads them, so that a folder saved again after
        fine-tuning carries them too.
        """
        return [
            get_class_from_dynamic_module(
                entry["impl"], self.name_or_path, revision=getattr(self.config, "_commit_hash", None)
            )
            for entry in (getattr(self.config, "custom_pipelines", None) or {}).values()
        ]

    def encode_text(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """The text encoder's last hidden states, (batch, seq_len, text_hidden)."""
        return self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def use_tokenizer(self, tokenizer):
        """
        The processor's tokenizer, for a method that tokenizes text of its own (ROC's relation
        descriptions); `train_accelerate.py` and the pipeline hand it over, other methods ignore it.
        """

    def get_input_embeddings(self) -> nn.Module:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.text_encoder.set_input_embeddings(value)

    @classmethod
    def from_backbones(
        cls, text_backbone: str, vision_backbone: str | None = None, *, processor=None, **kwargs
    ) -> "MREPreTrainedModel":
        """
        A new model whose encoders start from pretrained checkpoints (Hub ids or local folders) and
        whose method layers are freshly initialised, as `VisionEncoderDecoderModel.from_encoder_decoder_pretrained`.

        Args:
            text_backbone, vision_backbone (`str`):
                The encoders' checkpoints; no vision backbone for a text-only method.
            processor (`MREProcessor` or `MNERProcessor`, *optional*):
                The processor the model will read: a relation extractor takes its entity markers' ids
                and grows its embeddings for them; a method that tokenizes text of its own gets its
                tokenizer. Without it, pass the markers' ids and resize the embeddings yourself.
            kwargs:
                `from_pretrained`'s loading arguments (`revision`, `token`, `cache_dir`,
                `local_files_only`, `subfolder`, `force_download`, `proxies`, `trust_remote_code`,
                `attn_implementation`, `dtype`), applied to both backbones; every other one is a field
                of the method's config.
        """
        loading = {key: kwargs.pop(key) for key in BACKBONE_LOADING_ARGUMENTS if key in kwargs}
        text_encoder = AutoModel.from_pretrained(text_backbone, **loading)
        vision_encoder = AutoModel.from_pretrained(vision_backbone, **loading) if vision_backbone is not None else None
        if processor is not None and cls.task == "relation-extraction":
            kwargs = {**processor.marker_config(), **kwargs}
        if "attn_implementation" in loading:  # the config passes it on to the encoders' configs
            kwargs["attn_implementation"] = loading["attn_implementation"]
        config = cls.config_class(
            text_config=text_encoder.config,
            vision_config=vision_encoder.config if vision_encoder is not None else None,
            **kwargs,
        )
        model = cls(config)
        # Pretrained weights replace the random ones; the dropped pooler is the only key left out.
        missing, unexpected = model.text_encoder.load_state_dict(text_encoder.state_dict(), strict=False)
        if missing or any(not key.startswith("pooler.") for key in unexpected):
            raise ValueError(
                f"{text_backbone}: weights do not fit the text encoder (missing {missing}, unexpected {unexpected})"
            )
        if vision_encoder is not None:
            model.vision_encoder.load_state_dict(vision_encoder.state_dict())
        if processor is not None:
            if cls.task == "relation-extraction":  # the markers are new tokens
                model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
            model.use_tokenizer(processor.tokenizer)
        if "dtype" in loading:  # the dtype the text backbone was loaded in ("auto": its checkpoint's)
            model = model.to(text_encoder.dtype)
        return model


@dataclass
class RelationExtractionOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Total training loss: the classification loss plus every weighted auxiliary loss.
        classification_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cross-entropy of the relation classifier alone.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Relation scores before softmax.
        pair_representation (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_size)`):
            Concatenated hidden states at the `<s>` and `<o>` markers, the input of the classifier.
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
            The text encoder's, on this input, with `output_hidden_states=True` / `output_attentions=True`
            (see `returns_text_encoder_states`).
    """

    loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pair_representation: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def returns_text_encoder_states(forward):
    """
    Decorates a method's `forward` (under `@can_return_tuple`) to take transformers'
    `output_hidden_states` and `output_attentions` (default: the config's): the output's
    `hidden_states` and `attentions` are the text encoder's on the forward's `input_ids`, whatever
    else the method runs through it. Attentions need an encoder that gives them (`attn_implementation="eager"`).
    """

    @functools.wraps(forward)
    def wrapper(self, input_ids, *args, output_hidden_states=None, output_attentions=None, **kwargs):
        wanted = {
            "output_hidden_states": self.config.output_hidden_states
            if output_hidden_states is None
            else output_hidden_states,
            "output_attentions": self.config.output_attentions if output_attentions is None else output_attentions,
        }
        if not any(wanted.values()):
            return forward(self, input_ids, *args, **kwargs)
        encoder_config, recorded = self.text_encoder.config, []
        previous = {name: getattr(encoder_config, name) for name in wanted}

        def record(module, module_args, module_kwargs, output):
            if module_kwargs.get("input_ids") is input_ids and not recorded:
                recorded.append(output)

        handle = self.text_encoder.register_forward_hook(record, with_kwargs=True)
        try:
            for name, value in wanted.items():
                setattr(encoder_config, name, value)
            output = forward(self, input_ids, *args, **kwargs)
        finally:
            handle.remove()
            for name, value in previous.items():
                setattr(encoder_config, name, value)
        if not recorded:
            raise RuntimeError(
                f"{type(self).__name__}'s forward never ran its text encoder on input_ids (keyword input_ids=)"
            )
        # Item assignment, so that the tuple of `return_dict=False` holds them too.
        if wanted["output_hidden_states"]:
            output["hidden_states"] = recorded[0].hidden_states
        if wanted["output_attentions"] and recorded[0].attentions is not None:
            output["attentions"] = recorded[0].attentions
        return output

    return wrapper


# `from_pretrained`'s arguments that say where a checkpoint's files come from, and those that
# `from_backbones` also passes on to loading the backbones.
HUB_ARGUMENTS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download", "proxies")
BACKBONE_LOADING_ARGUMENTS = (*HUB_ARGUMENTS, "trust_remote_code", "attn_implementation", "dtype")


def class_reference(cls: type) -> str:
    """`module.Class` as `auto_map` and `custom_pipelines` name a class of a saved folder's code."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
