"""Text-only BERT-CRF: the floor every multimodal entity recognizer must beat."""

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .configuration_baseline import BaselineNERConfig
from .layers_mre import build_text_encoder
from .modeling_mre import MethodPaper, MREPreTrainedModel, returns_text_encoder_states
from .modeling_ner import EntityRecognitionMixin, EntityRecognitionOutput


class BaselineForTokenClassification(EntityRecognitionMixin, MREPreTrainedModel):
    """
    BERT-CRF: the text encoder's state at each word's first subword, a linear layer and a CRF over the
    words' BIO tags. Images are accepted and ignored, as by the relation baseline.
    """

    config_class = BaselineNERConfig
    method_name = "baseline"
    paper = MethodPaper(title="Text-only BERT-CRF baseline")
    ablations = {"CRF": "use_crf"}

    def __init__(self, config: BaselineNERConfig):
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.build_tagger(config.text_config.hidden_size)
        self.post_init()

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        first_subword_mask: torch.BoolTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> EntityRecognitionOutput:
        r"""
        first_subword_mask (`torch.BoolTensor` of shape `(batch_size, seq_len)`):
            Where each word's first subword is (`MNERProcessor` gives it); the words are read there.
        labels (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
            Each word's tag id at its first subword, -100 elsewhere.
        """
        text_states = self.encode_text(input_ids, attention_mask, token_type_ids)  # (batch, seq_len, text_hidden)
        logits, classification_loss = self.tag(self.dropout(text_states), first_subword_mask.bool(), labels)
        loss = self.combine_losses(classification_loss) if classification_loss is not None else None
        return EntityRecognitionOutput(loss=loss, classification_loss=classification_loss, logits=logits)
