"""Images of every mode and size, and broken files, from users and from datasets."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_mre.data.mnre import load_mnre
from modeling_mre.models.images_mre import MAX_IMAGE_SIDE, image_file_problem, load_image, open_image, to_rgb


def test_cmyk_and_greyscale_become_rgb(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    path = tmp_path / "grey.jpg"
    Image.new("L", (8, 8), 128).save(path)
    grey = open_image(path)
    assert grey.mode == "RGB" and abs(grey.getpixel((0, 0))[0] - 128) <= 2


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(path)  # mid-grey in 16 bits
    pixel = open_image(path).getpixel((0, 0))
    assert pixel[0] == pixel[1] == pixel[2] and 120 <= pixel[0] <= 135  # not 255, as a plain convert gives


def test_alpha_is_composed_over_white():
    # Fully transparent pixels whose hidden colour is black must not show as black.
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    half = Image.new("LA", (4, 4), (0, 128))
    assert 120 <= to_rgb(half).getpixel((0, 0))[0] <= 135
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)


def test_huge_image_is_reduced_on_load(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (6000, 1500), (10, 20, 30)).save(path, quality=50)
    image = open_image(path)
    assert max(image.size) <= MAX_IMAGE_SIDE and image.size[0] / image.size[1] == pytest.approx(4, rel=0.02)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert open_image(path).size == (20, 40)


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "is empty"), (b"this is not a picture", "is not an image"), ("truncated", "cannot be decoded")],
)
def test_broken_files_name_the_file(tmp_path, content, problem):
    path = tmp_path / "broken.png"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        content = path.read_bytes()[:300]
    path.write_bytes(content)
    assert image_file_problem(path).startswith(problem)
    with pytest.raises(ValueError, match=f"image file {path} {problem}"):
        load_image(str(path))


def test_missing_file_and_wrong_type():
    with pytest.raises(FileNotFoundError, match="image file /nowhere/x.png not found"):
        load_image("/nowhere/x.png")
    with pytest.raises(TypeError, match="a file path, a URL, .* a torch tensor or None, got float"):
        load_image(3.5)


def test_bytes_and_datasets_undecoded_dicts_read_as_the_file(tmp_path):
    import datasets

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    expected = np.asarray(load_image(str(path)))
    data = path.read_bytes()
    # What a user holds, and what `datasets.Image(decode=False)` gives a row.
    rows = datasets.Dataset.from_dict({"image": [str(path)]}).cast_column("image", datasets.Image(decode=False))
    for given in (
        data,
        bytearray(data),
        memoryview(data),
        {"bytes": data, "path": None},
        {"bytes": None, "path": str(path)},
        rows[0]["image"],
    ):
        np.testing.assert_array_equal(np.asarray(load_image(given)), expected)
    with pytest.raises(ValueError, match="image bytes are empty"):
        load_image(b"")
    with pytest.raises(ValueError, match=r"image bytes \(4 bytes\) is not an image Pillow can read"):
        load_image(b"\x89PNG")
    with pytest.raises(ValueError, match="an image dict must be datasets'"):
        load_image({"url": "x"})


def test_reader_falls_back_on_unreadable_images_and_strict_refuses(tmp_path, caplog):
    (tmp_path / "ours_rel2id.json").write_text('{"None": 0, "/per/per/peer": 1}')
    lines = [
        {
            "token": ["a", "b"],
            "h": {"name": "a", "pos": [0, 1]},
            "t": {"name": "b", "pos": [1, 2]},
            "img_id": name,
            "relation": "None",
        }
        for name in ("good.png", "empty.png", "text.png", "missing.png")
    ]
    (tmp_path / "ours_train.txt").write_text("".join(repr(line) + "\n" for line in lines))
    folder = tmp_path / "img_org" / "train"
    folder.mkdir(parents=True)
    Image.new("RGBA", (8, 8), (255, 0, 0, 255)).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    torch.save({0: ["crop_good.png", "crop_truncated.png"]}, tmp_path / "mre_train_dict.pth")
    crops = tmp_path / "img_vg" / "train" / "crops"
    crops.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(crops / "crop_good.png")
    (crops / "crop_truncated.png").write_bytes((crops / "crop_good.png").read_bytes()[:40])

    with caplog.at_level(logging.WARNING):
        train = load_mnre(tmp_path, cache_dir=tmp_path / "cache")["train"]
    assert [image is not None for image in train["image"]] == [True, False, False, False]
    assert len(train[0]["crops"]) == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert any("1 of 4 images absent" in w for w in warnings)
    assert any("2 of 4 images unreadable" in w and "empty.png is empty" in w for w in warnings)
    assert any("1 of 2 object crops unreadable" in w and "crop_truncated.png" in w for w in warnings)

    with pytest.raises(ValueError, match=r"mre_train_dict.pth, key 0: crop .*crop_truncated.png is not an image"):
        load_mnre(tmp_path, strict=True, cache_dir=tmp_path / "cache")
    (crops / "crop_truncated.png").unlink()
    torch.save({0: ["crop_good.png"]}, tmp_path / "mre_train_dict.pth")
    with pytest.raises(ValueError, match=r"ours_train.txt line 2, field 'img_id': .*empty.png is empty"):
        load_mnre(tmp_path, strict=True, cache_dir=tmp_path / "cache")


def test_every_form_transformers_accepts_gives_the_same_picture(tmp_path):
    # A path, a URL (served from this machine), base64 and a data URI, numpy channels last and first,
    # uint8 and floats in [0, 1], a torch tensor: the same RGB pixels.
    import base64
    import functools
    import http.server
    import threading

    import torch

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    encoded = base64.b64encode(path.read_bytes()).decode()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/photo.png"
        forms = [
            str(path),
            path,
            url,
            encoded,
            "data:image/png;base64," + encoded,
            pixels,
            pixels.transpose(2, 0, 1),
            pixels / 255.0,
            torch.from_numpy(pixels).permute(2, 0, 1),
        ]
        for form in forms:
            loaded = load_image(form)
            assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded), pixels), type(form).__name__
        with pytest.raises(ValueError, match=r"image http://127.0.0.1:\d+/absent.png could not be read"):
            load_image(url.replace("photo", "absent"))
    finally:
        server.shutdown()
    with pytest.raises(ValueError, match=r"could not be read"):
        load_image("data:image/png;base64," + "A" * 300)
    with pytest.raises(ValueError, match=r"must be \(height, width, 3\)"):
        load_image(np.zeros((4, 4)))


@pytest.mark.parametrize("size", [(512, 1), (1, 512), (300, 3)])
def test_extreme_aspect_ratios_are_padded_before_scaling(processor, size):
    import tracemalloc

    from transformers import CLIPImageProcessor

    from modeling_mre import MREProcessor
    from modeling_mre.models.images_mre import MAX_ASPECT_RATIO, bounded_aspect

    banner = Image.new("RGB", size, (200, 0, 0))
    bounded = bounded_aspect(banner)
    long_side = max(size)
    assert max(bounded.size) == long_side and min(bounded.size) == -(-long_side // MAX_ASPECT_RATIO)
    assert {colour: count for count, colour in bounded.getcolors()}[(200, 0, 0)] == size[0] * size[1]  # all of it kept
    photo = Image.new("RGB", (40 * MAX_ASPECT_RATIO, 40))
    assert bounded_aspect(photo) is photo  # within the bound: untouched
    # The short side scaled to 64 pixels: unbounded, a 512x1 banner became 32768x64 (12 MB of floats).
    image_processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 32, "width": 32})
    bounded_processor = MREProcessor(image_processor=image_processor, tokenizer=processor.tokenizer, max_length=16)
    bounded_processor(text="a b", head="a", tail="b", images=photo)  # what is allocated once, before measuring
    tracemalloc.start()
    try:
        encoding = bounded_processor(text="a b", head="a", tail="b", images=banner)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert encoding["pixel_values"].shape == (1, 3, 32, 32)
    assert peak < 2**20


def test_a_folder_is_named_as_a_folder(tmp_path):
    from modeling_mre.models.images_mre import image_size

    folder = tmp_path / "photo.jpg"
    folder.mkdir()
    for read in (load_image, image_size):
        with pytest.raises(ValueError, match=f"image path {folder} is a folder, not an image file"):
            read(str(folder))
    assert image_file_problem(folder) == "is a folder, not an image file"  # what the readers' fallback reports
