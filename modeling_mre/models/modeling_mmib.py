"""
MMIB: multimodal representation learning with an information bottleneck (Cui et al., TASLP 2024,
arXiv 2304.02328), following the released code (cuishiyao96/MMIB, `models/model.py`).

Text tokens and image vectors each go through a variational encoder (mean and log-variance from
attention blocks, KL to N(0, I)); a discriminator aligns the sampled text and image vectors
(matched pairs against in-batch shifted ones); image queries then read the text and the text reads
the result back, and the states at `<s>` and `<o>` are classified. The same representation tags the
words of a post for MNER (`modeling_mmib_ner.py`).
"""

from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import can_return_tuple

from .configuration_mmib import MMIBConfig
from .layers_mre import (
    build_text_encoder,
    eager_cross_attention,
    gaussian_sample_and_kl,
    pool_entity_pair,
    width_projection,
)
from .modeling_mre import MethodPaper, RelationExtractionOutput, returns_text_encoder_states
from .visual_mre import MREVisualModel, VisualInputs


@dataclass
class MMIBOutput(RelationExtractionOutput):
    """
    Args:
        alignment_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Discriminator loss of the alignment regulariser (unweighted).
        text_kl_loss (`torch.FloatTensor` of shape `()`, *optional*):
            KL of the text posterior to N(0, I), mean over real tokens and dimensions (unweighted).
        image_kl_loss (`torch.FloatTensor` of shape `()`, *optional*):
            KL of the image posterior to N(0, I), mean over visual slots and dimensions (unweighted).
    """

    alignment_loss: torch.FloatTensor | None = None
    text_kl_loss: torch.FloatTensor | None = None
    image_kl_loss: torch.FloatTensor | None = None


class MMIBAttentionBlock(nn.Module):
    """
    MMIB's `CrossAttention`: multi-head attention whose query/key/value projections have no bias,
    then `LN(query + attention)` and `LN(x + Linear(x))`.
    """

    is_causal = False  # read by transformers' attention functions

    def __init__(self, config: MMIBConfig):
        super().__init__()
        self.config = config  # its attention implementation, read at each call
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_dropout
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch_size, length, hidden = states.shape
        return states.view(batch_size, length, self.num_heads, hidden // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key_value: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        # query (batch, q_len, hidden), key_value (batch, kv_len, hidden), key_mask (batch, kv_len) bool.
        # The released code builds its mask as (batch, 1, len, 1), which blanks padded *query* rows
        # and lets every query attend to padding; masking padded keys makes the output independent
        # of how much a batch is padded.
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_cross_attention
        )
        attention, _ = attention_interface(
            self,
            self._split_heads(self.query(query)),
            self._split_heads(self.key(key_value)),
            self._split_heads(self.value(key_value)),
            key_mask[:, None, None, :],
            dropout=self.dropout if self.training else 0.0,
            scaling=(self.query.out_features // self.num_heads) ** -0.5,
        )  # (batch, q_len, heads, head_dim)
        attention = attention.flatten(2)  # (batch, q_len, hidden)
        states = self.attention_norm(query + self.output(attention))
        return self.output_norm(states + self.dense(states))


class MMIBVariationalEncoder(nn.Module):
    """Gaussian posterior over a sequence: mean and log-variance each from a self-attention block."""

    def __init__(self, config: MMIBConfig):
        super().__init__()
        self.mean = MMIBAttentionBlock(config)
        self.log_variance = MMIBAttentionBlock(config)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # states (batch, len, hidden), mask (batch, len) bool -> sample z and its KL to N(0, I)
        mean = self.mean(states, states, mask)
        log_variance = self.log_variance(states, states, mask)
        # The KL is a mean over real positions only: the released code also averages over padding.
        return gaussian_sample_and_kl(mean, log_variance, mask, self.training)


class MMIBPreTrainedModel(MREVisualModel):
    """
    MMIB's representation, which its relation and entity heads share: text tokens and visual slots
    (whole image, object crops, an object tail) through the variational encoders, aligned by the
    discriminator, then fused. Images and object crops may be absent per example: a learned "no image"
    vector takes the whole image's place (never a blank picture read as evidence), absent crops are
    masked out, and examples without an image do not enter the alignment loss.
    """

    paper = MethodPaper(
        title="MMIB (Cui et al., TASLP 2024)",
        citation="""@article{cui2024mmib,
  title   = {Enhancing Multimodal Entity and Relation Extraction with Variational Information Bottleneck},
  author  = {Cui, Shiyao and others},
  journal = {IEEE/ACM Transactions on Audio, Speech, and Language Processing},
  year    = {2024},
  eprint  = {2304.02328},
  archivePrefix = {arXiv}
}""",
        code_url="https://github.com/cuishiyao96/MMIB",
    )
    visual_features = "pooled"
    auxiliary_losses = {
        "alignment_loss": "alignment_loss_weight",
        "text_kl_loss": "text_kl_weight",
        "image_kl_loss": "image_kl_weight",
    }

    def build_representation(self):
        config = self.config
        hidden_size = config.hidden_size
        self.text_encoder = build_text_encoder(config.text_config)
        self.build_visual_path(hidden_size)
        self.text_projection = width_projection(config.text_config.hidden_size, hidden_size)

        self.text_variational = MMIBVariationalEncoder(config)
        self.image_variational = MMIBVariationalEncoder(config)
        # "concat" score function of the released code: a 2H -> H layer scored element-wise.
        self.discriminator = nn.Linear(2 * hidden_size, hidden_size)
        self.image_to_text = MMIBAttentionBlock(config)
        self.text_to_image = MMIBAttentionBlock(config)

    def alignment_loss(self, text_vector: torch.Tensor, image_vector: torch.Tensor) -> torch.Tensor:
        """Discriminator loss: matched (text, image) pairs scored 1, image vectors shifted in the batch 0."""
        positive = self.discriminator(torch.cat([text_vector, image_vector], dim=-1))
        loss = F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive))
        for shift in range(1, self.config.num_negative_shifts + 1):
            if shift % text_vector.shape[0] == 0:  # a shift that returns every image to its own text
                continue
            negative = self.discriminator(torch.cat([text_vector, image_vector.roll(shift, dims=0)], dim=-1))
            loss = loss + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))
        return loss

    def represent(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None,
        token_type_ids: torch.LongTensor | None,
        visual_inputs: VisualInputs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The fused text states (batch, seq_len, hidden) and the three regularisers, unweighted."""
        batch_size = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_mask = attention_mask.bool()  # (batch, seq_len)

        text_states = self.encode_text(input_ids, attention_mask, token_type_ids)  # (batch, seq_len, text_hidden)
        text_states = self.text_projection(text_states)  # (batch, seq_len, hidden)
        visual = self.encode_images(batch_size, self.config.num_object_crops, **visual_inputs)
        # slots = whole image [+ tail object] + crops: (batch, slots, hidden), (batch, slots), (batch,)
        image_states, image_slot_mask, has_image = visual.states, visual.mask, visual.has_image

        # Refinement regulariser: variational bottleneck on each modality.
        text_sample, text_kl = self.text_variational(text_states, text_mask)  # (batch, seq_len, hidden)
        image_sample, image_kl = self.image_variational(image_states, image_slot_mask)  # (batch, slots, hidden)

        # Alignment regulariser on the first text token and the whole image, for examples with one.
        if has_image.any():
            alignment_loss = self.alignment_loss(text_sample[has_image, 0], image_sample[has_image, 0])
        else:
            alignment_loss = text_sample.new_zeros(())

        # Fusion: image slots read the text, then the text reads the image-informed slots.
        image_read_text = self.image_to_text(image_sample, text_sample, text_mask)  # (batch, slots, hidden)
        fused_text = self.text_to_image(text_sample, image_read_text, image_slot_mask)  # (batch, seq_len, hidden)
        return fused_text, {"alignment_loss": alignment_loss, "text_kl_loss": text_kl, "image_kl_loss": image_kl}


class MMIBForRelationExtraction(MMIBPreTrainedModel):
    """
    MMIB for relation extraction: the fused states at `<s>` and `<o>`, concatenated, classified. An
    object tail (MORE) adds a visual slot after the whole image: its crop's state plus a projection of
    its box features, which the text (and its `<o>` marker) reads in the fusion.
    """

    config_class = MMIBConfig
    method_name = "mmib"

    def __init__(self, config: MMIBConfig):
        super().__init__(config)
        self.build_representation()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **visual_inputs: Unpack[VisualInputs],
    ) -> MMIBOutput:
        r"""
        visual_inputs ([`VisualInputs`], *optional*):
            The whole image, object crops and object tail of each example (pixels or cached
            features), any of them absent; see `visual_mre.VisualInputs`.
        """
        fused_text, regularisers = self.represent(input_ids, attention_mask, token_type_ids, visual_inputs)
        pair_representation = pool_entity_pair(fused_text, input_ids, self.config)  # (batch, 2 * hidden)
        logits = self.classifier(self.dropout(pair_representation))  # (batch, num_labels)

        loss = classification_loss = None
        if labels is not None:
            classification_loss = F.cross_entropy(logits, labels, reduction=self.config.classification_loss_reduction)
            loss = self.combine_losses(classification_loss, **regularisers)
        return MMIBOutput(
            loss=loss,
            classification_loss=classification_loss,
            logits=logits,
            pair_representation=pair_representation,
            **regularisers,
        )
