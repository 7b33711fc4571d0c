"""The `multimodal-relation-extraction` pipeline: raw text, two entities and an image in, relations out."""

import numbers
import os
from collections.abc import Sized

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .images_mre import IMAGE_TYPES, IMAGE_TYPES_TEXT, is_object_tail
from .processing_mre import character_span, check_count, relation_paraphrases


# The task names under which a saved folder names its pipeline (`config.custom_pipelines`): a relation
# extractor's, and a modeling_mre entity recognizer's.
PIPELINE_TASK = "multimodal-relation-extraction"
NER_PIPELINE_TASK = "multimodal-token-classification"


class ExampleBatchesPipeline(Pipeline):
    """
    A pipeline whose processor encodes whole batches of raw examples: `preprocess` returns
    `{"examples": [example]}` and `_forward` hands the batch's examples to the processor together, which
    pads them and masks what an example lacks (an image, crops).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    @staticmethod
    def _collate(items: list[dict]) -> dict:
        return {"examples": [example for item in items for example in item["examples"]]}

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        # transformers' own collator pads what the processor gave each input alone, and so needs the
        # same keys in every input; ours hands the raw inputs of a batch to the processor together.
        step = PipelineDataset if isinstance(inputs, Sized) else PipelineIterator
        dataset = step(inputs, self.preprocess, preprocess_params)
        dataloader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=self._collate)
        model_iterator = PipelineIterator(dataloader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def check_image(image):
    """Refuse an image of a type no loader reads, naming the type."""
    if image is not None and not isinstance(image, IMAGE_TYPES):
        raise TypeError(f"image must be {IMAGE_TYPES_TEXT}, got {type(image).__name__}")


class MultimodalRelationExtractionPipeline(ExampleBatchesPipeline):
    """
    ```python
    extract = pipeline("multimodal-relation-extraction", model="org/mre-mmib-mnre", trust_remote_code=True)
    extract(text="Obama visits Berlin today", head="Obama", tail="Berlin", image="photo.jpg", top_k=2)
    # [{"relation": "/per/misc/present_in", "score": 0.91}, {"relation": "None", "score": 0.05}]
    ```
    Each input is a dict (or keyword arguments) with `text`, `head` and `tail` (entity strings that
    occur once in the text, or `(start, end)` character offsets) and an optional `image` (a path, a
    URL, a base64 string, the file's bytes, `datasets`' `{"bytes", "path"}` dict, a PIL image, a numpy
    array or a torch tensor; None for "no image"); a list
    of such dicts gives a list of results. With `batch_size`, one batch may mix inputs with and
    without an image, and text tails with object tails: each result equals the input's alone.

    The tail may instead be an object in the image (MORE): `{"box": [x0, y0, x1, y1]}` in pixels of
    the image or normalised to [0, 1], optionally with a `"name"` and a `"caption"` (read in its place):
    ```python
    extract(text="Obama visits Berlin today", head="Obama", tail={"name": "podium", "box": [40, 60, 200, 310]},
            image="photo.jpg")
    # [{"relation": ..., "score": ..., "tail": {"name": "podium", "box": [40, 60, 200, 310]}}]
    ```
    Each result echoes the tail it is about. A retrieval model (ROC) also ranks relations given for
    the call, `candidate_relations={"name": "description", ...}` (or names it knows), new ones included;
    they live in that call's inputs only (two threads may rank their own at once).
    A method that gates the image (DFMA)
    adds `"image_weight"`: how much that prediction took from the image, from 0 (the text alone,
    exactly 0 for a post without an image) towards 1.
    """

    def __call__(self, inputs=None, **kwargs):
        if inputs is None:
            keys = ("text", "head", "tail", "image", "entities", "ner_model")
            inputs = {key: kwargs.pop(key) for key in keys if key in kwargs}
        if isinstance(inputs, dict) and "head" not in inputs and ("entities" in inputs or "ner_model" in inputs):
            return self._whole_post(inputs, **kwargs)
        return super().__call__(inputs, **kwargs)

    def _whole_post(self, post: dict, threshold: float | None = None, batch_size: int | None = None, **kwargs):
        """
        Every ordered pair of the post's entities (given as strings or (start, end) offsets, or found by
        `ner_model`), classified in batches; a pair whose best relation is `None` or scores under
        `threshold` is left out when `threshold` is given. `ner_model` is a token-classification model
        (a Hub id or folder, loaded with `aggregation_strategy="simple"`, or a loaded pipeline): a
        modeling_mre entity recognizer (`train_accelerate.py --dataset twitter2017`) also reads the post's
        image; its folder's code runs (it names the `multimodal-token-classification` pipeline), any other
        folder's never does. Entities found so carry their type
        (`head_type`, `tail_type` in the results).
        """
        text = post.get("text")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1
        ):
            raise (ValueError if isinstance(threshold, numbers.Real) else TypeError)(
                f"threshold must be a number in [0, 1], got {threshold!r} ({type(threshold).__name__})"
            )
        if "top_k" in kwargs:
            raise TypeError(
                "top_k applies to one pair; a whole post gives each pair's best relation (filter with threshold=)"
            )
        if batch_size is not None:
            check_count("batch_size", batch_size, 1)
        entities, types = post.get("entities"), {}
        if entities is None:
            found = self._recognise(post["ner_model"], text, post.get("image"))
            entities = [(entity["start"], entity["end"]) for entity in found]
            types = {(entity["start"], entity["end"]): entity["entity_group"] for entity in found}
        if not isinstance(entities, (list, tuple)):
            raise TypeError(
                f"entities must be a list of strings or (start, end) offsets, got {type(entities).__name__}"
            )
        # One entity given twice (as a string and as its offsets) is one entity: its pairs once.
        spans = list(dict.fromkeys(character_span(text, entity, f"entity {i}") for i, entity in enumerate(entities)))
        pairs = [(head, tail) for head in spans for tail in spans if head != tail]
        if not pairs:
            return []
        inputs = [{"text": text, "head": head, "tail": tail, "image": post.get("image")} for head, tail in pairs]
        results = super().__call__(inputs, batch_size=batch_size or len(inputs), **{**kwargs, "top_k": 1})
        found = []
        for (head, tail), ranked in zip(pairs, results):
            best = ranked[0]  # top_k=1: the best relation of the pair
            if threshold is not None and (best["relation"] == "None" or best["score"] < threshold):
                continue
            found.append(
                {
                    "head": text[head[0] : head[1]],
                    "head_offsets": head,
                    "tail": text[tail[0] : tail[1]],
                    "tail_offsets": tail,
                    **({"head_type": types[head], "tail_type": types[tail]} if types else {}),
                    "relation": best["relation"],
                    "score": best["score"],
                    **({"image_weight": best["image_weight"]} if "image_weight" in best else {}),
                }
            )
        return found

    @staticmethod
    def _recognise(ner_model, text: str, image) -> list[dict]:
        """The entities `ner_model` finds in the post, grouped (`entity_group`, `start`, `end`, ...)."""
        if isinstance(ner_model, str):
            from transformers import PreTrainedConfig, pipeline  # the NER model is the user's, loaded only when named

            # A path (not a Hub id "org/name") that is no folder is named as such, not as a malformed repo id.
            if not os.path.isdir(ner_model) and (
                os.path.exists(ner_model) or ner_model.startswith((".", "~", os.sep)) or ner_model.count("/") > 1
            ):
                raise FileNotFoundError(f"ner_model {ner_model!r} is not a model folder")
            try:
                config, _ = PreTrainedConfig.get_config_dict(ner_model)
            except OSError as err:
                first_line = str(err).strip().splitlines()[0]
                raise OSError(
                    f"ner_model {ner_model!r} is neither a model folder nor a Hub model that loads: {first_line}"
                ) from err
            pipelines = config.get("custom_pipelines") or {}
            if PIPELINE_TASK in pipelines:
                raise ValueError(
                    f"ner_model {ner_model!r} is a relation extractor ({PIPELINE_TASK}); ner_model needs an entity "
                    "recognizer: a token-classification model, or one of modeling_mre's (`--dataset twitter2017`)"
                )
            # A modeling_mre recognizer's folder names its pipeline; only such a folder's code is run
            # (read from its config.json, which runs nothing). Any other is transformers' token classification.
            ours = NER_PIPELINE_TASK in pipelines
            task = NER_PIPELINE_TASK if ours else "token-classification"
            ner_model = pipeline(task, model=ner_model, trust_remote_code=ours, aggregation_strategy="simple")
        if not isinstance(ner_model, Pipeline):
            raise TypeError(f"ner_model must be a Hub id, a folder or a pipeline, got {type(ner_model).__name__}")
        # A multimodal recognizer (remote code: its class is not ours to compare) reads the image too.
        if type(ner_model).__name__ == "MultimodalEntityRecognitionPipeline":
            return ner_model(text=text, image=image)
        return ner_model(text)

    def _sanitize_parameters(self, top_k="", candidate_relations=None, threshold=None):
        # top_k defaults to "" as in transformers' text classification: `top_k=None` asks for every relation.
        if threshold is not None:
            raise TypeError(
                "threshold filters the pairs of a whole post (entities= or ner_model=); for one pair use top_k"
            )
        forward_params, postprocess_params = {}, {}
        retrieval = hasattr(self.model, "set_relations")
        if candidate_relations is not None and not retrieval:
            raise TypeError(
                f"candidate_relations needs a retrieval model (ROC); {type(self.model).__name__} "
                "classifies into the relations it was trained on"
            )
        if retrieval:
            # The processor tokenizes the relations (the saved ones unless the call gives its own): the model
            # receives tensors, and the call's relations never touch its config.
            relations = self._described(candidate_relations)
            forward_params["relations"] = relations
            postprocess_params["relation_names"] = list(relations)
        if top_k is None:
            postprocess_params["top_k"] = None
        elif top_k != "":
            postprocess_params["top_k"] = check_count("top_k", top_k, 1)
        return {}, forward_params, postprocess_params

    def _described(self, candidate_relations) -> dict[str, list[str]]:
        """`candidate_relations` (names the model knows, or `{name: description or None}`) as descriptions."""
        config = self.model.config
        known = config.relation_descriptions
        if candidate_relations is None:  # the saved relations, in the order of the model's labels
            return {config.id2label[i]: known[config.id2label[i]] for i in range(config.num_labels)}
        if isinstance(candidate_relations, (list, tuple)):
            candidate_relations = dict.fromkeys(candidate_relations)
        if not isinstance(candidate_relations, dict):
            raise TypeError(
                f"candidate_relations must be a dict or a list of names, got {type(candidate_relations).__name__}"
            )
        unknown = [name for name, described in candidate_relations.items() if not described and name not in known]
        if unknown:
            raise ValueError(f"candidate_relations {unknown} have no description: pass {{name: description}}")
        # Checked here, when the call is made, rather than when the first batch is encoded.
        return relation_paraphrases(
            {name: described or known[name] for name, described in candidate_relations.items()}
        )

    def preprocess(self, inputs):
        if not isinstance(inputs, dict):
            raise TypeError(
                f"each input must be a dict with 'text', 'head', 'tail' and optionally 'image', got {type(inputs).__name__}"
            )
        missing = [key for key in ("text", "head", "tail") if key not in inputs]
        if missing:
            raise ValueError(f"input is missing {missing}; it needs 'text', 'head', 'tail' and optionally 'image'")
        if not isinstance(inputs["text"], str):
            raise TypeError(f"text must be a str, got {type(inputs['text']).__name__}")
        for role in ("head", "tail"):
            if not isinstance(inputs[role], (str, tuple, list, dict)):
                raise TypeError(
                    f"{role} must be a string, (start, end) offsets or a dict, got {type(inputs[role]).__name__}"
                )
        image = inputs.get("image")
        check_image(image)
        # A text-only model has no use for the picture of a text tail: skip decoding it. An object
        # tail still needs it, to place a box given in pixels and to check it lies inside.
        reads_image = getattr(self.model.config, "vision_config", None) is not None or is_object_tail(inputs["tail"])
        example = {key: inputs[key] for key in ("text", "head", "tail")}
        example["image"] = image if reads_image else None
        # The processor runs on whole batches (in `_forward`): it pads them and masks what an example lacks.
        return {"examples": [example]}

    def _forward(self, model_inputs, relations=None):
        examples = model_inputs["examples"]
        batch = self.processor(
            text=[e["text"] for e in examples],
            head=[e["head"] for e in examples],
            tail=[e["tail"] for e in examples],
            images=[e["image"] for e in examples],
            relations=relations,
        ).to(self.device)
        outputs = self.model(**batch)
        # Each result echoes its tail; a dict per example survives the pipeline's unbatching whole.
        forwarded = {"logits": outputs.logits, "echo": [{"tail": e["tail"]} for e in examples]}
        if outputs.get("image_weight") is not None:  # a method that says how much it leaned on the image
            forwarded["image_weight"] = outputs.image_weight  # (batch,)
        return forwarded

    def postprocess(self, model_outputs, top_k=1, relation_names=None):
        probabilities = torch.softmax(model_outputs["logits"][0].float(), dim=-1)
        count = probabilities.shape[-1]
        scores, ids = probabilities.topk(count if top_k is None else min(top_k, count))
        id2label = dict(enumerate(relation_names)) if relation_names is not None else self.model.config.id2label
        echo = model_outputs["echo"]
        tail = (echo[0] if isinstance(echo, list) else echo)["tail"]  # a list of one when called unbatched
        results = [{"relation": id2label[int(i)], "score": float(s), "tail": tail} for s, i in zip(scores, ids)]
        if "image_weight" in model_outputs:
            image_weight = float(model_outputs["image_weight"].reshape(-1)[0])
            results = [{**result, "image_weight": image_weight} for result in results]
        return results
