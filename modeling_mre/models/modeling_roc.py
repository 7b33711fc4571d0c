"""
ROC: retrieval over classification for multimodal relation extraction (EMNLP 2025, arXiv 2509.21151).
Neither code, descriptions nor numbers are public; this follows the abstract (the model card lists what
is the paper's and what ours). No classifier: an entity-pair embedding, built with entity type and
position information by a multimodal encoder, is matched against embeddings of natural-language
relation descriptions, trained contrastively. A relation never seen in training is added at inference
by writing its description (`set_relations`, or for one call the processor's `relations=`, which the
pipeline's `candidate_relations=` fills). `ROCConfig` says what a score means.
"""

import itertools
from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoTokenizer
from transformers.utils import can_return_tuple

from .configuration_mre import relation_type_indices
from .configuration_roc import ROCConfig, complete_descriptions
from .layers_mre import (
    CrossAttentionLayer,
    build_text_encoder,
    entity_markers,
    marker_positions,
    masked_mean,
)
from .modeling_mre import (
    HUB_ARGUMENTS,
    MethodPaper,
    RelationExtractionOutput,
    returns_text_encoder_states,
)
from .processing_mre import DESCRIPTION_TOKENS, names_the_pair
from .visual_mre import MREVisualModel, VisualInputs


# Signed distance from <s> to <o> in log-spaced buckets of its magnitude (0, 1, 2, 3-4, 5-8, 9-16, 17-32,
# over 32), one set per direction.
DISTANCE_BUCKETS = 8


@dataclass
class ROCOutput(RelationExtractionOutput):
    """
    `logits` are the decision of `ROCConfig`'s "Scores": their softmax is the score of each relation, in
    the order of `config.id2label`, or of `relation_names` when relations were given for the call.

    Args:
        type_loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            Cross-entropy of the head and tail entity types, on pairs whose relation name gives them.
        pair_embedding (`torch.FloatTensor` of shape `(batch_size, embedding_size)`):
            The normalised embedding a trained relation's description is compared with: in `sentence_space`,
            the unit text embedding plus the learned embedding of the marked pair; otherwise the latter.
        type_logits (`torch.FloatTensor` of shape `(batch_size, 2, num_entity_types)`, *optional*):
            Predicted entity types of the head and the tail (`config.entity_types`).
    """

    type_loss: torch.FloatTensor | None = None
    pair_embedding: torch.FloatTensor | None = None
    type_logits: torch.FloatTensor | None = None


def distance_bucket(distance: torch.LongTensor) -> torch.LongTensor:
    """Signed distance -> bucket in [0, 2 * DISTANCE_BUCKETS): 0, 1, 2, then one per doubling; one half per direction."""
    magnitude = distance.abs()
    doublings = torch.log2(magnitude.clamp(min=1).float()).ceil().long() + 1  # 1 -> 1, 2 -> 2, 3-4 -> 3, 5-8 -> 4
    buckets = torch.where(magnitude == 0, 0, doublings).clamp(max=DISTANCE_BUCKETS - 1)
    return buckets + DISTANCE_BUCKETS * (distance < 0).long()


def type_prior(type_logits: torch.Tensor, relation_types: torch.LongTensor) -> torch.Tensor:
    """
    (batch, relations): for each relation whose name gives its head and tail types, the log-likelihood
    ratio under the type head of those types against the pair's most likely ones, head plus tail: 0 where
    they are the most likely, and for a relation whose name gives none; negative otherwise.
    """
    log_types = type_logits.log_softmax(-1)  # (batch, 2, types)
    gaps = log_types - log_types.max(-1, keepdim=True).values  # (batch, 2, types), <= 0
    known = relation_types >= 0  # (relations, 2)
    head = gaps[:, 0, relation_types[:, 0].clamp(min=0)] * known[:, 0]
    tail = gaps[:, 1, relation_types[:, 1].clamp(min=0)] * known[:, 1]
    return head + tail


def cosines(queries: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
    """(batch, d) against (relations, d), or per example (batch, relations, d): (batch, relations) dot products."""
    if relations.dim() == 2:
        return queries @ relations.T
    return (relations @ queries[..., None]).squeeze(-1)


def mean_directions(embeddings: torch.Tensor, index: torch.LongTensor, num_relations: int) -> torch.Tensor:
    """The normalised mean direction of each relation's paraphrases: (..., paraphrases, d) -> (..., relations, d)."""
    summed = embeddings.new_zeros(*embeddings.shape[:-2], num_relations, embeddings.shape[-1])
    return F.normalize(summed.index_add(-2, index, embeddings), dim=-1)


class ROCForRelationExtraction(MREVisualModel):
    """
    ROC: the pair `[h(<s>) + type(<s>); h(<o>) + type(<o>)] + distance`, after the text has read the
    image slots, projected and normalised, against the normalised mean embeddings of each relation's
    descriptions; in `sentence_space`, plus the text as the description encoder reads it against every
    relation (`ROCConfig`, "Scores"). Entity types come from an auxiliary head trained by the type loss alone (on the
    relation names' type prefixes), as soft mixtures of type embeddings and as a prior over the typed
    relations: the gold label reaches only the losses.
    """

    config_class = ROCConfig
    method_name = "roc"
    paper = MethodPaper(
        title="ROC (Hei, Liao et al., EMNLP 2025)",
        citation="""@inproceedings{hei2025roc,
  title     = {Retrieval over Classification: Integrating Relation Semantics for Multimodal Relation Extraction},
  author    = {Hei, Lei and Liao, Tingjing and Pei, Yingxin and Qi, Yiyang and Wang, Jiaqi and Li, Ruiting and Ren, Feiliang},
  booktitle = {Proceedings of the 2025 Conference on Empirical Methods in Natural Language Processing},
  pages     = {18689--18704},
  year      = {2025},
  eprint    = {2509.21151},
  archivePrefix = {arXiv}
}""",
    )
    visual_features = "pooled"
    auxiliary_losses = {"type_loss": "type_loss_weight"}

    def __init__(self, config: ROCConfig):
        super().__init__(config)
        hidden_size = config.text_config.hidden_size
        self.text_encoder = build_text_encoder(config.text_config)
        if not config.share_relation_encoder:
            self.relation_encoder = build_text_encoder(config.text_config)
        self.build_visual_path(hidden_size)
        self.text_reads_image = CrossAttentionLayer(
            config, hidden_size, config.text_config.num_attention_heads, config.fusion_dropout
        )
        if config.entity_types:
            self.type_head = nn.Linear(hidden_size, len(config.entity_types))
            self.type_embeddings = nn.Linear(len(config.entity_types), hidden_size, bias=False)
        self.distance_embeddings = nn.Embedding(2 * DISTANCE_BUCKETS, 2 * hidden_size)
        embedding_size = hidden_size if config.sentence_space else config.embedding_size
        self.pair_projection = nn.Linear(2 * hidden_size, embedding_size)
        self.relation_projection = nn.Identity() if config.sentence_space else nn.Linear(hidden_size, embedding_size)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.description_tokenizer = None  # loaded from the model's folder when first needed
        self._tokenizer_source = None
        self._relation_cache = {}
        self.post_init()

    def pretrained_submodules(self):
        roles = super().pretrained_submodules()
        if not self.config.share_relation_encoder:
            roles["relation_encoder"] = "frozen" if self.config.freeze_relation_encoder else "encoder"
        return roles

    @classmethod
    def from_backbones(cls, text_backbone: str, vision_backbone: str | None = None, **config_kwargs):
        model = super().from_backbones(text_backbone, vision_backbone, **config_kwargs)
        if not model.config.share_relation_encoder:
            model.relation_encoder.load_state_dict(model.text_encoder.state_dict())
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        # The saved relations are tokenized with the folder's own tokenizer, from where its files came.
        model._tokenizer_source = (pretrained_model_name_or_path, {k: kwargs[k] for k in HUB_ARGUMENTS if k in kwargs})
        return model

    def use_tokenizer(self, tokenizer):
        self.description_tokenizer = tokenizer

    def resize_token_embeddings(self, *args, **kwargs):
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        if not self.config.share_relation_encoder:
            # Both encoders are built from `text_config`, whose vocab_size the resize changes: a relation
            # encoder left at the old size would not load back from the saved folder.
            self.relation_encoder.resize_token_embeddings(*args, **kwargs)
            self.apply_training_roles()  # the new embedding is trainable until a frozen encoder is frozen again
        return embeddings

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        # The folder must tokenize its descriptions on its own, also saved without its processor.
        if self.description_tokenizer is not None and kwargs.get("is_main_process", True):
            self.description_tokenizer.save_pretrained(save_directory)

    # --- relations -----------------------------------------------------------------------------

    def set_relations(self, relations: dict[str, str | list[str]], tokenizer=None):
        """
        Retrieve among these relations from now on: `{name: description or [paraphrases]}` (`None`
        included if pairs may be unrelated). Names already known keep their descriptions when given
        `None` or `[]`. Saved with `save_pretrained` (`config.relation_descriptions`, `id2label`). The
        relations training saw (`config.trained_relations`) compete under `config.trained_relation_margin`.
        For one call's relations, give them to the processor (`relations=`) instead: nothing is stored.
        """
        known = self.config.relation_descriptions
        given = {name: (description or known.get(name)) for name, description in relations.items()}
        descriptions = complete_descriptions({k: v for k, v in given.items() if v}, list(relations))
        self.config.relation_descriptions = descriptions
        self.config.id2label = dict(enumerate(descriptions))
        self.config.label2id = {name: i for i, name in enumerate(descriptions)}
        self.config.num_labels = len(descriptions)
        if tokenizer is not None:
            self.description_tokenizer = tokenizer

    def _tokenizer(self):
        if self.description_tokenizer is None:
            source, hub_arguments = self._tokenizer_source or (self.config._name_or_path, {})
            if not source:
                raise ValueError(
                    "ROC tokenizes its saved relation descriptions: load the model from a folder that holds its "
                    "tokenizer, call model.use_tokenizer(processor.tokenizer), or give the processor relations="
                )
            try:
                # The folder's tokenizer is a plain one: its remote code is never needed (nor asked for).
                # Given no config, AutoTokenizer would read config.json again, which without remote code
                # (modeling_mre not imported) falls back to a base PreTrainedConfig and warns of a type mismatch.
                self.description_tokenizer = AutoTokenizer.from_pretrained(
                    source, config=self.config, trust_remote_code=False, **hub_arguments
                )
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"ROC tokenizes its saved relation descriptions and found no tokenizer in {source}: "
                    "pass one with model.use_tokenizer(processor.tokenizer)"
                ) from error
        return self.description_tokenizer

    def embed_relations(self) -> torch.Tensor:
        """
        The normalised embedding of each saved relation `(num_relations, embedding_size)`: the mean
        direction of its paraphrases' embeddings, computed once until the descriptions or the weights
        change. In training, one paraphrase per relation is drawn each step: encoded afresh (with
        gradients) when the relation path trains, else taken from those computed once.
        """
        names = [self.config.id2label[i] for i in range(self.config.num_labels)]
        missing = [name for name in names if name not in self.config.relation_descriptions]
        if missing:
            raise ValueError(
                f"relations {missing} have no description in config.relation_descriptions: use model.set_relations"
            )
        descriptions = [self.config.relation_descriptions[name] for name in names]
        descriptions = [
            [paraphrases] if isinstance(paraphrases, str) else list(paraphrases) for paraphrases in descriptions
        ]
        texts = [text for paraphrases in descriptions for text in paraphrases]
        if names_the_pair(texts):
            raise ValueError(
                "descriptions naming {head} or {tail} are filled with each pair's entities by the processor: "
                "call processor(..., relations=model.config.relation_descriptions), or the pipeline"
            )
        picks = [int(torch.randint(len(paraphrases), ())) for paraphrases in descriptions] if self.training else None
        if self.training and any(weight.requires_grad for weight in self._relation_path()):
            encoded = self._tokenizer()(
                [paraphrases[pick] for paraphrases, pick in zip(descriptions, picks)], **DESCRIPTION_TOKENS
            )
            return self._encode_descriptions(encoded["input_ids"], encoded["attention_mask"])
        # Keyed by the descriptions themselves: editing config.relation_descriptions or id2label embeds them again.
        key = ("saved", self._relation_weights(), tuple(map(tuple, descriptions)))
        if key not in self._relation_cache:
            encoded = self._tokenizer()(texts, **DESCRIPTION_TOKENS)
            embeddings = self._encode_descriptions(encoded["input_ids"], encoded["attention_mask"])
            owners = torch.tensor(
                [i for i, paraphrases in enumerate(descriptions) for _ in paraphrases], device=embeddings.device
            )
            self._remember(key, (embeddings, mean_directions(embeddings, owners, len(descriptions))))
        embeddings, relations = self._relation_cache[key]
        if self.training:  # the relation path is frozen: each relation's drawn paraphrase, as computed once
            offsets = itertools.accumulate((len(paraphrases) for paraphrases in descriptions[:-1]), initial=0)
            return embeddings[[offset + pick for offset, pick in zip(offsets, picks)]]
        return relations

    def embed_given_relations(
        self,
        relation_input_ids: torch.LongTensor,
        relation_attention_mask: torch.LongTensor,
        relation_index: torch.LongTensor,
        num_relations: int,
    ) -> torch.Tensor:
        """
        The normalised embedding of each relation the processor encoded for this call: (paraphrases, len)
        -> (num_relations, embedding), or per example, (batch, paraphrases, len) -> (batch, num_relations,
        embedding) for descriptions filled with each pair's entities. Shared descriptions are embedded
        once until they or the weights change.
        """
        shape = relation_input_ids.shape[:-1]
        frozen = not any(weight.requires_grad for weight in self._relation_path()) or not torch.is_grad_enabled()
        key = None
        if len(shape) == 1 and frozen:
            content = (
                relation_input_ids.cpu().numpy().tobytes(),
                relation_index.cpu().numpy().tobytes(),
                tuple(relation_input_ids.shape),
            )
            key = ("given", self._relation_weights(), content)
            if key in self._relation_cache:
                return self._relation_cache[key]
        embeddings = self._encode_descriptions(
            relation_input_ids.flatten(0, -2), relation_attention_mask.flatten(0, -2)
        )
        relations = mean_directions(embeddings.view(*shape, -1), relation_index.to(embeddings.device), num_relations)
        if key is not None:
            self._remember(key, relations)
        return relations

    def _remember(self, key, value):
        # A few relation sets at a time (the saved ones and a call's); each entry is written whole, so two
        # threads never read each other's half.
        if len(self._relation_cache) >= 8:
            self._relation_cache.clear()
        self._relation_cache[key] = value

    def _encode_descriptions(self, input_ids: torch.LongTensor, attention_mask: torch.LongTensor) -> torch.Tensor:
        """The normalised embedding of each tokenized description, `(num_descriptions, embedding_size)`."""
        device = self.pair_projection.weight.device
        attention_mask = attention_mask.to(device)
        states = self.description_encoder(
            input_ids=input_ids.to(device), attention_mask=attention_mask
        ).last_hidden_state
        pooled = masked_mean(states, attention_mask)  # (descriptions, hidden)
        return F.normalize(self.relation_projection(pooled), dim=-1)

    @property
    def description_encoder(self) -> nn.Module:
        """The encoder that reads the descriptions (and, in `sentence_space`, the text they are compared with)."""
        return self.text_encoder if self.config.share_relation_encoder else self.relation_encoder

    def _relation_path(self):
        """The weights the relation embeddings are computed with."""
        return itertools.chain(self.description_encoder.parameters(), self.relation_projection.parameters())

    def _relation_weights(self) -> tuple:
        """
        What the relation embeddings depend on: each weight of the relation path, its version (which
        every in-place change bumps: an optimizer step, load_state_dict, merging LoRA), dtype and device
        (`.to()`); new weights (LoRA's injected layers) are new objects.
        """
        return tuple((id(weight), weight._version, weight.dtype, weight.device) for weight in self._relation_path())

    # --- the pair --------------------------------------------------------------------------------

    def sentence_embedding(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None,
        token_type_ids: torch.LongTensor | None,
    ) -> torch.Tensor:
        """
        The text as the description encoder reads a description, (batch, hidden): mean-pooled, with the
        entity markers (unknown to a frozen encoder) out of its attention and of the mean.
        """
        keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
        keep = keep & ~entity_markers(input_ids, self.config)
        states = self.description_encoder(
            input_ids=input_ids, attention_mask=keep.long(), token_type_ids=token_type_ids
        ).last_hidden_state
        return masked_mean(states, keep)

    @can_return_tuple
    @returns_text_encoder_states
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        relation_input_ids: torch.LongTensor | None = None,
        relation_attention_mask: torch.LongTensor | None = None,
        relation_index: torch.LongTensor | None = None,
        relation_names: list[str] | None = None,
        **visual_inputs: Unpack[VisualInputs],
    ) -> ROCOutput:
        r"""
        relation_input_ids, relation_attention_mask (`torch.LongTensor` of shape `(paraphrases, length)` or `(batch_size, paraphrases, length)`, *optional*):
            The descriptions of the relations to rank for this call, as `MREProcessor(..., relations=...)`
            gives them (per example where they name the pair); without them, the saved relations
            (`config.relation_descriptions`, in `id2label` order).
        relation_index (`torch.LongTensor` of shape `(paraphrases,)`, *optional*):
            The relation each paraphrase describes, an index into `relation_names`.
        relation_names (`list[str]`, *optional*):
            The relations given for this call; `labels` and `logits` follow their order.
        visual_inputs ([`VisualInputs`], *optional*):
            The whole image, object crops and object tail of each example (pixels or cached
            features), any of them absent; see `visual_mre.VisualInputs`.
        """
        config = self.config
        batch_size = input_ids.shape[0]
        text = self.encode_text(input_ids, attention_mask, token_type_ids)  # (batch, seq_len, hidden)
        visual = self.encode_images(batch_size, config.num_object_crops, **visual_inputs)
        text = self.text_reads_image(text, visual.states, visual.mask)  # slots: (batch, slots, hidden)

        batch_index = torch.arange(batch_size, device=input_ids.device)
        head_position = marker_positions(input_ids, config.head_start_token_id, "<s>")
        tail_position = marker_positions(input_ids, config.tail_start_token_id, "<o>")
        entities = torch.stack(
            [text[batch_index, head_position], text[batch_index, tail_position]], dim=1
        )  # (batch, 2, hidden)
        type_logits = None
        if config.entity_types:
            # Predicted types, never the gold ones; the type head learns from the type loss alone, so what the
            # type embeddings and the prior read is its own estimate, not a gate retrieval trained.
            type_logits = self.type_head(entities)  # (batch, 2, types)
            entities = entities + self.type_embeddings(type_logits.detach().softmax(-1))
        pair = entities.flatten(1) + self.distance_embeddings(distance_bucket(tail_position - head_position))
        pair_embedding = self.pair_projection(self.dropout(pair))  # (batch, embedding): which spans, in which order
        sentence = None
        if config.sentence_space:
            # The text as the description encoder reads it: what an added relation is compared with.
            sentence = F.normalize(self.sentence_embedding(input_ids, attention_mask, token_type_ids), dim=-1)
            pair_embedding = sentence + pair_embedding
        pair_embedding = F.normalize(pair_embedding, dim=-1)

        if relation_input_ids is None:
            names = [config.id2label[i] for i in range(config.num_labels)]
            relations = self.embed_relations()  # (relations, embedding)
        else:
            if relation_names is None or relation_index is None or relation_attention_mask is None:
                raise ValueError(
                    "relations given for a call need relation_attention_mask, relation_index and relation_names (MREProcessor's relations=)"
                )
            names = list(relation_names)
            relations = self.embed_given_relations(
                relation_input_ids, relation_attention_mask, relation_index, len(names)
            )
        similarities = cosines(pair_embedding, relations)  # (batch, relations)
        if sentence is not None:
            # What training learned of pairs speaks for the relations it learned; any other is compared with
            # the text as the description encoder reads both, as the untrained backbone would.
            trained = torch.tensor([name in config.trained_relations for name in names], device=relations.device)
            similarities = torch.where(trained, similarities, cosines(sentence, relations))
        scores = similarities / config.temperature
        relation_types = torch.tensor(relation_type_indices(config, names), device=scores.device)  # (relations, 2)
        if config.type_prior_weight and type_logits is not None:
            scores = scores + config.type_prior_weight * type_prior(type_logits.detach(), relation_types)
        logits = self.decide(scores, names)

        loss = classification_loss = type_loss = None
        if labels is not None:
            candidates = scores  # the retrieval loss never sees the margin or the threshold
            held_out = [i for i, name in enumerate(names) if name in (config.held_out_relations or ())]
            if self.training and held_out:
                # A relation held out of training is no negative either: only the trained ones compete.
                candidates = scores.index_fill(-1, torch.tensor(held_out, device=scores.device), float("-inf"))
            classification_loss = F.cross_entropy(candidates, labels)
            type_loss = scores.new_zeros(())
            if config.entity_types:
                type_loss = self.type_loss(type_logits, labels, relation_types)
            loss = self.combine_losses(classification_loss, type_loss=type_loss)
        return ROCOutput(
            loss=loss,
            classification_loss=classification_loss,
            logits=logits,
            pair_representation=pair,
            type_loss=type_loss,
            pair_embedding=pair_embedding,
            type_logits=type_logits,
        )

    def decide(self, scores: torch.Tensor, names: list[str]) -> torch.Tensor:
        """
        The logits of `ROCConfig`'s "Scores" from each relation's score (cosine / temperature plus its type
        prior), (batch, relations): trained relations lowered by the margin, and `None` (its score, or the
        threshold) moved with the best relation, so that `None` against the best relation is decided
        before the margin.
        """
        config = self.config
        trained = torch.tensor([name in config.trained_relations for name in names], device=scores.device)
        logits = scores - (config.trained_relation_margin / config.temperature) * trained.to(scores.dtype)
        if "None" not in names or len(names) == 1:
            return logits
        is_none = torch.tensor([name == "None" for name in names], device=scores.device)  # (relations,)
        none_score = scores[:, is_none].max(-1).values  # (batch,)
        if config.none_threshold is not None:
            none_score = torch.full_like(none_score, config.none_threshold / config.temperature)
        related = torch.zeros_like(scores[0]).masked_fill(is_none, float("-inf"))  # max over relations other than None
        moved = (logits + related).max(-1).values - (scores + related).max(-1).values  # (batch,) what the margin took
        return torch.where(is_none, (none_score + moved)[:, None], logits)

    def type_loss(
        self, type_logits: torch.Tensor, labels: torch.LongTensor, relation_types: torch.LongTensor
    ) -> torch.Tensor:
        """Cross-entropy of the head and tail types that the gold relation's name gives (none for `None`)."""
        targets = relation_types[labels].flatten()  # (batch * 2,)
        known = targets >= 0
        # A batch without typed pairs still keeps the type head in the graph: DDP waits for every gradient.
        losses = F.cross_entropy(type_logits.flatten(0, 1), targets.clamp(min=0), reduction="none")
        return (losses * known).sum() / known.sum().clamp(min=1)
