"""Write a trained model as a folder that loads with `trust_remote_code=True` where modeling_mre is not installed."""

import os
import shutil
import tempfile
from pathlib import Path

from transformers import pipeline

from . import PIPELINE_TASK
from .modeling_mre import MREPreTrainedModel
from .processing_mre import MREProcessor


def save_hub_folder(model: MREPreTrainedModel, processor: MREProcessor, output_dir: str | os.PathLike) -> list[str]:
    """
    Save weights (safetensors), config with `auto_map` and `custom_pipelines`, processor files and
    the remote-code modules into `output_dir`, and return the names written.

    Everything is first written to a temporary sibling folder and then moved in file by file with
    `os.replace`, so a reader never sees a truncated file; other files in `output_dir` (checkpoints,
    results) are left alone.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".export-"))
    try:
        auto_map = getattr(model.config, "auto_map", None) or {}
        model.config.auto_map = {**auto_map, "AutoProcessor": "processing_mre.MREProcessor"}
        extractor = pipeline(PIPELINE_TASK, model=model, processor=processor)
        extractor.save_pretrained(staging)  # model, config (custom_pipelines) and pipeline_mre.py
        processor.save_pretrained(staging)  # Pipeline.save_pretrained leaves the processor out
        written = sorted(path.name for path in staging.iterdir())
        for name in written:
            os.replace(staging / name, output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
