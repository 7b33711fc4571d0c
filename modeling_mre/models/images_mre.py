"""Opening images of any mode and size as RGB, with errors that name the file."""

import io
import math
import os
import re

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
    size = (width, math.ceil(width / MAX_ASPECT_RATIO)) if width > height else (math.ceil(height / MAX_ASPECT_RATIO), height)
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
            raise ValueError(f"an image array must be (height, width, 3) or (3, height, width), got shape {image.shape}")
        return to_rgb(to_pil_image(image))
    raise TypeError(f"an image must be {IMAGE_TYPES_TEXT}, got {type(image).__name__}")
