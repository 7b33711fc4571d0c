"""predict_accelerate.py: a corpus in, each row's results once and in order out, rejects apart, resumable after a kill."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from method_contract import two_cpu_processes
from PIL import Image


REPO = Path(__file__).parents[1]
WORDS = ["obama", "visits", "berlin", "today", "with", "merkel"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    from conftest import TINY_WORDS
    from method_contract import build_model
    from transformers import BertTokenizer, CLIPImageProcessor

    from modeling_mre import METHODS, MREProcessor
    from modeling_mre.hub import save_hub_folder

    folder = tmp_path_factory.mktemp("predict")
    (folder / "vocab.txt").write_text("\n".join(TINY_WORDS))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = MREProcessor(
        image_processor=image_processor, tokenizer=BertTokenizer(vocab=str(folder / "vocab.txt")), max_length=16
    )
    save_hub_folder(build_model(METHODS["mmib"], processor).eval(), processor, folder / "model")
    return folder / "model"


def write_posts(path: Path, count: int, bad: set[int] = frozenset()) -> None:
    image = path.parent / "photo.png"
    Image.new("RGB", (40, 30), "red").save(image)
    with open(path, "w") as posts:
        for i in range(count):
            post = {
                "id": f"post-{i}",
                "text": "obama visits berlin today",
                "head": "obama",
                "tail": "berlin",
                "image": str(image) if i % 2 else None,
            }
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
    completed = predict(
        "--model",
        str(model_folder),
        "--input",
        str(tmp_path / "posts.jsonl"),
        "--output",
        str(tmp_path / "relations.jsonl"),
        "--batch_size",
        "8",
        "--top_k",
        "2",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 30 and summary["results"] == 28 and summary["rejects"] == 2
    records = read_jsonl(tmp_path / "relations.jsonl")
    assert [r["id"] for r in records] == [f"post-{i}" for i in range(30) if i not in {4, 17}]
    assert all(len(r["results"]) == 2 and {"relation", "score"} <= set(r["results"][0]) for r in records)
    rejects = read_jsonl(tmp_path / "relations.jsonl.rejects.jsonl")
    assert [(r["row"], r["id"]) for r in rejects] == [(4, "post-4"), (17, "post-17")]
    assert all("paris" in r["reason"] for r in rejects)

    strict = predict(
        "--model",
        str(model_folder),
        "--input",
        str(tmp_path / "posts.jsonl"),
        "--output",
        str(tmp_path / "strict.jsonl"),
        "--strict",
    )
    assert strict.returncode != 0 and "row 4 (id 'post-4')" in strict.stderr

    # A JSON array of the same posts (offsets in all, as a JSON file holds one schema) reads as well.
    as_array = [{**post, "head": [0, 5]} for post in read_jsonl(tmp_path / "posts.jsonl")[:3]]
    (tmp_path / "posts.json").write_text(json.dumps(as_array))
    array = predict(
        "--model",
        str(model_folder),
        "--input",
        str(tmp_path / "posts.json"),
        "--output",
        str(tmp_path / "array.jsonl"),
    )
    assert array.returncode == 0, array.stderr[-3000:]
    assert [r["id"] for r in read_jsonl(tmp_path / "array.jsonl")] == ["post-0", "post-1", "post-2"]

    with open(tmp_path / "posts.jsonl", "a") as posts:
        posts.write('{"id": "cut", "text": "obama vis\n')
    broken = predict(
        "--model",
        str(model_folder),
        "--input",
        str(tmp_path / "posts.jsonl"),
        "--output",
        str(tmp_path / "broken.jsonl"),
    )
    assert broken.returncode != 0 and f"{tmp_path / 'posts.jsonl'} line 31: not JSON" in broken.stderr


def test_a_run_killed_midway_and_launched_again_gives_each_row_exactly_once(model_folder, tmp_path):
    write_posts(tmp_path / "posts.jsonl", 2000)
    args = ["--model", str(model_folder), "--input", str(tmp_path / "posts.jsonl"), "--batch_size", "16"]
    reference = predict(*args, "--output", str(tmp_path / "reference.jsonl"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    output = tmp_path / "relations.jsonl"
    from test_training import environment

    process = subprocess.Popen(
        [sys.executable, str(REPO / "predict_accelerate.py"), *args, "--output", str(output)],
        cwd=REPO,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
    launcher = two_cpu_processes()
    two = predict(*args, "--output", str(tmp_path / "two.parquet"), launcher=launcher, ACCELERATE_USE_CPU="true")
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads(two.stdout.strip().splitlines()[-1])["processes"] == 2

    import datasets

    one_rows, two_rows = (
        datasets.Dataset.from_parquet(str(tmp_path / name)) for name in ("one.parquet", "two.parquet")
    )
    assert two_rows["id"] == one_rows["id"] == [f"post-{i}" for i in range(50) if i != 7]
    for ours, theirs in zip(two_rows["results"], one_rows["results"]):
        assert json.loads(ours)[0]["relation"] == json.loads(theirs)[0]["relation"]


@pytest.fixture(scope="module")
def predict_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_accelerate", REPO / "predict_accelerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_are_refused_before_any_row(predict_script, tmp_path, capsys):
    posts = tmp_path / "posts.jsonl"
    write_posts(posts, 2)
    (tmp_path / "out.jsonl").mkdir()
    for arguments, message in (
        (["--output", str(tmp_path / "out.jsonl")], "is a folder; give the results file"),
        (["--output", str(posts)], "is one of the --input files: the results would overwrite the posts"),
        (["--output", str(tmp_path / "r.jsonl"), "--top_k", "0"], "--top_k must be at least 1"),
        (["--output", str(tmp_path / "r.jsonl"), "--batch_size", "0"], "--batch_size must be at least 1, got 0"),
    ):
        with pytest.raises(SystemExit):
            predict_script.parse_args(["--model", "m", "--input", str(posts), *arguments])
        assert message in capsys.readouterr().err


def test_inputs_that_hold_no_rows_or_an_empty_id_are_named(predict_script, tmp_path):
    def rows_of(name: str, content: str):
        path = tmp_path / name
        path.write_text(content, newline="")
        args = predict_script.parse_args(["--model", "m", "--input", str(path), "--output", str(tmp_path / "r.jsonl")])
        rows, origins = predict_script.load_rows(args)
        return predict_script.row_ids(rows, origins, args)

    for name, content, message in (
        ("empty.csv", "", "empty.csv is empty"),
        ("header.csv", "id,text,head,tail\r\n", "header.csv has a header line but no rows"),
        ("blank.jsonl", "\n\n", "blank.jsonl is empty: no row to predict"),
        ("ids.csv", "id,text\n1,a b\n,c d\n3,e f\n", "ids.csv line 3, field 'id': empty"),
        ("ids.jsonl", '{"id": "a", "text": "x"}\n{"id": "", "text": "y"}\n', "ids.jsonl line 2, field 'id': empty"),
    ):
        with pytest.raises(ValueError, match=message):
            rows_of(name, content)
    assert rows_of("mac.jsonl", '{"id": "a"}\r{"id": "b"}\r') == ["a", "b"]  # CR-only line endings
    assert rows_of("ids.csv", "id,text\n1,a b\n3,e f\n") == [1, 3]


def test_top_k_for_an_entity_recognizer_or_whole_posts_is_refused(
    predict_script, model_folder, ner_processor, tmp_path
):
    from ner_contract import build_tagger
    from transformers import pipeline

    from modeling_mre import NER_METHODS
    from modeling_mre.hub import save_hub_folder

    save_hub_folder(build_tagger(NER_METHODS["mmib"], ner_processor).eval(), ner_processor, tmp_path / "ner")
    recognise = pipeline(model=str(tmp_path / "ner"), trust_remote_code=True)
    rows = [{"id": "a", "text": "obama visits berlin"}]
    for flag in (["--top_k", "2"], ["--ner_model", str(tmp_path / "ner")]):
        args = predict_script.parse_args(
            ["--model", str(tmp_path / "ner"), "--input", "x.jsonl", "--output", "r.jsonl", *flag]
        )
        with pytest.raises(
            ValueError,
            match=f"{flag[0]} is for a relation extractor; --model .* is a multimodal-token-classification model",
        ):
            predict_script.check_run(recognise, rows, args)
    extract = pipeline(model=str(model_folder), trust_remote_code=True)
    args = predict_script.parse_args(
        ["--model", str(model_folder), "--input", "x.jsonl", "--output", "r.jsonl", "--top_k", "2"]
    )
    with pytest.raises(ValueError, match="--top_k ranks the relations of one pair; the rows are whole posts"):
        predict_script.check_run(extract, [{"text": "obama visits berlin", "entities": ["obama", "berlin"]}], args)
    predict_script.check_run(extract, [{"text": "obama visits berlin", "head": "obama", "tail": "berlin"}], args)


def test_a_relaunch_sees_a_changed_input_or_model_and_strict_fails_on_rejects(model_folder, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_folder, model)
    posts, output = tmp_path / "posts.jsonl", tmp_path / "relations.jsonl"
    write_posts(posts, 6, bad={2})
    with open(posts, "a") as more:  # a post cut inside an emoji is read, not rejected
        more.write(
            json.dumps({"id": "cut", "text": "obama visits berlin \ud83d", "head": "obama", "tail": "berlin"}) + "\n"
        )
    args = ["--model", str(model), "--input", str(posts), "--output", str(output)]
    first = predict(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads(first.stdout.strip().splitlines()[-1])["rejects"] == 1
    assert read_jsonl(output)[-1]["id"] == "cut"
    strict = predict(*args, "--strict")  # nothing left to do, but the run has a reject
    assert strict.returncode != 0 and "--strict: 1 rows were refused (first: row 2 (id 'post-2')" in strict.stderr

    write_posts(posts, 6)  # the rejected row fixed in the input
    refused = predict(*args)
    assert refused.returncode != 0
    assert "(changed: the input files' content; rows 7 -> 6): give --overwrite_output to redo it" in refused.stderr
    redone = predict(*args, "--overwrite_output", "--strict")
    assert redone.returncode == 0, redone.stderr[-3000:]
    assert [r["id"] for r in read_jsonl(output)] == [f"post-{i}" for i in range(6)]

    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "id2label": {**config["id2label"], "0": "renamed"}}))
    retrained = predict(*args)
    assert retrained.returncode != 0 and "(changed: the model's weights or config)" in retrained.stderr

    other = tmp_path / "someone_elses.jsonl"
    other.write_text("kept\n")
    kept = predict("--model", str(model), "--input", str(posts), "--output", str(other))
    assert kept.returncode != 0 and "exists and was not written by this run" in kept.stderr
    assert other.read_text() == "kept\n"
