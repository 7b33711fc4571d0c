import importlib.util
import sys
from pathlib import Path

import pytest
from transformers import BertTokenizer, CLIPImageProcessor

from modeling_mre import MNERProcessor, MREProcessor


# The benchmark scripts import their shared helpers (benchmarks/common.py) as scripts do.
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


# The research-only MNRE copy lives beside the repository, never inside it.
MNRE_DIR = Path(__file__).parents[1].parent / "shared" / "data" / "mnre"


@pytest.fixture(scope="session")
def mnre_dir() -> Path:
    """Folder of the real MNRE v2 annotations; tests using it skip when it is absent."""
    if not (MNRE_DIR / "ours_rel2id.json").is_file():
        pytest.skip(f"real MNRE data not found at {MNRE_DIR} (research-only, not shipped with the repository)")
    return MNRE_DIR


ZEROSHOT_DIR = MNRE_DIR.parent / "zeroshot"


@pytest.fixture(scope="session")
def zeroshot_dir() -> Path:
    """Folder of FewRel 2.0's NYT, PubMed and SemEval relation sets; tests using it skip when it is absent."""
    if not (ZEROSHOT_DIR / "val_nyt.json").is_file():
        pytest.skip(
            f"FewRel 2.0's relation sets not found at {ZEROSHOT_DIR} (research-only, not shipped with the repository)"
        )
    return ZEROSHOT_DIR


# A word-level BERT vocabulary: the tests can reason about exact tokens, and nothing is downloaded.
TINY_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "obama", "visits", "berlin", "today", "with", "merkel", "the"]
TINY_WORDS += ["a", "b", "c", "d", "x", "y", "w"]


@pytest.fixture
def tiny_vocab(tmp_path) -> Path:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(TINY_WORDS) + "\n")
    return vocab


@pytest.fixture
def processor(tiny_vocab) -> MREProcessor:
    """An MREProcessor on the tiny vocabulary with 32-pixel images, `max_length` 16."""
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return MREProcessor(image_processor=image_processor, tokenizer=BertTokenizer(vocab=str(tiny_vocab)), max_length=16)


@pytest.fixture
def ner_processor(tiny_vocab) -> MNERProcessor:
    """An MNERProcessor on the tiny vocabulary with 32-pixel images and windows of 8 subwords (stride 2)."""
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return MNERProcessor(
        image_processor=image_processor, tokenizer=BertTokenizer(vocab=str(tiny_vocab)), max_length=8, stride=2
    )


@pytest.fixture(scope="session")
def train_script():
    """train_accelerate.py as a module, to test its pieces without launching it."""
    spec = importlib.util.spec_from_file_location(
        "train_accelerate", Path(__file__).parents[1] / "train_accelerate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
