"""Configuration of the text-only entity-marker baseline."""

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
