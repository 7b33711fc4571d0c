"""What the benchmark scripts share: where a result file came from, the process's memory, and a split's rows as batches."""

import datetime
import json
import os
import platform
import subprocess
import sys

import torch


def provenance() -> dict:
    """The command, the commit (`-dirty` when tracked Python files differ from it), the machine, the date."""

    def git(*arguments):
        return subprocess.run(
            ["git", *arguments], capture_output=True, text=True, cwd=os.path.dirname(__file__)
        ).stdout.strip()

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"{os.cpu_count()} CPU cores ({platform.machine()})"
    )
    return {
        "command": " ".join(["python", *sys.argv]),
        "commit": git("rev-parse", "HEAD")
        + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", "*.py") else ""),
        "device": device,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
    }


def memory_status(*fields: str) -> dict[str, int]:
    """Sizes from Linux's /proc/self/status, in bytes: VmRSS (resident now), VmHWM (its peak), RssAnon, RssFile."""
    with open("/proc/self/status") as status:
        sizes = dict(line.split(":", 1) for line in status)
    return {field: int(sizes[field].split()[0]) * 1024 for field in fields}  # "  1234 kB"


def training_info(folder: str) -> dict:
    """How the model in `folder` was trained, from its `eval_results.json` (train_accelerate.py's)."""
    results = os.path.join(folder, "eval_results.json")
    trained = json.load(open(results, encoding="utf-8")) if os.path.isfile(results) else {}
    keys = ("method", "dataset", "seed", "best_epoch", "held_out_relations", "validation_from_train")
    return {key: trained.get(key) for key in keys} | {
        "validation_micro_f1": trained.get("validation", {}).get("micro_f1")
    }


def batches(processor, rows, device, size: int = 64, **processor_kwargs):
    """The processor's batches of `size` rows of a loaded split (`load_mnre`'s columns)."""
    for start in range(0, len(rows), size):
        batch = rows[start : start + size]
        yield processor(
            tokens=batch["tokens"], head=batch["head"], tail=batch["tail"], images=batch["image"], **processor_kwargs
        ).to(device)
