"""
What every dataset reader shares: the record schema, the label file, Python-literal lines with errors
that name file, line and field, pictures resolved with a counted "no image" fallback, and the
`datasets.Dataset` built from the rows.
"""

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

from ..models.images_mre import image_file_problem
from ..models.processing_mre import encodable


logger = logging.getLogger(__name__)


def record_features(relation_names: list[str], object_tails: bool = False) -> datasets.Features:
    """
    The record schema shared by every dataset reader of modeling_mre. With `object_tails` (MORE) the
    tail is an object in the image: `tail_box` holds its normalised (cx, cy, w, h), `tail_caption`
    its caption or None, and the tail's `start` and `end` are None.
    """
    span = {"name": datasets.Value("string"), "start": datasets.Value("int32"), "end": datasets.Value("int32")}
    features = {
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "head": span,
        "tail": dict(span),
    }
    if object_tails:
        features["tail_box"] = datasets.List(datasets.Value("float32"), length=4)
        features["tail_caption"] = datasets.Value("string")
    features.update(
        {
            "image": datasets.Image(),
            "image_id": datasets.Value("string"),
            "crops": datasets.List(datasets.Image()),
            "relation": datasets.ClassLabel(names=relation_names),
        }
    )
    return datasets.Features(features)


def first_existing(data_dir: Path, names: tuple[str, ...]) -> Path | None:
    return next((data_dir / name for name in names if (data_dir / name).is_file()), None)


def find_split_files(data_dir: Path, candidates: dict[str, tuple[str, ...]], dataset: str) -> dict[str, Path]:
    """For each split key, the first of its candidate files that exists; at least one split must."""
    split_files = {key: first_existing(data_dir, names) for key, names in candidates.items()}
    split_files = {key: path for key, path in split_files.items() if path is not None}
    if not split_files:
        tried = ", ".join(str(data_dir / name) for names in candidates.values() for name in names)
        raise FileNotFoundError(f"No {dataset} split file found; tried: {tried}")
    return split_files


def read_rel2id(path: Path) -> dict[str, int]:
    with open(path, encoding="utf-8-sig") as f:
        rel2id = json.load(f)
    if not isinstance(rel2id, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in rel2id.items()
    ):
        raise ValueError(f"{path}: expected a JSON object mapping relation names to integer ids")
    if sorted(rel2id.values()) != list(range(len(rel2id))):
        raise ValueError(f"{path}: relation ids must be exactly 0..{len(rel2id) - 1}, each once")
    return rel2id


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_plain_file_name(value: Any) -> bool:
    # Names are joined onto image folders: anything with a directory part could escape them.
    return isinstance(value, str) and value not in ("", ".", "..") and Path(value).name == value and "\\" not in value


def folder_argument(name: str, value: str | os.PathLike) -> Path:
    """A reader's folder argument, absolute (cached rows keep paths that must not depend on the working directory)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path, got {type(value).__name__}")
    if not Path(value).is_dir():
        raise NotADirectoryError(f"{name} {os.fspath(value)!r} is not a folder")
    return Path(value).absolute()


def excerpt(text: str, limit: int = 80) -> str:
    """`repr(text)`, its middle cut beyond `limit` characters: a message quotes at most part of a line."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit // 2]}...{shown[-limit // 4 :]} ({len(text)} characters)"


def read_text_lines(path: Path) -> Iterator[tuple[int, str, str]]:
    """
    `(0-based line index, line, "<path> line N")` per line of a UTF-8 text file (a BOM dropped), with
    LF, CRLF or CR-only line endings; a line that is not UTF-8 is refused, naming the line and byte.
    """
    data = path.read_bytes()
    raw_lines = data.split(b"\n") if b"\n" in data else data.split(b"\r")  # CR alone: classic Mac exports
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the file's final line ending
    for index, raw in enumerate(raw_lines):
        where = f"{path} line {index + 1}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{where}: byte {err.start} is not UTF-8 ({raw[err.start : err.start + 1]!r})") from None
        if index == 0:
            line = line.removeprefix("\ufeff")
        yield index, line.removesuffix("\r"), where


def _encodable_literal(value: Any) -> Any:
    """A parsed literal with the unpaired surrogates of its strings replaced (see `encodable`)."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, dict):
        return {key: _encodable_literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map(_encodable_literal, value))
    return value


def read_literal_lines(path: Path) -> Iterator[tuple[int, Any, str]]:
    """
    `(0-based line index, parsed Python literal, "<path> line N")` per non-blank line; never `eval`. A
    file without any is refused. Unpaired surrogates (`'\\ud83d'` escapes: no tokenizer or Arrow string
    takes them) become U+FFFD, the lines holding them counted in one warning.
    """
    count, replaced = 0, []
    for index, line, where in read_text_lines(path):
        if not line.strip():
            continue
        try:
            value = ast.literal_eval(line.strip())
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as err:
            raise ValueError(f"{where}: not a Python literal ({type(err).__name__}: {excerpt(str(err))})") from None
        encoded = _encodable_literal(value)
        if encoded != value:
            replaced.append(index + 1)
        count += 1
        yield index, encoded, where
    if replaced:
        logger.warning(
            f"{path}: unpaired surrogate characters replaced by U+FFFD in {len(replaced)} lines (first: line {replaced[0]})"
        )
    if not count:
        raise ValueError(f"{path} is empty: no record to read")


def check_record_fields(record: Any, keys: tuple[str, ...], rel2id: dict[str, int], where: str) -> list[str]:
    """
    The checks every line format shares: a dict with `keys`, a token list, a plain `img_id` and a
    known `relation`. Returns the tokens.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a dict literal, got {type(record).__name__}")
    for key in keys:
        if key not in record:
            raise ValueError(f"{where}, field '{key}': missing")
    tokens = record["token"]
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise ValueError(f"{where}, field 'token': expected a list of strings")
    if not is_plain_file_name(record["img_id"]):
        raise ValueError(f"{where}, field 'img_id': expected a file name, got {record['img_id']!r}")
    if not isinstance(record["relation"], str) or record["relation"] not in rel2id:
        raise ValueError(f"{where}, field 'relation': unknown relation {record['relation']!r}")
    return tokens


def check_text_entity(record: dict, entity: str, tokens: list[str], where: str) -> None:
    """An entity of the text: `{'name': str, 'pos': [start, end]}` whose tokens spell its name."""
    value = record[entity]
    if not isinstance(value, dict):
        raise ValueError(f"{where}, field '{entity}': expected a dict with 'name' and 'pos'")
    name, pos = value.get("name"), value.get("pos")
    if not isinstance(name, str):
        raise ValueError(f"{where}, field '{entity}.name': expected a string, got {name!r}")
    if not isinstance(pos, (list, tuple)) or len(pos) != 2 or not all(is_int(p) for p in pos):
        raise ValueError(f"{where}, field '{entity}.pos': expected two integers, got {pos!r}")
    start, end = pos
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"{where}, field '{entity}.pos': span {list(pos)} out of range for {len(tokens)} tokens")
    span_text = " ".join(tokens[start:end])
    if span_text != name:
        raise ValueError(
            f"{where}, field '{entity}.name': {name!r} does not match tokens[{start}:{end}] = {span_text!r}"
        )


def present_files(folder: Path) -> set[str]:
    # One listing per folder instead of one stat per record keeps 12k rows fast.
    return set(os.listdir(folder)) if folder.is_dir() else set()


def resolve_pictures(
    key: str,
    records: list[tuple[int, dict[str, Any]]],
    *,
    split_file: Path,
    image_split_dir: Path,
    strict: bool,
    crop_split_dir: Path | None = None,
    crop_names: dict[int, list[str]] | None = None,
    crop_dict_file: Path | None = None,
) -> list[tuple[str | None, list[str]]]:
    """
    `(image path or None, crop paths)` per record. Absent and unreadable files fall back to "no image"
    (and dropped crops), counted in one warning per kind and split; with `strict` they raise, naming
    the file, line and field.
    """
    crop_names = crop_names or {}
    present_images = present_files(image_split_dir)
    present_crops = present_files(crop_split_dir) if crop_split_dir is not None else set()
    problems: dict[Path, str | None] = {}  # one decode check per file, however many records share it
    absent_images = absent_crops = total_crops = 0
    unreadable_images, unreadable_crops = [], []
    pictures = []
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
        pictures.append((image, crops))
    if absent_images:
        logger.warning(
            f"{key}: {absent_images} of {len(records)} images absent under {image_split_dir}: treated as no image"
        )
    if absent_crops:
        logger.warning(f"{key}: {absent_crops} of {total_crops} object crops absent under {crop_split_dir}: dropped")
    if unreadable_images:
        logger.warning(
            f"{key}: {len(unreadable_images)} of {len(records)} images unreadable under {image_split_dir} "
            f"(first: {unreadable_images[0]}): treated as no image"
        )
    if unreadable_crops:
        logger.warning(
            f"{key}: {len(unreadable_crops)} of {total_crops} object crops unreadable under {crop_split_dir} "
            f"(first: {unreadable_crops[0]}): dropped"
        )
    return pictures


def build_split(
    key: str, rows: list[dict[str, Any]], features: datasets.Features, cache_dir: str | os.PathLike | None
) -> datasets.Dataset:
    """
    A split of `rows` (dicts of the record schema, at least one: the readers refuse empty files), cached by
    `datasets` under a hash of their content.
    """
    # The rows hold the parsed content and every resolved path, so hashing them invalidates the
    # cache whenever an input file or the set of present images changes. datasets' own hash of
    # gen_kwargs (a pure-Python dill pass) would take seconds on MNRE train; C pickle takes ms.
    fingerprint = hashlib.sha256(pickle.dumps((key, features.to_dict(), rows), protocol=5)).hexdigest()
    return datasets.Dataset.from_generator(
        _generate_rows,
        features=features,
        gen_kwargs={"rows": tuple(rows)},
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        split=datasets.NamedSplit(key),
        fingerprint=fingerprint,
    )


def _generate_rows(rows: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    yield from rows
