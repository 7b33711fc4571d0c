"""
DFMA: adaptive dual fusion with mutual attention for multimodal relation extraction (ICASSP 2025,
IEEE Xplore 10889001). Neither code nor full text is public; its two modules, each switchable in
`DFMAConfig` (the model card lists what is the paper's and what ours):

1. PFE (pyramid feature extraction): features of several levels of the vision backbone, per picture,
   become key/value prompts whose mix over the levels is gated by the input, prefixed to the
   attention of every text encoder layer (HVPNeT's hierarchical visual prefix), so the text reads
   the image regions it needs at every depth instead of one global image vector.
2. MMF (multimodal mutual fusion): after the encoder the text reads the image and the image reads
   the text; a learned gate balances how much each prediction takes from the image-informed text,
   and the model returns it (`image_weight`).
"""

from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .configuration_dfma import DFMAConfig
from .modeling_mre import (
    CrossAttentionLayer,
    MethodPaper,
    RelationExtractionOutput,
    build_text_encoder,
    masked_mean,
    pool_entity_pair,
    width_projection,
)
from .visual_mre import MREVisualModel, VisualInputs


# The text encoder attends through this function, which puts each layer's visual prompts in front
# of its keys and values: no cache, no shifted positions, the same for every BERT-family encoder.
PREFIX_ATTENTION = "mre_visual_prefix"


@dataclass
class VisualPrefix:
    """Per text layer, the prompts' keys and values `(batch, heads, prefix_len, head_dim)`, and which exist `(batch, prefix_len)`."""

    keys: torch.Tensor  # (layers, batch, heads, prefix_len, head_dim)
    values: torch.Tensor
    mask: torch.BoolTensor


def visual_prefix_attention(module, query, key, value, attention_mask, visual_prefix: VisualPrefix | None = None, **kwargs):
    """SDPA attention whose keys and values start with the layer's visual prompts (when given)."""
    if visual_prefix is not None:
        layer = module.layer_idx
        key = torch.cat([visual_prefix.keys[layer].to(key.dtype), key], dim=2)
        value = torch.cat([visual_prefix.values[layer].to(value.dtype), value], dim=2)
        batch_size, query_length = query.shape[0], query.shape[2]
        if attention_mask is None:  # no padding: every text key is real
            attention_mask = torch.ones(batch_size, 1, query_length, key.shape[2] - visual_prefix.mask.shape[1],
                                        dtype=torch.bool, device=query.device)
        prefix_mask = visual_prefix.mask[:, None, None, :].expand(-1, 1, query_length, -1)
        attention_mask = torch.cat([prefix_mask, attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(PREFIX_ATTENTION, visual_prefix_attention)
AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)


@dataclass
class DFMAOutput(RelationExtractionOutput):
    """
    Args:
        image_weight (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
            MMF's balance gate: the share of the image-informed text in the pair representation
            (0: the text alone, 1: fully fused). `None` with MMF switched off.
        level_weights (`torch.FloatTensor` of shape `(batch_size, text_layers, pictures, levels)`, *optional*):
            PFE's gates: how much each pyramid level contributes to each text layer's prompts of each picture.
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
    PFE: the levels of each picture, pooled to `prompt_length` tokens and concatenated, through an
    MLP (HVPNeT's Linear-Tanh-Linear) to one key/value chunk per level; per text layer, gates computed
    from the chunks mix the levels into that layer's prompts.
    """

    def __init__(self, config: DFMAConfig, level_channels: list[int]):
        super().__init__()
        text_config = config.text_config
        self.num_levels = len(level_channels)
        self.num_layers = text_config.num_hidden_layers
        self.num_heads = text_config.num_attention_heads
        self.prompt_width = 2 * text_config.hidden_size  # a key and a value
        self.up = nn.Linear(config.prompt_bottleneck, self.num_levels * self.prompt_width)
        self.gates = nn.Linear(self.num_levels * self.prompt_width, self.num_layers * self.num_levels)

    def forward(self, prompt_states: torch.Tensor, prompt_mask: torch.BoolTensor) -> tuple[VisualPrefix, torch.Tensor]:
        # prompt_states (batch, pictures, prompt_len, bottleneck), prompt_mask (batch, pictures)
        batch_size, pictures, prompt_length, _ = prompt_states.shape
        chunks = self.up(prompt_states)  # (batch, pictures, prompt_len, levels * 2 * text_hidden)
        gates = self.gates(chunks.mean(2)).unflatten(-1, (self.num_layers, self.num_levels))
        gates = F.leaky_relu(gates).softmax(-1)  # (batch, pictures, layers, levels)
        chunks = chunks.unflatten(-1, (self.num_levels, self.prompt_width))  # (batch, pictures, prompt_len, levels, 2 * hidden)
        prompts = torch.einsum("bnli,bnpid->lbnpd", gates, chunks)  # (layers, batch, pictures, prompt_len, 2 * hidden)
        keys, values = prompts.flatten(2, 3).chunk(2, dim=-1)  # (layers, batch, prefix_len, hidden) each
        split_heads = lambda states: states.unflatten(-1, (self.num_heads, -1)).transpose(2, 3)  # noqa: E731
        mask = prompt_mask[:, :, None].expand(-1, -1, prompt_length).flatten(1)  # (batch, prefix_len)
        return VisualPrefix(keys=split_heads(keys), values=split_heads(values), mask=mask), gates.transpose(1, 2)


class DFMAMutualFusionLayer(nn.Module):
    """One round of MMF: the text reads the image and the image reads the text, each from the other's previous state."""

    def __init__(self, config: DFMAConfig):
        super().__init__()
        arguments = (config.hidden_size, config.num_attention_heads, config.fusion_dropout)
        self.text_reads_image = CrossAttentionLayer(*arguments)
        self.image_reads_text = CrossAttentionLayer(*arguments)

    def forward(self, text, text_mask, image, image_mask):
        return self.text_reads_image(text, image, image_mask), self.image_reads_text(image, text, text_mask)


class DFMAForRelationExtraction(MREVisualModel):
    """
    DFMA for relation extraction, reading a pyramid of vision levels for the whole image, the crops
    and an object tail (its crop's levels plus its box). A picture that is absent is masked out of
    the prompts; without any picture the text encoder runs as it would alone, and MMF reads a learned
    "no image" token.
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
            layer_indices = {m.layer_idx for m in self.text_encoder.modules() if isinstance(getattr(m, "layer_idx", None), int)}
            if not type(self.text_encoder)._supports_attention_backend or layer_indices != set(range(config.text_config.num_hidden_layers)):
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
        hidden_size = config.hidden_size

        if config.use_pyramid_prompts or config.use_mutual_fusion:
            # CNN stages differ in scale by orders of magnitude: each level is normalised before they meet.
            self.level_norms = nn.ModuleList(nn.LayerNorm(channels) for channels in level_channels)
            self.prompt_down = nn.Linear(sum(level_channels), config.prompt_bottleneck)
        if config.use_pyramid_prompts:
            self.pyramid_prompts = DFMAPyramidPrompts(config, level_channels)
        if config.use_mutual_fusion:
            self.text_projection = width_projection(config.text_config.hidden_size, hidden_size)
            self.image_projection = nn.Linear(config.prompt_bottleneck, hidden_size)
            self.no_image_embedding = nn.Embedding(1, hidden_size)
            self.fusion_layers = nn.ModuleList(DFMAMutualFusionLayer(config) for _ in range(config.num_fusion_layers))
            self.balance_gate = nn.Linear(2 * hidden_size, 1)
        classifier_width = hidden_size if config.use_mutual_fusion else config.text_config.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(2 * classifier_width, config.num_labels)
        self.post_init()

    def pyramid_states(self, batch_size: int, **visual_inputs) -> tuple[torch.Tensor, torch.BoolTensor]:
        """
        Each picture's levels pooled to `prompt_length` tokens, concatenated and mapped to the prompt
        MLP's hidden layer: `(batch, pictures, prompt_len, bottleneck)`, and which pictures exist.
        """
        visual = self.encode_images(batch_size, self.config.num_object_crops, **visual_inputs)
        prompt_length = self.config.prompt_length
        pooled = [  # (batch, pictures, tokens_l, channels_l) -> (batch, pictures, prompt_len, channels_l)
            norm(F.adaptive_avg_pool1d(level.flatten(0, 1).transpose(1, 2), prompt_length).transpose(1, 2).to(norm.weight.dtype))
            .unflatten(0, level.shape[:2])
            for norm, level in zip(self.level_norms, visual.levels)
        ]
        states = self.prompt_down(torch.cat(pooled, dim=-1))
        mask = visual.mask
        tail_mask = visual_inputs.get("tail_mask")
        if tail_mask is not None:
            # An object tail's slot (after the whole image) exists wherever the tail is an object: its box
            # places it even without the picture.
            box = self.tail_box_projection(visual_inputs["tail_box_features"].to(states.dtype))  # (batch, bottleneck)
            tail_states = states[:, 1] + box[:, None] * tail_mask[:, None, None]
            states = torch.cat([states[:, :1], tail_states[:, None], states[:, 2:]], dim=1)
            mask = torch.cat([mask[:, :1], tail_mask.bool()[:, None], mask[:, 2:]], dim=1)
        return torch.tanh(states), mask

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
        uses_pictures = config.use_pyramid_prompts or config.use_mutual_fusion
        if uses_pictures:
            prompt_states, picture_mask = self.pyramid_states(batch_size, **visual_inputs)  # (batch, pictures, P, bottleneck)

        # PFE: every text layer attends to the pictures' prompts before its own tokens.
        visual_prefix = level_weights = None
        if config.use_pyramid_prompts:
            visual_prefix, level_weights = self.pyramid_prompts(prompt_states, picture_mask)
        text = self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, visual_prefix=visual_prefix
        ).last_hidden_state  # (batch, seq_len, text_hidden)

        # MMF: text and image read each other; the gate sets how much of the image-informed text is kept.
        image_weight = None
        if config.use_mutual_fusion:
            text = self.text_projection(text)  # (batch, seq_len, hidden)
            image = self.image_projection(prompt_states).flatten(1, 2)  # (batch, pictures * P, hidden)
            image_mask = picture_mask[:, :, None].expand(-1, -1, config.prompt_length).flatten(1)
            # The learned "no image" token leads the image tokens, so every example has one to read.
            no_image = self.no_image_embedding.weight.to(image.dtype).expand(batch_size, 1, -1)
            image = torch.cat([no_image, image], dim=1)
            image_mask = torch.cat([image_mask.new_ones(batch_size, 1), image_mask], dim=1)
            fused_text, fused_image = text, image
            for layer in self.fusion_layers:
                fused_text, fused_image = layer(fused_text, text_mask, fused_image, image_mask)
            pooled_text, pooled_image = masked_mean(fused_text, text_mask), masked_mean(fused_image, image_mask)
            image_weight = torch.sigmoid(self.balance_gate(torch.cat([pooled_text, pooled_image], dim=-1)))  # (batch, 1)
            text = text + image_weight[:, :, None] * (fused_text - text)
            image_weight = image_weight.squeeze(-1)

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
