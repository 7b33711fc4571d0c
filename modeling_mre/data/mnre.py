"""Reader turning MNRE files (and anything in their layout) into a `datasets.DatasetDict`."""

import os
from pathlib import Path
from typing import Any

import datasets
import torch

from ..models.processing_mre import entity_pair_problem
from .schema import (
    build_split,
    check_record_fields,
    check_text_entity,
    find_split_files,
    first_existing,
    folder_argument,
    is_int,
    is_plain_file_name,
    read_literal_lines,
    read_rel2id,
    record_features,
    resolve_pictures,
)


# DatasetDict key -> file-name part of that split. Candidates are tried in order; the first
# existing one wins. The upstream MNRE val file really has a space in its name.
_SPLITS = {"train": "train", "validation": "val", "test": "test"}
_SPLIT_FILE_CANDIDATES = {
    "train": ("mnre_txt/mnre_train.txt", "ours_train.txt", "txt/ours_train.txt"),
    "val": ("mnre_txt/mnre_val.txt", "mnre_txt/mnre_val .txt", "ours_val.txt", "txt/ours_val.txt"),
    "test": ("mnre_txt/mnre_test.txt", "ours_test.txt", "txt/ours_test.txt"),
}
_REL2ID_CANDIDATES = ("ours_rel2id.json", "rel2id.json")
# HVPNeT's run.py names the val index `mre_dev_dict.pth`; the copies in circulation use `val`.
_CROP_DICT_CANDIDATES = {
    "train": ("aux/mre_train_dict.pth", "mre_train_dict.pth"),
    "val": ("aux/mre_val_dict.pth", "mre_val_dict.pth", "aux/mre_dev_dict.pth", "mre_dev_dict.pth"),
    "test": ("aux/mre_test_dict.pth", "mre_test_dict.pth"),
}
_RECORD_KEYS = ("token", "h", "t", "img_id", "relation")


def load_mnre(
    data_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    strict: bool = False,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """
    Read MNRE (v2 layout, or the peers' `ours_*.txt` layout) into a `DatasetDict` with keys `train`,
    `validation` and `test` for whichever split files exist.

    Absent image or crop files are the normal case for MNRE copies without the image tarballs: an
    absent image becomes `None` and absent crops are dropped, and each split logs one warning with
    the count. Files that exist but are empty, not images or truncated get the same fallback with
    their own warning. With `strict=True` each of these raises instead (`FileNotFoundError` or
    `ValueError` naming the file, line and field).

    Args:
        data_dir: Folder holding `mnre_txt/` (or `ours_*.txt`), `ours_rel2id.json` and optionally
            `img_org/`, `img_vg/` and the crop indexes `mre_{split}_dict.pth` (root or `aux/`).
        image_dir: Folder with `train/`, `val/`, `test/` image folders; defaults to `data_dir/img_org`.
        strict: Raise on absent or unreadable images and crops instead of falling back.
        cache_dir: Where `datasets` caches the Arrow files; defaults to the `datasets` cache.
    """
    data_dir = folder_argument("data_dir", data_dir)
    image_root = folder_argument("image_dir", image_dir) if image_dir is not None else data_dir / "img_org"
    rel2id_file = first_existing(data_dir, _REL2ID_CANDIDATES)
    if rel2id_file is None:
        tried = ", ".join(str(data_dir / name) for name in _REL2ID_CANDIDATES)
        raise FileNotFoundError(f"No label file found; tried: {tried}")
    rel2id = read_rel2id(rel2id_file)
    features = record_features(sorted(rel2id, key=rel2id.get))

    candidates = {key: _SPLIT_FILE_CANDIDATES[part] for key, part in _SPLITS.items()}
    split_files = find_split_files(data_dir, candidates, "MNRE")

    splits = {}
    for key, split_file in split_files.items():
        part = _SPLITS[key]
        records = _read_split_file(split_file, rel2id)
        crop_dict_file = first_existing(data_dir, _CROP_DICT_CANDIDATES[part])
        pictures = resolve_pictures(
            key,
            records,
            split_file=split_file,
            image_split_dir=image_root / part,
            strict=strict,
            crop_split_dir=data_dir / "img_vg" / part / "crops",
            crop_names=_read_crop_dict(crop_dict_file) if crop_dict_file is not None else {},
            crop_dict_file=crop_dict_file,
        )
        rows = [_row(key, index, record, image, crops) for (index, record), (image, crops) in zip(records, pictures)]
        splits[key] = build_split(key, rows, features, cache_dir)
    return datasets.DatasetDict(splits)


def _row(key: str, index: int, record: dict[str, Any], image: str | None, crops: list[str]) -> dict[str, Any]:
    head, tail = record["h"], record["t"]
    return {
        "id": f"{key}-{index}",
        "tokens": record["token"],
        "head": {"name": head["name"], "start": head["pos"][0], "end": head["pos"][1]},
        "tail": {"name": tail["name"], "start": tail["pos"][0], "end": tail["pos"][1]},
        "image": image,
        "image_id": record["img_id"],
        "crops": crops,
        "relation": record["relation"],
    }


def _read_split_file(path: Path, rel2id: dict[str, int]) -> list[tuple[int, dict[str, Any]]]:
    """Parse and validate every line; returns `(0-based line index, record)` pairs, blank lines skipped."""
    records = []
    for index, record, where in read_literal_lines(path):
        tokens = check_record_fields(record, _RECORD_KEYS, rel2id, where)
        check_text_entity(record, "h", tokens, where)
        check_text_entity(record, "t", tokens, where)
        problem = entity_pair_problem(record["h"]["pos"], record["t"]["pos"])  # the processor's rule
        if problem is not None:
            raise ValueError(f"{where}, field 't.pos': {problem}")
        records.append((index, record))
    return records


def _read_crop_dict(path: Path) -> dict[int, list[str]]:
    crop_names = torch.load(path, weights_only=True)
    if not isinstance(crop_names, dict):
        raise ValueError(
            f"{path}: expected a dict from line index to crop file names, got {type(crop_names).__name__}"
        )
    for index, names in crop_names.items():
        if not is_int(index) or not isinstance(names, (list, tuple)) or not all(map(is_plain_file_name, names)):
            raise ValueError(f"{path}, key {index!r}: expected an int line index mapping to a list of file names")
    return crop_names
