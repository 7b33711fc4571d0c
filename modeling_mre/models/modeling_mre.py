"""The base every relation-extraction method subclasses: its contract, backbones, pair pooling, outputs."""

import functools
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from .configuration_mre import MREConfig
from .pipeline_mre import PIPELINE_TASK, MultimodalRelationExtractionPipeline
from .processing_mre import MREProcessor


# How a pretrained submodule trains: fine-tuned at the encoder learning rate (and the target of
# LoRA), never updated, or at the learning rate of the freshly initialised layers.
TrainingRole = Literal["encoder", "frozen", "new"]
# What a multimodal method reads of each picture (see `visual_mre.MREVisualModel.get_image_features`).
VisualFeatures = Literal["pooled", "patches", "levels"]


@dataclass(frozen=True)
class MethodPaper:
    """The paper a method implements, as its model card cites it (timm's `_cfg(paper_ids=..., origin_url=...)`)."""

    title: str
    citation: str | None = None
    code_url: str | None = None


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
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*):
            The text encoder's, on this input, with `output_hidden_states=True` / `output_attentions=True`
            (see `returns_text_encoder_states`).
    """

    loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pair_representation: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def returns_text_encoder_states(forward):
    """
    Decorates a method's `forward` (under `@can_return_tuple`) to take transformers'
    `output_hidden_states` and `output_attentions` (default: the config's): the output's
    `hidden_states` and `attentions` are the text encoder's on the forward's `input_ids`, whatever
    else the method runs through it. Attentions need an encoder that gives them (`attn_implementation="eager"`).
    """

    @functools.wraps(forward)
    def wrapper(self, input_ids, *args, output_hidden_states=None, output_attentions=None, **kwargs):
        wanted = {
            "output_hidden_states": self.config.output_hidden_states if output_hidden_states is None else output_hidden_states,
            "output_attentions": self.config.output_attentions if output_attentions is None else output_attentions,
        }
        if not any(wanted.values()):
            return forward(self, input_ids, *args, **kwargs)
        encoder_config, recorded = self.text_encoder.config, []
        previous = {name: getattr(encoder_config, name) for name in wanted}

        def record(module, module_args, module_kwargs, output):
            if module_kwargs.get("input_ids") is input_ids and not recorded:
                recorded.append(output)

        handle = self.text_encoder.register_forward_hook(record, with_kwargs=True)
        try:
            for name, value in wanted.items():
                setattr(encoder_config, name, value)
            output = forward(self, input_ids, *args, **kwargs)
        finally:
            handle.remove()
            for name, value in previous.items():
                setattr(encoder_config, name, value)
        if not recorded:
            raise RuntimeError(f"{type(self).__name__}'s forward never ran its text encoder on input_ids (keyword input_ids=)")
        # Item assignment, so that the tuple of `return_dict=False` holds them too.
        if wanted["output_hidden_states"]:
            output["hidden_states"] = recorded[0].hidden_states
        if wanted["output_attentions"] and recorded[0].attentions is not None:
            output["attentions"] = recorded[0].attentions
        return output

    return wrapper


# `from_pretrained`'s arguments that say where a checkpoint's files come from, and those that
# `from_backbones` also passes on to loading the backbones.
HUB_ARGUMENTS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download", "proxies")
BACKBONE_LOADING_ARGUMENTS = (*HUB_ARGUMENTS, "trust_remote_code", "attn_implementation", "dtype")


def class_reference(cls: type) -> str:
    """`module.Class` as `auto_map` and `custom_pipelines` name a class of a saved folder's code."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


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


def entity_span_mask(
    input_ids: torch.LongTensor, open_id: int, close_id: int, marker_name: str
) -> torch.BoolTensor:
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


def info_nce(
    queries: torch.Tensor, keys: torch.Tensor, targets: torch.LongTensor, temperature: float
) -> torch.Tensor:
    """
    InfoNCE over cosine similarities: each query (n, d) against every key (k, d), its positive being
    `keys[targets]`: cross-entropy of similarities / temperature, mean over queries.
    """
    similarities = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T  # (n, k)
    return F.cross_entropy(similarities / temperature, targets)


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
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_cross_attention)
        read, _ = attention_interface(self, query, key, value, context_mask[:, None, None, :], scaling=self.head_dim**-0.5)
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


class MREPreTrainedModel(PreTrainedModel):
    """
    Base class of every relation-extraction method. Like PEFT's `BaseTuner`, it states what a method
    must define; registration (`modeling_mre.models.register_method`), the `--method` choices of
    `train_accelerate.py`, the model card's paper facts, the LoRA targets and `modules_to_save`,
    the optimizer's parameter groups and the feature cache all derive from these declarations and
    never from parameter names.

    A method subclass declares, on the class:

        - **method_name** (`str`): its name as users write it (`--method`, the registry, card files
          `hub_cards/methods/<method_name>.md` and `<method_name>_notes.md`).
        - **paper** (`MethodPaper` or `None`): the title, citation and code link its card cites.
        - **config_class**: its `MREConfig` subclass, with its own `model_type` (`mre-<name>`).
        - **visual_features** (`"pooled"`, `"patches"`, `"levels"` or `None`): what it reads of each
          picture through the shared visual path; `None` for a text-only method. A multimodal method
          subclasses `visual_mre.MREVisualModel`, which builds that path.
        - **auxiliary_losses** (`dict[str, str]`): each loss its output returns beside the
          classification loss (unweighted), mapped to the config field holding its weight;
          `combine_losses` adds them to the total and training logs each one.
        - **ablations** (`dict[str, str]`): each part of the method a user can remove, by name, mapped
          to the boolean config field (default `True`) that turns it off; `train_accelerate.py
          --config_overrides` sets them and `benchmarks/accuracy.py --ablations` runs each removed.
        - **task** (`"relation-extraction"` or `"token-classification"`): what it predicts. A method's
          entity recognizer (MNER) subclasses `modeling_ner.EntityRecognitionMixin`, which sets it, and
          registers under the same `method_name` as its relation extractor.

    and, when it holds pretrained submodules beyond the text encoder (and the vision encoder of a
    multimodal method), extends `pretrained_submodules()` with each one's `TrainingRole`. Every
    other child is a new layer: it trains at the new-layer learning rate and LoRA saves it whole.

    Its `__init__` builds the layers and ends with `self.post_init()` (which also freezes the frozen
    submodules); its `forward` takes the
    processor's outputs (and `labels`) and returns a `RelationExtractionOutput` subclass.
    """

    config_class = MREConfig
    # Every save copies the model's code, also for a model loaded as remote code (whose class was never
    # registered): a folder saved again after fine-tuning must load as the first one did.
    _auto_class = "AutoModel"
    base_model_prefix = "mre"
    main_input_name = "input_ids"
    _supports_sdpa = True
    supports_gradient_checkpointing = True
    _no_split_modules = []

    method_name: ClassVar[str]
    paper: ClassVar[MethodPaper | None] = None
    visual_features: ClassVar[VisualFeatures | None] = None
    auxiliary_losses: ClassVar[dict[str, str]] = {}
    ablations: ClassVar[dict[str, str]] = {}
    task: ClassVar[str] = "relation-extraction"
    # What a saved folder names for `pipeline(folder)` and `AutoProcessor` (see `save_pretrained`).
    pipeline_task: ClassVar[str] = PIPELINE_TASK
    pipeline_class: ClassVar[type] = MultimodalRelationExtractionPipeline
    processor_class: ClassVar[type] = MREProcessor

    def pretrained_submodules(self) -> dict[str, TrainingRole]:
        """The children that start from pretrained weights (`from_backbones`), and how each trains."""
        return {"text_encoder": "encoder"}

    def apply_training_roles(self):
        """Keep every frozen submodule's weights and normalisation statistics fixed."""
        for name, role in self.pretrained_submodules().items():
            if role == "frozen":
                getattr(self, name).requires_grad_(False).eval()

    def post_init(self):
        super().post_init()
        self.apply_training_roles()

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen encoder also keeps its BatchNorm statistics: HVPNeT's drift in train mode.
        self.apply_training_roles()
        return self

    def combine_losses(self, classification_loss: torch.Tensor, **auxiliary: torch.Tensor) -> torch.Tensor:
        """The training loss: the classification loss plus each auxiliary loss times its config weight."""
        loss = classification_loss
        for name, weight_field in self.auxiliary_losses.items():
            loss = loss + getattr(self.config, weight_field) * auxiliary[name]
        return loss

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        `PreTrainedModel.save_pretrained` (and so `push_to_hub`), plus what makes the folder load where
        modeling_mre is not installed: `config.custom_pipelines` naming the task's pipeline, whose
        module is copied with the model's code, and `auto_map`'s `AutoProcessor` entry. A model trained
        in any loop and saved with `model.save_pretrained` and `processor.save_pretrained` is a folder
        that `pipeline(folder, trust_remote_code=True)` runs.
        """
        auto_map = getattr(self.config, "auto_map", None) or {}
        self.config.auto_map = {**auto_map, "AutoProcessor": class_reference(self.processor_class)}
        # One task only: with several, `pipeline(folder)` cannot infer which to run.
        self.config.custom_pipelines = {
            self.pipeline_task: {"impl": class_reference(self.pipeline_class), "pt": [self._auto_class], "type": "multimodal"}
        }
        super().save_pretrained(save_directory, *args, **kwargs)
        custom_object_save(self.pipeline_class, save_directory)

    def encode_text(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """The text encoder's last hidden states, (batch, seq_len, text_hidden)."""
        return self.text_encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def use_tokenizer(self, tokenizer):
        """
        The processor's tokenizer, for a method that tokenizes text of its own (ROC's relation
        descriptions); `train_accelerate.py` and the pipeline hand it over, other methods ignore it.
        """

    def get_input_embeddings(self) -> nn.Module:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.text_encoder.set_input_embeddings(value)

    @classmethod
    def from_backbones(
        cls, text_backbone: str, vision_backbone: str | None = None, *, processor=None, **kwargs
    ) -> "MREPreTrainedModel":
        """
        A new model whose encoders start from pretrained checkpoints (Hub ids or local folders) and
        whose method layers are freshly initialised, as `VisionEncoderDecoderModel.from_encoder_decoder_pretrained`.

        Args:
            text_backbone, vision_backbone (`str`):
                The encoders' checkpoints; no vision backbone for a text-only method.
            processor (`MREProcessor` or `MNERProcessor`, *optional*):
                The processor the model will read: a relation extractor takes its entity markers' ids
                and grows its embeddings for them; a method that tokenizes text of its own gets its
                tokenizer. Without it, pass the markers' ids and resize the embeddings yourself.
            kwargs:
                `from_pretrained`'s loading arguments (`revision`, `token`, `cache_dir`,
                `local_files_only`, `subfolder`, `force_download`, `proxies`, `trust_remote_code`,
                `attn_implementation`, `dtype`), applied to both backbones; every other one is a field
                of the method's config.
        """
        loading = {key: kwargs.pop(key) for key in BACKBONE_LOADING_ARGUMENTS if key in kwargs}
        text_encoder = AutoModel.from_pretrained(text_backbone, **loading)
        vision_encoder = AutoModel.from_pretrained(vision_backbone, **loading) if vision_backbone is not None else None
        if processor is not None and cls.task == "relation-extraction":
            kwargs = {**processor.marker_config(), **kwargs}
        if "attn_implementation" in loading:  # the config passes it on to the encoders' configs
            kwargs["attn_implementation"] = loading["attn_implementation"]
        config = cls.config_class(
            text_config=text_encoder.config,
            vision_config=vision_encoder.config if vision_encoder is not None else None,
            **kwargs,
        )
        model = cls(config)
        # Pretrained weights replace the random ones; the dropped pooler is the only key left out.
        missing, unexpected = model.text_encoder.load_state_dict(text_encoder.state_dict(), strict=False)
        if missing or any(not key.startswith("pooler.") for key in unexpected):
            raise ValueError(f"{text_backbone}: weights do not fit the text encoder (missing {missing}, unexpected {unexpected})")
        if vision_encoder is not None:
            model.vision_encoder.load_state_dict(vision_encoder.state_dict())
        if processor is not None:
            if cls.task == "relation-extraction":  # the markers are new tokens
                model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
            model.use_tokenizer(processor.tokenizer)
        if "dtype" in loading:  # the dtype the text backbone was loaded in ("auto": its checkpoint's)
            model = model.to(text_encoder.dtype)
        return model
