"""predict_accelerate.py: a corpus in, each row's results once and in order out, rejects apart, resumable after a kill."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).parents[1]
WORDS = ["obama", "visits", "berlin", "today", "with", "merkel"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from conftest import TINY_WORDS
    from method_contract import build_model
    from modeling_mre import METHODS, MREProcessor
    from modeling_mre.hub import save_hub_folder
    from transformers import BertTokenizer, CLIPImageProcessor

    folder = tmp_path_factory.mktemp("predict")
    (folder / "vocab.txt").write_text("\n".join(TINY_WORDS))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = MREProcessor(image_processor=image_processor, tokenizer=BertTokenizer(vocab=str(folder / "vocab.txt")), max_length=16)
    save_hub_folder(build_model(METHODS["mmib"], processor).eval(), processor, folder / "model")
    return folder / "model"


def write_posts(path: Path, count: int, bad: set[int] = frozenset()) -> None:
    image = path.parent / "photo.png"
    Image.new("RGB", (40, 30), "red").save(image)
    with open(path, "w") as posts:
        for i in range(count):
            post = {"id": f"post-{i}", "text": "obama visits berlin today", "head": "obama", "tail": "berlin",
                    "image": str(image) if i % 2 else None}
            if i % 5 == 3:
                post["head"] = [0, 5]  # offsets in some rows, strings in others: JSON Lines rows may differ
            if i in bad:
                post["tail"] = "paris"  # not in the text: the pipeline refuses it
            posts.write(json.dumps(post) + "\n")


def predict(*args: str, launcher=(sys.executable,), **env) -> subprocess.CompletedProcess:
    from test_training import environment

    command = [*launcher, str(REPO / "predict_accelerate.py"), *args]
    return subprocess.run(command, cwd=REPO, env=environment(**env), capture_output=True, text=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_row_once_in_order_with_rejects_apart(model_folder, tmp_path):
    write_posts(tmp_path / "posts.jsonl", 30, bad={4, 17})
    completed = predict("--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"),
                        "--output", str(tmp_path / "relations.jsonl"), "--batch_size", "8", "--top_k", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 30 and summary["results"] == 28 and summary["rejects"] == 2
    records = read_jsonl(tmp_path / "relations.jsonl")
    assert [r["id"] for r in records] == [f"post-{i}" for i in range(30) if i not in {4, 17}]
    assert all(len(r["results"]) == 2 and {"relation", "score"} <= set(r["results"][0]) for r in records)
    rejects = read_jsonl(tmp_path / "relations.jsonl.rejects.jsonl")
    assert [(r["row"], r["id"]) for r in rejects] == [(4, "post-4"), (17, "post-17")]
    assert all("paris" in r["reason"] for r in rejects)

    strict = predict("--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"),
                     "--output", str(tmp_path / "strict.jsonl"), "--strict")
    assert strict.returncode != 0 and "row 4 (id 'post-4')" in strict.stderr

    # A JSON array of the same posts (offsets in all, as a JSON file holds one schema) reads as well.
    as_array = [{**post, "head": [0, 5]} for post in read_jsonl(tmp_path / "posts.jsonl")[:3]]
    (tmp_path / "posts.json").write_text(json.dumps(as_array))
    array = predict("--model", str(model_folder), "--input", str(tmp_path / "posts.json"), "--output", str(tmp_path / "array.jsonl"))
    assert array.returncode == 0, array.stderr[-3000:]
    assert [r["id"] for r in read_jsonl(tmp_path / "array.jsonl")] == ["post-0", "post-1", "post-2"]

    with open(tmp_path / "posts.jsonl", "a") as posts:
        posts.write('{"id": "cut", "text": "obama vis\n')
    broken = predict("--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"),
                     "--output", str(tmp_path / "broken.jsonl"))
    assert broken.returncode != 0 and f"{tmp_path / 'posts.jsonl'} line 31: not JSON" in broken.stderr


def test_a_run_killed_midway_and_launched_again_gives_each_row_exactly_once(model_folder, tmp_path):
    write_posts(tmp_path / "posts.jsonl", 2000)
    args = ["--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"), "--batch_size", "16"]
    reference = predict(*args, "--output", str(tmp_path / "reference.jsonl"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    output = tmp_path / "relations.jsonl"
    from test_training import environment

    process = subprocess.Popen([sys.executable, str(REPO / "predict_accelerate.py"), *args, "--output", str(output)],
                               cwd=REPO, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = output.with_name(output.name + ".parts") / "results-attempt000-rank000.jsonl"
    deadline = time.monotonic() + 300
    while not (part.is_file() and part.read_text().count("\n") >= 600):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL and not output.exists()
    done_before = part.read_text().count("\n")
    assert done_before < 2000

    resumed = predict(*args, "--output", str(output))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["rows_this_launch"] == 2000 - done_before
    assert output.read_text() == (tmp_path / "reference.jsonl").read_text()  # every row once, in order, same results

    # The parts of this run are not merged into a run with other arguments.
    other = predict(*args, "--output", str(output), "--top_k", "3")
    assert other.returncode != 0 and "holds the parts of a run with other arguments" in other.stderr


def test_two_processes_give_what_one_gives(model_folder, tmp_path):
    write_posts(tmp_path / "posts.jsonl", 50, bad={7})
    args = ["--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"), "--batch_size", "8"]
    one = predict(*args, "--output", str(tmp_path / "one.parquet"))
    assert one.returncode == 0, one.stderr[-3000:]
    accelerate = str(Path(sys.executable).with_name("accelerate"))  # the venv's CLI, activated or not
    launcher = (accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no")
    two = predict(*args, "--output", str(tmp_path / "two.parquet"), launcher=launcher, ACCELERATE_USE_CPU="true")
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout.strip().splitlines()[-1])["processes"] == 2

    import datasets

    one_rows, two_rows = (datasets.Dataset.from_parquet(str(tmp_path / name)) for name in ("one.parquet", "two.parquet"))
    assert two_rows["id"] == one_rows["id"] == [f"post-{i}" for i in range(50) if i != 7]
    for ours, theirs in zip(two_rows["results"], one_rows["results"]):
        assert json.loads(ours)[0]["relation"] == json.loads(theirs)[0]["relation"]
