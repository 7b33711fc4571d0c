"""
MREProcessor: locates the two entities in the text, marks them, tokenizes with dynamic padding and
cuts a long text to windows around them. A tail may also be an object in the image (MORE); its box and
every picture of the batch are prepared by `images_mre`, with absence made explicit by masks.
"""

import numbers
import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import AutoImageProcessor, AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.utils import logging

from .images_mre import box_features, decode_unless_file, is_object_tail, normalised_box, picture_inputs


logger = logging.get_logger(__name__)

# An unpaired surrogate (a post cut inside an emoji: valid JSON, and a valid Python str) is no Unicode
# character, and tokenizers refuse the whole text for it. Each is replaced by U+FFFD one for one, so
# that character offsets into the text given still hold.
_UNENCODABLE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def encodable(text: str) -> str:
    """`text` with each unpaired surrogate replaced by U+FFFD (the same length: offsets hold)."""
    return _UNENCODABLE.sub(REPLACEMENT_CHARACTER, text)


def encodable_texts(texts: list[str]) -> list[str]:
    """`encodable` of each text, the replacements counted in one warning per call."""
    replaced = sum(len(_UNENCODABLE.findall(text)) for text in texts)
    if replaced:
        logger.warning(
            f"{replaced} unpaired surrogate characters (text cut inside an emoji?) in {len(texts)} texts replaced "
            "by U+FFFD: no tokenizer can encode them"
        )
        return [encodable(text) for text in texts]
    return texts


def is_index(value) -> bool:
    """An integer offset: an int or a numpy integer (a DataFrame row's), never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _find_entity(text: str, name: str, role: str) -> tuple[int, int]:
    if not name.strip():
        raise ValueError(f"the {role} entity is an empty or blank string: {name!r}")
    text, name = encodable(text), encodable(name)
    starts = [i for i in range(len(text) - len(name) + 1) if text.startswith(name, i)]
    if not starts:
        raise ValueError(f"{role} entity {name!r} not found in the text {text!r}")
    if len(starts) > 1:
        raise ValueError(
            f"{role} entity {name!r} occurs {len(starts)} times in the text (at characters {starts}); "
            "give its character offsets (start, end) instead"
        )
    return starts[0], starts[0] + len(name)


def check_count(name: str, value, minimum: int) -> int:
    """
    `value` as an int of at least `minimum`, or an error naming the argument: a bool, a float or a number
    read from a config as a string is refused, not compared (`'<' not supported between ...`).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int of at least {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an int of at least {minimum}, got {value!r}")
    return int(value)


def check_call_options(processor, return_tensors, options: dict, fitting: str):
    """
    What a tokenizer call takes and these processors decide themselves: `padding=True`/`"longest"`,
    `truncation=True` and the processor's own `max_length` mean what they do, and are accepted; any
    other value, or an unknown argument, is refused by name rather than silently ignored.
    """
    name = type(processor).__name__
    if return_tensors != "pt":
        raise ValueError(f"{name} returns PyTorch tensors only: return_tensors must be 'pt', got {return_tensors!r}")
    honoured = {
        "padding": (True, "longest"),
        "truncation": (True, "longest_first"),
        "max_length": (processor.max_length,),
    }
    for option, value in options.items():
        if option not in honoured:
            raise TypeError(f"{name}.__call__ got an unexpected argument {option!r}")
        if not any(value == accepted and type(value) is type(accepted) for accepted in honoured[option]):
            raise ValueError(
                f"{name} pads each batch to its longest example and fits every text in max_length={processor.max_length} "
                f"tokens its own way ({fitting}); {option}={value!r} is not supported per call: build the "
                f"processor with another max_length (`{name}.from_pretrained(..., max_length=...)`) instead"
            )


def entity_pair_problem(head: tuple[int, int], tail: tuple[int, int] | None) -> str | None:
    """
    What is wrong with a head and tail span (start, end), or None: the same span, or spans that cross
    (each holds part of the other), whose markers could not nest. One inside the other is fine, as
    MNRE has such pairs (62 of its 13,871 train and validation rows: a place inside a venue's name).
    """
    if tail is None:
        return None
    if tuple(head) == tuple(tail):
        return f"the tail is the same span as the head, {tuple(head)}; a relation needs two entities"
    (head_start, head_end), (tail_start, tail_end) = head, tail
    nested = (head_start <= tail_start and tail_end <= head_end) or (tail_start <= head_start and head_end <= tail_end)
    if head_start < tail_end and tail_start < head_end and not nested:
        return (
            f"the head {tuple(head)} and the tail {tuple(tail)} overlap without one containing the other; "
            "give disjoint spans, or one inside the other"
        )
    return None


def character_span(text: str, entity, role: str) -> tuple[int, int]:
    """
    (start, end) character offsets of an entity given as a string, (start, end) or {"start", "end"}
    (integers of any kind); a dict's optional `name` must be the text it spans. A span of whitespace is
    no entity.
    """
    if isinstance(entity, str):
        return _find_entity(text, entity, role)
    if isinstance(entity, dict):
        start, end = entity.get("start"), entity.get("end")
    elif isinstance(entity, Sequence) and len(entity) == 2:
        start, end = entity
    else:
        raise TypeError(f"the {role} entity must be a string, (start, end) offsets or a dict, got {entity!r}")
    if not (is_index(start) and is_index(end) and 0 <= start < end <= len(text)):
        raise ValueError(
            f"{role} span {(start, end)!r} is not a non-empty range inside the text of {len(text)} characters"
        )
    start, end = int(start), int(end)
    if not text[start:end].strip():
        raise ValueError(
            f"{role} span {(start, end)} is only whitespace ({text[start:end]!r}): an entity needs a word"
        )
    name = entity.get("name") if isinstance(entity, dict) else None
    if name is not None and name != text[start:end]:
        # A dataset record's {name, start, end} counts tokens: read as characters it would mark other words.
        raise ValueError(
            f"the {role} entity's name {name!r} is not the text at characters [{start}, {end}), {text[start:end]!r}: "
            "with `text`, start and end are character offsets (a dataset record's token span goes with `tokens=`)"
        )
    return start, end


def _tokens_to_text(tokens: Sequence[str], spans: dict[str, dict]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Join pre-tokenized words with spaces and turn token spans (end exclusive) into character spans."""
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    character_spans = {}
    for role, entity in spans.items():
        start, end = entity["start"], entity["end"]
        if not (is_index(start) and is_index(end) and 0 <= start < end <= len(tokens)):
            raise ValueError(f"{role} token span [{start}, {end}) is out of range for {len(tokens)} tokens")
        start, end = int(start), int(end)
        character_spans[role] = (starts[start], starts[end - 1] + len(tokens[end - 1]))
    return " ".join(tokens), character_spans


class _Pair(NamedTuple):
    """One example's pair, located: what the tokenizer and a description naming the pair read of it."""

    marked_text: str  # the text with both markers around each entity (only the head's for an object tail)
    tail_text: str | None  # an object tail's second segment, `<o> caption-or-name </o>`
    tail_box: list[float] | None  # an object tail's normalised corners on the image
    names: tuple[str, str]  # the head's and the tail's words, for `{head}` and `{tail}` in descriptions


# A relation description may name the pair: "{head} was founded by {tail}" is read with the pair's own
# entities in their places, so that it has a direction (ROC compares it with the text).
ENTITY_PLACEHOLDERS = ("{head}", "{tail}")
# Any other `{name}` is a typo of these (`{haed}`), which would otherwise be read as literal text.
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
# How descriptions are tokenized, by the processor for a call and by ROC for its saved relations alike.
DESCRIPTION_TOKENS = dict(padding=True, truncation=True, max_length=64, return_tensors="pt")


def names_the_pair(descriptions: list[str]) -> bool:
    """Whether any description names `{head}` or `{tail}` (and so is filled per pair)."""
    return any(placeholder in text for text in descriptions for placeholder in ENTITY_PLACEHOLDERS)


def fill_description(description: str, head: str, tail: str) -> str:
    """A description with the pair's entities in place of `{head}` and `{tail}`."""
    return description.replace("{head}", head).replace("{tail}", tail)


def relation_paraphrases(relations) -> dict[str, list[str]]:
    """`{name: description or [paraphrases]}` as `{name: [paraphrases]}`, each relation with at least one."""
    if not isinstance(relations, dict) or not relations:
        raise TypeError(
            f"relations must be a non-empty dict {{name: description or [paraphrases]}}, got {relations!r}"
        )
    paraphrases = {}
    for name, described in relations.items():
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"relation names must be non-empty strings, got {name!r} ({type(name).__name__})")
        described = [described] if isinstance(described, str) else described
        if (
            not isinstance(described, (list, tuple))
            or not described
            or not all(isinstance(d, str) and d.strip() for d in described)
        ):
            raise ValueError(
                f"relation {name!r}: its description must be a non-empty string or list of them, got {described!r}"
            )
        unknown = sorted(
            {f"{{{found}}}" for text in described for found in _PLACEHOLDER.findall(text)} - set(ENTITY_PLACEHOLDERS)
        )
        if unknown:
            raise ValueError(
                f"relation {name!r}: its description names {', '.join(unknown)}; a description may name only "
                f"{' and '.join(ENTITY_PLACEHOLDERS)}"
            )
        paraphrases[name] = list(described)
    return paraphrases


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """
    The ids the tokenizer puts before and after one text ([CLS] and [SEP] for BERT): v5 tokenizers cannot
    add special tokens around ids, so encodings are assembled from what a one-word encoding shows.
    """
    word = tokenizer("a", add_special_tokens=False)["input_ids"]
    single = tokenizer("a")["input_ids"]
    start = single.index(word[0])
    return single[:start], single[start + len(word) :]


def processor_from_backbones(cls, text_backbone: str, vision_backbone: str, **kwargs):
    """The processor (of class `cls`) of a new model whose encoders start from these checkpoints."""
    return cls(
        image_processor=AutoImageProcessor.from_pretrained(vision_backbone),
        tokenizer=AutoTokenizer.from_pretrained(text_backbone),
        **kwargs,
    )


class MREProcessor(ProcessorMixin):
    r"""
    Tokenizer and image processor of a relation-extraction model.

    The head entity is wrapped in `<s> </s>` and the tail in `<o> </o>`, added to the tokenizer as
    special tokens. Both closing markers are always written (peers drop one when a span ends the
    sentence) and a text longer than `max_length` is cut to a window that contains both entities
    with their markers. Padding is to the longest sequence of the batch.

    An object tail (MORE) is a box in the image: `<o> name </o>` (or its caption) follows the text as
    the tokenizer's second segment, so every method still reads the tail at `<o>`, and its crop of
    the image with the box features `[cx, cy, w, h, w * h]` goes to the vision side.

    Args:
        image_processor ([`BaseImageProcessor`]): Prepares the whole image and its object crops.
        tokenizer ([`PreTrainedTokenizerBase`]): Tokenizer of the text encoder.
        head_markers (`tuple[str, str]`, *optional*, defaults to `("<s>", "</s>")`):
            Markers around the head entity. Choose others for tokenizers that already use `<s>` (RoBERTa).
        tail_markers (`tuple[str, str]`, *optional*, defaults to `("<o>", "</o>")`):
            Markers around the tail entity.
        max_length (`int`, *optional*, defaults to 128):
            Longest tokenized input, special tokens and markers included.
        max_object_crops (`int`, *optional*, defaults to 3):
            Object crops kept per example (HVPNeT and MMIB use 3).
    """

    _auto_class = "AutoProcessor"  # saved with its code, also when loaded as remote code

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        head_markers=("<s>", "</s>"),
        tail_markers=("<o>", "</o>"),
        max_length: int = 128,
        max_object_crops: int = 3,
        **kwargs,
    ):
        self.head_markers = list(head_markers)
        self.tail_markers = list(tail_markers)
        if (
            len(self.head_markers) != 2
            or len(self.tail_markers) != 2
            or not all(isinstance(marker, str) and marker.strip() for marker in self.head_markers + self.tail_markers)
        ):
            raise ValueError(
                f"head_markers and tail_markers must be two non-empty strings each, got {head_markers!r} and {tail_markers!r}"
            )
        self.max_length = check_count("max_length", max_length, 1)
        self.max_object_crops = check_count("max_object_crops", max_object_crops, 0)
        super().__init__(image_processor, tokenizer, **kwargs)

        markers = self.head_markers + self.tail_markers
        clashing = [
            m for m in markers if m in tokenizer.all_special_tokens and m not in tokenizer.extra_special_tokens
        ]
        if clashing:
            raise ValueError(
                f"entity markers {clashing} are already special tokens of {type(tokenizer).__name__} "
                "(RoBERTa uses <s> and </s>); pass other head_markers/tail_markers"
            )
        missing = [m for m in markers if m not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        self.marker_ids = tokenizer.convert_tokens_to_ids(markers)

        self._prefix_ids, self._suffix_ids = special_tokens_around(tokenizer)
        word_a = tokenizer("a", add_special_tokens=False)["input_ids"]
        word_b = tokenizer("b", add_special_tokens=False)["input_ids"]
        pair = tokenizer("a", "b")
        end_a = pair["input_ids"].index(word_a[0]) + len(word_a)
        start_b = pair["input_ids"].index(word_b[0], end_a)
        self._pair_middle_ids = pair["input_ids"][end_a:start_b]
        self._pair_suffix_ids = pair["input_ids"][start_b + len(word_b) :]
        # The segment id of the second segment and its closing special tokens (1 for BERT).
        self._second_segment_type = pair["token_type_ids"][start_b] if "token_type_ids" in pair else 0
        # Joins the windows around two entities too far apart to be read together.
        self._gap_ids = tokenizer(" ... ", add_special_tokens=False)["input_ids"]
        if max_length < len(self._prefix_ids) + len(self._suffix_ids) + 6:
            raise ValueError(f"max_length {max_length} leaves no room for two entities and their four markers")

    from_backbones = classmethod(processor_from_backbones)

    @property
    def head_start_token_id(self) -> int:
        return self.marker_ids[0]

    @property
    def tail_start_token_id(self) -> int:
        return self.marker_ids[2]

    def marker_config(self) -> dict[str, int]:
        """The markers' token ids as a model config takes them (`MREConfig`'s `*_token_id` fields)."""
        names = ("head_start_token_id", "head_end_token_id", "tail_start_token_id", "tail_end_token_id")
        return dict(zip(names, self.marker_ids))

    def mark_entities(self, text: str, head_span: tuple[int, int], tail_span: tuple[int, int] | None) -> str:
        """
        Insert the markers at character spans; a span inside the other nests its markers inside the
        other's (`entity_pair_problem` refuses crossing spans). Without a `tail_span` (an object tail)
        only the head is marked.
        """
        (head_start, head_end) = head_span
        head_open, head_close = self.head_markers
        tail_open, tail_close = self.tail_markers
        # At one position closers come before openers, and the inner span opens last and closes first.
        insertions = [(head_start, 1, -head_end, 0, head_open), (head_end, 0, -head_start, 1, head_close)]
        if tail_span is not None:
            tail_start, tail_end = tail_span
            insertions += [(tail_start, 1, -tail_end, 1, tail_open), (tail_end, 0, -tail_start, 0, tail_close)]
        pieces, previous = [], 0
        for position, *_, marker in sorted(insertions):
            pieces.extend([text[previous:position], f" {marker} "])
            previous = position
        pieces.append(text[previous:])
        return "".join(pieces)

    def _window(self, content: list[int], budget: int, example_index: int) -> list[int]:
        """
        Cut token ids (no special tokens) to `budget` around the entity markers they contain. Entities
        too far apart to fit together are read in two windows, one around each, joined by " ... ".
        """
        if len(content) <= budget:
            return content
        marker_positions = [i for i, token_id in enumerate(content) if token_id in self.marker_ids]
        first, last = min(marker_positions), max(marker_positions)
        needed = last - first + 1
        if needed <= budget:
            start = min(max(first - (budget - needed) // 2, 0), len(content) - budget)
            return content[start : start + budget]
        # Each entity's own span, from its opening to its closing marker (head: <s> </s>, tail: <o> </o>).
        spans = sorted(
            (min(positions), max(positions))
            for ids in (self.marker_ids[:2], self.marker_ids[2:])
            if (positions := [i for i in marker_positions if content[i] in ids])
        )
        own = sum(end - start + 1 for start, end in spans)
        if len(spans) < 2 or spans[0][1] >= spans[1][0] or own + len(self._gap_ids) > budget:
            raise ValueError(
                f"example {example_index}: an entity with its markers is too long for max_length={self.max_length} "
                f"({own} tokens for the entities and {budget} for the text)"
            )
        # The context left is shared between the two windows, each centred on its entity.
        spare = budget - own - len(self._gap_ids)
        windows = []
        for (start, end), share in zip(spans, (spare // 2, spare - spare // 2)):
            left = max(start - share // 2, 0)
            right = min(end + 1 + share - (start - left), len(content))
            left = max(right - (end - start + 1) - share, 0)
            windows.append(content[left:right])
        return windows[0] + self._gap_ids + windows[1]

    def _example_ids(
        self, text_ids: list[int], tail_ids: list[int] | None, example_index: int
    ) -> tuple[list[int], list[int]]:
        """
        `input_ids` and `token_type_ids` of one example: the marked text, cut to `max_length`, then an
        object tail's `<o> name </o>` as the second segment.
        """
        if tail_ids is None:
            budget = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
            input_ids = self._prefix_ids + self._window(text_ids, budget, example_index) + self._suffix_ids
            return input_ids, [0] * len(input_ids)
        # A name or caption longer than half the window gives up its end (never `</o>`): the text needs room too.
        max_tail = max(2, (self.max_length - len(self._prefix_ids) - len(self._pair_middle_ids)) // 2)
        if len(tail_ids) > max_tail:
            tail_ids = tail_ids[: max_tail - 1] + tail_ids[-1:]
        budget = self.max_length - len(self._prefix_ids) - len(self._pair_middle_ids) - len(tail_ids)
        budget -= len(self._pair_suffix_ids)
        first = self._prefix_ids + self._window(text_ids, budget, example_index) + self._pair_middle_ids
        second = tail_ids + self._pair_suffix_ids
        return first + second, [0] * len(first) + [self._second_segment_type] * len(second)

    def __call__(
        self,
        text: str | list[str] | None = None,
        head=None,
        tail=None,
        images=None,
        tokens: list[str] | list[list[str]] | None = None,
        crops=None,
        relations: dict[str, str | list[str]] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        r"""
        Encode one example or a batch.

        Args:
            text (`str` or `list[str]`, *optional*):
                Raw text; `head` and `tail` are then entity strings (each must occur exactly once),
                `(start, end)` character offsets or `{"start", "end"}` character offsets.
            tokens (`list[str]` or `list[list[str]]`, *optional*):
                Pre-tokenized words (the dataset schema); `head` and `tail` are then
                `{"start", "end"}` token spans, end exclusive.
            tail:
                Besides the text forms above, an object in the image: `{"box": [x0, y0, x1, y1]}`, in
                pixels of the (upright) image or normalised to [0, 1] (four values within [0, 1] are
                read as normalised), with an optional `"name"` and `"caption"`. `<o> caption-or-name
                </o>` becomes the text's second segment; the box must lie inside the image and have
                an area.
            images (path, `PIL.Image.Image`, `None` or a list of them, *optional*):
                The image of each example; `None` means "no image" and sets `image_mask` False.
            crops (`list[list[PIL.Image.Image]]`, *optional*):
                Object crops per example; at most `max_object_crops` are kept.
            relations (`dict[str, str | list[str]]`, *optional*):
                The relations a retrieval model (ROC) ranks for these examples, `{name: description or
                [paraphrases]}`, as zero-shot pipelines take `candidate_labels`. A description may name
                the pair, `"{head} was founded by {tail}"`: it is then filled with each example's entities.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (and `token_type_ids` when the
            tokenizer makes them), plus `pixel_values` (batch, 3, H, W) and `image_mask` (batch,)
            when any example has an image, and `crop_pixel_values` (batch, crops, 3, H, W) with
            `crop_mask` (batch, crops) when any has crops. When any tail is an object:
            `tail_mask` (batch,) says which, `tail_box_features` (batch, 5) holds their
            `[cx, cy, w, h, w * h]` (zeros for text tails), and `tail_pixel_values` (batch, 3, H, W)
            their crops where `tail_mask` and `image_mask` are both True. With `relations`: the
            descriptions' `relation_input_ids` and `relation_attention_mask` (paraphrases, length), or
            (batch, paraphrases, length) when a description names the pair; `relation_index`
            (paraphrases,), the relation each describes; `relation_names`, the relations in that order.
        """
        check_call_options(self, return_tensors, kwargs, fitting="a window that keeps both entities")
        examples, head, tail, images, crops = self._as_batch(text, tokens, head, tail, images, crops)
        pairs = [
            self._locate_pair(i, examples[i], head[i], tail[i], images[i], pretokenized=tokens is not None)
            for i in range(len(examples))
        ]
        features = self._tokenize(pairs, return_tensors)
        return self._assemble(features, pairs, images, crops, relations, return_tensors)

    def _as_batch(self, text, tokens, head, tail, images, crops) -> tuple[list, list, list, list, list | None]:
        """
        `__call__`'s arguments as one value per example: the texts (or word lists), heads, tails, images
        (None where absent) and crops (or None).
        """
        if (text is None) == (tokens is None):
            raise ValueError("give exactly one of `text` (raw strings) or `tokens` (pre-tokenized words)")
        is_single = isinstance(text, str) or (tokens is not None and (not tokens or isinstance(tokens[0], str)))
        if is_single:
            text, tokens = ([text] if text is not None else None), ([tokens] if tokens is not None else None)
            head, tail, images = [head], [tail], [images]
            crops = [crops] if crops is not None else None
        batch_size = len(text if text is not None else tokens)
        if images is None:
            images = [None] * batch_size
        for name, values in (("head", head), ("tail", tail), ("images", images), ("crops", crops)):
            if values is not None and len(values) != batch_size:
                raise ValueError(f"{batch_size} examples but {len(values)} values for `{name}`")
        # A box in pixels needs the picture's size and the batch its pixels: decode each image once.
        images = [decode_unless_file(image) for image in images]
        if tokens is not None:
            for i, words in enumerate(tokens):
                if not isinstance(words, (list, tuple)) or not all(isinstance(word, str) for word in words):
                    raise TypeError(f"example {i}: tokens must be a list of strings")
        return (text if text is not None else tokens), head, tail, images, crops

    def _locate_pair(self, i: int, example, head, tail, image, pretokenized: bool) -> _Pair:
        """
        Example `i`'s entities found in its text (or its words joined) and marked; an object tail is
        instead placed on the image and written as the second segment.
        """
        object_tail = is_object_tail(tail)
        entities = {"head": head} if object_tail else {"head": head, "tail": tail}
        if pretokenized:
            example_text, spans = _tokens_to_text(example, entities)
        else:
            if not isinstance(example, str):
                raise TypeError(f"example {i}: text must be a string, got {type(example).__name__}")
            if not example.strip():
                raise ValueError(f"example {i}: the text is empty")
            example_text = example
            spans = {role: character_span(example_text, entity, role) for role, entity in entities.items()}
        problem = entity_pair_problem(spans["head"], spans.get("tail"))
        if problem is not None:
            raise ValueError(f"example {i}: {problem}")
        marked_text = self.mark_entities(example_text, spans["head"], spans.get("tail"))
        head_name = example_text[slice(*spans["head"])]
        if not object_tail:
            return _Pair(marked_text, None, None, (head_name, example_text[slice(*spans["tail"])]))
        try:
            tail_box = normalised_box(tail, image, "tail")
        except (ValueError, FileNotFoundError) as err:
            raise type(err)(f"example {i}: {err}") from None
        description = tail.get("caption") or tail.get("name") or ""
        if not isinstance(description, str):
            raise TypeError(f"example {i}: the tail object's name and caption must be strings")
        tail_text = f"{self.tail_markers[0]} {description} {self.tail_markers[1]}"
        return _Pair(marked_text, tail_text, tail_box, (head_name, description or "the object"))

    def _tokenize(self, pairs: list[_Pair], return_tensors: str) -> dict:
        """
        `input_ids` and `attention_mask` (and `token_type_ids` when the tokenizer makes them) of the marked
        texts, each fitted to `max_length` with its object tail's segment (`_example_ids`), padded to the longest.
        """
        marked_texts = encodable_texts([pair.marked_text for pair in pairs])
        text_ids = self.tokenizer(marked_texts, add_special_tokens=False)["input_ids"]
        object_texts = encodable_texts([pair.tail_text for pair in pairs if pair.tail_text is not None])
        object_ids = iter(self.tokenizer(object_texts, add_special_tokens=False)["input_ids"] if object_texts else [])
        input_ids, token_type_ids = zip(
            *(
                self._example_ids(ids, next(object_ids) if pair.tail_text is not None else None, i)
                for i, (ids, pair) in enumerate(zip(text_ids, pairs))
            )
        )
        features = self.tokenizer.pad(
            {"input_ids": list(input_ids)}, padding=True, return_attention_mask=True, return_tensors=return_tensors
        )
        if "token_type_ids" in self.tokenizer.model_input_names:
            width = features["input_ids"].shape[1]
            padded_types = []
            for types in token_type_ids:
                padding = [0] * (width - len(types))
                padded_types.append(padding + types if self.tokenizer.padding_side == "left" else types + padding)
            features["token_type_ids"] = torch.tensor(padded_types)
        return dict(features)

    def _assemble(
        self, features: dict, pairs: list[_Pair], images: list, crops, relations, return_tensors: str
    ) -> BatchFeature:
        """The tokenized texts with the object tails' boxes, the batch's pictures and the relations' descriptions."""
        tail_boxes = [pair.tail_box for pair in pairs]
        if any(box is not None for box in tail_boxes):
            features["tail_mask"] = torch.tensor([box is not None for box in tail_boxes])
            features["tail_box_features"] = torch.tensor(
                [box_features(box) if box is not None else [0.0] * 5 for box in tail_boxes]
            )
        features.update(picture_inputs(self.image_processor, images, crops, tail_boxes, self.max_object_crops))
        if relations is not None:
            features.update(self.encode_relations(relations, [pair.names for pair in pairs]))
        return BatchFeature(features, tensor_type=return_tensors)

    def encode_relations(
        self, relations: dict[str, str | list[str]], pairs: list[tuple[str, str]] | None = None
    ) -> dict:
        """
        The descriptions of `relations` tokenized as a retrieval model reads them (see `__call__`); with
        descriptions naming `{head}` or `{tail}`, filled with each of `pairs`' `(head, tail)` entities.
        """
        paraphrases = relation_paraphrases(relations)
        texts = [text for described in paraphrases.values() for text in described]
        index = torch.tensor([i for i, described in enumerate(paraphrases.values()) for _ in described])
        names_pair = names_the_pair(texts)
        if names_pair and pairs is None:
            raise ValueError(
                "descriptions naming {head} or {tail} are filled with each example's entities: pass the examples too"
            )
        if names_pair:
            texts = [fill_description(text, head, tail) for head, tail in pairs for text in texts]
        encoded = self.tokenizer(encodable_texts(texts), **DESCRIPTION_TOKENS)
        shape = (len(pairs), len(index), -1) if names_pair else (len(index), -1)
        return {
            "relation_input_ids": encoded["input_ids"].view(shape),
            "relation_attention_mask": encoded["attention_mask"].view(shape),
            "relation_index": index,
            "relation_names": list(paraphrases),
        }

    @property
    def model_input_names(self) -> list[str]:
        return self.tokenizer.model_input_names + [
            "pixel_values",
            "image_mask",
            "crop_pixel_values",
            "crop_mask",
            "tail_mask",
            "tail_box_features",
            "tail_pixel_values",
        ]
