"""ROC's own parts (the contract suite covers what every method shares)."""

import textwrap

import pytest
import torch
from method_contract import build_model, encode, picture, run_in_a_fresh_python
from torch.nn import functional as F

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
    model = roc(
        processor, id2label=dict(enumerate(MNRE_RELATIONS)), label2id={n: i for i, n in enumerate(MNRE_RELATIONS)}
    )
    batch = encode(processor)
    with torch.no_grad():
        unlabelled = model(**batch)
        # The types the names give, in config.entity_types ["loc", "org", "per"]: a typed pair's head and tail each.
        types = {1: (2, 1), 2: (2, 0), 3: (1, 0)}
        log_types = unlabelled.type_logits.log_softmax(-1)  # (batch, 2, types)
        for labels in ([0, 1, 2], [3, 3, 1], [0, 0, 0]):
            labelled = model(**batch, labels=torch.tensor(labels))
            torch.testing.assert_close(labelled.logits, unlabelled.logits, rtol=0, atol=0)
            terms = [
                -log_types[row, role, types[label][role]]
                for row, label in enumerate(labels)
                if label
                for role in (0, 1)
            ]
            expected = torch.stack(terms).mean() if terms else torch.zeros(())  # None gives no type to learn
            torch.testing.assert_close(labelled.type_loss, expected)
    assert unlabelled.type_logits.shape == (3, 2, 3)


def saved_cache(model):
    return next(value for key, value in model._relation_cache.items() if key[0] == "saved")


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
    paraphrases = saved_cache(model)[0]
    torch.testing.assert_close(drawn[1:], paraphrases[3:])  # relations with one paraphrase draw it
    assert any(torch.equal(drawn[0], paraphrase) for paraphrase in paraphrases[:3])  # one of None's three
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, first)
        model.relation_encoder.get_input_embeddings().weight.mul_(-1)  # changed in place (merged LoRA, a load)
        assert not torch.allclose(model(**batch).logits, first)
        assert calls == [6, 6]
        model.set_relations({"None": None, "visits": "obama visits"})
        model(**batch)
        assert calls == [6, 6, 4]  # a new relation set: embedded again
        model.config.relation_descriptions["visits"] = ["berlin"]  # edited in place, as a user may
        edited = model(**batch).logits
        assert calls == [6, 6, 4, 4]
        model.set_relations({"None": None, "visits": "berlin"})
        torch.testing.assert_close(model(**batch).logits, edited)  # what was edited is what is scored

    trained = roc(processor, freeze_relation_encoder=False)  # a relation path that trains: afresh each step
    trained.use_tokenizer(counting_tokenizer)
    trained.train()
    trained(**batch)
    trained(**batch)
    assert calls[4:] == [4, 4]  # one paraphrase per relation, each step


def test_relations_added_after_training_are_saved_and_scored(processor, tmp_path):
    model = roc(processor)
    batch = encode(processor)
    model.set_relations(
        {**{name: None for name in model.config.relation_descriptions}, "berlin": ["obama visits berlin"]}
    )
    assert model.config.id2label[4] == "berlin" and model.config.num_labels == 5
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (3, 5)
    model.save_pretrained(tmp_path / "model")
    reloaded = ROCForRelationExtraction.from_pretrained(
        tmp_path / "model"
    ).eval()  # its own tokenizer, saved beside it
    assert reloaded.config.relation_descriptions["berlin"] == ["obama visits berlin"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits)


def test_pipeline_candidate_relations_for_one_call(processor):
    from transformers import pipeline

    model = roc(processor)
    extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    ranked = extract(
        example, top_k=3, candidate_relations={"met": "obama with merkel", "went": ["visits berlin", "today"]}
    )
    assert len(ranked) == 2  # only the candidates, despite top_k=3
    # In the order of the model's own scores for those descriptions, passed as the processor passes them.
    inputs = processor(
        text=example["text"],
        head="obama",
        tail="berlin",
        images=example["image"],
        relations={"met": "obama with merkel", "went": ["visits berlin", "today"]},
    )
    with torch.no_grad():
        scores = model(**inputs).logits.softmax(-1)[0]
    assert [(r["relation"], r["score"]) for r in ranked] == [
        (name, pytest.approx(float(score), abs=1e-5))
        for score, name in sorted(zip(scores, ["met", "went"]), reverse=True)
    ]
    assert list(model.config.id2label.values()) == ["None", "visits", "with", "today"]  # never touched by the call
    known = extract(example, top_k=4, candidate_relations=["with", "today"])
    everything = [r["relation"] for r in extract(example, top_k=4) if r["relation"] in ("with", "today")]
    assert [r["relation"] for r in known] == everything  # names it knows keep their order among themselves
    with pytest.raises(ValueError, match=r"candidate_relations \['rival'\] have no description"):
        extract(example, candidate_relations=["rival"])
    classifier = pipeline(
        PIPELINE_TASK, model=build_model(MMIBForRelationExtraction, processor).eval(), processor=processor
    )
    with pytest.raises(TypeError, match="candidate_relations needs a retrieval model"):
        classifier(example, candidate_relations=["with"])


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
        processor,
        id2label=dict(enumerate(MNRE_RELATIONS)),
        label2id={n: i for i, n in enumerate(MNRE_RELATIONS)},
        held_out_relations=["/per/loc/place_of_birth"],
        trained_relation_margin=0.0,  # logits = the scores
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


def test_an_added_relation_is_judged_as_the_untrained_backbone_judges_it_before_and_after_training(processor):
    # The text as the frozen encoder reads a description (markers left out) against a relation's descriptions:
    # what training learns of pairs counts for the trained relations only.
    model = roc(processor, trained_relation_margin=0.0)  # the default space, with its similarities as they are
    assert not list(model.relation_projection.parameters())
    model.set_relations({**dict.fromkeys(model.config.trained_relations), "berlin": "obama visits berlin"})
    batch = encode(processor)
    markers = torch.isin(batch["input_ids"], torch.tensor(processor.marker_ids))
    keep = batch["attention_mask"].bool() & ~markers

    def backbone_cosines():
        states = model.relation_encoder(
            input_ids=batch["input_ids"], attention_mask=keep.long(), token_type_ids=batch["token_type_ids"]
        ).last_hidden_state
        sentences = F.normalize((states * keep[..., None]).sum(1) / keep.sum(1, keepdim=True), dim=-1)
        described = processor.tokenizer(["visits", "obama visits berlin"], padding=True, return_tensors="pt")
        relation_states = model.relation_encoder(**described).last_hidden_state
        mask = described["attention_mask"][..., None]
        relations = F.normalize((relation_states * mask).sum(1) / mask.sum(1), dim=-1)
        return sentences, sentences @ relations.T  # (3, hidden), (3, 2): relation 1 (trained) and 4 (added)

    for step in range(2):
        model.eval()
        with torch.no_grad():
            output = model(**batch)
            sentences, cosines = backbone_cosines()
        torch.testing.assert_close(output.logits[:, 4] * model.config.temperature, cosines[:, 1])  # the added one
        # A trained relation reads the pair embedding: the text plus the marked pair, normalised.
        torch.testing.assert_close(
            output.logits[:, 1] * model.config.temperature, output.pair_embedding @ model.embed_relations()[1]
        )
        assert not torch.allclose(output.pair_embedding, sentences)
        if step == 0:  # one training step moves the pair's embedding, never the added relation's footing
            model.train()
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
            model(**batch, labels=torch.tensor([1, 0, 3])).loss.backward()
            optimizer.step()


def test_the_trained_relation_margin_favours_only_relations_added_after_training(processor, tmp_path):
    model = roc(processor)  # a margin of 0.2 by default
    trained = ["None", "visits", "with", "today"]
    assert model.config.trained_relations == trained
    batch = encode(processor)
    with torch.no_grad():
        calibrated = model(**batch).logits
        model.config.trained_relation_margin = 0.0
        torch.testing.assert_close(
            calibrated.softmax(-1), model(**batch).logits.softmax(-1)
        )  # trained only: no change
        model.set_relations({**dict.fromkeys(trained), "berlin": "obama visits berlin"})
        plain = model(**batch).logits
        model.config.trained_relation_margin = 0.2
        calibrated = model(**batch).logits
    assert model.config.trained_relations == trained
    shift = torch.tensor([-0.2, -0.2, -0.2, 0.0]) / model.config.temperature
    torch.testing.assert_close(calibrated[:, 1:] - plain[:, 1:], shift.expand(3, -1))  # None: see the test below
    model.save_pretrained(tmp_path)
    reloaded = ROCForRelationExtraction.from_pretrained(tmp_path)
    assert reloaded.config.trained_relations == trained and reloaded.config.num_labels == 5
    held_out = ROCConfig(id2label=dict(enumerate(MNRE_RELATIONS)), held_out_relations=["/per/org/member_of"])
    assert held_out.trained_relations == ["None", "/per/loc/place_of_birth", "/org/loc/locate_at"]


# --- scores with a stated meaning (ROCConfig, "Scores") -----------------------------------------------


def test_the_type_prior_is_the_type_heads_own_estimate_and_treats_untyped_relations_alike(processor):
    relations = ["None", "/per/org/member_of", "/org/loc/locate_at", "founded_by"]
    model = roc(processor, id2label=dict(enumerate(relations)), label2id={n: i for i, n in enumerate(relations)})
    batch = encode(processor)
    with torch.no_grad():
        typed = model(**batch)
        model.config.type_prior_weight = 0.0
        plain = model(**batch)
    log_types = typed.type_logits.log_softmax(-1)  # (batch, head/tail, types)
    gaps = log_types - log_types.max(-1, keepdim=True).values  # 0 at the pair's most likely type
    per, org, loc = (model.config.entity_types.index(t) for t in ("per", "org", "loc"))
    prior = typed.logits - plain.logits
    torch.testing.assert_close(prior[:, 1], gaps[:, 0, per] + gaps[:, 1, org])
    torch.testing.assert_close(prior[:, 2], gaps[:, 0, org] + gaps[:, 1, loc])
    torch.testing.assert_close(prior[:, 3], torch.zeros(3))  # a name that gives no types: no prior
    # Where a typed relation's types are the pair's most likely, it stands exactly as an untyped one does.
    fits = (log_types[:, 0].argmax(-1) == per) & (log_types[:, 1].argmax(-1) == org)
    torch.testing.assert_close(prior[fits, 1], prior[fits, 3])
    assert (prior[~fits, 1] < 0).all()

    model.config.type_prior_weight = 1.0
    model.train()
    output = model(**batch, labels=torch.tensor([1, 0, 2]))
    output.classification_loss.backward(retain_graph=True)  # retrieval alone: no gradient reaches the type head
    assert model.type_head.weight.grad is None or not model.type_head.weight.grad.any()
    output.type_loss.backward()
    assert model.type_head.weight.grad.abs().sum() > 0


def with_added_relation(processor, **overrides):
    model = roc(processor, **overrides)
    model.set_relations({**dict.fromkeys(model.config.trained_relations), "berlin": "obama visits berlin"})
    return model


def scores_of(model, batch):
    """Each relation's score (cosine / temperature + prior): the logits with neither margin nor threshold."""
    saved = model.config.trained_relation_margin, model.config.none_threshold
    model.config.trained_relation_margin, model.config.none_threshold = 0.0, None
    with torch.no_grad():
        scores = model(**batch).logits
    model.config.trained_relation_margin, model.config.none_threshold = saved
    return scores


def test_the_margin_never_moves_the_none_decision(processor):
    model = with_added_relation(processor)
    batch = encode(processor)
    scores = scores_of(model, batch)  # (3, 5): None, visits, with, today, berlin (added)
    # A threshold between the pairs' best scores, so that some pairs are None and some are not.
    best = scores[:, 1:].max(-1).values
    threshold = best.sort().values[:2].mean()  # between the lowest two
    model.config.none_threshold = float(threshold) * model.config.temperature
    is_none = best < threshold
    assert is_none.any() and not is_none.all()
    for margin in (0.0, 0.2, 1.0):
        model.config.trained_relation_margin = margin
        with torch.no_grad():
            logits = model(**batch).logits
        assert torch.equal(logits.argmax(-1) == 0, is_none), margin  # None exactly where no relation reaches it
    # Among the relations, the margin moves trained ones down against the added one, by margin / temperature.
    related = logits[~is_none, 1:] - scores[~is_none, 1:]
    torch.testing.assert_close(
        related, torch.tensor([-1.0, -1.0, -1.0, 0.0]).expand_as(related) / model.config.temperature
    )


def test_none_wins_exactly_when_no_relation_reaches_the_threshold(processor):
    model = with_added_relation(processor, trained_relation_margin=0.2)
    model.config.relation_descriptions["/per/org/x"] = ["visits today"]  # a typed relation competes too
    relations = ["None", "visits", "with", "today", "berlin", "/per/org/x"]
    batch = encode(processor)
    batch.update(processor.encode_relations({name: model.config.relation_descriptions[name] for name in relations}))
    scores = scores_of(model, batch)
    for threshold in torch.linspace(-0.5, 0.5, 11).tolist():
        model.config.none_threshold = threshold
        with torch.no_grad():
            predicted_none = model(**batch).logits.argmax(-1) == 0
        reaches = scores[:, 1:].max(-1).values >= threshold / model.config.temperature
        assert torch.equal(predicted_none, ~reaches), threshold


def test_distance_buckets_tell_adjacent_entities_from_one_apart():
    from modeling_mre.models.modeling_roc import DISTANCE_BUCKETS, distance_bucket

    distances = torch.tensor([0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 1000, -1, -2, -3])
    expected = [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 9, 10, 11]
    assert distance_bucket(distances).tolist() == expected
    assert distance_bucket(torch.tensor([-1000])).item() == 2 * DISTANCE_BUCKETS - 1


# --- pairs matter ----------------------------------------------------------------------------------


def test_a_trained_model_tells_pairs_of_one_sentence_and_their_direction_apart(processor):
    # Two directional relations, seen in training in both directions: "first" when the head comes first.
    model = roc(
        processor,
        num_labels=2,
        id2label={0: "first", 1: "second"},
        label2id={"first": 0, "second": 1},
        relation_descriptions={"first": "obama visits", "second": "visits obama"},
        trained_relation_margin=0.0,
    ).train()
    words = ["obama", "visits", "berlin", "today", "with", "merkel", "the", "a", "b", "c"]
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)

    def pairs(count):
        tokens, heads, tails, labels = [], [], [], []
        for _ in range(count):
            tokens.append([words[i] for i in torch.randperm(len(words), generator=generator)[:6].tolist()])
            i, j = torch.randperm(6, generator=generator)[:2].tolist()
            heads.append({"start": i, "end": i + 1})
            tails.append({"start": j, "end": j + 1})
            labels.append(0 if i < j else 1)
        return processor(tokens=tokens, head=heads, tail=tails), torch.tensor(labels)

    for _ in range(60):
        batch, labels = pairs(16)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    text = "obama visits berlin today with merkel"
    with torch.no_grad():
        forward = model(**processor(text=[text] * 2, head=["obama", "berlin"], tail=["merkel", "today"]))
        swapped = model(**processor(text=[text] * 2, head=["merkel", "today"], tail=["obama", "berlin"]))
    assert not torch.allclose(
        forward.pair_embedding[0], forward.pair_embedding[1], atol=1e-3
    )  # two pairs, two embeddings
    assert forward.logits.argmax(-1).tolist() == [0, 0]
    assert swapped.logits.argmax(-1).tolist() == [1, 1]  # head and tail swapped: the other direction


def test_descriptions_naming_the_pair_are_filled_with_its_entities(processor):
    relations = {"None": "the", "visits": ["{head} visits {tail}", "{tail} with {head}"]}
    encoded = processor(
        text=["obama visits berlin", "merkel with obama"],
        head=["obama", "merkel"],
        tail=["berlin", "obama"],
        relations=relations,
    )
    assert encoded["relation_input_ids"].shape[:2] == (2, 3)  # per example: 3 paraphrases
    assert encoded["relation_index"].tolist() == [0, 1, 1] and encoded["relation_names"] == ["None", "visits"]
    decoded = [processor.tokenizer.decode(ids, skip_special_tokens=True) for ids in encoded["relation_input_ids"][1]]
    assert decoded == ["the", "merkel visits obama", "obama with merkel"]
    model = roc(processor)
    with torch.no_grad():
        given = model(**encoded).logits
        swapped = model(
            **processor(text=["obama visits berlin"], head=["berlin"], tail=["obama"], relations=relations)
        ).logits
    assert given.shape == (2, 2)
    assert not torch.allclose(given[0], swapped[0])  # the filled descriptions differ with the direction
    with pytest.raises(ValueError, match="filled with each pair's entities by the processor"):
        model.set_relations(relations)
        model(**encode(processor))


# --- the call's relations live in the call --------------------------------------------------------


def test_relations_given_to_the_processor_equal_the_same_relations_saved(processor):
    model = roc(processor)
    batch = encode(processor)
    relations = {"None": None, "met": "obama with merkel", "went": ["visits berlin", "today"]}
    described = {name: d or model.config.relation_descriptions[name] for name, d in relations.items()}
    with torch.no_grad():
        given = model(**encode(processor), **processor.encode_relations(described)).logits
        model.set_relations(relations)
        saved = model(**batch).logits
    torch.testing.assert_close(given, saved)


def test_two_threads_with_different_candidate_relations_each_get_their_own(processor):
    import threading

    from transformers import pipeline

    model = roc(processor)
    extract = pipeline(PIPELINE_TASK, model=model, processor=processor)
    example = {"text": "obama visits berlin today", "head": "obama", "tail": "berlin", "image": picture(0)}
    sets = [{"met": "obama with merkel", "went": "visits berlin"}, {"a": "today", "b": "the berlin", "c": "with"}]
    expected = [extract(example, top_k=5, candidate_relations=candidates) for candidates in sets]
    barrier, results, errors = threading.Barrier(2), [[], []], []

    def run(i):
        try:
            barrier.wait()
            for _ in range(15):
                results[i].append(extract(example, top_k=5, candidate_relations=sets[i]))
        except Exception as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for i in range(2):
        assert all(result == expected[i] for result in results[i])
        assert {r["relation"] for r in results[i][0]} == set(sets[i])
    assert list(model.config.id2label.values()) == ["None", "visits", "with", "today"]


def test_a_loaded_folder_tokenizes_its_relations_from_the_same_revision_without_asking(
    processor, tmp_path, monkeypatch
):
    import transformers

    model = roc(processor)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = ROCForRelationExtraction.from_pretrained(tmp_path, revision="v1.0").eval()
    seen = {}
    original = transformers.AutoTokenizer.from_pretrained

    def spy(source, **kwargs):
        seen.update(kwargs, source=str(source))
        kwargs.pop("revision")  # a local folder has no revisions to resolve
        return original(source, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    with torch.no_grad():
        reloaded(**encode(processor))
    assert seen.pop("config") is reloaded.config
    assert seen == {"source": str(tmp_path), "revision": "v1.0", "trust_remote_code": False}


def test_a_folder_loaded_with_remote_code_predicts_without_a_model_type_warning(processor, tmp_path):
    # Where modeling_mre is not installed, only the folder's remote code knows `mre-roc`: reading its
    # config.json for the relations' tokenizer without it warned "a model of type `mre-roc` ... of type ``".
    model = roc(processor)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    script = textwrap.dedent(
        """
        import sys
        sys.modules["modeling_mre"] = None
        import torch
        from transformers import AutoModel, AutoProcessor, pipeline
        from transformers.testing_utils import CaptureLogger
        from transformers.utils import logging
        example = dict(text="obama visits berlin today", head="obama", tail="berlin")
        with CaptureLogger(logging.get_logger("transformers")) as captured:
            model = AutoModel.from_pretrained("model", trust_remote_code=True).eval()
            processor = AutoProcessor.from_pretrained("model", trust_remote_code=True)
            with torch.no_grad():
                model(**processor(**example))
            pipeline(model="model", trust_remote_code=True)(example)
        assert "to instantiate a model of type" not in captured.out, captured.out
        """
    )
    run_in_a_fresh_python(script, tmp_path)
