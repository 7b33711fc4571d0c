"""
MMIB: multimodal representation learning with an information bottleneck (Cui et al., TASLP 2024,
arXiv 2304.02328), following the released code (cuishiyao96/MMIB, `models/model.py`).

Text tokens and image vectors each go through a variational encoder (mean and log-variance from
attention blocks, KL to N(0, I)); a discriminator aligns the sampled text and image vectors
(matched pairs against in-batch shifted ones); image queries then read the text and the text reads
the result back, and the states at `<s>` and `<o>` are classified.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from transformers import AutoModel

from .configuration_mmib import MMIBConfig
from .modeling_mre import (
    MREPreTrainedModel,
    RelationExtractionOutput,
    build_text_encoder,
    pool_entity_pair,
    pool_image_features,
    vision_feature_size,
)


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

    def __init__(self, config: MMIBConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}"
            )
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
        attention = F.scaled_dot_product_attention(
            self._split_heads(self.query(query)),
            self._split_heads(self.key(key_value)),
            self._split_heads(self.value(key_value)),
            attn_mask=key_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )  # (batch, heads, q_len, head_dim)
        attention = attention.transpose(1, 2).flatten(2)  # (batch, q_len, hidden)
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
        if self.training:
            sample = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
        else:
            sample = mean
        kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp())  # (batch, len, hidden)
        # Mean over real positions only: the released code also averages over padding.
        kl = (kl * mask[..., None]).sum() / (mask.sum() * kl.shape[-1]).clamp(min=1)
        return sample, kl


class MMIBForRelationExtraction(MREPreTrainedModel):
    """
    MMIB for relation extraction. Images and object crops may be absent per example: a learned
    "no image" vector takes the whole image's place (never a blank picture read as evidence),
    absent crops are masked out, and examples without an image do not enter the alignment loss.
    An object tail (MORE) adds a visual slot after the whole image: its crop's state plus a
    projection of its box features, which the text (and its `<o>` marker) reads in the fusion.
    """

    config_class = MMIBConfig

    def __init__(self, config: MMIBConfig):
        super().__init__(config)
        hidden_size = config.hidden_size
        self.text_encoder = build_text_encoder(config.text_config)
        self.vision_encoder = AutoModel.from_config(config.vision_config)
        self.text_projection = (
            nn.Linear(config.text_config.hidden_size, hidden_size)
            if config.text_config.hidden_size != hidden_size
            else nn.Identity()
        )
        self.image_projection = nn.Linear(vision_feature_size(config.vision_config), hidden_size)
        self.no_image_embedding = nn.Embedding(1, hidden_size)
        # An object tail's box features [cx, cy, w, h, w * h] (MOREformer's), added to its crop's
        # state; the bias tells the tail's slot from the other crops.
        self.tail_box_projection = nn.Linear(5, hidden_size) if config.object_tails else None

        self.text_variational = MMIBVariationalEncoder(config)
        self.image_variational = MMIBVariationalEncoder(config)
        # "concat" score function of the released code: a 2H -> H layer scored element-wise.
        self.discriminator = nn.Linear(2 * hidden_size, hidden_size)
        self.image_to_text = MMIBAttentionBlock(config)
        self.text_to_image = MMIBAttentionBlock(config)

        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * hidden_size, config.num_labels)
        self.post_init()
        self._freeze_vision_encoder()

    def get_image_features(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """
        Pooled vision-encoder features of shape (num_images, feature) for pixel values of shape
        (num_images, 3, height, width): what `forward` accepts as `image_features` and
        `crop_features` in place of pixels (the input of `image_projection`).
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision_encoder):
            return pool_image_features(self.vision_encoder(pixel_values=pixel_values))

    def encode_images(
        self,
        pixel_values: torch.FloatTensor | None,
        image_mask: torch.BoolTensor | None,
        crop_pixel_values: torch.FloatTensor | None,
        crop_mask: torch.BoolTensor | None,
        batch_size: int,
        image_features: torch.FloatTensor | None = None,
        crop_features: torch.FloatTensor | None = None,
        tail_mask: torch.BoolTensor | None = None,
        tail_box_features: torch.FloatTensor | None = None,
        tail_pixel_values: torch.FloatTensor | None = None,
        tail_features: torch.FloatTensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Visual slots [whole image; tail object (object tails only); object crops] of shape (batch,
        slots, hidden), which slots are real (batch, slots), and which examples have their whole
        image (batch,). The pictures come either as pixels or as their precomputed
        `get_image_features` (never a mix of the two).
        """
        if tail_mask is not None and self.tail_box_projection is None:
            raise ValueError(
                "this model was built for text tails only (config.object_tails=False) and has no layers for an "
                "object tail: train one with object_tails=True (train_accelerate.py does on MORE)"
            )
        if tail_mask is not None and tail_box_features is None:
            raise ValueError("object tails (tail_mask) need their tail_box_features, as MREProcessor gives them")
        precomputed = any(t is not None for t in (image_features, crop_features, tail_features))
        if precomputed and any(t is not None for t in (pixel_values, crop_pixel_values, tail_pixel_values)):
            raise ValueError("give pixel values or precomputed image features, not both")
        whole_images = image_features if precomputed else pixel_values
        crops = crop_features if precomputed else crop_pixel_values
        tail_crops = tail_features if precomputed else tail_pixel_values
        device = self.no_image_embedding.weight.device
        feature_size = self.image_projection.in_features
        given = [t for t in (whole_images, crops, tail_crops) if t is not None]
        if precomputed and any(t.shape[-1] != feature_size for t in given):
            raise ValueError(f"precomputed image features must have {feature_size} values, as get_image_features gives")

        if whole_images is None:
            has_image = torch.zeros(batch_size, dtype=torch.bool, device=device)
        elif image_mask is None:
            has_image = torch.ones(batch_size, dtype=torch.bool, device=device)
        else:
            has_image = image_mask.bool()
        # Each group of slots: its pictures (batch, n, ...) or None, and which of them exist (batch, n).
        groups = [(whole_images[:, None] if whole_images is not None else None, has_image[:, None])]
        if tail_mask is not None:
            # The tail's crop is cut from the image, so it exists only where the image does.
            tail_crop_present = tail_mask.bool() & has_image if tail_crops is not None else torch.zeros_like(has_image)
            groups.append((tail_crops[:, None] if tail_crops is not None else None, tail_crop_present[:, None]))
        if crops is not None and self.config.num_object_crops > 0:
            crops = crops[:, : self.config.num_object_crops]
            present_crops = crop_mask[:, : self.config.num_object_crops].bool() if crop_mask is not None else None
            if present_crops is None:
                present_crops = torch.ones(crops.shape[:2], dtype=torch.bool, device=crops.device)
            groups.append((crops, present_crops))
        present = torch.cat([group_present for _, group_present in groups], dim=1)  # (batch, slots)

        # Only pictures that exist go through the encoder (or are read from the precomputed features),
        # in one call, then each group's share is scattered back to its slots.
        existing = [pictures[group_present] for pictures, group_present in groups if pictures is not None]
        slot_features = torch.zeros(*present.shape, feature_size, device=device)
        if present.any():
            pictures = torch.cat(existing)  # (num_present, 3, height, width) or (num_present, feature)
            features = pictures if precomputed else self.get_image_features(pictures)
            slot_features = slot_features.to(features.dtype)
            first_slot, first_feature = 0, 0
            for _, group_present in groups:
                num_slots, num_features = group_present.shape[1], int(group_present.sum())
                group_features = features[first_feature : first_feature + num_features]
                slot_features[:, first_slot : first_slot + num_slots][group_present] = group_features
                first_slot, first_feature = first_slot + num_slots, first_feature + num_features
        slot_states = self.image_projection(slot_features)  # (batch, slots, hidden)
        slot_states = slot_states * present[..., None]

        # Without its whole image an example reads the learned "no image" vector in slot 0, so
        # absence is explicit and attention over the slots always has a key.
        no_image = self.no_image_embedding.weight[0].to(slot_states.dtype)
        whole_image = torch.where(has_image[:, None], slot_states[:, 0], no_image)
        slot_states = torch.cat([whole_image[:, None], slot_states[:, 1:]], dim=1)
        slot_mask = present.clone()
        slot_mask[:, 0] = True
        if tail_mask is not None:
            # The tail slot is real for every object tail: its box places it even without the picture.
            box = self.tail_box_projection(tail_box_features.to(slot_states.dtype))  # (batch, hidden)
            tail_slot = slot_states[:, 1] + box * tail_mask[:, None]
            slot_states = torch.cat([slot_states[:, :1], tail_slot[:, None], slot_states[:, 2:]], dim=1)
            slot_mask[:, 1] = tail_mask.bool()
        return slot_states, slot_mask, has_image

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

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        image_mask: torch.BoolTensor | None = None,
        crop_pixel_values: torch.FloatTensor | None = None,
        crop_mask: torch.BoolTensor | None = None,
        image_features: torch.FloatTensor | None = None,
        crop_features: torch.FloatTensor | None = None,
        tail_mask: torch.BoolTensor | None = None,
        tail_box_features: torch.FloatTensor | None = None,
        tail_pixel_values: torch.FloatTensor | None = None,
        tail_features: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> MMIBOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`, *optional*):
            Whole images; rows where `image_mask` is False are ignored.
        image_mask (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
            Which examples have an image. Defaults to all when `pixel_values` is given.
        crop_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_crops, 3, height, width)`, *optional*):
            Visual-grounding object crops; `crop_mask` says which exist.
        image_features (`torch.FloatTensor` of shape `(batch_size, feature_size)`, *optional*):
            The whole images' `get_image_features`, instead of `pixel_values` (as `inputs_embeds`
            stands for `input_ids`): with a frozen vision encoder they can be computed once per
            image (`modeling_mre.feature_cache`) and reused every epoch. `image_mask` applies as above.
        crop_features (`torch.FloatTensor` of shape `(batch_size, num_crops, feature_size)`, *optional*):
            The crops' `get_image_features`, instead of `crop_pixel_values`; `crop_mask` applies.
        tail_mask (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
            Which examples' tail is an object in the image (MORE) rather than a span of the text. Each
            such tail gets a visual slot of its own: its box features, plus its crop where the image exists.
        tail_box_features (`torch.FloatTensor` of shape `(batch_size, 5)`, *optional*):
            `[cx, cy, w, h, w * h]` of each object tail's normalised box; required with `tail_mask`.
        tail_pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`, *optional*):
            The object tails' crops, read where `tail_mask` and the image's presence are both True.
        tail_features (`torch.FloatTensor` of shape `(batch_size, feature_size)`, *optional*):
            The tail crops' `get_image_features`, instead of `tail_pixel_values`.
        """
        batch_size = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_mask = attention_mask.bool()  # (batch, seq_len)

        text_states = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state  # (batch, seq_len, text_hidden)
        text_states = self.text_projection(text_states)  # (batch, seq_len, hidden)
        image_states, image_slot_mask, has_image = self.encode_images(
            pixel_values,
            image_mask,
            crop_pixel_values,
            crop_mask,
            batch_size,
            image_features,
            crop_features,
            tail_mask,
            tail_box_features,
            tail_pixel_values,
            tail_features,
        )  # (batch, slots, hidden), (batch, slots), (batch,): slots = whole image [+ tail object] + crops

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

        pair_representation = pool_entity_pair(fused_text, input_ids, self.config)  # (batch, 2 * hidden)
        logits = self.classifier(self.dropout(pair_representation))  # (batch, num_labels)

        loss = classification_loss = None
        if labels is not None:
            classification_loss = F.cross_entropy(logits, labels, reduction=self.config.classification_loss_reduction)
            loss = (
                classification_loss
                + self.config.alignment_loss_weight * alignment_loss
                + self.config.text_kl_weight * text_kl
                + self.config.image_kl_weight * image_kl
            )
        return MMIBOutput(
            loss=loss,
            classification_loss=classification_loss,
            logits=logits,
            pair_representation=pair_representation,
            alignment_loss=alignment_loss,
            text_kl_loss=text_kl,
            image_kl_loss=image_kl,
        )
