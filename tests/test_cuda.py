"""
What only a GPU shows: every registered method in bfloat16 on CUDA (processor outputs as they come,
float32 pixels on the CPU, moved with `.to(device)`), a mixed-precision training step, the feature
cache computed on the GPU, and the pipeline of a saved remote-code folder on `device=0` in bfloat16.
Run on a machine with CUDA; elsewhere these tests skip, saying so.
"""

import pytest
import torch
from method_contract import build_model, encode, multimodal
from transformers import pipeline

from modeling_mre import METHODS, PIPELINE_TASK, save_hub_folder


pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")


@pytest.fixture(params=sorted(METHODS))
def method_class(request):
    return METHODS[request.param]


def test_bfloat16_forward_on_cuda(method_class, processor):
    model = build_model(method_class, processor, object_tails=multimodal(method_class)).eval()
    batch = encode(processor, object_tails=multimodal(method_class))
    with torch.no_grad():
        reference = model(**batch).logits
        model.to("cuda", torch.bfloat16)
        logits = model(**batch.to("cuda")).logits
    assert logits.device.type == "cuda" and logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float().cpu(), reference, atol=0.1, rtol=0.1)


def test_mixed_precision_training_step_on_cuda(method_class, processor):
    model = build_model(method_class, processor, object_tails=multimodal(method_class)).cuda().train()
    batch = {**encode(processor, object_tails=multimodal(method_class)), "labels": torch.tensor([1, 0, 3])}
    batch = {key: value.cuda() for key, value in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_cached_features_on_cuda_equal_pixels(processor):
    model = build_model(METHODS["mmib"], processor).cuda().eval()
    batch = encode(processor).to("cuda")
    with torch.no_grad():
        features = {
            "image_features": model.get_image_features(batch["pixel_values"]),
            "crop_features": model.get_image_features(batch["crop_pixel_values"].flatten(0, 1)).unflatten(0, (3, -1)),
        }
        text = {
            key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids", "image_mask", "crop_mask")
        }
        torch.testing.assert_close(model(**text, **features).logits, model(**batch).logits)


def test_pipeline_on_cuda_in_bfloat16(processor, tmp_path):
    model = build_model(METHODS["mmib"], processor).eval()
    save_hub_folder(model, processor, tmp_path / "model")
    extract = pipeline(
        PIPELINE_TASK, model=str(tmp_path / "model"), trust_remote_code=True, device=0, dtype=torch.bfloat16
    )
    from method_contract import picture

    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    on_cpu = pipeline(PIPELINE_TASK, model=str(tmp_path / "model"), trust_remote_code=True)(example, top_k=4)
    on_cuda = extract(example, top_k=4)
    assert {r["relation"]: r["score"] for r in on_cuda} == pytest.approx(
        {r["relation"]: r["score"] for r in on_cpu}, abs=0.03
    )
