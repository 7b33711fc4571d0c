"""Dataset readers (MNRE, MORE, FewRel's layout; Twitter-2015/2017 for MNER) into their record schemas, the synthetic demo sets, and the frozen-vision feature cache."""

from .demo import write_demo_dataset, write_mner_demo_dataset, write_more_demo_dataset
from .feature_cache import ImageFeatureCache, add_image_features, can_cache_image_features
from .fewrel import load_fewrel
from .mnre import load_mnre
from .more import load_more
from .schema import record_features
from .splits import carve_validation_from_train
from .twitter import NER_TAGS, load_twitter_mner


__all__ = [
    "ImageFeatureCache",
    "NER_TAGS",
    "add_image_features",
    "can_cache_image_features",
    "carve_validation_from_train",
    "load_fewrel",
    "load_mnre",
    "load_more",
    "load_twitter_mner",
    "record_features",
    "write_demo_dataset",
    "write_mner_demo_dataset",
    "write_more_demo_dataset",
]
