"""Configuration of WMAJL (watcher-mediated attention joint learning, ICASSP 2025)."""

from huggingface_hub.dataclasses import strict

from .configuration_mre import MREConfig, entity_types_of


@strict
class WMAJLConfig(MREConfig):
    r"""
    Configuration of [`WMAJLForRelationExtraction`]. No code or full text of the paper is public: the
    defaults are our reading of its abstract (`hub_cards/methods/wmajl_notes.md` says which).

    Args:
        hidden_size (`int`, *optional*):
            Width of the fusion layers, watchers and heads; defaults to the text encoder's width.
        num_attention_heads (`int`, *optional*):
            Heads of the fusion layers; defaults to the text encoder's.
        fusion_dropout (`float`, *optional*, defaults to 0.1):
            Dropout on what each fusion layer reads (not on its attention weights).
        num_watchers (`int`, *optional*, defaults to 8):
            K, the learnable watcher tokens through which text and image exchange information.
        num_fusion_layers (`int`, *optional*, defaults to 2):
            N, rounds of watchers reading both streams and writing back to each.
        num_object_crops (`int`, *optional*, defaults to 3):
            Visual-grounding crops read beside the whole image.
        vision_grid_size (`int`, *optional*, defaults to 4):
            A CNN's last feature map is average-pooled to 4x4 region tokens per picture (MobileNetV2 and
            ResNet give 7x7 at 224 pixels): the image stream is then shorter than the text. ViT and CLIP
            patch tokens are kept as they are.
        use_watcher_fusion (`bool`, *optional*, defaults to `True`):
            Whether text and image meet through the watchers; off, the text reads the image tokens
            directly through the same number of layers (the ablation "without watchers").
        use_modality_alignment (`bool`, *optional*, defaults to `True`):
            Whether text and image states pass the variational constraint and their pooled samples are
            aligned contrastively.
        use_position_supervision (`bool`, *optional*, defaults to `True`):
            Whether the auxiliary NER task and the output supervision of intermediate text layers train.
        use_label_loss (`bool`, *optional*, defaults to `True`):
            Whether the label-centric self-information loss trains learnable relation-label embeddings.
        kl_weight (`float`, *optional*, defaults to 1e-3):
            Weight of the KL of the text and image posteriors to N(0, I).
        contrastive_weight (`float`, *optional*, defaults to 0.1):
            Weight of the symmetric InfoNCE between pooled text and image samples.
        contrastive_temperature (`float`, *optional*, defaults to 0.07):
            Its temperature.
        ner_weight (`float`, *optional*, defaults to 0.1):
            Weight of the auxiliary NER (BIO over the head and tail spans) loss.
        intermediate_weight (`float`, *optional*, defaults to 0.1):
            Weight of the relation loss on the supervised intermediate text layers (their mean).
        supervised_layers (`list[int]`, *optional*):
            Text encoder layers (1-based; the last is the output) whose `[<s>; <o>]` states the relation
            classifier also reads in training. Defaults to the layers at one and two thirds of the depth.
        label_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of the label-centric self-information loss.
        label_temperature (`float`, *optional*, defaults to 0.07):
            Its temperature.
        entity_types (`list[str]`, *optional*):
            The entity types the NER head tells apart; defaults to those in the relation names'
            `/head/tail/` prefixes (MNRE's), or one untyped class when they carry none.
    """

    model_type = "mre-wmajl"

    hidden_size: int | None = None
    num_attention_heads: int | None = None
    fusion_dropout: float = 0.1
    num_watchers: int = 8
    num_fusion_layers: int = 2
    num_object_crops: int = 3
    vision_grid_size: int | None = 4
    use_watcher_fusion: bool = True
    use_modality_alignment: bool = True
    use_position_supervision: bool = True
    use_label_loss: bool = True
    kl_weight: float = 1e-3
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.07
    ner_weight: float = 0.1
    intermediate_weight: float = 0.1
    supervised_layers: list[int] | None = None
    label_loss_weight: float = 0.1
    label_temperature: float = 0.07
    entity_types: list[str] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.fill_fusion_shape()
        if self.supervised_layers is None:
            depth = self.text_config.num_hidden_layers
            self.supervised_layers = sorted({round(depth * share) for share in (1 / 3, 2 / 3)} - {0, depth})
        if self.entity_types is None:
            self.entity_types = entity_types_of(self.id2label.values()) or ["entity"]

    def validate_architecture(self):
        super().validate_architecture()
        depth = self.text_config.num_hidden_layers
        outside = [layer for layer in self.supervised_layers if not 1 <= layer <= depth]
        if outside:
            raise ValueError(f"supervised_layers {outside} are not layers of the {depth}-layer text encoder")
