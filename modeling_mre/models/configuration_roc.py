"""Configuration of ROC (retrieval over classification, EMNLP 2025)."""

import warnings

from huggingface_hub.dataclasses import strict

from .configuration_mre import MREConfig, entity_types_of


# Written by us (the paper's GPT-4o descriptions are not public): three paraphrases per MNRE relation,
# each saying what holds between the head ("the first entity") and the tail ("the second entity").
MNRE_RELATION_DESCRIPTIONS = {
    "None": [
        "no relation between the two entities is expressed",
        "the text and image say nothing about how the two entities are related",
        "the two entities are mentioned together but not related",
    ],
    "/per/per/parent": [
        "the second person is a parent of the first person",
        "the first person is the child of the second person",
        "one person is the mother or father of the other",
    ],
    "/per/per/siblings": [
        "the two people are siblings",
        "the first person is a brother or sister of the second person",
        "the two people share a parent",
    ],
    "/per/per/couple": [
        "the two people are a couple",
        "the first person is married to or dating the second person",
        "the two people are partners, husband and wife, or lovers",
    ],
    "/per/per/neighbor": [
        "the two people are neighbors",
        "the first person lives next to the second person",
        "the two people live near each other",
    ],
    "/per/per/peer": [
        "the two people are peers or colleagues",
        "the first person works, plays or performs together with the second person",
        "the two people are teammates, friends or fellow members of a group",
    ],
    "/per/per/charges": [
        "the first person is in charge of the second person",
        "the first person coaches, leads or manages the second person",
        "one person has authority over the other",
    ],
    "/per/per/alumi": [
        "the two people went to the same school",
        "the first person is an alumnus of the same university as the second person",
        "the two people studied together",
    ],
    "/per/per/alternate_names": [
        "the two names refer to the same person",
        "the second name is a nickname or another name of the first person",
        "the first person is also known as the second name",
    ],
    "/per/org/member_of": [
        "the person is a member of the organization",
        "the person plays for, works for or belongs to the organization",
        "the first entity is part of the team, band, party or company named second",
    ],
    "/per/loc/place_of_residence": [
        "the person lives in the place",
        "the place is where the person resides",
        "the person has a home in the location",
    ],
    "/per/loc/place_of_birth": [
        "the person was born in the place",
        "the place is the birthplace of the person",
        "the person comes from the location, where they were born",
    ],
    "/org/org/alternate_names": [
        "the two names refer to the same organization",
        "the second name is an abbreviation or another name of the first organization",
        "the organization is also known as the second name",
    ],
    "/org/org/subsidiary": [
        "the first organization is a subsidiary of the second",
        "the second organization owns or controls the first organization",
        "one organization is part of the other",
    ],
    "/org/loc/locate_at": [
        "the organization is located in the place",
        "the place is where the organization is based",
        "the organization has its headquarters or home in the location",
    ],
    "/loc/loc/contain": [
        "the first place contains the second place",
        "the second place is located inside the first place",
        "one location is part of the other",
    ],
    "/per/misc/present_in": [
        "the person is present at the event or thing",
        "the person appears in, attends or takes part in the second entity",
        "the person is at the occasion named second",
    ],
    "/per/misc/awarded": [
        "the person received the award",
        "the person won the prize, title or honor named second",
        "the second entity is an award given to the person",
    ],
    "/per/misc/race": [
        "the second entity is the race or ethnicity of the person",
        "the person belongs to the ethnic group",
        "the person is of the given race",
    ],
    "/per/misc/religion": [
        "the second entity is the religion of the person",
        "the person follows or believes in the religion",
        "the person belongs to the faith named second",
    ],
    "/per/misc/nationality": [
        "the second entity is the nationality of the person",
        "the person is a citizen of the country or nation named second",
        "the person comes from the nation",
    ],
    "/misc/misc/part_of": [
        "the first entity is part of the second entity",
        "the second entity includes the first",
        "one thing is a component or member of the other",
    ],
    "/misc/loc/held_on": [
        "the event is held in the place",
        "the place is where the event takes place",
        "the event happens at the location",
    ],
}


def relation_name_description(name: str) -> str:
    """A description built from a relation's name, `/per/org/member_of` -> "per org member of"."""
    return " ".join(part for part in name.replace("_", " ").split("/") if part).strip() or name


@strict
class ROCConfig(MREConfig):
    r"""
    Configuration of [`ROCForRelationExtraction`]. No code or full text of the paper is public: the
    defaults are our reading of its abstract (`hub_cards/methods/roc_notes.md` says which).

    Scores:
        A relation's *similarity* to a pair is a cosine. In `sentence_space` (the default), a relation
        training saw (`trained_relations`) is compared with the pair embedding: the text as the description
        encoder reads it (unit length) plus the learned embedding of the marked pair (which spans, in which
        order, with their predicted types and what they read of the image), normalised. Any other relation
        is compared with the text's embedding alone: a relation added after training is judged as the
        untrained backbone judges it, whatever training did, and by the pair only where its description
        names `{head}` and `{tail}`. Without `sentence_space`, every relation is compared with the pair
        embedding alone. Its *score* is the similarity divided by `temperature`, plus `type_prior_weight`
        times its type prior: the log-likelihood ratio, under the type head (trained by the type loss
        alone), of the head and tail types its name gives (`/per/org/...`) against the pair's most likely
        types. The prior is 0 for a relation whose types are the pair's
        most likely ones and for one whose name gives none (`None`, `founded_by`), negative otherwise: a
        typed relation whose types fit the pair is neither favoured nor penalised against an untyped one.
        The model's `logits` (whose softmax the pipeline shows) are the scores with two decisions applied:
        1. *`None` against the rest.* `None` wins exactly when its score (or, with `none_threshold`,
           `none_threshold / temperature`) is at least the best score of the other relations. The margin
           below never changes this decision.
        2. *Among the relations.* Trained relations (`trained_relations`) lose `trained_relation_margin /
           temperature` against relations added after training; `None`'s logit moves with the best
           relation's, so that (1) holds. While only trained relations compete, the margin changes no
           prediction and no score.
        Training's retrieval loss is the cross-entropy of the scores (neither margin nor threshold).

    Args:
        relation_descriptions (`dict[str, str | list[str]]`, *optional*):
            Natural-language descriptions of each relation in `id2label` (several paraphrases each),
            which the relation encoder embeds. Defaults to ours for MNRE's 23 relations; any other
            relation without one gets a description built from its name, with a warning.
        share_relation_encoder (`bool`, *optional*, defaults to `False`):
            Whether the descriptions go through the text encoder itself; `False` builds a separate
            relation encoder of the same architecture (initialised from the same backbone).
        freeze_relation_encoder (`bool`, *optional*, defaults to `True`):
            Keep the separate relation encoder at its pretrained weights, so that a description written
            after training is embedded as the backbone reads it, not by an encoder fitted to the training
            relations. Needs `share_relation_encoder=False`.
        held_out_relations (`list[str]`, *optional*):
            Relations whose examples training never saw (`train_accelerate.py --hold_out_relations` sets
            it). Training leaves them out of the retrieval softmax as well, so that the model is never
            taught to steer pairs away from their descriptions; at inference they compete like the others.
        trained_relations (`list[str]`, *optional*):
            The relations training saw: defaults to the labels less `held_out_relations` when the config is
            made, and stays as it is when `set_relations` adds others (add a relation here once you have
            fine-tuned on it: its pair term then counts, "Scores").
        trained_relation_margin (`float`, *optional*, defaults to 0.2):
            How much similarity a trained relation gives up against a relation added after training ("Scores",
            2), so that the added one competes on fairer terms (calibrated stacking, Chao et al., 2016):
            training draws the pairs it saw to the trained descriptions. Chosen on a tenth of MNRE train with
            two relations held out of training (three seeds chose 0.2, 0.25 and 0.3; averaged, 0.2 to 0.3
            lie within half a point), never on the split reported (`benchmarks/RESULTS.md`).
        sentence_space (`bool`, *optional*, defaults to `True`):
            Retrieve in the description encoder's own sentence-embedding space ("Scores"): the descriptions'
            mean-pooled embeddings without a projection, compared with the text as that encoder reads it
            (mean-pooled, markers left out) and, for trained relations, with a projection of the typed,
            ordered entity pair. A description may name the pair (`"{head} founded {tail}"`, filled by the
            processor), which gives it a direction. `False` projects both sides into a learned space of `embedding_size`.
        embedding_size (`int`, *optional*, defaults to 256):
            Width of the learned space where entity pairs and relation descriptions meet (`sentence_space=False`).
        temperature (`float`, *optional*, defaults to 0.07):
            Temperature of the contrastive retrieval loss and of the scores' softmax.
        none_threshold (`float`, *optional*):
            When set, `None`'s score is `none_threshold / temperature` whatever its description: a pair is
            predicted `None` exactly when no other relation's score reaches it ("Scores", 1; for a relation
            whose types fit the pair, or that names none, that is its similarity reaching `none_threshold`).
            Unset, `None` is a description like the others.
        entity_types (`list[str]`, *optional*):
            The types the auxiliary type head predicts for the head and the tail; defaults to those in the
            relation names' `/head/tail/` prefixes (MNRE's), or none when they carry none.
        type_prior_weight (`float`, *optional*, defaults to 1.0):
            Weight of the type prior in a relation's score ("Scores"): a relation whose name gives types the
            type head finds unlikely for the pair (`/per/org/founder_of` on a place) loses against the rest.
        type_loss_weight (`float`, *optional*, defaults to 0.5):
            Weight of the entity-type cross-entropy (on pairs whose relation name gives the types).
        num_object_crops (`int`, *optional*, defaults to 3):
            Visual-grounding crops read beside the whole image.
        fusion_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on what the text reads from the image.
    """

    model_type = "mre-roc"

    relation_descriptions: dict[str, str | list[str]] | None = None
    share_relation_encoder: bool = False
    freeze_relation_encoder: bool = True
    held_out_relations: list[str] | None = None
    trained_relations: list[str] | None = None
    trained_relation_margin: float = 0.2
    sentence_space: bool = True
    type_prior_weight: float = 1.0
    embedding_size: int = 256
    temperature: float = 0.07
    none_threshold: float | None = None
    entity_types: list[str] | None = None
    type_loss_weight: float = 0.5
    num_object_crops: int = 3
    fusion_dropout: float = 0.1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.freeze_relation_encoder and self.share_relation_encoder:
            raise ValueError(
                "freeze_relation_encoder=True (the default) needs share_relation_encoder=False: the shared encoder is "
                "the pair's text encoder, which trains; pass freeze_relation_encoder=False with it"
            )
        if self.entity_types is None:
            self.entity_types = entity_types_of(self.id2label.values())
        self.relation_descriptions = complete_descriptions(self.relation_descriptions, list(self.id2label.values()))
        if self.trained_relations is None:
            held_out = set(self.held_out_relations or ())
            self.trained_relations = [name for name in self.id2label.values() if name not in held_out]


def complete_descriptions(descriptions: dict[str, list[str]] | None, relations: list[str]) -> dict[str, list[str]]:
    """
    Descriptions for every relation: the given ones, else ours for MNRE's relations, else one built from
    the relation's name (with a warning, since a name like `LABEL_3` describes nothing).
    """
    descriptions = dict(descriptions or {})
    built = []
    for relation in relations:
        if relation in descriptions:
            paraphrases = descriptions[relation]
            descriptions[relation] = [paraphrases] if isinstance(paraphrases, str) else list(paraphrases)
        elif relation in MNRE_RELATION_DESCRIPTIONS:
            descriptions[relation] = list(MNRE_RELATION_DESCRIPTIONS[relation])
        else:
            descriptions[relation] = [relation_name_description(relation)]
            built.append(relation)
    if built:
        warnings.warn(
            f"no description for relations {built}: using their names; give ROC descriptions "
            "(relation_descriptions, model.set_relations) for retrieval to know what they mean",
            stacklevel=3,
        )
    return {relation: descriptions[relation] for relation in relations}
