"""
MMIB for multimodal named entity recognition (Cui et al., TASLP 2024: Twitter-2015 and Twitter-2017):
the representation of `modeling_mmib.py`, each word tagged at its first subword through a CRF.
"""

from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from transformers.utils import can_return_tuple

from .configuration_mmib import MMIBNERConfig
from .modeling_mmib import MMIBPreTrainedModel
from .modeling_mre import returns_text_encoder_states
from .modeling_ner import EntityRecognitionMixin, EntityRecognitionOutput
from .visual_mre import VisualInputs


@dataclass
class MMIBTokenClassificationOutput(EntityRecognitionOutput):
    """
    Args:
        alignment_loss, text_kl_loss, image_kl_loss (`torch.FloatTensor` of shape `()`, *optional*):
            MMIB's regularisers, as in [`MMIBOutput`] (unweighted).
    """

    alignment_loss: torch.FloatTensor | None = None
    text_kl_loss: torch.FloatTensor | None = None
    image_kl_loss: torch.FloatTensor | None = None


class MMIBForTokenClassification(EntityRecognitionMixin, MMIBPreTrainedModel):
    """
    MMIB for multimodal NER (the paper's Twitter-2015/2017 task): each word's fused state at its first
    subword, a linear layer and a CRF over the words' BIO tags, with the same regularisers as for
    relations. A tweet without its image reads the "no image" slot.
    """

    config_class = MMIBNERConfig
    method_name = "mmib"
    ablations = {"CRF": "use_crf"}

    def __init__(self, config: MMIBNERConfig):
        super().__init__(config)
        self.build_representation()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.build_tagger(config.hidden_size)
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
        **visual_inputs: Unpack[VisualInputs],
    ) -> MMIBTokenClassificationOutput:
        r"""
        first_subword_mask (`torch.BoolTensor` of shape `(batch_size, seq_len)`):
            Where each word's first subword is (`MNERProcessor` gives it); the words are read there.
        labels (`torch.LongTensor` of shape `(batch_size, seq_len)`, *optional*):
            Each word's tag id at its first subword, -100 elsewhere.
        visual_inputs ([`VisualInputs`], *optional*):
            The tweet's image and object crops (pixels or cached features), any of them absent.
        """
        fused_text, regularisers = self.represent(input_ids, attention_mask, token_type_ids, visual_inputs)
        logits, classification_loss = self.tag(self.dropout(fused_text), first_subword_mask.bool(), labels)
        loss = self.combine_losses(classification_loss, **regularisers) if classification_loss is not None else None
        return MMIBTokenClassificationOutput(
            loss=loss, classification_loss=classification_loss, logits=logits, **regularisers
        )
