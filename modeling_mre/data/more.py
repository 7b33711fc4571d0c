"""
Reader turning MORE (He et al., ACM MM 2023) into a `datasets.DatasetDict`: relations between an
entity of a news title and an object in its image.

MORE's data is distributed apart from its code (NJUNLP/MORE); this reader follows the layout that
the released code (`run.py`, `processor/dataset.py`) reads:

    DIR/txt/{train,valid,test}.txt         one Python dict literal per line:
        {'token': [...], 'h': {'name': str, 'pos': [start, end]}, 't': {'name': <object name>, ...},
         'img_id': '<uuid>.jpg', 'relation': str}
    DIR/ent_{train,valid,test}_dict.pth    {img_id: {object name: (cx, cy, w, h)}}, boxes normalised
    DIR/rel2id.json                        {relation: id}
    DIR/img_org/{train,valid,test}/<img_id>
    DIR/caption_dict.json                  optional: {img_id: {object name: caption}}
"""

import json
import logging
import math
import numbers
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from .schema import (
    build_split,
    check_record_fields,
    check_text_entity,
    find_split_files,
    folder_argument,
    read_literal_lines,
    read_rel2id,
    record_features,
    resolve_pictures,
)


logger = logging.getLogger(__name__)

# DatasetDict key -> MORE's name of that split.
_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
_RECORD_KEYS = ("token", "h", "t", "img_id", "relation")
# Detector boxes overshoot the border by rounding; corners this far outside the image are clipped,
# farther ones are an error.
BOX_TOLERANCE = 0.01


def load_more(
    data_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    strict: bool = False,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """
    Read MORE into a `DatasetDict` with keys `train`, `validation` and `test` for whichever split
    files exist, in modeling_mre's record schema with object tails: `tail` is `{name, start: None,
    end: None}`, `tail_box` the object's normalised `[cx, cy, w, h]` from `ent_{split}_dict.pth`,
    `tail_caption` its caption from `caption_dict.json` (None without one), and `crops` is empty.

    An absent or unreadable image is "no image" (counted in one warning per split; the model then
    reads the tail's box without its crop); with `strict=True` it raises instead. Malformed lines,
    an `img_id` without objects, an object name the image does not have, and boxes with no area or
    outside the image raise `ValueError` naming the file, the line and the field (or the image and
    object of the box file). Box corners up to `BOX_TOLERANCE` outside the image are clipped.

    Args:
        data_dir: Folder in MORE's layout (see the module docstring).
        image_dir: Folder with `train/`, `valid/`, `test/` image folders; defaults to `data_dir/img_org`.
        strict: Raise on absent or unreadable images instead of falling back.
        cache_dir: Where `datasets` caches the Arrow files; defaults to the `datasets` cache.
    """
    data_dir = folder_argument("data_dir", data_dir)
    image_root = folder_argument("image_dir", image_dir) if image_dir is not None else data_dir / "img_org"
    rel2id_file = data_dir / "rel2id.json"
    if not rel2id_file.is_file():
        raise FileNotFoundError(f"No label file found at {rel2id_file}")
    rel2id = read_rel2id(rel2id_file)
    features = record_features(sorted(rel2id, key=rel2id.get), object_tails=True)
    caption_file = data_dir / "caption_dict.json"
    captions = _read_captions(caption_file) if caption_file.is_file() else None

    candidates = {key: (f"txt/{part}.txt", f"{part}.txt") for key, part in _SPLITS.items()}
    split_files = find_split_files(data_dir, candidates, "MORE")

    splits = {}
    for key, split_file in split_files.items():
        part = _SPLITS[key]
        objects_file = data_dir / f"ent_{part}_dict.pth"
        if not objects_file.is_file():
            raise FileNotFoundError(f"{split_file} needs the object boxes of its images: {objects_file} not found")
        objects = _read_objects(objects_file)
        records = _read_split_file(split_file, rel2id, objects, objects_file)
        # Boxes are checked before the pictures, whose decode check reads every image file.
        tail_boxes = [_tail_box(objects, record, objects_file) for _, record in records]
        pictures = resolve_pictures(
            key, records, split_file=split_file, image_split_dir=image_root / part, strict=strict
        )
        rows, missing_captions = [], 0
        for (index, record), tail_box, (image, _) in zip(records, tail_boxes, pictures):
            head, tail = record["h"], record["t"]
            caption = None
            if captions is not None:
                caption = captions.get(record["img_id"], {}).get(tail["name"])
                missing_captions += caption is None
            rows.append(
                {
                    "id": f"{key}-{index}",
                    "tokens": record["token"],
                    "head": {"name": head["name"], "start": head["pos"][0], "end": head["pos"][1]},
                    "tail": {"name": tail["name"], "start": None, "end": None},
                    "tail_box": tail_box,
                    "tail_caption": caption,
                    "image": image,
                    "image_id": record["img_id"],
                    "crops": [],
                    "relation": record["relation"],
                }
            )
        if missing_captions:
            logger.warning(
                f"{key}: {missing_captions} of {len(rows)} tail objects have no caption in {caption_file}: "
                "their name is used"
            )
        splits[key] = build_split(key, rows, features, cache_dir)
    return datasets.DatasetDict(splits)


# Box files written from numpy hold numpy scalars; rebuilding one from its dtype and bytes runs no
# code, so they are allowed beside weights_only's plain types (under numpy 1's module name too).
_NUMPY_SCALAR_GLOBALS = [
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(name)) for name in ("float16", "float32", "float64", "int32", "int64")),
]


def _load_plain(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            return torch.load(path, weights_only=True)
    except Exception as err:  # torch raises pickle's, zipfile's and its own errors for unreadable files
        raise ValueError(
            f"{path}: cannot be read by torch.load(weights_only=True) ({type(err).__name__}: {err}); "
            "it must hold plain dicts, strings and numbers (or tensors)"
        ) from None


def _read_objects(path: Path) -> dict[str, dict[str, Any]]:
    objects = _load_plain(path)
    if not isinstance(objects, dict):
        raise ValueError(f"{path}: expected a dict from image file name to its objects, got {type(objects).__name__}")
    for img_id, image_objects in objects.items():
        if not isinstance(img_id, str) or not isinstance(image_objects, dict):
            raise ValueError(f"{path}, key {img_id!r}: expected an image file name mapping to {{object name: box}}")
    return objects


def _read_captions(path: Path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8-sig") as f:
        try:
            captions = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(captions, dict):
        raise ValueError(f"{path}: expected a JSON object from image file name to {{object name: caption}}")
    for img_id, image_captions in captions.items():
        if not isinstance(image_captions, dict) or not all(isinstance(c, str) for c in image_captions.values()):
            raise ValueError(f"{path}, key {img_id!r}: expected an object mapping object names to caption strings")
    return captions


def _read_split_file(
    path: Path, rel2id: dict[str, int], objects: dict[str, dict[str, Any]], objects_file: Path
) -> list[tuple[int, dict[str, Any]]]:
    """Parse and validate every line; returns `(0-based line index, record)` pairs, blank lines skipped."""
    records = []
    for index, record, where in read_literal_lines(path):
        tokens = check_record_fields(record, _RECORD_KEYS, rel2id, where)
        check_text_entity(record, "h", tokens, where)
        tail = record["t"]
        if not isinstance(tail, dict) or not isinstance(tail.get("name"), str):
            raise ValueError(f"{where}, field 't.name': expected the name of an object in the image, got {tail!r}")
        image_objects = objects.get(record["img_id"])
        if image_objects is None:
            raise ValueError(f"{where}, field 'img_id': {record['img_id']!r} has no objects in {objects_file}")
        if tail["name"] not in image_objects:
            raise ValueError(
                f"{where}, field 't.name': unknown object {tail['name']!r}; {objects_file} lists "
                f"{sorted(image_objects)} for {record['img_id']}"
            )
        records.append((index, record))
    return records


def _tail_box(objects: dict[str, dict[str, Any]], record: dict[str, Any], objects_file: Path) -> list[float]:
    """The tail object's normalised [cx, cy, w, h], corners within BOX_TOLERANCE of the image clipped to it."""
    img_id, name = record["img_id"], record["t"]["name"]
    box = objects[img_id][name]
    where = f"{objects_file}, image {img_id!r}, object {name!r}"
    if isinstance(box, torch.Tensor):
        box = box.tolist()
    if (
        not isinstance(box, (list, tuple))
        or len(box) != 4
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v) for v in box
        )
    ):
        raise ValueError(f"{where}: expected a box of four numbers (cx, cy, w, h), got {box!r}")
    center_x, center_y, width, height = map(float, box)
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: box {list(box)} has zero area")
    corners = [center_x - width / 2, center_y - height / 2, center_x + width / 2, center_y + height / 2]
    if any(v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE for v in corners):
        raise ValueError(f"{where}: box {list(box)} (normalised cx, cy, w, h) lies outside the image")
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in corners)
    return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
