"""
A Gradio demo of a multimodal relation extraction model, laid out as a Hugging Face Space.

    MRE_MODEL=outputs/mmib-demo python space/app.py      # or `make space`; MRE_MODEL may be a Hub id
    MRE_MODEL=user/mre-mmib MRE_MODEL_REVISION=<commit> python space/app.py   # remote code pinned to a revision
    MRE_NER_MODEL=outputs/mmib-twitter2017 make space   # adds entities: a post and its photo to its typed relations

The model loads with `pipeline("multimodal-relation-extraction", trust_remote_code=True)`: this app
needs torch, transformers and gradio, not modeling_mre. Example rows come from the `demo_data/` that
`make demo` writes beside its model. With `MRE_NER_MODEL` (and `MRE_NER_MODEL_REVISION`), a modeling_mre
entity recognizer (`train_accelerate.py --dataset twitter2017`, or `--dataset demo-mner`) finds the
post's entities, reading its image too, for the "Entities and relations" tab.
"""

import ast
import os
import re
from pathlib import Path

import gradio as gr
from transformers import pipeline


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "outputs" / "mmib-demo"
NUM_EXAMPLES = 8
# Runs of capitalised words, hashtags and mentions: what names a person, place or organisation in a post.
ENTITY_PATTERN = re.compile(r"[#@]\w+|[A-Z][\w'&.-]*(?:\s+[A-Z][\w'&.-]*)*")


def load_extractor(model: str, revision: str | None = None):
    """
    The pipeline of `model` (folder or Hub id, at `revision`: a Space that runs remote code should pin
    the commit it was checked at), or the message that says why there is none.
    """
    try:
        return pipeline("multimodal-relation-extraction", model=model, revision=revision, trust_remote_code=True), None
    except (OSError, ValueError) as error:  # no such folder, or no such repository on the Hub (or offline)
        return None, (
            f"No model could be loaded from `{model}` ({error}). Run `make demo` to train the default one, "
            "or set `MRE_MODEL` to a model folder or Hub id."
        )


def load_recognizer(model: str | None, revision: str | None = None):
    """The entity recognizer's pipeline (or None), and the message that says why there is none."""
    if not model:
        return None, (
            "No entity recognizer is loaded: train one (`train_accelerate.py --method mmib --dataset twitter2017 "
            "--data_dir ...`, or `--dataset demo-mner`) and set `MRE_NER_MODEL` to its folder or Hub id."
        )
    try:
        return pipeline(model=model, revision=revision, trust_remote_code=True), None
    except (OSError, ValueError) as error:
        return None, f"No entity recognizer could be loaded from `{model}` ({error}); set `MRE_NER_MODEL` to another."


def demo_examples(model: str) -> list[list]:
    """The first validation rows of the demo data written beside a local model: [text, head, tail, image]."""
    data = Path(model) / "demo_data"
    if not (data / "ours_val.txt").is_file():
        return []
    rows = []
    for line in (data / "ours_val.txt").read_text().splitlines()[:NUM_EXAMPLES]:
        record = ast.literal_eval(line)
        image = data / "img_org" / "val" / record["img_id"]
        rows.append([" ".join(record["token"]), record["h"]["name"], record["t"]["name"], str(image)])
    return rows


def entity_choices(text: str) -> list[str]:
    """Candidate entities to pick from the text, in order of appearance, each once."""
    return list(dict.fromkeys(match.group() for match in ENTITY_PATTERN.finditer(text or "")))


def parse_box(box: str) -> list[float] | None:
    """'x0, y0, x1, y1' (pixels, or fractions of the image) as four numbers; empty means no box."""
    if not box or not box.strip():
        return None
    values = [value for value in re.split(r"[,\s]+", box.strip()) if value]
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        numbers = []
    if len(numbers) != 4:
        raise gr.Error(f"The box needs four numbers x0, y0, x1, y1; got {box!r}")
    return numbers


def parse_candidates(lines: str) -> dict[str, str | None] | None:
    """'name: description' per line (a bare name keeps the model's own description); empty means the model's set."""
    candidates = {}
    for line in (lines or "").splitlines():
        if line.strip():
            name, _, description = line.partition(":")
            candidates[name.strip()] = description.strip() or None
    return candidates or None


def build_demo(
    model: str, revision: str | None = None, ner_model: str | None = None, ner_revision: str | None = None
) -> gr.Blocks:
    extractor, problem = load_extractor(model, revision)
    with gr.Blocks(title="Multimodal relation extraction") as demo:
        gr.Markdown("# Multimodal relation extraction")
        if extractor is None:
            gr.Markdown(problem, elem_id="problem")
            return demo
        config = extractor.model.config
        relations = [config.id2label[i] for i in range(config.num_labels)]
        retrieval = hasattr(extractor.model, "set_relations")
        gr.Markdown(
            f"Model `{model}`: method **{config.model_type}**, {len(relations)} relations"
            + ("" if getattr(config, "vision_config", None) is not None else "; it reads the text only")
            + (". New relations can be described below (retrieval)." if retrieval else ".")
        )

        def extract(text, head, tail, image, box, candidates, top_k):
            if not text or not head or not tail:
                raise gr.Error("Give a text, a head entity and a tail entity")
            box = parse_box(box)
            if box is not None and image is None:
                raise gr.Error("A box places the tail in the image: upload the image too")
            tail = {"name": tail, "box": box} if box is not None else tail
            candidates = parse_candidates(candidates) if retrieval else None
            try:
                ranked = extractor(
                    text=text, head=head, tail=tail, image=image, top_k=int(top_k), candidate_relations=candidates
                )
            except (ValueError, TypeError, OSError) as error:  # the pipeline's messages name what is wrong
                raise gr.Error(str(error)) from error
            details = f"**{ranked[0]['relation']}** ({ranked[0]['score']:.1%})"
            if "image_weight" in ranked[0]:
                details += f"; took from the image: {ranked[0]['image_weight']:.2f} (0 = the text alone)"
            return {result["relation"]: result["score"] for result in ranked}, details

        def extract_all(text, entities, image, threshold):
            if not text or len(entities or []) < 2:
                raise gr.Error("Give a text and at least two of its entities")
            try:
                found = extractor(text=text, entities=list(entities), image=image, threshold=threshold or None)
            except (ValueError, TypeError, OSError) as error:
                raise gr.Error(str(error)) from error
            return [[pair["head"], pair["tail"], pair["relation"], round(pair["score"], 4)] for pair in found]

        with gr.Tab("One pair"):
            with gr.Row():
                with gr.Column():
                    text = gr.Textbox(label="Text", lines=3, elem_id="text")
                    # The examples' entities are choices from the start, so that the examples table shows them.
                    examples = demo_examples(model)
                    known = list(dict.fromkeys(entity for row in examples for entity in row[1:3]))
                    with gr.Row():
                        head = gr.Dropdown(
                            known,
                            value=None,
                            label="Head entity (type, or pick from the text)",
                            allow_custom_value=True,
                            elem_id="head",
                        )
                        tail = gr.Dropdown(
                            known,
                            value=None,
                            label="Tail entity (type, or pick from the text)",
                            allow_custom_value=True,
                            elem_id="tail",
                        )
                    image = gr.Image(label="Image (optional)", type="pil", elem_id="image")
                    box = gr.Textbox(
                        label="Tail as an object in the image (optional): its box x0, y0, x1, y1",
                        placeholder="in pixels, or fractions of the image",
                        elem_id="box",
                        visible=bool(getattr(config, "object_tails", False)),  # a model trained on MORE's layout
                    )
                    candidates = gr.Textbox(
                        label="Relations for this call, one per line as name: description (optional)",
                        lines=3,
                        visible=retrieval,
                        elem_id="candidates",
                    )
                    top_k = gr.Slider(1, len(relations), value=min(5, len(relations)), step=1, label="Relations shown")
                    submit = gr.Button("Extract", variant="primary", elem_id="submit")
                with gr.Column():
                    scores = gr.Label(label="Relation scores", elem_id="scores")
                    details = gr.Markdown(elem_id="details")
            if examples:
                gr.Examples(examples, inputs=[text, head, tail, image], label="Examples from the demo data")
            text.change(lambda t: [gr.Dropdown(choices=entity_choices(t))] * 2, text, [head, tail])
            submit.click(
                extract, [text, head, tail, image, box, candidates, top_k], [scores, details], api_name="extract"
            )

        with gr.Tab("Whole post"):
            with gr.Row():
                with gr.Column():
                    post = gr.Textbox(label="Text", lines=3, elem_id="post")
                    entities = gr.Dropdown(
                        label="Entities (type, or pick from the text)",
                        multiselect=True,
                        allow_custom_value=True,
                        elem_id="entities",
                    )
                    post_image = gr.Image(label="Image (optional)", type="pil", elem_id="post_image")
                    threshold = gr.Slider(
                        0, 1, value=0, step=0.05, label="Leave out pairs scoring under (0: keep all)"
                    )
                    submit_post = gr.Button("Extract every pair", variant="primary", elem_id="submit_post")
                pairs = gr.Dataframe(headers=["head", "tail", "relation", "score"], label="Pairs", elem_id="pairs")
            post.change(lambda t: gr.Dropdown(choices=entity_choices(t), value=entity_choices(t)), post, entities)
            submit_post.click(extract_all, [post, entities, post_image, threshold], pairs, api_name="extract_all")

        recognizer, ner_problem = load_recognizer(ner_model, ner_revision)

        def recognise_and_relate(text, image, threshold):
            if not text or not text.strip():
                raise gr.Error("Give the post's text")
            try:
                found = recognizer(text=text, image=image)
                related = extractor(text=text, image=image, ner_model=recognizer, threshold=threshold or None)
            except (ValueError, TypeError, OSError) as error:
                raise gr.Error(str(error)) from error
            entity_rows = [[e["word"], e["entity_group"], round(e["score"], 4), e["start"], e["end"]] for e in found]
            pair_rows = [
                [p["head"], p["head_type"], p["tail"], p["tail_type"], p["relation"], round(p["score"], 4)]
                for p in related
            ]
            return entity_rows, pair_rows

        with gr.Tab("Entities and relations"):
            if recognizer is None:
                gr.Markdown(ner_problem, elem_id="ner_problem")
            else:
                gr.Markdown(f"Entities by `{ner_model}` ({recognizer.model.config.model_type}), read with the image.")
                with gr.Row():
                    with gr.Column():
                        ner_post = gr.Textbox(label="Text", lines=3, elem_id="ner_post")
                        ner_image = gr.Image(label="Image (optional)", type="pil", elem_id="ner_image")
                        ner_threshold = gr.Slider(
                            0, 1, value=0, step=0.05, label="Leave out pairs scoring under (0: keep all)"
                        )
                        submit_ner = gr.Button("Find entities and relations", variant="primary", elem_id="submit_ner")
                    with gr.Column():
                        found_entities = gr.Dataframe(
                            headers=["entity", "type", "score", "start", "end"],
                            label="Entities",
                            elem_id="found_entities",
                        )
                        related_pairs = gr.Dataframe(
                            headers=["head", "head type", "tail", "tail type", "relation", "score"],
                            label="Relations",
                            elem_id="related_pairs",
                        )
                submit_ner.click(
                    recognise_and_relate,
                    [ner_post, ner_image, ner_threshold],
                    [found_entities, related_pairs],
                    api_name="entities_and_relations",
                )
    return demo


if __name__ == "__main__":
    # On a Space, GRADIO_SERVER_NAME is 0.0.0.0; here gradio's default serves 127.0.0.1 only.
    build_demo(
        os.environ.get("MRE_MODEL", str(DEFAULT_MODEL)),
        os.environ.get("MRE_MODEL_REVISION") or None,
        os.environ.get("MRE_NER_MODEL") or None,
        os.environ.get("MRE_NER_MODEL_REVISION") or None,
    ).launch()
