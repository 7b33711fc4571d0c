#!/usr/bin/env python
"""
Accuracy by the papers' protocol over several seeds: for every method and seed, train_accelerate.py
trains on train, evaluates validation after every epoch, keeps the best validation epoch (micro-F1
over relations other than `None`) and evaluates test once with it. Prints mean ± standard deviation
over seeds of micro precision, recall, F1 and accuracy (in %), as the papers' tables do, for the
validation (selection) split and for test when the dataset has one.

    python benchmarks/accuracy.py                                           # embedded demo, 3 seeds
    python benchmarks/accuracy.py --data_dir ../shared/data/mnre --num_train_epochs 4
    python benchmarks/accuracy.py --data_dir MNRE/ --methods mmib -- --text_backbone bert-base-uncased
    python benchmarks/accuracy.py --dataset more --data_dir MORE/

Flags this script does not know are passed on to train_accelerate.py. Each run writes its model and
`eval_results.json` under `--output_dir/<method>-seed<seed>`; a run whose folder already holds the
results of the same command is reused, so an interrupted benchmark resumes where it stopped.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from modeling_mre import METHODS


REPO = Path(__file__).resolve().parents[1]
METRICS = (("accuracy", "Acc"), ("micro_precision", "P"), ("micro_recall", "R"), ("micro_f1", "F1"))


def parse_args():
    # No abbreviations: a training flag passed through must never be taken for one of ours.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=sorted(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--num_train_epochs", type=int, default=None, help="Default: train_accelerate.py's.")
    parser.add_argument("--dataset", choices=["mnre", "more"], default="mnre", help="The layout of --data_dir.")
    parser.add_argument("--data_dir", type=str, default=None, help="A dataset folder; default: the embedded demo.")
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs" / "accuracy")
    parser.add_argument(
        "--launcher", type=str, default=sys.executable, help="Runs the training script, e.g. 'accelerate launch'."
    )
    args, train_flags = parser.parse_known_args()
    args.train_flags = [flag for flag in train_flags if flag != "--"]
    return args


def train_command(args, method: str, seed: int, run_dir: Path) -> list[str]:
    command = [*args.launcher.split(), str(REPO / "train_accelerate.py"), "--method", method, "--seed", str(seed)]
    command += ["--output_dir", str(run_dir)]
    if args.data_dir is not None:
        command += ["--dataset", args.dataset, "--data_dir", str(Path(args.data_dir).absolute())]
    if args.num_train_epochs is not None:
        command += ["--num_train_epochs", str(args.num_train_epochs)]
    return command + args.train_flags


def run(args, method: str, seed: int) -> dict:
    run_dir = args.output_dir / f"{method}-seed{seed}"
    command = train_command(args, method, seed, run_dir)
    results_file, command_file = run_dir / "eval_results.json", run_dir / "benchmark_command.json"
    if results_file.is_file() and command_file.is_file() and json.loads(command_file.read_text()) == command:
        print(f"{method} seed {seed}: reusing {results_file}", flush=True)
        return json.loads(results_file.read_text())
    print(f"{method} seed {seed}: {' '.join(command)}", flush=True)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, cwd=REPO, env=environment, check=True)
    command_file.write_text(json.dumps(command))
    return json.loads(results_file.read_text())


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def main():
    args = parse_args()
    results = {method: {seed: run(args, method, seed) for seed in args.seeds} for method in args.methods}

    layout = args.dataset.upper()
    dataset = f"{layout}-layout data in {args.data_dir}" if args.data_dir else "the embedded demo (regenerated per seed)"
    lines = [
        f"## Accuracy: {dataset}",
        "",
        f"Seeds {', '.join(map(str, args.seeds))}; mean ± standard deviation over seeds, in %. "
        "Validation is the selection split (best epoch by its micro-F1), so its figures are optimistic; "
        "test is evaluated once, at that epoch.",
        "",
        "| Method | split | " + " | ".join(label for _, label in METRICS) + " | best epochs | s / epoch |",
        "|---|---|" + "---|" * len(METRICS) + "---|---|",
    ]
    for method, by_seed in results.items():
        runs = list(by_seed.values())
        for split in ("validation", "test"):
            if not all(split in r for r in runs):
                continue
            cells = [mean_std([r[split][key] for r in runs]) for key, _ in METRICS]
            epochs = ", ".join(str(r["best_epoch"]) for r in runs)
            # A range, not a mean: on a shared machine one run's epochs can take ten times another's.
            seconds = sorted(r["seconds_per_epoch"] for r in runs)
            lines.append(
                f"| {method} | {split} | " + " | ".join(cells) + f" | {epochs} | {seconds[0]:.0f}–{seconds[-1]:.0f} |"
            )
    table = "\n".join(lines)
    print("\n" + table)
    summary = {method: {str(seed): r for seed, r in by_seed.items()} for method, by_seed in results.items()}
    (args.output_dir / "accuracy_summary.json").write_text(json.dumps({"table": table, "runs": summary}, indent=2))


if __name__ == "__main__":
    main()
