"""
Layers and tensor helpers more than one method uses: the text encoder without its pooler, width
projections, the entity markers' positions and spans, masked means, the Gaussian bottleneck's sample
and KL, and cross-attention through transformers' attention interface.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_mre import MREConfig


def build_text_encoder(text_config) -> PreTrainedModel:
    text_encoder = AutoModel.from_config(text_config)
    # Methods read token states at the entity markers; an unused pooler would also leave DDP
    # waiting for gradients that never come.
    if getattr(text_encoder, "pooler", None) is not None:
        text_encoder.pooler = None
    return text_encoder


def width_projection(in_features: int, out_features: int) -> nn.Module:
    """A linear map between two widths, or nothing when they are equal (text states into a fusion width)."""
    return nn.Linear(in_features, out_features) if in_features != out_features else nn.Identity()


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


def entity_markers(input_ids: torch.LongTensor, config: MREConfig) -> torch.BoolTensor:
    """Where `input_ids` (batch, seq_len) holds one of the four entity markers `config` knows."""
    ids = (config.head_start_token_id, config.head_end_token_id, config.tail_start_token_id, config.tail_end_token_id)
    return torch.isin(input_ids, torch.tensor([i for i in ids if i is not None], device=input_ids.device))


def masked_mean(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """
    The mean over the positions `mask` keeps (all, without one): (batch, seq_len, hidden) -> (batch, hidden);
    zeros for a row that keeps none (an entity truncated away, a post without pictures).
    """
    if mask is None:
        return states.mean(1)
    mask = mask[..., None].to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


def pool_entity_pair(hidden_states: torch.Tensor, input_ids: torch.LongTensor, config: MREConfig) -> torch.Tensor:
    """[h(<s>); h(<o>)]: (batch_size, seq_len, hidden) -> (batch_size, 2 * hidden)."""
    batch_index = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    head_index = marker_positions(input_ids, config.head_start_token_id, "<s>")
    tail_index = marker_positions(input_ids, config.tail_start_token_id, "<o>")
    head_states = hidden_states[batch_index, head_index]  # (batch_size, hidden)
    tail_states = hidden_states[batch_index, tail_index]  # (batch_size, hidden)
    return torch.cat([head_states, tail_states], dim=-1)


def entity_span_mask(input_ids: torch.LongTensor, open_id: int, close_id: int, marker_name: str) -> torch.BoolTensor:
    """
    The tokens of an entity, strictly between its opening marker and the first closing one after
    it, (batch_size, seq_len); other markers (of a nested or overlapping entity) excluded.
    """
    if close_id is None:
        raise ValueError(
            f"this model reads entity spans and needs the id of the marker closing {marker_name} in its config "
            "(head_end_token_id, tail_end_token_id): build it with **processor.marker_config()"
        )
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, seq_len)
    start = marker_positions(input_ids, open_id, marker_name)[:, None]  # (batch_size, 1)
    closing = (input_ids == close_id) & (positions > start)
    end = torch.where(closing.any(-1), closing.int().argmax(-1), input_ids.shape[1])[:, None]
    return (positions > start) & (positions < end) & (input_ids != open_id) & (input_ids != close_id)


def gaussian_sample_and_kl(
    mean: torch.Tensor, log_variance: torch.Tensor, mask: torch.BoolTensor, training: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    A reparameterised sample of N(mean, exp(log_variance)) in training, the mean at inference, and
    the KL to N(0, I) averaged over the real positions of `mask` (batch, len) and the dimensions.
    """
    sample = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance) if training else mean
    kl = -0.5 * (1 + log_variance - mean.pow(2) - log_variance.exp())  # (batch, len, hidden)
    kl = (kl * mask[..., None]).sum() / (mask.sum() * kl.shape[-1]).clamp(min=1)
    return sample, kl


def eager_cross_attention(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs):
    """Attention written out, as transformers' models define their `eager_attention_forward`; `attention_mask` is boolean (True: attend)."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, kv_len)
    weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    weights = F.dropout(weights.softmax(-1, dtype=torch.float32).to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights  # (batch, q_len, heads, head_dim)


class CrossAttention(nn.MultiheadAttention):
    """
    Multi-head attention of queries over a context through transformers' attention interface: the
    implementation is the config's `_attn_implementation` ("sdpa" by default; "eager"; or any
    registered one that takes a boolean 4-D mask), read at each call, so `model.set_attn_implementation`
    applies. It keeps `nn.MultiheadAttention`'s parameters and initialisation, so folders saved when the
    fusion layers were `nn.MultiheadAttention` load unchanged.
    """

    is_causal = False  # read by transformers' attention functions

    def __init__(self, config: MREConfig, hidden_size: int, num_heads: int):
        super().__init__(hidden_size, num_heads, batch_first=True)
        self.config = config

    def forward(self, queries: torch.Tensor, context: torch.Tensor, context_mask: torch.BoolTensor) -> torch.Tensor:
        # queries (batch, q_len, hidden) read context (batch, kv_len, hidden) where context_mask (batch, kv_len)
        projections = zip((queries, context, context), self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3))
        query, key, value = (
            F.linear(states, weight, bias).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
            for states, weight, bias in projections
        )  # (batch, heads, length, head_dim) each
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_cross_attention
        )
        read, _ = attention_interface(
            self, query, key, value, context_mask[:, None, None, :], scaling=self.head_dim**-0.5
        )
        return self.out_proj(read.flatten(2))  # (batch, q_len, hidden)


class CrossAttentionLayer(nn.Module):
    """
    Pre-norm residual cross-attention, `x + Dropout(Attn(LN(x), LN(y)))`, without a feed-forward block:
    the fusion layers of the methods only pass information between sequences (as Perceiver's
    cross-attention outputs), and a feed-forward block per layer would add more parameters than the
    fusion needs. Padded keys are masked, so an output never depends on how a batch is padded.
    """

    def __init__(self, config: MREConfig, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(hidden_size)
        self.key_value_norm = nn.LayerNorm(hidden_size)
        # No dropout on the attention weights: the contexts are short (a few watchers, prompts, or only
        # the "no image" token), where dropping a weight drops a whole read and eval sees another model.
        self.attention = CrossAttention(config, hidden_size, num_heads)
        self.dropout = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, context: torch.Tensor, context_mask: torch.BoolTensor) -> torch.Tensor:
        # states (batch, q_len, hidden) read context (batch, kv_len, hidden) where context_mask (batch, kv_len)
        read = self.attention(self.query_norm(states), self.key_value_norm(context), context_mask)
        return states + self.dropout(read)
