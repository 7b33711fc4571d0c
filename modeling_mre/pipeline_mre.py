"""The `multimodal-relation-extraction` pipeline: raw text, two entities and an image in, relations out."""

import torch
from transformers import Pipeline


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
        # A text-only model has no use for the picture: skip decoding it.
        image = inputs.get("image") if getattr(self.model.config, "vision_config", None) is not None else None
        return self.processor(text=inputs["text"], head=inputs["head"], tail=inputs["tail"], images=image)

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs, top_k=1):
        probabilities = torch.softmax(model_outputs["logits"][0].float(), dim=-1)
        scores, ids = probabilities.topk(min(top_k, probabilities.shape[-1]))
        id2label = self.model.config.id2label
        return [{"relation": id2label[int(i)], "score": float(s)} for s, i in zip(scores, ids)]
