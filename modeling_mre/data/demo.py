"""
Small synthetic datasets whose labels only the image reveals: MRE in MNRE's layout (the relation is
the texture of the whole picture) and in MORE's (the relation is the texture of the tail object's box,
among other textured objects), and MNER in the Twitter sets' layout (the entity's type is the texture).
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_folder


DEMO_REL2ID = {"None": 0, "/per/per/couple": 1, "/per/per/peer": 2, "/per/misc/present_in": 3}
# The texture drawn for each relation id; only the image tells the relations apart.
DEMO_TEXTURES = ("horizontal stripes", "checkerboard", "concentric rings", "scattered dots")
_TEXTURES = {name: DEMO_TEXTURES[label] for name, label in DEMO_REL2ID.items()}
IMAGE_SIZE = 128
# Written last into the build folder: its presence tells a finished demo dataset (ours to replace)
# from any other folder.
_MARKER = "demo_info.json"

# Texts are drawn independently of the relation, so a text-only model can do no better than chance.
_TEMPLATES = (
    "{h} and {t} shared this photo from the weekend .",
    "Look who showed up : {h} with {t} !",
    "RT @daily_snaps : {t} and {h} last night",
    "{h} posted a new picture with {t} today .",
    "Throwback to {h} meeting {t} #memories",
    "{t} , {h} and friends after the show .",
)
_FIRST_NAMES = tuple("Aldren Brisa Corvin Dellamy Esko Farrah Galen Hesper Ilario Juno Kasimir Liora".split())
_LAST_NAMES = ("Ashgrove", "Brantley", "Quillon", "Marrowby", "Penhale", "Tessaro")
_PLACES = ("Port Velmar", "Lake Orrin", "Kestrel Hill", "Duneholt", "Sarn Valley", "Brightwater Fair")


def entity_name(rng: np.random.Generator) -> str:
    """An invented person or place name."""
    if rng.random() < 0.3:
        return str(rng.choice(_PLACES))
    first = str(rng.choice(_FIRST_NAMES))
    return f"{first} {rng.choice(_LAST_NAMES)}" if rng.random() < 0.5 else first


def text_record(
    rng: np.random.Generator, templates: tuple[str, ...] = _TEMPLATES
) -> tuple[list[str], dict, dict | None]:
    """Tokens of one of `templates` with invented names for `{h}` and `{t}`, and their spans (the tail's None without `{t}`)."""
    head = entity_name(rng)
    tail = entity_name(rng)
    while tail == head:
        tail = entity_name(rng)
    tokens, spans = [], {}
    for word in str(rng.choice(templates)).split():
        if word in ("{h}", "{t}"):
            name = head if word == "{h}" else tail
            spans[word] = {"name": name, "pos": [len(tokens), len(tokens) + len(name.split())]}
            tokens.extend(name.split())
        else:
            tokens.append(word)
    return tokens, spans["{h}"], spans.get("{t}")


_Y, _X = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)


def texture_mask(label: int, rng: np.random.Generator, periods: tuple[float, float] = (10, 24)) -> np.ndarray:
    """A float mask in [0, 1] with the texture `DEMO_TEXTURES[label]` at a random scale (period in `periods`) and offset."""
    period = rng.uniform(*periods)
    phase = rng.uniform(0, period)
    if label == 0:
        return ((_Y + phase) % period < period / 2).astype(np.float32)
    if label == 1:
        cell = period / 2
        return (((_X + phase) // cell + (_Y + rng.uniform(0, period)) // cell) % 2).astype(np.float32)
    if label == 2:
        cy, cx = rng.uniform(0, IMAGE_SIZE, size=2)
        return ((np.hypot(_Y - cy, _X - cx) + phase) % period < period / 2).astype(np.float32)
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for _ in range(int(rng.integers(20, 45))):
        cy, cx = rng.uniform(0, IMAGE_SIZE, size=2)
        radius = rng.uniform(3, 7)
        # Touching only the bounding box makes dot images as cheap as the others.
        top, left = max(int(cy - radius), 0), max(int(cx - radius), 0)
        window = (slice(top, int(cy + radius) + 1), slice(left, int(cx + radius) + 1))
        mask[window][np.hypot(_Y[window] - cy, _X[window] - cx) < radius] = 1.0
    return mask


def textured(
    label: int,
    foreground: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    periods: tuple[float, float] = (10, 24),
    height: int = IMAGE_SIZE,
    width: int = IMAGE_SIZE,
) -> np.ndarray:
    """Float pixels `(height, width, 3)`: the texture `DEMO_TEXTURES[label]` (`texture_mask`) in `foreground` on `background`."""
    mask = texture_mask(label, rng, periods)[:height, :width, None]
    return mask * foreground + (1 - mask) * background


def two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A foreground and a background colour far enough apart: a texture in near-identical colours is invisible."""
    foreground, background = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    while np.abs(foreground - background).sum() < 120:
        foreground, background = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    return foreground, background


def with_noise(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The picture of float `pixels` (IMAGE_SIZE, IMAGE_SIZE, 3) with noise at a quarter resolution,
    which keeps the PNGs small while still varying every texture's pixels."""
    noise = rng.normal(0, 10, size=(IMAGE_SIZE // 4, IMAGE_SIZE // 4, 3)).repeat(4, axis=0).repeat(4, axis=1)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _image(label: int, rng: np.random.Generator) -> Image.Image:
    # Both colours come from one distribution for every class, so colour says nothing of the label.
    foreground, background = two_colours(rng)
    return with_noise(textured(label, foreground, background, rng), rng)


def _write_split(root: Path, split: str, split_index: int, size: int, seed: int) -> None:
    # Separate generators for texts and for labels/images make the text independent of the label by
    # construction; seeding per split keeps each split the same whatever the other splits' sizes.
    text_rng = np.random.default_rng([seed, split_index, 0])
    image_rng = np.random.default_rng([seed, split_index, 1])
    labels = image_rng.permutation(np.arange(size) % len(DEMO_REL2ID))
    relation_names = sorted(DEMO_REL2ID, key=DEMO_REL2ID.get)
    image_folder = root / "img_org" / split
    image_folder.mkdir(parents=True)
    lines = []
    for index, label in enumerate(labels.tolist()):
        tokens, head, tail = text_record(text_rng)
        img_id = f"demo_{split}_{index:05d}.png"
        _image(label, image_rng).save(image_folder / img_id)
        record = {"token": tokens, "h": head, "t": tail, "img_id": img_id, "relation": relation_names[label]}
        lines.append(repr(record) + "\n")
    (root / f"ours_{split}.txt").write_text("".join(lines), encoding="utf-8")


def write_demo_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 600,
    num_validation: int = 150,
    num_test: int = 150,
    seed: int = 0,
) -> Path:
    """
    Write a synthetic dataset in the MNRE peers' layout (`ours_{train,val,test}.txt`,
    `ours_rel2id.json`, `img_org/{train,val,test}/*.png`) that `load_mnre(output_dir)` reads.

    Each relation has its own image texture (stripes, checkerboard, rings, dots) with random colours,
    scale, offset and noise; the texts come from label-independent templates and invented names. A
    text-only model therefore stays at chance and any gain must come from the image. The same
    arguments always give the same files. The dataset is built in a sibling temporary folder and
    moved into place, so an interrupted write never leaves a half-written `output_dir`; an existing
    `output_dir` is replaced only if it is empty or a previous demo dataset.

    Returns:
        `Path` of the written dataset folder.
    """
    sizes = {"train": num_train, "val": num_validation, "test": num_test}

    def write(build_dir: Path) -> None:
        for split_index, (split, size) in enumerate(sizes.items()):
            _write_split(build_dir, split, split_index, size, seed)
        (build_dir / "ours_rel2id.json").write_text(json.dumps(DEMO_REL2ID), encoding="utf-8")

    info = {
        "generator": "modeling_mre.data.demo.write_demo_dataset",
        "seed": seed,
        "sizes": sizes,
        "textures": _TEXTURES,
    }
    return build_dataset_folder(output_dir, write, info)


# MORE's objects: up to 4 per image, one per quadrant, each a textured box on a noisy background.
_OBJECT_GRID = 2
_TITLE_TEMPLATES = (
    "{h} pictured during the visit .",
    "Photos : {h} at the opening ceremony",
    "{h} speaks to reporters on Tuesday",
    "In pictures : a day with {h}",
)


def _objects_image(rng: np.random.Generator) -> tuple[Image.Image, dict[str, list[float]], list[int]]:
    """A picture with 2 to 4 textured boxes; returns it, their normalised (cx, cy, w, h) and textures."""
    cell = IMAGE_SIZE // _OBJECT_GRID
    pixels = rng.uniform(0, 255, size=3).astype(np.float32) * np.ones((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    cells = rng.permutation(_OBJECT_GRID * _OBJECT_GRID)[: int(rng.integers(2, _OBJECT_GRID * _OBJECT_GRID + 1))]
    boxes, labels = {}, []
    for number, index in enumerate(cells.tolist()):
        label = int(rng.integers(len(DEMO_TEXTURES)))
        width, height = (int(v) for v in rng.integers(cell * 3 // 5, cell - 2, size=2))
        left = (index % _OBJECT_GRID) * cell + int(rng.integers(0, cell - width + 1))
        top = (index // _OBJECT_GRID) * cell + int(rng.integers(0, cell - height + 1))
        foreground, background = two_colours(rng)
        pixels[top : top + height, left : left + width] = textured(
            label, foreground, background, rng, height=height, width=width
        )
        boxes[f"object_{number}"] = [
            (left + width / 2) / IMAGE_SIZE,
            (top + height / 2) / IMAGE_SIZE,
            width / IMAGE_SIZE,
            height / IMAGE_SIZE,
        ]
        labels.append(label)
    return with_noise(pixels, rng), boxes, labels


def _side(center_x: float) -> str:
    return "left" if center_x < 0.5 else "right"


def _write_more_split(root: Path, split: str, split_index: int, size: int, seed: int, captions: dict) -> None:
    text_rng = np.random.default_rng([seed, split_index, 2])
    image_rng = np.random.default_rng([seed, split_index, 3])
    relation_names = sorted(DEMO_REL2ID, key=DEMO_REL2ID.get)
    image_folder = root / "img_org" / split
    image_folder.mkdir(parents=True)
    lines, objects = [], {}
    for index in range(size):
        image, boxes, labels = _objects_image(image_rng)
        img_id = f"more_demo_{split}_{index:05d}.png"
        image.save(image_folder / img_id)
        objects[img_id] = boxes
        captions[img_id] = {name: f"the object on the {_side(box[0])}" for name, box in boxes.items()}
        # The tail is drawn independently of the text; its own texture is the relation.
        tail_number = int(image_rng.integers(len(boxes)))
        head = entity_name(text_rng)
        tokens, position = [], None
        for word in str(text_rng.choice(_TITLE_TEMPLATES)).split():
            if word == "{h}":
                position = [len(tokens), len(tokens) + len(head.split())]
                tokens.extend(head.split())
            else:
                tokens.append(word)
        record = {
            "token": tokens,
            "h": {"name": head, "pos": position},
            "t": {"name": f"object_{tail_number}"},
            "img_id": img_id,
            "relation": relation_names[labels[tail_number]],
        }
        lines.append(repr(record) + "\n")
    (root / "txt").mkdir(exist_ok=True)
    (root / "txt" / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
    torch.save(objects, root / f"ent_{split}_dict.pth")


def write_more_demo_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 600,
    num_validation: int = 150,
    num_test: int = 150,
    seed: int = 0,
) -> Path:
    """
    Write a synthetic dataset in MORE's layout (`txt/{train,valid,test}.txt`,
    `ent_{train,valid,test}_dict.pth`, `rel2id.json`, `caption_dict.json`,
    `img_org/{train,valid,test}/*.png`) that `load_more(output_dir)` reads.

    Each picture holds 2 to 4 objects (`object_0`, ...), boxes with one of the demo textures each; the
    tail is one of them and the relation is its texture. The other objects carry random textures, so
    the whole picture does not tell which relation holds: the tail's crop does. Titles, names and
    captions ("the object on the left") are independent of the relation. Written atomically and
    replaced only if empty or a previous demo dataset, as `write_demo_dataset`.

    Returns:
        `Path` of the written dataset folder.
    """
    sizes = {"train": num_train, "valid": num_validation, "test": num_test}

    def write(build_dir: Path) -> None:
        captions = {}
        for split_index, (split, size) in enumerate(sizes.items()):
            _write_more_split(build_dir, split, split_index, size, seed, captions)
        (build_dir / "rel2id.json").write_text(json.dumps(DEMO_REL2ID), encoding="utf-8")
        (build_dir / "caption_dict.json").write_text(json.dumps(captions), encoding="utf-8")

    info = {
        "generator": "modeling_mre.data.demo.write_more_demo_dataset",
        "seed": seed,
        "sizes": sizes,
        "textures": _TEXTURES,
    }
    return build_dataset_folder(output_dir, write, info)


# MNER: one entity per tweet, its type drawn apart from its name and template: the text finds the span,
# only the picture tells the type.
DEMO_ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")
_TWEET_TEMPLATES = (
    "Big day for {e} !",
    "{e} trending again tonight",
    "RT @feed_daily : latest news about {e} #update",
    "Can't stop thinking about {e} \ufe0f",
    "So this happened at {e} lol",
    "New photos : {e} this weekend",
)
# A share of the tweets whose image file is absent: "no image" for the reader, as for real copies.
_MNER_MISSING_IMAGE_SHARE = 0.1


def _write_mner_split(root: Path, split: str, split_index: int, size: int, seed: int) -> None:
    text_rng = np.random.default_rng([seed, split_index, 4])
    image_rng = np.random.default_rng([seed, split_index, 5])
    types = image_rng.permutation(np.arange(size) % len(DEMO_ENTITY_TYPES))
    lines = []
    for index, label in enumerate(types.tolist()):
        image_id = f"demo_{split}_{index:05d}"
        image = _image(label, image_rng)
        if image_rng.random() >= _MNER_MISSING_IMAGE_SHARE:
            image.save(root / "images" / f"{image_id}.jpg", quality=95)
        name = entity_name(text_rng).split()
        lines.append(f"IMGID:{image_id}")
        for word in str(text_rng.choice(_TWEET_TEMPLATES)).split():
            if word == "{e}":
                tags = [f"B-{DEMO_ENTITY_TYPES[label]}"] + [f"I-{DEMO_ENTITY_TYPES[label]}"] * (len(name) - 1)
                lines += [f"{token}\t{tag}" for token, tag in zip(name, tags)]
            else:
                lines.append(f"{word}\tO")
        lines.append("")
    (root / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8")


def write_mner_demo_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 400,
    num_validation: int = 100,
    num_test: int = 100,
    seed: int = 0,
) -> Path:
    """
    Write a synthetic MNER dataset in the Twitter sets' layout (`{train,valid,test}.txt`: an `IMGID:` line,
    then `token<TAB>tag` lines; `images/<id>.jpg`) that `load_twitter_mner(output_dir)` reads.

    Each tweet names one invented entity in a type-neutral template; its type (PER, LOC, ORG, MISC) is the
    texture of the tweet's picture (stripes, checkerboard, rings, dots, as in the MRE demo). A text-only
    tagger finds the span but guesses the type; the image tells it. A tenth of the images are left out
    (read as "no image"), and one template ends with a lone U+FE0F, a token of invisible characters as the
    Twitter sets hold. Written atomically and replaced only if empty or a previous demo dataset.

    Returns:
        `Path` of the written dataset folder.
    """
    sizes = {"train": num_train, "valid": num_validation, "test": num_test}

    def write(build_dir: Path) -> None:
        (build_dir / "images").mkdir()
        for split_index, (split, size) in enumerate(sizes.items()):
            _write_mner_split(build_dir, split, split_index, size, seed)

    textures = dict(zip(DEMO_ENTITY_TYPES, DEMO_TEXTURES))
    info = {
        "generator": "modeling_mre.data.demo.write_mner_demo_dataset",
        "seed": seed,
        "sizes": sizes,
        "textures": textures,
    }
    return build_dataset_folder(output_dir, write, info)


def build_dataset_folder(output_dir: str | os.PathLike, write: Callable[[Path], None], info: dict) -> Path:
    """
    Let `write(build_dir)` fill the new folder, add the marker file with `info` and the textures, then
    swap it in; an existing `output_dir` is replaced only if empty or a dataset written here before.
    """
    output_dir = Path(output_dir).absolute()
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / _MARKER).is_file():
        raise FileExistsError(f"{output_dir} exists and is not a demo dataset; refusing to replace it")
    with atomic_folder(output_dir) as build_dir:
        write(build_dir)
        (build_dir / _MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return output_dir
