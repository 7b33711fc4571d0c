"""
WMAJL: watcher-mediated attention joint learning for multimodal relation extraction (ICASSP 2025,
OpenReview yWCMD7BmFq). Neither code nor full text is public; this follows the abstract's four ideas,
each a part that `WMAJLConfig` switches off (the model card lists what is the paper's and what ours):

1. Watcher fusion: K learnable watchers read the text and the image tokens and write back to each,
   so the two modalities exchange information only through them and each keeps its own stream.
2. Alignment against modality noise: a variational constraint on both streams (KL to N(0, I)) and a
   contrastive (InfoNCE) alignment of the pooled text and image samples across the batch.
3. Relative position kept through the encoder: an auxiliary NER task that finds the head and tail in
   the text without its entity markers, and output supervision of intermediate text layers, each
   read by a classifier of its own.
4. A label-centric self-information loss: InfoNCE between each pair and learnable label embeddings.
"""

from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import can_return_tuple

from .configuration_mre import relation_type_indices
from .configuration_wmajl import WMAJLConfig
from .layers_mre import (
    CrossAttentionLayer,
    build_text_encoder,
    entity_markers,
    entity_span_mask,
    gaussian_sample_and_kl,
    masked_mean,
    pool_entity_pair,
    width_projection,
)
from .modeling_mre import MethodPaper, RelationExtractionOutput, returns_text_encoder_states
from .visual_mre import MREVisualModel, VisualInputs


# The log-variance head's output is offset so that a posterior starts narrow (std e^-2 = 0.14): unit
# noise on every state would drown the pretrained text encoder's signal before the heads learn anything.
INITIAL_LOG_VARIANCE = -4.0


@dataclass
class WMAJLOutput(RelationExtractionOutput):
    """
    Every auxiliary loss is unweighted; a part switched off in the config returns zero for its own.

    Args:
        kl_loss (`torch.FloatTensor` of shape `()`, *optional*):
            KL of the text and image posteriors to N(0, I), summed over the two modalities.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Symmetric InfoNCE between pooled text and image samples of the examples with an image.
        ner_loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            Auxiliary NER loss: the tags of the head and tail (`O`, `B-<type>`, `I-<type>`, types in
            `config.entity_types`) over the real tokens of the text with its entity markers removed.
        intermediate_loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            Mean relation cross-entropy of the supervised intermediate text layers.
        label_loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            Label-centric self-information (InfoNCE) loss of the pair representations.
    """

    kl_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    ner_loss: torch.FloatTensor | None = None
    intermediate_loss: torch.FloatTensor | None = None
    label_loss: torch.FloatTensor | None = None


def info_nce(queries: torch.Tensor, keys: torch.Tensor, targets: torch.LongTensor, temperature: float) -> torch.Tensor:
    """
    InfoNCE over cosine similarities: each query (n, d) against every key (k, d), its positive being
    `keys[targets]`: cross-entropy of similarities / temperature, mean over queries.
    """
    similarities = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T  # (n, k)
    return F.cross_entropy(similarities / temperature, targets)


class WMAJLVariationalHead(nn.Module):
    """A diagonal Gaussian per token: mean and log-variance from linear maps of its state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.mean = nn.Linear(hidden_size, hidden_size)
        self.log_variance = nn.Linear(hidden_size, hidden_size)

    def forward(self, states: torch.Tensor, mask: torch.BoolTensor) -> tuple[torch.Tensor, torch.Tensor]:
        # states (batch, len, hidden) -> a sample of the same shape and its KL, shape ()
        log_variance = self.log_variance(states) + INITIAL_LOG_VARIANCE
        return gaussian_sample_and_kl(self.mean(states), log_variance, mask, self.training)


class WMAJLWatcherLayer(nn.Module):
    """
    One round of mediation: the watchers read the text and the image together, then each stream
    reads the watchers. The last round does not write back to the image, which nothing reads after.
    """

    def __init__(self, config: WMAJLConfig, update_image: bool):
        super().__init__()
        arguments = (config, config.hidden_size, config.num_attention_heads, config.fusion_dropout)
        self.watchers_read = CrossAttentionLayer(*arguments)
        self.text_reads_watchers = CrossAttentionLayer(*arguments)
        self.image_reads_watchers = CrossAttentionLayer(*arguments) if update_image else None

    def forward(self, watchers, text, text_mask, image, image_mask):
        # watchers (batch, K, hidden), text (batch, seq_len, hidden), image (batch, tokens, hidden)
        watchers = self.watchers_read(
            watchers, torch.cat([text, image], dim=1), torch.cat([text_mask, image_mask], dim=1)
        )
        everyone = torch.ones(watchers.shape[:2], dtype=torch.bool, device=watchers.device)
        text = self.text_reads_watchers(text, watchers, everyone)
        if self.image_reads_watchers is not None:
            image = self.image_reads_watchers(image, watchers, everyone)
        return watchers, text, image


class WMAJLForRelationExtraction(MREVisualModel):
    """
    WMAJL for relation extraction, reading the text encoder's token states and the image's patch or
    grid tokens (whole image, crops, and an object tail's slot where present). The relation
    classifier reads `[<s>; <o>]` of the text stream after fusion. Gold labels enter only the losses:
    the NER tags' entity types come from the relation name's prefix in training, never at inference.
    """

    config_class = WMAJLConfig
    method_name = "wmajl"
    paper = MethodPaper(
        title="WMAJL (ICASSP 2025)",
        citation="""@inproceedings{wmajl2025,
  title     = {Watcher-Mediated Attention Joint Learning for Multimodal Relation Extraction},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year      = {2025},
  url       = {https://openreview.net/forum?id=yWCMD7BmFq}
}""",
    )
    visual_features = "patches"
    auxiliary_losses = {
        "kl_loss": "kl_weight",
        "contrastive_loss": "contrastive_weight",
        "ner_loss": "ner_weight",
        "intermediate_loss": "intermediate_weight",
        "label_loss": "label_loss_weight",
    }
    ablations = {
        "watcher fusion": "use_watcher_fusion",
        "modality alignment": "use_modality_alignment",
        "position supervision": "use_position_supervision",
        "label loss": "use_label_loss",
    }

    def __init__(self, config: WMAJLConfig):
        super().__init__(config)
        hidden_size = config.hidden_size
        self.text_encoder = build_text_encoder(config.text_config)
        self.build_visual_path(hidden_size)
        self.text_projection = width_projection(config.text_config.hidden_size, hidden_size)
        if config.use_modality_alignment:
            self.text_variational = WMAJLVariationalHead(hidden_size)
            self.image_variational = WMAJLVariationalHead(hidden_size)
        if config.use_watcher_fusion:
            self.watcher_tokens = nn.Embedding(config.num_watchers, hidden_size)
            self.fusion_layers = nn.ModuleList(
                WMAJLWatcherLayer(config, update_image=layer + 1 < config.num_fusion_layers)
                for layer in range(config.num_fusion_layers)
            )
        else:
            arguments = (config, hidden_size, config.num_attention_heads, config.fusion_dropout)
            self.fusion_layers = nn.ModuleList(
                CrossAttentionLayer(*arguments) for _ in range(config.num_fusion_layers)
            )
        if config.use_position_supervision:
            text_width = config.text_config.hidden_size
            self.ner_head = nn.Linear(text_width, 1 + 2 * len(config.entity_types))
            # Each supervised layer's states live in a space of their own: a classifier each.
            self.layer_classifiers = nn.ModuleList(
                nn.Linear(2 * text_width, config.num_labels) for _ in config.supervised_layers
            )
        if config.use_label_loss:
            self.label_embeddings = nn.Embedding(config.num_labels, 2 * hidden_size)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * hidden_size, config.num_labels)

        # (num_labels, 2): each relation's head and tail type index in config.entity_types, -1 if untyped.
        # Derived from the config, so not saved: `_init_weights` fills it again in `from_pretrained`.
        self.register_buffer("relation_entity_types", torch.tensor(relation_type_indices(config)), persistent=False)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self:
            init.copy_(self.relation_entity_types, torch.tensor(relation_type_indices(self.config)))

    def fuse(self, text, text_mask, image, image_mask) -> torch.Tensor:
        """The text stream after N rounds through the watchers (or, ablated, reading the image directly)."""
        if not self.config.use_watcher_fusion:
            for layer in self.fusion_layers:
                text = layer(text, image, image_mask)
            return text
        watchers = self.watcher_tokens.weight.to(text.dtype).expand(text.shape[0], -1, -1)  # (batch, K, hidden)
        for layer in self.fusion_layers:
            watchers, text, image = layer(watchers, text, text_mask, image, image_mask)
        return text

    def contrastive_loss(self, text_vectors, image_vectors, has_image) -> torch.Tensor:
        """Symmetric InfoNCE: each example's text against the batch's images and back; image-less examples left out."""
        text_vectors, image_vectors = text_vectors[has_image], image_vectors[has_image]
        if len(text_vectors) < 2:  # one pair has no negative to tell it from
            return text_vectors.new_zeros(())
        targets = torch.arange(len(text_vectors), device=text_vectors.device)
        temperature = self.config.contrastive_temperature
        return (
            info_nce(text_vectors, image_vectors, targets, temperature)
            + info_nce(image_vectors, text_vectors, targets, temperature)
        ) / 2

    def ner_tags(self, input_ids: torch.LongTensor, labels: torch.LongTensor) -> torch.BoolTensor:
        """
        The tags each token may take, (batch, seq_len, 1 + 2 * num_types): `O` outside the entities,
        `B-`/`I-` inside the head and tail spans (found from the markers), of the type the relation's
        name gives, or of any type where it gives none (`None`): the loss then sums over the types.
        """
        config = self.config
        num_types = len(config.entity_types)
        allowed = torch.zeros(*input_ids.shape, 1 + 2 * num_types, dtype=torch.bool, device=input_ids.device)
        entity = torch.zeros_like(input_ids, dtype=torch.bool)
        pair_types = self.relation_entity_types[labels]  # (batch, 2)
        spans = (
            (config.head_start_token_id, config.head_end_token_id, "<s>"),
            (config.tail_start_token_id, config.tail_end_token_id, "<o>"),
        )
        for role, (open_id, close_id, name) in enumerate(spans):
            inside = entity_span_mask(input_ids, open_id, close_id, name)  # (batch, seq_len)
            begins = inside & ~F.pad(inside[:, :-1], (1, 0))
            types = pair_types[:, role]
            type_choice = torch.where(  # (batch, num_types): the known type, or all of them
                (types >= 0)[:, None], F.one_hot(types.clamp(min=0), num_types).bool(), True
            )
            allowed[..., 1 : 1 + num_types] |= begins[..., None] & type_choice[:, None]
            allowed[..., 1 + num_types :] |= (inside & ~begins)[..., None] & type_choice[:, None]
            entity |= inside
        allowed[..., 0] = ~entity
        return allowed

    def unmarked_text(
        self, input_ids: torch.LongTensor, text_mask: torch.BoolTensor
    ) -> tuple[torch.LongTensor, torch.BoolTensor, torch.LongTensor]:
        """
        The text without its entity markers, left-aligned and padded to its longest row: its ids and
        mask `(batch, unmarked_len)`, and the position each token came from (`seq_len` for padding).
        """
        kept = text_mask & ~entity_markers(input_ids, self.config)  # (batch, seq_len)
        seq_len = input_ids.shape[1]
        # The kept positions first, in order; markers and padding after them.
        order = torch.where(kept, torch.arange(seq_len, device=input_ids.device), seq_len).sort(-1).values
        order = order[:, : int(kept.sum(-1).max())]
        unmarked_mask = order < seq_len
        pad_id = self.config.text_config.pad_token_id or 0
        unmarked_ids = torch.where(unmarked_mask, input_ids.gather(1, order.clamp(max=seq_len - 1)), pad_id)
        return unmarked_ids, unmarked_mask, order

    def ner_loss(self, input_ids, text_mask, labels) -> torch.Tensor:
        """
        -log P(allowed tags) per real token of the unmarked text, averaged: the encoder must find the
        head and the tail without the markers that delimit them.
        """
        unmarked_ids, unmarked_mask, order = self.unmarked_text(input_ids, text_mask)
        states = self.text_encoder(input_ids=unmarked_ids, attention_mask=unmarked_mask.long()).last_hidden_state
        ner_logits = self.ner_head(states).float()  # (batch, unmarked_len, tags)
        allowed = self.ner_tags(input_ids, labels)  # on the marked text, whose markers give the spans
        allowed = allowed.gather(
            1, order.clamp(max=input_ids.shape[1] - 1)[..., None].expand(-1, -1, allowed.shape[-1])
        )
        log_allowed = ner_logits.masked_fill(~allowed, torch.finfo(ner_logits.dtype).min).logsumexp(-1)
        token_losses = ner_logits.logsumexp(-1) - log_allowed  # (batch, unmarked_len)
        return (token_losses * unmarked_mask).sum() / unmarked_mask.sum()

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **visual_inputs: Unpack[VisualInputs],
    ) -> WMAJLOutput:
        r"""
        visual_inputs ([`VisualInputs`], *optional*):
            The whole image, object crops and object tail of each example (pixels or cached
            features), any of them absent; see `visual_mre.VisualInputs`.
        """
        config = self.config
        batch_size = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_mask = attention_mask.bool()  # (batch, seq_len)
        supervise_layers = labels is not None and config.use_position_supervision and bool(config.supervised_layers)

        # Unless the supervision needs them, the encoder's hidden states are what the caller asked for.
        supervision = {"output_hidden_states": True} if supervise_layers else {}
        text_outputs = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **supervision
        )
        text = self.text_projection(text_outputs.last_hidden_state)  # (batch, seq_len, hidden)
        visual = self.encode_images(batch_size, config.num_object_crops, **visual_inputs)
        # image tokens: whole image [+ tail object] + crops, each `tokens_per_slot` patches
        image, image_mask, has_image = visual.states, visual.mask, visual.has_image  # (batch, tokens, hidden)

        zero = text.new_zeros(())
        kl_loss = contrastive_loss = zero
        if config.use_modality_alignment:
            text, text_kl = self.text_variational(text, text_mask)
            image, image_kl = self.image_variational(image, image_mask)
            kl_loss = text_kl + image_kl
            # Pooled text (its real tokens) against the pooled whole image (its first slot).
            text_vector = masked_mean(text, text_mask)  # (batch, hidden)
            whole_image = image[:, : visual.tokens_per_slot].mean(1)  # (batch, hidden)
            contrastive_loss = self.contrastive_loss(text_vector, whole_image, has_image)

        text = self.fuse(text, text_mask, image, image_mask)  # (batch, seq_len, hidden)
        pair_representation = pool_entity_pair(text, input_ids, config)  # (batch, 2 * hidden)
        logits = self.classifier(self.dropout(pair_representation))  # (batch, num_labels)

        loss = classification_loss = ner_loss = intermediate_loss = label_loss = None
        if labels is not None:
            classification_loss = F.cross_entropy(logits, labels)
            ner_loss = intermediate_loss = label_loss = zero
            if config.use_position_supervision:
                ner_loss = self.ner_loss(input_ids, text_mask, labels)
            if supervise_layers:
                # The relation read at intermediate layers: positions must survive every layer, not just the last.
                layer_losses = [
                    F.cross_entropy(
                        classifier(
                            self.dropout(pool_entity_pair(text_outputs.hidden_states[layer], input_ids, config))
                        ),
                        labels,
                    )
                    for classifier, layer in zip(self.layer_classifiers, config.supervised_layers)
                ]
                intermediate_loss = torch.stack(layer_losses).mean()
            if config.use_label_loss:
                label_loss = info_nce(
                    pair_representation, self.label_embeddings.weight, labels, config.label_temperature
                )
            loss = self.combine_losses(
                classification_loss,
                kl_loss=kl_loss,
                contrastive_loss=contrastive_loss,
                ner_loss=ner_loss,
                intermediate_loss=intermediate_loss,
                label_loss=label_loss,
            )
        return WMAJLOutput(
            loss=loss,
            classification_loss=classification_loss,
            logits=logits,
            pair_representation=pair_representation,
            kl_loss=kl_loss,
            contrastive_loss=contrastive_loss,
            ner_loss=ner_loss,
            intermediate_loss=intermediate_loss,
            label_loss=label_loss,
        )
