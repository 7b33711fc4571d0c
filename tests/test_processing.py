"""MREProcessor: markers, spans, truncation window, dynamic padding, images and crops."""

import io

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoTokenizer, BertTokenizer, CLIPImageProcessor

from modeling_mre import MREProcessor
from modeling_mre.models.images_mre import record_tail
from modeling_mre.models.processing_mre import entity_pair_problem


def tokens_of(processor, input_ids):
    return [t for t in processor.tokenizer.convert_ids_to_tokens(input_ids) if t != "[PAD]"]


def test_text_with_entity_strings(processor):
    encoding = processor(text="Obama visits Berlin today", head="Obama", tail="Berlin")
    assert tokens_of(processor, encoding["input_ids"][0]) == [
        "[CLS]",
        "<s>",
        "obama",
        "</s>",
        "visits",
        "<o>",
        "berlin",
        "</o>",
        "today",
        "[SEP]",
    ]
    assert "pixel_values" not in encoding


def test_character_offsets_and_token_spans_give_the_same_encoding(processor):
    by_offsets = processor(text="Obama visits Berlin today", head=(0, 5), tail={"start": 13, "end": 19})
    by_tokens = processor(
        tokens=["Obama", "visits", "Berlin", "today"], head={"start": 0, "end": 1}, tail={"start": 2, "end": 3}
    )
    assert torch.equal(by_offsets["input_ids"], by_tokens["input_ids"])


def test_closing_marker_kept_when_span_ends_the_sentence(processor):
    # HVPNeT drops </o> here because its loop inserts closers before index pos[1].
    encoding = processor(
        tokens=["obama", "visits", "berlin"], head={"start": 0, "end": 1}, tail={"start": 2, "end": 3}
    )
    assert tokens_of(processor, encoding["input_ids"][0])[-3:] == ["berlin", "</o>", "[SEP]"]


def test_a_span_inside_the_other_nests_its_markers_and_crossing_spans_are_refused(processor):
    encoding = processor(tokens=["a", "b", "c", "d"], head={"start": 0, "end": 3}, tail={"start": 1, "end": 2})
    assert tokens_of(processor, encoding["input_ids"][0])[1:-1] == ["<s>", "a", "<o>", "b", "</o>", "c", "</s>", "d"]
    with pytest.raises(
        ValueError, match=r"example 0: the head \(0, 3\) and the tail \(2, 5\) overlap without one containing"
    ):
        processor(tokens=["a", "b", "c", "d"], head={"start": 0, "end": 2}, tail={"start": 1, "end": 3})
    with pytest.raises(ValueError, match="overlap without one containing"):
        processor(text="New York City Hall", head=(0, 8), tail=(4, 13))


def test_identical_head_and_tail_is_an_error(processor):
    with pytest.raises(ValueError, match="same span"):
        processor(tokens=["a", "b"], head={"start": 0, "end": 1}, tail={"start": 0, "end": 1})
    with pytest.raises(ValueError, match="same span"):
        processor(text="Obama visits Berlin", head="Obama", tail="Obama")


def test_long_text_is_cut_around_the_entities(processor):
    words = ["w"] * 30 + ["obama", "visits", "berlin"] + ["w"] * 30
    encoding = processor(tokens=words, head={"start": 30, "end": 31}, tail={"start": 32, "end": 33})
    tokens = tokens_of(processor, encoding["input_ids"][0])
    assert len(tokens) == 16 and tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    for marker in ("<s>", "</s>", "<o>", "</o>"):
        assert tokens.count(marker) == 1
    # Entities at the very end of a long text stay in the window too.
    encoding = processor(
        tokens=["w"] * 60 + ["obama", "berlin"], head={"start": 60, "end": 61}, tail={"start": 61, "end": 62}
    )
    assert tokens_of(processor, encoding["input_ids"][0])[-7:] == [
        "<s>",
        "obama",
        "</s>",
        "<o>",
        "berlin",
        "</o>",
        "[SEP]",
    ]


def test_entities_farther_apart_than_max_length_are_read_in_two_windows(processor):
    words = ["a"] + ["obama"] + ["w"] * 30 + ["berlin", "b", "c"]
    encoding = processor(tokens=words, head={"start": 1, "end": 2}, tail={"start": 32, "end": 33})
    tokens = processor.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    gap = processor.tokenizer.convert_ids_to_tokens(processor._gap_ids)
    # max_length 16: 14 for the text, 3 per entity with its markers, the gap, and the rest shared as context
    assert tokens == ["[CLS]", "a", "<s>", "obama", "</s>", "w", *gap, "w", "<o>", "berlin", "</o>", "b", "c", "[SEP]"]
    # the tail first works the same way
    swapped = processor(tokens=words, head={"start": 32, "end": 33}, tail={"start": 1, "end": 2})
    assert processor.tokenizer.convert_ids_to_tokens(swapped["input_ids"][0])[2:5] == ["<o>", "obama", "</o>"]


def test_an_entity_too_long_on_its_own_is_an_error(processor):
    words = ["obama"] * 14 + ["w"] * 30 + ["berlin"]
    with pytest.raises(
        ValueError, match=r"example 0: an entity with its markers is too long for max_length=16 \(19 tokens"
    ):
        processor(tokens=words, head={"start": 0, "end": 14}, tail={"start": 44, "end": 45})


def test_two_windows_on_the_real_tokenizer(minilm_processor):
    filler = " ".join(["the weather was mild and the crowd was large"] * 6)
    text = f"Yesterday Angela Merkel met officials. {filler} Later she visited Paris with friends."
    head, tail = (
        (text.index("Angela Merkel"), text.index("Angela Merkel") + 13),
        (text.index("Paris"), text.index("Paris") + 5),
    )
    input_ids = minilm_processor(text=text, head=head, tail=tail)["input_ids"][0].tolist()
    tokens = minilm_processor.tokenizer.convert_ids_to_tokens(input_ids)
    assert len(input_ids) == minilm_processor.max_length == 32
    tokenize = minilm_processor.tokenizer.tokenize
    assert tokens[tokens.index("<s>") + 1 : tokens.index("</s>")] == tokenize("Angela Merkel")
    assert tokens[tokens.index("<o>") + 1 : tokens.index("</o>")] == tokenize("Paris")
    between = input_ids[tokens.index("</s>") + 1 : tokens.index("<o>")]
    gap = minilm_processor._gap_ids
    assert any(between[i : i + len(gap)] == gap for i in range(len(between)))  # the two windows are joined
    assert "yesterday" in tokens and "friends" in tokens  # context around each entity


def test_dynamic_padding(processor):
    encoding = processor(
        tokens=[["a", "b"], ["a", "b", "c", "d", "x"]],
        head=[{"start": 0, "end": 1}] * 2,
        tail=[{"start": 1, "end": 2}] * 2,
    )
    assert encoding["input_ids"].shape == (2, 11)  # the longest example, not a fixed length
    assert encoding["attention_mask"].sum(-1).tolist() == [8, 11]


@pytest.mark.parametrize(
    "head, message",
    [
        ("Merkel", "not found"),
        ("a", "occurs 2 times"),
        ((3, 99), "not a non-empty range"),
        (42, "must be a string"),
        ("  ", "empty or blank string"),
        ((1, 2), "head span \\(1, 2\\) is only whitespace"),
        # A dataset record's token span given with raw text: its name shows it is not character offsets.
        ({"name": "visits", "start": 0, "end": 1}, "name 'visits' is not the text at characters \\[0, 1\\), 'a'"),
    ],
)
def test_bad_entities_are_clear_errors(processor, head, message):
    with pytest.raises((ValueError, TypeError), match=message):
        processor(text="a visits Berlin a", head=head, tail="Berlin")


def test_offsets_of_any_integer_type_and_a_dict_naming_its_text(processor):
    import numpy as np

    expected = processor(text="a visits Berlin a", head=(9, 15), tail=(2, 8))["input_ids"]
    for head in (
        (np.int64(9), np.int32(15)),
        {"name": "Berlin", "start": np.int64(9), "end": 15},
        {"start": 9, "end": 15},
    ):
        assert torch.equal(processor(text="a visits Berlin a", head=head, tail=(2, 8))["input_ids"], expected)
    words = ["a", "visits", "b"]
    numpy_span = processor(tokens=words, head={"start": np.int64(0), "end": np.int64(1)}, tail={"start": 2, "end": 3})
    assert torch.equal(
        numpy_span["input_ids"],
        processor(tokens=words, head={"start": 0, "end": 1}, tail={"start": 2, "end": 3})["input_ids"],
    )


def test_unpaired_surrogates_are_replaced_one_for_one_and_counted(processor, caplog):
    from modeling_mre import MNERProcessor

    # A post cut inside an emoji: "\ud83d" alone is valid JSON and a valid str, but no tokenizer takes it.
    cut = "obama visits berlin \ud83d"
    whole = "obama visits berlin \ufffd"
    with caplog.at_level("WARNING"):
        encoding = processor(text=cut, head="obama", tail=(13, 19), relations={"in": "{head} in {tail} \ud83d"})
    assert "1 unpaired surrogate characters" in caplog.text and "replaced by U+FFFD" in caplog.text
    reference = processor(text=whole, head="obama", tail=(13, 19), relations={"in": "{head} in {tail} \ufffd"})
    for key in ("input_ids", "relation_input_ids"):
        assert torch.equal(encoding[key], reference[key])
    # An entity string holding the surrogate is found where the text holds it; offsets still count it.
    assert torch.equal(
        processor(text=cut, head="obama", tail="berlin \ud83d")["input_ids"],
        processor(text=whole, head="obama", tail=(13, 21))["input_ids"],
    )
    ner = MNERProcessor(
        image_processor=processor.image_processor, tokenizer=processor.tokenizer, max_length=16, stride=2
    )
    assert torch.equal(ner(text=cut)["input_ids"], ner(text=whole)["input_ids"])
    assert torch.equal(ner(tokens=["obama", "\udc00"])["input_ids"], ner(tokens=["obama", "\ufffd"])["input_ids"])


def test_empty_text_and_both_inputs_are_errors(processor):
    with pytest.raises(ValueError, match="empty"):
        processor(text="   ", head=(0, 1), tail=(1, 2))
    with pytest.raises(ValueError, match="exactly one"):
        processor(text="a b", tokens=["a", "b"], head=(0, 1), tail=(2, 3))


def test_images_absent_present_and_crops(processor, tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(path)
    encoding = processor(
        tokens=[["a", "b"]] * 3,
        head=[{"start": 0, "end": 1}] * 3,
        tail=[{"start": 1, "end": 2}] * 3,
        images=[None, str(path), Image.new("L", (20, 20))],
        crops=[[Image.new("RGB", (9, 9))], None, [Image.new("RGB", (5, 5))] * 5],
    )
    assert encoding["image_mask"].tolist() == [False, True, True]
    assert encoding["pixel_values"].shape == (3, 3, 32, 32)
    assert torch.count_nonzero(encoding["pixel_values"][0]) == 0
    assert encoding["crop_pixel_values"].shape == (3, 3, 3, 32, 32)  # at most max_object_crops
    assert encoding["crop_mask"].tolist() == [[True, False, False], [False, False, False], [True, True, True]]
    with pytest.raises(TypeError, match="an image must be a file path, a URL, .* a torch tensor or None, got int"):
        processor(text="a b", head="a", tail="b", images=123)


def test_save_and_reload(processor, tmp_path):
    processor.save_pretrained(tmp_path / "saved")
    reloaded = MREProcessor.from_pretrained(tmp_path / "saved")
    assert reloaded.max_length == 16 and reloaded.marker_ids == processor.marker_ids
    text = dict(text="Obama visits Berlin today", head="Obama", tail="Berlin", images=Image.new("RGB", (40, 40)))
    for key, value in processor(**text).items():
        assert torch.equal(reloaded(**text)[key], value)


def test_markers_that_clash_with_special_tokens_are_refused(tiny_vocab):
    with pytest.raises(ValueError, match="already special tokens"):
        MREProcessor(CLIPImageProcessor(), BertTokenizer(vocab=str(tiny_vocab)), head_markers=("[CLS]", "</s>"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_markers_and_entities_always_survive(processor, data):
    words = data.draw(
        st.lists(st.sampled_from(["a", "b", "c", "x", "y", "obama", "é", "🙂"]), min_size=2, max_size=40)
    )
    length = data.draw(st.integers(1, 2))
    head_start = data.draw(st.integers(0, len(words) - 1))
    tail_start = data.draw(st.integers(max(0, head_start - 3), min(len(words) - 1, head_start + 3)))
    head = {"start": head_start, "end": min(head_start + length, len(words))}
    tail = {"start": tail_start, "end": min(tail_start + length, len(words))}
    assume(entity_pair_problem((head["start"], head["end"]), (tail["start"], tail["end"])) is None)
    tokens = tokens_of(processor, processor(tokens=words, head=head, tail=tail)["input_ids"][0])
    assert len(tokens) <= processor.max_length
    for marker in ("<s>", "</s>", "<o>", "</o>"):
        assert tokens.count(marker) == 1
    head_tokens = tokens[tokens.index("<s>") + 1 : tokens.index("</s>")]
    expected = processor.tokenizer.tokenize(" ".join(words[head["start"] : head["end"]]))
    assert [t for t in head_tokens if t not in ("<o>", "</o>")] == expected


@pytest.fixture(scope="module")
def minilm_processor():
    from modeling_mre.backbones import EmbeddedBackboneNotInstalledError, embedded_text_backbone

    try:
        text_backbone = embedded_text_backbone()
    except EmbeddedBackboneNotInstalledError as err:
        pytest.skip(str(err))
    return MREProcessor(CLIPImageProcessor(), AutoTokenizer.from_pretrained(text_backbone), max_length=32)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_raw_unicode_text_keeps_markers_and_entities(minilm_processor, data):
    # Random unicode words (letters, digits, punctuation, emoji) with character-offset entities.
    alphabet = st.characters(codec="utf-8", categories=["L", "N", "P", "So"])
    words = data.draw(st.lists(st.text(alphabet, min_size=1, max_size=8), min_size=2, max_size=60))
    text = " ".join(words)
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    head_word, tail_word = data.draw(st.lists(st.integers(0, len(words) - 1), min_size=2, max_size=2, unique=True))
    assume(abs(head_word - tail_word) < 6)  # mostly close enough to fit the window
    head = (starts[head_word], starts[head_word] + len(words[head_word]))
    tail = (starts[tail_word], starts[tail_word] + len(words[tail_word]))

    tokenizer = minilm_processor.tokenizer
    marked = tokenizer(minilm_processor.mark_entities(text, head, tail), add_special_tokens=False)["input_ids"]
    at_markers = [i for i, token_id in enumerate(marked) if token_id in minilm_processor.marker_ids]
    try:
        input_ids = minilm_processor(text=text, head=head, tail=tail)["input_ids"][0].tolist()
    except ValueError as error:
        # Words of many rare characters can tokenize into more tokens than the window holds: refused
        # only when the entities do not fit together, and not even in two windows.
        assert at_markers[-1] - at_markers[0] + 1 > minilm_processor.max_length - 2  # [CLS] and [SEP] besides
        assert "too long for max_length=32" in str(error)
        return
    assert len(input_ids) <= minilm_processor.max_length
    marker_ids = minilm_processor.marker_ids
    assert [input_ids.count(m) for m in marker_ids] == [1, 1, 1, 1]
    for (start, end), (open_id, close_id) in ((head, marker_ids[:2]), (tail, marker_ids[2:])):
        inside = input_ids[input_ids.index(open_id) + 1 : input_ids.index(close_id)]
        alone = tokenizer(text[start:end], add_special_tokens=False)["input_ids"]
        assert [i for i in inside if i not in marker_ids] == alone


def quadrants(size=(40, 20)) -> Image.Image:
    """An image whose four quadrants have four colours, so that a crop shows which part was cut."""
    width, height = size
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 255, 0), (width // 2, 0, width, height // 2))
    image.paste((0, 0, 255), (0, height // 2, width // 2, height))
    image.paste((255, 255, 0), (width // 2, height // 2, width, height))
    return image


def test_object_tail_is_a_second_segment_with_box_features_and_crop(processor):
    image = quadrants()
    encoding = processor(
        text=["Obama visits Berlin", "Obama with Merkel"],
        head=["Obama", "Obama"],
        tail=[{"name": "dog", "box": [20, 0, 40, 10]}, "Merkel"],
        images=[image, image],
    )
    assert tokens_of(processor, encoding["input_ids"][0]) == [
        "[CLS]",
        "<s>",
        "obama",
        "</s>",
        "visits",
        "berlin",
        "[SEP]",
        "<o>",
        "[UNK]",
        "</o>",
        "[SEP]",
    ]
    assert encoding["token_type_ids"][0].tolist() == [0] * 7 + [1] * 4
    assert encoding["token_type_ids"][1].tolist() == [0] * 11  # a text tail stays one segment
    assert encoding["tail_mask"].tolist() == [True, False]
    torch.testing.assert_close(encoding["tail_box_features"][0], torch.tensor([0.75, 0.25, 0.5, 0.5, 0.25]))
    assert not encoding["tail_box_features"][1].any()
    # The crop is the top-right quadrant: green, as the processor prepares a green picture.
    green = processor(text="a b", head="a", tail="b", images=Image.new("RGB", (20, 10), (0, 255, 0)))["pixel_values"]
    torch.testing.assert_close(encoding["tail_pixel_values"][0], green[0])


def test_pixel_and_normalised_boxes_agree_and_caption_wins_over_name(processor):
    image = quadrants()
    in_pixels = processor(
        text="Obama visits", head="Obama", tail={"box": [0, 10, 20, 20], "name": "dog"}, images=image
    )
    normalised = processor(
        text="Obama visits",
        head="Obama",
        tail={"box": [0, 0.5, 0.5, 1.0], "name": "x", "caption": "dog"},
        images=image,
    )
    for key in ("input_ids", "tail_box_features", "tail_pixel_values"):
        torch.testing.assert_close(in_pixels[key], normalised[key])
    # A normalised box needs no image: the box features are known, and no crop exists.
    without_image = processor(text="Obama visits", head="Obama", tail={"box": [0, 0.5, 0.5, 1.0], "name": "dog"})
    torch.testing.assert_close(without_image["tail_box_features"], normalised["tail_box_features"])
    assert "tail_pixel_values" not in without_image and "pixel_values" not in without_image


def test_pixel_boxes_refer_to_the_upright_image(processor, tmp_path):
    # Stored 20 wide and 40 high with EXIF orientation 6: shown (and loaded) 40 wide and 20 high.
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    quadrants((40, 20)).rotate(90, expand=True).save(path, exif=exif)
    encoding = processor(text="Obama visits", head="Obama", tail={"box": [30, 0, 40, 20]}, images=str(path))
    torch.testing.assert_close(encoding["tail_box_features"][0], torch.tensor([0.875, 0.5, 0.25, 1.0, 0.25]))
    with pytest.raises(ValueError, match="outside the 40x20 image"):
        processor(text="Obama visits", head="Obama", tail={"box": [0, 0, 20, 40]}, images=str(path))


@pytest.mark.parametrize(
    "box, image, message",
    [
        (
            [10, 5, 50, 15],
            quadrants(),
            r"example 0: the tail box \[10, 5, 50, 15\] \(pixels\) lies outside the 40x20 image",
        ),
        ([-2, 0, 10, 10], quadrants(), r"lies outside the 40x20 image"),
        ([10, 5, 10, 15], quadrants(), r"has zero area"),
        ([0.5, 0.2, 0.4, 0.9], None, r"has zero area"),
        ([0.5, 0.2, 1.5, 0.9], quadrants(), r"under one pixel .* normalised box must lie within \[0, 1\]"),
        ([10, 5, 20, 15], None, r"is in pixels, which needs the image"),
        ([0, 0, 1], quadrants(), r"four finite numbers"),
        ([0, 0, float("nan"), 1], quadrants(), r"four finite numbers"),
        ("0 0 1 1", quadrants(), r"four finite numbers"),
    ],
)
def test_bad_boxes_are_clear_errors(processor, box, image, message):
    with pytest.raises(ValueError, match=message):
        processor(text="Obama visits", head="Obama", tail={"box": box}, images=image)


def test_long_text_with_object_tail_keeps_head_and_tail_segment(processor):
    words = ["w"] * 30 + ["obama"] + ["w"] * 30
    tail = {"box": [0.1, 0.1, 0.5, 0.5], "caption": "a dog with the b c d x y w w w w"}
    tokens = tokens_of(processor, processor(tokens=words, head={"start": 30, "end": 31}, tail=tail)["input_ids"][0])
    assert len(tokens) == processor.max_length
    assert tokens.count("<s>") == tokens.count("</s>") == tokens.count("<o>") == tokens.count("</o>") == 1
    assert tokens[tokens.index("<s>") : tokens.index("</s>") + 1] == ["<s>", "obama", "</s>"]
    # A caption longer than half the window gives up its end, never its markers.
    assert tokens[tokens.index("[SEP]") + 1 :] == ["<o>", "a", "[UNK]", "with", "the", "b", "</o>", "[SEP]"]


def test_record_tail_turns_the_schema_into_processor_tails():
    span = {"name": "Berlin", "start": 2, "end": 3}
    assert record_tail({"tail": span}) == span
    assert record_tail({"tail": span, "tail_box": None}) == span
    row = {"tail": {"name": "dog", "start": None, "end": None}, "tail_box": [0.5, 0.5, 0.2, 0.4], "tail_caption": None}
    assert record_tail(row) == {"name": "dog", "box": pytest.approx([0.4, 0.3, 0.6, 0.7])}
    assert record_tail({**row, "tail_caption": "a brown dog"})["caption"] == "a brown dog"


def test_tokenizer_options_mean_what_they_do_or_are_refused_by_name(processor, ner_processor):
    example = dict(text="Obama visits Berlin", head="Obama", tail="Berlin")
    default = processor(**example)
    # What the processor does anyway is accepted: padding to the longest, truncation, its own max_length.
    same = processor(**example, padding=True, truncation=True, max_length=processor.max_length, return_tensors="pt")
    assert torch.equal(same["input_ids"], default["input_ids"])
    for option, value in (("padding", "max_length"), ("padding", False), ("truncation", False), ("max_length", 512)):
        with pytest.raises(ValueError, match=f"{option}={value!r} is not supported per call"):
            processor(**example, **{option: value})
        with pytest.raises(ValueError, match=f"{option}={value!r} is not supported per call"):
            ner_processor(text="Obama visits Berlin", **{option: value})
    with pytest.raises(ValueError, match="return_tensors must be 'pt', got 'np'"):
        processor(**example, return_tensors="np")
    with pytest.raises(TypeError, match="unexpected argument 'stride'"):
        processor(**example, stride=4)
    # Bytes and datasets' undecoded dict are images like any other.
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buffer, format="PNG")
    from_bytes = processor(**example, images=buffer.getvalue())
    from_dict = processor(**example, images={"bytes": buffer.getvalue(), "path": None})
    from_pil = processor(**example, images=Image.new("RGB", (40, 30), "red"))
    torch.testing.assert_close(from_bytes["pixel_values"], from_pil["pixel_values"])
    torch.testing.assert_close(from_dict["pixel_values"], from_pil["pixel_values"])
