"""The controlled benchmark: its dials, its ceilings, and what stays fixed when a dial moves."""

import pytest

from modeling_mre import load_mnre
from modeling_mre.data.controlled import Dials, relation_names, write_controlled_dataset


SMALL = dict(num_train=300, num_validation=40, num_test=40, seed=3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controlled") / "clean"
    return folder, write_controlled_dataset(folder, **SMALL)


def test_it_reads_as_mnre_and_needs_both_modalities(clean):
    folder, info = clean
    dataset = load_mnre(folder)
    assert dataset["train"].features["relation"].names == info["relations"] == relation_names(0)
    assert len(dataset["train"]) == 300 and all(row["image"] is not None for row in dataset["validation"])
    for split in ("train", "val", "test"):
        ceilings = info["ceilings"][split]
        assert ceilings["both"]["accuracy"] == 1.0
        # Each modality alone stays far under: the text misses the scene, the image the register.
        assert ceilings["text"]["accuracy"] < 0.7 and ceilings["image"]["accuracy"] < 0.7
    # With 300 posts the text-only ceiling is near its expectation, 0.2 + 0.8 / 3.
    assert info["ceilings"]["train"]["text"]["accuracy"] == pytest.approx(0.2 + 0.8 / 3, abs=0.07)


def test_dials_change_the_pictures_only(clean, tmp_path):
    folder, _ = clean
    noisy_folder = tmp_path / "noisy"
    noisy = write_controlled_dataset(noisy_folder, noise_share=1.0, num_distractors=2, **SMALL)
    # Same texts and labels: a text-only model gives the same results at every dial setting.
    for split in ("train", "val", "test"):
        assert (noisy_folder / f"ours_{split}.txt").read_bytes() == (folder / f"ours_{split}.txt").read_bytes()
    assert (noisy_folder / "img_org/train/controlled_train_00000.png").read_bytes() != (
        folder / "img_org/train/controlled_train_00000.png"
    ).read_bytes()
    # Every picture unrelated: reading both modalities is worth what the text alone is.
    assert noisy["ceilings"]["test"]["both"] == noisy["ceilings"]["test"]["text"]
    # The description says which posts' pictures are unrelated, for analyses by post.
    assert all(post["unrelated_image"] for post in noisy["posts"]["test"])
    assert not any(post["unrelated_image"] or post["missing_image"] for post in clean[1]["posts"]["test"])


def test_missing_pictures_and_fine_grained_pairs(tmp_path):
    info = write_controlled_dataset(tmp_path / "d", missing_share=0.5, fine_grained_pairs=2, **SMALL)
    assert len(info["relations"]) == 1 + 2 * (2 * 2 + 1)  # None, then 2 registers x (2 split scenes + 1)
    assert "/personal/stripes-fine" in info["relations"] and "/personal/rings" in info["relations"]
    dataset = load_mnre(tmp_path / "d")
    missing = sum(row["image"] is None for row in dataset["train"])
    assert 100 < missing < 200
    assert 0.5 < info["ceilings"]["train"]["both"]["accuracy"] < 0.9


def test_candidate_objects_make_the_text_say_which_object_matters(clean, tmp_path):
    import numpy as np
    from PIL import Image

    from modeling_mre.data.controlled import OBJECT_COLOURS

    folder, info = clean
    three = write_controlled_dataset(tmp_path / "three", num_candidate_objects=3, **SMALL)
    two = write_controlled_dataset(tmp_path / "two", num_candidate_objects=2, **SMALL)
    dataset = load_mnre(tmp_path / "three")
    plain = load_mnre(folder)
    for row, original in zip(dataset["train"], plain["train"]):
        # The post is the same text, then the named object's colour: "( photo : the red one )".
        assert (
            row["tokens"][: len(original["tokens"])] == original["tokens"] and row["relation"] == original["relation"]
        )
        cue = row["tokens"][len(original["tokens"]) :]
        assert cue[:4] == ["(", "photo", ":", "the"] and cue[4] in OBJECT_COLOURS and cue[5:] == ["one", ")"]
    pixels = np.asarray(Image.open(tmp_path / "three/img_org/train/controlled_train_00000.png"), dtype=np.float32)
    half = pixels.shape[0] // 2
    quadrants = [pixels[top : top + half, left : left + half] for top in (0, half) for left in (0, half)]
    assert sorted(float(q.std(axis=(0, 1)).mean()) > 20 for q in quadrants) == [
        False,
        True,
        True,
        True,
    ]  # 3 textures, 1 plain
    # Three objects of three scenes: the picture alone tells nothing of the scene; two narrow it to a pair.
    for split in ("train", "val", "test"):
        ceilings = three["ceilings"][split]
        assert ceilings["both"]["accuracy"] == 1.0 and ceilings["image"]["accuracy"] < 0.35
        assert ceilings["text"] == info["ceilings"][split]["text"]
        assert (
            three["ceilings"][split]["image"]["accuracy"]
            < two["ceilings"][split]["image"]["accuracy"]
            < info["ceilings"][split]["image"]["accuracy"]
        )
        # Reading both without knowing which object the post names: no better than the text with three
        # objects; with two, half the scenes, so between the text alone and both.
        assert ceilings["unguided"] == ceilings["text"]
        guessing = two["ceilings"][split]
        assert guessing["text"]["accuracy"] < guessing["unguided"]["accuracy"] < guessing["both"]["accuracy"] == 1.0
    assert "unguided" not in info["ceilings"]["test"]
    with pytest.raises(ValueError, match="set one of them"):
        Dials(num_candidate_objects=2, num_distractors=1)
    with pytest.raises(ValueError, match="box already says"):
        write_controlled_dataset(tmp_path / "more", layout="more", num_candidate_objects=2, **SMALL)


@pytest.mark.parametrize(
    "dials",
    [dict(noise_share=1.5), dict(num_distractors=5), dict(fine_grained_pairs=4), dict(num_candidate_objects=4)],
)
def test_out_of_range_dials_are_refused(dials):
    with pytest.raises(ValueError, match=next(iter(dials))):
        Dials(**dials)


def test_more_layout_puts_the_scene_on_the_tail_object(tmp_path):
    from modeling_mre import load_more

    info = write_controlled_dataset(tmp_path / "more", layout="more", num_distractors=3, missing_share=0.2, **SMALL)
    dataset = load_more(tmp_path / "more")
    row = dataset["train"][0]
    assert row["tail"]["name"] == "object_0" and len(row["tail_box"]) == 4
    assert dataset["train"].features["relation"].names == info["relations"]
    # A post without its picture keeps its tail's box.
    assert any(r["image"] is None and r["tail_box"] is not None for r in dataset["train"])
    assert info["ceilings"]["train"]["text"]["accuracy"] < info["ceilings"]["train"]["both"]["accuracy"]
    with pytest.raises(ValueError, match="layout"):
        write_controlled_dataset(tmp_path / "other", layout="tacred")
