"""Configuration of MMIB (Cui et al., TASLP 2024)."""

from typing import Literal

from huggingface_hub.dataclasses import strict

from .configuration_mre import MREConfig


@strict
class MMIBConfig(MREConfig):
    r"""
    Configuration of [`MMIBForRelationExtraction`], with the defaults of MMIB's released code
    (cuishiyao96/MMIB, `run.py` and `models/model.py`).

    Args:
        hidden_size (`int`, *optional*):
            Width of the variational encoders and fusion layers; defaults to the text encoder's width.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Heads of every MMIB attention block.
        attention_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on attention probabilities inside the MMIB blocks.
        num_object_crops (`int`, *optional*, defaults to 3):
            Visual-grounding crops read beside the whole image (`m` in the paper's code).
        alignment_loss_weight (`float`, *optional*, defaults to 1.0):
            beta1, weight of the discriminator (alignment regulariser) loss.
        text_kl_weight (`float`, *optional*, defaults to 1.0):
            beta2, weight of the text KL term.
        image_kl_weight (`float`, *optional*, defaults to 1.0):
            beta3, weight of the image KL term.
        num_negative_shifts (`int`, *optional*, defaults to 1):
            Negatives for the discriminator: the batch's image vectors rolled by 1..n.
        classifier_dropout (`float`, *optional*, defaults to 0.0):
            The released code defines a dropout before its classifier but never applies it.
        classification_loss_reduction (`str`, *optional*, defaults to `"sum"`):
            MMIB sums the cross-entropy over the batch while its KL terms are means, which makes the
            regularisers small; `"mean"` is available for batch-size-independent scaling.
    """

    model_type = "mre-mmib"

    hidden_size: int | None = None
    num_attention_heads: int = 12
    attention_dropout: float = 0.1
    num_object_crops: int = 3
    alignment_loss_weight: float = 1.0
    text_kl_weight: float = 1.0
    image_kl_weight: float = 1.0
    num_negative_shifts: int = 1
    classifier_dropout: float = 0.0
    classification_loss_reduction: Literal["sum", "mean"] = "sum"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.fill_fusion_shape()


@strict
class MMIBNERConfig(MMIBConfig):
    r"""
    Configuration of [`MMIBForTokenClassification`]: MMIB's representation (the same fields as
    [`MMIBConfig`]) read at each word's first subword, tagged through a CRF. `num_labels`, `id2label` and
    `label2id` are the BIO tags.

    Args:
        use_crf (`bool`, *optional*, defaults to `True`):
            Decode the words' tags jointly with a CRF (MMIB's released NER code uses one); `False`
            classifies each word alone.
        classification_loss_reduction (`str`, *optional*, defaults to `"mean"`):
            The CRF's negative log-likelihood averaged over sentences (HVPNeT's NER code, on which MMIB's
            builds), or summed.
        num_object_crops (`int`, *optional*, defaults to 4):
            Crops read beside the whole image: MMIB's NER code reads one per entity type (`m = 4`).
    """

    model_type = "mre-mmib-ner"

    num_object_crops: int = 4
    use_crf: bool = True
    classification_loss_reduction: Literal["sum", "mean"] = "mean"
