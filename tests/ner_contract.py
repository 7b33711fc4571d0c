"""
The contract every registered entity recognizer (MNER) fulfils, as `method_contract.py` does for the
relation extractors: one suite over each class of `modeling_mre.NER_METHODS` on tiny random backbones,
with batches from a real `MNERProcessor` (conftest.py's `ner_processor`) that mix posts with and without an image, with and without
crops, and a post longer than one window.
"""

import json
import textwrap

import pytest
import torch
from method_contract import (
    TINY_TEXT,
    TINY_VISION,
    check_lora_round_trip,
    multimodal,
    picture,
    run_in_a_fresh_python,
    save_again_as_remote_code,
)
from transformers import AutoModelForTokenClassification, pipeline

from modeling_mre import NER_PIPELINE_TASK, NER_TAGS
from modeling_mre.hub import save_hub_folder
from modeling_mre.hub.cards import method_card_texts
from modeling_mre.training import encoder_parameter_ids, lora_config, parameter_groups


POSTS = [
    ["obama", "visits", "berlin", "today"],
    ["merkel", "\ufe0f", "with", "obama"],  # a word of invisible characters: no subword of its own
    ["a", "b", "obama", "visits", "berlin", "today", "with", "merkel", "the", "a"],  # longer than one window
]
TAGS = [[3, 0, 7, 0], [3, 0, 0, 3], [0, 0, 3, 4, 7, 0, 0, 3, 0, 0]]


def build_tagger(ner_class, processor, **overrides):
    kwargs = dict(
        text_config={**TINY_TEXT, "vocab_size": len(processor.tokenizer)},
        num_labels=len(NER_TAGS),
        id2label=dict(enumerate(NER_TAGS)),
        label2id={tag: i for i, tag in enumerate(NER_TAGS)},
    )
    if multimodal(ner_class):
        kwargs["vision_config"] = TINY_VISION
    torch.manual_seed(0)
    return ner_class(ner_class.config_class(**{**kwargs, **overrides}))


def encode(processor, labels: bool = False, crops: bool = True):
    """The three posts: an image with two crops; no image; an image with one crop (and two windows)."""
    return processor(
        tokens=POSTS,
        images=[picture(0), None, picture(1)],
        crops=[[picture(2), picture(3)], [], [picture(4)]] if crops else None,
        word_labels=TAGS if labels else None,
    )


def window(batch, index: int) -> dict:
    """Window `index` of a processor batch, alone, its padding dropped."""
    length = int(batch["attention_mask"][index].sum())
    sequences = ("input_ids", "attention_mask", "token_type_ids", "first_subword_mask", "labels")
    return {
        key: value[index : index + 1, :length] if key in sequences else value[index : index + 1]
        for key, value in batch.items()
    }


class NERMethodContract:
    def test_declarations(self, ner_class, ner_processor):
        assert ner_class.task == "token-classification" and ner_class.config_class.model_type.startswith("mre-")
        assert all(method_card_texts(ner_class))
        config = build_tagger(ner_class, ner_processor).config
        assert type(AutoModelForTokenClassification.from_config(config)) is ner_class

    def test_remote_code_pipeline_in_a_fresh_process(self, ner_class, ner_processor, tmp_path):
        model = build_tagger(ner_class, ner_processor).eval()
        save_hub_folder(model, ner_processor, tmp_path / "model")
        picture(0).save(tmp_path / "photo.png")
        texts = [" ".join(words) for words in POSTS]
        script = textwrap.dedent(
            f"""
            import json, sys
            sys.modules["modeling_mre"] = None  # nothing of the package may be importable
            from transformers import AutoModel, AutoModelForTokenClassification, pipeline
            assert type(AutoModel.from_pretrained("model", trust_remote_code=True)).__name__ == {ner_class.__name__!r}
            recognise = pipeline(model="model", trust_remote_code=True)
            posts = [{{"text": text, "image": "photo.png" if i != 1 else None}} for i, text in enumerate({texts!r})]
            print(json.dumps(recognise(posts, batch_size=3, aggregation_strategy="none")))
            """
        )
        output = run_in_a_fresh_python(script, tmp_path)
        recognise = pipeline(NER_PIPELINE_TASK, model=model, processor=ner_processor)
        expected = [
            recognise(text=text, image=str(tmp_path / "photo.png") if i != 1 else None, aggregation_strategy="none")
            for i, text in enumerate(texts)
        ]
        found = json.loads(output.strip().splitlines()[-1])
        assert [[(w["entity"], w["start"], w["end"]) for w in post] for post in found] == [
            [(w["entity"], w["start"], w["end"]) for w in post] for post in expected
        ]

    def test_a_remote_code_folder_saved_again_stays_whole(self, ner_class, ner_processor, tmp_path):
        # As method_contract's: nothing registered the task there, so the pipeline comes from the folder's config.
        model = build_tagger(ner_class, ner_processor).eval()
        save_hub_folder(model, ner_processor, tmp_path / "model")
        found = save_again_as_remote_code(
            tmp_path,
            "AutoModelForTokenClassification",
            'json.dumps([word["entity"] for word in run(text="obama visits berlin today", aggregation_strategy="none")])',
        )
        recognise = pipeline(NER_PIPELINE_TASK, model=model, processor=ner_processor)
        expected = [
            word["entity"] for word in recognise(text="obama visits berlin today", aggregation_strategy="none")
        ]
        assert json.loads(found) == expected

    def test_each_window_alone_equals_batched(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        batch = encode(ner_processor)
        assert len(batch["input_ids"]) == 4  # the long post takes two windows
        with torch.no_grad():
            together = model(**batch).logits
            for index in range(len(together)):
                alone = model(**window(batch, index)).logits[0]
                length = alone.shape[0]
                torch.testing.assert_close(alone, together[index, :length], atol=1e-5, rtol=1e-5)

    def test_missing_image_and_missing_crops(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        batch = encode(ner_processor)
        text = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids", "first_subword_mask")}
        with torch.no_grad():
            full = model(**batch).logits
            text_only = model(**text).logits
            without_crops = model(**encode(ner_processor, crops=False)).logits
        torch.testing.assert_close(full[1], text_only[1], atol=1e-5, rtol=1e-5)  # the post without pictures
        torch.testing.assert_close(full[1], without_crops[1], atol=1e-5, rtol=1e-5)
        if multimodal(ner_class):
            assert not torch.allclose(full[0], text_only[0], atol=1e-4)
        else:
            torch.testing.assert_close(full, text_only)

    def test_the_loss_reads_every_word_at_its_first_subword(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        batch = encode(ner_processor, labels=True)
        with torch.no_grad():
            outputs = model(**batch)
            assert torch.isfinite(outputs.loss)
            moved = batch["labels"].clone()
            moved[batch["labels"] >= 0] = (moved[batch["labels"] >= 0] + 1) % len(NER_TAGS)
            assert not torch.allclose(
                model(**{**batch, "labels": moved}).classification_loss, outputs.classification_loss
            )
            missing = batch["labels"].clone()
            missing[0, 1] = -100  # a first subword without its tag
            with pytest.raises(ValueError, match="every word needs its tag"):
                model(**{**batch, "labels": missing})

    def test_auxiliary_losses_are_returned_unweighted_and_weighted_by_the_config(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        batch = encode(ner_processor, labels=True)
        with torch.no_grad():
            outputs = model(**batch)
            expected = outputs.classification_loss + sum(
                getattr(model.config, field) * outputs[name] for name, field in ner_class.auxiliary_losses.items()
            )
            torch.testing.assert_close(outputs.loss, expected)
            for name, weight_field in ner_class.auxiliary_losses.items():
                setattr(model.config, weight_field, 0.0)
                without = model(**batch).loss
                setattr(model.config, weight_field, 1.0)
                torch.testing.assert_close(model(**batch).loss - without, outputs[name], atol=1e-4, rtol=1e-4)

    def test_return_dict_false_gives_the_outputs_tuple(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        batch = encode(ner_processor, labels=True)
        with torch.no_grad():
            outputs = model(**batch)
            as_tuple = model(**batch, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == len(outputs.to_tuple())
        for value, expected in zip(as_tuple, outputs.to_tuple()):
            torch.testing.assert_close(value, expected)

    def test_output_hidden_states_and_attentions_are_the_text_encoders_on_the_input(self, ner_class, ner_processor):
        from method_contract import check_text_encoder_states

        check_text_encoder_states(
            build_tagger(ner_class, ner_processor, attn_implementation="eager").eval(), encode(ner_processor)
        )

    def test_fusion_attention_follows_the_attention_implementation(self, ner_class, ner_processor):
        from method_contract import check_attention_implementations

        check_attention_implementations(build_tagger(ner_class, ner_processor).eval(), encode(ner_processor))

    def test_pipeline_mixed_batches_equal_one_by_one(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).eval()
        recognise = pipeline(NER_PIPELINE_TASK, model=model, processor=ner_processor)
        posts = [{"text": " ".join(words), "image": picture(i) if i != 1 else None} for i, words in enumerate(POSTS)]
        alone = [recognise(post, aggregation_strategy="none") for post in posts]
        for batch_size in (3, 2):
            batched = recognise(posts, batch_size=batch_size, aggregation_strategy="none")
            for ours, reference in zip(batched, alone, strict=True):
                assert [(w["entity"], w["index"]) for w in ours] == [(w["entity"], w["index"]) for w in reference]
                assert [w["score"] for w in ours] == pytest.approx([w["score"] for w in reference], abs=1e-5)
        # bfloat16 weights on the same float32 inputs: each word's probabilities as in float32.
        full = model(**encode(ner_processor)).logits
        half = model.to(torch.bfloat16)(**encode(ner_processor)).logits
        assert half.dtype == torch.bfloat16
        mask = encode(ner_processor)["first_subword_mask"]
        torch.testing.assert_close(half.float().softmax(-1)[mask], full.softmax(-1)[mask], atol=0.03, rtol=0)

    def test_lora_adapter_reload_equals_merged_model(self, ner_class, ner_processor, tmp_path):
        model = build_tagger(ner_class, ner_processor).eval()
        check_lora_round_trip(model, lora_config(model, []), encode(ner_processor), tmp_path)

    def test_one_training_step_reaches_every_trainable_parameter(self, ner_class, ner_processor):
        model = build_tagger(ner_class, ner_processor).train()
        model(**encode(ner_processor, labels=True)).loss.backward()
        missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, missing
        groups = parameter_groups(model, encoder_parameter_ids(model), 5e-5, 1e-3)
        assert {id(p) for p in model.crf.parameters()} <= {
            id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]
        }

    def test_each_ablation_removes_its_part_and_still_trains(self, ner_class, ner_processor):
        full = build_tagger(ner_class, ner_processor)
        for part, switch in ner_class.ablations.items():
            model = build_tagger(ner_class, ner_processor, **{switch: False}).train()
            assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters()), part
            model(**encode(ner_processor, labels=True)).loss.backward()
            missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, (part, missing)

    def test_a_reloaded_model_trains_as_the_saved_one(self, ner_class, ner_processor, tmp_path):
        model = build_tagger(ner_class, ner_processor)
        model.save_pretrained(tmp_path / "model")
        reloaded = type(model).from_pretrained(tmp_path / "model")
        batch = encode(ner_processor, labels=True)
        steps = []
        for candidate in (model, reloaded):
            candidate.train()
            optimizer = torch.optim.AdamW([p for p in candidate.parameters() if p.requires_grad], lr=1e-2)
            torch.manual_seed(1)
            outputs = candidate(**batch)
            outputs.loss.backward()
            optimizer.step()
            steps.append((outputs.loss.detach(), dict(candidate.named_parameters())))
        (loss, parameters), (reloaded_loss, reloaded_parameters) = steps
        torch.testing.assert_close(reloaded_loss, loss)
        for name, parameter in parameters.items():
            torch.testing.assert_close(reloaded_parameters[name], parameter, msg=name)
