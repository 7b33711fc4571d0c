"""The `multimodal-relation-extraction` pipeline: raw text, two entities and an image in, relations out."""

import torch
from transformers import Pipeline

from .processing_mre import is_object_tail


class MultimodalRelationExtractionPipeline(Pipeline):
    """
    ```python
    extract = pipeline("multimodal-relation-extraction", model="org/mre-mmib-mnre", trust_remote_code=True)
    extract(text="Obama visits Berlin today", head="Obama", tail="Berlin", image="photo.jpg", top_k=2)
    # [{"relation": "/per/misc/present_in", "score": 0.91}, {"relation": "None", "score": 0.05}]
    ```
    Each input is a dict (or keyword arguments) with `text`, `head` and `tail` (entity strings that
    occur once in the text, or `(start, end)` character offsets) and an optional `image` (a path, a
    PIL image or None for "no image"); a list of such dicts gives a list of results.

    The tail may instead be an object in the image (MORE): `{"box": [x0, y0, x1, y1]}` in pixels of
    the image or normalised to [0, 1], optionally with a `"name"` and a `"caption"` (read in its place):
    ```python
    extract(text="Obama visits Berlin today", head="Obama", tail={"name": "podium", "box": [40, 60, 200, 310]},
            image="photo.jpg")
    # [{"relation": ..., "score": ..., "tail": {"name": "podium", "box": [40, 60, 200, 310]}}]
    ```
    Each result echoes the tail it is about.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            inputs = {key: kwargs.pop(key) for key in ("text", "head", "tail", "image") if key in kwargs}
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, **kwargs):
        postprocess_params = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
            postprocess_params["top_k"] = top_k
        return {}, {}, postprocess_params

    def preprocess(self, inputs):
        if not isinstance(inputs, dict):
            raise TypeError(
                f"each input must be a dict with 'text', 'head', 'tail' and optionally 'image', got {type(inputs).__name__}"
            )
        missing = [key for key in ("text", "head", "tail") if key not in inputs]
        if missing:
            raise ValueError(f"input is missing {missing}; it needs 'text', 'head', 'tail' and optionally 'image'")
        # A text-only model has no use for the picture of a text tail: skip decoding it. An object
        # tail still needs it, to place a box given in pixels and to check it lies inside.
        reads_image = getattr(self.model.config, "vision_config", None) is not None or is_object_tail(inputs["tail"])
        image = inputs.get("image") if reads_image else None
        model_inputs = self.processor(text=inputs["text"], head=inputs["head"], tail=inputs["tail"], images=image)
        # Carried beside the tensors (batching turns it into a list) so that each result can echo it.
        return {**model_inputs, "tail": inputs["tail"]}

    def _forward(self, model_inputs):
        tail = model_inputs.pop("tail")
        return {"logits": self.model(**model_inputs).logits, "tail": tail}

    def postprocess(self, model_outputs, top_k=1):
        probabilities = torch.softmax(model_outputs["logits"][0].float(), dim=-1)
        scores, ids = probabilities.topk(min(top_k, probabilities.shape[-1]))
        id2label = self.model.config.id2label
        tail = model_outputs["tail"]
        return [{"relation": id2label[int(i)], "score": float(s), "tail": tail} for s, i in zip(scores, ids)]
