"""
MREProcessor: marks the two entities in the text, tokenizes with dynamic padding, and prepares the
image and its object crops, with absence made explicit by masks.
"""

from collections.abc import Sequence

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, BatchFeature, ProcessorMixin

from .images_mre import load_image


def _find_entity(text: str, name: str, role: str) -> tuple[int, int]:
    if not name:
        raise ValueError(f"the {role} entity is an empty string")
    starts = [i for i in range(len(text) - len(name) + 1) if text.startswith(name, i)]
    if not starts:
        raise ValueError(f"{role} entity {name!r} not found in the text {text!r}")
    if len(starts) > 1:
        raise ValueError(
            f"{role} entity {name!r} occurs {len(starts)} times in the text (at characters {starts}); "
            "give its character offsets (start, end) instead"
        )
    return starts[0], starts[0] + len(name)


def _character_span(text: str, entity, role: str) -> tuple[int, int]:
    """(start, end) character offsets of an entity given as a string, (start, end) or {"start", "end"}."""
    if isinstance(entity, str):
        return _find_entity(text, entity, role)
    if isinstance(entity, dict):
        start, end = entity.get("start"), entity.get("end")
    elif isinstance(entity, Sequence) and len(entity) == 2:
        start, end = entity
    else:
        raise TypeError(f"the {role} entity must be a string, (start, end) offsets or a dict, got {entity!r}")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
        raise ValueError(f"{role} span {(start, end)!r} is not a non-empty range inside the text of {len(text)} characters")
    return start, end


def _tokens_to_text(tokens: Sequence[str], head: dict, tail: dict) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Join pre-tokenized words with spaces and turn token spans (end exclusive) into character spans."""
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    text = " ".join(tokens)

    def to_characters(entity: dict, role: str) -> tuple[int, int]:
        start, end = entity["start"], entity["end"]
        if not 0 <= start < end <= len(tokens):
            raise ValueError(f"{role} token span [{start}, {end}) is out of range for {len(tokens)} tokens")
        return starts[start], starts[end - 1] + len(tokens[end - 1])

    return text, to_characters(head, "head"), to_characters(tail, "tail")


class MREProcessor(ProcessorMixin):
    r"""
    Tokenizer and image processor of a relation-extraction model.

    The head entity is wrapped in `<s> </s>` and the tail in `<o> </o>`, added to the tokenizer as
    special tokens. Both closing markers are always written (peers drop one when a span ends the
    sentence) and a text longer than `max_length` is cut to a window that contains both entities
    with their markers. Padding is to the longest sequence of the batch.

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
        self.max_length = max_length
        self.max_object_crops = max_object_crops
        super().__init__(image_processor, tokenizer, **kwargs)

        markers = self.head_markers + self.tail_markers
        clashing = [m for m in markers if m in tokenizer.all_special_tokens and m not in tokenizer.extra_special_tokens]
        if clashing:
            raise ValueError(
                f"entity markers {clashing} are already special tokens of {type(tokenizer).__name__} "
                "(RoBERTa uses <s> and </s>); pass other head_markers/tail_markers"
            )
        missing = [m for m in markers if m not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": missing})
        self.marker_ids = tokenizer.convert_tokens_to_ids(markers)

        # v5 tokenizers cannot add special tokens around ids, so the window cut keeps the ones a
        # one-word encoding shows before and after the word.
        with_special = tokenizer("a")["input_ids"]
        word = tokenizer("a", add_special_tokens=False)["input_ids"]
        prefix_length = with_special.index(word[0])
        self._prefix_ids = with_special[:prefix_length]
        self._suffix_ids = with_special[prefix_length + len(word) :]
        if max_length < len(self._prefix_ids) + len(self._suffix_ids) + 6:
            raise ValueError(f"max_length {max_length} leaves no room for two entities and their four markers")

    @classmethod
    def from_backbones(cls, text_backbone: str, vision_backbone: str, **kwargs) -> "MREProcessor":
        """The processor of a new model whose encoders start from these checkpoints."""
        return cls(
            image_processor=AutoImageProcessor.from_pretrained(vision_backbone),
            tokenizer=AutoTokenizer.from_pretrained(text_backbone),
            **kwargs,
        )

    @property
    def head_start_token_id(self) -> int:
        return self.marker_ids[0]

    @property
    def tail_start_token_id(self) -> int:
        return self.marker_ids[2]

    def mark_entities(self, text: str, head_span: tuple[int, int], tail_span: tuple[int, int]) -> str:
        """Insert the four markers at character spans; overlapping and nested spans nest the markers."""
        (head_start, head_end), (tail_start, tail_end) = head_span, tail_span
        head_open, head_close = self.head_markers
        tail_open, tail_close = self.tail_markers
        # At one position closers come before openers, and the inner span opens last and closes first.
        insertions = sorted(
            [
                (head_start, 1, -head_end, 0, head_open),
                (tail_start, 1, -tail_end, 1, tail_open),
                (head_end, 0, -head_start, 1, head_close),
                (tail_end, 0, -tail_start, 0, tail_close),
            ]
        )
        pieces, previous = [], 0
        for position, *_, marker in insertions:
            pieces.extend([text[previous:position], f" {marker} "])
            previous = position
        pieces.append(text[previous:])
        return "".join(pieces)

    def _window(self, input_ids: list[int], example_index: int) -> list[int]:
        """Cut an over-long encoding to `max_length` around the markers, keeping the special tokens."""
        if len(input_ids) <= self.max_length:
            return input_ids
        content = input_ids[len(self._prefix_ids) : len(input_ids) - len(self._suffix_ids)]
        budget = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
        marker_positions = [i for i, token_id in enumerate(content) if token_id in self.marker_ids]
        first, last = min(marker_positions), max(marker_positions)
        needed = last - first + 1
        if needed > budget:
            raise ValueError(
                f"example {example_index}: the two entities and their markers span {needed} tokens, "
                f"more than max_length={self.max_length} allows ({budget} besides special tokens)"
            )
        start = min(max(first - (budget - needed) // 2, 0), len(content) - budget)
        return self._prefix_ids + content[start : start + budget] + self._suffix_ids

    def _prepare_images(self, images: list, crops: list | None) -> dict[str, torch.Tensor]:
        images = [load_image(image) for image in images]
        crops = [
            [crop for crop in map(load_image, example_crops or []) if crop is not None][: self.max_object_crops]
            for example_crops in (crops if crops is not None else [None] * len(images))
        ]
        pictures = [image for image in images if image is not None] + [crop for cs in crops for crop in cs]
        if not pictures:
            return {}
        # One call for every picture of the batch, then scattered back: absent ones stay zero and masked.
        pixels = self.image_processor(pictures, return_tensors="pt")["pixel_values"]  # (num_pictures, 3, H, W)
        image_mask = torch.tensor([image is not None for image in images])
        num_images = int(image_mask.sum())
        pixel_values = pixels.new_zeros(len(images), *pixels.shape[1:])
        pixel_values[image_mask] = pixels[:num_images]
        features = {"pixel_values": pixel_values, "image_mask": image_mask}
        num_crops = max(len(example_crops) for example_crops in crops)
        if num_crops:
            crop_mask = torch.tensor([[j < len(example_crops) for j in range(num_crops)] for example_crops in crops])
            crop_pixel_values = pixels.new_zeros(len(images), num_crops, *pixels.shape[1:])
            crop_pixel_values[crop_mask] = pixels[num_images:]
            features.update(crop_pixel_values=crop_pixel_values, crop_mask=crop_mask)
        return features

    def __call__(
        self,
        text: str | list[str] | None = None,
        head=None,
        tail=None,
        images=None,
        tokens: list[str] | list[list[str]] | None = None,
        crops=None,
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
            images (path, `PIL.Image.Image`, `None` or a list of them, *optional*):
                The image of each example; `None` means "no image" and sets `image_mask` False.
            crops (`list[list[PIL.Image.Image]]`, *optional*):
                Object crops per example; at most `max_object_crops` are kept.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (and `token_type_ids` when the
            tokenizer makes them), plus `pixel_values` (batch, 3, H, W) and `image_mask` (batch,)
            when any example has an image, and `crop_pixel_values` (batch, crops, 3, H, W) with
            `crop_mask` (batch, crops) when any has crops.
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

        marked_texts = []
        for i in range(batch_size):
            if tokens is not None:
                example_text, head_span, tail_span = _tokens_to_text(tokens[i], head[i], tail[i])
            else:
                if not isinstance(text[i], str):
                    raise TypeError(f"example {i}: text must be a string, got {type(text[i]).__name__}")
                if not text[i].strip():
                    raise ValueError(f"example {i}: the text is empty")
                example_text = text[i]
                head_span = _character_span(example_text, head[i], "head")
                tail_span = _character_span(example_text, tail[i], "tail")
            if head_span == tail_span:
                raise ValueError(
                    f"example {i}: head and tail are the same span {head_span} of the text; "
                    "a relation needs two entities (overlapping spans are fine)"
                )
            marked_texts.append(self.mark_entities(example_text, head_span, tail_span))

        encoding = self.tokenizer(marked_texts, add_special_tokens=True, truncation=False, return_attention_mask=False)
        input_ids = [self._window(ids, i) for i, ids in enumerate(encoding["input_ids"])]
        features = self.tokenizer.pad(
            {"input_ids": input_ids}, padding=True, return_attention_mask=True, return_tensors=return_tensors
        )
        if "token_type_ids" in encoding:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        features = dict(features)
        features.update(self._prepare_images(images, crops))
        return BatchFeature(features, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return self.tokenizer.model_input_names + ["pixel_values", "image_mask", "crop_pixel_values", "crop_mask"]
