#!/usr/bin/env python
"""
Rows per second of `predict_accelerate.py` against the two references a user has in the same
process: a plain loop of single pipeline calls, and the bare model forward on the processor's batches
of the same rows (what no way of calling the model can beat).

    python benchmarks/predict_speed.py --output_json benchmarks/results/predict/predict_speed.json

The model is MMIB on the embedded backbones (MiniLM, MobileNetV2), saved as a folder; the rows are
posts of the embedded demo set with their pictures, every third without one. predict_accelerate.py
runs in subprocesses with 1 and 2 processes (CPU: `accelerate launch --multi_gpu` with
ACCELERATE_USE_CPU, the cores shared out with --num_cpu_threads_per_process, since accelerate launch
gives a CPU process one thread by default) and reports its own rows/s, timed from its first batch to its
last (model loading excluded, as for the references). Settings run in turn, repeat after repeat; every ratio is the
median of per-repeat ratios, so load on the machine shifts both sides alike.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
from common import provenance  # noqa: E402  (benchmarks/common.py)
from transformers import pipeline  # noqa: E402

from modeling_mre import PIPELINE_TASK, MMIBForRelationExtraction, MREProcessor, load_mnre, write_demo_dataset  # noqa: E402
from modeling_mre.backbones import embedded_text_backbone, embedded_vision_backbone  # noqa: E402
from modeling_mre.hub import save_hub_folder  # noqa: E402


REPO = Path(__file__).resolve().parents[1]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_rows", type=int, default=384)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", type=Path, default=None)
    return parser.parse_args()


def demo_rows(workdir: Path, num_rows: int) -> list[dict]:
    """Posts of the demo set as a user has them: text, the entities' character offsets, an image file (or none)."""
    split = load_mnre(write_demo_dataset(workdir / "demo", num_train=num_rows, num_validation=0, num_test=0))["train"]
    rows = []
    for i, record in enumerate(split.cast_column("image", datasets.Image(decode=False))):
        tokens, spans = record["tokens"], []
        for entity in (record["head"], record["tail"]):  # character offsets: a name may occur twice
            start = len(" ".join(tokens[: entity["start"]])) + (entity["start"] > 0)
            spans.append([start, start + len(" ".join(tokens[entity["start"] : entity["end"]]))])
        image = record["image"]["path"] if record["image"] is not None and i % 3 else None
        rows.append({"id": record["id"], "text": " ".join(tokens), "head": spans[0], "tail": spans[1], "image": image})
    return rows


def predict_rows_per_second(folder: Path, input_path: Path, output: Path, batch_size: int, processes: int) -> float:
    """predict_accelerate.py's own rows/s over all of the input (a fresh output each time)."""
    for stale in (output, output.with_name(output.name + ".parts")):
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    # accelerate launch gives each CPU process 1 thread unless told: the cores are shared out instead, so
    # every setting uses the whole machine, as the in-process references do.
    threads = max(1, torch.get_num_threads() // processes)
    launch = [
        accelerate,
        "launch",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_processes",
        str(processes),
        "--num_cpu_threads_per_process",
        str(threads),
        *(["--multi_gpu"] if processes > 1 else []),
    ]
    environment = {**os.environ, "ACCELERATE_USE_CPU": "true"} if not torch.cuda.is_available() else dict(os.environ)
    completed = subprocess.run(
        [
            *launch,
            str(REPO / "predict_accelerate.py"),
            "--model",
            str(folder),
            "--input",
            str(input_path),
            "--output",
            str(output),
            "--batch_size",
            str(batch_size),
        ],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["processes"] == processes and summary["results"] == summary["rows"], summary
    return summary["rows_per_second"]


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    origin = provenance()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="mre-predict-") as workdir:
        workdir = Path(workdir)
        rows = demo_rows(workdir, args.num_rows)
        input_path = workdir / "posts.jsonl"
        input_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        text, vision = str(embedded_text_backbone()), str(embedded_vision_backbone())
        processor = MREProcessor.from_backbones(text, vision)
        label_names = ["None", "related"]
        model = (
            MMIBForRelationExtraction.from_backbones(
                text,
                vision,
                processor=processor,
                num_labels=2,
                id2label=dict(enumerate(label_names)),
                label2id={name: i for i, name in enumerate(label_names)},
            )
            .eval()
            .to(device)
        )
        folder = workdir / "model"
        save_hub_folder(model, processor, folder)
        extract = pipeline(PIPELINE_TASK, model=model, processor=processor, device=device)
        examples = [{key: row[key] for key in ("text", "head", "tail", "image")} for row in rows]

        def bare_forward(examples=examples):
            with torch.no_grad():
                for start in range(0, len(examples), args.batch_size):
                    chunk = examples[start : start + args.batch_size]
                    batch = processor(
                        text=[e["text"] for e in chunk],
                        head=[e["head"] for e in chunk],
                        tail=[e["tail"] for e in chunk],
                        images=[e["image"] for e in chunk],
                    )
                    model(**batch.to(device))

        def plain_loop(examples=examples):
            for example in examples:
                extract(example)

        # One batch of each first: the first forward allocates and the first images are read cold.
        bare_forward(examples[: args.batch_size])
        plain_loop(examples[: args.batch_size])

        settings = {"bare model forward": bare_forward, "plain loop of pipeline calls": plain_loop}
        rates = {
            name: [] for name in [*settings, "predict_accelerate.py, 1 process", "predict_accelerate.py, 2 processes"]
        }
        for _ in range(args.repeats):
            for name, run in settings.items():
                started = time.perf_counter()
                run()
                rates[name].append(len(rows) / (time.perf_counter() - started))
            for processes in (1, 2):
                rates[f"predict_accelerate.py, {processes} process{'es' if processes > 1 else ''}"].append(
                    predict_rows_per_second(folder, input_path, workdir / "out.jsonl", args.batch_size, processes)
                )

    reference = "bare model forward"
    ratio = {
        name: statistics.median(r / f for r, f in zip(values, rates[reference])) for name, values in rates.items()
    }
    loop = {
        name: statistics.median(r / f for r, f in zip(values, rates["plain loop of pipeline calls"]))
        for name, values in rates.items()
    }
    lines = [
        f"## predict_accelerate.py against a plain loop and the bare forward ({origin['device']})",
        "",
        f"MMIB on the embedded backbones, {args.num_rows} demo posts (every third without its picture), batches of "
        f"{args.batch_size}; medians of {args.repeats} repeats; {torch.get_num_threads()} torch threads in all, shared out "
        "among predict_accelerate.py's processes (--num_cpu_threads_per_process); its rows/s exclude its model loading.",
        "",
        "| setting | rows/s | ÷ bare forward | ÷ plain loop |",
        "|---|---|---|---|",
    ]
    for name, values in rates.items():
        lines.append(f"| {name} | {statistics.median(values):.1f} | {ratio[name]:.2f} | {loop[name]:.2f} |")
    markdown = "\n".join(lines)
    print(markdown)
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            **origin,
            "seeds": [args.seed],
            "markdown": markdown,
            "rows_per_second": rates,
            "over_bare_forward": ratio,
            "over_plain_loop": loop,
        }
        args.output_json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
