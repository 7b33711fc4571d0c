#!/usr/bin/env python
"""
The table of RESULTS.md's "ROC across relation sets": every recipe of `relation_retrieval.py` and
`relation_residual.py` with a result file under `benchmarks/results/roc-retrieval/`, over its seeds,
against the untrained encoder of the same seeds (the same held-out draw and descriptions). A run that
skipped its untrained evaluation takes it from another file of its seed and descriptions.

    python benchmarks/retrieval_table.py
"""

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


FOLDER = Path(__file__).resolve().parent / "results" / "roc-retrieval"
METRICS = {
    "held_out_accuracy": "held-out NYT and PubMed relations (7-way)",
    "semeval_accuracy": "SemEval, 17-way",
    "semeval_macro_f1": "SemEval macro-F1",
    "semeval_accuracy_undirected": "SemEval, direction aside",
}


def recipe(summary: dict) -> tuple[tuple, str]:
    """What a file's run trained: a key that orders the recipes, and its name."""
    arguments = summary["arguments"]
    if summary["kind"] == "relation_residual":
        return (2,), "frozen encoder + a learned pair term from zero (`relation_residual.py`)"
    swapped, definitions = arguments.get("swap_negatives") == "True", arguments.get("wikidata_definitions") == "True"
    words = ["whole encoder (`relation_retrieval.py`)"]
    words += ["+ NYT also described by Wikidata's definitions"] if definitions else []
    words += ["+ its own relation read the other way as a negative"] if swapped else []
    return (1, swapped, definitions), " ".join(words)


def untrained_key(summary: dict) -> tuple:
    """Runs that share their untrained figures: the same seed's draw, read with the same descriptions."""
    return summary["seed"], summary["arguments"].get("wikidata_definitions", "False")


def mean_std(values: list[float]) -> str:
    points = [100 * v for v in values]
    if len(points) == 1:
        return f"{points[0]:.1f}"
    return f"{statistics.mean(points):.1f} ± {statistics.stdev(points):.1f}"


def table(folder: Path = FOLDER) -> str:
    files = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    untrained = {untrained_key(s): s["untrained"] for s in files if "untrained" in s}
    runs = defaultdict(list)
    for summary in files:
        runs[recipe(summary)].append(summary)
    lines = [
        "| recipe | seeds | " + " | ".join(f"{name}: untrained → trained (gain)" for name in METRICS.values()) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for (_, name), summaries in sorted(runs.items()):
        cells = []
        for metric in METRICS:
            before = [untrained[untrained_key(s)][metric] for s in summaries]
            after = [s["trained"][metric] for s in summaries]
            gain = [a - b for a, b in zip(after, before)]
            cells.append(f"{mean_std(before)} → {mean_std(after)} ({mean_std(gain)})")
        seeds = ", ".join(str(s["seed"]) for s in sorted(summaries, key=lambda s: s["seed"]))
        lines.append(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=FOLDER)
    print(table(parser.parse_args().folder))


if __name__ == "__main__":
    main()
