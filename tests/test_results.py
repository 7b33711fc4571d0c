"""The tables of benchmarks/RESULTS.md that come from result files say what their files say."""

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).parents[1] / "benchmarks" / "results"
RESULTS_MD = Path(__file__).parents[1] / "benchmarks" / "RESULTS.md"


def render(summary: dict) -> str | None:
    """The table a result file's own data gives, by the script that wrote it (None: the script keeps only its text)."""
    if summary.get("kind") == "controlled":
        from accuracy import controlled_table

        return controlled_table(summary)
    if summary.get("kind") == "image_weight":
        from image_weight import format_table

        return format_table(summary["runs"])
    return None


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
