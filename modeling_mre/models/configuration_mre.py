"""Configuration shared by every relation-extraction method of modeling_mre."""

import re

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# MNRE's relation names carry the entity types: "/per/org/member_of" -> ("per", "org").
TYPED_RELATION = re.compile(r"^/(?P<head>[^/]+)/(?P<tail>[^/]+)/")


def relation_entity_types(relation: str) -> tuple[str, str] | None:
    """The (head, tail) entity types a relation's name carries, or None (`None`, untyped names)."""
    match = TYPED_RELATION.match(relation)
    return (match["head"], match["tail"]) if match else None


def relation_type_indices(config, relation_names: list[str] | None = None) -> list[list[int]]:
    """
    Per relation (`relation_names`, by default `config`'s in id order), its head and tail types' indices in
    `config.entity_types`; -1 where the name gives none.
    """
    type_index = {name: i for i, name in enumerate(config.entity_types)}
    if relation_names is None:
        relation_names = [config.id2label[label] for label in range(config.num_labels)]
    pair_types = [relation_entity_types(name) or (None, None) for name in relation_names]
    return [[type_index.get(t, -1) for t in types] for types in pair_types]


def entity_types_of(relations) -> list[str]:
    """Every entity type the relation names carry, sorted."""
    return sorted({t for typed in map(relation_entity_types, relations) if typed for t in typed})


@strict
class MREConfig(PreTrainedConfig):
    r"""
    Base configuration of a multimodal relation-extraction model: a text encoder and a vision
    encoder (any transformers model, described by its own config) plus what every method needs
    to read the entity pair. Each method subclasses it with its own `model_type` and fields.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the text encoder (BERT, RoBERTa, MiniLM, ...). Defaults to `bert-base-uncased`'s shape.
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the vision encoder (CLIP vision, ViT, ResNet, MobileNetV2). Defaults to CLIP ViT-B/32's shape.
        head_start_token_id (`int`, *optional*):
            Id of the `<s>` marker opening the head entity; its hidden state represents the head.
        tail_start_token_id (`int`, *optional*):
            Id of the `<o>` marker opening the tail entity.
        head_end_token_id (`int`, *optional*):
            Id of the `</s>` marker closing the head entity: methods that read the entity's span need it.
        tail_end_token_id (`int`, *optional*):
            Id of the `</o>` marker closing the tail entity.
        classifier_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the pair representation before the relation classifier.
        freeze_vision_encoder (`bool`, *optional*, defaults to `True`):
            Keep the vision encoder's weights and normalisation statistics fixed (MMIB detaches its
            ResNet; HVPNeT never updates it).
        object_tails (`bool`, *optional*, defaults to `False`):
            Whether tails may be objects in the image (MORE): methods that read an object's box then
            build the layers for it. Off for text tails only (MNRE), so no layer goes untrained.
        vision_feature_layers (`list[int]`, *optional*):
            The vision encoder's hidden states read by a method whose `visual_features` is `"levels"`
            (indices into `hidden_states`, as Llava's `vision_feature_layer`: the embeddings, then
            each stage or layer).
        vision_grid_size (`int`, *optional*):
            A CNN's feature maps are average-pooled to this many rows and columns before they become
            patch or level tokens; `None` keeps each map's own grid. Transformer states are kept as they are.
    """

    model_type = "mre"
    _auto_class = "AutoConfig"  # saved with its code, also when loaded as remote code
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs={"patch_size": 32},
        ),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    head_start_token_id: int | None = None
    tail_start_token_id: int | None = None
    head_end_token_id: int | None = None
    tail_end_token_id: int | None = None
    classifier_dropout: float = 0.1
    freeze_vision_encoder: bool = True
    object_tails: bool = False
    vision_feature_layers: list[int] | None = None
    vision_grid_size: int | None = None

    def fill_fusion_shape(self):
        """For a method with fusion layers (`hidden_size`, `num_attention_heads` fields): unset, they take the text encoder's."""
        if self.hidden_size is None:
            self.hidden_size = self.text_config.hidden_size
        if self.num_attention_heads is None:
            self.num_attention_heads = self.text_config.num_attention_heads

    def validate_architecture(self):
        super().validate_architecture()
        hidden_size, num_heads = getattr(self, "hidden_size", None), getattr(self, "num_attention_heads", None)
        if hidden_size and num_heads and hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads}")
