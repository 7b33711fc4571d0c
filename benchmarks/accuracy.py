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
    python benchmarks/accuracy.py --dataset controlled --noise_shares 0 0.25 0.5   # the controlled benchmark
    python benchmarks/accuracy.py --methods wmajl --ablations --jobs 6             # each part removed, 6 runs at once
    python benchmarks/accuracy.py --methods baseline roc --hold_out /per/per/peer  # relations never trained on
    python benchmarks/accuracy.py --dataset controlled --methods roc --noise_shares 0 --hold_out /personal/rings
    python benchmarks/accuracy.py --dataset twitter2017 --data_dir ../shared/data/twitter/twitter2017 --methods baseline mmib

With `--dataset controlled` the script writes the controlled benchmark (modeling_mre.data.controlled)
for every seed and noise share (the other dials from their flags), trains every method on each, and
draws test micro-F1 against the noise share, one line per method, beside the ceilings that reading
the text only, the image only and both allow (`--figure`). A text-only method reads the same texts
and labels at every dial setting, so it is trained once per seed and its results stand for every
noise share. `--results_json` (on any dataset) also writes the table with every seed's metrics, the
command, the commit and the machine (the files under benchmarks/results/ that tests/test_results.py
checks RESULTS.md against); `--figure_from <that file> --figure <png>` draws a controlled sweep's
figure again.

On the Twitter sets (`--dataset twitter2015` or `twitter2017`, MNER; methods with an entity recognizer)
the figures are seqeval's entity-level micro precision, recall and F1 and the token accuracy.

With `--hold_out`, every method is also trained with those relations' rows removed from train (they
stay in its label set and in evaluation), and a table compares each held-out relation's precision,
recall and F1 with the same relation trained in and with chance (a uniform guess's recall, 1 / the
number of relations; a guesser's precision, the relation's share of the split): what a retrieval
method (ROC) finds from a description alone, where a classifier has nothing to go on. On a dataset
folder the table reads test when the runs have one (`--validation_from_train`, passed on to
train_accelerate.py: validation is then carved from train and the data's validation is test), else
validation; on the controlled benchmark, test at each noise share.

With `--ablations`, a method that declares parts it can remove (`ablations` on its model class) is
also trained with each part switched off (`--config_overrides <switch>=false`), one row per part.

Flags this script does not know are passed on to train_accelerate.py. Each run writes its model and
`eval_results.json` under `--output_dir/<method>-seed<seed>`; a run whose folder already holds the
results of the same command is reused (wherever the repository is checked out), so an interrupted
benchmark resumes where it stopped.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import provenance  # benchmarks/common.py
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from modeling_mre import METHODS, NER_METHODS
from modeling_mre.data.controlled import write_controlled_dataset


REPO = Path(__file__).resolve().parents[1]
NER_DATASETS = ("twitter2015", "twitter2017")
METRICS = (("accuracy", "Acc"), ("micro_precision", "P"), ("micro_recall", "R"), ("micro_f1", "F1"))
# The generator's ceilings, by what their reader sees (modeling_mre.data.controlled).
CEILINGS = {"text": "text only", "image": "image only", "unguided": "both, object not named", "both": "both"}


def parse_args():
    # No abbreviations: a training flag passed through must never be taken for one of ours.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=sorted(set(METHODS) | set(NER_METHODS)),
        default=None,
        help="Default: every method with a model for the dataset's task.",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument(
        "--ablations", action="store_true", help="Also train each method with each of its declared parts removed."
    )
    parser.add_argument(
        "--hold_out",
        nargs="+",
        default=None,
        metavar="RELATION",
        help="Also train without these relations' rows and compare them held out, trained in and at chance.",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="Runs at once (each writes its log to <run folder>/train.log when > 1)."
    )
    parser.add_argument("--num_train_epochs", type=int, default=None, help="Default: train_accelerate.py's.")
    parser.add_argument(
        "--dataset",
        choices=["mnre", "more", "controlled", "twitter2015", "twitter2017"],
        default="mnre",
        help="The layout of --data_dir, or the controlled benchmark (written by this script).",
    )
    controlled = parser.add_argument_group("controlled benchmark")
    controlled.add_argument("--noise_shares", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75])
    controlled.add_argument("--num_distractors", type=int, default=0)
    controlled.add_argument("--missing_share", type=float, default=0.0)
    controlled.add_argument("--fine_grained_pairs", type=int, default=0)
    controlled.add_argument("--num_candidate_objects", type=int, default=0)
    controlled.add_argument("--layout", choices=["mnre", "more"], default="mnre", help="MORE's: object tails.")
    controlled.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="Default: benchmarks/controlled_noise.png, or controlled_ablations.png with --ablations.",
    )
    parser.add_argument("--data_dir", type=str, default=None, help="A dataset folder; default: the embedded demo.")
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs" / "accuracy")
    parser.add_argument(
        "--results_json",
        type=Path,
        default=None,
        help="Also write the table, its per-seed metrics and their provenance here.",
    )
    parser.add_argument(
        "--figure_from",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="Only draw --figure again from a controlled sweep's result file (no training).",
    )
    parser.add_argument(
        "--launcher", type=str, default=sys.executable, help="Runs the training script, e.g. 'accelerate launch'."
    )
    parser.add_argument(
        "--note",
        type=str,
        default=None,
        help="Stored in --results_json, e.g. at which commit reused runs were trained.",
    )
    args, train_flags = parser.parse_known_args()
    registry = NER_METHODS if args.dataset in NER_DATASETS else METHODS
    args.methods = args.methods or sorted(registry)
    unknown = sorted(set(args.methods) - set(registry))
    if unknown:
        parser.error(f"--dataset {args.dataset} has no model for {unknown}; methods: {', '.join(sorted(registry))}")
    args.train_flags = [flag for flag in train_flags if flag != "--"]
    if args.hold_out and args.ablations:
        parser.error("--hold_out compares whole methods: not with --ablations")
    if args.ablations and "--config_overrides" in args.train_flags:
        parser.error("--ablations sets --config_overrides itself")
    if args.figure_from and args.figure is None:
        parser.error("--figure_from draws the figure again: say where with --figure")
    if args.figure is None:
        args.figure = REPO / "benchmarks" / ("controlled_ablations.png" if args.ablations else "controlled_noise.png")
    return args


@dataclass(frozen=True)
class Variant:
    """A row of the tables: a method, possibly with one of its parts switched off or relations held out of training."""

    label: str
    method: str
    switch: str | None = None
    hold_out: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        name = self.method if self.switch is None else f"{self.method}-no_{self.switch}"
        return f"{name}-heldout" if self.hold_out else name


def variants(args) -> list[Variant]:
    rows = []
    for method in args.methods:
        rows.append(Variant(method, method))
        if args.ablations:
            registry = NER_METHODS if args.dataset in NER_DATASETS else METHODS
            rows += [
                Variant(f"{method} without {part}", method, switch)
                for part, switch in registry[method].ablations.items()
            ]
        if args.hold_out:
            rows.append(
                Variant(f"{method}, {len(args.hold_out)} relations held out", method, hold_out=tuple(args.hold_out))
            )
    return rows


@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int
    data_dir: str | None
    dataset: str
    name: str


def train_command(args, run: Run, run_dir: Path) -> list[str]:
    command = [*args.launcher.split(), str(REPO / "train_accelerate.py"), "--method", run.variant.method]
    command += ["--seed", str(run.seed), "--output_dir", str(run_dir)]
    if run.data_dir is not None:
        command += [
            "--dataset",
            run.dataset,
            "--data_dir",
            str(Path(run.data_dir).resolve()),
        ]  # the same run from any working directory
    if args.num_train_epochs is not None:
        command += ["--num_train_epochs", str(args.num_train_epochs)]
    if run.variant.switch is not None:
        command += ["--config_overrides", f"{run.variant.switch}=false"]
    if run.variant.hold_out:
        command += ["--hold_out_relations", *run.variant.hold_out]
    return command + args.train_flags


def flags_of(command: list[str], args) -> list[str]:
    """A training command without the path of train_accelerate.py: a run is the same wherever the repository was checked out."""
    launcher = len(args.launcher.split())
    return command[:launcher] + command[launcher + 1 :]


def train(args, run: Run) -> dict:
    run_dir = args.output_dir / run.name
    command = train_command(args, run, run_dir)
    results_file, command_file = run_dir / "eval_results.json", run_dir / "benchmark_command.json"
    if (
        results_file.is_file()
        and command_file.is_file()
        and flags_of(json.loads(command_file.read_text()), args) == flags_of(command, args)
    ):
        print(f"{run.name}: reusing {results_file}", flush=True)
        return json.loads(results_file.read_text())
    print(f"{run.name}: {' '.join(command)}", flush=True)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Runs side by side each take their share of the cores: oversubscribed, a CPU step was 15x slower.
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    if args.jobs > 1:  # interleaved progress bars would be unreadable
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "w") as log:
            completed = subprocess.run(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
        if completed.returncode:
            raise RuntimeError(f"{run.name} failed (exit {completed.returncode}); see {run_dir / 'train.log'}")
    else:
        subprocess.run(command, cwd=REPO, env=environment, check=True)
    command_file.write_text(json.dumps(command))
    print(f"{run.name}: done", flush=True)
    return json.loads(results_file.read_text())


def train_all(args, runs: list[Run]) -> dict[Run, dict]:
    """Every run, `args.jobs` at a time; results by run."""
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return dict(zip(runs, pool.map(lambda run: train(args, run), runs)))


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def controlled_sweep(args) -> None:
    """Every method over seeds and noise shares on the controlled benchmark: a table and a figure."""
    origin = provenance()  # the code the runs train with, before anything can change it
    ceilings, runs = {}, {}  # noise -> [ceilings per seed]; (variant, noise, seed) -> Run
    rows = variants(args)
    for seed in args.seeds:
        for noise in args.noise_shares:
            data_dir = args.output_dir / "data" / f"noise{noise}-seed{seed}"
            info = write_controlled_dataset(
                data_dir,
                noise_share=noise,
                num_distractors=args.num_distractors,
                missing_share=args.missing_share,
                fine_grained_pairs=args.fine_grained_pairs,
                num_candidate_objects=args.num_candidate_objects,
                seed=seed,
                layout=args.layout,
            )
            ceilings.setdefault(noise, []).append(info["ceilings"]["test"])
            for variant in rows:
                text_only = METHODS[variant.method].visual_features is None
                trained_on = args.noise_shares[0] if text_only else noise
                runs[variant, noise, seed] = Run(
                    variant,
                    seed,
                    str(args.output_dir / "data" / f"noise{trained_on}-seed{seed}"),
                    args.layout,
                    f"{variant.name}-noise{trained_on}-seed{seed}",
                )
    outcomes = train_all(args, list(dict.fromkeys(runs.values())))  # text-only runs stand for every noise share
    # (variant, noise) -> [results per seed]
    results = {(v, n): [outcomes[runs[v, n, seed]] for seed in args.seeds] for v in rows for n in args.noise_shares}

    dials = (
        f"{args.layout.upper()} layout, {args.num_distractors} distractors, missing share {args.missing_share}, "
        f"{args.fine_grained_pairs} fine-grained pairs, {args.num_candidate_objects} candidate objects"
    )
    summary = {
        "kind": "controlled",
        "dials": dials,
        "seeds": args.seeds,
        "noise_shares": args.noise_shares,
        "ceilings": {str(noise): ceilings[noise] for noise in args.noise_shares},
        "rows": [
            {
                "label": variant.label,
                "runs": {str(n): [compact(r) for r in results[(variant, n)]] for n in args.noise_shares},
            }
            for variant in rows
        ],
    }
    summary["table"] = controlled_table(summary)
    print("\n" + summary["table"])
    if args.hold_out:
        held_out = []
        for noise in args.noise_shares:
            setting = f"controlled benchmark, noise share {noise}"
            held_out += ["", *held_out_table(args, rows, lambda v, noise=noise: results[(v, noise)], "test", setting)]
        summary["held_out_table"] = "\n".join(held_out[1:])
        print("\n" + summary["held_out_table"])

    controlled_figure(summary, args.figure)
    print(f"figure: {args.figure}")
    (args.output_dir / "controlled_summary.json").write_text(json.dumps(summary, indent=2))
    if args.results_json:
        args.results_json.parent.mkdir(parents=True, exist_ok=True)
        args.results_json.write_text(json.dumps({**origin, **summary}, indent=2) + "\n")
        print(f"results: {args.results_json}")


def controlled_figure(summary: dict, path: Path) -> None:
    """Test micro-F1 of every row against the noise share (bars at a single share), beside the ceilings."""
    figure = Figure(figsize=(6.5, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    noises = summary["noise_shares"]
    styles = {"both": ":", "unguided": (0, (5, 1, 1, 1)), "image": "-.", "text": "--"}
    ceiling_styles = [
        (reader, styles[reader]) for reader in CEILINGS if reader in summary["ceilings"][str(noises[0])][0]
    ]
    scores = {
        row["label"]: [[100 * r["test"]["micro_f1"] for r in row["runs"][str(n)]] for n in noises]
        for row in summary["rows"]
    }
    spread = lambda values: statistics.stdev(values) if len(values) > 1 else 0.0  # noqa: E731
    if len(noises) == 1:
        labels = list(scores)
        axes.bar(
            range(len(labels)),
            [statistics.mean(s[0]) for s in scores.values()],
            yerr=[spread(s[0]) for s in scores.values()],
            capsize=4,
            color="tab:blue",
            alpha=0.8,
        )
        for position, values in enumerate(scores.values()):  # each seed, as a mean hides a seed that never learned
            axes.scatter([position] * len(values[0]), values[0], color="black", s=12, zorder=3)
        axes.set_xticks(range(len(labels)), [textwrap.fill(label, 18) for label in labels], fontsize="small")
        for reader, style in ceiling_styles:
            value = 100 * statistics.mean(c[reader]["micro_f1"] for c in summary["ceilings"][str(noises[0])])
            axes.axhline(value, linestyle=style, color="grey", label=f"ceiling: {CEILINGS[reader]}")
        axes.set(ylabel="test micro-F1 (%)", ylim=(0, 102))
        axes.set_title(f"Controlled benchmark, noise share {noises[0]}\n({summary['dials']})", fontsize="small")
    else:
        for reader, style in ceiling_styles:
            values = [
                100 * statistics.mean(c[reader]["micro_f1"] for c in summary["ceilings"][str(n)]) for n in noises
            ]
            axes.plot(noises, values, linestyle=style, color="grey", label=f"ceiling: {CEILINGS[reader]}")
        for label, per_noise in scores.items():
            axes.errorbar(
                noises,
                [statistics.mean(s) for s in per_noise],
                yerr=[spread(s) for s in per_noise],
                marker="o",
                capsize=3,
                label=label,
            )
        axes.set(
            xlabel="share of posts with an unrelated image",
            ylabel="test micro-F1 (%)",
            ylim=(0, 102),
            title="Controlled benchmark: F1 against image noise",
        )
    axes.grid(alpha=0.3)
    axes.legend(
        fontsize="small", loc="upper right" if len(noises) == 1 else "lower left", ncols=2 if len(noises) == 1 else 1
    )
    figure.savefig(path, dpi=120)


def compact(result: dict) -> dict:
    """A run's results as a result file keeps them: its metrics, not its training log."""
    return {key: value for key, value in result.items() if key != "log_history"}


def controlled_table(summary: dict) -> str:
    """The controlled sweep's table (test micro-F1 and accuracy per noise share), from its summary alone."""
    lines = [
        f"## Controlled benchmark: test micro-F1 and accuracy against the noise share ({summary['dials']})",
        "",
        f"Seeds {', '.join(map(str, summary['seeds']))} (the generator's and the training's); mean ± standard deviation, in %. "
        "Ceilings: the best a model reading only the text, only the image, or both can reach on these test sets.",
        "",
        "| noise share | Method | test F1 | test Acc | best epochs |",
        "|---|---|---|---|---|",
    ]
    for noise in summary["noise_shares"]:
        ceilings = summary["ceilings"][str(noise)]
        for reader in [name for name in CEILINGS if name in ceilings[0]]:
            f1 = mean_std([c[reader]["micro_f1"] for c in ceilings])
            accuracy = mean_std([c[reader]["accuracy"] for c in ceilings])
            lines.append(f"| {noise} | ceiling: {CEILINGS[reader]} | {f1} | {accuracy} | |")
        for row in summary["rows"]:
            seed_runs = row["runs"][str(noise)]
            epochs = ", ".join(str(r["best_epoch"]) for r in seed_runs)
            lines.append(
                f"| {noise} | {row['label']} | {mean_std([r['test']['micro_f1'] for r in seed_runs])} | "
                f"{mean_std([r['test']['accuracy'] for r in seed_runs])} | {epochs} |"
            )
    return "\n".join(lines)


def held_out_table(args, rows: list[Variant], runs_of, split: str, setting: str) -> list[str]:
    """Each held-out relation's P / R / F1 on `split`: trained in, held out of training, and at chance."""
    lines = [
        f"### Relations held out of training: {', '.join(args.hold_out)} ({setting}; {split}; mean ± std over seeds, in %)",
        "",
        "| Method | relation | support | trained in: P / R / F1 | held out: P / R / F1 | chance: P / R |",
        "|---|---|---|---|---|---|",
    ]
    held_out_variants = {variant.method: variant for variant in rows if variant.hold_out}
    for variant in rows:
        if variant.hold_out:
            continue
        trained_in, held_out = runs_of(variant), runs_of(held_out_variants[variant.method])
        for relation in args.hold_out:

            def cells(runs, relation=relation):
                return " / ".join(
                    mean_std([r[split]["per_relation"][relation][key] for r in runs])
                    for key in ("precision", "recall", "f1")
                )

            reference = trained_in[0][split]
            support = reference["per_relation"][relation]["support"]
            chance = (
                f"{100 * support / reference['num_examples']:.2f} / {100 / len(reference['confusion_matrix']):.2f}"
            )
            lines.append(
                f"| {variant.method} | {relation} | {support} | {cells(trained_in)} | {cells(held_out)} | {chance} |"
            )
    return lines


def main():
    args = parse_args()
    if args.figure_from:
        return controlled_figure(json.loads(args.figure_from.read_text()), args.figure)
    if args.dataset == "controlled":
        return controlled_sweep(args)
    origin = provenance()  # the code the runs train with, before anything can change it
    rows = variants(args)
    runs = {
        (v, seed): Run(v, seed, args.data_dir, args.dataset, f"{v.name}-seed{seed}")
        for v in rows
        for seed in args.seeds
    }
    outcomes = train_all(args, list(runs.values()))
    results = {v.label: {seed: outcomes[runs[v, seed]] for seed in args.seeds} for v in rows}

    layout = args.dataset if args.dataset in NER_DATASETS else f"{args.dataset.upper()}-layout data"
    dataset = f"{layout} in {args.data_dir}" if args.data_dir else "the embedded demo (regenerated per seed)"
    carved = all("test" in r for by_seed in results.values() for r in by_seed.values()) and any(
        r.get("validation_from_train") for by_seed in results.values() for r in by_seed.values()
    )
    lines = [
        f"## Accuracy: {dataset}",
        "",
        f"Seeds {', '.join(map(str, args.seeds))}; mean ± standard deviation over seeds, in %. "
        "Validation is the selection split (best epoch by its micro-F1), so its figures are optimistic; "
        "test is evaluated once, at that epoch."
        + (
            " Here validation is carved from train (`--validation_from_train`) and test is the data's validation split."
            if carved
            else ""
        )
        + (
            " Entity-level (seqeval) micro figures; Acc is the token accuracy." if args.dataset in NER_DATASETS else ""
        ),
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
    tables = {"table": "\n".join(lines)}
    if args.hold_out:
        split = "test" if carved else "validation"
        held_out = held_out_table(args, rows, lambda v: list(results[v.label].values()), split, dataset)
        tables["held_out_table"] = "\n".join(held_out)
    print("\n" + "\n\n".join(tables.values()))
    summary = {method: {str(seed): compact(r) for seed, r in by_seed.items()} for method, by_seed in results.items()}
    (args.output_dir / "accuracy_summary.json").write_text(json.dumps({**tables, "runs": summary}, indent=2))
    if args.results_json:
        args.results_json.parent.mkdir(parents=True, exist_ok=True)
        kept = {"kind": "accuracy", "dataset": args.dataset, "seeds": args.seeds, "note": args.note}
        args.results_json.write_text(json.dumps({**origin, **kept, **tables, "runs": summary}, indent=2) + "\n")
        print(f"results: {args.results_json}")


if __name__ == "__main__":
    main()
