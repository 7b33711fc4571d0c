"""The Space and the metric folders deploy on the Hub as they are: their front matter keeps the Hub's rules."""

from pathlib import Path

import pytest
from huggingface_hub import metadata_load


REPO = Path(__file__).parents[1]
# The Hub's Space configuration reference (huggingface.co/docs/hub/spaces-config-reference).
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SDKS = {"gradio", "docker", "static"}


@pytest.mark.parametrize("folder", ["space", "metrics/mre", "metrics/mner"])
def test_front_matter_keeps_the_hubs_rules(folder):
    metadata = metadata_load(REPO / folder / "README.md")
    assert metadata["sdk"] in SDKS and metadata["colorFrom"] in COLOURS and metadata["colorTo"] in COLOURS
    assert (REPO / folder / metadata["app_file"]).is_file()
    if metadata["sdk"] == "gradio":
        assert metadata["sdk_version"].count(".") == 2
    assert len(metadata.get("short_description", "")) <= 60
    # The Hub's default Python is older than what our code (and transformers 5.24) needs.
    major, minor = map(int, str(metadata["python_version"]).split("."))
    assert (major, minor) >= (3, 11)
    assert not any(path.is_symlink() for path in (REPO / folder).rglob("*")), "a pushed symlink dangles on the Hub"


def test_the_space_pins_cpu_torch_and_the_models_revision(monkeypatch):
    import importlib.util

    requirements = (REPO / "space" / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    spec = importlib.util.spec_from_file_location("space_app", REPO / "space" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    calls = []
    monkeypatch.setattr(app, "pipeline", lambda *args, **kwargs: calls.append(kwargs) or "extractor")
    assert app.load_extractor("user/model", "0123abc") == ("extractor", None)
    assert calls == [{"model": "user/model", "revision": "0123abc", "trust_remote_code": True}]
