import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modeling_mre.data.demo import DEMO_REL2ID, IMAGE_SIZE, write_demo_dataset
from modeling_mre.data.mnre import load_mnre


def file_tree(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = write_demo_dataset(tmp_path_factory.mktemp("demo") / "mre-demo")
    return root, load_mnre(root, cache_dir=tmp_path_factory.mktemp("cache"))


def test_load_mnre_reads_it_with_every_image(demo, caplog):
    root, dataset = demo
    assert {name: split.num_rows for name, split in dataset.items()} == {"train": 600, "validation": 150, "test": 150}
    assert dataset["train"].features["relation"].names == sorted(DEMO_REL2ID, key=DEMO_REL2ID.get)
    with caplog.at_level(logging.WARNING):
        load_mnre(root, strict=True, cache_dir=root.parent / "strict-cache")
    assert caplog.messages == []
    image = dataset["validation"][0]["image"]
    assert isinstance(image, Image.Image) and image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "RGB"


def test_labels_balanced(demo):
    _, dataset = demo
    for split in dataset.values():
        counts = Counter(split["relation"])
        assert set(counts) == set(DEMO_REL2ID.values())
        assert max(counts.values()) - min(counts.values()) <= 1


def test_text_carries_no_label_information(demo):
    _, dataset = demo
    train, held_out = dataset["train"], [*dataset["validation"], *dataset["test"]]
    # Naive Bayes over the words, the strongest text-only rule a template/name shortcut would feed.
    num_labels = len(DEMO_REL2ID)
    word_counts = defaultdict(lambda: np.ones(num_labels))
    label_counts = np.bincount(train["relation"], minlength=num_labels)
    for tokens, label in zip(train["tokens"], train["relation"], strict=True):
        for token in tokens:
            word_counts[token][label] += 1
    totals = sum(word_counts.values())
    correct = 0
    for row in held_out:
        scores = np.log(label_counts) + sum(np.log(word_counts[token] / totals) for token in row["tokens"])
        correct += int(np.argmax(scores) == row["relation"])
    # Chance is 0.25; with 300 held-out rows two standard errors are about 0.05.
    assert correct / len(held_out) < 0.33
    assert not any(name in " ".join(tokens) for tokens in train["tokens"] for name in DEMO_REL2ID if name != "None")


def test_same_seed_same_files_and_rewrite_in_place(tmp_path):
    first = write_demo_dataset(tmp_path / "a", num_train=8, num_validation=4, num_test=4, seed=3)
    second = write_demo_dataset(tmp_path / "b", num_train=8, num_validation=4, num_test=4, seed=3)
    assert file_tree(first) == file_tree(second)
    write_demo_dataset(first, num_train=8, num_validation=4, num_test=4, seed=3)
    assert file_tree(first) == file_tree(second)
    other = write_demo_dataset(tmp_path / "c", num_train=8, num_validation=4, num_test=4, seed=4)
    assert file_tree(other)["ours_train.txt"] != file_tree(first)["ours_train.txt"]
    # No build or backup folder is left beside the dataset.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "b", "c"]


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        write_demo_dataset(tmp_path / "mine", num_train=4, num_validation=4, num_test=4)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]
