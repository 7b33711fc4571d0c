"""
Publishing on the Hub, offline: model cards from eval_results.json, the model push from
train_accelerate.py, and the dataset export and push, each checked by loading back what was uploaded.

Nothing reaches the network. `HubRecorder` answers huggingface_hub's HTTP calls on 127.0.0.1
(create repo, validate YAML, preupload, commit, list files) and keeps every committed file. It is
reached through `HF_ENDPOINT`, so the very same client code runs as against the Hub, in this process
and in a `train_accelerate.py` subprocess alike, without patching anything there. The recorder
answers every preupload with "regular" (bytes inline in the commit), so the LFS/Xet transfer, which
the Hub would use for weights and images, is the one part of an upload not exercised here.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import ModelCard, constants

from modeling_mre.data.mnre import load_mnre
from modeling_mre.data.more import load_more
from modeling_mre.data.demo import write_demo_dataset, write_more_demo_dataset
from modeling_mre.hub.figures import CONFUSION_MATRIX_FIGURE, TRAINING_CURVE_FIGURE
from modeling_mre.hub import (
    export_dataset,
    model_repo_files,
    push_dataset_folder,
    push_model_folder,
    write_model_card,
)

REPO = Path(__file__).parents[1]
TOKEN = "hf_recorder_test_token"
MODEL_REPO = "org/mre-mmib-demo"
QUICK = ["--num_train_epochs", "2", "--max_train_samples", "32", "--max_eval_samples", "16",
         "--per_device_train_batch_size", "16"]
METRICS = {"micro_f1": "f1", "micro_precision": "precision", "micro_recall": "recall", "accuracy": "accuracy"}


class HubRecorder:
    """The Hub's HTTP API as far as one upload needs it, recording what huggingface_hub sends."""

    def __init__(self):
        self.requests = []  # (method, path, authorization header), in arrival order
        self.created = []  # create-repo payloads
        self.commits = []  # {"repo", "summary", "added": {path: bytes}, "deleted": [path]}
        self.trees = {}  # "models/org/name" -> {path: bytes}: the repository after its commits
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                recorder._record(self)
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/[^/?]+(\?.*)?", self.path)
                if match is None:
                    return self._reply(404, {"error": f"the recorder does not serve GET {self.path}"})
                tree = recorder.trees.get(f"{match[1]}/{match[2]}", {})
                entries = [
                    {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for path, data in sorted(tree.items())
                ]
                self._reply(200, entries)

            def do_POST(self):
                recorder._record(self)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/repos/create":
                    payload = json.loads(body)
                    recorder.created.append(payload)
                    prefix = "" if payload.get("type", "model") == "model" else f"{payload['type']}s/"
                    namespace = payload["organization"] or "recorded-user"
                    return self._reply(200, {"url": f"{recorder.endpoint}/{prefix}{namespace}/{payload['name']}"})
                if self.path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit)/[^/?]+", self.path)
                if match is None:
                    return self._reply(404, {"error": f"the recorder does not serve POST {self.path}"})
                repo = f"{match[1]}/{match[2]}"
                if match[3] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in files
                    ]})
                commit = {"repo": repo, "added": {}, "deleted": []}
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        commit["summary"] = item["value"]["summary"]
                    elif item["key"] == "file":
                        commit["added"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        commit["deleted"].append(item["value"]["path"])
                    else:
                        return self._reply(400, {"error": f"unexpected commit operation {item['key']}"})
                recorder.commits.append(commit)
                tree = recorder.trees.setdefault(repo, {})
                for path in commit["deleted"]:
                    del tree[path]
                tree.update(commit["added"])
                oid = f"{len(recorder.commits):040x}"
                self._reply(200, {"commitUrl": f"{recorder.endpoint}/{repo}/commit/{oid}", "commitOid": oid,
                                  "pullRequestUrl": None})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass  # keep pytest's output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback only
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _record(self, handler):
        self.requests.append((handler.command, handler.path.split("?")[0], handler.headers.get("Authorization")))

    def commits_to(self, repo: str) -> list[dict]:
        return [commit for commit in self.commits if commit["repo"] == repo]

    def checkout(self, repo: str, folder: Path) -> Path:
        """Write the repository as it stands into `folder`, as a download of it would."""
        for path, data in self.trees[repo].items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        return folder


def environment(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def recorder():
    recorder = HubRecorder()
    yield recorder
    recorder.server.shutdown()


@pytest.fixture
def hub(recorder, monkeypatch):
    """Point this process's huggingface_hub at the recorder (HfApi reads these when it is created)."""
    monkeypatch.setattr(constants, "ENDPOINT", recorder.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return recorder


@pytest.fixture(scope="module")
def pushed_run(recorder, tmp_path_factory):
    """The quick demo run of train_accelerate.py with --push_to_hub, against the recorder."""
    output_dir = tmp_path_factory.mktemp("run") / "mmib-demo"
    command = [sys.executable, str(REPO / "train_accelerate.py"), "--output_dir", str(output_dir), "--method", "mmib",
               *QUICK, "--push_to_hub", "--hub_model_id", MODEL_REPO, "--hub_token", TOKEN, "--hub_private_repo"]
    env = environment(HF_HUB_OFFLINE="0", HF_ENDPOINT=recorder.endpoint, NO_PROXY="127.0.0.1",
                      HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_TOKEN", None)  # the token must come from --hub_token
    first_request = len(recorder.requests)
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    run_requests = recorder.requests[first_request:]
    return output_dir, json.loads((output_dir / "eval_results.json").read_text()), run_requests


def test_train_accelerate_pushes_the_model_in_one_commit(pushed_run, recorder):
    output_dir, _, run_requests = pushed_run
    repo = f"models/{MODEL_REPO}"
    # The whole run made exactly these requests, all with the token of --hub_token: training and
    # saving asked the Hub for nothing, and the push is one repository creation and one commit.
    assert [(method, path) for method, path, _ in run_requests] == [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/{repo}/preupload/main"),
        ("POST", f"/api/{repo}/commit/main"),
    ]
    assert {auth for _, _, auth in run_requests} == {f"Bearer {TOKEN}"}
    assert {"name": "mre-mmib-demo", "organization": "org", "type": "model", "visibility": "private"}.items() <= \
        recorder.created[0].items()

    (commit,) = recorder.commits_to(repo)
    assert commit["summary"] == "Upload mmib trained on demo with modeling_mre"
    assert commit["deleted"] == []
    # Exactly the folder's top-level files and the figures: no checkpoint, demo data or staging folder.
    top_level = sorted(path.name for path in output_dir.iterdir() if path.is_file() and not path.name.startswith("."))
    figures = sorted(f"figures/{path.name}" for path in (output_dir / "figures").iterdir())
    assert sorted(commit["added"]) == sorted(top_level + figures) == model_repo_files(output_dir)
    assert "demo_data" in {path.name for path in output_dir.iterdir() if path.is_dir()}
    assert {
        "README.md", "config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
        "tokenizer_config.json", "configuration_mmib.py", "configuration_mre.py", "modeling_mmib.py",
        "modeling_mre.py", "processing_mre.py", "pipeline_mre.py", "eval_results.json", "training_args.json",
        TRAINING_CURVE_FIGURE,
    } <= set(commit["added"])
    for path, data in commit["added"].items():
        assert data == (output_dir / path).read_bytes(), path
    # Every module the remote code imports is uploaded with it.
    for path, data in commit["added"].items():
        if path.endswith(".py"):
            for module in re.findall(r"^\s*from\s+\.(\w+)\s+import", data.decode(), flags=re.MULTILINE):
                assert f"{module}.py" in commit["added"], (path, module)
    config = json.loads(commit["added"]["config.json"])
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoProcessor"}
    assert "multimodal-relation-extraction" in config["custom_pipelines"]


def test_no_token_in_uploaded_files(pushed_run, recorder):
    (commit,) = recorder.commits_to(f"models/{MODEL_REPO}")
    assert not [path for path, data in commit["added"].items() if TOKEN.encode() in data]
    training_args = json.loads(commit["added"]["training_args.json"])
    assert "hub_token" not in training_args and training_args["learning_rate"] == 5e-5


def test_card_metrics_equal_eval_results(pushed_run, recorder, tmp_path):
    _, results, _ = pushed_run
    downloaded = recorder.checkout(f"models/{MODEL_REPO}", tmp_path / "repo")
    card = ModelCard.load(downloaded / "README.md")
    assert json.loads((downloaded / "eval_results.json").read_text()) == results

    data = card.data
    assert data.library_name == "transformers" and data.license == "apache-2.0"
    assert data.pipeline_tag is None  # no Hub task's pipeline reads an entity pair
    assert {"multimodal-relation-extraction", "mmib", "custom_code"} <= set(data.tags)
    assert data.datasets == ["modeling_mre-demo"]
    assert data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"]
    assert data.model_name == MODEL_REPO
    recorded = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    expected = {(split, kind): results[split][key] for split in ("validation", "test") for key, kind in METRICS.items()}
    assert recorded == expected  # exact: the card's numbers are eval_results.json's, not re-typed
    assert {r.task_type for r in data.eval_results} == {"relation-extraction"}

    for split in ("validation", "test"):
        for name, row in results[split]["per_relation"].items():
            line = (f"| `{name}` | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
                    f"{100 * row['f1']:.2f} | {row['support']} |")
            assert line in card.text, line
        assert f"| {split} | {results[split]['num_examples']} | {100 * results[split]['micro_f1']:.2f} |" in card.text
    assert f"(epoch {results['best_epoch']} of 2)" in card.text


def test_card_figures_are_uploaded_and_embedded(pushed_run, recorder, tmp_path):
    from PIL import Image

    _, results, _ = pushed_run
    downloaded = recorder.checkout(f"models/{MODEL_REPO}", tmp_path / "repo")
    text = ModelCard.load(downloaded / "README.md").text
    assert f"]({TRAINING_CURVE_FIGURE})" in text
    with Image.open(downloaded / TRAINING_CURVE_FIGURE) as figure:
        assert figure.format == "PNG" and figure.width > 500
    # train_accelerate.py records the confusion matrix, so the card draws it.
    assert "confusion_matrix" in results["test"]
    assert f"]({CONFUSION_MATRIX_FIGURE})" in text
    with Image.open(downloaded / CONFUSION_MATRIX_FIGURE) as figure:
        assert figure.format == "PNG"


def test_confusion_matrix_figure_comes_from_eval_results(pushed_run, tmp_path):
    from PIL import Image

    output_dir, results, _ = pushed_run
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "training_args.json"):
        shutil.copy(output_dir / name, folder / name)
    num_labels = len(json.loads((output_dir / "config.json").read_text())["id2label"])
    matrix = np.diag(np.arange(1, num_labels + 1)).tolist()
    (folder / "eval_results.json").write_text(json.dumps({**results, "test": {**results["test"], "confusion_matrix": matrix}}))
    text = write_model_card(folder, "org/name").text
    assert f"![Confusion matrix on the test split: rows are gold relations, columns predictions]({CONFUSION_MATRIX_FIGURE})" in text
    with Image.open(folder / CONFUSION_MATRIX_FIGURE) as figure:
        assert figure.format == "PNG"

    wrong = {**results, "test": {**results["test"], "confusion_matrix": [[1, 2], [3, 4]]}}
    (folder / "eval_results.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="confusion matrix has shape"):
        write_model_card(folder)


# The card's usage snippet, run where modeling_mre cannot be imported, against the downloaded repository.
SNIPPET_RUNNER = textwrap.dedent(
    """
    import sys
    sys.modules["modeling_mre"] = None
    code = open(sys.argv[1]).read()
    exec(compile(code, "model card snippet", "exec"), {})
    """
)


def test_pushed_repository_loads_as_remote_code_and_the_snippet_runs(pushed_run, recorder, tmp_path):
    from PIL import Image

    output_dir, _, _ = pushed_run
    downloaded = recorder.checkout(f"models/{MODEL_REPO}", tmp_path / "repo")
    usage = r"## How to use\n\n```bash\npip install [^\n]*\n```\n\n```python\n(.*?)```"
    snippet = re.search(usage, (downloaded / "README.md").read_text(), re.DOTALL)[1]
    assert snippet.count(f'"{MODEL_REPO}"') == 3
    (tmp_path / "snippet.py").write_text(snippet.replace(f'"{MODEL_REPO}"', repr(str(downloaded))))
    demo_image = next((output_dir / "demo_data" / "img_org" / "val").iterdir())
    Image.open(demo_image).convert("RGB").save(tmp_path / "photo.jpg")

    completed = subprocess.run([sys.executable, "-c", SNIPPET_RUNNER, str(tmp_path / "snippet.py")], cwd=tmp_path,
                               env=environment(), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-5000:]
    pipeline_output, labels = completed.stdout.strip().splitlines()[-2:]
    label_names = set(json.loads((downloaded / "config.json").read_text())["id2label"].values())
    relations = re.findall(r"'relation': '([^']*)'", pipeline_output)
    assert len(relations) == 3 and set(relations) <= label_names
    assert re.fullmatch(r"\['[^']*'\]", labels) and labels[2:-2] in label_names


def test_an_entity_recognizer_trained_with_lora_is_pushed_and_runs_from_the_downloaded_repository(recorder, tmp_path):
    # MMIB's NER half through the same path as a relation extractor: LoRA, the push, the card's
    # model-index, then the downloaded repository answering the pipeline where modeling_mre is absent.
    repo_id = "org/mre-mmib-demo-mner"
    output_dir = tmp_path / "mmib-demo-mner"
    command = [sys.executable, str(REPO / "train_accelerate.py"), "--output_dir", str(output_dir), "--method", "mmib",
               "--dataset", "demo-mner", "--lora", *QUICK, "--push_to_hub", "--hub_model_id", repo_id,
               "--hub_token", TOKEN]
    env = environment(HF_HUB_OFFLINE="0", HF_ENDPOINT=recorder.endpoint, NO_PROXY="127.0.0.1",
                      HF_HUB_DISABLE_TELEMETRY="1")
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["task"] == "token-classification"

    (commit,) = recorder.commits_to(f"models/{repo_id}")
    assert sorted(commit["added"]) == model_repo_files(output_dir)
    assert {"modeling_mmib_ner.py", "modeling_ner.py", "processing_mner.py", "pipeline_mner.py",
            "model.safetensors"} <= set(commit["added"])
    assert not any(path.startswith("lora_") or path.startswith("adapter_") for path in commit["added"])  # merged
    config = json.loads(commit["added"]["config.json"])
    assert config["model_type"] == "mre-mmib-ner"
    assert {"AutoModel", "AutoModelForTokenClassification", "AutoProcessor"} <= set(config["auto_map"])
    assert "multimodal-token-classification" in config["custom_pipelines"]

    downloaded = recorder.checkout(f"models/{repo_id}", tmp_path / "repo")
    card = ModelCard.load(downloaded / "README.md")
    assert card.data.pipeline_tag is None  # the Hub's token-classification snippet could not run it
    recorded = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert recorded == {(split, kind): results[split][key] for split in ("validation", "test") for key, kind in METRICS.items()}
    assert {r.task_type for r in card.data.eval_results} == {"token-classification"}

    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling_mre"] = None
        from transformers import pipeline
        recognise = pipeline(model={str(downloaded)!r}, trust_remote_code=True)
        print(json.dumps(recognise(text="So this happened at Kasimir Penhale lol .", image=None)))
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment(), capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    entities = json.loads(completed.stdout.strip().splitlines()[-1])
    assert all(set(entity) == {"entity_group", "score", "word", "start", "end"} for entity in entities)


def test_the_cards_install_line_is_what_the_remote_code_needs_as_pyproject_pins_it(pushed_run, recorder, tmp_path):
    import shlex
    import tomllib

    from modeling_mre.hub.cards import REMOTE_CODE_REQUIREMENTS

    downloaded = recorder.checkout(f"models/{MODEL_REPO}", tmp_path / "repo")
    install = re.search(r"## How to use\n\n```bash\npip install (.*)\n```", (downloaded / "README.md").read_text())[1]
    assert tuple(shlex.split(install)) == REMOTE_CODE_REQUIREMENTS
    pinned = {re.split(r"[<>=]", requirement)[0]: requirement
              for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for requirement in REMOTE_CODE_REQUIREMENTS:
        name = re.split(r"[<>=]", requirement)[0]
        assert name in pinned and (requirement == name or requirement == pinned[name]), requirement
    # What the remote code imports beyond the standard library is exactly these.
    imported = set()
    for path in downloaded.glob("*.py"):
        imported |= set(re.findall(r"^(?:from|import) (\w+)", path.read_text(), flags=re.MULTILINE))
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party == {"torch", "transformers", "PIL", "numpy", "huggingface_hub"}, third_party


def test_model_repo_files_leaves_run_artifacts_out(tmp_path):
    for path in ("config.json", "model.safetensors", "figures/training_curve.png", "epoch_1/model.safetensors",
                 "step_20/optimizer.bin", "demo_data/ours_train.txt", "lora_base/config.json",
                 "lora_adapter/adapter_config.json", "best_model/model.safetensors", ".export-abc/config.json",
                 "figures/.hidden.png", ".DS_Store", "runs/events.out"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert model_repo_files(tmp_path) == [
        "config.json", "figures/training_curve.png", "model.safetensors", "runs/events.out",
    ]


def test_push_model_folder_refuses_a_folder_without_results(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"missing eval_results.json, \*.safetensors"):
        push_model_folder(tmp_path, "org/name")


def image_bytes(value) -> bytes | None:
    if value is None:
        return None
    return value["bytes"] if value["bytes"] is not None else Path(value["path"]).read_bytes()


def assert_same_dataset(loaded: datasets.DatasetDict, local: datasets.DatasetDict) -> None:
    """Same splits, features (ClassLabel names included) and rows; pictures compared by their bytes."""
    assert list(loaded) == list(local)
    for split in local:
        assert loaded[split].features == local[split].features
        assert loaded[split].features["relation"].names == local[split].features["relation"].names
        undecoded = {"image": datasets.Image(decode=False), "crops": datasets.List(datasets.Image(decode=False))}
        ours, theirs = (d[split].cast(datasets.Features({**d[split].features, **undecoded})) for d in (loaded, local))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert {k: v for k, v in a.items() if k not in undecoded} == {k: v for k, v in b.items() if k not in undecoded}
            assert image_bytes(a["image"]) == image_bytes(b["image"])
            assert [image_bytes(c) for c in a["crops"]] == [image_bytes(c) for c in b["crops"]]


def test_demo_dataset_round_trip_through_the_hub(hub, tmp_path, monkeypatch):
    local = load_mnre(write_demo_dataset(tmp_path / "demo", seed=0))
    written = export_dataset(local, tmp_path / "export", name="demo", repo_id="org/mre-demo", max_shard_size="300KB")
    assert "data/train-00000-of-00014.parquet" in written and "data/test-00003-of-00004.parquet" in written

    monkeypatch.setenv("HF_TOKEN", TOKEN)  # no token= argument: huggingface_hub reads it from the environment
    push_dataset_folder(tmp_path / "export", "org/mre-demo")
    (commit,) = hub.commits_to("datasets/org/mre-demo")
    assert commit["summary"] == "Upload dataset with modeling_mre"
    assert sorted(commit["added"]) == written and commit["deleted"] == []
    assert {"name": "mre-demo", "organization": "org", "type": "dataset", "visibility": "private"}.items() <= \
        hub.created[-1].items()
    assert all(auth == f"Bearer {TOKEN}" for _, path, auth in hub.requests if "org/mre-demo" in path)

    # load_dataset("org/mre-demo") reads the repository as it stands; here, a download of it.
    downloaded = hub.checkout("datasets/org/mre-demo", tmp_path / "download")
    assert_same_dataset(datasets.load_dataset(str(downloaded)), local)
    card = (downloaded / "README.md").read_text()
    assert 'load_dataset("org/mre-demo")' in card and "| train | 600 | 600 | 0 |" in card

    # A second export with fewer shards: the push deletes the stale ones, or load_dataset would read them too.
    export_dataset(local, tmp_path / "export-2", name="demo", repo_id="org/mre-demo")
    push_dataset_folder(tmp_path / "export-2", "org/mre-demo", token=TOKEN, commit_message="Re-shard")
    second = hub.commits_to("datasets/org/mre-demo")[-1]
    assert second["summary"] == "Re-shard"
    assert sorted(second["deleted"]) == sorted(path for path in written if path.startswith("data/"))
    downloaded = hub.checkout("datasets/org/mre-demo", tmp_path / "download-2")
    assert sorted(p.name for p in (downloaded / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet",
    ]
    assert_same_dataset(datasets.load_dataset(str(downloaded)), local)


def test_real_mnre_validation_round_trip(mnre_dir, tmp_path):
    local = datasets.DatasetDict({"validation": load_mnre(mnre_dir)["validation"]})
    export_dataset(local, tmp_path / "mnre", name="mnre", repo_id="org/mnre")
    assert_same_dataset(datasets.load_dataset(str(tmp_path / "mnre")), local)

    card = (tmp_path / "mnre" / "README.md").read_text()
    counts = np.bincount(list(local["validation"]["relation"]), minlength=23)
    names = local["validation"].features["relation"].names
    for label_id, name in enumerate(names):
        assert f"| `{name}` | {label_id} | {counts[label_id]} |" in card
    assert f"| validation | {len(local['validation'])} | 0 | 0 |" in card  # this copy has no pictures, and says so
    assert "research-only" in card and "Zheng" in card


def test_more_dataset_round_trip(tmp_path):
    local = load_more(write_more_demo_dataset(tmp_path / "more", num_train=16, num_validation=8, num_test=8))
    export_dataset(local, tmp_path / "export", name="more", repo_id="org/more")
    loaded = datasets.load_dataset(str(tmp_path / "export"))
    assert loaded["train"].features["tail_box"] == datasets.List(datasets.Value("float32"), length=4)
    assert_same_dataset(loaded, local)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "`tail_box` | list of float32 | tail object box in the image" in card and "He, Liang" in card


def test_export_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00002.parquet").write_text("stale")
    with pytest.raises(FileExistsError, match="not empty"):
        export_dataset(datasets.DatasetDict(), tmp_path)
