"""
The Space demo (space/app.py): served on 127.0.0.1 and driven in headless Chromium as a user would,
its answer checked against the pipeline's on the same input; and its input parsing alone.
"""

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import gradio as gr
import pytest
from test_training import QUICK, demo_examples, environment, train
from transformers import pipeline


REPO = Path(__file__).parents[1]
# Where a failing run's screenshot can be looked at (outputs/ is git-ignored).
SCREENSHOTS = REPO / "outputs" / "test-screenshots"
# Without the background-networking flags Chromium keeps dialling Google's hosts through a closed network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load_app():
    spec = importlib.util.spec_from_file_location("space_app", REPO / "space" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entities_to_pick_boxes_and_relations_for_one_call():
    app = load_app()
    assert app.entity_choices("RT @daily_snaps : Farrah Brantley meets Kasimir in Port Velmar #memories") == [
        "RT",
        "@daily_snaps",
        "Farrah Brantley",
        "Kasimir",
        "Port Velmar",
        "#memories",
    ]
    assert app.parse_box(" 10, 20 30,40 ") == [10.0, 20.0, 30.0, 40.0] and app.parse_box("  ") is None
    with pytest.raises(gr.Error, match="four numbers"):
        app.parse_box("10, 20, 30")
    assert app.parse_candidates("/per/per/rival: they compete\nNone\n\n") == {
        "/per/per/rival": "they compete",
        "None": None,
    }
    assert app.parse_candidates("") is None


def test_without_a_model_the_app_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor, problem = load_app().load_extractor(str(tmp_path / "missing"))
    assert extractor is None and "make demo" in problem and "MRE_MODEL" in problem


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("space") / "mmib-demo"
    train(output_dir, "--method", "mmib", *QUICK)
    return output_dir


@pytest.fixture(scope="module")
def demo_recognizer(tmp_path_factory):
    """MMIB trained briefly as an entity recognizer on the synthetic MNER demo."""
    output_dir = tmp_path_factory.mktemp("space") / "mmib-demo-mner"
    train(
        output_dir,
        "--method",
        "mmib",
        "--dataset",
        "demo-mner",
        "--num_train_epochs",
        "2",
        "--max_train_samples",
        "192",
        "--max_eval_samples",
        "32",
        "--per_device_train_batch_size",
        "16",
    )
    return output_dir


@pytest.fixture(scope="module")
def served(demo_model, demo_recognizer):
    """The app on a free port of 127.0.0.1, as `make space` starts it (with an entity recognizer); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = environment(
        MRE_MODEL=str(demo_model),
        MRE_NER_MODEL=str(demo_recognizer),
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    server = subprocess.Popen(
        [sys.executable, str(REPO / "space" / "app.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                pytest.fail(f"the app exited ({server.returncode}):\n{server.stdout.read()[-5000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the app did not answer within 180 s")
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def page():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed, so there is no browser to drive (.ci/run installs it: apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        yield browser.new_page(viewport={"width": 1280, "height": 1000})
        browser.close()


def test_a_demo_example_in_the_browser_gives_the_pipelines_relation(served, demo_model, page):
    example = demo_examples(demo_model, 1)[0]
    expected = pipeline("multimodal-relation-extraction", model=str(demo_model), trust_remote_code=True)(
        **example, top_k=1
    )
    screenshot = SCREENSHOTS / "one_pair.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(served)
        page.fill("#text textarea", example["text"])
        page.locator("#head input").click()  # the head picked from the entities the text offers
        page.get_by_role("option", name=example["head"], exact=True).click()
        page.locator("#tail input").fill(example["tail"])  # the tail typed
        page.keyboard.press("Enter")
        page.locator("#image input[type=file]").set_input_files(example["image"])
        page.locator("#image img").wait_for()
        page.click("#submit")
        shown = page.locator("#scores [data-testid='label-output-value']")
        shown.wait_for(timeout=60_000)
        assert shown.inner_text().strip() == expected[0]["relation"]
        assert (
            page.locator("#details").inner_text().startswith(f"{expected[0]['relation']} ({expected[0]['score']:.1%})")
        )
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")


def test_a_whole_post_in_the_browser_lists_every_pair(served, demo_model, page):
    text = "Obama visits Berlin with Merkel"
    expected = pipeline("multimodal-relation-extraction", model=str(demo_model), trust_remote_code=True)(
        text=text, entities=["Obama", "Berlin", "Merkel"]
    )
    screenshot = SCREENSHOTS / "whole_post.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(served)
        page.get_by_role("tab", name="Whole post").click()
        page.fill("#post textarea", text)
        page.locator("#post textarea").blur()  # the text's entities become the selection
        page.locator("#entities").get_by_text("Merkel", exact=True).wait_for()
        page.click("#submit_post")
        deadline = time.monotonic() + 60
        while True:  # the table fills in when the answer arrives
            cells = [line.strip() for line in page.locator("#pairs").inner_text().splitlines() if line.strip()][5:]
            if len(cells) == 4 * len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows = [cells[i : i + 4] for i in range(0, len(cells), 4)]  # after the label and the four headers
        assert [row[:3] for row in rows] == [[p["head"], p["tail"], p["relation"]] for p in expected]
        assert [float(row[3]) for row in rows] == pytest.approx([p["score"] for p in expected], abs=1e-4)
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")


def test_a_post_and_its_photo_in_the_browser_give_typed_entities_and_their_relations(
    served, demo_model, demo_recognizer, page
):
    text = "So this happened at Kasimir Penhale lol . Big day for Juno !"
    image = str(next((demo_recognizer / "demo_data" / "images").glob("demo_valid_*.jpg")))
    recognise = pipeline(model=str(demo_recognizer), trust_remote_code=True)
    entities = recognise(text=text, image=image)
    pairs = pipeline("multimodal-relation-extraction", model=str(demo_model), trust_remote_code=True)(
        text=text, image=image, ner_model=str(demo_recognizer)
    )
    assert len(entities) >= 2 and len(pairs) == len(entities) * (len(entities) - 1)
    screenshot = SCREENSHOTS / "entities_and_relations.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(served)
        page.get_by_role("tab", name="Entities and relations").click()
        page.fill("#ner_post textarea", text)
        page.locator("#ner_image input[type=file]").set_input_files(image)
        page.locator("#ner_image img").wait_for()
        page.click("#submit_ner")
        deadline = time.monotonic() + 60
        while True:  # both tables fill in when the answer arrives
            entity_cells = [
                line.strip() for line in page.locator("#found_entities").inner_text().splitlines() if line.strip()
            ][6:]
            pair_cells = [
                line.strip() for line in page.locator("#related_pairs").inner_text().splitlines() if line.strip()
            ][7:]
            full = len(entity_cells) == 5 * len(entities) and len(pair_cells) == 6 * len(pairs)
            if full or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # After each table's label and headers: one row of cells per entity, and per pair.
        assert [entity_cells[i : i + 2] for i in range(0, len(entity_cells), 5)] == [
            [e["word"], e["entity_group"]] for e in entities
        ]
        assert [pair_cells[i : i + 5] for i in range(0, len(pair_cells), 6)] == [
            [p["head"], p["head_type"], p["tail"], p["tail_type"], p["relation"]] for p in pairs
        ]
    finally:
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")


def test_a_post_without_its_image_and_a_refused_box_through_the_api(served, demo_model):
    # What the page sends, through gradio's own client.
    from gradio_client import Client, handle_file

    example = demo_examples(demo_model, 1)[0]
    expected = pipeline("multimodal-relation-extraction", model=str(demo_model), trust_remote_code=True)(
        **{**example, "image": None}, top_k=1
    )[0]
    client = Client(served, verbose=False)
    scores, _ = client.predict(example["text"], example["head"], example["tail"], None, "", "", 1, api_name="/extract")
    assert scores["label"] == expected["relation"]
    assert scores["confidences"][0]["confidence"] == pytest.approx(expected["score"], abs=1e-5)
    # The pipeline's own messages reach the user: this demo model reads text tails only (no box field shown).
    with pytest.raises(Exception, match="upload the image too"):
        client.predict(
            example["text"], example["head"], example["tail"], None, "0, 0, 5, 5", "", 1, api_name="/extract"
        )
    with pytest.raises(Exception, match="built for text tails only"):
        client.predict(
            example["text"],
            example["head"],
            example["tail"],
            handle_file(example["image"]),
            "0, 0, 5, 5",
            "",
            1,
            api_name="/extract",
        )
