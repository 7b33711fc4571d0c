"""The tables of benchmarks/RESULTS.md and the README's headline say what the result files say."""

import json
import shutil
from pathlib import Path

import pytest
from results_page import BEGIN, END, PAGES, RESULTS, headline, render  # benchmarks/results_page.py


RESULTS_MD = Path(__file__).parents[1] / "benchmarks" / "RESULTS.md"


# Every result file that carries a table: a controlled sweep's and an image-weight analysis's ("table"), speed.py's ("markdown").
TABLED = sorted(path for path in RESULTS.rglob("*.json") if {"table", "markdown"} & set(json.loads(path.read_text())))


def test_there_are_tabled_result_files():
    kinds = {json.loads(path.read_text()).get("kind") for path in TABLED}
    assert {"controlled", "image_weight"} <= kinds


@pytest.mark.parametrize("path", TABLED, ids=lambda path: str(path.relative_to(RESULTS)))
def test_each_table_is_its_files_and_stands_in_results_md(path):
    summary = json.loads(path.read_text())
    for field in ("command", "commit", "device", "date"):
        assert summary[field], field
    assert not summary["commit"].endswith("-dirty"), "results of code that was never committed"
    table = summary.get("table") or summary["markdown"]
    rendered = render(summary)
    if rendered is not None:
        assert rendered == table
    # The section's header line is the script's; each table's rows must stand in RESULTS.md as rendered.
    results_md = RESULTS_MD.read_text()
    for kept in (table, summary.get("held_out_table") or ""):
        for rows in table_blocks(kept):
            assert rows in results_md, f"RESULTS.md does not hold the tables of {path.name} as its data renders them"


def table_blocks(text: str) -> list[str]:
    """Each markdown table of `text`: its consecutive `|` lines."""
    blocks, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_page_opens_with_the_headline_its_result_files_give(page):
    text = page.read_text()
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert block == headline(page), f"{page.name}: rerun python benchmarks/results_page.py"


def test_a_new_result_file_updates_the_headline_and_a_missing_one_is_said(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    shutil.copytree(RESULTS, results)
    page = tmp_path / "benchmarks" / "RESULTS.md"
    before = headline(page, results)
    assert "| Twitter-2017 | mmib | entity F1, validation | 61.65 ± 0.60 | 3 |" in before
    assert "| MORE | baseline, mmib, wmajl, dfma, roc | no result file" in before

    newer = json.loads((results / "mner" / "twitter2017.json").read_text())
    newer["date"] = "2999-01-01"
    newer["device"] = "NVIDIA H100 80GB HBM3"
    del newer["runs"]["baseline"]
    for seed, f1 in zip(("42", "43"), (0.70, 0.72)):
        newer["runs"]["mmib"][seed]["validation"]["micro_f1"] = f1
    del newer["runs"]["mmib"]["44"]
    (results / "mner" / "rerun.json").write_text(json.dumps(newer))
    after = headline(page, results)
    # The newer file stands for MMIB only; the baseline keeps its figure from the older one.
    assert "| Twitter-2017 | mmib | entity F1, validation | 71.00 ± 1.41 | 2 |" in after
    assert "NVIDIA H100 80GB HBM3 | 2999-01-01 | [mner/rerun.json](results/mner/rerun.json) |" in after
    assert "| Twitter-2017 | baseline | entity F1, validation | 59.87 ± 1.79 | 3 |" in after


def test_the_relation_retrieval_table_stands_in_results_md_as_its_files_give_it():
    from retrieval_table import FOLDER, table

    files = sorted(FOLDER.glob("*.json"))
    assert files, f"no result file under {FOLDER}"
    for path in files:
        assert not json.loads(path.read_text())["commit"].endswith("-dirty"), f"{path.name}: uncommitted code"
    assert table() in RESULTS_MD.read_text(), "rerun python benchmarks/retrieval_table.py into RESULTS.md"
