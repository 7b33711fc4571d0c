"""
Publishing on the Hub, offline: model cards from eval_results.json, the model push from
train_accelerate.py, and the dataset push, each checked by loading back what was uploaded.

Nothing reaches the network. `HubRecorder` answers huggingface_hub's HTTP calls on 127.0.0.1
(create repo, repo info, validate YAML, preupload, the LFS batch and upload, commit, list and
download files) and keeps every commit. It is reached through `HF_ENDPOINT`, so the very same client
code runs as against the Hub: `train_accelerate.py --push_to_hub` in a subprocess, and in this
process `DatasetDict.push_to_hub` and `load_dataset("org/name")` as a user types them. It keeps in
LFS what the Hub's default .gitattributes does among our files (parquet shards, safetensors weights);
Xet, the Hub's newer transfer, is the one part of an upload not exercised here.
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
from urllib.parse import unquote

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard, HfApi, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError

from modeling_mre.data.demo import write_demo_dataset, write_more_demo_dataset
from modeling_mre.data.mnre import load_mnre
from modeling_mre.data.more import load_more
from modeling_mre.hub import model_repo_files, push_dataset, push_model_folder, pushes, write_model_card
from modeling_mre.hub.figures import CONFUSION_MATRIX_FIGURE, TRAINING_CURVE_FIGURE


REPO = Path(__file__).parents[1]
TOKEN = "hf_recorder_test_token"
MODEL_REPO = "org/mre-mmib-demo"
QUICK = [
    "--num_train_epochs",
    "2",
    "--max_train_samples",
    "32",
    "--max_eval_samples",
    "16",
    "--per_device_train_batch_size",
    "16",
]
# What the Hub keeps in LFS by its default .gitattributes, among what we upload.
LFS_SUFFIXES = (".parquet", ".safetensors")
METRICS = {"micro_f1": "f1", "micro_precision": "precision", "micro_recall": "recall", "accuracy": "accuracy"}


class HubRecorder:
    """The Hub's HTTP API as far as our uploads need it, recording what huggingface_hub sends."""

    def __init__(self):
        self.requests = []  # (method, path, authorization header), in arrival order
        self.created = []  # create-repo payloads
        # {"repo", "summary", "parent", "oid", "added": {path: bytes}, "lfs": [path], "deleted": [path]}
        self.commits = []
        self.heads = {}  # "models/org/name" -> the oid of its last commit
        self.snapshots = {}  # commit oid -> the repository's files at that commit
        self.lfs = {}  # sha256 -> bytes uploaded through the LFS batch API
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.do_GET(body=False)

            def do_GET(self, body=True):
                recorder._record(self)
                path, _, query = self.path.partition("?")
                if match := re.fullmatch(r"/(?:(datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                    return self._file(f"{match[1] or 'models'}/{match[2]}", match[3], unquote(match[4]), body)
                if match := re.fullmatch(r"/api/(models|datasets)/([^/]+(?:/[^/]+)?)(?:/revision/([^/]+))?", path):
                    repo = f"{match[1]}/{match[2]}"
                    if repo not in recorder.heads:
                        return self._reply(404, {"error": "Repository not found"}, error_code="RepoNotFound")
                    oid = recorder._resolve(repo, match[3])
                    if oid is None:
                        return self._reply(404, {"error": "Revision not found"}, error_code="RevisionNotFound")
                    return self._reply(
                        200,
                        {
                            "id": match[2],
                            "sha": oid,
                            "private": True,
                            "siblings": [{"rfilename": name} for name in sorted(recorder.snapshots[oid])],
                        },
                    )
                if match := re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/tree/([^/]+)/?(.*)", path):
                    oid = recorder._resolve(f"{match[1]}/{match[2]}", match[3])
                    if oid is None:
                        return self._reply(404, {"error": "Revision not found"}, error_code="RevisionNotFound")
                    entries = recorder._tree(oid, unquote(match[4]).strip("/"), "recursive=true" in query.lower())
                    if entries is None:
                        return self._reply(404, {"error": "Entry not found"}, error_code="EntryNotFound")
                    return self._reply(200, entries)
                self._reply(404, {"error": f"the recorder does not serve GET {self.path}"})

            def do_PUT(self):
                recorder._record(self)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                match = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", self.path)
                if match is None or hashlib.sha256(data).hexdigest() != match[1]:
                    return self._reply(400, {"error": f"bad LFS upload to {self.path}"})
                recorder.lfs[match[1]] = data
                self._reply(200, {})

            def do_POST(self):
                recorder._record(self)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/repos/create":
                    payload = json.loads(body)
                    recorder.created.append(payload)
                    prefix = "" if payload.get("type", "model") == "model" else f"{payload['type']}s/"
                    namespace = payload["organization"] or "recorded-user"
                    repo = f"{payload.get('type', 'model')}s/{namespace}/{payload['name']}"
                    if repo not in recorder.heads:
                        recorder._snapshot(repo, {})
                    return self._reply(200, {"url": f"{recorder.endpoint}/{prefix}{namespace}/{payload['name']}"})
                if self.path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                if re.fullmatch(r"/(?:datasets/)?[^/]+/[^/]+\.git/info/lfs/objects/batch", self.path):
                    return self._reply(
                        200,
                        {
                            "transfer": "basic",
                            "objects": [
                                {
                                    "oid": o["oid"],
                                    "size": o["size"],
                                    "actions": {"upload": {"href": f"{recorder.endpoint}/lfs-upload/{o['oid']}"}},
                                }
                                for o in json.loads(body)["objects"]
                            ],
                        },
                    )
                match = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(preupload|commit)/[^/?]+", self.path)
                if match is None:
                    return self._reply(404, {"error": f"the recorder does not serve POST {self.path}"})
                repo = f"{match[1]}/{match[2]}"
                if match[3] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                                    "shouldIgnore": False,
                                    "oid": None,
                                }
                                for f in files
                            ]
                        },
                    )
                commit = {"repo": repo, "parent": None, "added": {}, "lfs": [], "deleted": []}
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        commit["summary"] = item["value"]["summary"]
                        commit["parent"] = item["value"].get("parentCommit")
                    elif item["key"] == "file":
                        commit["added"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "lfsFile":
                        commit["added"][item["value"]["path"]] = recorder.lfs[item["value"]["oid"]]
                        commit["lfs"].append(item["value"]["path"])
                    elif item["key"] == "deletedFile":
                        commit["deleted"].append(item["value"]["path"])
                    else:
                        return self._reply(400, {"error": f"unexpected commit operation {item['key']}"})
                if commit["parent"] not in (None, recorder.heads.get(repo)):
                    return self._reply(412, {"error": "parent commit is not the head"})
                tree = dict(recorder.snapshots.get(recorder.heads.get(repo), {}))
                for path in commit["deleted"]:
                    del tree[path]
                tree.update(commit["added"])
                commit["oid"] = recorder._snapshot(repo, tree)
                recorder.commits.append(commit)
                self._reply(
                    200,
                    {
                        "commitUrl": f"{recorder.endpoint}/{repo}/commit/{commit['oid']}",
                        "commitOid": commit["oid"],
                        "pullRequestUrl": None,
                    },
                )

            def _file(self, repo, revision, path, body):
                oid = recorder._resolve(repo, revision)
                data = recorder.snapshots.get(oid, {}).get(path)
                if data is None:
                    return self._reply(404, {"error": "Entry not found"}, error_code="EntryNotFound")
                start, end = 0, len(data) - 1
                if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                    start, end = int(match[1]), min(int(match[2] or end), end)
                self.send_response(206 if "Range" in self.headers else 200)
                self.send_header("Content-Length", str(end + 1 - start))
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", oid)
                self.end_headers()
                if body:
                    self.wfile.write(data[start : end + 1])

            def _reply(self, status, payload, error_code=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if error_code is not None:
                    self.send_header("X-Error-Code", error_code)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass  # keep pytest's output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback only
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def environment(self) -> dict:
        """A subprocess's environment that sends its huggingface_hub here (over LFS: no Xet here)."""
        return environment(
            HF_HUB_OFFLINE="0",
            HF_ENDPOINT=self.endpoint,
            NO_PROXY="127.0.0.1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
        )

    def _record(self, handler):
        self.requests.append((handler.command, handler.path.split("?")[0], handler.headers.get("Authorization")))

    def _snapshot(self, repo: str, tree: dict[str, bytes]) -> str:
        # Random oids: huggingface_hub's cache trusts a commit hash it has seen, across test runs too.
        oid = os.urandom(20).hex()
        self.snapshots[oid], self.heads[repo] = tree, oid
        return oid

    def _resolve(self, repo: str, revision: str | None) -> str | None:
        """The commit a revision names: a branch name is the head, an oid itself."""
        if revision in self.snapshots:
            return revision
        return self.heads.get(repo) if revision in (None, "main") else None

    def _tree(self, oid: str, folder: str, recursive: bool) -> list[dict] | None:
        """`list_repo_tree`'s entries under `folder` at `oid`, or None when there is no such folder."""
        prefix = f"{folder}/" if folder else ""
        files, folders = [], set()
        for path, data in sorted(self.snapshots[oid].items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            folders.update(
                prefix + "/".join(parts[:depth]) for depth in range(1, len(parts) if recursive else min(2, len(parts)))
            )
            if recursive or len(parts) == 1:
                files.append({"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()})
        if folder and not files and not folders:
            return None
        return [{"type": "directory", "path": path, "oid": "0" * 40} for path in sorted(folders)] + files

    def tree(self, repo: str) -> dict[str, bytes]:
        """The repository's files after its last commit."""
        return self.snapshots[self.heads[repo]]

    def commits_to(self, repo: str) -> list[dict]:
        return [commit for commit in self.commits if commit["repo"] == repo]

    def checkout(self, repo: str, folder: Path) -> Path:
        """Write the repository as it stands into `folder`, as a download of it would."""
        for path, data in self.tree(repo).items():
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
def hub(recorder, monkeypatch, tmp_path):
    """
    Point this process's huggingface_hub and datasets at the recorder: what `HF_ENDPOINT` and
    `HF_HUB_OFFLINE=0` set at import, set again here (HfApi reads them when it is created).
    """
    monkeypatch.setattr(constants, "ENDPOINT", recorder.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", recorder.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the recorder speaks LFS, not Xet
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", recorder.endpoint)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return recorder


@pytest.fixture(scope="module")
def pushed_run(recorder, tmp_path_factory):
    """The quick demo run of train_accelerate.py with --push_to_hub, against the recorder."""
    output_dir = tmp_path_factory.mktemp("run") / "mmib-demo"
    command = [
        sys.executable,
        str(REPO / "train_accelerate.py"),
        "--output_dir",
        str(output_dir),
        "--method",
        "mmib",
        *QUICK,
        "--push_to_hub",
        "--hub_model_id",
        MODEL_REPO,
        "--hub_token",
        TOKEN,
        "--hub_private_repo",
    ]
    env = recorder.environment()
    env.pop("HF_TOKEN", None)  # the token must come from --hub_token
    first_request = len(recorder.requests)
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    run_requests = recorder.requests[first_request:]
    return output_dir, json.loads((output_dir / "eval_results.json").read_text()), run_requests


def test_train_accelerate_pushes_the_model_in_one_commit(pushed_run, recorder):
    output_dir, _, run_requests = pushed_run
    repo = f"models/{MODEL_REPO}"
    # The whole run made exactly these requests: training and saving asked the Hub for nothing, and
    # the push is one repository creation, the weights through LFS, and one commit. The Hub's calls
    # carry the token of --hub_token; the upload to the storage URL that the LFS batch returned, none.
    weights_oid = hashlib.sha256((output_dir / "model.safetensors").read_bytes()).hexdigest()
    assert [(method, path, auth) for method, path, auth in run_requests] == [
        ("POST", "/api/repos/create", f"Bearer {TOKEN}"),
        ("POST", "/api/validate-yaml", f"Bearer {TOKEN}"),
        ("POST", f"/api/{repo}/preupload/main", f"Bearer {TOKEN}"),
        ("POST", f"/{MODEL_REPO}.git/info/lfs/objects/batch", f"Bearer {TOKEN}"),
        ("PUT", f"/lfs-upload/{weights_oid}", None),
        ("POST", f"/api/{repo}/commit/main", f"Bearer {TOKEN}"),
    ]
    assert {
        "name": "mre-mmib-demo",
        "organization": "org",
        "type": "model",
        "visibility": "private",
    }.items() <= recorder.created[0].items()

    (commit,) = recorder.commits_to(repo)
    assert commit["summary"] == "Upload mmib trained on demo with modeling_mre"
    assert commit["lfs"] == ["model.safetensors"]
    assert commit["deleted"] == []
    # Exactly the folder's top-level files and the figures: no checkpoint, demo data or staging folder.
    top_level = sorted(path.name for path in output_dir.iterdir() if path.is_file() and not path.name.startswith("."))
    figures = sorted(f"figures/{path.name}" for path in (output_dir / "figures").iterdir())
    assert sorted(commit["added"]) == sorted(top_level + figures) == model_repo_files(output_dir)
    assert "demo_data" in {path.name for path in output_dir.iterdir() if path.is_dir()}
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "configuration_mmib.py",
        "configuration_mre.py",
        "modeling_mmib.py",
        "modeling_mre.py",
        "processing_mre.py",
        "pipeline_mre.py",
        "eval_results.json",
        "training_args.json",
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
    expected = {
        (split, kind): results[split][key] for split in ("validation", "test") for key, kind in METRICS.items()
    }
    assert recorded == expected  # exact: the card's numbers are eval_results.json's, not re-typed
    assert {r.task_type for r in data.eval_results} == {"relation-extraction"}

    for split in ("validation", "test"):
        for name, row in results[split]["per_relation"].items():
            line = (
                f"| `{name}` | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
                f"{100 * row['f1']:.2f} | {row['support']} |"
            )
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
    (folder / "eval_results.json").write_text(
        json.dumps({**results, "test": {**results["test"], "confusion_matrix": matrix}})
    )
    text = write_model_card(folder, "org/name").text
    assert (
        f"![Confusion matrix on the test split: rows are gold relations, columns predictions]({CONFUSION_MATRIX_FIGURE})"
        in text
    )
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

    completed = subprocess.run(
        [sys.executable, "-c", SNIPPET_RUNNER, str(tmp_path / "snippet.py")],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
    )
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
    command = [
        sys.executable,
        str(REPO / "train_accelerate.py"),
        "--output_dir",
        str(output_dir),
        "--method",
        "mmib",
        "--dataset",
        "demo-mner",
        "--lora",
        *QUICK,
        "--push_to_hub",
        "--hub_model_id",
        repo_id,
        "--hub_token",
        TOKEN,
    ]
    env = recorder.environment()
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["task"] == "token-classification"

    (commit,) = recorder.commits_to(f"models/{repo_id}")
    assert sorted(commit["added"]) == model_repo_files(output_dir)
    assert {
        "modeling_mmib_ner.py",
        "modeling_ner.py",
        "processing_mner.py",
        "pipeline_mner.py",
        "model.safetensors",
    } <= set(commit["added"])
    assert not any(path.startswith("lora_") or path.startswith("adapter_") for path in commit["added"])  # merged
    config = json.loads(commit["added"]["config.json"])
    assert config["model_type"] == "mre-mmib-ner"
    assert {"AutoModel", "AutoModelForTokenClassification", "AutoProcessor"} <= set(config["auto_map"])
    assert "multimodal-token-classification" in config["custom_pipelines"]

    downloaded = recorder.checkout(f"models/{repo_id}", tmp_path / "repo")
    card = ModelCard.load(downloaded / "README.md")
    assert card.data.pipeline_tag is None  # the Hub's token-classification snippet could not run it
    recorded = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert recorded == {
        (split, kind): results[split][key] for split in ("validation", "test") for key, kind in METRICS.items()
    }
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
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment(), capture_output=True, text=True
    )
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
    pinned = {
        re.split(r"[<>=]", requirement)[0]: requirement
        for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
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
    for path in (
        "config.json",
        "model.safetensors",
        "figures/training_curve.png",
        "epoch_1/model.safetensors",
        "step_20/optimizer.bin",
        "demo_data/ours_train.txt",
        "lora_base/config.json",
        "lora_adapter/adapter_config.json",
        "best_model/model.safetensors",
        ".export-abc/config.json",
        "figures/.hidden.png",
        ".DS_Store",
        "runs/events.out",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert model_repo_files(tmp_path) == [
        "config.json",
        "figures/training_curve.png",
        "model.safetensors",
        "runs/events.out",
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
            assert {k: v for k, v in a.items() if k not in undecoded} == {
                k: v for k, v in b.items() if k not in undecoded
            }
            assert image_bytes(a["image"]) == image_bytes(b["image"])
            assert [image_bytes(c) for c in a["crops"]] == [image_bytes(c) for c in b["crops"]]


def test_demo_dataset_round_trip_through_the_hub(hub, tmp_path, monkeypatch):
    local = load_mnre(write_demo_dataset(tmp_path / "demo", seed=0))
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # no token= argument: huggingface_hub reads it from the environment
    card_commit = push_dataset(local, "org/mre-demo", name="demo", max_shard_size="300KB")

    data, card = hub.commits_to("datasets/org/mre-demo")
    shards = sorted(path for path in data["added"] if path.startswith("data/"))
    assert "data/train-00000-of-00014.parquet" in shards and "data/test-00003-of-00004.parquet" in shards
    assert data["summary"] == "Upload dataset with modeling_mre" and data["deleted"] == []
    assert sorted(data["added"]) == ["README.md", *shards] and sorted(data["lfs"]) == shards
    # Our card goes on top of exactly the data commit, and replaces only the card.
    assert (card["summary"], card["parent"], list(card["added"])) == (
        "Dataset card from modeling_mre",
        data["oid"],
        ["README.md"],
    )
    assert card_commit.oid == card["oid"] == hub.heads["datasets/org/mre-demo"]
    assert {
        "name": "mre-demo",
        "organization": "org",
        "type": "dataset",
        "visibility": "private",
    }.items() <= hub.created[-1].items()
    assert all(auth == f"Bearer {TOKEN}" for _, path, auth in hub.requests if "org/mre-demo" in path)

    # What the card tells a user to type, against the repository.
    assert_same_dataset(datasets.load_dataset("org/mre-demo", cache_dir=str(tmp_path / "cache")), local)
    text = hub.tree("datasets/org/mre-demo")["README.md"].decode()
    assert 'load_dataset("org/mre-demo")' in text and "| train | 600 | 600 | 0 |" in text
    metadata = DatasetCard(text).data
    assert metadata.license == "apache-2.0" and "relation-extraction" in metadata.tags
    assert [split["name"] for split in metadata.dataset_info["splits"]] == ["train", "validation", "test"]
    assert metadata.configs == DatasetCard(data["added"]["README.md"].decode()).data.configs

    # A second push with fewer shards deletes the stale ones, or load_dataset would read them too.
    push_dataset(local, "org/mre-demo", name="demo", token=TOKEN, commit_message="Re-shard")
    second = hub.commits_to("datasets/org/mre-demo")[2]
    assert second["summary"] == "Re-shard" and sorted(second["deleted"]) == shards
    assert sorted(path for path in hub.tree("datasets/org/mre-demo") if path.startswith("data/")) == [
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
    ]
    assert_same_dataset(datasets.load_dataset("org/mre-demo", cache_dir=str(tmp_path / "cache-2")), local)


def test_a_commit_between_the_data_and_the_card_fails_the_card(hub, tmp_path, monkeypatch):
    # Another writer commits while push_dataset reads back the card of its data commit: our card,
    # computed from our data, must not land on top of theirs.
    local = load_more(write_more_demo_dataset(tmp_path / "more", num_train=4, num_validation=2, num_test=2))

    class LoadedDuringAConcurrentCommit(DatasetCard):
        @classmethod
        def load(cls, *args, **kwargs):
            HfApi(token=TOKEN).upload_file(
                path_or_fileobj=b"x", path_in_repo="notes.txt", repo_id="org/more-race", repo_type="dataset"
            )
            return super().load(*args, **kwargs)

    monkeypatch.setattr(pushes, "DatasetCard", LoadedDuringAConcurrentCommit)
    with pytest.raises(HfHubHTTPError, match="412"):
        push_dataset(local, "org/more-race", name="more", token=TOKEN)
    data, concurrent = hub.commits_to("datasets/org/more-race")
    assert concurrent["added"] == {"notes.txt": b"x"}
    assert hub.tree("datasets/org/more-race")["README.md"] == data["added"]["README.md"]  # datasets' card stays


def test_real_mnre_validation_round_trip(mnre_dir, hub, tmp_path):
    local = datasets.DatasetDict({"validation": load_mnre(mnre_dir)["validation"]})
    push_dataset(local, "org/mnre", name="mnre", token=TOKEN)
    assert_same_dataset(datasets.load_dataset("org/mnre", cache_dir=str(tmp_path / "cache")), local)

    card = hub.tree("datasets/org/mnre")["README.md"].decode()
    counts = np.bincount(list(local["validation"]["relation"]), minlength=23)
    names = local["validation"].features["relation"].names
    for label_id, name in enumerate(names):
        assert f"| `{name}` | {label_id} | {counts[label_id]} |" in card
    assert f"| validation | {len(local['validation'])} | 0 | 0 |" in card  # this copy has no pictures, and says so
    assert "research-only" in card and "Zheng" in card


def test_more_dataset_round_trip(hub, tmp_path):
    local = load_more(write_more_demo_dataset(tmp_path / "more", num_train=16, num_validation=8, num_test=8))
    push_dataset(local, "more", name="more", token=TOKEN)  # a bare name: created under the token's user
    loaded = datasets.load_dataset("recorded-user/more", cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].features["tail_box"] == datasets.List(datasets.Value("float32"), length=4)
    assert_same_dataset(loaded, local)
    card = hub.tree("datasets/recorded-user/more")["README.md"].decode()
    assert "`tail_box` | list of float32 | tail object box in the image" in card and "He, Liang" in card
    assert 'load_dataset("recorded-user/more")' in card


def test_push_dataset_refuses_bad_arguments_before_any_request(hub, tmp_path):
    local = load_mnre(write_demo_dataset(tmp_path / "demo", seed=0))
    before = len(hub.requests)
    with pytest.raises(ValueError, match="no card text for dataset 'mnre-v3'"):
        push_dataset(local, "org/refused", name="mnre-v3", token=TOKEN)
    with pytest.raises(ValueError, match="has no split"):
        push_dataset(datasets.DatasetDict(), "org/refused", name="mnre", token=TOKEN)
    mixed = datasets.DatasetDict({"train": local["train"], "test": local["test"].remove_columns("crops")})
    with pytest.raises(ValueError, match="split 'test' has other features"):
        push_dataset(mixed, "org/refused", name="demo", token=TOKEN)
    assert hub.requests[before:] == []
