from pathlib import Path

import pytest


# The research-only MNRE copy lives beside the repository, never inside it.
MNRE_DIR = Path(__file__).parents[1].parent / "shared" / "data" / "mnre"


@pytest.fixture(scope="session")
def mnre_dir() -> Path:
    """Folder of the real MNRE v2 annotations; tests using it skip when it is absent."""
    if not (MNRE_DIR / "ours_rel2id.json").is_file():
        pytest.skip(f"real MNRE data not found at {MNRE_DIR} (research-only, not shipped with the repository)")
    return MNRE_DIR
