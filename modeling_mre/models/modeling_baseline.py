"""Text-only entity-marker baseline: the floor every multimodal method must beat."""

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .configuration_baseline import BaselineConfig
from .layers_mre import build_text_encoder, pool_entity_pair
from .modeling_mre import (
    MethodPaper,
    MREPreTrainedModel,
    RelationExtractionOutput,
    returns_text_encoder_states,
)


class BaselineForRelationExtraction(MREPreTrainedModel):
    """
    The text encoder reads the sentence with `<s> </s> <o> </o>` around the entities; the hidden
    states at `<s>` and `<o>` are concatenated and classified by one linear layer. Images are
    accepted and ignored, so the same batches feed every method.
    """

    config_class = BaselineConfig
    method_name = "baseline"
    paper = MethodPaper(title="Text-only entity-marker baseline")

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * config.text_config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> RelationExtractionOutput:
        text_states = self.encode_text(input_ids, attention_mask, token_type_ids)  # (batch_size, seq_len, text_hidden)
        pair_representation = pool_entity_pair(text_states, input_ids, self.config)  # (batch_size, 2 * text_hidden)
        logits = self.classifier(self.dropout(pair_representation))  # (batch_size, num_labels)

        loss = classification_loss = None
        if labels is not None:
            classification_loss = nn.functional.cross_entropy(logits, labels)
            loss = self.combine_losses(classification_loss)
        return RelationExtractionOutput(
            loss=loss, classification_loss=classification_loss, logits=logits, pair_representation=pair_representation
        )
