"""
Publishing on the Hugging Face Hub: model folders, cards rendered from a run's own results (their
templates in the repository's `hub_cards/`), uploads, and datasets as parquet shards with their images embedded.
Nothing here ships with a model: no model, config or processor file imports it.
"""

from .folders import save_hub_folder
from .publishing import (
    export_dataset,
    model_repo_files,
    push_dataset_folder,
    push_model_folder,
    write_model_card,
)

__all__ = [
    "export_dataset",
    "model_repo_files",
    "push_dataset_folder",
    "push_model_folder",
    "save_hub_folder",
    "write_model_card",
]
