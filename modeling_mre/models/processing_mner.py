"""
MNERProcessor: a post's words to subwords with their word-level tags, in windows of whole words when a
post is longer than the model reads at once, and its picture and object crops with absence made
explicit by masks (the same picture inputs as `MREProcessor`'s).
"""

import re

import torch
from transformers import BatchFeature, ProcessorMixin

from .images_mre import decode_unless_file, picture_inputs
from .processing_mre import (
    check_call_options,
    check_count,
    encodable_texts,
    processor_from_backbones,
    special_tokens_around,
)


_WORD = re.compile(r"\S+")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """The whitespace-separated words of a text (the Twitter sets' tokenization) with their character offsets."""
    return [(match.group(), match.start(), match.end()) for match in _WORD.finditer(text)]


def merge_windows(
    word_ids: torch.LongTensor, sample_of_window: torch.LongTensor, window_values: list[list], num_samples: int
) -> list[list]:
    """
    Per sample, one value per word from the windows it was read in (`window_values[w]`: one value per
    word of window `w`, in order): a word read in two overlapping windows takes the value of the one
    where it sits farther from the window's edge, so it was read with more context on both sides.
    """
    merged: list[dict[int, tuple[int, object]]] = [{} for _ in range(num_samples)]
    for window, values in enumerate(window_values):
        words = [int(w) for w in word_ids[window].tolist() if w >= 0]
        words = list(dict.fromkeys(words))  # each word once, at its first subword
        sample = int(sample_of_window[window])
        for position, (word, value) in enumerate(zip(words, values)):
            margin = min(position, len(words) - 1 - position)
            if word not in merged[sample] or margin > merged[sample][word][0]:
                merged[sample][word] = (margin, value)
    return [[value for _, (_, value) in sorted(words.items())] for words in merged]


class MNERProcessor(ProcessorMixin):
    r"""
    Tokenizer and image processor of a multimodal NER model.

    Each word is tokenized alone and labelled at its first subword (`first_subword_mask`; `labels` there,
    -100 on the other subwords and special tokens). A word that the tokenizer turns into no subword at
    all (a lone U+FE0F or zero-width joiner: 129 tokens of the Twitter sets' train and valid files) is read as the unknown token,
    so it keeps its place and its tag. A post whose subwords do not fit in `max_length` is read in
    windows of whole words that overlap by up to `stride` subwords; `merge_windows` gives each word
    the reading of the window where it has the most context.

    Args:
        image_processor ([`BaseImageProcessor`]): Prepares the image and its object crops.
        tokenizer ([`PreTrainedTokenizerBase`]): Tokenizer of the text encoder.
        max_length (`int`, *optional*, defaults to 128):
            Longest tokenized window, special tokens included.
        stride (`int`, *optional*, defaults to 32):
            Subwords two consecutive windows of a long post share at most.
        max_object_crops (`int`, *optional*, defaults to 4):
            Object crops kept per post (MMIB's NER code reads 4, one per entity type; HVPNeT 3).
    """

    _auto_class = "AutoProcessor"  # saved with its code, also when loaded as remote code

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        max_length: int = 128,
        stride: int = 32,
        max_object_crops: int = 4,
        **kwargs,
    ):
        self.max_length = check_count("max_length", max_length, 1)
        self.stride = check_count("stride", stride, 0)
        self.max_object_crops = check_count("max_object_crops", max_object_crops, 0)
        super().__init__(image_processor, tokenizer, **kwargs)
        self._prefix_ids, self._suffix_ids = special_tokens_around(tokenizer)
        if max_length - len(self._prefix_ids) - len(self._suffix_ids) < 2 or not 0 <= stride < max_length // 2:
            raise ValueError(f"max_length {max_length} with stride {stride} leaves no room for a window of words")

    from_backbones = classmethod(processor_from_backbones)

    def _windows(self, pieces: list[list[int]]) -> list[tuple[int, int]]:
        """`[start, end)` word ranges covering every word, each window's subwords within the budget."""
        budget = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
        windows, start = [], 0
        while True:
            end, used = start, 0
            while end < len(pieces) and (end == start or used + len(pieces[end]) <= budget):
                used += min(len(pieces[end]), budget)
                end += 1
            windows.append((start, end))
            if end == len(pieces):
                return windows
            # The next window starts at the earliest word whose subwords up to `end` fit in the stride.
            next_start, shared = end, 0
            while next_start - 1 > start and shared + len(pieces[next_start - 1]) <= self.stride:
                next_start -= 1
                shared += len(pieces[next_start])
            start = next_start

    def _window_row(self, pieces: list[list[int]], tags: list[int], start: int, end: int) -> tuple[list, ...]:
        """One window of words `[start, end)`: per position its id, word (-1: special), first-subword flag and label."""
        budget = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
        words = [
            (piece, word, k == 0, tags[word] if k == 0 else -100)
            for word in range(start, end)
            for k, piece in enumerate(pieces[word][:budget])
        ]
        prefix = [(token_id, -1, False, -100) for token_id in self._prefix_ids]
        suffix = [(token_id, -1, False, -100) for token_id in self._suffix_ids]
        return tuple(list(column) for column in zip(*(prefix + words + suffix)))

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        tokens: list[str] | list[list[str]] | None = None,
        crops=None,
        word_labels: list[int] | list[list[int]] | None = None,
        return_word_ids: bool = False,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        r"""
        Encode one post or a batch.

        Args:
            text (`str` or `list[str]`, *optional*):
                Raw text, read as its whitespace-separated words (`split_words`).
            tokens (`list[str]` or `list[list[str]]`, *optional*):
                Pre-tokenized words (the dataset's `tokens`).
            images (path, `PIL.Image.Image`, `None` or a list of them, *optional*):
                The image of each post; `None` means "no image" and sets `image_mask` False.
            crops (`list[list[PIL.Image.Image]]`, *optional*):
                Object crops per post; at most `max_object_crops` are kept.
            word_labels (`list[int]` or `list[list[int]]`, *optional*):
                Each word's tag id (the dataset's `ner_tags`): gives `labels`.
            return_word_ids (`bool`, *optional*, defaults to `False`):
                Also return `word_ids` (windows, seq_len): the word each subword belongs to within its
                post (-1 for special tokens and padding), and `overflow_to_sample_mapping` (windows,):
                the post each window reads. They are not model inputs: pop them before calling the model.

        Returns:
            [`BatchFeature`] with one row per window (one per post unless a post is too long):
            `input_ids`, `attention_mask` (and `token_type_ids` when the tokenizer makes them),
            `first_subword_mask`, `labels` with `word_labels`, and the pictures as `MREProcessor` gives
            them (`pixel_values`, `image_mask`, `crop_pixel_values`, `crop_mask`), repeated per window.
        """
        check_call_options(self, return_tensors, kwargs, fitting="overlapping windows of whole words")
        if (text is None) == (tokens is None):
            raise ValueError("give exactly one of `text` (raw strings) or `tokens` (pre-tokenized words)")
        is_single = isinstance(text, str) or (tokens is not None and (not tokens or isinstance(tokens[0], str)))
        if is_single:
            text, tokens = ([text] if text is not None else None), ([tokens] if tokens is not None else None)
            images, crops = [images], ([crops] if crops is not None else None)
            word_labels = [word_labels] if word_labels is not None else None
        if text is not None:
            for i, example in enumerate(text):
                if not isinstance(example, str):
                    raise TypeError(f"example {i}: text must be a string, got {type(example).__name__}")
            tokens = [[word for word, _, _ in split_words(example)] for example in text]
        batch_size = len(tokens)
        if images is None:
            images = [None] * batch_size
        for name, values in (("images", images), ("crops", crops), ("word_labels", word_labels)):
            if values is not None and len(values) != batch_size:
                raise ValueError(f"{batch_size} examples but {len(values)} values for `{name}`")
        for i, words in enumerate(tokens):
            if not words:
                raise ValueError(f"example {i}: the post has no words")
            if word_labels is not None and len(word_labels[i]) != len(words):
                raise ValueError(f"example {i}: {len(words)} words but {len(word_labels[i])} word_labels")

        unknown = self.tokenizer.unk_token or self.tokenizer.pad_token
        flat = encodable_texts([word for words in tokens for word in words])
        pieces = self.tokenizer(flat, add_special_tokens=False)["input_ids"]
        unknown_ids = self.tokenizer(unknown, add_special_tokens=False)["input_ids"]
        pieces = [ids or unknown_ids for ids in pieces]  # a word of invisible characters reads as [UNK]

        rows, sample_of_window, first = [], [], 0
        for i, words in enumerate(tokens):
            example_pieces, first = pieces[first : first + len(words)], first + len(words)
            tags = word_labels[i] if word_labels is not None else [-100] * len(words)
            for start, end in self._windows(example_pieces):
                rows.append(self._window_row(example_pieces, tags, start, end))
                sample_of_window.append(i)

        features = dict(
            self.tokenizer.pad(
                {"input_ids": [r[0] for r in rows]}, padding=True, return_attention_mask=True, return_tensors="pt"
            )
        )
        width = features["input_ids"].shape[1]

        def padded(values, fill):
            pad = [fill] * (width - len(values))
            return pad + values if self.tokenizer.padding_side == "left" else values + pad

        if "token_type_ids" in self.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        features["first_subword_mask"] = torch.tensor([padded(r[2], False) for r in rows])
        if word_labels is not None:
            features["labels"] = torch.tensor([padded(r[3], -100) for r in rows])
        if return_word_ids:
            features["word_ids"] = torch.tensor([padded(r[1], -1) for r in rows])
            features["overflow_to_sample_mapping"] = torch.tensor(sample_of_window)
        window_images = [decode_unless_file(images[i]) for i in sample_of_window]
        window_crops = [crops[i] for i in sample_of_window] if crops is not None else None
        features.update(
            picture_inputs(
                self.image_processor, window_images, window_crops, [None] * len(rows), self.max_object_crops
            )
        )
        return BatchFeature(features, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return self.tokenizer.model_input_names + [
            "first_subword_mask",
            "pixel_values",
            "image_mask",
            "crop_pixel_values",
            "crop_mask",
        ]
