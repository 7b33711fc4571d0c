"""Reader turning MNRE files (and anything in their layout) into a `datasets.DatasetDict`."""

import ast
import hashlib
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import torch

from .images_mre import image_file_problem


logger = logging.getLogger(__name__)

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


def mnre_features(relation_names: list[str]) -> datasets.Features:
    """The record schema shared by every dataset reader of modeling_mre."""
    span = {"name": datasets.Value("string"), "start": datasets.Value("int32"), "end": datasets.Value("int32")}
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.List(datasets.Value("string")),
            "head": span,
            "tail": dict(span),
            "image": datasets.Image(),
            "image_id": datasets.Value("string"),
            "crops": datasets.List(datasets.Image()),
            "relation": datasets.ClassLabel(names=relation_names),
        }
    )


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
    # Absolute, because the cached rows keep image paths that must not depend on the working directory.
    data_dir = Path(data_dir).absolute()
    image_root = Path(image_dir).absolute() if image_dir is not None else data_dir / "img_org"
    rel2id_file = _first_existing(data_dir, _REL2ID_CANDIDATES)
    if rel2id_file is None:
        tried = ", ".join(str(data_dir / name) for name in _REL2ID_CANDIDATES)
        raise FileNotFoundError(f"No label file found; tried: {tried}")
    rel2id = _read_rel2id(rel2id_file)
    features = mnre_features(sorted(rel2id, key=rel2id.get))

    split_files = {key: _first_existing(data_dir, _SPLIT_FILE_CANDIDATES[part]) for key, part in _SPLITS.items()}
    split_files = {key: path for key, path in split_files.items() if path is not None}
    if not split_files:
        tried = ", ".join(str(data_dir / name) for names in _SPLIT_FILE_CANDIDATES.values() for name in names)
        raise FileNotFoundError(f"No MNRE split file found; tried: {tried}")

    splits = {}
    for key, split_file in split_files.items():
        part = _SPLITS[key]
        records = _read_split_file(split_file, rel2id)
        crop_dict_file = _first_existing(data_dir, _CROP_DICT_CANDIDATES[part])
        crop_names = _read_crop_dict(crop_dict_file) if crop_dict_file is not None else {}
        rows = _resolve_files(
            key,
            records,
            split_file=split_file,
            image_split_dir=image_root / part,
            crop_split_dir=data_dir / "img_vg" / part / "crops",
            crop_names=crop_names,
            crop_dict_file=crop_dict_file,
            strict=strict,
        )
        if not rows:
            # datasets cannot build a split from a generator that yields nothing.
            splits[key] = datasets.Dataset.from_dict(
                {name: [] for name in features}, features=features, split=datasets.NamedSplit(key)
            )
            continue
        # The rows hold the parsed content and every resolved path, so hashing them invalidates the
        # cache whenever an input file or the set of present images changes. datasets' own hash of
        # gen_kwargs (a pure-Python dill pass) would take seconds on MNRE train; C pickle takes ms.
        fingerprint = hashlib.sha256(pickle.dumps((key, features.to_dict(), rows), protocol=5)).hexdigest()
        splits[key] = datasets.Dataset.from_generator(
            _generate_rows,
            features=features,
            gen_kwargs={"rows": tuple(rows)},
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            split=datasets.NamedSplit(key),
            fingerprint=fingerprint,
        )
    return datasets.DatasetDict(splits)


def _generate_rows(rows: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    yield from rows


def _first_existing(data_dir: Path, names: tuple[str, ...]) -> Path | None:
    return next((data_dir / name for name in names if (data_dir / name).is_file()), None)


def _read_rel2id(path: Path) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        rel2id = json.load(f)
    if not isinstance(rel2id, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in rel2id.items()
    ):
        raise ValueError(f"{path}: expected a JSON object mapping relation names to integer ids")
    if sorted(rel2id.values()) != list(range(len(rel2id))):
        raise ValueError(f"{path}: relation ids must be exactly 0..{len(rel2id) - 1}, each once")
    return rel2id


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_plain_file_name(value: Any) -> bool:
    # Names are joined onto image folders: anything with a directory part could escape them.
    return isinstance(value, str) and value not in ("", ".", "..") and Path(value).name == value and "\\" not in value


def _read_split_file(path: Path, rel2id: dict[str, int]) -> list[tuple[int, dict[str, Any]]]:
    """Parse and validate every line; returns `(0-based line index, record)` pairs, blank lines skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            where = f"{path} line {index + 1}"
            try:
                record = ast.literal_eval(line.strip())
            except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as err:
                raise ValueError(f"{where}: not a Python literal ({type(err).__name__}: {err})") from None
            _validate_record(record, rel2id, where)
            records.append((index, record))
    return records


def _validate_record(record: Any, rel2id: dict[str, int], where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a dict literal, got {type(record).__name__}")
    for key in _RECORD_KEYS:
        if key not in record:
            raise ValueError(f"{where}, field '{key}': missing")
    tokens = record["token"]
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise ValueError(f"{where}, field 'token': expected a list of strings")
    for entity in ("h", "t"):
        value = record[entity]
        if not isinstance(value, dict):
            raise ValueError(f"{where}, field '{entity}': expected a dict with 'name' and 'pos'")
        name, pos = value.get("name"), value.get("pos")
        if not isinstance(name, str):
            raise ValueError(f"{where}, field '{entity}.name': expected a string, got {name!r}")
        if not isinstance(pos, (list, tuple)) or len(pos) != 2 or not all(_is_int(p) for p in pos):
            raise ValueError(f"{where}, field '{entity}.pos': expected two integers, got {pos!r}")
        start, end = pos
        if not 0 <= start < end <= len(tokens):
            raise ValueError(f"{where}, field '{entity}.pos': span {list(pos)} out of range for {len(tokens)} tokens")
        span_text = " ".join(tokens[start:end])
        if span_text != name:
            raise ValueError(
                f"{where}, field '{entity}.name': {name!r} does not match tokens[{start}:{end}] = {span_text!r}"
            )
    if list(record["h"]["pos"]) == list(record["t"]["pos"]):
        raise ValueError(f"{where}, field 't.pos': the same span as the head; a relation needs two entities")
    if not _is_plain_file_name(record["img_id"]):
        raise ValueError(f"{where}, field 'img_id': expected a file name, got {record['img_id']!r}")
    if not isinstance(record["relation"], str) or record["relation"] not in rel2id:
        raise ValueError(f"{where}, field 'relation': unknown relation {record['relation']!r}")


def _read_crop_dict(path: Path) -> dict[int, list[str]]:
    crop_names = torch.load(path, weights_only=True)
    if not isinstance(crop_names, dict):
        raise ValueError(
            f"{path}: expected a dict from line index to crop file names, got {type(crop_names).__name__}"
        )
    for index, names in crop_names.items():
        if not _is_int(index) or not isinstance(names, (list, tuple)) or not all(map(_is_plain_file_name, names)):
            raise ValueError(f"{path}, key {index!r}: expected an int line index mapping to a list of file names")
    return crop_names


def _present_files(folder: Path) -> set[str]:
    # One listing per folder instead of one stat per record keeps 12k rows fast.
    return set(os.listdir(folder)) if folder.is_dir() else set()


def _resolve_files(
    key: str,
    records: list[tuple[int, dict[str, Any]]],
    *,
    split_file: Path,
    image_split_dir: Path,
    crop_split_dir: Path,
    crop_names: dict[int, list[str]],
    crop_dict_file: Path | None,
    strict: bool,
) -> list[dict[str, Any]]:
    present_images = _present_files(image_split_dir)
    present_crops = _present_files(crop_split_dir)
    problems: dict[Path, str | None] = {}  # one decode check per file, however many records share it
    absent_images = absent_crops = total_crops = 0
    unreadable_images, unreadable_crops = [], []
    rows = []
    for index, record in records:
        where = f"{split_file} line {index + 1}, field 'img_id'"
        image = None
        if record["img_id"] in present_images:
            path = image_split_dir / record["img_id"]
            problem = problems.setdefault(path, image_file_problem(path))
            if problem is None:
                image = str(path)
            elif strict:
                raise ValueError(f"{where}: {path} {problem}")
            else:
                unreadable_images.append(f"{path.name} {problem}")
        elif strict:
            raise FileNotFoundError(f"{where}: {image_split_dir / record['img_id']} not found")
        else:
            absent_images += 1
        crops = []
        for name in crop_names.get(index, ()):
            total_crops += 1
            path = crop_split_dir / name
            if name not in present_crops:
                if strict:
                    raise FileNotFoundError(f"{crop_dict_file}, key {index}: crop {path} not found")
                absent_crops += 1
                continue
            problem = problems.setdefault(path, image_file_problem(path))
            if problem is None:
                crops.append(str(path))
            elif strict:
                raise ValueError(f"{crop_dict_file}, key {index}: crop {path} {problem}")
            else:
                unreadable_crops.append(f"{name} {problem}")
        head, tail = record["h"], record["t"]
        rows.append(
            {
                "id": f"{key}-{index}",
                "tokens": record["token"],
                "head": {"name": head["name"], "start": head["pos"][0], "end": head["pos"][1]},
                "tail": {"name": tail["name"], "start": tail["pos"][0], "end": tail["pos"][1]},
                "image": image,
                "image_id": record["img_id"],
                "crops": crops,
                "relation": record["relation"],
            }
        )
    if absent_images:
        logger.warning(
            f"{key}: {absent_images} of {len(rows)} images absent under {image_split_dir}: treated as no image"
        )
    if absent_crops:
        logger.warning(f"{key}: {absent_crops} of {total_crops} object crops absent under {crop_split_dir}: dropped")
    if unreadable_images:
        logger.warning(
            f"{key}: {len(unreadable_images)} of {len(rows)} images unreadable under {image_split_dir} "
            f"(first: {unreadable_images[0]}): treated as no image"
        )
    if unreadable_crops:
        logger.warning(
            f"{key}: {len(unreadable_crops)} of {total_crops} object crops unreadable under {crop_split_dir} "
            f"(first: {unreadable_crops[0]}): dropped"
        )
    return rows
