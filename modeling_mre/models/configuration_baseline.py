"""Configurations of the text-only baselines: entity markers for relations, BERT-CRF for entities."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_mre import MREConfig


@strict
class BaselineConfig(MREConfig):
    r"""
    Configuration of [`BaselineForRelationExtraction`]: the text encoder's hidden states at the
    `<s>` and `<o>` markers, concatenated, into a linear classifier. It has no vision encoder, so
    `vision_config` stays `None`: the floor that every multimodal method must beat.
    """

    model_type = "mre-baseline"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}


@strict
class BaselineNERConfig(MREConfig):
    r"""
    Configuration of [`BaselineForTokenClassification`]: the text encoder's state at each word's first
    subword, a linear layer and a CRF over the words' tags (BERT-CRF, the text-only floor of the MNER
    papers). `num_labels`, `id2label` and `label2id` are the BIO tags.

    Args:
        use_crf (`bool`, *optional*, defaults to `True`):
            Decode the words' tags jointly with a CRF; `False` classifies each word alone (BERT-softmax).
        classification_loss_reduction (`str`, *optional*, defaults to `"mean"`):
            The tagging loss averaged over sentences (`"mean"`, as HVPNeT's NER code) or summed.
    """

    model_type = "mre-baseline-ner"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    use_crf: bool = True
    classification_loss_reduction: Literal["sum", "mean"] = "mean"
