"""The `multimodal-token-classification` pipeline: a post and its image in, its typed entities out."""

from .entities_mner import bio_entities
from .pipeline_mre import ExampleBatchesPipeline, check_image
from .processing_mner import merge_windows, split_words


AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")


class MultimodalEntityRecognitionPipeline(ExampleBatchesPipeline):
    """
    ```python
    recognise = pipeline(model="org/mre-mmib-twitter2017", trust_remote_code=True)
    recognise(text="Obama visits Berlin today", image="photo.jpg")
    # [{"entity_group": "PER", "score": 0.98, "word": "Obama", "start": 0, "end": 5},
    #  {"entity_group": "LOC", "score": 0.95, "word": "Berlin", "start": 13, "end": 19}]
    ```
    Each input is a text, or a dict (or keyword arguments) with `text` and an optional `image` (a path, a
    URL, a base64 string, the file's bytes, `datasets`' `{"bytes", "path"}` dict, a PIL image, a numpy
    array or a torch tensor; None for "no image"); a list of
    them gives a list of results. With `batch_size`, one batch may mix posts with and without an image:
    each result equals the post's alone.

    The text is read as its whitespace-separated words, each tagged as a whole (the CRF's most likely tags).
    Entities are returned as transformers' token-classification pipeline returns them with an
    aggregation strategy: `entity_group` (the type), `score` (the mean over its words of the model's
    probability of each word's tag: the CRF's marginal), `word` (the text it spans) and `start`, `end`
    (character offsets in the text given). Since words, not subwords, are tagged, the strategies
    "simple", "first", "average" and "max" give the same entities; `aggregation_strategy="none"` gives
    each word that is not `O` with its tag as `entity` and its `index` among the words.
    """

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            inputs = {key: kwargs.pop(key) for key in ("text", "image") if key in kwargs}
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, aggregation_strategy=None, ignore_labels=None):
        # No **kwargs: an argument of the relation pipeline (top_k, threshold) is refused by name, not ignored.
        postprocess_params = {}
        if aggregation_strategy is not None:
            strategy = getattr(aggregation_strategy, "value", aggregation_strategy)  # transformers' enum or a str
            if strategy not in AGGREGATION_STRATEGIES:
                raise ValueError(
                    f"aggregation_strategy must be one of {AGGREGATION_STRATEGIES}, got {aggregation_strategy!r}"
                )
            postprocess_params["aggregation_strategy"] = strategy
        if ignore_labels is not None:
            postprocess_params["ignore_labels"] = list(ignore_labels)
        return {}, {}, postprocess_params

    def preprocess(self, inputs):
        if isinstance(inputs, str):
            inputs = {"text": inputs}
        if not isinstance(inputs, dict):
            raise TypeError(
                f"each input must be a text or a dict with 'text' and optionally 'image', got {type(inputs).__name__}"
            )
        if not isinstance(inputs.get("text"), str):
            raise TypeError(f"text must be a str, got {type(inputs.get('text')).__name__}")
        if not inputs["text"].strip():
            raise ValueError("the text is empty: there is no word to tag")
        check_image(inputs.get("image"))
        reads_image = getattr(self.model.config, "vision_config", None) is not None
        return {"examples": [{"text": inputs["text"], "image": inputs.get("image") if reads_image else None}]}

    def _forward(self, model_inputs):
        examples = model_inputs["examples"]
        batch = self.processor(
            text=[e["text"] for e in examples], images=[e["image"] for e in examples], return_word_ids=True
        )
        word_ids, windows = batch.pop("word_ids"), batch.pop("overflow_to_sample_mapping")
        batch = batch.to(self.device)
        logits = self.model(**batch).logits
        tags, scores = self.model.decode(logits, batch["first_subword_mask"])
        words = merge_windows(word_ids, windows, [list(zip(t, s)) for t, s in zip(tags, scores)], len(examples))
        id2label = self.model.config.id2label
        # A dict per example survives the pipeline's unbatching whole.
        return {
            "posts": [
                {
                    "text": e["text"],
                    "tags": [id2label[tag] for tag, _ in tagged],
                    "scores": [score for _, score in tagged],
                }
                for e, tagged in zip(examples, words)
            ]
        }

    def postprocess(self, model_outputs, aggregation_strategy="simple", ignore_labels=("O",)):
        posts = model_outputs["posts"]
        post = posts[0] if isinstance(posts, list) else posts  # a list of one when called unbatched
        text, tags, scores = post["text"], post["tags"], post["scores"]
        offsets = [(start, end) for _, start, end in split_words(text)]
        if aggregation_strategy == "none":
            return [
                {
                    "entity": tag,
                    "score": score,
                    "index": i,
                    "word": text[slice(*offsets[i])],
                    "start": offsets[i][0],
                    "end": offsets[i][1],
                }
                for i, (tag, score) in enumerate(zip(tags, scores))
                if tag not in ignore_labels
            ]
        entities = []
        for entity_type, first, last in bio_entities(tags):
            if entity_type in ignore_labels:
                continue
            start, end = offsets[first][0], offsets[last - 1][1]
            entities.append(
                {
                    "entity_group": entity_type,
                    "score": sum(scores[first:last]) / (last - first),
                    "word": text[start:end],
                    "start": start,
                    "end": end,
                }
            )
        return entities
