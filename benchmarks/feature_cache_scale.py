#!/usr/bin/env python
"""
The frozen-vision feature cache at MNRE's scale: disk, peak RAM and encoding time of
`add_image_features` for each `visual_features` kind, the per-row layout (the cache before it was
sized by pictures, run from a git worktree of that commit) against the per-picture one.

    python benchmarks/feature_cache_scale.py --fraction 0.0625 \
        --output_json benchmarks/results/feature-cache/feature_cache_scale.json

Rows: MNRE v2's training split as it is (12,247 rows over 7,356 images, `../shared/data/mnre`), or its
first `--fraction` of the images with all their rows; each row keeps its crops from HVPNeT's index
(32,550 crop files, each named by one row; at most 3 read, as `max_object_crops`). The pictures are
synthetic, since MNRE's are not here: each image a 1024x768 JPEG, each crop a PNG of a random box of
it (80 to 400 pixels a side), every crop its own picture (the index names each crop for one row: no
crop content is assumed shared, the worst case for the per-picture layout). Encoders: the embedded
MobileNetV2 (ImageNet weights) and a ViT-B/32-shaped ViT (768 wide, 12 layers, 32-pixel patches,
random weights: sizes and times only). Kinds: `pooled` (MMIB), `patches` (WMAJL), `levels` (DFMA,
which pools each level to 4 tokens before fusing and declares it, so its cache holds the pooled form).

Each pass runs in a subprocess of its own. "pass RAM (allocated)" is the peak of its anonymous resident
memory (RssAnon, sampled every 10 ms) above what the process held before the pass: what the pass allocates.
"dataset pages mapped" is the growth of its file-backed resident memory (RssFile): `datasets` memory-maps the
rows' Arrow file, which holds the pictures' bytes, so reading every picture maps the file's pages. Those are
page cache the kernel reclaims under pressure, and `--memory_limit_mib` shows it: each pass then runs in a
cgroup (v1) memory limit, and the JSON records the limit, how often it was hit and the cgroup's peak. VmHWM
(RSS's peak, both kinds) stays in the JSON. Disk is what the pass wrote (the cache's folder, and the
`datasets` cache files beside the rows). Figures at a fraction are measured at that fraction; the
`full scale` columns multiply disk and time by 1 / fraction (both grow with the pictures) and are
labelled as projections. float16's effect on logits is measured on 64 rows with the embedded encoder.
"""

import argparse
import ast
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import memory_status, provenance  # benchmarks/common.py, beside this script


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
MNRE = REPO.parent / "shared" / "data" / "mnre"
PER_ROW_COMMIT = "3e70098"  # the last commit whose cache stored features in every row
KIND_METHODS = {"pooled": "mmib", "patches": "wmajl", "levels": "dfma"}
VISION = {
    "mobilenet_v2": None,  # the embedded backbone
    "vit-b-32": dict(
        model_type="vit",
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=224,
        patch_size=32,
    ),
}
TEXT = dict(model_type="bert", hidden_size=96, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="Of MNRE's 7,356 training images (with all their rows)."
    )
    parser.add_argument("--vision", nargs="+", choices=sorted(VISION), default=sorted(VISION))
    parser.add_argument("--kinds", nargs="+", choices=sorted(KIND_METHODS), default=list(KIND_METHODS))
    parser.add_argument("--layouts", nargs="+", choices=("per-row", "per-picture"), default=["per-row", "per-picture"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory_limit_mib",
        type=int,
        default=None,
        help="Run each pass in a cgroup v1 memory limit of this size (needs a writable /sys/fs/cgroup/memory).",
    )
    parser.add_argument("--output_json", type=Path, default=None)
    # One pass, in its own process (the driver runs these).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache_dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def mnre_rows(fraction: float) -> list[dict]:
    """MNRE's training rows (tokens, entities, img_id) with their crop names, for the first `fraction` of its images."""
    import torch

    lines = (MNRE / "mnre_txt" / "mnre_train.txt").read_text(encoding="utf-8").splitlines()
    crops = torch.load(MNRE / "aux" / "mre_train_dict.pth", weights_only=True)
    records = [ast.literal_eval(line) for line in lines]  # the files are Python literals
    images = list(dict.fromkeys(record["img_id"] for record in records))
    kept = set(images[: round(len(images) * fraction)])
    return [
        {"record": record, "crops": crops.get(index, [])[:3]}
        for index, record in enumerate(records)
        if record["img_id"] in kept
    ]


def write_rows(rows: list[dict], folder: Path, seed: int):
    """The rows as a file-backed dataset of modeling_mre's record schema, over synthetic picture files."""
    import datasets
    import numpy as np
    from PIL import Image

    from modeling_mre import record_features

    rng = random.Random(seed)
    pictures = folder / "pictures"
    pictures.mkdir(parents=True)
    images = {}
    table = {name: [] for name in record_features(["None", "other"])}
    for index, row in enumerate(rows):
        record = row["record"]
        image_id = record["img_id"]
        if image_id not in images:
            # A smooth picture (JPEG-compressible like a photo), 1024x768.
            y, x = np.mgrid[0:768, 0:1024]
            phase = rng.random() * 6.28
            array = np.stack([127 + 120 * np.sin(x / (40 + 30 * c) + y / 90 + phase + c) for c in range(3)], axis=-1)
            images[image_id] = str(pictures / image_id)
            Image.fromarray(array.astype(np.uint8)).save(images[image_id], quality=90)
        path = images[image_id]
        image = Image.open(path) if row["crops"] else None
        crop_paths = []
        for name in row["crops"]:
            width, height = rng.randint(80, 400), rng.randint(80, 400)
            left, top = rng.randint(0, 1024 - width), rng.randint(0, 768 - height)
            crop_paths.append(str(pictures / name))
            image.crop((left, top, left + width, top + height)).save(crop_paths[-1])
        tokens = record["token"]
        table["id"].append(f"train-{index}")
        table["tokens"].append(tokens)
        table["head"].append(
            {"name": record["h"]["name"], "start": record["h"]["pos"][0], "end": record["h"]["pos"][1]}
        )
        table["tail"].append(
            {"name": record["t"]["name"], "start": record["t"]["pos"][0], "end": record["t"]["pos"][1]}
        )
        table["image"].append(path)
        table["image_id"].append(image_id)
        table["crops"].append(crop_paths)
        table["relation"].append(int(record["relation"] != "None"))
    datasets.Dataset.from_dict(table, features=record_features(["None", "other"])).save_to_disk(folder / "rows")


def build_model(kind: str, vision: str, processor):
    import torch
    from transformers import AutoConfig

    from modeling_mre import METHODS
    from modeling_mre.backbones import embedded_vision_backbone

    method = METHODS[KIND_METHODS[kind]]
    vision_config = VISION[vision] or AutoConfig.from_pretrained(embedded_vision_backbone()).to_dict()
    config = method.config_class(
        text_config={**TEXT, "vocab_size": len(processor.tokenizer)},
        vision_config=vision_config,
        num_labels=2,
        **processor.marker_config(),
    )
    torch.manual_seed(0)
    model = method(config).eval()
    if VISION[vision] is None:  # the embedded ImageNet weights, not random ones
        from transformers import AutoModel

        model.vision_encoder.load_state_dict(AutoModel.from_pretrained(embedded_vision_backbone()).state_dict())
    return model


def processor_for_benchmark():
    from modeling_mre import MREProcessor
    from modeling_mre.backbones import embedded_text_backbone, embedded_vision_backbone

    return MREProcessor.from_backbones(str(embedded_text_backbone()), str(embedded_vision_backbone()))


class MemorySampler:
    """The peaks of RssAnon and RssFile over a block, from a thread reading /proc every `interval` seconds.

    VmHWM alone cannot tell memory the pass allocates from pages of a memory-mapped file it reads."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.stopped = interval, threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def __enter__(self):
        self.before = memory_status("RssAnon", "RssFile", "VmRSS")
        self.peak = dict(self.before)
        self.thread.start()
        return self

    def sample(self):
        while True:
            for field, size in memory_status("RssAnon", "RssFile").items():
                self.peak[field] = max(self.peak[field], size)
            if self.stopped.wait(self.interval):
                return

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()
        self.sample()  # the state at the end counts too


def worker(args):
    """One encoding pass; prints its measurements as JSON."""
    import datasets
    import torch

    torch.set_num_threads(os.cpu_count())
    from modeling_mre import add_image_features

    processor = processor_for_benchmark()
    model = build_model(args.kinds[0], args.vision[0], processor)
    rows = datasets.load_from_disk(str(args.rows))
    _ = model.image_feature_size  # shapes read before the pass, by both layouts
    encoded = []  # pictures per vision-encoder call
    model.vision_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: encoded.append(len(kwargs["pixel_values"])), with_kwargs=True
    )
    # VmHWM from here on: ru_maxrss would also count the parent's pages at fork.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    with MemorySampler() as memory:
        started = time.perf_counter()
        if args.layout == "per-row":
            add_image_features(rows, model, processor, batch_size=64)
        else:
            add_image_features(rows, model, processor, batch_size=64, cache_dir=args.cache_dir)
        seconds = time.perf_counter() - started
    peak = memory_status("VmHWM")["VmHWM"]
    print(
        json.dumps(
            {
                "pictures_encoded": sum(encoded),
                "seconds": seconds,
                "feature_size": model.image_feature_size,
                "pass_ram_bytes": memory.peak["RssAnon"] - memory.before["RssAnon"],
                "mapped_file_bytes": memory.peak["RssFile"] - memory.before["RssFile"],
                "rss_before_bytes": memory.before["VmRSS"],
                "peak_rss_bytes": peak,
                "rss_growth_bytes": max(0, peak - memory.before["VmRSS"]),
            }
        )
    )


def disk_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def memory_cgroup(name: str, limit_mib: int) -> Path:
    """A cgroup v1 memory group limited to `limit_mib` (no swap here: what is not reclaimable is OOM-killed)."""
    group = CGROUP_MEMORY / name
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_mib * 2**20))
    except OSError as error:
        sys.exit(f"--memory_limit_mib needs a writable cgroup v1 memory hierarchy at {CGROUP_MEMORY}: {error}")
    return group


def join_cgroup(group: Path):
    (group / "cgroup.procs").write_text(str(os.getpid()))


def evict_from_page_cache(folder: Path):
    """Drop `folder`'s files from the page cache: cgroup v1 charges a cached page to the group that first
    read or wrote it, so the rows' pages copied here would otherwise never count toward a pass's limit."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def run_pass(
    layout: str,
    vision: str,
    kind: str,
    data: Path,
    workdir: Path,
    old_checkout: Path,
    memory_limit_mib: int | None = None,
) -> dict:
    """A pass in a fresh subprocess on a fresh copy of the rows' dataset folder; its figures and its disk."""
    import shutil

    rows = workdir / f"rows-{layout}-{vision}-{kind}"
    shutil.copytree(data / "rows", rows)
    written_before = disk_bytes(rows)
    cache_dir = workdir / f"cache-{layout}-{vision}-{kind}"
    env = dict(os.environ, HF_DATASETS_CACHE=str(workdir / "datasets-cache"))
    if layout == "per-row":
        env["PYTHONPATH"] = str(old_checkout)
    else:
        env["PYTHONPATH"] = str(REPO)
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--rows",
        str(rows),
        "--cache_dir",
        str(cache_dir),
        "--layout",
        layout,
        "--vision",
        vision,
        "--kinds",
        kind,
    ]
    group = None
    if memory_limit_mib:
        evict_from_page_cache(rows)
        group = memory_cgroup(f"feature-cache-scale-{os.getpid()}-{layout}-{vision}-{kind}", memory_limit_mib)
    try:
        # In the child before it runs, so every page it touches is charged to the limit.
        join = group and functools.partial(join_cgroup, group)
        output = subprocess.run(command, env=env, capture_output=True, text=True, preexec_fn=join)
        limited = (
            group
            and {
                "memory_limit_bytes": memory_limit_mib * 2**20,
                "limit_hits": int((group / "memory.failcnt").read_text()),
                "cgroup_peak_bytes": int((group / "memory.max_usage_in_bytes").read_text()),
            }
            or {}
        )
    finally:
        if group:
            group.rmdir()
    # Over a limit, with no swap, the kernel kills what it cannot reclaim: a result, not a failure.
    killed = bool(limited) and output.returncode == -signal.SIGKILL
    if output.returncode and not killed:
        raise RuntimeError(f"{layout} {vision} {kind} failed (exit {output.returncode}):\n{output.stderr[-3000:]}")
    written = disk_bytes(rows) - written_before + (disk_bytes(cache_dir) if cache_dir.exists() else 0)
    shutil.rmtree(rows)
    shutil.rmtree(cache_dir, ignore_errors=True)
    if killed:
        return {"killed_at_limit": True, **limited}
    return {**json.loads(output.stdout.strip().splitlines()[-1]), **limited, "disk_bytes": written}


def float16_logits(data: Path, workdir: Path) -> dict:
    """Per kind, with the embedded MobileNetV2: max |logit difference| of float16 features against float32, on 64 rows."""
    import datasets
    import torch

    from modeling_mre import add_image_features
    from modeling_mre.training import make_collate_fn

    processor = processor_for_benchmark()
    rows = datasets.load_from_disk(str(data / "rows"))
    rows = rows.select(range(min(64, len(rows))))
    differences = {}
    for kind in KIND_METHODS:
        model = build_model(kind, "mobilenet_v2", processor)
        logits = {}
        for dtype in (torch.float16, torch.float32):
            keyed, cache = add_image_features(
                rows, model, processor, dtype=dtype, cache_dir=workdir / f"logits-{kind}"
            )
            with torch.no_grad():
                logits[dtype] = model(**make_collate_fn(processor, True, cache)(list(keyed))).logits
        difference = (logits[torch.float16] - logits[torch.float32]).abs().max().item()
        differences[kind] = {
            "max_abs_logit_difference": difference,
            "max_abs_logit": logits[torch.float32].abs().max().item(),
        }
    return differences


def markdown(results: dict, fraction: float) -> str:
    scale = 1 / fraction
    lines = [
        "| encoder | kind | layout | pictures encoded | disk (measured) | disk (full scale) | pass RAM (allocated) "
        "| dataset pages mapped | encoding time (measured) | time (full scale) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["passes"]:
        if entry.get("killed_at_limit"):
            lines.append(
                f"| {entry['vision']} | {entry['kind']} | {entry['layout']} | killed at the "
                f"{entry['memory_limit_bytes'] / 2**20:,.0f} MiB limit | | | | | | |"
            )
            continue
        lines.append(
            f"| {entry['vision']} | {entry['kind']} | {entry['layout']} | {entry['pictures_encoded']:,} | "
            f"{entry['disk_bytes'] / 2**20:,.0f} MiB | {entry['disk_bytes'] * scale / 2**30:,.2f} GiB | "
            f"{entry['pass_ram_bytes'] / 2**20:,.0f} MiB | {entry['mapped_file_bytes'] / 2**20:,.0f} MiB | "
            f"{entry['seconds']:,.0f} s | {entry['seconds'] * scale / 60:,.0f} min |"
        )
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.worker:
        return worker(args)
    if not MNRE.is_dir():
        sys.exit(f"MNRE's annotations are needed at {MNRE} (the shared data folder)")
    with tempfile.TemporaryDirectory() as workdir:
        workdir = Path(workdir)
        old_checkout = workdir / "per-row-checkout"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(old_checkout), PER_ROW_COMMIT],
            check=True,
            capture_output=True,
        )
        try:
            rows = mnre_rows(args.fraction)
            write_rows(rows, workdir / "data", args.seed)
            results = {
                "rows": len(rows),
                "images": len({row["record"]["img_id"] for row in rows}),
                "crops": sum(len(row["crops"]) for row in rows),
                "fraction": args.fraction,
                "memory_limit_mib": args.memory_limit_mib,
                "passes": [],
            }
            for vision in args.vision:
                for kind in args.kinds:
                    for layout in args.layouts:
                        entry = run_pass(
                            layout, vision, kind, workdir / "data", workdir, old_checkout, args.memory_limit_mib
                        )
                        results["passes"].append({"vision": vision, "kind": kind, "layout": layout, **entry})
                        print(json.dumps(results["passes"][-1]), flush=True)
            results["float16_logits"] = float16_logits(workdir / "data", workdir)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_checkout)], capture_output=True
            )
    results["markdown"] = markdown(results, args.fraction)
    results.update(provenance())
    print(results["markdown"])
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
