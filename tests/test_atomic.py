"""One atomic folder writer for checkpoints, the best model, the final model folder, demo data and backbones."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from modeling_mre.atomic import atomic_folder, recover_folder
from modeling_mre.training import complete_checkpoints, find_checkpoint, rotate_checkpoints


def write(folder, files):
    for name, text in files.items():
        (folder / name).write_text(text)


def test_the_new_folder_replaces_the_old_and_keeps_other_entries(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write(folder, {"model.safetensors": "old", "stale.py": "old"})
    (folder / "step_4").mkdir()
    (folder / "step_4" / "optimizer.bin").write_text("state")
    with atomic_folder(folder, keep_other_entries=True) as staging:
        write(staging, {"model.safetensors": "new"})
        assert (folder / "model.safetensors").read_text() == "old"  # readers see the old folder meanwhile
    assert (folder / "model.safetensors").read_text() == "new"
    assert (folder / "step_4" / "optimizer.bin").read_text() == "state"  # a checkpoint is carried over
    assert (folder / "stale.py").exists()  # kept too: other entries are the run's, not the model's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing left beside it

    with atomic_folder(folder) as staging:
        write(staging, {"model.safetensors": "newer"})
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]


def test_an_error_inside_leaves_the_old_folder(tmp_path):
    folder = tmp_path / "best_model"
    folder.mkdir()
    write(folder, {"model.safetensors": "old"})
    with pytest.raises(RuntimeError):
        with atomic_folder(folder) as staging:
            write(staging, {"model.safetensors": "half"})
            raise RuntimeError("disk full")
    assert (folder / "model.safetensors").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]


KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from modeling_mre import atomic
replace = os.replace
def replace_then_die(source, target):
    replace(source, target)
    if Path(target).name.endswith(".old"):  # the old folder is aside, the new one not yet in place
        os.kill(os.getpid(), signal.SIGKILL)
atomic.os.replace = replace_then_die
with atomic.atomic_folder(sys.argv[1]) as staging:
    (staging / "model.safetensors").write_text("new")
"""


def test_a_kill_between_the_renames_is_undone(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write(folder, {"model.safetensors": "old"})
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_BETWEEN_RENAMES), str(folder)])
    assert completed.returncode == -signal.SIGKILL
    assert not folder.exists()  # the worst moment: only the old folder (aside) and the new one (staging)
    recover_folder(folder)
    assert (folder / "model.safetensors").read_text() == "old"
    with atomic_folder(folder) as staging:  # and the next write proceeds normally
        write(staging, {"model.safetensors": "new"})
    assert (folder / "model.safetensors").read_text() == "new"


def checkpoint(output_dir, name, step):
    folder = output_dir / name
    folder.mkdir()
    (folder / "training_state.json").write_text(f'{{"completed_steps": {step}}}')
    return folder


def test_checkpoints_total_limit_keeps_the_most_advanced(tmp_path):
    for name, step in (("step_2", 2), ("step_4", 4), ("epoch_1", 5), ("step_10", 10)):
        checkpoint(tmp_path, name, step)
    (tmp_path / "step_12").mkdir()  # incomplete: neither counted nor deleted
    removed = rotate_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["step_2", "step_4"]
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["epoch_1", "step_10"]
    assert (tmp_path / "step_12").exists()
    assert rotate_checkpoints(tmp_path, None) == []


def test_resuming_finds_a_checkpoint_replaced_when_the_kill_came(tmp_path):
    checkpoint(tmp_path, "step_2", 2)
    os.replace(tmp_path / "step_2", tmp_path / ".step_2.old")  # killed between the renames
    assert find_checkpoint(tmp_path, "latest") == tmp_path / "step_2"
