"""Multimodal NER: the Twitter reader, the CRF, the processor's word alignment and windows, the metric, training and the pipelines."""

import itertools
import json
import textwrap
from pathlib import Path

import pytest
import torch
from method_contract import run_in_a_fresh_python

from modeling_mre import NER_TAGS, compute_ner_metrics, load_twitter_mner, write_mner_demo_dataset
from modeling_mre.models.entities_mner import bio_entities
from modeling_mre.models.modeling_ner import ConditionalRandomField, gather_words
from modeling_mre.models.processing_mner import merge_windows, split_words


TWITTER_DIR = Path(__file__).parents[1].parent / "shared" / "data" / "twitter"


@pytest.fixture(scope="module")
def twitter_dir() -> Path:
    if not (TWITTER_DIR / "twitter2015" / "train.txt").is_file():
        pytest.skip(
            f"the Twitter MNER annotations are not at {TWITTER_DIR} (research-only, not shipped with the repository)"
        )
    return TWITTER_DIR


# --- the CRF, against enumeration of every tag sequence ---------------------------------------------


def brute_force(crf, emissions, length):
    """Every tag sequence of one sentence's first `length` words with its unnormalised log score."""
    num_tags = emissions.shape[-1]
    scores = {}
    for path in itertools.product(range(num_tags), repeat=length):
        score = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
        score = score + sum(emissions[i, tag] for i, tag in enumerate(path))
        score = score + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
        scores[path] = score
    return scores


def test_the_crf_is_a_normalised_distribution_decoded_at_its_mode():
    torch.manual_seed(0)
    crf = ConditionalRandomField(3)
    for parameter in crf.parameters():
        torch.nn.init.normal_(parameter)
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])  # the second has 2 words
    with torch.no_grad():
        paths = crf.viterbi(emissions, mask)
        marginals = crf.marginals(emissions, mask)
        for row, length in enumerate((4, 2)):
            scores = brute_force(crf, emissions[row], length)
            log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
            for path, score in list(scores.items())[:5]:
                tags = torch.tensor([[*path, *[0] * (4 - length)]])
                likelihood = crf.log_likelihood(emissions[row : row + 1], tags, mask[row : row + 1])
                torch.testing.assert_close(likelihood[0], score - log_z)
            assert tuple(paths[row]) == max(scores, key=lambda p: scores[p])
            for i in range(length):
                for tag in range(3):
                    expected = sum(torch.exp(s - log_z) for p, s in scores.items() if p[i] == tag)
                    torch.testing.assert_close(marginals[row, i, tag], expected, atol=1e-5, rtol=1e-5)
        assert marginals[1, 2:].abs().sum() == 0


def test_gather_words_packs_first_subwords_left():
    states = torch.arange(12.0).view(2, 6)[..., None]
    mask = torch.tensor([[False, True, False, True, True, False], [False, False, True, False, False, False]])
    words, word_mask = gather_words(states, mask)
    assert words.shape == (2, 3, 1) and words[0, :, 0].tolist() == [1.0, 3.0, 4.0] and words[1, 0, 0] == 8.0
    assert word_mask.tolist() == [[True, True, True], [True, False, False]]


# --- the processor -----------------------------------------------------------------------------------


def test_words_are_labelled_at_their_first_subword(ner_processor):
    tokenizer = ner_processor.tokenizer
    batch = ner_processor(tokens=["obama", "\ufe0f", "visits"], word_labels=[3, 0, 1], return_word_ids=True)
    # The invisible word reads as [UNK] and keeps its place and tag.
    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist()) == [
        "[CLS]",
        "obama",
        "[UNK]",
        "visits",
        "[SEP]",
    ]
    assert batch["labels"][0].tolist() == [-100, 3, 0, 1, -100]
    assert batch["first_subword_mask"][0].tolist() == [False, True, True, True, False]
    assert batch["word_ids"][0].tolist() == [-1, 0, 1, 2, -1]
    with pytest.raises(ValueError, match="3 words but 2 word_labels"):
        ner_processor(tokens=["obama", "\ufe0f", "visits"], word_labels=[3, 0])
    with pytest.raises(ValueError, match="no words"):
        ner_processor(text="   ")


def test_a_word_of_several_subwords_is_labelled_once(tmp_path):
    from transformers import BertTokenizer, CLIPImageProcessor

    from modeling_mre import MNERProcessor

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "ber", "##lin", "obama"]) + "\n")
    processor = MNERProcessor(CLIPImageProcessor(), BertTokenizer(vocab=str(vocab)))
    batch = processor(tokens=["obama", "berlin"], word_labels=[3, 7])
    assert batch["labels"][0].tolist() == [-100, 3, 7, -100, -100]
    assert batch["first_subword_mask"][0].tolist() == [False, True, True, False, False]


def test_long_posts_are_read_in_overlapping_windows_of_whole_words(ner_processor):
    words = ["a", "b", "obama", "visits", "berlin", "today", "with", "merkel", "the", "a", "b"]
    batch = ner_processor(tokens=[words, ["obama"]], word_labels=[list(range(len(words))), [5]], return_word_ids=True)
    windows = batch["overflow_to_sample_mapping"].tolist()
    assert windows[-1] == 1 and set(windows[:-1]) == {0} and len(windows) > 2
    covered = {int(w) for row in batch["word_ids"][:-1] for w in row if w >= 0}
    assert covered == set(range(len(words)))
    assert (batch["attention_mask"].sum(1) <= 8).all()
    # Each window's labels are its own words' tags, so every window is a training example on its own.
    for row in range(len(windows) - 1):
        first = batch["first_subword_mask"][row]
        assert batch["labels"][row][first].tolist() == batch["word_ids"][row][first].tolist()
    # Merged back, each word once, in order, from the window where it has the most context.
    values = [[int(w) for w in row if w >= 0] for row in batch["word_ids"]]
    assert merge_windows(batch["word_ids"], batch["overflow_to_sample_mapping"], values, 2) == [
        list(range(len(words))),
        [0],
    ]


def test_merge_windows_takes_each_word_from_its_most_central_window():
    word_ids = torch.tensor([[-1, 0, 1, 2, 3, -1], [-1, 2, 3, 4, 5, -1]])
    values = [["a0", "a1", "a2", "a3"], ["b2", "b3", "b4", "b5"]]
    # word 2: position 2 of 4 in a (margin 1) vs 0 in b; word 3: 3 in a (0) vs 1 in b (1)
    assert merge_windows(word_ids, torch.tensor([0, 0]), values, 1) == [["a0", "a1", "a2", "b3", "b4", "b5"]]


def test_split_words_keeps_character_offsets():
    text = "RT  @x : Obama\tvisits Berlin"
    assert [(w, text[s:e]) for w, s, e in split_words(text)] == [(w, w) for w in text.split()]


# --- the metric --------------------------------------------------------------------------------------


def test_bio_entities_read_tags_as_seqeval_default_mode():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "B-MISC", "I-PER"]
    assert bio_entities(tags) == [
        ("PER", 0, 2),
        ("LOC", 3, 5),
        ("LOC", 5, 6),
        ("ORG", 6, 7),
        ("MISC", 7, 8),
        ("PER", 8, 9),
    ]
    with pytest.raises(ValueError, match="'X' at position 1"):
        bio_entities(["O", "X"])


def test_ner_metrics_count_exact_spans_and_types():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-MISC"]]
    metrics = compute_ner_metrics(predictions, references)
    # gold: PER, LOC, ORG; predicted: PER, ORG (wrong type), ORG, MISC: 2 correct of 4 predicted, 2 of 3 gold
    assert metrics["micro_precision"] == 0.5 and metrics["micro_recall"] == pytest.approx(2 / 3)
    assert metrics["micro_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["per_type"]["ORG"]["precision"] == 0.5 and metrics["per_type"]["MISC"]["support"] == 0
    with pytest.raises(ValueError, match="sentence 1: 1 predicted tags for 2"):
        compute_ner_metrics([["O"], ["O"]], [["O"], ["O", "O"]])


# --- the Twitter reader ------------------------------------------------------------------------------


def test_the_twitter_sets_read_as_their_sources_count_them(twitter_dir):
    # SOURCES.md's counts: tweets, and entities under seqeval's default mode (which opens one at a stray I-).
    expected = {
        ("twitter2015", "train"): (4000, 64439, {"PER": 2285, "LOC": 2135, "ORG": 957, "MISC": 975}),
        ("twitter2015", "validation"): (1000, 16178, {"PER": 567, "LOC": 543, "ORG": 251, "MISC": 233}),
        ("twitter2017", "train"): (3373, 53007, {"PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701}),
        ("twitter2017", "validation"): (723, 11309, {"PER": 626, "LOC": 173, "ORG": 375, "MISC": 150}),
    }
    for year in ("twitter2015", "twitter2017"):
        dataset = load_twitter_mner(twitter_dir / year)
        assert set(dataset) == {"train", "validation"}
        assert dataset["train"].features["ner_tags"].feature.names == list(NER_TAGS)
        for split in ("train", "validation"):
            rows = dataset[split]
            tweets, tokens, entities = expected[(year, split)]
            assert len(rows) == tweets and sum(map(len, rows["tokens"])) == tokens
            counts = {}
            for tags in rows["ner_tags"]:
                for entity_type, _, _ in bio_entities([NER_TAGS[t] for t in tags]):
                    counts[entity_type] = counts.get(entity_type, 0) + 1
            assert counts == entities
            assert all(image is None for image in rows["image"])  # the images are not distributed here
    # Twitter-2015's file ends right after its last word: that tweet is read, whole.
    lines = (twitter_dir / "twitter2015" / "train.txt").read_text(encoding="utf-8").splitlines()
    last_id = next(line for line in reversed(lines) if line.startswith("IMGID:"))[len("IMGID:") :]
    last = load_twitter_mner(twitter_dir / "twitter2015")["train"][-1]
    assert last["image_id"] == last_id and last["tokens"][-1] == lines[-1].split("\t")[0]


def test_bad_twitter_lines_name_the_file_line_and_field(tmp_path):
    good = "IMGID:1\nObama\tB-PER\nvisits\tO\n\nIMGID:2\nBerlin\tB-OTHER\n"
    cases = {
        "no tab": (good.replace("visits\tO", "visits O"), "line 3, field 'tag': expected 'token<TAB>tag'"),
        "unknown tag": (good.replace("B-PER", "B-PERSON"), "line 2, field 'tag': unknown tag 'B-PERSON'"),
        "no IMGID": ("Obama\tB-PER\n", "line 1, field 'IMGID': a word line before any 'IMGID:' line"),
        "empty tweet": ("IMGID:1\n\nIMGID:2\nObama\tO\n", "line 1, field 'IMGID': tweet '1' has no words"),
        "empty word": (good.replace("visits\tO", "\tO"), "line 3, field 'token': empty"),
        "no image id": (good.replace("IMGID:2", "IMGID: "), "line 5, field 'IMGID': expected an image name, got ''"),
        "empty file": ("", "is empty: no tweet to read"),
        "blank lines only": ("\n\n", "is empty: no tweet to read"),
    }
    for name, (text, message) in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        (folder / "train.txt").write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=f"train.txt {message}"):
            load_twitter_mner(folder)
    folder = tmp_path / "bytes"
    folder.mkdir()
    (folder / "train.txt").write_bytes(good.encode().replace(b"visits", b"visit\xe9s"))
    with pytest.raises(ValueError, match=r"train.txt line 3: byte 5 is not UTF-8"):
        load_twitter_mner(folder)
    # A good file: OTHER is MISC, a blank line ends a tweet, the file may end without one.
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "train.txt").write_text(good, encoding="utf-8")
    rows = load_twitter_mner(folder)["train"]
    assert rows["tokens"] == [["Obama", "visits"], ["Berlin"]]
    assert [[NER_TAGS[t] for t in tags] for tags in rows["ner_tags"]] == [["B-PER", "O"], ["B-MISC"]]
    # Exported with CR-only (classic Mac) or CRLF line endings: the same tweets.
    for ending in ("\r", "\r\n"):
        (folder / "train.txt").write_text(good.replace("\n", ending), encoding="utf-8", newline="")
        assert load_twitter_mner(folder)["train"]["tokens"] == rows["tokens"]
    # A long line is quoted in part: no message holds a whole file.
    (folder / "train.txt").write_text("IMGID:1\n" + "word " * 20000 + "\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match="line 2, field 'tag': expected 'token<TAB>tag', got 0 tabs in 'word word"
    ) as error:
        load_twitter_mner(folder)
    assert len(str(error.value)) < 300
    with pytest.raises(NotADirectoryError, match="image_dir '.*absent' is not a folder"):
        load_twitter_mner(folder, image_dir=tmp_path / "absent")


def test_the_mner_demo_reads_with_its_absent_pictures_counted(tmp_path, caplog):
    folder = write_mner_demo_dataset(tmp_path / "demo", num_train=40, num_validation=10, num_test=10)
    with caplog.at_level("WARNING"):
        dataset = load_twitter_mner(folder)
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 40, "validation": 10, "test": 10}
    absent = sum(image is None for image in dataset["train"]["image"])
    assert 0 < absent < 40 and f"train: {absent} of 40 images absent" in caplog.text
    info = json.loads((folder / "demo_info.json").read_text())
    # The type is the picture's texture: one type per tweet, the entity's tags all of it.
    for tags in dataset["train"]["ner_tags"]:
        entities = bio_entities([NER_TAGS[t] for t in tags])
        assert len(entities) == 1 and entities[0][0] in info["textures"]
    assert write_mner_demo_dataset(tmp_path / "again", num_train=40, num_validation=10, num_test=10)
    assert (tmp_path / "again" / "train.txt").read_bytes() == (folder / "train.txt").read_bytes()


# --- training and the pipelines ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_mner(tmp_path_factory, train_script):
    """MMIB trained briefly on the synthetic MNER demo by train_accelerate.py."""
    output = tmp_path_factory.mktemp("mner") / "mmib-demo-mner"
    results = train_script.main(
        [
            "--method",
            "mmib",
            "--dataset",
            "demo-mner",
            "--output_dir",
            str(output),
            "--num_train_epochs",
            "2",
            "--max_train_samples",
            "200",
            "--max_eval_samples",
            "24",
            "--per_device_train_batch_size",
            "16",
            # 200 is no multiple of 16 nor 24 of 10: gathering the posts once after the loop scored only
            # a remainder's worth of them (8); every post must be scored.
            "--per_device_eval_batch_size",
            "10",
        ]
    )
    return output, results


def test_train_accelerate_trains_and_cards_an_entity_recognizer(trained_mner):
    output, results = trained_mner
    assert results["task"] == "token-classification" and set(results["validation"]["per_type"]) <= {
        "PER",
        "LOC",
        "ORG",
        "MISC",
    }
    saved = json.loads((output / "eval_results.json").read_text())
    assert saved["test"]["num_sentences"] == 24 and saved["validation"]["num_sentences"] == 24
    card = (output / "README.md").read_text()
    assert "pipeline_tag" not in card and "### Per entity type (validation)" in card
    assert "type: token-classification" in card and f"{100 * results['test']['micro_f1']:.2f}" in card


def test_whole_posts_get_typed_entities_from_a_multimodal_recognizer(trained_mner, processor, tmp_path):
    from method_contract import build_model, picture
    from transformers import pipeline

    from modeling_mre import METHODS, PIPELINE_TASK

    output, _ = trained_mner
    recognise = pipeline(model=str(output), trust_remote_code=True)
    text = "So this happened at Kasimir Penhale lol . Big day for Juno !"
    for image in (picture(0), None):
        entities = recognise(text=text, image=image)
        assert len(entities) >= 2 and all(text[e["start"] : e["end"]] == e["word"] for e in entities)
        extract = pipeline(PIPELINE_TASK, model=build_model(METHODS["mmib"], processor).eval(), processor=processor)
        post = extract(text=text, image=image, ner_model=str(output))
        types = {(e["start"], e["end"]): e["entity_group"] for e in entities}
        assert len(post) == len(types) * (len(types) - 1)
        for pair in post:
            assert (
                pair["head_type"] == types[pair["head_offsets"]] and pair["tail_type"] == types[pair["tail_offsets"]]
            )


def test_a_saved_recognizer_runs_where_modeling_mre_cannot_be_imported(trained_mner, tmp_path):
    output, _ = trained_mner
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling_mre"] = None
        from transformers import pipeline
        recognise = pipeline(model={str(output)!r}, trust_remote_code=True)
        print(json.dumps(recognise(text="Big day for Juno Tessaro !", image=None)))
        """
    )
    output = run_in_a_fresh_python(script, tmp_path)
    found = json.loads(output.strip().splitlines()[-1])
    assert all(set(entity) == {"entity_group", "score", "word", "start", "end"} for entity in found)


def test_twitter_pictures_and_mmibs_type_crops_are_found(tmp_path):
    from PIL import Image

    folder = tmp_path / "twitter"
    (folder / "images").mkdir(parents=True)
    (folder / "crops" / "train" / "crops").mkdir(parents=True)
    (folder / "train.txt").write_text("IMGID:1\nObama\tB-PER\n\nIMGID:2\nBerlin\tB-LOC\n", encoding="utf-8")
    Image.new("RGB", (8, 8)).save(folder / "images" / "1.jpg")
    for kind in ("person", "location"):
        Image.new("RGB", (8, 8)).save(folder / "crops" / "train" / "crops" / f"crop_{kind}_1.jpg")
    rows = load_twitter_mner(folder, crop_dir=folder / "crops")["train"]
    assert rows[0]["image"] is not None and len(rows[0]["crops"]) == 2
    assert rows[1]["image"] is None and rows[1]["crops"] == []
    assert load_twitter_mner(folder)["train"][0]["crops"] == []  # crops are read only from a crop_dir


def test_an_entity_recognizer_killed_mid_epoch_resumes_as_if_never_stopped(tmp_path):
    from test_training import start_and_kill_after, train

    # 96 tweets in batches of 16: 6 steps an epoch, a checkpoint every 4 steps, so the kill lands
    # inside the first epoch and the resumed run must skip the batches already seen.
    args = [
        "--method",
        "mmib",
        "--dataset",
        "demo-mner",
        "--num_train_epochs",
        "2",
        "--max_train_samples",
        "96",
        "--max_eval_samples",
        "20",
        "--per_device_train_batch_size",
        "16",
        "--checkpointing_steps",
        "4",
    ]
    reference = train(tmp_path / "reference", *args)
    interrupted = tmp_path / "interrupted"
    start_and_kill_after(interrupted, args, "step_4")
    resumed = train(interrupted, *args, "--resume_from_checkpoint", "latest")

    assert resumed["best_epoch"] == reference["best_epoch"]
    for ours, theirs in zip(resumed["log_history"], reference["log_history"], strict=True):
        assert ours["validation_micro_f1"] == pytest.approx(theirs["validation_micro_f1"], abs=1e-6)
    assert resumed["log_history"][-1]["train_loss"] == pytest.approx(
        reference["log_history"][-1]["train_loss"], rel=1e-5
    )
    for split in ("validation", "test"):
        assert resumed[split]["micro_f1"] == pytest.approx(reference[split]["micro_f1"], abs=1e-6)
        assert resumed[split]["per_type"].keys() == reference[split]["per_type"].keys()
        for entity_type, row in reference[split]["per_type"].items():
            assert resumed[split]["per_type"][entity_type]["f1"] == pytest.approx(row["f1"], abs=1e-6), (
                split,
                entity_type,
            )


def test_the_entity_pipeline_reads_a_cut_emoji_and_refuses_relation_arguments(ner_processor):
    from ner_contract import build_tagger
    from transformers import pipeline

    from modeling_mre import NER_METHODS, NER_PIPELINE_TASK

    recognise = pipeline(
        NER_PIPELINE_TASK, model=build_tagger(NER_METHODS["mmib"], ner_processor).eval(), processor=ner_processor
    )
    # A tweet cut inside an emoji: read as U+FFFD in its place, so the words keep their offsets.
    cut = recognise(text="obama visits berlin \ud83d", aggregation_strategy="none")
    whole = recognise(text="obama visits berlin \ufffd", aggregation_strategy="none")
    assert [(w["entity"], w["start"], w["end"]) for w in cut] == [(w["entity"], w["start"], w["end"]) for w in whole]
    for argument in ({"top_k": 2}, {"threshold": 0.5}):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{next(iter(argument))}'"):
            recognise(text="obama visits berlin", **argument)
