"""
Uploads to the Hub through huggingface_hub's `HfApi`, which reads the token from `token=`, else
`HF_TOKEN`, else the saved login, as transformers does:

    from modeling_mre.hub import push_dataset, push_model_folder, write_model_card

    write_model_card("outputs/mmib-mnre")                     # README.md + figures/ from eval_results.json
    push_model_folder("outputs/mmib-mnre", "org/mre-mmib-mnre")
    push_dataset(load_mnre("MNRE/"), "org/mnre", name="mnre")  # private unless private=False
"""

import os
from pathlib import Path

import datasets
from huggingface_hub import CommitInfo, CommitOperationAdd, DatasetCard, DatasetCardData, HfApi
from huggingface_hub.utils import filter_repo_objects

from .cards import read_json, write_model_card
from .dataset_card import dataset_card


# Run artifacts that a Hub repository has no use for: Accelerate training states, the best-epoch
# scratch copy, the synthetic demo data (regenerated from its seed), and the LoRA adapter with its
# starting model (its adapter_config.json points at a local folder; the merged model at the top
# level is what loads). Entries whose name starts with "." (staging folders) are never uploaded.
MODEL_FOLDER_EXCLUDES = ("epoch_*", "step_*", "best_model", "demo_data", "lora_base", "lora_adapter")
# `upload_folder`'s patterns (fnmatch on repository paths, where `*` also matches `/`): hidden entries
# at any depth, and those folders at the top level.
MODEL_REPO_IGNORE_PATTERNS = [".*", "*/.*", *(f"{name}/*" for name in MODEL_FOLDER_EXCLUDES)]


def model_repo_files(folder: str | os.PathLike) -> list[str]:
    """The repository paths `push_model_folder` uploads from `folder`, sorted: `upload_folder`'s own filter."""
    folder = Path(folder)
    paths = [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()]
    return sorted(filter_repo_objects(paths, ignore_patterns=MODEL_REPO_IGNORE_PATTERNS))


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> CommitInfo:
    """
    Upload a trained model folder to the Hub in one commit: safetensors weights, config (with
    `auto_map` and `custom_pipelines`), processor files, the remote-code `.py` files,
    `eval_results.json`, `training_args.json`, and the model card with its figures. Checkpoints and
    other run artifacts stay local (`MODEL_FOLDER_EXCLUDES`); `model_repo_files(folder)` lists what goes.

    The card is rendered again first, so that its usage snippet names the repository (`repo_id`
    without a namespace is created under the token's user); edit the templates in `hub_cards/`,
    not README.md.

    Args:
        folder: A folder written by `train_accelerate.py`.
        repo_id: `namespace/name`, or `name` for the token's user. Created if it does not exist.
        token: Hub token; defaults to `HF_TOKEN` or the saved login.
        private: Create the repository as private (an existing repository keeps its visibility).
        commit_message: Defaults to one naming the method and dataset.

    Returns:
        The `CommitInfo` of the commit.
    """
    folder = Path(folder)
    missing = [name for name in ("config.json", "eval_results.json") if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a trained model folder (missing {', '.join(missing)}): train with train_accelerate.py"
        )
    write_model_card(folder, repo_id)  # a folder the card cannot describe fails before anything is created
    api = HfApi(token=token, library_name="modeling_mre")
    created_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    if created_id != repo_id:  # a bare name was created under the token's user
        repo_id = created_id
        write_model_card(folder, repo_id)
    if commit_message is None:
        results = read_json(folder / "eval_results.json", "")
        commit_message = f"Upload {results['method']} trained on {results['dataset']} with modeling_mre"
    # One commit, not `upload_folder`'s: with hf_xet it may commit a folder in several parts, and a
    # repository whose weights and config come from two runs must never be seen.
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=folder / path) for path in model_repo_files(folder)
    ]
    return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")


def push_dataset(
    dataset: datasets.DatasetDict,
    repo_id: str,
    *,
    name: str = "mnre",
    token: str | None = None,
    private: bool = True,
    max_shard_size: str | int = "500MB",
    commit_message: str = "Upload dataset with modeling_mre",
) -> CommitInfo:
    """
    Publish a `DatasetDict` of modeling_mre's record schema as a Hub dataset repository that
    `load_dataset(repo_id)` gives back, `ClassLabel` names and image bytes included.

    Two commits. `DatasetDict.push_to_hub` uploads the parquet shards (images embedded), deletes the
    shards of an earlier push that it did not write, and writes the card's `dataset_info` and
    `configs`, so the repository loads correctly from the first commit on. The second replaces the
    card's text with ours (`dataset_card`, rendered before anything is uploaded), keeping that
    metadata, on top of exactly that commit: a commit pushed in between makes it fail rather than
    describe other data.

    The repository is private by default: MNRE and MORE state no licence for their data, and their
    posts come from platforms whose terms restrict redistribution. `private` applies only to a
    repository this call creates.

    Args:
        dataset: The splits, as a reader of `modeling_mre` returns them (`load_mnre`).
        repo_id: `org/name`, or `name` in the namespace of the token's user.
        name: Which dataset this is, for the card text: `mnre`, `more`, `demo`, ... (`hub_cards/datasets/`).
        token: Else `HF_TOKEN`, else the saved login.
        max_shard_size: Upper size of a parquet shard, as in `push_to_hub`.

    Returns:
        The card's commit.
    """
    card = dataset_card(dataset, name=name, repo_id=repo_id)  # a dataset it cannot describe fails before any upload
    data_commit = dataset.push_to_hub(
        repo_id, token=token, private=private, max_shard_size=max_shard_size, commit_message=commit_message
    )
    if data_commit.repo_url.repo_id != repo_id:  # a bare name was created under the token's user
        repo_id = data_commit.repo_url.repo_id
        card = dataset_card(dataset, name=name, repo_id=repo_id)
    api = HfApi(token=token, library_name="modeling_mre")
    pushed = DatasetCard.load(
        api.hf_hub_download(repo_id, datasets.config.REPOCARD_FILENAME, repo_type="dataset", revision=data_commit.oid)
    )
    card.data = DatasetCardData(**{**pushed.data.to_dict(), **card.data.to_dict()})
    return api.upload_file(
        path_or_fileobj=str(card).encode(),
        path_in_repo=datasets.config.REPOCARD_FILENAME,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Dataset card from modeling_mre",
        parent_commit=data_commit.oid,
    )
