"""
The contract every registered method fulfils, as transformers' `ModelTesterMixin`: one suite run
over each method on tiny random backbones. `test_contract.py` runs it over `modeling_mre.METHODS`,
so a method that registers inherits all of it; `test_adding_a_method.py` runs it on a method added
by following `docs/adding-a-method.md`.

A subclass provides the fixture `method_class`. Batches come from a real `MREProcessor` (the tiny
vocabulary of conftest.py) and mix what users give: an image or none, crops or none, and for object
tails (MORE) a box with its crop or a text tail.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from modeling_mre.data.feature_cache import add_image_features, can_cache_image_features
from modeling_mre.data.schema import record_features
from modeling_mre.hub import save_hub_folder
from modeling_mre.hub.cards import method_card_texts
from modeling_mre.models import MREVisualModel
from modeling_mre.training import encoder_parameter_ids, lora_config, make_collate_fn, parameter_groups


# 48 wide: divisible by the head counts methods default to (12 for MMIB) and by the tiny ones.
TINY_TEXT = dict(model_type="bert", hidden_size=48, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
TINY_VISION = dict(
    model_type="clip_vision_model",
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    image_size=32,
    patch_size=16,
)
NUM_LABELS = 4
# Relation names in the tiny vocabulary: a retrieval method (ROC) embeds descriptions built from them.
RELATIONS = ["None", "visits", "with", "today"]
SHARED_REMOTE_CODE = {
    "configuration_mre.py",
    "modeling_mre.py",
    "layers_mre.py",
    "processing_mre.py",
    "pipeline_mre.py",
    "images_mre.py",
}


def picture(seed: int, size: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def build_model(method_class, processor, **overrides):
    kwargs = dict(
        text_config={**TINY_TEXT, "vocab_size": len(processor.tokenizer)},
        num_labels=NUM_LABELS,
        id2label=dict(enumerate(RELATIONS)),
        label2id={name: i for i, name in enumerate(RELATIONS)},
        **processor.marker_config(),
    )
    if method_class.visual_features is not None:
        kwargs["vision_config"] = TINY_VISION
        if method_class.visual_features == "levels":
            kwargs["vision_feature_layers"] = [1, 2]
    torch.manual_seed(0)
    model = method_class(method_class.config_class(**{**kwargs, **overrides}))
    model.use_tokenizer(processor.tokenizer)
    return model


def encode(processor, object_tails: bool = False, crops: bool = True):
    """Three posts, padded to the longest: an image with two crops, no image at all, an image with one crop.
    With `object_tails`, the first and last tails are boxes in the image and the middle one a text tail."""
    texts = ["obama visits berlin today with merkel", "merkel with obama", "the berlin visits today a b c d"]
    heads, tails = ["obama", "merkel", "berlin"], ["berlin", "obama", "today"]
    if object_tails:
        tails = [{"name": "w", "box": [0.1, 0.2, 0.6, 0.9]}, "obama", {"name": "x", "box": [4, 4, 30, 20]}]
    return processor(
        text=texts,
        head=heads,
        tail=tails,
        images=[picture(0), None, picture(1)],
        crops=[[picture(2), picture(3)], [], [picture(4)]] if crops else None,
    )


# What float16 storage of cached image features costs the logits, against float32 (exact).
FLOAT16_FEATURE_TOLERANCE = dict(atol=1e-3, rtol=1e-3)


def dataset_rows() -> datasets.Dataset:
    """The posts of `encode(object_tails=True)` as dataset rows (MORE's record schema; boxes as centres)."""

    def span(name, start):
        return {"name": name, "start": start, "end": start + 1}

    def box_tail(name):
        return {"name": name, "start": None, "end": None}

    rows = {
        "id": ["0", "1", "2"],
        "tokens": [
            text.split()
            for text in (
                "obama visits berlin today with merkel",
                "merkel with obama",
                "the berlin visits today a b c d",
            )
        ],
        "head": [span("obama", 0), span("merkel", 0), span("berlin", 1)],
        "tail": [box_tail("w"), span("obama", 2), box_tail("x")],
        "tail_box": [[0.35, 0.55, 0.5, 0.7], None, [0.6, 0.3, 0.3, 0.4]],
        "tail_caption": [None] * 3,
        "image": [picture(0), None, picture(1)],
        "image_id": ["a.jpg", "", "b.jpg"],
        "crops": [[picture(2), picture(3)], [], [picture(4)]],
        "relation": [1, 0, 2],
    }
    return datasets.Dataset.from_dict(rows, features=record_features(RELATIONS, object_tails=True))


def row(batch, index: int) -> dict:
    """Example `index` of a processor batch, alone, its padding dropped."""
    length = int(batch["attention_mask"][index].sum())
    return {
        key: value[index : index + 1, :length]
        if key in ("input_ids", "attention_mask", "token_type_ids")
        else value[index : index + 1]
        for key, value in batch.items()
    }


def check_lora_round_trip(model, config, batch, tmp_path):
    """A LoRA adapter over `model`, saved and reloaded over the saved base, gives the adapted and the merged logits."""
    from peft import PeftModel, get_peft_model

    model.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, config).eval()  # LoRA's dropout too
    with torch.no_grad():  # LoRA's B starts at zero: give the adapter something to carry
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    peft_model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        adapted = peft_model(**batch).logits
        merged = peft_model.merge_and_unload()(**batch).logits
        base = type(model).from_pretrained(tmp_path / "base").eval()
        base_logits = base(**batch).logits
        reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()(**batch).logits
    torch.testing.assert_close(reloaded, adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base_logits, adapted, atol=1e-4)


def check_text_encoder_states(model, batch):
    """
    `output_hidden_states` / `output_attentions` give the text encoder's, on the batch's text, in the
    tuple too; attentions where the encoder can give them (eager), a clear error where it cannot.
    """
    gives_attentions = model.text_encoder.config._attn_implementation == "eager"
    wanted = {"output_hidden_states": True, "output_attentions": gives_attentions}
    # No pictures: a method whose encoder also reads them (DFMA's prompts) reads the text alone then.
    text = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
    batch = {key: value for key, value in batch.items() if key in text or key == "first_subword_mask"}
    with torch.no_grad():
        plain = model(**batch)
        outputs = model(**batch, **wanted)
        direct = model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **wanted)
        as_tuple = model(**batch, output_hidden_states=True, return_dict=False)
    assert plain.hidden_states is None and plain.attentions is None
    assert len(outputs.hidden_states) == model.text_encoder.config.num_hidden_layers + 1
    recorded = outputs.hidden_states + (outputs.attentions or ())
    for ours, theirs in zip(recorded, direct.hidden_states + (direct.attentions or ()), strict=True):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(outputs.logits, plain.logits)
    assert len(as_tuple) == len(plain.to_tuple()) + 1
    if gives_attentions:
        assert len(outputs.attentions) == model.text_encoder.config.num_hidden_layers
    else:
        with pytest.raises(ValueError, match="eager"):
            model(**batch, output_attentions=True)
    assert not model.text_encoder.config.output_hidden_states  # the encoder's config is as it was


def check_attention_implementations(model, batch):
    """The fusion layers attend through transformers' interface: sdpa by default, eager after set_attn_implementation, the same outputs."""
    assert model.config._attn_implementation == "sdpa"
    calls = []
    for module in model.modules():
        if type(module).__module__.startswith("modeling_mre") and hasattr(module, "is_causal"):  # a fusion layer's
            module.register_forward_hook(lambda layer, *_: calls.append(layer.config._attn_implementation))
    with torch.no_grad():
        sdpa = model(**batch).logits
        model.set_attn_implementation("eager")
        eager = model(**batch).logits
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-4)
    if calls:  # a method with fusion layers ran them under each implementation
        assert set(calls) == {"sdpa", "eager"}


def two_cpu_processes() -> tuple[str, ...]:
    """`accelerate launch` as two CPU processes on one machine (the DDP path, gloo, with no GPU)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))  # the venv's CLI, activated or not
    return (
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    )


def run_in_a_fresh_python(script: str, folder) -> str:
    """
    What `script` prints, run by a new interpreter in `folder` as a user's machine would run a saved model:
    offline, with nothing of this environment but PATH and a HOME of its own.
    """
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def save_again_as_remote_code(tmp_path, auto_class: str, prediction: str) -> str:
    """
    As after further fine-tuning where modeling_mre cannot be imported: `tmp_path/model` loaded with remote
    code (`auto_class`), its processor and model saved again to `tmp_path/again`, which must hold the same
    code and name the same pipeline and classes; returns what `prediction`, an expression of the pipeline `run` loaded from `again`, prints.
    """
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling_mre"] = None
        from transformers import {auto_class}, AutoProcessor, pipeline
        model = {auto_class}.from_pretrained("model", trust_remote_code=True).eval()
        AutoProcessor.from_pretrained("model", trust_remote_code=True).save_pretrained("again")
        model.save_pretrained("again")
        run = pipeline(model="again", trust_remote_code=True)
        print({prediction})
        """
    )
    output = run_in_a_fresh_python(script, tmp_path)
    assert {p.name for p in (tmp_path / "again").glob("*.py")} == {p.name for p in (tmp_path / "model").glob("*.py")}
    first, again = (json.loads((tmp_path / name / "config.json").read_text()) for name in ("model", "again"))
    assert (again["custom_pipelines"], again["auto_map"]) == (first["custom_pipelines"], first["auto_map"])
    return output.strip().splitlines()[-1]


def multimodal(method_class) -> bool:
    return method_class.visual_features is not None


class MethodContract:
    def test_declarations(self, method_class):
        assert method_class.method_name and method_class.paper.title
        assert method_class.config_class.model_type.startswith("mre-")
        # A forgotten card text fails here, not at publishing time.
        assert all(method_card_texts(method_class))
        assert multimodal(method_class) == issubclass(method_class, MREVisualModel)

    def test_saved_folder_holds_exactly_its_remote_code(self, method_class, processor, tmp_path):
        model = build_model(method_class, processor).eval()
        written = save_hub_folder(model, processor, tmp_path / "model")
        expected = SHARED_REMOTE_CODE | {
            sys.modules[method_class.__module__].__file__.rsplit("/", 1)[-1],
            sys.modules[method_class.config_class.__module__].__file__.rsplit("/", 1)[-1],
        }
        if multimodal(method_class):
            expected.add("visual_mre.py")
        assert {name for name in written if name.endswith(".py")} == expected

    def test_remote_code_reload_in_a_fresh_process(self, method_class, processor, tmp_path):
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval()
        save_hub_folder(model, processor, tmp_path / "model")
        batch = dict(encode(processor, object_tails=multimodal(method_class)))
        save_file({key: value.contiguous() for key, value in batch.items()}, tmp_path / "inputs.safetensors")
        script = textwrap.dedent(
            """
            import sys
            sys.modules["modeling_mre"] = None  # nothing of the package may be importable
            import torch
            from safetensors.torch import load_file, save_file
            from transformers import AutoModel
            model = AutoModel.from_pretrained("model", trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
            with torch.no_grad():
                logits = model(**load_file("inputs.safetensors")).logits
            save_file({"logits": logits.contiguous()}, "logits.safetensors")
            """
        )
        run_in_a_fresh_python(script, tmp_path)
        with torch.no_grad():
            expected = model(**batch).logits
        torch.testing.assert_close(
            load_file(tmp_path / "logits.safetensors")["logits"], expected, atol=1e-5, rtol=1e-5
        )

    def test_a_remote_code_folder_saved_again_stays_whole(self, method_class, processor, tmp_path):
        # As after further fine-tuning: loaded with remote code, saved again, loaded again by every entry point.
        model = build_model(method_class, processor).eval()
        save_hub_folder(model, processor, tmp_path / "model")
        relation = save_again_as_remote_code(
            tmp_path, "AutoModel", 'run(text="obama visits berlin today", head="obama", tail="berlin")[0]["relation"]'
        )
        inputs = processor(text="obama visits berlin today", head="obama", tail="berlin")
        with torch.no_grad():
            expected = model.config.id2label[int(model(**inputs).logits.argmax())]
        assert relation == expected

    def test_pipeline_mixed_batches_equal_one_by_one(self, method_class, processor):
        from transformers import pipeline

        from modeling_mre import PIPELINE_TASK

        model = build_model(method_class, processor, object_tails=True).eval()
        extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
        inputs = [
            {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)},
            {"text": "merkel with obama", "head": (0, 6), "tail": "obama"},  # no image
            {
                "text": "the berlin visits",
                "head": "berlin",
                "tail": {"name": "w", "box": [2, 3, 30, 25]},
                "image": np.asarray(picture(1)),
            },
            {"text": "a b c d x y", "head": "a", "tail": {"name": "y", "box": [0.1, 0.1, 0.5, 0.9]}, "image": None},
        ]
        alone = [extract(example, top_k=2) for example in inputs]
        for batch_size in (4, 3):  # 3: a partial last batch
            batched = extract(inputs, batch_size=batch_size, top_k=2)
            for ours, reference in zip(batched, alone, strict=True):
                assert [(r["relation"], r["tail"]) for r in ours] == [(r["relation"], r["tail"]) for r in reference]
                assert [r["score"] for r in ours] == pytest.approx([r["score"] for r in reference], abs=1e-5)
        assert [result[0]["tail"] for result in alone] == [example["tail"] for example in inputs]
        # In bfloat16 too, from the same float32 processor output: every relation's score as in float32.
        full = [{r["relation"]: r["score"] for r in result} for result in extract(inputs, top_k=NUM_LABELS)]
        half = pipeline(PIPELINE_TASK, model=model.to(torch.bfloat16), processor=processor)
        for result, reference in zip(half(inputs, batch_size=4, top_k=NUM_LABELS), full, strict=True):
            assert {r["relation"]: r["score"] for r in result} == pytest.approx(reference, abs=0.03)

    def test_missing_image_and_missing_crops(self, method_class, processor):
        model = build_model(method_class, processor).eval()
        batch = encode(processor)
        with torch.no_grad():
            full = model(**batch).logits
            text_only = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            without_crops = model(**encode(processor, crops=False)).logits
            # The second post has neither image nor crops: absent pictures are masked, never read as blank ones.
            no_pictures = model(
                **{
                    **batch,
                    "image_mask": torch.zeros(3, dtype=torch.bool),
                    "crop_mask": torch.zeros(3, 2, dtype=torch.bool),
                }
            ).logits
        torch.testing.assert_close(full[1], text_only[1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(no_pictures, text_only, atol=1e-5, rtol=1e-5)
        if multimodal(method_class):
            assert not torch.allclose(full[0], text_only[0], atol=1e-4)  # the image is read
        else:
            torch.testing.assert_close(full, without_crops)
            torch.testing.assert_close(full, text_only)  # a text-only method ignores pictures
        # The crop-less post is the same whether or not the batch has crops.
        torch.testing.assert_close(full[1], without_crops[1], atol=1e-5, rtol=1e-5)

    def test_each_example_alone_equals_batched(self, method_class, processor):
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval()
        batch = encode(processor, object_tails=multimodal(method_class))
        with torch.no_grad():
            together = model(**batch).logits
            for index in range(len(together)):
                alone = model(**row(batch, index)).logits
                torch.testing.assert_close(alone[0], together[index], atol=1e-5, rtol=1e-5)

    def test_the_feature_cache_gives_the_logits_of_pixels(self, method_class, processor, tmp_path):
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval()
        if not multimodal(method_class):
            assert not can_cache_image_features(model)
            return
        assert can_cache_image_features(model)
        rows = dataset_rows()
        with torch.no_grad():
            from_pixels = model(**make_collate_fn(processor, uses_images=True)(list(rows))).logits
            for dtype, tolerance in ((torch.float32, {}), (torch.float16, FLOAT16_FEATURE_TOLERANCE)):
                keyed, cache = add_image_features(rows, model, processor, dtype=dtype, cache_dir=tmp_path)
                batch = make_collate_fn(processor, uses_images=True, image_feature_cache=cache)(list(keyed))
                assert "pixel_values" not in batch and batch["tail_features"].shape == (3, model.image_feature_size)
                torch.testing.assert_close(model(**batch).logits, from_pixels, **tolerance)
        assert not can_cache_image_features(build_model(method_class, processor, freeze_vision_encoder=False))

    def test_lora_adapter_reload_equals_merged_model(self, method_class, processor, tmp_path):
        model = build_model(method_class, processor).eval()
        check_lora_round_trip(model, lora_config(model, processor.marker_ids), encode(processor), tmp_path)

    def test_auxiliary_losses_are_returned_unweighted_and_weighted_by_the_config(self, method_class, processor):
        model = build_model(method_class, processor).eval()
        batch = {**encode(processor), "labels": torch.tensor([1, 0, 3])}
        with torch.no_grad():
            outputs = model(**batch)
            assert torch.isfinite(outputs.classification_loss)
            for name, weight_field in method_class.auxiliary_losses.items():
                assert outputs[name].dim() == 0 and torch.isfinite(outputs[name]), name
                setattr(model.config, weight_field, 0.0)
                without = model(**batch).loss
                setattr(model.config, weight_field, 2.0)
                doubled = model(**batch).loss
                setattr(model.config, weight_field, getattr(type(model.config)(), weight_field))
                torch.testing.assert_close(doubled - without, 2 * outputs[name], atol=1e-4, rtol=1e-4)
            expected = outputs.classification_loss + sum(
                getattr(model.config, field) * outputs[name] for name, field in method_class.auxiliary_losses.items()
            )
            torch.testing.assert_close(outputs.loss, expected)

    def test_return_dict_false_gives_the_outputs_tuple(self, method_class, processor):
        model = build_model(method_class, processor).eval()
        batch = {**encode(processor), "labels": torch.tensor([1, 0, 3])}
        with torch.no_grad():
            outputs = model(**batch)
            as_tuple = model(**batch, return_dict=False)
            model.config.return_dict = False  # the config's default, as transformers models take it
            from_config = model(**batch)
        assert isinstance(as_tuple, tuple) and isinstance(from_config, tuple)
        for values in (as_tuple, from_config):
            assert len(values) == len(outputs.to_tuple())
            for value, expected in zip(values, outputs.to_tuple()):
                torch.testing.assert_close(value, expected)

    def test_output_hidden_states_and_attentions_are_the_text_encoders_on_the_input(self, method_class, processor):
        check_text_encoder_states(
            build_model(method_class, processor, attn_implementation="eager").eval(), encode(processor)
        )

    def test_fusion_attention_follows_the_attention_implementation(self, method_class, processor):
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval()
        check_attention_implementations(model, encode(processor, object_tails=multimodal(method_class)))

    def test_bfloat16_forward(self, method_class, processor):
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval().to(torch.bfloat16)
        with torch.no_grad():  # the processor's float32 pixels meet bfloat16 weights
            logits = model(**encode(processor, object_tails=multimodal(method_class))).logits
        assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()

    def test_one_training_step_reaches_every_trainable_parameter(self, method_class, processor):
        # An unused parameter leaves DDP waiting for a gradient that never comes.
        model = build_model(method_class, processor, object_tails=multimodal(method_class)).train()
        batch = {**encode(processor, object_tails=multimodal(method_class)), "labels": torch.tensor([1, 0, 3])}
        model(**batch).loss.backward()
        missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, missing

    def test_training_roles_decide_freezing_and_learning_rates(self, method_class, processor):
        model = build_model(method_class, processor).train()
        roles = model.pretrained_submodules()
        encoder_ids = encoder_parameter_ids(model)
        groups = parameter_groups(model, encoder_ids, 5e-5, 1e-3, weight_decay=0.01)
        at_rate = {rate: {id(p) for g in groups if g["lr"] == rate for p in g["params"]} for rate in (5e-5, 1e-3)}
        for name, role in roles.items():
            submodule = getattr(model, name)
            parameters = {id(p) for p in submodule.parameters()}
            if role == "frozen":
                assert not any(p.requires_grad for p in submodule.parameters()) and not submodule.training
            if role != "frozen":
                assert parameters <= at_rate[5e-5 if role == "encoder" else 1e-3], name
        new_layers = [name for name, child in model.named_children() if name not in roles]
        for name in new_layers:
            assert {id(p) for p in getattr(model, name).parameters()} <= at_rate[1e-3], name
        # Weight decay on weight matrices only: never on a bias or a normalisation weight.
        for group in groups:
            assert all((p.dim() >= 2) == (group["weight_decay"] == 0.01) for p in group["params"])
        decayed = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
        layer_norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert layer_norms and not {id(p) for m in layer_norms for p in m.parameters()} & decayed

    def test_each_ablation_removes_its_part_and_still_trains(self, method_class, processor):
        full = build_model(method_class, processor, object_tails=multimodal(method_class))
        for part, switch in method_class.ablations.items():
            model = build_model(
                method_class, processor, object_tails=multimodal(method_class), **{switch: False}
            ).train()
            assert getattr(model.config, switch) is False
            # A removed part leaves no parameter behind for DDP to wait on.
            assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters()), part
            batch = {**encode(processor, object_tails=multimodal(method_class)), "labels": torch.tensor([1, 0, 3])}
            outputs = model(**batch)
            outputs.loss.backward()
            missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, (part, missing)

    def test_a_reloaded_model_trains_as_the_saved_one(self, method_class, processor, tmp_path):
        # Fine-tuning a folder from the Hub: state the weights do not hold (non-persistent buffers) must
        # come back in `from_pretrained`, or the first training step differs or fails.
        tails = multimodal(method_class)
        model = build_model(method_class, processor, object_tails=tails)
        model.save_pretrained(tmp_path / "model")
        reloaded = type(model).from_pretrained(tmp_path / "model")
        reloaded.use_tokenizer(processor.tokenizer)
        buffers = dict(model.named_buffers())
        for name, buffer in reloaded.named_buffers():
            torch.testing.assert_close(buffer, buffers[name], msg=name)
        batch = {**encode(processor, object_tails=tails), "labels": torch.tensor([1, 0, 3])}
        steps = []
        for candidate in (model, reloaded):
            candidate.train()
            optimizer = torch.optim.AdamW([p for p in candidate.parameters() if p.requires_grad], lr=1e-2)
            torch.manual_seed(1)  # the same dropout masks and samples in both
            outputs = candidate(**batch)
            losses = {name: value for name, value in outputs.items() if name.endswith("loss")}
            assert all(torch.isfinite(value) for value in losses.values()), losses
            outputs.loss.backward()
            optimizer.step()
            steps.append((losses, dict(candidate.named_parameters())))
        (losses, parameters), (reloaded_losses, reloaded_parameters) = steps
        for name, value in losses.items():
            torch.testing.assert_close(reloaded_losses[name], value, msg=name)
        for name, parameter in parameters.items():
            torch.testing.assert_close(reloaded_parameters[name], parameter, msg=name)
