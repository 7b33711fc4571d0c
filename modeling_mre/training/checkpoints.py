"""Accelerate checkpoints written atomically, found again for resuming, and rotated."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.trainer_utils import load_sharded_checkpoint
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from ..atomic import atomic_folder, recover_folder


TRAINING_STATE_FILE = "training_state.json"


def save_checkpoint(accelerator, folder: Path, training_state: dict, total_limit: int | None = None) -> None:
    """
    `accelerator.save_state` plus the loop's own state, in a folder that appears only once complete;
    then at most `total_limit` complete checkpoints are kept beside it (`rotate_checkpoints`).
    """
    with atomic_folder(
        folder, is_main_process=accelerator.is_main_process, wait_for_everyone=accelerator.wait_for_everyone
    ) as staging:
        accelerator.save_state(str(staging))
        if accelerator.is_main_process:
            (staging / TRAINING_STATE_FILE).write_text(json.dumps(training_state, indent=2))
    if accelerator.is_main_process:
        rotate_checkpoints(folder.parent, total_limit)


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints whose write finished (renamed into place with their state), oldest first."""
    folders = [*output_dir.glob("step_*"), *output_dir.glob("epoch_*")]
    finished = [p for p in folders if (p / TRAINING_STATE_FILE).is_file()]
    return sorted(finished, key=lambda p: json.loads((p / TRAINING_STATE_FILE).read_text())["completed_steps"])


def find_checkpoint(output_dir: Path, requested: str) -> Path:
    """The checkpoint to resume from: a folder, or "latest" (the most advanced complete one in `output_dir`)."""
    for leftover in output_dir.glob(".*.old"):  # a checkpoint replaced when a kill came
        recover_folder(output_dir / leftover.name.removeprefix(".").removesuffix(".old"))
    if requested == "latest":
        checkpoints = complete_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"no complete checkpoint in {output_dir} to resume from")
        return checkpoints[-1]
    checkpoint = Path(requested)
    if not (checkpoint / TRAINING_STATE_FILE).is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no {TRAINING_STATE_FILE})")
    return checkpoint


def rotate_checkpoints(output_dir: Path, limit: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit` (as transformers' `save_total_limit`); returns them."""
    if limit is None:
        return []
    checkpoints = complete_checkpoints(output_dir)
    removed = checkpoints[: max(len(checkpoints) - limit, 0)]
    for checkpoint in removed:
        shutil.rmtree(checkpoint)
    return removed


def check_finite(accelerator, loss: torch.Tensor, state: dict, output_dir: Path) -> None:
    """Stop before a NaN or infinite loss reaches the weights, on every process at once."""
    finite = accelerator.gather(torch.isfinite(loss.detach()).reshape(1)).all()
    if not finite:
        checkpoints = complete_checkpoints(output_dir)
        kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was written yet"
        raise FloatingPointError(
            f"non-finite loss ({loss.item()}) at step {state['completed_steps'] + 1}, epoch {state['epoch'] + 1}: "
            f"training stopped before updating the weights; {kept}. Lower --learning_rate/--head_learning_rate "
            "or check the inputs of this batch."
        )


def load_saved_weights(model: torch.nn.Module, folder: Path) -> None:
    """
    Load into `model` the weights `accelerator.save_model` wrote to `folder`: one `model.safetensors`,
    or the shards its index names (a model over `max_shard_size`), safetensors only.
    """
    if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        load_sharded_checkpoint(model, folder, strict=True, prefer_safe=True)
    else:
        model.load_state_dict(load_file(folder / SAFE_WEIGHTS_NAME))
