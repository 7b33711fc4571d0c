"""The README's repository layout names files and folders that exist where it places them."""

import re
import subprocess
from pathlib import Path


REPO = Path(__file__).parents[1]
NAME_COLUMN = 23  # where the tree's descriptions start: anything indented this far continues one


def layout_entries() -> list[str]:
    """Each path the tree names in its first column, joined to its parents by indentation."""
    readme = (REPO / "README.md").read_text()
    tree = re.search(r"## Repository layout\n\n```\n(.*?)```", readme, re.S).group(1)
    parents, entries = [], []
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= NAME_COLUMN:
            continue
        name = line.split()[0].rstrip(",")
        depth = indent // 2
        parents = parents[:depth]
        if name.endswith("/"):
            parents.append(name)
        if "<" not in name:  # configuration_<method>.py stands for every method's file
            entries.append("".join(parents[:depth]) + name)
    return entries


def test_every_entry_of_the_readme_layout_exists_in_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    folders = {str(Path(path).parent) + "/" for path in tracked} | {
        "/".join(path.split("/")[:i]) + "/" for path in tracked for i in range(1, path.count("/") + 1)
    }
    entries = layout_entries()
    assert "modeling_mre/metrics.py" in entries and "hub_cards/" in entries
    missing = [entry for entry in entries if entry not in folders and entry not in tracked]
    assert not missing, f"README's layout names what the repository does not hold there: {missing}"
