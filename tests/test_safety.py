"""Nothing unsafe is loaded, and the remote-code files only define classes when imported."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import torch

import modeling_mre
from modeling_mre import MMIBConfig, MMIBForRelationExtraction
from modeling_mre.hub.folders import save_hub_folder


REPO = Path(__file__).parents[1]
# What runs on users' data; tests may exec their own documentation snippets.
PYTHON_FILES = sorted(
    p for p in REPO.rglob("*.py") if not {".venv", "build", "tests"} & set(p.relative_to(REPO).parts)
)


def test_no_eval_no_pickle_loads_and_safe_torch_load():
    offences = []
    for path in PYTHON_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![.\w])(eval|exec)\(", code) or re.search(r"pickle\.loads?\(|marshal\.loads?\(", code):
                offences.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                offences.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offences, "\n".join(offences)


# Imports the remote-code modules with an audit hook that records file writes, network and processes.
IMPORT_AUDIT = """
import importlib, json, os, sys
import numpy, PIL.Image, torch, transformers, huggingface_hub.dataclasses  # their own imports are not under test
watched = []
def hook(event, args):
    if event == "open":
        mode, flags = args[1], args[2]
        writes = (mode and any(c in mode for c in "wax+")) or (flags is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            watched.append(f"{event} {args[0]}")
    elif event.startswith(("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "urllib.")):
        watched.append(f"{event} {str(args)[:120]}")
sys.addaudithook(hook)
sys.path.insert(0, os.getcwd())  # the saved folder, imported as the flat package "model"
for name in sys.argv[1:]:
    importlib.import_module("model." + name)
print(json.dumps(watched))
"""


def test_remote_code_modules_only_define_classes(tmp_path, processor):
    config = MMIBConfig(
        text_config=dict(
            model_type="bert",
            vocab_size=len(processor.tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=20,
        ),
        vision_config=dict(model_type="mobilenet_v2", image_size=32, depth_multiplier=0.35),
        num_labels=2,
        num_attention_heads=2,
        head_start_token_id=processor.head_start_token_id,
        tail_start_token_id=processor.tail_start_token_id,
    )
    written = save_hub_folder(MMIBForRelationExtraction(config).eval(), processor, tmp_path / "model")
    modules = sorted(name[:-3] for name in written if name.endswith(".py"))
    assert {"configuration_mmib", "modeling_mmib", "processing_mre", "pipeline_mre", "images_mre"} <= set(modules)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in written)
    assert "model.safetensors" in written

    completed = subprocess.run(
        [sys.executable, "-B", "-c", IMPORT_AUDIT, *modules],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []


# What the shipped modules may import: the standard library, the stack every transformers model needs
# (huggingface_hub is transformers' own dependency: its @strict validates configs), and each other.
SHIPPED_IMPORTS = {"torch", "transformers", "huggingface_hub", "PIL", "numpy"}


def test_shipped_modules_import_only_torch_transformers_pil_and_each_other():
    offences = []
    for path in sorted((Path(modeling_mre.__file__).parent / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1 or node.module is None:  # remote code is flat: `from .module import Name`
                    offences.append(f"{path.name}: from {'.' * node.level}{node.module or ''} import ...")
                continue
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                top = name.split(".")[0]
                if top not in SHIPPED_IMPORTS and top not in sys.stdlib_module_names:
                    offences.append(f"{path.name}: import {name}")
    assert not offences, offences


def test_mnre_crop_index_loads_without_unrestricted_pickle(mnre_dir):
    crops = torch.load(mnre_dir / "aux" / "mre_val_dict.pth", weights_only=True)
    assert len(crops) == 1624 and all(isinstance(name, str) for names in crops.values() for name in names)
