"""
docs/adding-a-method.md, followed literally: the late-fusion fixture (tests/fixtures/late_fusion/) is
added to a copy of the package with the promised files and one registration, and then passes the
whole contract suite and trains with `train_accelerate.py --method late_fusion`.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modeling_mre


REPO = Path(__file__).parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "late_fusion"
DOC = REPO / "docs" / "adding-a-method.md"
REGISTRATION = "\nfrom .modeling_late_fusion import LateFusionForRelationExtraction\n\nregister_method(LateFusionForRelationExtraction)\n"


def test_the_guide_shows_the_fixture_code():
    doc = DOC.read_text()
    for name in ("configuration_late_fusion.py", "modeling_late_fusion.py", "late_fusion.md", "late_fusion_notes.md"):
        # Each file appears under its path in the guide, whole and unchanged.
        match = re.search(rf"`[^`]*/{re.escape(name)}`[^\n]*:\n\n```\w+\n(.*?)\n```", doc, re.DOTALL)
        assert match, f"{name} is not shown in {DOC.name}"
        assert match.group(1) == (FIXTURE / name).read_text().rstrip(), f"{DOC.name} shows another {name}"
    assert REGISTRATION.strip().splitlines()[-1] in doc


@pytest.fixture(scope="module")
def package_with_late_fusion(tmp_path_factory) -> Path:
    """A copy of modeling_mre with the guide's four files and its registration; the folder to put on PYTHONPATH."""
    root = tmp_path_factory.mktemp("kit")
    package = root / "modeling_mre"
    shutil.copytree(Path(modeling_mre.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    # The card templates as the wheel installs them: the repository's hub_cards/ as modeling_mre.hub_cards.
    shutil.copytree(REPO / "hub_cards", package / "hub_cards", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("configuration_late_fusion.py", "modeling_late_fusion.py"):
        shutil.copy(FIXTURE / name, package / "models" / name)
    for name in ("late_fusion.md", "late_fusion_notes.md"):
        shutil.copy(FIXTURE / name, package / "hub_cards" / "methods" / name)
    with open(package / "models" / "__init__.py", "a") as init:
        init.write(REGISTRATION)
    return root


def run(command: list[str], package_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONSAFEPATH: the repository (the script's folder, or the working directory) must not shadow the copy.
    env = {**os.environ, "PYTHONPATH": str(package_root), "PYTHONSAFEPATH": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def test_the_added_method_passes_the_contract_suite(package_with_late_fusion):
    where = run(
        [sys.executable, "-c", "import modeling_mre; print(modeling_mre.__file__)"], package_with_late_fusion, REPO
    )
    assert where.stdout.strip().startswith(str(package_with_late_fusion)), where.stdout + where.stderr
    completed = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_contract.py",
            "-k",
            "late_fusion",
        ],
        package_with_late_fusion,
        REPO,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    num_contract_tests = len(
        [name for name in dir(__import__("method_contract").MethodContract) if name.startswith("test_")]
    )
    assert f"{num_contract_tests} passed" in completed.stdout, completed.stdout[-2000:]


def test_the_added_method_trains_with_the_script(package_with_late_fusion, tmp_path):
    completed = run(
        [
            sys.executable,
            str(REPO / "train_accelerate.py"),
            "--method",
            "late_fusion",
            "--output_dir",
            "run",
            "--num_train_epochs",
            "1",
            "--max_train_samples",
            "32",
            "--max_eval_samples",
            "16",
        ],
        package_with_late_fusion,
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Late fusion (the worked example of modeling_mre's method kit)" in card
    assert {"modeling_late_fusion.py", "configuration_late_fusion.py", "visual_mre.py"} <= {
        p.name for p in (tmp_path / "run").glob("*.py")
    }
