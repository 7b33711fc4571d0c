"""
A controlled multimodal benchmark in MNRE's layout (or MORE's, with object tails), where each
difficulty the papers name is a dial.

The relation needs the text AND the image: the text gives its register (personal, professional, or
neutral, which means `None`) and the picture its scene (one of three textures), and the relation is
the pair, like `/personal/stripes`. Neither modality alone can tell it. The generator knows every
post's hidden causes (its register, and the scene when its picture shows one), so it computes the
"ceilings" of each split: the best accuracy that any model reading only the text, only the image, or
both can reach there (for each thing such a model can observe, its most frequent relation), and
that predictor's micro-F1. The dials:

- `noise_share`: posts whose picture is unrelated to the text (a picture of no scene at all), as the
  noisy image-text pairs MMIB and WMAJL address; a model should fall back on the text for them.
- `num_distractors`: small boxes of the other scenes' textures pasted on the picture (DFMA's
  distracting image content); the scene stays the texture that covers most of the picture.
- `missing_share`: posts without a picture ("no image").
- `fine_grained_pairs`: how many scenes come in two variants that differ only in the texture's scale
  (`-fine`, `-coarse`), each a relation of its own (WMAJL's and ROC's fine-grained label confusion).
- `num_candidate_objects`: the picture holds that many objects, one per quadrant, each the texture
  of a different scene in a colour of its own, and the post ends with the colour of the object the
  relation is about (`( photo : the red one )`); the others are plausible but wrong. The picture
  alone narrows the scene to one of the objects' (with 3, it tells nothing); only a model that lets
  the text decide which part of the picture to read can tell it (DFMA's irrelevant regions, MMIB's
  refinement). The post names a colour, not a place: visual tokens carry no position embedding, so
  no method here could read "top left". 0: the scene covers the whole picture.

Texts and the label are drawn from their own random streams, so that with the same seed and sizes
every dial setting gives the same texts and labels: only the pictures change (and, with
`num_candidate_objects`, the colour each post names, from a stream of its own).

    python -m modeling_mre.data.controlled controlled-data --noise_share 0.3 --num_distractors 2
    python -m modeling_mre.data.controlled controlled-more --layout more --num_distractors 3
    python -m modeling_mre.data.controlled controlled-objects --num_candidate_objects 3
"""

import argparse
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..metrics import compute_mre_metrics
from .demo import IMAGE_SIZE, build_dataset_folder, text_record, textured, two_colours, with_noise


REGISTERS = ("personal", "professional")
SCENES = ("stripes", "checkerboard", "rings")  # the first three demo textures
NONE_SHARE = 0.2  # posts in the neutral register, whose relation is None
# The two variants of a fine-grained scene: the same texture at a small or a large scale.
VARIANT_PERIODS = {"fine": (8.0, 12.0), "coarse": (18.0, 24.0)}
_TEMPLATES = {
    "personal": (
        "{h} had dinner with {t} to celebrate her birthday .",
        "{h} and {t} are finally engaged !",
        "Family weekend : {h} visiting {t} again",
        "{h} hugging {t} after all these years #love",
    ),
    "professional": (
        "{h} signed the contract with {t} this morning .",
        "{h} joins {t} as chief engineer",
        "Board meeting : {h} presents the results to {t}",
        "{h} and {t} announce a joint venture",
    ),
    "neutral": (
        "{h} and {t} in the news today .",
        "Photo of the day : {h} , {t}",
        "RT @daily_feed : {h} {t}",
        "{t} trending after {h} posts",
    ),
}


# MORE's titles name the head only; the tail is an object in the picture.
_TITLE_TEMPLATES = {
    "personal": (
        "{h} at home with the family",
        "{h} celebrates a birthday with loved ones",
        "A family day out for {h}",
    ),
    "professional": (
        "{h} at the shareholders meeting",
        "{h} signs the merger agreement",
        "{h} presents the quarterly results",
    ),
    "neutral": ("Photos : {h}", "In pictures : {h}", "{h} , Tuesday"),
}
_OBJECT_CELL = IMAGE_SIZE // 3
# The colours a post names its object by, and their RGB; the object's texture is drawn in it on dark grey.
OBJECT_COLOURS = {"red": (215, 40, 40), "green": (40, 175, 60), "blue": (50, 90, 225)}


@dataclass(frozen=True)
class Dials:
    noise_share: float = 0.0
    num_distractors: int = 0
    missing_share: float = 0.0
    fine_grained_pairs: int = 0
    num_candidate_objects: int = 0

    def __post_init__(self):
        for name in ("noise_share", "missing_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.num_distractors <= 4:
            raise ValueError(
                f"num_distractors must be 0 to 4 (the scene must cover most of the picture), got {self.num_distractors}"
            )
        if not 0 <= self.fine_grained_pairs <= len(SCENES):
            raise ValueError(f"fine_grained_pairs must be 0 to {len(SCENES)}, got {self.fine_grained_pairs}")
        if not 0 <= self.num_candidate_objects <= len(SCENES):
            raise ValueError(
                f"num_candidate_objects must be 0 to {len(SCENES)} (each object a different scene), got {self.num_candidate_objects}"
            )
        if self.num_candidate_objects and self.num_distractors:
            raise ValueError(
                "num_candidate_objects and num_distractors both paste objects on the picture: set one of them"
            )


def scene_labels(fine_grained_pairs: int) -> list[str]:
    """The picture's classes: each scene, the first `fine_grained_pairs` of them split into two variants."""
    labels = []
    for index, scene in enumerate(SCENES):
        labels += [f"{scene}-{variant}" for variant in VARIANT_PERIODS] if index < fine_grained_pairs else [scene]
    return labels


def relation_names(fine_grained_pairs: int) -> list[str]:
    return ["None"] + [f"/{register}/{scene}" for register in REGISTERS for scene in scene_labels(fine_grained_pairs)]


def _picture(scene_label: str, dials: Dials, rng: np.random.Generator) -> Image.Image:
    """The scene's texture over the whole picture, with `num_distractors` boxes of other scenes' textures."""
    scene, _, variant = scene_label.partition("-")
    foreground, background = two_colours(rng)
    pixels = textured(SCENES.index(scene), foreground, background, rng, VARIANT_PERIODS.get(variant, (10.0, 24.0)))
    # Distractors sit in distinct cells of a 3x3 grid, at most 4 of 9: the scene keeps most of the area.
    cell = IMAGE_SIZE // 3
    for index in rng.permutation(9)[: dials.num_distractors].tolist():
        other = int(rng.choice([i for i in range(len(SCENES)) if SCENES[i] != scene]))
        top, left = (index // 3) * cell, (index % 3) * cell
        box_foreground, box_background = two_colours(rng)
        pixels[top : top + cell, left : left + cell] = textured(
            other, box_foreground, box_background, rng, height=cell, width=cell
        )
    return with_noise(pixels, rng)


def _candidates_picture(
    scene_label: str, colours: list[str], rng: np.random.Generator
) -> tuple[Image.Image, tuple[str, ...]]:
    """
    A plain grey picture with one object per colour of `colours`, in distinct quadrants: the first is
    the scene's texture, each other one the texture of another scene. Returns the picture and the
    scene labels it shows, sorted: all that a reader of the picture alone can use, as the named
    colour is equally likely to be any object's.
    """
    scene, _, variant = scene_label.partition("-")
    variants = scene_labels(len(SCENES))  # any scene's label, split or not
    half = IMAGE_SIZE // 2
    pixels = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 150.0, np.float32) + rng.uniform(-15, 15, size=3).astype(np.float32)
    other_scenes = rng.permutation([name for name in SCENES if name != scene])[: len(colours) - 1].tolist()
    labels = [scene_label]
    for other in other_scenes:
        # A split scene's variant is drawn as for the named object, so its scale tells nothing.
        split = [label for label in variants if label.startswith(f"{other}-")] if variant else []
        labels.append(str(rng.choice(split)) if split else other)
    for quadrant, label, colour in zip(rng.permutation(4).tolist(), labels, colours):
        name, _, label_variant = label.partition("-")
        top, left = (quadrant // 2) * half, (quadrant % 2) * half
        foreground = np.array(OBJECT_COLOURS[colour], np.float32) + rng.uniform(-20, 20, size=3).astype(np.float32)
        background = rng.uniform(20, 50, size=3).astype(np.float32)
        periods = VARIANT_PERIODS.get(label_variant, (10.0, 24.0))
        pixels[top : top + half, left : left + half] = textured(
            SCENES.index(name), foreground, background, rng, periods, half, half
        )
    return with_noise(pixels, rng), tuple(sorted(labels))


def _objects_picture(
    scene_label: str, unrelated: bool, dials: Dials, rng: np.random.Generator
) -> tuple[Image.Image, dict[str, list[float]]]:
    """
    A plain background with the tail object (`object_0`, the scene's texture, or colour blobs when
    `unrelated`) and `num_distractors` objects of the other scenes' textures, one per cell of a 3x3
    grid; returns the picture and each object's normalised (cx, cy, w, h).
    """
    scene, _, variant = scene_label.partition("-")
    pixels = rng.uniform(0, 255, size=3).astype(np.float32) * np.ones((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    boxes = {}
    for number, index in enumerate(rng.permutation(9)[: 1 + dials.num_distractors].tolist()):
        top, left = (index // 3) * _OBJECT_CELL, (index % 3) * _OBJECT_CELL
        if number == 0 and unrelated:
            patch = np.asarray(_unrelated_picture(rng).resize((_OBJECT_CELL, _OBJECT_CELL)), dtype=np.float32)
        else:
            label = (
                SCENES.index(scene)
                if number == 0
                else int(rng.choice([i for i in range(len(SCENES)) if SCENES[i] != scene]))
            )
            periods = VARIANT_PERIODS.get(variant, (10.0, 24.0)) if number == 0 else (10.0, 24.0)
            foreground, background = two_colours(rng)
            patch = textured(label, foreground, background, rng, periods, _OBJECT_CELL, _OBJECT_CELL)
        pixels[top : top + _OBJECT_CELL, left : left + _OBJECT_CELL] = patch
        boxes[f"object_{number}"] = [
            (left + _OBJECT_CELL / 2) / IMAGE_SIZE,
            (top + _OBJECT_CELL / 2) / IMAGE_SIZE,
            _OBJECT_CELL / IMAGE_SIZE,
            _OBJECT_CELL / IMAGE_SIZE,
        ]
    return with_noise(pixels, rng), boxes


def _unrelated_picture(rng: np.random.Generator) -> Image.Image:
    """A picture of no scene: smooth blobs of colour, as a photo unrelated to the post."""
    coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    return Image.fromarray(coarse).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)


def _best_predictions(observations: list, references: list[int]) -> list[int]:
    """
    The best that any predictor seeing only `observations` can do on these examples: for each distinct
    observation, its most frequent relation here (ties to the lowest id). Its accuracy bounds every
    such predictor's on this split.
    """
    counts = {}
    for observation, reference in zip(observations, references):
        counts.setdefault(observation, Counter())[reference] += 1
    best = {observation: min(c, key=lambda label: (-c[label], label)) for observation, c in counts.items()}
    return [best[observation] for observation in observations]


def _write_split(
    root: Path, split: str, split_index: int, size: int, seed: int, dials: Dials, layout: str
) -> tuple[dict, list[dict]]:
    # Texts and labels come from streams that no dial touches; pictures from their own.
    text_rng = np.random.default_rng([seed, split_index, 10])
    label_rng = np.random.default_rng([seed, split_index, 11])
    picture_rng = np.random.default_rng([seed, split_index, 12, dials.num_distractors, dials.fine_grained_pairs])
    presence_rng = np.random.default_rng([seed, split_index, 13])
    colour_rng = np.random.default_rng([seed, split_index, 14])
    scenes = scene_labels(dials.fine_grained_pairs)
    names = relation_names(dials.fine_grained_pairs)
    image_folder = root / "img_org" / split
    image_folder.mkdir(parents=True)
    lines, objects, references, posts = [], {}, [], []
    # What each reader can observe of every post; with candidate objects, "unguided" reads both
    # modalities but not which object the text names.
    seen = {"text": [], "image": [], "both": [], **({"unguided": []} if dials.num_candidate_objects else {})}
    for index in range(size):
        register = "neutral" if label_rng.random() < NONE_SHARE else REGISTERS[int(label_rng.integers(len(REGISTERS)))]
        scene_draw = label_rng.random()  # one draw whatever the variants, so labels agree across dials
        scene = SCENES[int(scene_draw * len(SCENES))]
        scene_label = (
            scene if scene in scenes else f"{scene}-{'fine' if (scene_draw * len(SCENES)) % 1 < 0.5 else 'coarse'}"
        )
        relation = "None" if register == "neutral" else f"/{register}/{scene_label}"
        # Fixed uniforms per post: the same posts lose their picture, or get an unrelated one, as a dial grows.
        missing = presence_rng.random() < dials.missing_share
        unrelated = presence_rng.random() < dials.noise_share
        templates = _TEMPLATES if layout == "mnre" else _TITLE_TEMPLATES
        tokens, head, tail = text_record(text_rng, templates[register])
        img_id = f"controlled_{split}_{index:05d}.png"
        scene_seen = "no scene" if missing or unrelated else scene_label
        image_seen = scene_seen
        if layout == "mnre":
            if dials.num_candidate_objects:
                # The named object's colour first, then the others'.
                colours = colour_rng.permutation(list(OBJECT_COLOURS))[: dials.num_candidate_objects].tolist()
                tokens = [*tokens, "(", "photo", ":", "the", colours[0], "one", ")"]
            if unrelated:
                picture = _unrelated_picture(picture_rng)
            elif dials.num_candidate_objects:
                picture, shown = _candidates_picture(scene_label, colours, picture_rng)
                if not missing:  # the picture alone shows the objects, not which one the post names
                    image_seen = shown
            else:
                picture = _picture(scene_label, dials, picture_rng)
            record = {"token": tokens, "h": head, "t": tail, "img_id": img_id, "relation": relation}
        else:  # the tail is object_0; a post without its picture still has the box
            picture, objects[img_id] = _objects_picture(scene_label, unrelated, dials, picture_rng)
            record = {"token": tokens, "h": head, "t": {"name": "object_0"}, "img_id": img_id, "relation": relation}
        if not missing:
            picture.save(image_folder / img_id)
        lines.append(repr(record) + "\n")
        references.append(names.index(relation))
        posts.append({"img_id": img_id, "relation": relation, "unrelated_image": unrelated, "missing_image": missing})
        seen["text"].append(register)
        seen["image"].append(image_seen)
        seen["both"].append((register, scene_seen))
        if dials.num_candidate_objects:
            seen["unguided"].append((register, image_seen))
    if layout == "mnre":
        (root / f"ours_{split}.txt").write_text("".join(lines), encoding="utf-8")
    else:
        (root / "txt").mkdir(exist_ok=True)
        (root / "txt" / f"{split}.txt").write_text("".join(lines), encoding="utf-8")
        torch.save(objects, root / f"ent_{split}_dict.pth")
    ceilings = {}
    for reader, observations in seen.items():
        metrics = compute_mre_metrics(
            np.array(_best_predictions(observations, references)), np.array(references), names
        )
        ceilings[reader] = {key: metrics[key] for key in ("micro_f1", "accuracy")}
    return ceilings, posts


def write_controlled_dataset(
    output_dir: str | os.PathLike,
    noise_share: float = 0.0,
    num_distractors: int = 0,
    missing_share: float = 0.0,
    fine_grained_pairs: int = 0,
    num_candidate_objects: int = 0,
    num_train: int = 800,
    num_validation: int = 200,
    num_test: int = 200,
    seed: int = 0,
    layout: str = "mnre",
) -> dict:
    """
    Write the controlled benchmark in the MNRE peers' layout (`load_mnre(output_dir)` reads it), or
    with `layout="more"` in MORE's (`load_more`; the tail is an object of the picture, whose texture
    is the scene, and distractors are the other objects), and return its description: the dials, the
    relations, per split the ceilings `{"text", "image", "both"}` of micro-F1 and accuracy (and, with
    candidate objects, `"unguided"`: both modalities without knowing which object the post names), and per
    split each post's hidden causes (`posts`: its image id, relation, and whether its picture is
    unrelated or missing), also in `output_dir/demo_info.json`. Written atomically, as
    the demo datasets; the same arguments always give the same files.
    """
    if layout not in ("mnre", "more"):
        raise ValueError(f"layout must be 'mnre' or 'more', got {layout!r}")
    dials = Dials(noise_share, num_distractors, missing_share, fine_grained_pairs, num_candidate_objects)
    if layout == "more" and num_candidate_objects:
        raise ValueError(
            "num_candidate_objects: in MORE's layout the tail's box already says which object the relation is about"
        )
    validation = "val" if layout == "mnre" else "valid"
    sizes = {"train": num_train, validation: num_validation, "test": num_test}
    names = relation_names(fine_grained_pairs)
    ceilings, posts = {}, {}

    def write(build_dir: Path) -> None:
        for split_index, (split, size) in enumerate(sizes.items()):
            ceilings[split], posts[split] = _write_split(build_dir, split, split_index, size, seed, dials, layout)
        rel2id = "ours_rel2id.json" if layout == "mnre" else "rel2id.json"
        (build_dir / rel2id).write_text(json.dumps({name: i for i, name in enumerate(names)}), encoding="utf-8")

    info = {
        "generator": "modeling_mre.data.controlled.write_controlled_dataset",
        "seed": seed,
        "layout": layout,
        "sizes": sizes,
        "dials": asdict(dials),
        "relations": names,
        "ceilings": ceilings,
        "posts": posts,
    }
    build_dataset_folder(output_dir, write, info)
    return info


def format_ceilings(info: dict) -> str:
    """The ceilings as a markdown table."""
    rows = ["| split | reads | micro-F1 ceiling | accuracy ceiling |", "| --- | --- | --- | --- |"]
    for split, readers in info["ceilings"].items():
        for reader, metrics in readers.items():
            rows.append(f"| {split} | {reader} | {100 * metrics['micro_f1']:.2f} | {100 * metrics['accuracy']:.2f} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    dials = (
        ("noise_share", float),
        ("num_distractors", int),
        ("missing_share", float),
        ("fine_grained_pairs", int),
        ("num_candidate_objects", int),
    )
    for dial, kind in dials:
        parser.add_argument(f"--{dial}", type=kind, default=getattr(Dials(), dial))
    for split, size in (("train", 800), ("validation", 200), ("test", 200)):
        parser.add_argument(f"--num_{split}", type=int, default=size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=["mnre", "more"], default="mnre")
    args = vars(parser.parse_args(argv))
    info = write_controlled_dataset(args.pop("output_dir"), **args)
    print(f"relations: {', '.join(info['relations'])}\ndials: {info['dials']}\n{format_ceilings(info)}")


if __name__ == "__main__":
    main()
