"""
The visual path shared by every multimodal method (as Llava's `get_image_features`): pictures (the
whole image, object crops, an object tail with its box; any of them absent) in, what the method
reads out: pooled slots, patch or grid tokens, or per-level features, with their masks.
"""

from dataclasses import dataclass
from typing import TypedDict, Unpack

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModel

from .configuration_mre import MREConfig
from .modeling_mre import MREPreTrainedModel


class VisualInputs(TypedDict, total=False):
    r"""
    The pictures of a batch, as `MREProcessor` gives them; every multimodal method's `forward` takes
    them as `**visual_inputs` and hands them to `encode_images`. Each may be absent.

    pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
        Whole images; rows where `image_mask` is False are ignored.
    image_mask (`torch.BoolTensor` of shape `(batch_size,)`):
        Which examples have an image. Defaults to all when `pixel_values` is given.
    crop_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_crops, 3, height, width)`):
        Visual-grounding object crops; `crop_mask` says which exist.
    crop_mask (`torch.BoolTensor` of shape `(batch_size, num_crops)`):
        Which crops exist.
    image_features (`torch.FloatTensor` of shape `(batch_size, image_feature_size)`):
        The whole images' `get_image_features`, instead of `pixel_values` (as `inputs_embeds` stands
        for `input_ids`): with a frozen vision encoder they are computed once per image
        (`modeling_mre.data.feature_cache`) and reused every epoch. `image_mask` applies as above.
    crop_features (`torch.FloatTensor` of shape `(batch_size, num_crops, image_feature_size)`):
        The crops' `get_image_features`, instead of `crop_pixel_values`; `crop_mask` applies.
    tail_mask (`torch.BoolTensor` of shape `(batch_size,)`):
        Which examples' tail is an object in the image (MORE) rather than a span of the text. Each
        such tail gets a visual slot of its own: its box features, plus its crop where the image exists.
    tail_box_features (`torch.FloatTensor` of shape `(batch_size, 5)`):
        `[cx, cy, w, h, w * h]` of each object tail's normalised box; required with `tail_mask`.
    tail_pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
        The object tails' crops, read where `tail_mask` and the image's presence are both True.
    tail_features (`torch.FloatTensor` of shape `(batch_size, image_feature_size)`):
        The tail crops' `get_image_features`, instead of `tail_pixel_values`.
    """

    pixel_values: torch.FloatTensor
    image_mask: torch.BoolTensor
    crop_pixel_values: torch.FloatTensor
    crop_mask: torch.BoolTensor
    image_features: torch.FloatTensor
    crop_features: torch.FloatTensor
    tail_mask: torch.BoolTensor
    tail_box_features: torch.FloatTensor
    tail_pixel_values: torch.FloatTensor
    tail_features: torch.FloatTensor


@dataclass
class VisualSlots:
    """
    What `MREVisualModel.encode_images` gives a method, for every `visual_features` kind. Slots are
    [whole image; object tail (object tails only); object crops], each `tokens_per_slot` tokens.

    Args:
        states (`torch.FloatTensor` of shape `(batch_size, num_slots * tokens_per_slot, width)`):
            Each slot's tokens as `project_pictures` maps them, at `build_visual_path`'s width: zeros
            for an absent picture; an object tail's slot adds its box's projection to every token.
            For `"pooled"` and `"patches"`, an example without its whole image reads the learned
            "no image" vector in its first token.
        mask (`torch.BoolTensor` of shape `(batch_size, num_slots * tokens_per_slot)`):
            Which tokens of `states` are real: those of `slot_mask`'s slots, and the "no image" token.
        slot_mask (`torch.BoolTensor` of shape `(batch_size, num_slots)`):
            Which slots hold a picture, or an object tail's box (with or without its crop).
        has_image (`torch.BoolTensor` of shape `(batch_size,)`):
            Which examples have their whole image.
        tokens_per_slot (`int`):
            1 for `"pooled"`; the patch or grid tokens of one picture for `"patches"`; what the
            method's `project_pictures` gives for `"levels"`.
    """

    states: torch.Tensor
    mask: torch.Tensor
    slot_mask: torch.Tensor
    has_image: torch.Tensor
    tokens_per_slot: int = 1


def pooled_feature_size(vision_encoder: nn.Module) -> int:
    """Width of the pooled feature (and of the last feature map) of a transformers vision encoder."""
    config = vision_encoder.config
    if config.model_type == "mobilenet_v2":  # its last 1x1 convolution's width follows depth_multiplier
        return vision_encoder.conv_1x1.convolution.out_channels
    if hasattr(config, "hidden_sizes"):  # ResNet, ConvNeXt: channels of the last stage
        return config.hidden_sizes[-1]
    return config.hidden_size


def pool_image_features(vision_outputs) -> torch.Tensor:
    """One vector per image from any transformers vision encoder output."""
    pooled = getattr(vision_outputs, "pooler_output", None)
    if pooled is None:  # ViT built without its pooler: the [CLS] patch
        pooled = vision_outputs.last_hidden_state[:, 0]
    # CNN poolers keep singleton spatial dims: (N, C, 1, 1) -> (N, C)
    return pooled.flatten(1)


def feature_map_tokens(features: torch.Tensor, grid_size: int | None) -> torch.Tensor:
    """(N, C, H, W) CNN maps or (N, T, D) transformer states -> tokens (N, T, C); maps pooled to a grid if asked."""
    if features.dim() == 3:
        return features
    if grid_size is not None:
        features = F.adaptive_avg_pool2d(features, grid_size)
    return features.flatten(2).transpose(1, 2)


class MREVisualModel(MREPreTrainedModel):
    """
    Base of the multimodal methods: `build_visual_path` adds the vision encoder and the shared visual
    layers, `get_image_features` encodes pictures into what the method declares in `visual_features`,
    and `encode_images` assembles the slots of a batch from pixels or from precomputed features.

    Every picture's features travel flat, `(num_pictures, image_feature_size)`: that is what the
    frozen-vision feature cache stores (`modeling_mre.data.feature_cache`) and what `forward` accepts
    as `image_features`, `crop_features` and `tail_features` in place of pixels.
    """

    def pretrained_submodules(self):
        vision_role = "frozen" if self.config.freeze_vision_encoder else "encoder"
        return {**super().pretrained_submodules(), "vision_encoder": vision_role}

    def build_visual_path(self, hidden_size: int):
        config: MREConfig = self.config
        self.vision_encoder = AutoModel.from_config(config.vision_config)
        if self.visual_features != "levels":  # a levels method projects each level itself
            self.image_projection = nn.Linear(pooled_feature_size(self.vision_encoder), hidden_size)
            self.no_image_embedding = nn.Embedding(1, hidden_size)
        # An object tail's box features [cx, cy, w, h, w * h] (MOREformer's), added to its crop's
        # state; the bias tells the tail's slot from the other crops.
        self.tail_box_projection = nn.Linear(5, hidden_size) if config.object_tails else None
        self._feature_shapes = None

    def _feature_tokens(self, pixel_values: torch.FloatTensor) -> list[torch.Tensor]:
        """Per level read, the pictures' tokens (num_pictures, tokens, channels)."""
        outputs = self.vision_encoder(
            pixel_values=pixel_values.to(self.vision_encoder.dtype),
            output_hidden_states=self.visual_features == "levels",
        )
        if self.visual_features == "pooled":
            return [pool_image_features(outputs)[:, None]]
        if self.visual_features == "patches":
            maps = [outputs.last_hidden_state]
        else:
            maps = [outputs.hidden_states[layer] for layer in self.config.vision_feature_layers]
        return self.pool_feature_tokens([feature_map_tokens(level, self.config.vision_grid_size) for level in maps])

    def pool_feature_tokens(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """
        What a method reduces each level's tokens `(num_pictures, tokens, channels)` to before anything
        learned reads them: nothing here. A method that pools first (DFMA averages each level to
        `prompt_length` tokens) overrides it, so that `get_image_features`, and the feature cache with
        it, hold the pooled form. It must be parameter-free, as cached features never change.
        """
        return levels

    def get_image_features(self, pixel_values: torch.FloatTensor) -> torch.FloatTensor:
        """
        Flat features `(num_pictures, image_feature_size)` of the kind in `visual_features`, for pixel
        values of shape `(num_pictures, 3, height, width)` (cast to the vision encoder's dtype):
        `"pooled"`: the pooled vector; `"patches"`: the last layer's patch tokens (a CNN's last map,
        pooled to `config.vision_grid_size` if set); `"levels"`: the hidden states of
        `config.vision_feature_layers`, each as tokens, concatenated.
        """
        trained = torch.is_grad_enabled() and not self.config.freeze_vision_encoder
        with torch.set_grad_enabled(trained):
            tokens = self._feature_tokens(pixel_values)
        return torch.cat([level.flatten(1) for level in tokens], dim=1)

    def feature_shapes(self) -> list[tuple[int, int]]:
        """(tokens, channels) of each level in a flat feature, read once from a forward of one blank picture."""
        if self._feature_shapes is None:
            if self.visual_features == "pooled":
                self._feature_shapes = [(1, pooled_feature_size(self.vision_encoder))]
            else:
                side = getattr(self.config.vision_config, "image_size", 224)
                blank = torch.zeros(1, 3, side, side, device=self.vision_encoder.device)
                training = self.vision_encoder.training
                self.vision_encoder.eval()  # a trained encoder's BatchNorm statistics must not see the blank
                with torch.no_grad():
                    self._feature_shapes = [tuple(level.shape[1:]) for level in self._feature_tokens(blank)]
                self.vision_encoder.train(training)
        return self._feature_shapes

    @property
    def image_feature_size(self) -> int:
        return sum(tokens * channels for tokens, channels in self.feature_shapes())

    def split_levels(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flat features (..., image_feature_size) -> per level (..., tokens_l, channels_l)."""
        sizes = [tokens * channels for tokens, channels in self.feature_shapes()]
        return tuple(
            level.unflatten(-1, shape) for level, shape in zip(features.split(sizes, dim=-1), self.feature_shapes())
        )

    def project_pictures(self, levels: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """
        Every slot's features, per level read `(batch, slots, tokens_l, channels_l)`, to the tokens the
        method reads `(batch, slots, tokens, width)`. `"pooled"` and `"patches"` read one level, through
        `image_projection`; a `"levels"` method maps its levels itself by overriding this.
        """
        if self.visual_features == "levels":
            raise NotImplementedError(
                f"{type(self).__name__} reads 'levels' and must map them to its slot tokens: override project_pictures"
            )
        (features,) = levels
        return self.image_projection(features)

    def encode_images(
        self, batch_size: int, num_object_crops: int | None = None, **visual_inputs: Unpack[VisualInputs]
    ) -> VisualSlots:
        r"""
        The visual slots of a batch from its `VisualInputs`: the one place that turns pictures into
        slots, for every feature kind and every task. Pictures come as pixels or as their precomputed
        `get_image_features` (never a mix); at most `num_object_crops` crops are read (all if `None`).
        """
        tail_mask, tail_box_features = visual_inputs.get("tail_mask"), visual_inputs.get("tail_box_features")
        features, present, has_image = self._slot_features(batch_size, num_object_crops, visual_inputs)
        states = self.project_pictures(self.split_levels(features))  # (batch, slots, tokens, width)
        states = states * present[..., None, None]
        slot_mask = present.clone()
        if tail_mask is not None:
            # The tail slot is real for every object tail: its box places it even without the picture.
            box = self.tail_box_projection(tail_box_features.to(states.dtype))  # (batch, width)
            tail_slot = states[:, 1] + box[:, None] * tail_mask[:, None, None]  # (batch, tokens, width)
            states = torch.cat([states[:, :1], tail_slot[:, None], states[:, 2:]], dim=1)
            slot_mask[:, 1] = tail_mask.bool()
        tokens = states.shape[2]
        token_mask = slot_mask[..., None].expand(-1, -1, tokens).clone()  # (batch, slots, tokens)
        if self.visual_features != "levels":
            # Without its whole image an example reads the learned "no image" vector in its first token,
            # so absence is explicit and attention over the image always has a key. A levels method
            # reads absence from `slot_mask` in its own way.
            no_image = self.no_image_embedding.weight[0].to(states.dtype)
            first_token = torch.where(has_image[:, None], states[:, 0, 0], no_image)  # (batch, width)
            states = torch.cat(
                [torch.cat([first_token[:, None, None], states[:, :1, 1:]], dim=2), states[:, 1:]], dim=1
            )
            token_mask[:, 0, 0] = True
        return VisualSlots(
            states=states.flatten(1, 2),  # (batch, slots * tokens, width)
            mask=token_mask.flatten(1),
            slot_mask=slot_mask,
            has_image=has_image,
            tokens_per_slot=tokens,
        )

    def _slot_features(
        self, batch_size: int, num_object_crops: int | None, visual_inputs: VisualInputs
    ) -> tuple[torch.Tensor, torch.BoolTensor, torch.BoolTensor]:
        """
        Each slot's flat features `(batch, slots, image_feature_size)` (zeros where absent), which slots
        hold a picture `(batch, slots)`, and which examples have the whole image `(batch,)`. Only
        pictures that exist go through the vision encoder, in one call.
        """
        unknown = sorted(set(visual_inputs) - set(VisualInputs.__annotations__))
        if unknown:
            raise TypeError(f"unexpected visual inputs {unknown}; known: {sorted(VisualInputs.__annotations__)}")
        image_mask, crop_mask = visual_inputs.get("image_mask"), visual_inputs.get("crop_mask")
        tail_mask = visual_inputs.get("tail_mask")
        pixel_values, image_features = visual_inputs.get("pixel_values"), visual_inputs.get("image_features")
        crop_pixel_values, crop_features = visual_inputs.get("crop_pixel_values"), visual_inputs.get("crop_features")
        tail_pixel_values, tail_features = visual_inputs.get("tail_pixel_values"), visual_inputs.get("tail_features")
        if tail_mask is not None and self.tail_box_projection is None:
            raise ValueError(
                "this model was built for text tails only (config.object_tails=False) and has no layers for an "
                "object tail: train one with object_tails=True (train_accelerate.py does on MORE)"
            )
        if tail_mask is not None and visual_inputs.get("tail_box_features") is None:
            raise ValueError("object tails (tail_mask) need their tail_box_features, as MREProcessor gives them")
        precomputed = any(t is not None for t in (image_features, crop_features, tail_features))
        if precomputed and any(t is not None for t in (pixel_values, crop_pixel_values, tail_pixel_values)):
            raise ValueError("give pixel values or precomputed image features, not both")
        whole_images = image_features if precomputed else pixel_values
        crops = crop_features if precomputed else crop_pixel_values
        tail_crops = tail_features if precomputed else tail_pixel_values
        device = self.vision_encoder.device
        feature_size = self.image_feature_size
        given = [t for t in (whole_images, crops, tail_crops) if t is not None]
        if precomputed and any(t.shape[-1] != feature_size for t in given):
            raise ValueError(
                f"precomputed image features must have {feature_size} values, as get_image_features gives"
            )

        if whole_images is None:
            has_image = torch.zeros(batch_size, dtype=torch.bool, device=device)
        elif image_mask is None:
            has_image = torch.ones(batch_size, dtype=torch.bool, device=device)
        else:
            has_image = image_mask.bool()
        # Each group of slots: its pictures (batch, n, ...) or None, and which of them exist (batch, n).
        groups = [(whole_images[:, None] if whole_images is not None else None, has_image[:, None])]
        if tail_mask is not None:
            # The tail's crop is cut from the image, so it exists only where the image does.
            tail_crop_present = tail_mask.bool() & has_image if tail_crops is not None else torch.zeros_like(has_image)
            groups.append((tail_crops[:, None] if tail_crops is not None else None, tail_crop_present[:, None]))
        if crops is not None and num_object_crops != 0:
            crops = crops[:, :num_object_crops]
            present_crops = crop_mask[:, :num_object_crops].bool() if crop_mask is not None else None
            if present_crops is None:
                present_crops = torch.ones(crops.shape[:2], dtype=torch.bool, device=crops.device)
            groups.append((crops, present_crops))
        present = torch.cat([group_present for _, group_present in groups], dim=1)  # (batch, slots)

        # Each group's share of the encoded pictures is scattered back to its slots.
        existing = [pictures[group_present] for pictures, group_present in groups if pictures is not None]
        slot_features = torch.zeros(*present.shape, feature_size, device=device)
        if present.any():
            pictures = torch.cat(existing)  # (num_present, 3, height, width) or (num_present, feature)
            features = pictures if precomputed else self.get_image_features(pictures)
            slot_features = slot_features.to(features.dtype)
            first_slot, first_feature = 0, 0
            for _, group_present in groups:
                num_slots, num_features = group_present.shape[1], int(group_present.sum())
                group_features = features[first_feature : first_feature + num_features]
                slot_features[:, first_slot : first_slot + num_slots][group_present] = group_features
                first_slot, first_feature = first_slot + num_slots, first_feature + num_features
        return slot_features, present, has_image
