"""
Publishing on the Hugging Face Hub, one concern a module: `folders` (the Hub-ready model folder),
`cards` (model cards from a run's own results; templates in the repository's `hub_cards/`),
`figures` (their plots), `dataset_export` (datasets as parquet shards with their images embedded, and
their cards), `pushes` (uploads). Nothing here ships with a model: no model, config or processor file
imports it.
"""

from .cards import write_model_card
from .dataset_export import export_dataset
from .folders import save_hub_folder
from .pushes import model_repo_files, push_dataset_folder, push_model_folder

__all__ = [
    "export_dataset",
    "model_repo_files",
    "push_dataset_folder",
    "push_model_folder",
    "save_hub_folder",
    "write_model_card",
]
