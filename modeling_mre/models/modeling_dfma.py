"""
DFMA: adaptive dual fusion with mutual attention for multimodal relation extraction (ICASSP 2025,
IEEE Xplore 10889001). Neither code nor full text is public; its two modules, each switchable in
`DFMAConfig` (the model card lists what is the paper's and what ours):

1. PFE (pyramid feature extraction): each level of the vision backbone, per picture, becomes a
   key/value chunk of its own; per text layer, gates read from the picture *and* the entity pair mix
   the levels into that layer's prompts, prefixed to its attention (HVPNeT's hierarchical visual
   prefix), so each pair takes the regions and the level of detail it needs at every depth.
2. MMF (multimodal mutual fusion): after the encoder the text reads the image and the image reads
   the text.

One gate per example, read from the entity pair and its pictures, sets how much the image enters
both: it scales the prompts' attention weights and the mutual fusion's residual, so at 0 the
prediction is exactly the text encoder's alone. The model returns it (`image_weight`): exactly 0
for a post without any picture.
"""

from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.utils import can_return_tuple

from .configuration_dfma import DFMAConfig
from .layers_mre import (
    CrossAttentionLayer,
    build_text_encoder,
    entity_span_mask,
    masked_mean,
    pool_entity_pair,
    width_projection,
)
from .modeling_mre import MethodPaper, RelationExtractionOutput, returns_text_encoder_states
from .visual_mre import MREVisualModel, VisualInputs


# The text encoder attends through this function, which puts each layer's visual prompts in front
# of its keys and values: no cache, no shifted positions, the same for every BERT-family encoder.
PREFIX_ATTENTION = "mre_visual_prefix"


@dataclass
class VisualPrefix:
    """Per text layer, the prompts' keys and values `(batch, heads, prefix_len, head_dim)`, and what their attention logits get added."""

    keys: torch.Tensor  # (layers, batch, heads, prefix_len, head_dim)
    values: torch.Tensor
    bias: (
        torch.Tensor
    )  # (batch, prefix_len): log of the image gate on real prompts, the dtype's minimum on absent ones


def visual_prefix_attention(
    module, query, key, value, attention_mask, visual_prefix: VisualPrefix | None = None, **kwargs
):
    """SDPA attention whose keys and values start with the layer's visual prompts (when given)."""
    if visual_prefix is not None:
        layer = module.layer_idx
        key = torch.cat([visual_prefix.keys[layer].to(key.dtype), key], dim=2)
        value = torch.cat([visual_prefix.values[layer].to(value.dtype), value], dim=2)
        batch_size, query_length = query.shape[0], query.shape[2]
        text_length = key.shape[2] - visual_prefix.bias.shape[1]
        # The gate enters as an additive bias, so the text mask becomes one too.
        if attention_mask is None:  # no padding: every text key is real
            text_bias = query.new_zeros(batch_size, 1, query_length, text_length)
        elif attention_mask.dtype == torch.bool:
            text_bias = torch.zeros_like(attention_mask, dtype=query.dtype).masked_fill(
                ~attention_mask, torch.finfo(query.dtype).min
            )
        else:
            text_bias = attention_mask.to(query.dtype)
        prefix_bias = visual_prefix.bias.to(query.dtype)[:, None, None, :].expand(-1, 1, query_length, -1)
        attention_mask = torch.cat([prefix_bias, text_bias.expand(batch_size, 1, query_length, text_length)], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(PREFIX_ATTENTION, visual_prefix_attention)
AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)


@dataclass
class DFMAOutput(RelationExtractionOutput):
    """
    Args:
        image_weight (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
            How much each prediction takes from the image, in [0, 1): the gate that scales the
            prompts' attention weights (before they are normalised with the text's) and the share of
            the mutual fusion kept. 0 means the text encoder's prediction alone, and is exactly 0 for
            a post without any picture. `None` with both modules switched off.
        level_weights (`torch.FloatTensor` of shape `(batch_size, text_layers, pictures, levels)`, *optional*):
            PFE's gates: the share of each pyramid level's chunk (a function of that level alone) in
            each text layer's prompts of each picture.
    """

    image_weight: torch.FloatTensor | None = None
    level_weights: torch.FloatTensor | None = None


def pyramid_layers(vision_encoder: nn.Module, image_size: int) -> list[int]:
    """
    The default pyramid: the last hidden state at each of the 4 coarsest resolutions of a CNN, or the
    layers at each quarter of a ViT's depth, read off one forward of a blank picture.
    """
    blank = torch.zeros(1, 3, image_size, image_size, device=vision_encoder.device, dtype=vision_encoder.dtype)
    with torch.no_grad():
        states = vision_encoder(pixel_values=blank, output_hidden_states=True).hidden_states
    if states[-1].dim() == 3:  # transformer tokens: one resolution
        depth = len(states) - 1
        return sorted({max(1, round(depth * quarter / 4)) for quarter in range(1, 5)})
    last_at_size = {}
    for index, state in enumerate(states):
        last_at_size[tuple(state.shape[-2:])] = index
    return sorted(last_at_size.values())[-4:]


class DFMAPyramidPrompts(nn.Module):
    """
    PFE: each level's states through its own output layer of the prompt MLP (HVPNeT's
    Linear-Tanh-Linear) to a key/value chunk; per text layer, gates read from the picture's levels and
    the entity pair mix the chunks into that layer's prompts.
    """

    def __init__(self, config: DFMAConfig, num_levels: int, pair_width: int):
        super().__init__()
        text_config = config.text_config
        self.num_levels = num_levels
        self.num_layers = text_config.num_hidden_layers
        self.num_heads = text_config.num_attention_heads
        prompt_width = 2 * text_config.hidden_size  # a key and a value
        self.up = nn.ModuleList(nn.Linear(config.prompt_bottleneck, prompt_width) for _ in range(num_levels))
        self.gates = nn.Linear(num_levels * config.prompt_bottleneck + pair_width, self.num_layers * num_levels)

    def forward(
        self, level_states: torch.Tensor, prompt_bias: torch.Tensor, pair: torch.Tensor
    ) -> tuple[VisualPrefix, torch.Tensor]:
        # level_states (batch, pictures, levels, prompt_len, bottleneck), prompt_bias (batch, pictures), pair (batch, pair_width)
        pictures, prompt_length = level_states.shape[1], level_states.shape[3]
        chunks = torch.stack([up(level_states[:, :, level]) for level, up in enumerate(self.up)], dim=2)
        # chunks (batch, pictures, levels, prompt_len, 2 * text_hidden)
        reads = torch.cat([level_states.mean(3).flatten(2), pair[:, None].expand(-1, pictures, -1)], dim=-1)
        gates = F.leaky_relu(self.gates(reads)).unflatten(-1, (self.num_layers, self.num_levels))
        gates = gates.softmax(-1)  # (batch, pictures, layers, levels)
        prompts = torch.einsum("bnyl,bnlpd->ybnpd", gates, chunks)  # (layers, batch, pictures, prompt_len, 2 * hidden)
        keys, values = prompts.flatten(2, 3).chunk(2, dim=-1)  # (layers, batch, prefix_len, hidden) each
        split_heads = lambda states: states.unflatten(-1, (self.num_heads, -1)).transpose(2, 3)  # noqa: E731
        bias = prompt_bias[:, :, None].expand(-1, -1, prompt_length).flatten(1)  # (batch, prefix_len)
        return VisualPrefix(keys=split_heads(keys), values=split_heads(values), bias=bias), gates.transpose(1, 2)


class DFMAMutualFusionLayer(nn.Module):
    """
    One round of MMF: the text reads the image and the image reads the text, each from the other's
    previous state. The last round does not update the image, which nothing reads after.
    """

    def __init__(self, config: DFMAConfig, update_image: bool):
        super().__init__()
        arguments = (config, config.hidden_size, config.num_attention_heads, config.fusion_dropout)
        self.text_reads_image = CrossAttentionLayer(*arguments)
        self.image_reads_text = CrossAttentionLayer(*arguments) if update_image else None

    def forward(self, text, text_mask, image, image_mask):
        read_text = self.text_reads_image(text, image, image_mask)
        if self.image_reads_text is not None:
            image = self.image_reads_text(image, text, text_mask)
        return read_text, image


class DFMAForRelationExtraction(MREVisualModel):
    """
    DFMA for relation extraction, reading a pyramid of vision levels for the whole image, the crops
    and an object tail (its crop's levels plus its box). A picture that is absent is masked out of
    the prompts; without any picture the image gate is 0 and the model is the text encoder alone.
    """

    config_class = DFMAConfig
    method_name = "dfma"
    paper = MethodPaper(
        title="DFMA (ICASSP 2025)",
        citation="""@inproceedings{dfma2025,
  title     = {Adaptive Dual Fusion with Mutual Attention for Multimodal Relation Extraction},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year      = {2025},
  note      = {IEEE Xplore document 10889001}
}""",
    )
    visual_features = "levels"
    ablations = {"pyramid prompts (PFE)": "use_pyramid_prompts", "mutual fusion (MMF)": "use_mutual_fusion"}

    def __init__(self, config: DFMAConfig):
        super().__init__(config)
        self.text_encoder = build_text_encoder(config.text_config)
        if config.use_pyramid_prompts:
            # Each self-attention must know its layer, to read that layer's prompts.
            layer_indices = {
                m.layer_idx for m in self.text_encoder.modules() if isinstance(getattr(m, "layer_idx", None), int)
            }
            if not type(self.text_encoder)._supports_attention_backend or layer_indices != set(
                range(config.text_config.num_hidden_layers)
            ):
                raise ValueError(
                    f"DFMA prefixes visual prompts to every layer of the text encoder through transformers' attention "
                    f"interface, which {type(self.text_encoder).__name__} ({config.text_config.model_type}) does not use: "
                    "use a BERT-family encoder (BERT, RoBERTa, MiniLM, ...) or use_pyramid_prompts=False"
                )
            self.text_encoder.set_attn_implementation(PREFIX_ATTENTION)
        self.build_visual_path(config.prompt_bottleneck)  # the box of an object tail joins the prompt MLP's input
        if config.vision_feature_layers is None:
            config.vision_feature_layers = pyramid_layers(
                self.vision_encoder, getattr(config.vision_config, "image_size", 224)
            )
        level_channels = [channels for _, channels in self.feature_shapes()]
        hidden_size, bottleneck = config.hidden_size, config.prompt_bottleneck

        if config.use_pyramid_prompts or config.use_mutual_fusion:
            # Each level has its own first layer of the prompt MLP, so a level's chunk reads that level
            # alone; CNN stages differ in scale by orders of magnitude, so each is normalised first.
            self.level_norms = nn.ModuleList(nn.LayerNorm(channels) for channels in level_channels)
            self.level_down = nn.ModuleList(nn.Linear(channels, bottleneck) for channels in level_channels)
            pair_width = 2 * self.text_encoder.get_input_embeddings().embedding_dim
            self.image_gate = nn.Linear(pair_width + bottleneck, 1)
        if config.use_pyramid_prompts:
            self.pyramid_prompts = DFMAPyramidPrompts(config, len(level_channels), pair_width)
        if config.use_mutual_fusion:
            self.text_projection = width_projection(config.text_config.hidden_size, hidden_size)
            self.image_projection = nn.Linear(bottleneck, hidden_size)
            self.no_image_embedding = nn.Embedding(1, hidden_size)
            self.fusion_layers = nn.ModuleList(
                DFMAMutualFusionLayer(config, update_image=layer + 1 < config.num_fusion_layers)
                for layer in range(config.num_fusion_layers)
            )
        classifier_width = hidden_size if config.use_mutual_fusion else config.text_config.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * classifier_width, config.num_labels)
        self.post_init()

    def set_attn_implementation(self, attn_implementation):
        """transformers' switch for the fusion layers; with PFE the text encoder keeps the prefix attention its prompts need."""
        super().set_attn_implementation(attn_implementation)
        if self.config.use_pyramid_prompts:
            self.text_encoder.set_attn_implementation(PREFIX_ATTENTION)

    def pool_feature_tokens(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each level's tokens averaged to `prompt_length`, `(num_pictures, prompt_len, channels_l)`: the cache stores these."""
        prompt_length = self.config.prompt_length
        return [F.adaptive_avg_pool1d(level.transpose(1, 2), prompt_length).transpose(1, 2) for level in levels]

    def project_pictures(self, levels: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """
        Each level (pooled to `prompt_length` tokens by `pool_feature_tokens`) normalised and mapped to
        the prompt MLP's hidden layer by its own layers: per level `(batch, slots, prompt_len,
        channels_l)` in, `(batch, slots, levels * prompt_len, bottleneck)` out, level after level.
        """
        return torch.cat(
            [
                down(norm(level.to(norm.weight.dtype)))  # (batch, slots, prompt_len, bottleneck)
                for norm, down, level in zip(self.level_norms, self.level_down, levels)
            ],
            dim=2,
        )

    def pyramid_states(self, batch_size: int, **visual_inputs) -> tuple[torch.Tensor, torch.BoolTensor]:
        """
        Each picture's levels at the prompt MLP's hidden layer, `(batch, pictures, levels, prompt_len,
        bottleneck)` (an object tail's with its box), and which pictures exist (an object tail always).
        """
        visual = self.encode_images(batch_size, self.config.num_object_crops, **visual_inputs)
        states = visual.states.unflatten(
            1, (visual.slot_mask.shape[1], len(self.level_norms), self.config.prompt_length)
        )
        return torch.tanh(states), visual.slot_mask

    def pair_embedding(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """
        What the gates know of the pair before the encoder runs: the mean input embedding of the head's
        and of the tail's tokens, `(batch, 2 * embedding_dim)`.
        """
        config = self.config
        embeddings = self.text_encoder.get_input_embeddings()(input_ids)  # (batch, seq_len, embedding_dim)
        spans = (
            entity_span_mask(input_ids, config.head_start_token_id, config.head_end_token_id, "<s>"),
            entity_span_mask(input_ids, config.tail_start_token_id, config.tail_end_token_id, "<o>"),
        )
        return torch.cat([masked_mean(embeddings, span) for span in spans], dim=-1)

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **visual_inputs: Unpack[VisualInputs],
    ) -> DFMAOutput:
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

        # The image gate, from the pair and its pictures: 0 (exactly, without pictures) leaves the text alone.
        visual_prefix = level_weights = image_weight = None
        if config.use_pyramid_prompts or config.use_mutual_fusion:
            level_states, picture_mask = self.pyramid_states(
                batch_size, **visual_inputs
            )  # (batch, pictures, levels, P, bottleneck)
            pair = self.pair_embedding(input_ids)  # (batch, pair_width)
            picture_summary = masked_mean(level_states.mean((2, 3)), picture_mask)  # (batch, bottleneck)
            gate_logit = self.image_gate(torch.cat([pair, picture_summary.to(pair.dtype)], dim=-1)).squeeze(
                -1
            )  # (batch,)
            image_weight = torch.sigmoid(gate_logit) * picture_mask.any(1)
            # log(gate) added to the prompts' logits multiplies their attention weights by the gate.
            no_prompt = torch.finfo(gate_logit.dtype).min
            prompt_bias = F.logsigmoid(gate_logit)[:, None].masked_fill(~picture_mask, no_prompt)  # (batch, pictures)

        # PFE: every text layer attends to the pictures' prompts before its own tokens.
        if config.use_pyramid_prompts:
            visual_prefix, level_weights = self.pyramid_prompts(level_states, prompt_bias, pair)
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            visual_prefix=visual_prefix,
        ).last_hidden_state  # (batch, seq_len, text_hidden)

        # MMF: text and image read each other; the gate sets how much of the image-informed text is kept.
        if config.use_mutual_fusion:
            text = self.text_projection(text)  # (batch, seq_len, hidden)
            image = self.image_projection(level_states.mean(2)).flatten(1, 2)  # (batch, pictures * P, hidden)
            image_mask = picture_mask[:, :, None].expand(-1, -1, config.prompt_length).flatten(1)
            # A learned "no image" token leads the image tokens: a post without pictures has a key to
            # read (its reading is then gated away), one with pictures a way to read none of them.
            no_image = self.no_image_embedding.weight.to(image.dtype).expand(batch_size, 1, -1)
            image = torch.cat([no_image, image], dim=1)
            image_mask = torch.cat([image_mask.new_ones(batch_size, 1), image_mask], dim=1)
            fused_text, fused_image = text, image
            for layer in self.fusion_layers:
                fused_text, fused_image = layer(fused_text, text_mask, fused_image, image_mask)
            text = text + image_weight[:, None, None].to(text.dtype) * (fused_text - text)

        pair_representation = pool_entity_pair(text, input_ids, config)  # (batch, 2 * hidden)
        logits = self.classifier(self.dropout(pair_representation))  # (batch, num_labels)
        loss = classification_loss = None
        if labels is not None:
            classification_loss = F.cross_entropy(logits, labels)
            loss = self.combine_losses(classification_loss)
        return DFMAOutput(
            loss=loss,
            classification_loss=classification_loss,
            logits=logits,
            pair_representation=pair_representation,
            image_weight=image_weight,
            level_weights=level_weights,
        )
