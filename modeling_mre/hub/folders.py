"""Write a trained model as a folder that loads with `trust_remote_code=True` where modeling_mre is not installed."""

import os
from pathlib import Path

from transformers import pipeline

from ..atomic import atomic_folder
from ..models import TASK_PIPELINES, MREPreTrainedModel, MREProcessor


def write_hub_folder(model: MREPreTrainedModel, processor: MREProcessor, folder: str | os.PathLike) -> None:
    """
    Weights (safetensors), config with `auto_map` and `custom_pipelines` (the pipeline of the model's
    task), processor files and the remote-code modules.
    """
    auto_map = getattr(model.config, "auto_map", None) or {}
    processor_class = type(processor)
    processor_module = processor_class.__module__.rsplit(".", 1)[-1]
    model.config.auto_map = {**auto_map, "AutoProcessor": f"{processor_module}.{processor_class.__name__}"}
    extractor = pipeline(TASK_PIPELINES[model.task], model=model, processor=processor)
    extractor.save_pretrained(folder)  # model, config (custom_pipelines) and pipeline_mre.py
    processor.save_pretrained(folder)  # Pipeline.save_pretrained leaves the processor out


def save_hub_folder(model: MREPreTrainedModel, processor: MREProcessor, output_dir: str | os.PathLike) -> list[str]:
    """
    `write_hub_folder` into `output_dir` through `modeling_mre.atomic.atomic_folder`: a reader or a
    kill never sees old and new model files mixed; the folder's other entries (checkpoints, results)
    are kept. Returns the names written.
    """
    with atomic_folder(output_dir, keep_other_entries=True) as staging:
        write_hub_folder(model, processor, staging)
        written = sorted(path.name for path in Path(staging).iterdir())
    return written
