"""Dataset readers (MNRE, MORE) into one record schema, the synthetic demo sets, and the frozen-vision feature cache."""

from .demo import write_demo_dataset, write_more_demo_dataset
from .feature_cache import add_image_features, can_cache_image_features, stack_image_features
from .mnre import load_mnre
from .more import load_more
from .schema import record_features
from .splits import carve_validation_from_train

__all__ = [
    "add_image_features",
    "can_cache_image_features",
    "carve_validation_from_train",
    "load_mnre",
    "load_more",
    "record_features",
    "stack_image_features",
    "write_demo_dataset",
    "write_more_demo_dataset",
]
