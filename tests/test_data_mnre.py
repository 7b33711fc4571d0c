import json
import logging
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image

from modeling_mre.data.mnre import load_mnre
from modeling_mre.data.schema import record_features


REL2ID = {"None": 0, "/per/per/peer": 1, "/per/loc/place_of_residence": 2}


def record(**overrides) -> dict:
    base = {
        "token": ["RT", "@someone", ":", "Ana", "Lima", "moved", "to", "Porto", "today"],
        "h": {"name": "Ana Lima", "pos": [3, 5]},
        "t": {"name": "Porto", "pos": [7, 8]},
        "img_id": "img_0.jpg",
        "relation": "/per/loc/place_of_residence",
    }
    base.update(overrides)
    return base


def write_dataset(root: Path, lines: list, split_file: str = "ours_train.txt") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ours_rel2id.json").write_text(json.dumps(REL2ID))
    path = root / split_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else repr(line)) + "\n" for line in lines))
    return root


def write_image(path: Path, size: tuple[int, int] = (20, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "red").save(path)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, log_record: logging.LogRecord) -> None:
        self.messages.append(log_record.getMessage())


@pytest.fixture(scope="module")
def real_mnre(mnre_dir, tmp_path_factory):
    # Loaded once for all real-data tests; the handler keeps the warnings a module fixture cannot caplog.
    handler = _Collect()
    logger = logging.getLogger("modeling_mre.data.schema")
    logger.addHandler(handler)
    try:
        dataset = load_mnre(mnre_dir, cache_dir=tmp_path_factory.mktemp("cache"))
    finally:
        logger.removeHandler(handler)
    return dataset, handler.messages


class TestRealMNRE:
    def test_splits_and_labels(self, real_mnre, mnre_dir):
        dataset, _ = real_mnre
        assert set(dataset) == {"train", "validation"}
        assert dataset["train"].num_rows == 12247
        assert dataset["validation"].num_rows == 1624
        names = dataset["train"].features["relation"].names
        rel2id = json.loads((mnre_dir / "ours_rel2id.json").read_text())
        assert len(names) == 23 and names[0] == "None"
        assert names == sorted(rel2id, key=rel2id.get)
        assert Counter(dataset["validation"]["relation"])[0] == 1000
        assert Counter(dataset["train"]["relation"])[0] == 7744

    def test_spans_match_names(self, real_mnre):
        dataset, _ = real_mnre
        for split in dataset.values():
            for row in split.select_columns(["tokens", "head", "tail"]):
                for entity in (row["head"], row["tail"]):
                    assert 0 <= entity["start"] < entity["end"] <= len(row["tokens"])
                    assert " ".join(row["tokens"][entity["start"] : entity["end"]]) == entity["name"]

    def test_ids_follow_line_order(self, real_mnre, mnre_dir):
        dataset, _ = real_mnre
        assert dataset["validation"][0]["id"] == "validation-0"
        assert dataset["train"][12246]["id"] == "train-12246"
        first_val_line = (mnre_dir / "mnre_txt" / "mnre_val .txt").open(encoding="utf-8").readline()
        assert dataset["validation"][0]["image_id"] in first_val_line

    def test_all_images_and_crops_absent(self, real_mnre, mnre_dir):
        dataset, messages = real_mnre
        for split in dataset.values():
            assert all(image is None for image in split["image"])
            assert all(crops == [] for crops in split["crops"])
        assert (
            f"train: 12247 of 12247 images absent under {mnre_dir / 'img_org' / 'train'}: treated as no image"
            in messages
        )
        assert (
            f"validation: 1624 of 1624 images absent under {mnre_dir / 'img_org' / 'val'}: treated as no image"
            in messages
        )
        # The crop index names 32,550 train crops, none of which were ever published with the text.
        assert any(m.startswith("train: 32550 of 32550 object crops absent") for m in messages)

    def test_strict_rejects_absent_image(self, mnre_dir, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"mnre_train\.txt line 1, field 'img_id'"):
            load_mnre(mnre_dir, strict=True, cache_dir=tmp_path)


class TestMalformedInput:
    @pytest.mark.parametrize(
        "bad_line, message",
        [
            ("{'token': ['a', 'b'],", "ours_train.txt line 2: not a Python literal"),
            ("['a', 'b']", "ours_train.txt line 2: expected a dict literal, got list"),
            ({k: v for k, v in record().items() if k != "img_id"}, "ours_train.txt line 2, field 'img_id': missing"),
            (record(token=["a", 3]), "ours_train.txt line 2, field 'token': expected a list of strings"),
            (
                record(h={"name": "Ana Lima", "pos": [3]}),
                "ours_train.txt line 2, field 'h.pos': expected two integers",
            ),
            (
                record(token=["w"] * 20, h={"name": "x", "pos": [3, 40]}),
                "ours_train.txt line 2, field 'h.pos': span [3, 40] out of range for 20 tokens",
            ),
            (
                record(t={"name": "Ana", "pos": [5, 4]}),
                "ours_train.txt line 2, field 't.pos': span [5, 4] out of range",
            ),
            (
                record(t={"name": "Lisbon", "pos": [7, 8]}),
                "ours_train.txt line 2, field 't.name': 'Lisbon' does not match tokens[7:8] = 'Porto'",
            ),
            (
                record(t={"name": "Ana Lima", "pos": [3, 5]}),
                "ours_train.txt line 2, field 't.pos': the tail is the same span as the head",
            ),
            (record(img_id="../escape.jpg"), "ours_train.txt line 2, field 'img_id': expected a file name"),
            (
                record(relation="/per/per/rival"),
                "ours_train.txt line 2, field 'relation': unknown relation '/per/per/rival'",
            ),
        ],
        ids=[
            "not-literal",
            "not-dict",
            "missing-key",
            "token-type",
            "pos-shape",
            "span-range",
            "empty-span",
            "name-mismatch",
            "same-span",
            "img-path",
            "relation",
        ],
    )
    def test_error_names_file_line_field(self, tmp_path, bad_line, message):
        root = write_dataset(tmp_path / "data", [record(), bad_line])
        with pytest.raises(ValueError, match=re.escape(message)):
            load_mnre(root, cache_dir=tmp_path / "cache")

    def test_val_file_with_space(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record(), record(relation="Bogus")], "mnre_txt/mnre_val .txt")
        with pytest.raises(ValueError, match=re.escape("mnre_val .txt line 2, field 'relation'")):
            load_mnre(root, cache_dir=tmp_path / "cache")

    def test_no_split_file_lists_paths_tried(self, tmp_path):
        root = tmp_path / "data"
        root.mkdir()
        (root / "ours_rel2id.json").write_text(json.dumps(REL2ID))
        with pytest.raises(FileNotFoundError, match="No MNRE split file found") as error:
            load_mnre(root, cache_dir=tmp_path / "cache")
        for tried in ("mnre_txt/mnre_train.txt", "mnre_txt/mnre_val .txt", "txt/ours_test.txt"):
            assert str(root / tried) in str(error.value)

    def test_missing_or_bad_rel2id(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record()])
        (root / "ours_rel2id.json").unlink()
        with pytest.raises(FileNotFoundError, match="rel2id.json"):
            load_mnre(root, cache_dir=tmp_path / "cache")
        (root / "rel2id.json").write_text(json.dumps({"None": 0, "/per/per/peer": 2}))
        with pytest.raises(ValueError, match=r"rel2id\.json: relation ids must be exactly 0\.\.1"):
            load_mnre(root, cache_dir=tmp_path / "cache")


class TestFilesAndSchema:
    def test_schema_and_row(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record(), record(relation="None")], "txt/ours_train.txt")
        write_dataset(root, [record(img_id="img_9.jpg")], "ours_test.txt")
        dataset = load_mnre(root, cache_dir=tmp_path / "cache")
        assert set(dataset) == {"train", "test"}
        assert dataset["train"].features == record_features(["None", "/per/per/peer", "/per/loc/place_of_residence"])
        assert dataset["train"].features["head"]["start"] == datasets.Value("int32")
        assert isinstance(dataset["train"].features["crops"], datasets.List)
        row = dataset["train"][0]
        assert row == {
            "id": "train-0",
            "tokens": record()["token"],
            "head": {"name": "Ana Lima", "start": 3, "end": 5},
            "tail": {"name": "Porto", "start": 7, "end": 8},
            "image": None,
            "image_id": "img_0.jpg",
            "crops": [],
            "relation": 2,
        }
        assert dataset["train"][1]["relation"] == 0
        assert dataset["test"][0]["id"] == "test-0"

    def test_files_saved_with_a_byte_order_mark(self, tmp_path):
        # As a Windows editor saves them: the mark is not part of the first record (nor of the JSON).
        plain = load_mnre(write_dataset(tmp_path / "plain", [record(), record(relation="None")]))["train"]
        marked = write_dataset(tmp_path / "marked", [record(), record(relation="None")])
        for name in ("ours_train.txt", "ours_rel2id.json"):
            (marked / name).write_bytes(b"\xef\xbb\xbf" + (marked / name).read_bytes())
        assert load_mnre(marked)["train"].to_list() == plain.to_list()

    def test_empty_split_file_is_refused(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record()])
        for content in ("", "\n  \n"):
            (root / "ours_test.txt").write_text(content)
            with pytest.raises(ValueError, match=f"{root / 'ours_test.txt'} is empty: no record to read"):
                load_mnre(root, cache_dir=tmp_path / "cache")

    def test_line_endings_encodings_and_cut_emoji(self, tmp_path, caplog):
        lines = [record(), record(relation="None")]
        plain = load_mnre(write_dataset(tmp_path / "plain", lines), cache_dir=tmp_path / "cache")["train"]
        for ending in ("\r", "\r\n"):  # classic Mac and Windows exports read as the same rows
            root = write_dataset(tmp_path / f"ending{len(ending)}", lines)
            (root / "ours_train.txt").write_bytes(
                (root / "ours_train.txt").read_bytes().replace(b"\n", ending.encode())
            )
            assert load_mnre(root, cache_dir=tmp_path / "cache")["train"].to_list() == plain.to_list()
        root = write_dataset(tmp_path / "latin1", lines)
        content = (root / "ours_train.txt").read_bytes()
        (root / "ours_train.txt").write_bytes(content.replace(b"Porto'", b"P\xf6rto'", 1))
        byte = content.index(b"Porto'") + 1
        with pytest.raises(ValueError, match=f"ours_train.txt line 1: byte {byte} is not UTF-8 \\(b'\\\\xf6'\\)"):
            load_mnre(root, cache_dir=tmp_path / "cache")
        # A token cut inside an emoji, written as a '\\ud83d' escape: read as U+FFFD, and counted.
        cut = record(token=[*record()["token"][:-1], "today\ud83d"])
        with caplog.at_level(logging.WARNING):
            rows = load_mnre(write_dataset(tmp_path / "cut", [record(), cut]), cache_dir=tmp_path / "cache")["train"]
        assert rows[1]["tokens"][-1] == "today\ufffd"
        assert "unpaired surrogate characters replaced by U+FFFD in 1 lines (first: line 2)" in caplog.text
        with pytest.raises(NotADirectoryError, match="data_dir '.*absent' is not a folder"):
            load_mnre(tmp_path / "absent")

    def test_present_images_and_crops(self, tmp_path, caplog):
        root = write_dataset(tmp_path / "data", [record(), "", record(img_id="img_1.jpg")])
        write_image(root / "img_org" / "train" / "img_0.jpg", (20, 10))
        crops = root / "img_vg" / "train" / "crops"
        write_image(crops / "0_crop_0.png", (4, 6))
        (root / "aux").mkdir()
        torch.save({0: ["0_crop_0.png", "0_crop_1.png"], 2: ["2_crop_0.png"]}, root / "aux" / "mre_train_dict.pth")
        with caplog.at_level(logging.WARNING, logger="modeling_mre.data.schema"):
            train = load_mnre(root, cache_dir=tmp_path / "cache")["train"]
        # The blank line is skipped but still counts, so ids and crop keys stay line indices.
        assert train["id"] == ["train-0", "train-2"]
        assert isinstance(train[0]["image"], Image.Image) and train[0]["image"].size == (20, 10)
        assert train[1]["image"] is None
        assert [crop.size for crop in train[0]["crops"]] == [(4, 6)]
        assert train[1]["crops"] == []
        assert caplog.messages == [
            f"train: 1 of 2 images absent under {root / 'img_org' / 'train'}: treated as no image",
            f"train: 2 of 3 object crops absent under {crops}: dropped",
        ]

    def test_image_dir_and_dev_crop_dict(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record()], "ours_val.txt")
        write_image(tmp_path / "images" / "val" / "img_0.jpg")
        write_image(root / "img_vg" / "val" / "crops" / "c.png")
        torch.save({0: ["c.png"]}, root / "mre_dev_dict.pth")
        row = load_mnre(root, image_dir=tmp_path / "images", cache_dir=tmp_path / "cache")["validation"][0]
        assert row["image"] is not None and len(row["crops"]) == 1

    def test_strict_names_file_and_line(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record(), record(img_id="img_1.jpg")])
        write_image(root / "img_org" / "train" / "img_0.jpg")
        with pytest.raises(FileNotFoundError, match=r"ours_train\.txt line 2, field 'img_id': .*img_1\.jpg not found"):
            load_mnre(root, strict=True, cache_dir=tmp_path / "cache")
        write_image(root / "img_org" / "train" / "img_1.jpg")
        assert load_mnre(root, strict=True, cache_dir=tmp_path / "cache")["train"].num_rows == 2

    def test_cache_follows_files(self, tmp_path):
        root = write_dataset(tmp_path / "data", [record()])
        cache = tmp_path / "cache"
        assert load_mnre(root, cache_dir=cache)["train"][0]["image"] is None
        write_image(root / "img_org" / "train" / "img_0.jpg")
        assert load_mnre(root, cache_dir=cache)["train"][0]["image"] is not None
        write_dataset(root, [record(relation="None")])
        assert load_mnre(root, cache_dir=cache)["train"][0]["relation"] == 0
