"""load_more on a folder in MORE's layout (the released code's), written by write_more_demo_dataset or by hand."""

import ast
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_mre.data.demo import DEMO_REL2ID, write_more_demo_dataset
from modeling_mre.data.more import load_more
from modeling_mre.data.schema import record_features


@pytest.fixture(scope="module")
def more_demo(tmp_path_factory) -> Path:
    return write_more_demo_dataset(
        tmp_path_factory.mktemp("more") / "more-demo", num_train=12, num_validation=4, num_test=4
    )


def copy_of(root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "more"
    shutil.copytree(root, copy)
    return copy


def rewrite_line(root: Path, split: str, index: int, change) -> None:
    path = root / "txt" / f"{split}.txt"
    lines = path.read_text().splitlines()
    lines[index] = change(lines[index])
    path.write_text("\n".join(lines) + "\n")


def test_reads_the_layout_into_the_schema(more_demo, tmp_path):
    dataset = load_more(more_demo, cache_dir=tmp_path)
    assert {split: len(part) for split, part in dataset.items()} == {"train": 12, "validation": 4, "test": 4}
    assert dataset["train"].features == record_features(sorted(DEMO_REL2ID, key=DEMO_REL2ID.get), object_tails=True)
    objects = torch.load(more_demo / "ent_valid_dict.pth", weights_only=True)
    captions = json.loads((more_demo / "caption_dict.json").read_text())
    lines = (more_demo / "txt" / "valid.txt").read_text().splitlines()
    for row, line in zip(dataset["validation"], lines):
        record = ast.literal_eval(line)
        assert row["tokens"] == record["token"]
        assert row["head"] == {
            "name": record["h"]["name"],
            "start": record["h"]["pos"][0],
            "end": record["h"]["pos"][1],
        }
        assert row["tail"] == {"name": record["t"]["name"], "start": None, "end": None}
        np.testing.assert_allclose(row["tail_box"], objects[record["img_id"]][record["t"]["name"]], rtol=1e-6)
        assert row["tail_caption"] == captions[record["img_id"]][record["t"]["name"]]
        assert row["image"] is not None and row["image_id"] == record["img_id"] and row["crops"] == []
        assert dataset["validation"].features["relation"].int2str(row["relation"]) == record["relation"]


def test_without_captions_the_column_is_none(more_demo, tmp_path):
    root = copy_of(more_demo, tmp_path)
    (root / "caption_dict.json").unlink()
    assert set(load_more(root, cache_dir=tmp_path / "cache")["train"]["tail_caption"]) == {None}


def test_missing_caption_is_counted(more_demo, tmp_path, caplog):
    root = copy_of(more_demo, tmp_path)
    (root / "caption_dict.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="modeling_mre.data.more"):
        load_more(root, cache_dir=tmp_path / "cache")
    assert (
        f"train: 12 of 12 tail objects have no caption in {root / 'caption_dict.json'}: their name is used"
        in caplog.messages
    )


def test_absent_image_is_no_image_and_strict_raises(more_demo, tmp_path, caplog):
    root = copy_of(more_demo, tmp_path)
    first = sorted((root / "img_org" / "train").iterdir())[0]
    first.unlink()
    with caplog.at_level(logging.WARNING):
        dataset = load_more(root, cache_dir=tmp_path / "cache")
    assert dataset["train"][0]["image"] is None and dataset["train"][0]["tail_box"] is not None
    assert f"train: 1 of 12 images absent under {root / 'img_org' / 'train'}: treated as no image" in caplog.messages
    with pytest.raises(FileNotFoundError, match=r"train\.txt line 1, field 'img_id'"):
        load_more(root, strict=True, cache_dir=tmp_path / "cache")


def test_boxes_of_numpy_scalars_and_rounding_overshoot(more_demo, tmp_path):
    root = copy_of(more_demo, tmp_path)
    objects = torch.load(root / "ent_train_dict.pth", weights_only=True)
    img_id = next(iter(objects))
    name = next(iter(objects[img_id]))
    tail_lines = [i for i, line in enumerate((root / "txt" / "train.txt").read_text().splitlines()) if img_id in line]
    rewrite_line(
        root,
        "train",
        tail_lines[0],
        lambda line: line.replace(line[line.index("'t': ") : line.index(", 'img_id'")], f"'t': {{'name': '{name}'}}"),
    )
    # A detector box that pokes 0.5% past the right edge, stored as numpy scalars.
    objects[img_id][name] = (np.float32(0.9), np.float64(0.5), np.float32(0.21), np.float32(0.4))
    torch.save(objects, root / "ent_train_dict.pth")
    row = load_more(root, cache_dir=tmp_path / "cache")["train"][tail_lines[0]]
    x0, x1 = 0.9 - 0.21 / 2, 1.0
    np.testing.assert_allclose(row["tail_box"], [(x0 + x1) / 2, 0.5, x1 - x0, 0.4], rtol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda line: line[:-3], r"train\.txt line 2: not a Python literal"),
        (
            lambda line: line.replace("'t': {'name'", "'t': {'label'"),
            r"train\.txt line 2, field 't\.name': expected the name of an object",
        ),
        (
            lambda line: line.replace("'name': 'object_", "'name': 'podium_"),
            r"train\.txt line 2, field 't\.name': unknown object 'podium_\d'; .*ent_train_dict\.pth lists \['object_0', 'object_1'",
        ),
        (
            lambda line: line.replace(".png'", "_other.png'"),
            r"train\.txt line 2, field 'img_id': 'more_demo_train_00001_other\.png' has no objects in .*ent_train_dict\.pth",
        ),
        (
            lambda line: line.replace("'relation': '", "'relation': 'x"),
            r"train\.txt line 2, field 'relation': unknown relation",
        ),
        (
            lambda line: line.replace("'pos': [", "'pos': [7, "),
            r"train\.txt line 2, field 'h\.pos': expected two integers",
        ),
    ],
)
def test_malformed_lines_name_file_line_and_field(more_demo, tmp_path, change, message):
    root = copy_of(more_demo, tmp_path)
    rewrite_line(root, "train", 1, change)
    with pytest.raises(ValueError, match=message):
        load_more(root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "box, message",
    [
        ((0.5, 0.5, 0.0, 0.2), r"box \[0\.5, 0\.5, 0\.0, 0\.2\] has zero area"),
        ((0.9, 0.5, 0.4, 0.2), r"box \[0\.9, 0\.5, 0\.4, 0\.2\] \(normalised cx, cy, w, h\) lies outside the image"),
        ((0.5, 0.5, 0.2), r"expected a box of four numbers"),
        ((0.5, float("nan"), 0.2, 0.2), r"expected a box of four numbers"),
    ],
)
def test_bad_boxes_name_file_image_and_object(more_demo, tmp_path, box, message):
    root = copy_of(more_demo, tmp_path)
    line = (root / "txt" / "train.txt").read_text().splitlines()[0]
    record = ast.literal_eval(line)
    objects = torch.load(root / "ent_train_dict.pth", weights_only=True)
    objects[record["img_id"]][record["t"]["name"]] = box
    torch.save(objects, root / "ent_train_dict.pth")
    where = rf"ent_train_dict\.pth, image '{record['img_id']}', object '{record['t']['name']}': "
    with pytest.raises(ValueError, match=where + message):
        load_more(root, cache_dir=tmp_path / "cache")


def test_unusable_box_files(more_demo, tmp_path):
    root = copy_of(more_demo, tmp_path)
    (root / "ent_valid_dict.pth").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"valid\.txt needs the object boxes of its images: .*ent_valid_dict\.pth not found"
    ):
        load_more(root, cache_dir=tmp_path / "cache")
    torch.save([1, 2], root / "ent_valid_dict.pth")
    with pytest.raises(ValueError, match=r"ent_valid_dict\.pth: expected a dict from image file name to its objects"):
        load_more(root, cache_dir=tmp_path / "cache")

    # A pickled object other than plain data would run code on load: weights_only refuses it.
    torch.save({"a.png": Path("x")}, root / "ent_valid_dict.pth")
    with pytest.raises(ValueError, match=r"ent_valid_dict\.pth: cannot be read by torch\.load\(weights_only=True\)"):
        load_more(root, cache_dir=tmp_path / "cache")


def test_missing_files_list_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match="No label file found at"):
        load_more(tmp_path)
    (tmp_path / "rel2id.json").write_text(json.dumps({"None": 0}))
    with pytest.raises(FileNotFoundError, match=r"No MORE split file found; tried: .*txt/train\.txt"):
        load_more(tmp_path)
