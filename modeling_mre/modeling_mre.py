"""Building blocks shared by every relation-extraction method: backbones, pair pooling, outputs."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.models.mobilenet_v2.modeling_mobilenet_v2 import apply_depth_multiplier
from transformers.utils import ModelOutput

from .configuration_mre import MREConfig


@dataclass
class RelationExtractionOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Total training loss: the classification loss plus every weighted auxiliary loss.
        classification_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cross-entropy of the relation classifier alone.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Relation scores before softmax.
        pair_representation (`torch.FloatTensor` of shape `(batch_size, 2 * hidden_size)`):
            Concatenated hidden states at the `<s>` and `<o>` markers, the input of the classifier.
    """

    loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pair_representation: torch.FloatTensor | None = None


def build_text_encoder(text_config) -> PreTrainedModel:
    text_encoder = AutoModel.from_config(text_config)
    # Methods read token states at the entity markers; an unused pooler would also leave DDP
    # waiting for gradients that never come.
    if getattr(text_encoder, "pooler", None) is not None:
        text_encoder.pooler = None
    return text_encoder


def vision_feature_size(vision_config) -> int:
    """Width of the pooled image feature of a transformers vision encoder."""
    if vision_config.model_type == "mobilenet_v2":
        if vision_config.finegrained_output and vision_config.depth_multiplier < 1.0:
            return 1280
        return apply_depth_multiplier(vision_config, 1280)
    if hasattr(vision_config, "hidden_sizes"):  # ResNet, ConvNeXt: channels of the last stage
        return vision_config.hidden_sizes[-1]
    return vision_config.hidden_size


def pool_image_features(vision_outputs) -> torch.Tensor:
    """One vector per image from any transformers vision encoder output."""
    pooled = getattr(vision_outputs, "pooler_output", None)
    if pooled is None:  # ViT built without its pooler: the [CLS] patch
        pooled = vision_outputs.last_hidden_state[:, 0]
    # CNN poolers keep singleton spatial dims: (N, C, 1, 1) -> (N, C)
    return pooled.flatten(1)


def marker_positions(input_ids: torch.LongTensor, marker_id: int, marker_name: str) -> torch.LongTensor:
    """Index of the first `marker_id` in every row of `input_ids`, shape (batch_size,)."""
    is_marker = input_ids == marker_id
    missing = ~is_marker.any(dim=-1)
    if missing.any():
        rows = missing.nonzero().flatten().tolist()
        raise ValueError(
            f"sequences {rows} of the batch contain no {marker_name} marker (token id {marker_id}); "
            "encode inputs with MREProcessor, which always keeps both entity markers"
        )
    return is_marker.int().argmax(dim=-1)


def pool_entity_pair(
    hidden_states: torch.Tensor, input_ids: torch.LongTensor, config: MREConfig
) -> torch.Tensor:
    """[h(<s>); h(<o>)]: (batch_size, seq_len, hidden) -> (batch_size, 2 * hidden)."""
    batch_index = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    head_index = marker_positions(input_ids, config.head_start_token_id, "<s>")
    tail_index = marker_positions(input_ids, config.tail_start_token_id, "<o>")
    head_states = hidden_states[batch_index, head_index]  # (batch_size, hidden)
    tail_states = hidden_states[batch_index, tail_index]  # (batch_size, hidden)
    return torch.cat([head_states, tail_states], dim=-1)


class MREPreTrainedModel(PreTrainedModel):
    config_class = MREConfig
    base_model_prefix = "mre"
    main_input_name = "input_ids"
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = []

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Module:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.text_encoder.set_input_embeddings(value)

    def _freeze_vision_encoder(self):
        if getattr(self, "vision_encoder", None) is not None and self.config.freeze_vision_encoder:
            self.vision_encoder.requires_grad_(False)
            self.vision_encoder.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen encoder also keeps its BatchNorm statistics: HVPNeT's drift in train mode.
        self._freeze_vision_encoder()
        return self

    @classmethod
    def from_backbones(cls, text_backbone: str, vision_backbone: str | None = None, **config_kwargs):
        """
        A new model whose encoders start from pretrained checkpoints (Hub ids or local folders) and
        whose method layers are freshly initialised, as `VisionEncoderDecoderModel.from_encoder_decoder_pretrained`.
        """
        text_encoder = AutoModel.from_pretrained(text_backbone)
        vision_encoder = AutoModel.from_pretrained(vision_backbone) if vision_backbone is not None else None
        config = cls.config_class(
            text_config=text_encoder.config,
            vision_config=vision_encoder.config if vision_encoder is not None else None,
            **config_kwargs,
        )
        model = cls(config)
        # Pretrained weights replace the random ones; the dropped pooler is the only key left out.
        missing, unexpected = model.text_encoder.load_state_dict(text_encoder.state_dict(), strict=False)
        if missing or any(not key.startswith("pooler.") for key in unexpected):
            raise ValueError(f"{text_backbone}: weights do not fit the text encoder (missing {missing}, unexpected {unexpected})")
        if vision_encoder is not None:
            model.vision_encoder.load_state_dict(vision_encoder.state_dict())
        return model
