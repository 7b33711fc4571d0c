"""
Publishing on the Hugging Face Hub, one concern a module: `folders` (the Hub-ready model folder),
`cards` (model cards from a run's own results; templates in the repository's `hub_cards/`),
`figures` (their plots), `dataset_card` (dataset cards), `pushes` (uploads: a model folder in one
commit, a dataset through `DatasetDict.push_to_hub`). Nothing here ships with a model: no model, config
or processor file imports it.
"""

from .cards import write_model_card
from .dataset_card import dataset_card
from .folders import save_hub_folder
from .pushes import model_repo_files, push_dataset, push_model_folder


__all__ = [
    "dataset_card",
    "model_repo_files",
    "push_dataset",
    "push_model_folder",
    "save_hub_folder",
    "write_model_card",
]
