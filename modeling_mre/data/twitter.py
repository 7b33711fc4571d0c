"""
Reader turning the Twitter-2015 and Twitter-2017 MNER files (UMT's CoNLL layout, used by HVPNeT and
MMIB) into a `datasets.DatasetDict` of tweets, their BIO tags and their pictures.
"""

import logging
import os
from pathlib import Path
from typing import Any

import datasets
import torch

from .schema import (
    build_split,
    excerpt,
    first_existing,
    folder_argument,
    is_plain_file_name,
    present_files,
    read_text_lines,
    resolve_pictures,
)


logger = logging.getLogger(__name__)

# One tag vocabulary for both years, in the order of MMIB's (and HVPNeT's) label list without its
# subword and special-token labels ("X", "[CLS]", "[SEP]"): 2015's OTHER is read as MISC, as both map it.
NER_TAGS = ("O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
_TYPE_ALIASES = {"OTHER": "MISC"}
_SPLITS = {"train": ("train.txt",), "validation": ("valid.txt", "dev.txt", "val.txt"), "test": ("test.txt",)}
# The crop dictionaries `{image file: [crop files]}` HVPNeT and MMIB ship (`twitter2015_train_dict.pth`).
_CROP_PARTS = {"train": ("train",), "validation": ("val", "valid", "dev"), "test": ("test",)}
_IMAGE_EXTENSION = ".jpg"
# MMIB's NER code reads one crop per entity type instead: `crop_<type>_<image id>.jpg`.
_MMIB_CROP_TYPES = ("person", "organization", "location", "miscellaneous")


def ner_features() -> datasets.Features:
    """The MNER record schema: a tweet's words, their BIO tags (`NER_TAGS`) and its pictures."""
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.List(datasets.Value("string")),
            "ner_tags": datasets.List(datasets.ClassLabel(names=list(NER_TAGS))),
            "image": datasets.Image(),
            "image_id": datasets.Value("string"),
            "crops": datasets.List(datasets.Image()),
        }
    )


def normalise_tag(tag: str) -> str | None:
    """A file's tag in `NER_TAGS` (OTHER as MISC), or None when it is none of BIO over the four types."""
    if tag == "O":
        return tag
    prefix, _, entity_type = tag.partition("-")
    tag = f"{prefix}-{_TYPE_ALIASES.get(entity_type, entity_type)}"
    return tag if prefix in ("B", "I") and tag in NER_TAGS else None


def load_twitter_mner(
    data_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    crop_dir: str | os.PathLike | None = None,
    strict: bool = False,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """
    Read Twitter-2015 or Twitter-2017 (`train.txt`, `valid.txt`, `test.txt`: an `IMGID:<id>` line, then
    one `token<TAB>tag` line per word, tweets separated by a blank line) into a `DatasetDict` with
    `train`, `validation` and `test` for whichever files exist. `ner_tags` is a `ClassLabel` sequence
    over `NER_TAGS` (BIO; 2015's `OTHER` is `MISC`). Tags are kept as written: 2015 has `I-` tags that
    open an entity, which seqeval's default mode (the one published work scores with) reads as a start.

    The last tweet of a file is kept whether or not a blank line follows it (2015's files end without
    one). Images are `<image_dir>/<id>.jpg`; object crops are read where `data_dir` holds a crop
    dictionary (`*_<split>_dict.pth`, `{image file: [crop files]}`, HVPNeT's) and `crop_dir/<split>/crops/`
    the files, or, without a dictionary and with `crop_dir` given, MMIB's type crops
    `crop_{person,organization,location,miscellaneous}_<id>.jpg` found in `crop_dir/<split>/crops/`. An absent or unreadable picture is "no image" (its crop
    dropped), counted in one warning per split; with `strict=True` it raises. A malformed line (no
    tab, an unknown tag, an empty word, bytes that are not UTF-8, words before any `IMGID` line)
    raises `ValueError` naming the file, line and field.

    Args:
        data_dir: Folder of one year's `train.txt`, `valid.txt` (and `test.txt`).
        image_dir: Folder of the tweets' images (UMT's `twitter2017_images`); default `data_dir/images`.
        crop_dir: Folder with each split's crops (`twitter2017_aux_images`); default `data_dir/crops`.
        strict: Raise on absent or unreadable pictures instead of falling back to "no image".
        cache_dir: Where `datasets` caches the Arrow files; defaults to the `datasets` cache.
    """
    data_dir = folder_argument("data_dir", data_dir)
    image_dir = folder_argument("image_dir", image_dir) if image_dir is not None else data_dir / "images"
    crop_root = folder_argument("crop_dir", crop_dir) if crop_dir is not None else data_dir / "crops"
    split_files = {key: first_existing(data_dir, names) for key, names in _SPLITS.items()}
    split_files = {key: path for key, path in split_files.items() if path is not None}
    if not split_files:
        tried = ", ".join(str(data_dir / name) for names in _SPLITS.values() for name in names)
        raise FileNotFoundError(f"No Twitter MNER split file found; tried: {tried}")
    features = ner_features()
    splits = {}
    for key, split_file in split_files.items():
        tweets = read_conll_tweets(split_file)
        crop_dict_file = next(
            (f for part in _CROP_PARTS[key] for f in sorted(data_dir.glob(f"*{part}_dict.pth"))), None
        )
        crop_names = _read_crop_dict(crop_dict_file) if crop_dict_file is not None else {}
        crop_split_dir = next(
            (crop_root / part / "crops" for part in _CROP_PARTS[key] if (crop_root / part / "crops").is_dir()),
            crop_root / _CROP_PARTS[key][0] / "crops",
        )
        if crop_dict_file is None and crop_dir is not None:
            present = present_files(crop_split_dir)
            crop_names = {
                tweet["image_id"] + _IMAGE_EXTENSION: [
                    name for kind in _MMIB_CROP_TYPES if (name := f"crop_{kind}_{tweet['image_id']}.jpg") in present
                ]
                for tweet in tweets
            }
        records = [(tweet["line"], {"img_id": tweet["image_id"] + _IMAGE_EXTENSION}) for tweet in tweets]
        pictures = resolve_pictures(
            key,
            records,
            split_file=split_file,
            image_split_dir=image_dir,
            strict=strict,
            crop_split_dir=crop_split_dir,
            crop_names={tweet["line"]: crop_names.get(tweet["image_id"] + _IMAGE_EXTENSION, []) for tweet in tweets},
            crop_dict_file=crop_dict_file,
        )
        rows = [
            {
                "id": f"{key}-{tweet['image_id']}",
                "tokens": tweet["tokens"],
                "ner_tags": tweet["ner_tags"],
                "image": image,
                "image_id": tweet["image_id"],
                "crops": crops,
            }
            for tweet, (image, crops) in zip(tweets, pictures)
        ]
        splits[key] = build_split(key, rows, features, cache_dir)
    return datasets.DatasetDict(splits)


def read_conll_tweets(path: Path) -> list[dict[str, Any]]:
    """
    Every tweet of a CoNLL MNER file: `image_id`, `tokens`, `ner_tags` (names of `NER_TAGS`) and `line`,
    the 0-based index of its `IMGID` line. Errors name the file, line and field.
    """
    tweets, tweet = [], None

    def flush():
        if tweet is not None:
            if not tweet["tokens"]:
                raise ValueError(
                    f"{path} line {tweet['line'] + 1}, field 'IMGID': tweet {tweet['image_id']!r} has no words"
                )
            tweets.append(tweet)

    for index, line, where in read_text_lines(path):
        if not line.strip():
            flush()
            tweet = None
        elif line.startswith("IMGID:"):
            flush()
            image_id = line[len("IMGID:") :].strip()
            if not image_id or not is_plain_file_name(image_id + _IMAGE_EXTENSION):
                raise ValueError(f"{where}, field 'IMGID': expected an image name, got {excerpt(image_id)}")
            tweet = {"image_id": image_id, "tokens": [], "ner_tags": [], "line": index}
        else:
            if tweet is None:
                raise ValueError(f"{where}, field 'IMGID': a word line before any 'IMGID:' line opens its tweet")
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{where}, field 'tag': expected 'token<TAB>tag', got {len(fields) - 1} tabs in {excerpt(line)}"
                )
            token, written_tag = fields
            if not token:
                raise ValueError(f"{where}, field 'token': empty")
            tag = normalise_tag(written_tag.strip())
            if tag is None:
                raise ValueError(
                    f"{where}, field 'tag': unknown tag {excerpt(written_tag)}; known: O, B-/I- of PER, LOC, ORG, MISC (or OTHER)"
                )
            tweet["tokens"].append(token)
            tweet["ner_tags"].append(tag)
    flush()  # a file may end right after its last word (Twitter-2015's do)
    if not tweets:
        raise ValueError(f"{path} is empty: no tweet to read")
    return tweets


def _read_crop_dict(path: Path) -> dict[str, list[str]]:
    crop_names = torch.load(path, weights_only=True)
    if not isinstance(crop_names, dict):
        raise ValueError(
            f"{path}: expected a dict from image file names to crop file names, got {type(crop_names).__name__}"
        )
    for image, names in crop_names.items():
        if (
            not isinstance(image, str)
            or not isinstance(names, (list, tuple))
            or not all(map(is_plain_file_name, names))
        ):
            raise ValueError(f"{path}, key {image!r}: expected an image file name mapping to a list of file names")
    return crop_names
