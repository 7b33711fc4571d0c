#!/usr/bin/env python
"""
Run a trained modeling_mre model over a corpus with 🤗 Accelerate: every input row's results, once
each, in input order, resumable.

    accelerate launch predict_accelerate.py --model outputs/mmib-demo --input posts.jsonl --output relations.jsonl
    accelerate launch --num_processes 2 predict_accelerate.py --model org/mre-mmib-mnre --input posts.parquet \
        --output relations.parquet
    python predict_accelerate.py --model outputs/mmib-twitter2017 --input tweets.csv --output entities.jsonl

Input: JSON Lines, CSV or parquet files, or a dataset name for `datasets.load_dataset` (with
`--input_split`). Each row is what the model's pipeline takes: `text`, `head` and `tail` (entity
strings or `[start, end]` character offsets; a tail may be an object `{"box": ...}`) and an optional
`image` (a path, URL, base64 string, bytes or a `datasets` image); or a whole post, `text` with its
`entities` (or none, with `--ner_model`); for an entity recognizer, `text` and `image`. A row's id is
its `--id_column` value, else its position in the input.

Output: JSON Lines or parquet (by `--output`'s extension), one record per input row in input order:
`{"id": ..., "results": [...]}` as the pipeline returns them. Rows the pipeline refuses (a head not in
the text, an unreadable image) go to `<output>.rejects.jsonl` with the reason, and the run goes on;
`--strict` stops at the first instead, and fails a run (a relaunch too) whose output has any.

Each process takes its share of the rows still to do (`accelerator.split_between_processes`) and
appends its results to a part file of `<output>.parts/` as it goes; a run killed at any point and
launched again with the same arguments does only the rows not yet written, and once every process is
done the main one merges the parts into `--output` (written atomically). The parts stay, so a finished
run launched again only merges. `<output>.parts/run.json` records the arguments with fingerprints of the
input files and of the model's weights and config: a relaunch after any of them changed (the rejected
rows fixed in the input, the model retrained in place) is refused, saying what changed, and
`--overwrite_output` redoes it from the start. An `--output` that exists without the parts of this run
is not overwritten either, unless `--overwrite_output` is given.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import datasets
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import pipeline
from transformers.utils import cached_file

from modeling_mre import PIPELINE_TASK
from modeling_mre.data.schema import excerpt, read_text_lines


PARTS_SUFFIX, REJECTS_SUFFIX = ".parts", ".rejects.jsonl"
INPUT_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model folder or Hub id (its code runs: trust_remote_code).")
    parser.add_argument("--revision", default=None, help="The Hub revision of --model whose code you have read.")
    parser.add_argument(
        "--input", required=True, nargs="+", help="JSON Lines, CSV or parquet files, or a dataset name."
    )
    parser.add_argument("--input_split", default="train", help="The split of a dataset given by name.")
    parser.add_argument("--output", required=True, type=Path, help="Results: .jsonl or .parquet.")
    parser.add_argument("--id_column", default="id", help="The column naming each row; its position when absent.")
    parser.add_argument("--batch_size", type=int, default=32, help="Rows per pipeline call.")
    parser.add_argument("--top_k", type=int, default=None, help="Relations per pair (the pipeline's top_k).")
    parser.add_argument("--ner_model", default=None, help="Entity recognizer for whole posts without `entities`.")
    parser.add_argument(
        "--strict", action="store_true", help="Stop at the first row the pipeline refuses; fail a run that has any."
    )
    parser.add_argument(
        "--overwrite_output",
        action="store_true",
        help="Redo the run from the start when its input, model or arguments changed, or replace an --output "
        "this run did not write.",
    )
    args = parser.parse_args(argv)
    if args.output.suffix not in (".jsonl", ".parquet"):
        parser.error(f"--output must end in .jsonl or .parquet, got {args.output.name}")
    if args.output.is_dir():
        parser.error(f"--output {args.output} is a folder; give the results file (.jsonl or .parquet) to write")
    if any(Path(name).exists() and Path(name).resolve() == args.output.resolve() for name in args.input):
        parser.error(f"--output {args.output} is one of the --input files: the results would overwrite the posts")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top_k must be at least 1 (the relations kept per pair), got {args.top_k}")
    return args


def load_rows(args) -> tuple[list[dict] | datasets.Dataset, list[str]]:
    """
    The input rows, indexable in order, and where each comes from (`<file> line N`, for errors). JSON
    Lines are read line by line, so rows may differ in shape (a head as a string in one, as offsets in the
    next; an object tail); JSON arrays, CSV, parquet and datasets by name through `datasets.load_dataset`.
    An empty file, or a CSV with its header alone, is refused before `datasets` reads it.
    """
    suffixes = {Path(name).suffix for name in args.input}
    if all(Path(name).is_file() for name in args.input):
        if len(suffixes) != 1 or next(iter(suffixes)) not in INPUT_FORMATS:
            raise ValueError(f"--input files must all be one of {sorted(INPUT_FORMATS)}, got {sorted(suffixes)}")
        suffix = suffixes.pop()
        if suffix == ".jsonl":
            rows, origins = [], []
            for name in args.input:
                for row, where in read_json_lines(Path(name)):
                    rows.append(row)
                    origins.append(where)
            return rows, origins
        parts, origins = [], []
        for name in args.input:
            if os.path.getsize(name) == 0:
                raise ValueError(f"{name} is empty: no row to predict")
            if suffix == ".csv":
                check_csv_has_rows(Path(name))
            part = datasets.load_dataset(INPUT_FORMATS[suffix], data_files=[name], split="train")
            if len(part) == 0:
                raise ValueError(f"{name} has no rows")
            parts.append(part)
            # CSV: line 1 is the header (a cell spanning lines shifts the count); JSON and parquet: the row.
            origins += [f"{name} line {i + 2}" if suffix == ".csv" else f"{name} row {i}" for i in range(len(part))]
        return datasets.concatenate_datasets(parts), origins
    if len(args.input) == 1 and not any(Path(name).suffix in INPUT_FORMATS for name in args.input):
        rows = datasets.load_dataset(args.input[0], split=args.input_split)
        return rows, [f"{args.input[0]} ({args.input_split}) row {i}" for i in range(len(rows))]
    missing = [name for name in args.input if not Path(name).is_file()]
    raise FileNotFoundError(f"--input files not found: {', '.join(missing)}")


def check_csv_has_rows(path: Path) -> None:
    """A CSV with a header and at least one row; `datasets` buries the cause of either missing."""
    lines = (line for _, line, _ in read_text_lines(path) if line.strip())
    if next(lines, None) is None:
        raise ValueError(f"{path} is empty: no header, no row to predict")
    if next(lines, None) is None:
        raise ValueError(f"{path} has a header line but no rows")


def read_json_lines(path: Path) -> list[tuple[dict, str]]:
    """One JSON object per non-empty line, with its `<file> line N`; anything else is refused with the file and line."""
    rows = []
    for _, line, where in read_text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        rows.append((row, where))
    if not rows:
        raise ValueError(f"{path} is empty: no row to predict")
    return rows


def row_ids(rows, origins: list[str], args) -> list:
    """Each row's `--id_column` value, else its position; an empty id (a blank CSV cell) is refused."""
    if isinstance(rows, datasets.Dataset):  # a column read, not every row decoded
        if args.id_column not in rows.column_names:
            return list(range(len(rows)))
        ids = rows[args.id_column]
    else:
        ids = [row.get(args.id_column, index) for index, row in enumerate(rows)]
    for where, value in zip(origins, ids):
        if (
            value is None
            or (isinstance(value, str) and not value.strip())
            or (isinstance(value, float) and math.isnan(value))
        ):
            raise ValueError(f"{where}, field {args.id_column!r}: empty; every row needs an id (or drop the column)")
    return ids


def check_run(extract, rows, args) -> None:
    """What the model's pipeline and the rows make of the arguments, before any row is predicted."""
    relations = extract.task == PIPELINE_TASK
    if not relations and (args.top_k is not None or args.ner_model is not None):
        flag = "--top_k" if args.top_k is not None else "--ner_model"
        raise ValueError(f"{flag} is for a relation extractor; --model {args.model} is a {extract.task} model")
    if args.top_k is not None:
        columns = rows.column_names if isinstance(rows, datasets.Dataset) else {key for row in rows for key in row}
        if relations and "head" not in columns:
            raise ValueError(
                "--top_k ranks the relations of one pair; the rows are whole posts, each pair given its best"
            )


def fingerprint(paths: list[Path]) -> str:
    """SHA-256 of the files' contents, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as content:
            while chunk := content.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def model_files(args) -> list[Path]:
    """The config and weights files of --model: its folder's, or those of the Hub snapshot the pipeline loaded."""
    folder = (
        Path(args.model)
        if Path(args.model).is_dir()
        else Path(cached_file(args.model, "config.json", revision=args.revision)).parent
    )
    return sorted(
        path
        for path in folder.iterdir()
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin") or path.name.endswith(".index.json")
    )


def pipeline_input(row: dict, args) -> dict:
    """What the pipeline takes of one row: the pipeline's own keys, without empty ones."""
    keys = ("text", "head", "tail", "image", "entities")
    example = {key: row[key] for key in keys if row.get(key) is not None}
    if args.ner_model is not None and "head" not in example and "entities" not in example:
        example["ner_model"] = args.ner_model
    return example


def claim_parts(parts: Path, args, rows) -> None:
    """
    The part folder of this run, made or resumed: parts written for another input (its files' content
    included), model (its weights and config) or arguments are refused rather than merged into this
    output, or, with --overwrite_output, deleted to start again. An --output without parts is not overwritten.
    """
    files = [Path(name) for name in args.input if Path(name).is_file()]
    run = {
        "model": args.model,
        "revision": args.revision,
        "model_files": fingerprint(model_files(args)),
        "input": [str(path.resolve()) for path in files] or args.input,
        "input_split": args.input_split,
        "input_files": fingerprint(files) if files else rows._fingerprint,
        "rows": len(rows),
        "id_column": args.id_column,
        "top_k": args.top_k,
        "ner_model": args.ner_model,
    }
    recorded = parts / "run.json"
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        changed = [key for key in run.keys() | before.keys() if run.get(key) != before.get(key)]
        if changed and not args.overwrite_output:
            what = {"input_files": "the input files' content", "model_files": "the model's weights or config"}
            details = "; ".join(
                what[key] if key in what else f"{key} {before.get(key)!r} -> {run.get(key)!r}"
                for key in sorted(changed)
            )
            raise ValueError(
                f"{parts} holds the parts of a run with other arguments or inputs (changed: {details}): give "
                "--overwrite_output to redo it, or another --output"
            )
        if changed:
            shutil.rmtree(parts)
    elif args.output.exists() and not args.overwrite_output:
        raise FileExistsError(
            f"--output {args.output} exists and was not written by this run: give --overwrite_output to replace it"
        )
    parts.mkdir(parents=True, exist_ok=True)
    staging = parts / ".run.json.partial"
    staging.write_text(json.dumps(run))
    os.replace(staging, recorded)


def read_records(path: Path) -> list[dict]:
    """The complete lines of a part file: a line cut short by a kill is not a record."""
    records = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.endswith("\n"):
                break
            records.append(json.loads(line))
    return records


def done_indices(parts: Path) -> set[int]:
    """The rows any earlier attempt wrote, as a result or a reject."""
    return {record["__index"] for path in sorted(parts.glob("*.jsonl")) for record in read_records(path)}


def run_batch(extract, rows: list[dict], args) -> list[tuple[str, dict]]:
    """("result" | "reject", record) per row; a batch the pipeline refuses is retried row by row to find the bad ones."""
    call = {"top_k": args.top_k} if args.top_k is not None else {}
    examples = [pipeline_input(row, args) for row in rows]
    whole_posts = [
        ("head" not in example) and ("entities" in example or "ner_model" in example) for example in examples
    ]
    if len(rows) > 1 and not any(whole_posts):
        try:
            results = extract(examples, batch_size=len(examples), **call)
            return [
                ("result", {"__index": row["__index"], "id": row["id"], "results": result})
                for row, result in zip(rows, results)
            ]
        except (ValueError, TypeError, FileNotFoundError, KeyError):
            pass  # some row is refused: find which, one at a time
    outcomes = []
    for row, example in zip(rows, examples):
        try:
            result = extract(example, **call)
        except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
            if args.strict:
                raise ValueError(f"row {row['__index']} (id {row['id']!r}): {err}") from err
            outcomes.append(
                ("reject", {"__index": row["__index"], "id": row["id"], "reason": f"{type(err).__name__}: {err}"})
            )
        else:
            outcomes.append(("result", {"__index": row["__index"], "id": row["id"], "results": result}))
    return outcomes


def merge(args, parts: Path, num_rows: int) -> dict:
    """Every part's results in input order into --output (atomically), the rejects beside it; the counts."""
    results, rejects = {}, {}
    for path in sorted(parts.glob("*.jsonl")):
        target = rejects if path.name.startswith("rejects") else results
        for record in read_records(path):
            target.setdefault(record.pop("__index"), record)
    missing = sorted(set(range(num_rows)) - results.keys() - rejects.keys())
    if missing:
        raise RuntimeError(
            f"{len(missing)} rows have no result nor reject (first: {missing[:5]}); run again to finish them"
        )
    staging = args.output.with_name(f".{args.output.name}.partial")
    ordered = [results[index] for index in sorted(results)]
    if args.output.suffix == ".parquet":
        # The results' structure varies with the task: each row's list is kept as its JSON text.
        table = datasets.Dataset.from_dict(
            {
                "id": [record["id"] for record in ordered],
                "results": [json.dumps(record["results"]) for record in ordered],
            }
        )
        table.to_parquet(staging)
    else:
        with open(staging, "w", encoding="utf-8") as out:
            for record in ordered:
                out.write(json.dumps(record) + "\n")
    os.replace(staging, args.output)
    rejects_path = args.output.with_name(args.output.name + REJECTS_SUFFIX)
    with open(rejects_path, "w", encoding="utf-8") as out:
        for index in sorted(rejects):
            out.write(json.dumps({"row": index, **rejects[index]}) + "\n")
    if args.strict and rejects:
        first = min(rejects)
        raise ValueError(
            f"--strict: {len(rejects)} rows were refused (first: row {first} (id {rejects[first]['id']!r}): "
            f"{excerpt(rejects[first]['reason'], 200)}); every reject is in {rejects_path}"
        )
    return {
        "rows": num_rows,
        "results": len(results),
        "rejects": len(rejects),
        "output": str(args.output),
        "rejects_file": str(rejects_path),
    }


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator()
    rows, origins = load_rows(args)
    ids = row_ids(rows, origins, args)
    extract = pipeline(model=args.model, revision=args.revision, trust_remote_code=True, device=accelerator.device)
    check_run(extract, rows, args)
    parts = args.output.with_name(args.output.name + PARTS_SUFFIX)
    if accelerator.is_main_process:
        claim_parts(parts, args, rows)
    accelerator.wait_for_everyone()
    pending = sorted(set(range(len(rows))) - done_indices(parts))
    attempt = len({path.name.split("-")[1] for path in parts.glob("*.jsonl")})  # new files each launch
    accelerator.wait_for_everyone()  # every process counted the same parts before any writes its own

    name = f"attempt{attempt:03d}-rank{accelerator.process_index:03d}.jsonl"
    with accelerator.split_between_processes(pending) as mine:
        started, written = time.perf_counter(), 0
        progress = tqdm(
            total=len(mine),
            unit="rows",
            disable=not accelerator.is_local_main_process,
            desc=f"rows (this process's {len(mine)} of {len(pending)} to do)",
        )
        with (
            open(parts / f"results-{name}", "a", encoding="utf-8") as results,
            open(parts / f"rejects-{name}", "a", encoding="utf-8") as rejects,
        ):
            for start in range(0, len(mine), args.batch_size):
                batch = [
                    {**rows[index], "__index": index, "id": ids[index]}
                    for index in mine[start : start + args.batch_size]
                ]
                for kind, record in run_batch(extract, batch, args):
                    (results if kind == "result" else rejects).write(json.dumps(record, default=str) + "\n")
                for part in (results, rejects):  # what is written survives a kill
                    part.flush()
                    os.fsync(part.fileno())
                written += len(batch)
                progress.update(len(batch))
        progress.close()
    elapsed = time.perf_counter() - started
    rates = gather_object([(written, elapsed)])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        summary = merge(args, parts, len(rows))
        summary["rows_this_launch"] = sum(count for count, _ in rates)
        summary["rows_per_second"] = summary["rows_this_launch"] / max(max(seconds for _, seconds in rates), 1e-9)
        summary["processes"] = accelerator.num_processes
        accelerator.print(json.dumps(summary))
        return summary
    return None


if __name__ == "__main__":
    main()
