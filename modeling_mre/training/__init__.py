"""What `train_accelerate.py` needs beside Accelerate: the task table, parameter groups, LoRA, checkpoints, batches, sampling, config overrides."""

from .checkpoints import (
    check_finite,
    complete_checkpoints,
    find_checkpoint,
    load_saved_weights,
    rotate_checkpoints,
    save_checkpoint,
)
from .collate import make_collate_fn, make_ner_collate_fn
from .config_overrides import parse_config_overrides
from .optimization import encoder_parameter_ids, lora_config, loss_terms, parameter_groups
from .sampling import LengthGroupedSampler, example_lengths
from .tasks import ENTITY_RECOGNITION, RELATION_EXTRACTION, TASKS, TrainingTask, task_of_dataset


__all__ = [
    "ENTITY_RECOGNITION",
    "LengthGroupedSampler",
    "RELATION_EXTRACTION",
    "TASKS",
    "TrainingTask",
    "check_finite",
    "complete_checkpoints",
    "encoder_parameter_ids",
    "example_lengths",
    "find_checkpoint",
    "load_saved_weights",
    "lora_config",
    "loss_terms",
    "make_collate_fn",
    "make_ner_collate_fn",
    "parameter_groups",
    "parse_config_overrides",
    "rotate_checkpoints",
    "save_checkpoint",
    "task_of_dataset",
]
