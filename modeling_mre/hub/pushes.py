"""
Uploads to the Hub through huggingface_hub's `HfApi`, which reads the token from `token=`, else
`HF_TOKEN`, else the saved login, as transformers does:

    from modeling_mre.hub import export_dataset, push_dataset_folder, push_model_folder, write_model_card

    write_model_card("outputs/mmib-mnre")                     # README.md + figures/ from eval_results.json
    push_model_folder("outputs/mmib-mnre", "org/mre-mmib-mnre")
    export_dataset(load_mnre("MNRE/"), "mnre-hub", name="mnre", repo_id="org/mnre")
    push_dataset_folder("mnre-hub", "org/mnre")               # private unless private=False
"""

import os
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub.utils import filter_repo_objects

from .cards import read_json, write_model_card


# Run artifacts that a Hub repository has no use for: Accelerate training states, the best-epoch
# scratch copy, the synthetic demo data (regenerated from its seed), and the LoRA adapter with its
# starting model (its adapter_config.json points at a local folder; the merged model at the top
# level is what loads). Entries whose name starts with "." (staging folders) are never uploaded.
MODEL_FOLDER_EXCLUDES = ("epoch_*", "step_*", "best_model", "demo_data", "lora_base", "lora_adapter")
# `upload_folder`'s patterns (fnmatch on repository paths, where `*` also matches `/`): hidden entries
# at any depth, and those folders at the top level.
HIDDEN_PATTERNS = [".*", "*/.*"]
MODEL_REPO_IGNORE_PATTERNS = [*HIDDEN_PATTERNS, *(f"{name}/*" for name in MODEL_FOLDER_EXCLUDES)]


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
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=folder / path) for path in model_repo_files(folder)]
    return api.create_commit(repo_id, operations, commit_message=commit_message, repo_type="model")


def push_dataset_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = True,
    commit_message: str = "Upload dataset with modeling_mre",
) -> CommitInfo:
    """
    Upload a folder written by `export_dataset` to a Hub dataset repository in one commit. Parquet
    shards already in the repository's `data/` that this export did not write are deleted in the same
    commit: `load_dataset` would otherwise read them too.

    The repository is private by default: MNRE and MORE state no licence for their data, and their
    posts come from platforms whose terms restrict redistribution. The card's usage snippet names
    the `repo_id` given to `export_dataset`: give both the same one.
    """
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise FileNotFoundError(f"{folder} has no README.md and data/: write it with export_dataset first")
    api = HfApi(token=token, library_name="modeling_mre")
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="dataset").repo_id
    return api.upload_folder(
        repo_id=repo_id, folder_path=folder, ignore_patterns=HIDDEN_PATTERNS, delete_patterns=["data/*"],
        commit_message=commit_message, repo_type="dataset",
    )
