"""
ROC: retrieval over classification for multimodal relation extraction (EMNLP 2025, arXiv 2509.21151).
Neither code, descriptions nor numbers are public; this follows the abstract (the model card lists what
is the paper's and what ours). No classifier: an entity-pair embedding, built with entity type and
position information by a multimodal encoder, is matched against embeddings of natural-language
relation descriptions, trained contrastively. A relation never seen in training is added at inference
by writing its description (`set_relations`, or the pipeline's `candidate_relations=`).
"""

import contextlib
import itertools
from dataclasses import dataclass
from typing import Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoTokenizer

from .configuration_mre import relation_type_indices
from .configuration_roc import ROCConfig, complete_descriptions
from .modeling_mre import (
    CrossAttentionLayer,
    MethodPaper,
    RelationExtractionOutput,
    build_text_encoder,
    marker_positions,
    masked_mean,
)
from .visual_mre import MREVisualModel, VisualInputs


# Signed distance from <s> to <o> in log-spaced buckets (0, 1, 2, 3-4, 5-8, ..., > 64), each direction.
DISTANCE_BUCKETS = 8


@dataclass
class ROCOutput(RelationExtractionOutput):
    """
    `logits` are cosine similarities to each relation's description embedding divided by the
    temperature: their softmax is the score of each relation.

    Args:
        type_loss (`torch.FloatTensor` of shape `()`, *optional*, returned with `labels`):
            Cross-entropy of the head and tail entity types, on pairs whose relation name gives them.
        pair_embedding (`torch.FloatTensor` of shape `(batch_size, embedding_size)`):
            The normalised entity-pair embedding that retrieval compares with the relations'.
        type_logits (`torch.FloatTensor` of shape `(batch_size, 2, num_entity_types)`, *optional*):
            Predicted entity types of the head and the tail (`config.entity_types`).
    """

    type_loss: torch.FloatTensor | None = None
    pair_embedding: torch.FloatTensor | None = None
    type_logits: torch.FloatTensor | None = None


def distance_bucket(distance: torch.LongTensor) -> torch.LongTensor:
    """Signed distance -> bucket in [0, 2 * DISTANCE_BUCKETS): log2 magnitude, one half per direction."""
    magnitude = torch.log2(distance.abs().clamp(min=1).float()).ceil().long().clamp(max=DISTANCE_BUCKETS - 1)
    return magnitude + DISTANCE_BUCKETS * (distance < 0).long()


class ROCForRelationExtraction(MREVisualModel):
    """
    ROC: the pair `[h(<s>) + type(<s>); h(<o>) + type(<o>)] + distance`, after the text has read the
    image slots, projected (plus the text's mean-pooled embedding in `sentence_space`) and normalised,
    against the normalised mean embeddings of each relation's descriptions. Entity types come from an
    auxiliary head (trained from the relation names' type prefixes), as soft mixtures of type
    embeddings and as a prior over the typed relations: the gold label reaches only the losses.
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
        self.text_reads_image = CrossAttentionLayer(hidden_size, config.text_config.num_attention_heads, config.fusion_dropout)
        if config.entity_types:
            self.type_head = nn.Linear(hidden_size, len(config.entity_types))
            self.type_embeddings = nn.Linear(len(config.entity_types), hidden_size, bias=False)
        self.distance_embeddings = nn.Embedding(2 * DISTANCE_BUCKETS, 2 * hidden_size)
        embedding_size = hidden_size if config.sentence_space else config.embedding_size
        self.pair_projection = nn.Linear(2 * hidden_size, embedding_size)
        self.relation_projection = nn.Identity() if config.sentence_space else nn.Linear(hidden_size, embedding_size)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.description_tokenizer = None  # loaded from the model's folder when first needed
        self._relation_cache = None
        self.post_init()
        if config.sentence_space:
            # The pair starts as the sentence's own embedding: retrieval before training is the backbone's similarity.
            nn.init.zeros_(self.pair_projection.weight)
            nn.init.zeros_(self.pair_projection.bias)

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
        self._relation_cache = None

    @contextlib.contextmanager
    def candidate_relations(self, relations: dict[str, str | list[str]] | list[str], tokenizer=None):
        """`set_relations` for the duration of a `with` block (the pipeline's `candidate_relations=`)."""
        if isinstance(relations, (list, tuple)):
            unknown = [name for name in relations if name not in self.config.relation_descriptions]
            if unknown:
                raise ValueError(f"candidate_relations {unknown} have no description: pass {{name: description}}")
            relations = {name: None for name in relations}
        saved = (self.config.relation_descriptions, self.config.id2label, self.config.label2id, self.description_tokenizer)
        self.set_relations(relations, tokenizer)
        try:
            yield self
        finally:
            self.config.relation_descriptions, id2label, label2id, self.description_tokenizer = saved
            self.config.id2label, self.config.label2id, self.config.num_labels = id2label, label2id, len(id2label)
            self._relation_cache = None

    def _tokenizer(self):
        if self.description_tokenizer is None:
            source = self.config._name_or_path
            if not source:
                raise ValueError(
                    "ROC tokenizes its relation descriptions: load the model from a folder that holds its "
                    "tokenizer or call model.use_tokenizer(processor.tokenizer)"
                )
            try:
                self.description_tokenizer = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"ROC tokenizes its relation descriptions and found no tokenizer in {source}: "
                    "pass one with model.use_tokenizer(processor.tokenizer)"
                ) from error
        return self.description_tokenizer

    def embed_relations(self) -> torch.Tensor:
        """
        The normalised embedding of each relation `(num_relations, embedding_size)`: the mean direction of
        its paraphrases' embeddings, computed once until the relations or the weights change. In training,
        one paraphrase per relation is drawn each step: encoded afresh (with gradients) when the relation
        path trains, else taken from those computed once.
        """
        descriptions = [self.config.relation_descriptions[self.config.id2label[i]] for i in range(self.config.num_labels)]
        picks = [int(torch.randint(len(paraphrases), ())) for paraphrases in descriptions] if self.training else None
        if self.training and any(weight.requires_grad for weight in self._relation_path()):
            return self._encode_descriptions([paraphrases[pick] for paraphrases, pick in zip(descriptions, picks)])
        weights = self._relation_weights()
        if self._relation_cache is None or self._relation_cache[0] != weights:
            embeddings = self._encode_descriptions([text for paraphrases in descriptions for text in paraphrases])
            owners = torch.tensor([i for i, paraphrases in enumerate(descriptions) for _ in paraphrases], device=embeddings.device)
            summed = torch.zeros(len(descriptions), embeddings.shape[-1], device=embeddings.device, dtype=embeddings.dtype)
            relations = F.normalize(summed.index_add(0, owners, embeddings), dim=-1)  # mean direction of the paraphrases
            self._relation_cache = (weights, embeddings, relations)
        _, embeddings, relations = self._relation_cache
        if self.training:  # the relation path is frozen: each relation's drawn paraphrase, as computed once
            offsets = itertools.accumulate((len(paraphrases) for paraphrases in descriptions[:-1]), initial=0)
            return embeddings[[offset + pick for offset, pick in zip(offsets, picks)]]
        return relations

    def _encode_descriptions(self, texts: list[str]) -> torch.Tensor:
        """The normalised embedding of each description, `(len(texts), embedding_size)`."""
        encoded = self._tokenizer()(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        encoder = self.text_encoder if self.config.share_relation_encoder else self.relation_encoder
        device = self.pair_projection.weight.device
        states = encoder(input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device)).last_hidden_state
        pooled = masked_mean(states, encoded["attention_mask"].to(device))  # (descriptions, hidden)
        return F.normalize(self.relation_projection(pooled), dim=-1)

    def _relation_path(self):
        """The weights the relation embeddings are computed with."""
        encoder = self.text_encoder if self.config.share_relation_encoder else self.relation_encoder
        return itertools.chain(encoder.parameters(), self.relation_projection.parameters())

    def _relation_weights(self) -> tuple:
        """
        What the relation embeddings depend on: each weight of the relation path, its version (which
        every in-place change bumps: an optimizer step, load_state_dict, merging LoRA), dtype and device
        (`.to()`); new weights (LoRA's injected layers) are new objects.
        """
        return tuple((id(weight), weight._version, weight.dtype, weight.device) for weight in self._relation_path())

    # --- the pair --------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        **visual_inputs: Unpack[VisualInputs],
    ) -> ROCOutput:
        r"""
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
        entities = torch.stack([text[batch_index, head_position], text[batch_index, tail_position]], dim=1)  # (batch, 2, hidden)
        type_logits = None
        if config.entity_types:
            # Predicted types enter as soft mixtures of type embeddings: never the gold ones.
            type_logits = self.type_head(entities)  # (batch, 2, types)
            entities = entities + self.type_embeddings(type_logits.softmax(-1))
        pair = entities.flatten(1) + self.distance_embeddings(distance_bucket(tail_position - head_position))
        pair_embedding = self.pair_projection(self.dropout(pair))  # (batch, embedding)
        if config.sentence_space:
            pair_embedding = pair_embedding + masked_mean(text, attention_mask)  # + the mean-pooled sentence (batch, hidden)
        pair_embedding = F.normalize(pair_embedding, dim=-1)

        relations = self.embed_relations()  # (relations, embedding)
        similarities = pair_embedding @ relations.T  # (batch, relations) cosines
        if config.none_threshold is not None and "None" in config.label2id and not self.training:
            # `None` wins exactly when no other relation reaches the threshold.
            similarities = similarities.clone()
            similarities[:, config.label2id["None"]] = config.none_threshold
        if config.trained_relation_margin:
            trained = [config.id2label[i] in config.trained_relations for i in range(config.num_labels)]
            trained = torch.tensor(trained, device=similarities.device, dtype=similarities.dtype)  # (relations,)
            similarities = similarities - config.trained_relation_margin * trained
        logits = similarities / config.temperature
        # (relations, 2) type indices, -1 where the name gives none; built per call: set_relations changes it
        relation_types = torch.tensor(relation_type_indices(config), device=logits.device)
        if config.type_prior_weight and type_logits is not None:
            # A relation whose name gives its head and tail types also weighs how likely the pair has them:
            # a relation added after training (`/per/org/founder_of`) is kept from pairs of the wrong types.
            log_types = type_logits.log_softmax(-1)  # (batch, 2, types)
            known = relation_types >= 0
            prior = (log_types[:, 0, relation_types[:, 0].clamp(min=0)] * known[:, 0]
                     + log_types[:, 1, relation_types[:, 1].clamp(min=0)] * known[:, 1])  # (batch, relations)
            logits = logits + config.type_prior_weight * prior

        loss = classification_loss = type_loss = None
        if labels is not None:
            candidates = logits
            if self.training and config.held_out_relations:
                # A relation held out of training is no negative either: only the trained ones compete.
                held_out = [config.label2id[name] for name in config.held_out_relations if name in config.label2id]
                candidates = logits.index_fill(-1, torch.tensor(held_out, device=logits.device), float("-inf"))
            classification_loss = F.cross_entropy(candidates, labels)
            type_loss = logits.new_zeros(())
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

    def type_loss(self, type_logits: torch.Tensor, labels: torch.LongTensor, relation_types: torch.LongTensor) -> torch.Tensor:
        """Cross-entropy of the head and tail types that the gold relation's name gives (none for `None`)."""
        targets = relation_types[labels].flatten()  # (batch * 2,)
        known = targets >= 0
        # A batch without typed pairs still keeps the type head in the graph: DDP waits for every gradient.
        losses = F.cross_entropy(type_logits.flatten(0, 1), targets.clamp(min=0), reduction="none")
        return (losses * known).sum() / known.sum().clamp(min=1)
