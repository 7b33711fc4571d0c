"""ROC's own parts (the contract suite covers what every method shares)."""

import pytest
import torch
from torch.nn import functional as F

from method_contract import build_model, encode, picture
from modeling_mre import PIPELINE_TASK, MMIBForRelationExtraction, ROCConfig, ROCForRelationExtraction
from modeling_mre.models.configuration_roc import MNRE_RELATION_DESCRIPTIONS

MNRE_RELATIONS = ["None", "/per/org/member_of", "/per/loc/place_of_birth", "/org/loc/locate_at"]


def roc(processor, **overrides):
    return build_model(ROCForRelationExtraction, processor, **overrides).eval()


def test_mnre_relations_come_described_and_others_fall_back_to_their_name():
    assert len(MNRE_RELATION_DESCRIPTIONS) == 23
    assert all(len(paraphrases) >= 3 for paraphrases in MNRE_RELATION_DESCRIPTIONS.values())
    config = ROCConfig(num_labels=4, id2label=dict(enumerate(MNRE_RELATIONS)))
    assert config.relation_descriptions == {name: MNRE_RELATION_DESCRIPTIONS[name] for name in MNRE_RELATIONS}
    assert config.entity_types == ["loc", "org", "per"]
    with pytest.warns(UserWarning, match=r"no description for relations \['/per/per/rival'\]"):
        config = ROCConfig(num_labels=2, id2label={0: "None", 1: "/per/per/rival"})
    assert config.relation_descriptions["/per/per/rival"] == ["per per rival"]
    given = ROCConfig(num_labels=1, id2label={0: "x"}, relation_descriptions={"x": "a b"})
    assert given.relation_descriptions == {"x": ["a b"]}


def test_eval_logits_never_depend_on_labels(processor):
    model = roc(processor, id2label=dict(enumerate(MNRE_RELATIONS)), label2id={n: i for i, n in enumerate(MNRE_RELATIONS)})
    batch = encode(processor)
    with torch.no_grad():
        unlabelled = model(**batch)
        for labels in ([0, 1, 2], [3, 3, 1]):
            labelled = model(**batch, labels=torch.tensor(labels))
            torch.testing.assert_close(labelled.logits, unlabelled.logits, rtol=0, atol=0)
            assert labelled.type_loss > 0
    assert unlabelled.type_logits.shape == (3, 2, 3)


def test_descriptions_are_embedded_once_until_the_relations_or_the_weights_change(processor):
    model = roc(processor)  # the relation encoder is frozen: training draws from the embeddings computed once
    calls = []

    def counting_tokenizer(texts, **kwargs):
        calls.append(len(texts))
        return processor.tokenizer(texts, **kwargs)

    model.use_tokenizer(counting_tokenizer)
    batch = encode(processor)
    with torch.no_grad():
        first = model(**batch).logits
        model.eval()  # an evaluation loop's eval() before each batch keeps the cache
        model(**batch)
    assert calls == [6]  # all paraphrases (3 of None, 1 of each other relation) once, then the cache
    model.train()
    drawn = model.embed_relations()
    assert calls == [6]
    torch.testing.assert_close(drawn[1:], model._relation_cache[1][3:])  # relations with one paraphrase draw it
    assert any(torch.equal(drawn[0], paraphrase) for paraphrase in model._relation_cache[1][:3])  # one of None's three
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, first)
        model.relation_encoder.get_input_embeddings().weight.mul_(-1)  # changed in place (merged LoRA, a load)
        assert not torch.allclose(model(**batch).logits, first)
    assert calls == [6, 6]
    model.set_relations({"None": None, "visits": "obama visits"})
    model(**batch)
    assert calls == [6, 6, 4]  # a new relation set: embedded again

    trained = roc(processor, freeze_relation_encoder=False)  # a relation path that trains: afresh each step
    trained.use_tokenizer(counting_tokenizer)
    trained.train()
    trained(**batch)
    trained(**batch)
    assert calls[3:] == [4, 4]  # one paraphrase per relation, each step


def test_relations_added_after_training_are_saved_and_scored(processor, tmp_path):
    model = roc(processor)
    batch = encode(processor)
    model.set_relations({**{name: None for name in model.config.relation_descriptions}, "berlin": ["obama visits berlin"]})
    assert model.config.id2label[4] == "berlin" and model.config.num_labels == 5
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (3, 5)
    model.save_pretrained(tmp_path / "model")
    reloaded = ROCForRelationExtraction.from_pretrained(tmp_path / "model").eval()  # its own tokenizer, saved beside it
    assert reloaded.config.relation_descriptions["berlin"] == ["obama visits berlin"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits)


def test_pipeline_candidate_relations_for_one_call(processor):
    from transformers import pipeline

    model = roc(processor)
    extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    ranked = extract(example, top_k=3, candidate_relations={"met": "obama with merkel", "went": ["visits berlin", "today"]})
    assert {r["relation"] for r in ranked} == {"met", "went"}  # only the candidates: 2 results despite top_k=3
    assert sum(r["score"] for r in ranked) == pytest.approx(1.0)
    assert list(model.config.id2label.values()) == ["None", "visits", "with", "today"]  # restored after the call
    assert {r["relation"] for r in extract(example, top_k=4, candidate_relations=["with", "today"])} == {"with", "today"}
    with pytest.raises(ValueError, match=r"candidate_relations \['rival'\] have no description"):
        extract(example, candidate_relations=["rival"])
    classifier = pipeline(PIPELINE_TASK, model=build_model(MMIBForRelationExtraction, processor).eval(), processor=processor)
    with pytest.raises(TypeError, match="candidate_relations needs a retrieval model"):
        classifier(example, candidate_relations=["with"])


def test_none_threshold(processor):
    batch = encode(processor)
    with torch.no_grad():
        never = roc(processor, none_threshold=-1.01)(**batch).logits.argmax(-1)
        always = roc(processor, none_threshold=1.01)(**batch).logits.argmax(-1)
    assert (never != 0).all() and (always == 0).all()


def test_a_separate_relation_encoder_trains_as_an_encoder(processor):
    from modeling_mre.training import encoder_parameter_ids

    model = roc(processor, share_relation_encoder=False, freeze_relation_encoder=False)
    assert model.pretrained_submodules()["relation_encoder"] == "encoder"
    assert {id(p) for p in model.relation_encoder.parameters()} <= encoder_parameter_ids(model)
    model.train()
    model(**encode(processor), labels=torch.tensor([1, 0, 3])).loss.backward()
    assert all(p.grad is not None for p in model.relation_encoder.parameters() if p.requires_grad)


def test_a_frozen_relation_encoder_stays_at_its_pretrained_weights(processor):
    with pytest.raises(ValueError, match="needs share_relation_encoder=False"):
        ROCConfig(share_relation_encoder=True)
    model = roc(processor, sentence_space=False)  # a learned projection after the frozen encoder
    assert model.pretrained_submodules()["relation_encoder"] == "frozen"
    before = {name: weight.clone() for name, weight in model.relation_encoder.state_dict().items()}
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(**encode(processor), labels=torch.tensor([1, 0, 3])).loss.backward()
    assert model.relation_projection.weight.grad is not None  # what maps descriptions into the pair space still learns
    optimizer.step()
    for name, weight in model.relation_encoder.state_dict().items():
        torch.testing.assert_close(weight, before[name], rtol=0, atol=0)


def test_relations_held_out_of_training_are_no_negatives_either(processor):
    # Trained with a relation as a negative, the model learns to steer every pair away from its
    # description (recall 0 when it is added back); held out, only the trained relations compete.
    model = roc(
        processor, id2label=dict(enumerate(MNRE_RELATIONS)), label2id={n: i for i, n in enumerate(MNRE_RELATIONS)},
        held_out_relations=["/per/loc/place_of_birth"],
    ).train()
    labels = torch.tensor([1, 0, 3])
    outputs = model(**encode(processor), labels=labels)
    trained = torch.tensor([0, 1, 3])  # every relation but the held-out one (id 2)
    expected = torch.nn.functional.cross_entropy(outputs.logits[:, trained], torch.tensor([1, 0, 2]))
    torch.testing.assert_close(outputs.classification_loss, expected)
    model.eval()
    with torch.no_grad():  # at inference it competes like the others
        assert torch.isfinite(model(**encode(processor)).logits[:, 2]).all()


def test_a_separate_relation_encoder_is_resized_with_the_vocabulary_and_loads_back(processor, tmp_path):
    # The markers grow the vocabulary after the backbones load (train_accelerate.py): both encoders follow.
    model = roc(processor)  # a separate, frozen relation encoder by default
    model.resize_token_embeddings(len(processor.tokenizer) + 8, mean_resizing=False)
    assert model.relation_encoder.get_input_embeddings().num_embeddings == len(processor.tokenizer) + 8
    assert not any(p.requires_grad for p in model.relation_encoder.parameters())
    model.save_pretrained(tmp_path)
    reloaded = ROCForRelationExtraction.from_pretrained(tmp_path).eval()
    batch = encode(processor)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits)


def test_in_the_sentence_space_retrieval_starts_as_the_backbones_sentence_similarity(processor):
    # Before training, a pair is its sentence's mean-pooled embedding and a relation its descriptions',
    # both as the backbone reads them: a new description is compared with text in the backbone's terms.
    model = roc(processor, trained_relation_margin=0.0)  # the default space, with its cosines as they are
    assert not list(model.relation_projection.parameters())
    read = {}
    model.text_reads_image.register_forward_hook(lambda module, args, output: read.update(text=output))
    batch = encode(processor)
    with torch.no_grad():
        output = model(**batch)
        mask = batch["attention_mask"][..., None].float()
        sentences = F.normalize((read["text"] * mask).sum(1) / mask.sum(1), dim=-1)
        torch.testing.assert_close(output.pair_embedding, sentences)
        described = processor.tokenizer(["visits"], return_tensors="pt")  # the one paraphrase of relation 1
        states = model.relation_encoder(**described).last_hidden_state
        relations = model.embed_relations()
        torch.testing.assert_close(relations[1], F.normalize(states.mean(1)[0], dim=-1))
        torch.testing.assert_close(output.logits * model.config.temperature, sentences @ relations.T)
    model.train()
    model(**batch, labels=torch.tensor([1, 0, 3])).loss.backward()
    assert model.pair_projection.weight.grad.abs().sum() > 0  # the typed pair joins in from the first step


def test_the_trained_relation_margin_favours_only_relations_added_after_training(processor, tmp_path):
    model = roc(processor)  # a margin of 0.2 by default
    trained = ["None", "visits", "with", "today"]
    assert model.config.trained_relations == trained
    batch = encode(processor)
    with torch.no_grad():
        calibrated = model(**batch).logits
        model.config.trained_relation_margin = 0.0
        torch.testing.assert_close(calibrated.softmax(-1), model(**batch).logits.softmax(-1))  # trained only: no change
        model.set_relations({**dict.fromkeys(trained), "berlin": "obama visits berlin"})
        plain = model(**batch).logits
        model.config.trained_relation_margin = 0.2
        calibrated = model(**batch).logits
    assert model.config.trained_relations == trained
    shift = torch.tensor([-0.2, -0.2, -0.2, -0.2, 0.0]) / model.config.temperature
    torch.testing.assert_close(calibrated - plain, shift.expand(3, -1))
    model.save_pretrained(tmp_path)
    reloaded = ROCForRelationExtraction.from_pretrained(tmp_path)
    assert reloaded.config.trained_relations == trained and reloaded.config.num_labels == 5
    held_out = ROCConfig(id2label=dict(enumerate(MNRE_RELATIONS)), held_out_relations=["/per/org/member_of"])
    assert held_out.trained_relations == ["None", "/per/loc/place_of_birth", "/org/loc/locate_at"]


def test_the_type_prior_weighs_each_typed_relation_by_its_types_likelihood(processor):
    model = roc(
        processor, id2label=dict(enumerate(MNRE_RELATIONS)), label2id={n: i for i, n in enumerate(MNRE_RELATIONS)},
        type_prior_weight=0.5,  # 1.0 by default
    )
    batch = encode(processor)
    with torch.no_grad():
        typed = model(**batch)
        model.config.type_prior_weight = 0.0
        plain = model(**batch).logits
    per, org, loc = (model.config.entity_types.index(t) for t in ("per", "org", "loc"))
    log_types = typed.type_logits.log_softmax(-1)  # (batch, head/tail, types)
    torch.testing.assert_close(typed.logits[:, 0], plain[:, 0])  # None's name gives no types
    torch.testing.assert_close(typed.logits[:, 1], plain[:, 1] + 0.5 * (log_types[:, 0, per] + log_types[:, 1, org]))
    torch.testing.assert_close(typed.logits[:, 3], plain[:, 3] + 0.5 * (log_types[:, 0, org] + log_types[:, 1, loc]))
