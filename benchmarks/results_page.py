#!/usr/bin/env python
"""
The headline of benchmarks/RESULTS.md and of the README's Benchmarks section: every method's current
figure on every dataset, and every method's speed against its backbone floor, rendered from the result
files under benchmarks/results/ and nothing else.

    python benchmarks/results_page.py           # rewrite the blocks between the headline markers
    python benchmarks/results_page.py --check   # exit 1 when a block differs from what the files give

Accuracy rows come from accuracy.py's result files (`kind` "accuracy" or "controlled"), one per method:
the rows of ablations and held-out relations stay in the files' own sections. Speed rows come from
speed.py's files, one set per machine. Where several files measure one method on one dataset, the newest
stands (by `date`, then number of seeds, then path). A method without a file says so rather than quote a
figure from HISTORY.md. Committing a new result file and rerunning this command updates the page.
"""

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from accuracy import NER_DATASETS, controlled_table, mean_std  # benchmarks/accuracy.py
from image_weight import format_table  # benchmarks/image_weight.py

from modeling_mre import METHODS, NER_METHODS


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGES = (REPO / "benchmarks" / "RESULTS.md", REPO / "README.md")
BEGIN = "<!-- headline: rendered by `python benchmarks/results_page.py` from benchmarks/results/; edit the files, not this block -->"
END = "<!-- end of headline -->"
# What train_accelerate.py trains with when the recorded command names nothing else (its defaults since
# the first commit); a file can only say what its command passed on.
DEFAULT_EPOCHS = 3
EMBEDDED_BACKBONES = "MiniLM-L6 + MobileNetV2"
# Real datasets first, each listed even without a file; controlled settings and the demo follow as files give them.
TASKS = {
    "Relation extraction": (METHODS, ("mnre", "more")),
    "Multimodal NER": (NER_METHODS, NER_DATASETS),
}
DATASET_NAMES = {"mnre": "MNRE", "more": "MORE", "twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}


def render(summary: dict) -> str | None:
    """The table a result file's own data gives, by the script that wrote it (None: the script keeps only its text)."""
    if summary.get("kind") == "controlled":
        return controlled_table(summary)
    if summary.get("kind") == "image_weight":
        return format_table(summary["runs"])
    return None


def row(*cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def link(path: Path, page: Path, text: str) -> str:
    """A link to `path` that works from `page`."""
    return f"[{text}]({os.path.relpath(path, page.parent)})"


def result_files(folder: Path = RESULTS) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in sorted(folder.rglob("*.json"))]


def written_by(summary: dict) -> str:
    """The benchmark script a result file's recorded command ran (`python benchmarks/<script>.py ...`)."""
    return Path(summary["command"].split()[1]).name


def flag(command: str, name: str) -> str | None:
    """A flag's value in a recorded command (whose words were joined unquoted, so only single-word values)."""
    words = command.split()
    return words[words.index(name) + 1] if name in words else None


@dataclass(frozen=True)
class Figure:
    """One headline row: a method's metric over seeds on one dataset, and how it was obtained."""

    dataset: str
    method: str
    metric: str
    values: tuple[float, ...]
    epochs: str
    backbone: str
    device: str
    date: str
    path: Path

    @property
    def rank(self) -> tuple:
        return self.date, len(self.values), str(self.path)


def training(summary: dict, runs: list[dict]) -> dict:
    """The epochs and backbones of a recorded accuracy.py command, as train_accelerate.py resolves them."""
    command = summary["command"]
    epochs = flag(command, "--num_train_epochs") or DEFAULT_EPOCHS
    backbones = [flag(command, "--text_backbone"), flag(command, "--vision_backbone")]
    return {
        "epochs": f"{epochs} (best {', '.join(str(r['best_epoch']) for r in runs)})",
        "backbone": " + ".join(filter(None, backbones)) if any(backbones) else EMBEDDED_BACKBONES,
        "device": summary["device"],
        "date": summary["date"],
    }


def controlled_setting(summary: dict, noise: str) -> str:
    """A controlled sweep's dataset: its noise share and the dials it turned (those at zero left out)."""
    dials = [dial for dial in summary["dials"].split(", ") if not re.match(r"(0 |.* 0\.0$)", dial)]
    return f"controlled, noise {noise}, " + ", ".join(dials)


def figures(files: list[tuple[Path, dict]]) -> list[Figure]:
    """Every method's figure in every accuracy.py result file (ablations and held-out variants left out)."""
    found = []
    for path, summary in files:
        if summary.get("kind") == "accuracy":
            dataset = summary["dataset"] if flag(summary["command"], "--data_dir") else "demo"
            registry = NER_METHODS if dataset in NER_DATASETS else METHODS
            for method, by_seed in summary["runs"].items():
                runs = list(by_seed.values())
                if method not in registry:
                    continue
                split = "test" if all("test" in r for r in runs) else "validation"
                carved = split == "test" and any(r.get("validation_from_train") for r in runs)
                metric = "entity F1" if dataset in NER_DATASETS else "micro-F1"
                metric += f", {split}" + (" (the data's validation; selection carved from train)" if carved else "")
                values = tuple(r[split]["micro_f1"] for r in runs)
                found.append(Figure(dataset, method, metric, values, path=path, **training(summary, runs)))
        elif summary.get("kind") == "controlled":
            for noise in map(str, summary["noise_shares"]):
                dataset = controlled_setting(summary, noise)
                ceilings = summary["ceilings"][noise]
                found.append(
                    Figure(
                        dataset,
                        "ceiling: reads both",
                        "micro-F1, test",
                        tuple(c["both"]["micro_f1"] for c in ceilings),
                        "",
                        "",
                        "",
                        summary["date"],
                        path,
                    )
                )
                for variant in summary["rows"]:
                    if variant["label"] in METHODS:
                        runs = variant["runs"][noise]
                        values = tuple(r["test"]["micro_f1"] for r in runs)
                        found.append(
                            Figure(
                                dataset,
                                variant["label"],
                                "micro-F1, test",
                                values,
                                path=path,
                                **training(summary, runs),
                            )
                        )
    return found


def current(found: list[Figure]) -> dict[tuple[str, str], Figure]:
    """The newest figure of each (dataset, method)."""
    chosen = {}
    for figure in sorted(found, key=lambda figure: figure.rank):
        chosen[figure.dataset, figure.method] = figure
    return chosen


def accuracy_tables(files: list[tuple[Path, dict]], page: Path, folder: Path) -> list[str]:
    chosen = current(figures(files))
    history = link(folder.parent / "HISTORY.md", page, "HISTORY.md")
    lines = []
    for task, (registry, datasets) in TASKS.items():
        measured = [d for d, _ in chosen if d not in datasets and (d in NER_DATASETS) == (registry is NER_METHODS)]
        lines += [
            "",
            f"**{task}** (mean ± standard deviation over seeds, in %)",
            "",
            "| dataset | method | metric | mean ± std | seeds | epochs (best per seed) | backbones | device | date | file in benchmarks/results/ |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for dataset in [*datasets, *sorted(dict.fromkeys(measured))]:
            name = DATASET_NAMES.get(dataset, dataset)
            missing = []
            for method in [*registry, "ceiling: reads both"]:
                figure = chosen.get((dataset, method))
                if figure is None:
                    missing += [method] if method in registry else []
                    continue
                lines.append(
                    row(
                        name,
                        method,
                        figure.metric,
                        mean_std(list(figure.values)),
                        len(figure.values),
                        figure.epochs,
                        figure.backbone,
                        figure.device,
                        figure.date,
                        link(figure.path, page, figure.path.relative_to(folder)),
                    )
                )
            if missing:
                lines.append(row(name, ", ".join(missing), f"no result file (any older figure: {history})", *[""] * 7))
    return lines


def speed_table(files: list[tuple[Path, dict]], page: Path, folder: Path) -> list[str]:
    """Each method's training and inference time over its floor's, from the newest speed.py file of each machine."""
    from speed import time_ratio  # benchmarks/speed.py; imported here as it loads every model class

    newest = {}
    for path, summary in files:
        if written_by(summary) == "speed.py":
            best = newest.get(summary["device"])
            if best is None or (summary["date"], str(path)) > (best[1]["date"], str(best[0])):
                newest[summary["device"]] = path, summary
    lines = [
        "",
        "**Speed against the backbone floor** (time ÷ the floor's time on the same batches, median over repeats; "
        "the floor is the text encoder's step, plus the frozen vision encoder's forward from pixels; without pixels "
        "an image method reads cached image features)",
        "",
        "| method | training | training from pixels | inference | inference from pixels | repeats | device | date | file in benchmarks/results/ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for device, (path, summary) in sorted(newest.items()):
        times = summary["seconds"]
        for label, name, floor in [(m, m, "floor") for m in METHODS] + [
            (f"{m} (NER)", f"ner_{m}", "ner_floor") for m in NER_METHODS
        ]:
            if f"{name}_train" not in times:
                lines.append(row(label, "no result file", *[""] * 7))
                continue
            cells = []
            for phase in ("train", "inference"):
                text_floor = [f"{floor}_text_{phase}"]
                cells.append(f"{time_ratio(times, [f'{name}_{phase}'], text_floor):.2f}x")
                pixels = f"{name}_{phase}_pixels"
                cells.append(
                    f"{time_ratio(times, [pixels], [*text_floor, f'{floor}_vision_{phase}']):.2f}x"
                    if pixels in times
                    else ""
                )
            repeats = len(times[f"{name}_train"])
            lines.append(
                row(label, *cells, repeats, device, summary["date"], link(path, page, path.relative_to(folder)))
            )
    return lines


def headline(page: Path, folder: Path = RESULTS) -> str:
    """The block for `page` (its links relative to it) from the result files under `folder`."""
    files = result_files(folder)
    return "\n".join([BEGIN, *accuracy_tables(files, page, folder), *speed_table(files, page, folder), "", END])


def with_headline(text: str, block: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[end:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Change nothing; exit 1 if a page's block is stale.")
    args = parser.parse_args()
    stale = []
    for page in PAGES:
        text, block = page.read_text(), headline(page)
        if with_headline(text, block) != text:
            stale.append(page)
            if not args.check:
                page.write_text(with_headline(text, block))
    for page in stale:
        print(f"{page.relative_to(REPO)}: {'stale' if args.check else 'rewritten'}")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
