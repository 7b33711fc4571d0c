"""WMAJL's own parts (the contract suite covers what every method shares)."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from method_contract import TINY_TEXT, build_model, encode, picture
from torch.nn import functional as F

from modeling_mre import WMAJLForRelationExtraction


RELATIONS = ["None", "/per/org/member_of", "/per/loc/place_of_residence", "/org/loc/locate_at"]


def wmajl(processor, **overrides):
    return build_model(
        WMAJLForRelationExtraction,
        processor,
        id2label=dict(enumerate(RELATIONS)),
        label2id={name: i for i, name in enumerate(RELATIONS)},
        **overrides,
    )


def test_entity_types_come_from_the_relation_names(processor):
    model = wmajl(processor)
    assert model.config.entity_types == ["loc", "org", "per"]
    assert model.relation_entity_types.tolist() == [[-1, -1], [2, 1], [2, 0], [1, 0]]
    untyped = build_model(WMAJLForRelationExtraction, processor)  # the contract's relation names carry no types
    assert untyped.config.entity_types == ["entity"] and (untyped.relation_entity_types == -1).all()


def test_ner_tags_follow_the_markers_and_type_only_what_the_relation_tells(processor):
    model = wmajl(processor)
    batch = processor(
        text=["obama visits berlin today", "the merkel with obama"],
        head=["obama", "merkel"],
        tail=["berlin today", "obama"],
    )
    tokens = [processor.tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"]]
    allowed = model.ner_tags(batch["input_ids"], torch.tensor([2, 0]))  # /per/loc/..., then None
    tags = ["O", "B-loc", "B-org", "B-per", "I-loc", "I-org", "I-per"]

    def tag_sets(row):
        return {
            token: {tags[i] for i in allowed[row, position].nonzero().flatten().tolist()}
            for position, token in enumerate(tokens[row])
            if token != "[PAD]"
        }

    first = tag_sets(0)
    assert first["obama"] == {"B-per"} and first["berlin"] == {"B-loc"} and first["today"] == {"I-loc"}
    assert first["<s>"] == first["</o>"] == first["visits"] == first["[CLS]"] == {"O"}
    second = tag_sets(1)  # None: the spans are known, their types are not
    assert second["merkel"] == second["obama"] == {"B-loc", "B-org", "B-per"}
    assert second["the"] == {"O"}


def test_ner_finds_the_entities_in_the_text_without_its_markers(processor):
    model = wmajl(processor).eval()
    texts = ["obama visits berlin today", "the merkel with obama"]
    batch = processor(text=texts, head=["obama", "merkel"], tail=["berlin today", "obama"])
    text_mask = batch["attention_mask"].bool()
    ids, mask, _ = model.unmarked_text(batch["input_ids"], text_mask)
    plain = processor.tokenizer(texts, padding="max_length", max_length=ids.shape[1], return_tensors="pt")
    assert ids.tolist() == plain["input_ids"].tolist() and mask.tolist() == plain["attention_mask"].bool().tolist()

    class Tagger(torch.nn.Module):  # a tagger that outputs fixed tags, whatever it reads
        def __init__(self, tags):
            super().__init__()
            self.tags = tags

        def forward(self, states):
            return 30.0 * F.one_hot(self.tags, 1 + 2 * len(model.config.entity_types)).float()

    # tags O, B-loc, B-org, B-per, I-loc, I-org, I-per on [CLS] obama visits berlin today [SEP] / [CLS] the merkel with obama [SEP]
    right = torch.tensor([[0, 3, 0, 1, 4, 0, 0], [0, 0, 3, 0, 2, 0, 0]])[:, : ids.shape[1]]
    labels = torch.tensor([2, 0])  # /per/loc/place_of_residence, None (any type)
    with torch.no_grad():
        model.ner_head = Tagger(right)
        assert model.ner_loss(batch["input_ids"], text_mask, labels) < 1e-6
        model.ner_head = Tagger(torch.roll(right, 1, dims=1))  # the tags where the marked text has them
        assert model.ner_loss(batch["input_ids"], text_mask, labels) > 5


def test_eval_logits_never_depend_on_labels(processor):
    model = wmajl(processor).eval()
    batch = encode(processor)
    with torch.no_grad():
        unlabelled = model(**batch)
        for labels in ([0, 1, 2], [3, 3, 3]):
            labelled = model(**batch, labels=torch.tensor(labels))
            torch.testing.assert_close(labelled.logits, unlabelled.logits, rtol=0, atol=0)
    assert unlabelled.loss is None and unlabelled.ner_loss is None and unlabelled.kl_loss is not None


def test_text_and_image_meet_only_through_the_watchers(processor):
    model = wmajl(processor).eval()
    batch = encode(processor)
    other_pictures = processor(
        text=["a b"] * 3, head=["a"] * 3, tail=["b"] * 3, images=[picture(7), None, picture(8)]
    )["pixel_values"]
    with torch.no_grad():
        reads_image = not torch.allclose(
            model(**batch).logits, model(**{**batch, "pixel_values": other_pictures}).logits
        )
        for layer in model.fusion_layers:  # cut the watchers' way back into the text
            layer.text_reads_watchers.attention.out_proj.weight.zero_()
            layer.text_reads_watchers.attention.out_proj.bias.zero_()
        cut = model(**batch).logits
        torch.testing.assert_close(model(**{**batch, "pixel_values": other_pictures}).logits, cut)
    assert reads_image


def test_each_part_switched_off_returns_zero_for_its_losses(processor):
    batch = {**encode(processor), "labels": torch.tensor([1, 0, 3])}
    switched = {
        "use_modality_alignment": ("kl_loss", "contrastive_loss"),
        "use_position_supervision": ("ner_loss", "intermediate_loss"),
        "use_label_loss": ("label_loss",),
    }
    two_layers = {"text_config": {**TINY_TEXT, "num_hidden_layers": 3, "vocab_size": len(processor.tokenizer)}}
    full = wmajl(processor, **two_layers).eval()(**batch)
    for switch, losses in switched.items():
        outputs = wmajl(processor, **two_layers, **{switch: False}).eval()(**batch)
        for name in losses:
            assert full[name] > 0 and outputs[name] == 0, (switch, name)
    without_watchers = wmajl(processor, use_watcher_fusion=False)
    assert not hasattr(without_watchers, "watcher_tokens") and len(without_watchers.fusion_layers) == 2


def test_output_supervision_reads_the_chosen_intermediate_layers(processor):
    text_config = {**TINY_TEXT, "num_hidden_layers": 3, "vocab_size": len(processor.tokenizer)}
    model = wmajl(processor, text_config=text_config, supervised_layers=[1, 2]).eval()
    assert wmajl(processor, text_config=text_config).config.supervised_layers == [1, 2]  # thirds of 3 layers
    batch = {**encode(processor), "labels": torch.tensor([1, 0, 3])}
    with torch.no_grad():
        outputs = model(**batch)
        hidden_states = model.text_encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states
        expected = []
        for layer in (1, 2):
            states = hidden_states[layer]
            positions = [
                row.tolist().index(marker)
                for marker in (model.config.head_start_token_id, model.config.tail_start_token_id)
                for row in batch["input_ids"]
            ]
            pair = torch.cat([states[range(3), positions[:3]], states[range(3), positions[3:]]], dim=-1)
            expected.append(F.cross_entropy(model.layer_classifiers[layer - 1](pair), batch["labels"]))
    torch.testing.assert_close(outputs.intermediate_loss, torch.stack(expected).mean())
    with pytest.raises(
        StrictDataclassClassValidationError,
        match=r"supervised_layers \[4\] are not layers of the 3-layer text encoder",
    ):
        wmajl(processor, text_config=text_config, supervised_layers=[4])


def test_config_overrides_set_the_switches_and_reject_unknown_fields():
    from modeling_mre import WMAJLConfig
    from modeling_mre.training import parse_config_overrides

    parsed = parse_config_overrides(
        "use_watcher_fusion=false, num_watchers=4,supervised_layers=[2, 4],kl_weight=1e-2", WMAJLConfig
    )
    assert parsed == {"use_watcher_fusion": False, "num_watchers": 4, "supervised_layers": [2, 4], "kl_weight": 0.01}
    parsed = parse_config_overrides("kl_weight=1,num_watchers=2", WMAJLConfig)
    assert (
        parsed == {"kl_weight": 1.0, "num_watchers": 2} and type(parsed["kl_weight"]) is float
    )  # the strict config's types
    WMAJLConfig(**parsed)
    with pytest.raises(ValueError, match="'num_watcher=4' is not <field>=<value> for a field of WMAJLConfig"):
        parse_config_overrides("num_watcher=4", WMAJLConfig)
