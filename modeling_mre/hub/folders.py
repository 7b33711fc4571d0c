"""Write a trained model as a folder that loads with `trust_remote_code=True` where modeling_mre is not installed."""

import os
from pathlib import Path

from ..atomic import atomic_folder
from ..models import MREPreTrainedModel, MREProcessor


def save_hub_folder(model: MREPreTrainedModel, processor: MREProcessor, output_dir: str | os.PathLike) -> list[str]:
    """
    `model.save_pretrained` and `processor.save_pretrained` (weights, config with `auto_map` and
    `custom_pipelines`, processor files, the remote-code modules) into `output_dir` through
    `modeling_mre.atomic.atomic_folder`: a reader or a kill never sees old and new model files mixed;
    the folder's other entries (checkpoints, results) are kept. Returns the names written.
    """
    with atomic_folder(output_dir, keep_other_entries=True) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        written = sorted(path.name for path in Path(staging).iterdir())
    return written
