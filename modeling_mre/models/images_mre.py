"""
The input side's pictures, as `visual_mre` is the model side's: opening images of any mode and size as
RGB, with errors that name the file; an object tail's box (MORE) on its picture; and a batch's images,
object crops and object-tail crops as pixel tensors with masks (`picture_inputs`).
"""

import io
import math
import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from transformers.image_transforms import to_pil_image
from transformers.image_utils import load_image as transformers_load_image


# Larger images are first reduced to this size on their long side (JPEG draft decoding, then a
# thumbnail): every vision processor shrinks them to a few hundred pixels anyway, and a 50-megapixel
# photo would otherwise cost seconds and hundreds of MB before that.
MAX_IMAGE_SIDE = 2048
# Vision processors scale a picture's short side to a fixed size (224, 256): a 2048x1 banner would become
# 524288x256 pixels, about 1.2 GB as floats. A picture whose long side exceeds this many times its short
# side is first padded with white (as transparency is composed) to that ratio: its content stays whole,
# and its processing costs at most this many times a square picture's.
MAX_ASPECT_RATIO = 8
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# What `load_image` reads, as errors name it.
IMAGE_TYPES = (str, os.PathLike, bytes, bytearray, memoryview, dict, Image.Image, np.ndarray, torch.Tensor)
IMAGE_TYPES_TEXT = (
    "a file path, a URL, a base64 string, the file's bytes, a datasets image dict ({'bytes', 'path'}), a PIL image, "
    "a numpy array, a torch tensor or None"
)
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """
    RGB version of an image of any Pillow mode: 16-bit and float images are rescaled rather than
    clipped to white, transparent images are composed over white rather than showing whatever colour
    hides under alpha 0, and palette, greyscale and CMYK images are converted.
    """
    if image.mode in _WIDE_MODES:
        pixels = np.asarray(image, dtype=np.float32)
        top = float(pixels.max(initial=0.0))
        peak = next(p for p in (1.0, 255.0, 65535.0, top) if top <= p)  # the range the values live in
        image = Image.fromarray(np.clip(pixels * (255.0 / peak), 0, 255).astype(np.uint8), mode="L")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def bounded_aspect(image: Image.Image) -> Image.Image:
    """`image`, centred on a white canvas widened to `MAX_ASPECT_RATIO` when it is narrower than that."""
    width, height = image.size
    if max(width, height) <= MAX_ASPECT_RATIO * min(width, height):
        return image
    size = (
        (width, math.ceil(width / MAX_ASPECT_RATIO))
        if width > height
        else (math.ceil(height / MAX_ASPECT_RATIO), height)
    )
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def processor_pixels(image_processor, pictures: list[Image.Image]) -> torch.Tensor:
    """`pixel_values` (pictures, 3, H, W) of RGB pictures, each first bounded in aspect (`bounded_aspect`)."""
    return image_processor([bounded_aspect(picture) for picture in pictures], return_tensors="pt")["pixel_values"]


def _decoding_problem(error: Exception) -> str:
    if isinstance(error, Image.DecompressionBombError):
        return f"is too large to decode safely ({error})"
    if isinstance(error, Image.UnidentifiedImageError):
        return "is not an image Pillow can read"
    return f"cannot be decoded ({error})"  # truncated or corrupt data


_DECODING_ERRORS = (Image.DecompressionBombError, Image.UnidentifiedImageError, OSError, SyntaxError)


def image_file_problem(path: str | os.PathLike) -> str | None:
    """
    What makes an existing file unusable as an image ("is empty", "is not an image ...", "cannot be
    decoded ..."), or None. JPEGs are decoded at 1/8 scale, so checking a whole dataset stays fast.
    """
    if os.path.isdir(path):
        return "is a folder, not an image file"
    if os.path.getsize(path) == 0:
        return "is empty"
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (64, 64))
            opened.load()
    except _DECODING_ERRORS as err:
        return _decoding_problem(err)
    return None


def open_image(path: str | os.PathLike) -> Image.Image:
    """
    Decode an image file to RGB, upright (EXIF orientation applied) and at most `MAX_IMAGE_SIDE` on
    its long side. Raises `FileNotFoundError` or `ValueError` naming the file and what is wrong.
    """
    if os.path.isdir(path):
        raise ValueError(f"image path {os.fspath(path)} is a folder, not an image file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {os.fspath(path)} not found")
    if os.path.getsize(path) == 0:
        raise ValueError(f"image file {os.fspath(path)} is empty")
    return _decode(path, f"image file {os.fspath(path)}")


def _decode(source, name: str) -> Image.Image:
    """A file path or a binary stream decoded as `open_image` does; errors start with `name`."""
    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # JPEG: decode at a reduced scale
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except _DECODING_ERRORS as err:
        raise ValueError(f"{name} {_decoding_problem(err)}") from None
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return to_rgb(image)


def _image_of_record(image: dict):
    """
    `{"bytes": ..., "path": ...}`, as `datasets.Image(decode=False)` gives an image: its bytes when
    present, else its path.
    """
    unknown = set(image) - {"bytes", "path"}
    if unknown or (image.get("bytes") is None and image.get("path") is None):
        raise ValueError(
            f"an image dict must be datasets' {{'bytes': ..., 'path': ...}} with bytes or a path, got keys {sorted(image)}"
        )
    return image["bytes"] if image.get("bytes") is not None else image["path"]


# EXIF orientations 5 to 8 turn the picture by 90 degrees: the upright image swaps width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def image_size(image) -> tuple[int, int]:
    """
    (width, height) of an image as `load_image` turns it upright, before any size reduction: the frame
    that pixel coordinates on the picture refer to. A file's header is read, not its pixels.
    """
    if isinstance(image, Image.Image):
        return image.size
    if not _is_file_path(image):
        return load_image(image).size
    if os.path.isdir(image):
        raise ValueError(f"image path {os.fspath(image)} is a folder, not an image file")
    if not os.path.isfile(image):
        raise FileNotFoundError(f"image file {os.fspath(image)} not found")
    try:
        with Image.open(image) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(ExifTags.Base.Orientation)
    except _DECODING_ERRORS as err:
        raise ValueError(f"image file {os.fspath(image)} {_decoding_problem(err)}") from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def _is_remote_or_inline(image: str) -> bool:
    """A URL, a data URI or a bare base64 string (long, of base64 characters only) rather than a path."""
    if image.startswith(("http://", "https://", "data:image/")):
        return True
    return len(image) > 256 and not os.path.exists(image) and re.fullmatch(r"[A-Za-z0-9+/=\s]+", image) is not None


def _is_file_path(image) -> bool:
    return isinstance(image, os.PathLike) or (isinstance(image, str) and not _is_remote_or_inline(image))


def decode_unless_file(image):
    """
    An image given as a URL, base64 or an array, decoded once (a URL fetched once) for every later use;
    a file path and None stay as they are (a box on the picture needs only the file's header).
    """
    return image if image is None or isinstance(image, Image.Image) or _is_file_path(image) else load_image(image)


def _load_with_transformers(image: str) -> Image.Image:
    """URLs (fetched only here, when given) and base64, through transformers' own `load_image`."""
    shown = image if len(image) <= 80 else f"{image[:60]}... ({len(image)} characters)"
    try:
        loaded = transformers_load_image(image, timeout=30)
    except Exception as err:  # network, HTTP and decoding errors alike: say which image
        raise ValueError(f"image {shown} could not be read: {err}") from None
    loaded.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return to_rgb(loaded)


def load_image(image) -> Image.Image | None:
    """
    RGB image from a file path, a URL, a base64 string (or data URI), the file's bytes, `datasets`'
    undecoded `{"bytes": ..., "path": ...}`, a PIL image, or a numpy array or torch tensor (channels
    first or last; floats in [0, 1] or 0-255 integers); None stays None ("no image").
    """
    if image is None:
        return None
    if isinstance(image, dict):
        image = _image_of_record(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise ValueError("image bytes are empty")
        return _decode(io.BytesIO(image), f"image bytes ({len(image)} bytes)")
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, str) and _is_remote_or_inline(image):
        return _load_with_transformers(image)
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]):
            raise ValueError(
                f"an image array must be (height, width, 3) or (3, height, width), got shape {image.shape}"
            )
        return to_rgb(to_pil_image(image))
    raise TypeError(f"an image must be {IMAGE_TYPES_TEXT}, got {type(image).__name__}")


def is_object_tail(tail) -> bool:
    """Whether a tail is an object in the image (a dict with a `box`) rather than a span of the text."""
    return isinstance(tail, dict) and "box" in tail


def center_box_to_corners(box: Sequence[float]) -> list[float]:
    """Normalised (center x, center y, width, height), the datasets' `tail_box`, to corners (x0, y0, x1, y1)."""
    center_x, center_y, width, height = box
    return [center_x - width / 2, center_y - height / 2, center_x + width / 2, center_y + height / 2]


def record_tail(record: dict):
    """The `tail` argument of `MREProcessor` for a row of the record schema: its token span, or its object."""
    if record.get("tail_box") is None:
        return record["tail"]
    caption = record.get("tail_caption")
    return {
        "name": record["tail"]["name"],
        "box": center_box_to_corners(record["tail_box"]),
        **({"caption": caption} if caption else {}),
    }


def normalised_box(tail: dict, image, role: str) -> list[float]:
    """
    The corners (x0, y0, x1, y1) of an object tail as fractions of the image's width and height. Four
    values within [0, 1] are read as normalised already; otherwise they are pixels of the upright image.
    """
    box = tail["box"]
    if (
        not isinstance(box, Sequence)
        or isinstance(box, str)
        or len(box) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    ):
        raise ValueError(f"the {role} box must be four finite numbers [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = map(float, box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the {role} box {list(box)} has zero area: it needs x0 < x1 and y0 < y1")
    if all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        return [x0, y0, x1, y1]
    if image is None:
        raise ValueError(
            f"the {role} box {list(box)} is in pixels, which needs the image to place it; "
            "give the image, or the box normalised to [0, 1]"
        )
    width, height = image_size(image)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise ValueError(f"the {role} box {list(box)} (pixels) lies outside the {width}x{height} image")
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(
            f"the {role} box {list(box)} is read as pixels but is under one pixel wide or high; "
            "a normalised box must lie within [0, 1]"
        )
    return [x0 / width, y0 / height, x1 / width, y1 / height]


def box_features(corners: Sequence[float]) -> list[float]:
    """MOREformer's box features `[cx, cy, w, h, w * h]` of normalised corners."""
    x0, y0, x1, y1 = corners
    width, height = x1 - x0, y1 - y0
    return [x0 + width / 2, y0 + height / 2, width, height, width * height]


def crop_to_box(image, box: Sequence[float]):
    """The part of a PIL `image` inside normalised corners `box` (x0, y0, x1, y1): an object tail's crop."""
    return image.crop((box[0] * image.width, box[1] * image.height, box[2] * image.width, box[3] * image.height))


def picture_inputs(
    image_processor, images: list, crops: list | None, tail_boxes: list, max_object_crops: int
) -> dict[str, torch.Tensor]:
    """
    The pixel tensors and masks of a batch's pictures (see `MREProcessor.__call__`): each example's image
    (or None), up to `max_object_crops` object crops, and the crop of its object tail's normalised box
    (or None); every picture goes through `image_processor` in one call.
    """
    images = [load_image(image) for image in images]
    crops = [
        [crop for crop in map(load_image, example_crops or []) if crop is not None][:max_object_crops]
        for example_crops in (crops if crops is not None else [None] * len(images))
    ]
    # An object tail's crop exists where its image does; boxes are normalised corners here.
    tail_crops = [
        crop_to_box(image, box) if image is not None and box is not None else None
        for image, box in zip(images, tail_boxes)
    ]
    pictures = [image for image in images if image is not None] + [crop for cs in crops for crop in cs]
    pictures += [crop for crop in tail_crops if crop is not None]
    if not pictures:
        return {}
    # One call for every picture of the batch, then scattered back: absent ones stay zero and masked.
    pixels = processor_pixels(image_processor, pictures)  # (num_pictures, 3, H, W)
    image_mask = torch.tensor([image is not None for image in images])
    num_images = int(image_mask.sum())
    pixel_values = pixels.new_zeros(len(images), *pixels.shape[1:])
    pixel_values[image_mask] = pixels[:num_images]
    features = {"pixel_values": pixel_values, "image_mask": image_mask}
    num_crops = max(len(example_crops) for example_crops in crops)
    crop_mask = torch.tensor([[j < len(example_crops) for j in range(num_crops)] for example_crops in crops])
    num_crop_pictures = int(crop_mask.sum())
    if num_crops:
        crop_pixel_values = pixels.new_zeros(len(images), num_crops, *pixels.shape[1:])
        crop_pixel_values[crop_mask] = pixels[num_images : num_images + num_crop_pictures]
        features.update(crop_pixel_values=crop_pixel_values, crop_mask=crop_mask)
    tail_crop_mask = torch.tensor([crop is not None for crop in tail_crops])
    if tail_crop_mask.any():
        tail_pixel_values = pixels.new_zeros(len(images), *pixels.shape[1:])
        tail_pixel_values[tail_crop_mask] = pixels[num_images + num_crop_pictures :]
        features["tail_pixel_values"] = tail_pixel_values
    return features
