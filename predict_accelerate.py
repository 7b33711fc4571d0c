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
`--strict` stops at the first instead.

Each process takes its share of the rows still to do (`accelerator.split_between_processes`) and
appends its results to a part file of `<output>.parts/` as it goes; a run killed at any point and
launched again with the same arguments does only the rows not yet written, and once every process is
done the main one merges the parts into `--output` (written atomically). The parts stay, so a finished
run launched again only merges; they are refused for other arguments.
"""

import argparse
import json
import os
import time
from pathlib import Path

import datasets
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import pipeline

PARTS_SUFFIX, REJECTS_SUFFIX = ".parts", ".rejects.jsonl"
INPUT_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model folder or Hub id (its code runs: trust_remote_code).")
    parser.add_argument("--revision", default=None, help="The Hub revision of --model whose code you have read.")
    parser.add_argument("--input", required=True, nargs="+", help="JSON Lines, CSV or parquet files, or a dataset name.")
    parser.add_argument("--input_split", default="train", help="The split of a dataset given by name.")
    parser.add_argument("--output", required=True, type=Path, help="Results: .jsonl or .parquet.")
    parser.add_argument("--id_column", default="id", help="The column naming each row; its position when absent.")
    parser.add_argument("--batch_size", type=int, default=32, help="Rows per pipeline call.")
    parser.add_argument("--top_k", type=int, default=None, help="Relations per pair (the pipeline's top_k).")
    parser.add_argument("--ner_model", default=None, help="Entity recognizer for whole posts without `entities`.")
    parser.add_argument("--strict", action="store_true", help="Stop at the first row the pipeline refuses.")
    args = parser.parse_args(argv)
    if args.output.suffix not in (".jsonl", ".parquet"):
        parser.error(f"--output must end in .jsonl or .parquet, got {args.output.name}")
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    return args


def load_rows(args) -> list[dict] | datasets.Dataset:
    """
    The input rows, indexable in order. JSON Lines are read line by line, so rows may differ in shape (a
    head as a string in one, as offsets in the next; an object tail); JSON arrays, CSV, parquet and
    datasets by name through `datasets.load_dataset`.
    """
    suffixes = {Path(name).suffix for name in args.input}
    if all(Path(name).is_file() for name in args.input):
        if len(suffixes) != 1 or next(iter(suffixes)) not in INPUT_FORMATS:
            raise ValueError(f"--input files must all be one of {sorted(INPUT_FORMATS)}, got {sorted(suffixes)}")
        if suffixes == {".jsonl"}:
            return [row for name in args.input for row in read_json_lines(Path(name))]
        return datasets.load_dataset(INPUT_FORMATS[suffixes.pop()], data_files=list(args.input), split="train")
    if len(args.input) == 1 and not any(Path(name).suffix in INPUT_FORMATS for name in args.input):
        return datasets.load_dataset(args.input[0], split=args.input_split)
    missing = [name for name in args.input if not Path(name).is_file()]
    raise FileNotFoundError(f"--input files not found: {', '.join(missing)}")


def read_json_lines(path: Path) -> list[dict]:
    """One JSON object per non-empty line; a line that is not one is refused with the file and line."""
    rows = []
    with open(path, encoding="utf-8-sig") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number}: not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def pipeline_input(row: dict, args) -> dict:
    """What the pipeline takes of one row: the pipeline's own keys, without empty ones."""
    keys = ("text", "head", "tail", "image", "entities")
    example = {key: row[key] for key in keys if row.get(key) is not None}
    if args.ner_model is not None and "head" not in example and "entities" not in example:
        example["ner_model"] = args.ner_model
    return example


def claim_parts(parts: Path, args, num_rows: int) -> None:
    """
    The part folder of this run, made or resumed: parts written for other arguments (another input,
    model or --top_k) are refused rather than merged into this output.
    """
    run = {"model": args.model, "revision": args.revision, "input": [str(Path(name).resolve()) if Path(name).exists()
           else name for name in args.input], "input_split": args.input_split, "rows": num_rows,
           "id_column": args.id_column, "top_k": args.top_k, "ner_model": args.ner_model}
    parts.mkdir(parents=True, exist_ok=True)
    recorded = parts / "run.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != run:
        raise ValueError(
            f"{parts} holds the parts of a run with other arguments ({recorded.read_text().strip()}): "
            "delete it to start again, or give another --output"
        )
    recorded.write_text(json.dumps(run))


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
    whole_posts = [("head" not in example) and ("entities" in example or "ner_model" in example) for example in examples]
    if len(rows) > 1 and not any(whole_posts):
        try:
            results = extract(examples, batch_size=len(examples), **call)
            return [("result", {"__index": row["__index"], "id": row["id"], "results": result}) for row, result in zip(rows, results)]
        except (ValueError, TypeError, FileNotFoundError, KeyError):
            pass  # some row is refused: find which, one at a time
    outcomes = []
    for row, example in zip(rows, examples):
        try:
            result = extract(example, **call)
        except (ValueError, TypeError, FileNotFoundError, KeyError) as err:
            if args.strict:
                raise ValueError(f"row {row['__index']} (id {row['id']!r}): {err}") from err
            outcomes.append(("reject", {"__index": row["__index"], "id": row["id"], "reason": f"{type(err).__name__}: {err}"}))
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
        raise RuntimeError(f"{len(missing)} rows have no result nor reject (first: {missing[:5]}); run again to finish them")
    staging = args.output.with_name(f".{args.output.name}.partial")
    ordered = [results[index] for index in sorted(results)]
    if args.output.suffix == ".parquet":
        # The results' structure varies with the task: each row's list is kept as its JSON text.
        table = datasets.Dataset.from_dict({
            "id": [record["id"] for record in ordered],
            "results": [json.dumps(record["results"]) for record in ordered],
        })
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
    return {"rows": num_rows, "results": len(results), "rejects": len(rejects), "output": str(args.output),
            "rejects_file": str(rejects_path)}


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator()
    rows = load_rows(args)
    if isinstance(rows, datasets.Dataset):  # a column read, not every row decoded
        ids = rows[args.id_column] if args.id_column in rows.column_names else list(range(len(rows)))
    else:
        ids = [row.get(args.id_column, index) for index, row in enumerate(rows)]
    parts = args.output.with_name(args.output.name + PARTS_SUFFIX)
    if accelerator.is_main_process:
        claim_parts(parts, args, len(rows))
    accelerator.wait_for_everyone()
    pending = sorted(set(range(len(rows))) - done_indices(parts))
    attempt = len({path.name.split("-")[1] for path in parts.glob("*.jsonl")})  # new files each launch
    accelerator.wait_for_everyone()  # every process counted the same parts before any writes its own

    extract = pipeline(model=args.model, revision=args.revision, trust_remote_code=True, device=accelerator.device)
    name = f"attempt{attempt:03d}-rank{accelerator.process_index:03d}.jsonl"
    with accelerator.split_between_processes(pending) as mine:
        started, written = time.perf_counter(), 0
        progress = tqdm(total=len(mine), unit="rows", disable=not accelerator.is_local_main_process,
                        desc=f"rows (this process's {len(mine)} of {len(pending)} to do)")
        with open(parts / f"results-{name}", "a", encoding="utf-8") as results, \
                open(parts / f"rejects-{name}", "a", encoding="utf-8") as rejects:
            for start in range(0, len(mine), args.batch_size):
                batch = [{**rows[index], "__index": index, "id": ids[index]} for index in mine[start : start + args.batch_size]]
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
