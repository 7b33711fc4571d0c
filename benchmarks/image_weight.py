#!/usr/bin/env python
"""
How much a DFMA model's predictions take from the image (its `image_weight`) on the controlled
benchmark's test posts, by what their picture is: related (it shows the relation's scene),
unrelated (colour blobs, the generator's `noise_share`) or missing. Each run folder is one of
`benchmarks/accuracy.py --dataset controlled` (its `benchmark_command.json` names the data, whose
`demo_info.json` knows every post's picture). Prints, per run, the mean and standard deviation over
the posts of each kind, and the mean ± standard deviation of those means over the runs (seeds).

    python benchmarks/accuracy.py --methods dfma mmib --ablations --dataset controlled --noise_shares 0.25 \
        --num_candidate_objects 2 --num_train_epochs 8 --output_dir outputs/dfma-candidates2
    python benchmarks/image_weight.py outputs/dfma-candidates2/dfma-noise0.25-seed{42,43,44} \
        --output_json benchmarks/results/dfma-parts/image_weight.json
"""

import argparse
import json
import statistics
from pathlib import Path

import torch
from common import batches, provenance, training_info  # benchmarks/common.py
from transformers import AutoModel, AutoProcessor

from modeling_mre import load_mnre


KINDS = ("related", "unrelated", "missing")


def picture_kind(post: dict) -> str:
    return "missing" if post["missing_image"] else "unrelated" if post["unrelated_image"] else "related"


def image_weights(folder: str) -> dict:
    """The test posts' image weights of the model in `folder`, by the kind of their picture."""
    command = json.loads((Path(folder) / "benchmark_command.json").read_text())
    data_dir = command[command.index("--data_dir") + 1]
    posts = json.loads((Path(data_dir) / "demo_info.json").read_text())["posts"]["test"]
    kinds = {post["img_id"]: picture_kind(post) for post in posts}
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    test = load_mnre(data_dir)["test"]
    with torch.no_grad():
        weights = torch.cat([model(**inputs).image_weight for inputs in batches(processor, test, model.device)])
    by_kind = {kind: [] for kind in KINDS}
    for image_id, weight in zip(test["image_id"], weights.tolist(), strict=True):
        by_kind[kinds[image_id]].append(weight)
    return {
        "folder": folder,
        "data_dir": data_dir,
        "training": training_info(folder),
        "kinds": {
            kind: {"count": len(values), "mean": statistics.mean(values), "std": statistics.pstdev(values)}
            for kind, values in by_kind.items()
            if values
        },
    }


def format_table(runs: list[dict]) -> str:
    """Per picture kind: posts, the mean image weight per seed (± its spread over posts), and over seeds."""
    lines = [
        "| picture | posts per seed | image weight per seed (mean ± std over posts) | mean ± std over seeds |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        present = [run["kinds"][kind] for run in runs if kind in run["kinds"]]
        if not present:
            continue
        counts = ", ".join(str(p["count"]) for p in present)
        per_seed = "; ".join(f"{p['mean']:.3f} ± {p['std']:.3f}" for p in present)
        means = [p["mean"] for p in present]
        spread = statistics.stdev(means) if len(means) > 1 else 0.0
        lines.append(f"| {kind} | {counts} | {per_seed} | {statistics.mean(means):.3f} ± {spread:.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="Run folders of benchmarks/accuracy.py on the controlled benchmark.")
    parser.add_argument("--output_json", type=Path, default=None)
    args = parser.parse_args()
    runs = [image_weights(folder) for folder in args.runs]
    table = format_table(runs)
    print(table)
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        summary = {"kind": "image_weight", **provenance(), "runs": runs, "table": table}
        args.output_json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
