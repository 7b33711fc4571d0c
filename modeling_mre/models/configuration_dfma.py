"""Configuration of DFMA (adaptive dual fusion with mutual attention, ICASSP 2025)."""

from huggingface_hub.dataclasses import strict

from .configuration_mre import MREConfig


@strict
class DFMAConfig(MREConfig):
    r"""
    Configuration of [`DFMAForRelationExtraction`]. No code or full text of the paper is public: the
    pyramid prompts follow HVPNeT's hierarchical visual prefix (zjunlp/HVPNeT, `models/bert_model.py`),
    and the rest is our reading of the abstract (`hub_cards/methods/dfma_notes.md` says which).

    Args:
        hidden_size (`int`, *optional*):
            Width of the mutual-fusion layers; defaults to the text encoder's width.
        num_attention_heads (`int`, *optional*):
            Heads of the mutual-fusion layers; defaults to the text encoder's.
        fusion_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on what each mutual-fusion layer reads (not on its attention weights).
        num_object_crops (`int`, *optional*, defaults to 3):
            Visual-grounding crops read beside the whole image (HVPNeT's 3).
        vision_feature_layers (`list[int]`, *optional*):
            The pyramid: hidden states of the vision encoder read as levels. Defaults to the last state at
            each of the 4 coarsest resolutions of a CNN (ResNet's 4 stages), or to the layers at each
            quarter of a ViT's depth.
        vision_grid_size (`int`, *optional*, defaults to 2):
            A CNN level is average-pooled to 2x2 region tokens (HVPNeT's pooling); a ViT level's tokens
            are average-pooled to `prompt_length`.
        prompt_length (`int`, *optional*, defaults to 4):
            Prefix tokens per picture (whole image, each crop, an object tail) in every text layer.
        prompt_bottleneck (`int`, *optional*, defaults to 800):
            Width of the hidden layer of each level's prompt MLP, which maps that level to its key/value
            chunk (HVPNeT's 800, for all levels together).
        num_fusion_layers (`int`, *optional*, defaults to 2):
            Rounds of mutual attention (text reads image, image reads text).
        use_pyramid_prompts (`bool`, *optional*, defaults to `True`):
            PFE: gated pyramid prompts enter every text encoder layer as an attention prefix.
        use_mutual_fusion (`bool`, *optional*, defaults to `True`):
            MMF: bidirectional cross-attention after the encoder. With either module on, one image gate
            from the entity pair and its pictures scales how much of the image enters (`image_weight`).
    """

    model_type = "mre-dfma"

    hidden_size: int | None = None
    num_attention_heads: int | None = None
    fusion_dropout: float = 0.1
    num_object_crops: int = 3
    vision_grid_size: int | None = 2
    prompt_length: int = 4
    prompt_bottleneck: int = 800
    num_fusion_layers: int = 2
    use_pyramid_prompts: bool = True
    use_mutual_fusion: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.fill_fusion_shape()
