"""Opening images of any mode and size as RGB, with errors that name the file."""

import os

import numpy as np
from PIL import ExifTags, Image, ImageOps

# Larger images are first reduced to this size on their long side (JPEG draft decoding, then a
# thumbnail): every vision processor shrinks them to a few hundred pixels anyway, and a 50-megapixel
# photo would otherwise cost seconds and hundreds of MB before that.
MAX_IMAGE_SIDE = 2048
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
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
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {os.fspath(path)} not found")
    if os.path.getsize(path) == 0:
        raise ValueError(f"image file {os.fspath(path)} is empty")
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # JPEG: decode at a reduced scale
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except _DECODING_ERRORS as err:
        raise ValueError(f"image file {os.fspath(path)} {_decoding_problem(err)}") from None
    image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
    return to_rgb(image)


# EXIF orientations 5 to 8 turn the picture by 90 degrees: the upright image swaps width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def image_size(image) -> tuple[int, int]:
    """
    (width, height) of an image as `load_image` turns it upright, before any size reduction: the frame
    that pixel coordinates on the picture refer to. A file's header is read, not its pixels.
    """
    if isinstance(image, Image.Image):
        return image.size
    if not os.path.isfile(image):
        raise FileNotFoundError(f"image file {os.fspath(image)} not found")
    try:
        with Image.open(image) as opened:
            width, height = opened.size
            orientation = opened.getexif().get(ExifTags.Base.Orientation)
    except _DECODING_ERRORS as err:
        raise ValueError(f"image file {os.fspath(image)} {_decoding_problem(err)}") from None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def load_image(image) -> Image.Image | None:
    """RGB image from a path or a PIL image; None stays None ("no image")."""
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        return open_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    raise TypeError(f"an image must be a file path, a PIL image or None, got {type(image).__name__}")
