#!/usr/bin/env python
"""
Speed and memory of every method on the embedded backbones at MNRE's real text lengths, measured in
one process against two references:

- the backbone floor: the same text encoder's forward, backward and AdamW step (the vision
  encoder's forward for methods that read images, frozen as in MMIB) on the same batches, the cost
  that no method on these backbones can go under;
- the peers' input setting: every text padded to 80 tokens, as HVPNeT, MKGformer and MMIB do,
  against our per-batch (dynamic) padding.

The entity recognizers (NER_METHODS) are timed the same way against their own floor, on tweets
(Twitter-2017 validation, `--ner_data_dir`, or the embedded MNER demo set) with one synthetic JPEG each.

    python benchmarks/speed.py --quick          # under 3 minutes on 2 CPU cores
    python benchmarks/speed.py                  # more batches and repeats

Texts are MNRE validation examples (`--data_dir`, default ../shared/data/mnre) or, without that
folder, the embedded demo set; MNRE's images are not available, so each example gets its own
synthetic JPEG (`--image_size`) and no object crops. Configurations are timed in turn, repeat after
repeat; figures are medians over repeats and every ratio is the median of per-repeat ratios, so
a machine shared with other jobs shifts both sides of a ratio alike. On a GPU the models run under
bf16 autocast. Prints a markdown table; `--output_json` also writes the raw figures.
"""

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from common import memory_status, provenance  # noqa: E402  (benchmarks/common.py)
from PIL import Image  # noqa: E402
from transformers import pipeline  # noqa: E402

from modeling_mre import METHODS, NER_METHODS, NER_TAGS, PIPELINE_TASK, MNERProcessor, MREProcessor  # noqa: E402
from modeling_mre.backbones import embedded_text_backbone, embedded_vision_backbone  # noqa: E402
from modeling_mre.data.demo import write_demo_dataset, write_mner_demo_dataset  # noqa: E402
from modeling_mre.data.feature_cache import add_image_features  # noqa: E402
from modeling_mre.data.mnre import load_mnre  # noqa: E402
from modeling_mre.data.twitter import load_twitter_mner  # noqa: E402
from modeling_mre.training import LengthGroupedSampler  # noqa: E402
from modeling_mre.training.collate import make_ner_collate_fn  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNRE = REPO.parent / "shared" / "data" / "mnre"
DEFAULT_TWITTER = REPO.parent / "shared" / "data" / "twitter" / "twitter2017"
PEER_LENGTH = 80  # HVPNeT, MKGformer and MMIB pad every text to max_seq=80


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 examples per setting, 3 repeats.")
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_MNRE, help="MNRE-layout folder; demo set if absent.")
    parser.add_argument(
        "--ner_data_dir",
        type=Path,
        default=DEFAULT_TWITTER,
        help="Twitter-layout MNER folder; MNER demo set if absent.",
    )
    parser.add_argument("--train_batch_size", type=int, default=32, help="As train_accelerate.py.")
    parser.add_argument("--eval_batch_size", type=int, default=64, help="As train_accelerate.py.")
    parser.add_argument(
        "--num_examples", type=int, default=None, help="Examples per setting (default 128; 64 with --quick)."
    )
    parser.add_argument("--repeats", type=int, default=None, help="Interleaved repeats (default 7; 3 with --quick).")
    parser.add_argument("--image_size", type=int, nargs=2, default=(640, 480), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", type=Path, default=None)
    args = parser.parse_args()
    args.num_examples = args.num_examples or (64 if args.quick else 128)
    args.repeats = args.repeats or (3 if args.quick else 7)
    return args


class PeakMemory:
    """
    Peak memory above the starting point while the block runs: allocated CUDA memory on a GPU,
    the process's resident set on Linux CPUs (its high-water mark is reset through
    /proc/self/clear_refs after returning freed heap to the system), None elsewhere.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = None

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.start = memory_status("VmRSS")["VmRSS"]
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        elif self.start is not None:
            self.mib = (memory_status("VmHWM")["VmHWM"] - self.start) / 2**20


def benchmark_rows(args, workdir: Path) -> tuple[datasets.Dataset, datasets.Dataset, list[str], str]:
    """
    The whole split, shuffled examples of it with one synthetic JPEG each, the JPEGs' paths, and
    where the text comes from.
    """
    if (args.data_dir / "ours_rel2id.json").is_file():
        split, source = load_mnre(args.data_dir)["validation"], f"MNRE validation text ({args.data_dir})"
    else:
        split, source = load_mnre(write_demo_dataset(workdir / "demo"))["validation"], "the embedded demo set's text"
    rows = split.shuffle(seed=args.seed).select(range(min(args.num_examples, len(split))))
    # The demo textures, enlarged to a photo's size: decoding and resizing cost what they would on MNRE.
    pictures = write_demo_dataset(workdir / "pictures", num_train=len(rows), num_validation=0, num_test=0)
    paths = []
    for i, png in enumerate(sorted((pictures / "img_org" / "train").glob("*.png"))):
        paths.append(str(workdir / f"image_{i:05d}.jpg"))
        Image.open(png).convert("RGB").resize(tuple(args.image_size)).save(paths[-1], quality=90)
    return split, with_pictures(rows, paths), paths, source


def with_pictures(rows: datasets.Dataset, paths: list[str]) -> datasets.Dataset:
    """`rows` with one of the synthetic JPEGs each."""
    return rows.remove_columns("image").add_column("image", paths[: len(rows)]).cast_column("image", datasets.Image())


def ner_benchmark_rows(args, workdir: Path, paths: list[str]) -> tuple[datasets.Dataset, str]:
    """Shuffled tweets with one synthetic JPEG each (those of the relation rows), and where they come from."""
    if (args.ner_data_dir / "valid.txt").is_file():
        split, source = (
            load_twitter_mner(args.ner_data_dir)["validation"],
            f"Twitter validation text ({args.ner_data_dir})",
        )
    else:
        split, source = (
            load_twitter_mner(write_mner_demo_dataset(workdir / "demo-mner"))["validation"],
            "the MNER demo set's text",
        )
    rows = split.shuffle(seed=args.seed).select(range(min(args.num_examples, len(split), len(paths))))
    return with_pictures(rows, paths), source


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def pad_to(batch: dict, length: int, pad_token_id: int) -> dict:
    """The peers' setting: every text padded to `length` tokens."""
    padded = dict(batch)
    for key, value in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key in batch:
            padded[key] = torch.nn.functional.pad(batch[key], (0, length - batch[key].shape[1]), value=value)
    return padded


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def text_inputs(batch: dict) -> dict:
    return {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}


def train_step(model, optimizer, device, loss_of):
    """One optimisation step as train_accelerate.py does it; `loss_of(model, batch)` runs the forward."""

    def step(batch):
        model.train()
        with autocast(device):
            loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main():
    args = parse_args()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.disable_caching()  # the benchmark's derived datasets live in temporary files only
    torch.manual_seed(args.seed)
    origin = provenance()
    with tempfile.TemporaryDirectory(prefix="mre-speed-") as workdir:
        report = benchmark(args, Path(workdir))
    print(report["markdown"])
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps({**origin, **report}, indent=2) + "\n")


def build_models(registry: dict, processor, label_names, device) -> dict:
    """Every method of `registry` (METHODS or NER_METHODS) on the embedded backbones, built as train_accelerate.py builds it."""
    models = {}
    for method, model_class in registry.items():
        uses_images = model_class.visual_features is not None
        model = model_class.from_backbones(
            str(embedded_text_backbone()),
            str(embedded_vision_backbone()) if uses_images else None,
            processor=processor,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
        )
        models[method] = model.to(device)
    return models


def prepare_batches(args, processor, split, rows, cached_rows, device) -> dict:
    """
    Per phase (train, inference), batches built once: `chunks`, their row indices; `pixels`, as the
    processor gives them; `dynamic`, the text; `fixed`, the same padded to 80 tokens; `grouped`, the
    batches of `train_accelerate.py --group_by_length` (`LengthGroupedSampler` over the whole split, a
    random few of them); `features`, per kind of cached image features (`cached_rows`), those of each
    chunk, which a method reading that kind gets with any of the text batches (`with_features`).
    """
    split_text = split.select_columns(["tokens", "head", "tail", "relation"])[:]
    split_lengths = processor(tokens=split_text["tokens"], head=split_text["head"], tail=split_text["tail"])
    lengths = split_lengths["attention_mask"].sum(dim=1).tolist()
    generator = torch.Generator().manual_seed(args.seed)

    phases = {}
    for phase, batch_size in (("train", args.train_batch_size), ("inference", args.eval_batch_size)):
        chunks = [range(start, start + batch_size) for start in range(0, len(rows) - batch_size + 1, batch_size)]
        batches = {
            "chunks": chunks,
            "examples": len(chunks) * batch_size,
            "pixels": [],
            "dynamic": [],
            "fixed": [],
            "grouped": [],
        }
        batches["features"] = {
            kind: [to_device(cache.stack([cached[i] for i in chunk]), device) for chunk in chunks]
            for kind, (cached, cache) in cached_rows.items()
        }
        for chunk in chunks:
            records = rows.select(chunk)[:]
            batch = processor(
                tokens=records["tokens"], head=records["head"], tail=records["tail"], images=records["image"]
            )
            labels = torch.tensor(records["relation"])
            batches["pixels"].append(to_device({**batch, "labels": labels}, device))
            text = {key: value for key, value in batch.items() if key not in ("pixel_values", "image_mask")}
            batches["dynamic"].append(to_device({**text, "labels": labels}, device))
            batches["fixed"].append(pad_to(batches["dynamic"][-1], PEER_LENGTH, processor.tokenizer.pad_token_id))

        order = list(LengthGroupedSampler(lengths, batch_size, seed=args.seed))
        sorted_chunks = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        picked = torch.randperm(len(sorted_chunks), generator=generator)[: len(chunks)].tolist()
        for k in picked:
            chunk = {key: [split_text[key][i] for i in sorted_chunks[k]] for key in split_text}
            grouped = dict(processor(tokens=chunk["tokens"], head=chunk["head"], tail=chunk["tail"]))
            grouped["labels"] = torch.tensor(chunk["relation"])
            batches["grouped"].append(to_device(grouped, device))
        phases[phase] = batches
    return phases


def prepare_ner_batches(args, processor, rows, cached_rows, device) -> dict:
    """
    Per phase, the tweets' batches as train_accelerate.py's MNER collate builds them (one row per
    window): `pixels`, `dynamic` (the text), and per kind of cached features (`cached_rows`), each
    window's post's (`with_features`).
    """
    pictures, text = (
        make_ner_collate_fn(processor, uses_images=True),
        make_ner_collate_fn(processor, uses_images=False),
    )
    phases = {}
    for phase, batch_size in (("train", args.train_batch_size), ("inference", args.eval_batch_size)):
        chunks = [range(start, start + batch_size) for start in range(0, len(rows) - batch_size + 1, batch_size)]
        batches = {"chunks": chunks, "examples": len(chunks) * batch_size, "pixels": [], "dynamic": [], "features": {}}
        for chunk in chunks:
            records = [rows[i] for i in chunk]
            batches["pixels"].append(to_device(pictures(records), device))
            batches["dynamic"].append(to_device(text(records), device))
        for kind, (cached, cache) in cached_rows.items():
            with_cache = make_ner_collate_fn(processor, uses_images=True, image_feature_cache=cache)
            batches["features"][kind] = []
            for chunk, text_batch in zip(chunks, batches["dynamic"]):
                batch = with_cache([cached[i] for i in chunk])
                batches["features"][kind].append(
                    to_device({key: batch[key] for key in batch if key not in text_batch}, device)
                )
        phases[phase] = batches
    return phases


def with_features(batches: dict, name: str, model) -> list[dict]:
    """The text batches `batches[name]`, each with its chunk's cached features of the kind `model` reads."""
    if model.visual_features is None:
        return batches[name]
    return [{**text, **features} for text, features in zip(batches[name], batches["features"][model.visual_features])]


def pipeline_inputs(rows, paths, chunks) -> list[list[dict]]:
    """A list per inference batch of what a user has: raw text, character offsets, an image file."""
    columns = rows.select_columns(["tokens", "head", "tail"])[:]

    def user_input(i: int) -> dict:
        tokens, spans = columns["tokens"][i], []
        for entity in (columns["head"][i], columns["tail"][i]):
            start = len(" ".join(tokens[: entity["start"]])) + (entity["start"] > 0)
            spans.append((start, start + len(" ".join(tokens[entity["start"] : entity["end"]]))))
        return {"text": " ".join(tokens), "head": spans[0], "tail": spans[1], "image": paths[i]}

    return [[user_input(i) for i in chunk] for chunk in chunks]


def mixed_inputs(batches: list[list[dict]]) -> list[list[dict]]:
    """The same inputs as users mix them: every other one without its image."""
    return [[{**example, "image": None} if i % 2 else example for i, example in enumerate(batch)] for batch in batches]


def add_floor_settings(add, prefix: str, floor_text, vision_model, phases: dict, variants, device):
    """
    The floor on `phases`' batches: a trainable copy of the text encoder (`floor_text`), and the
    frozen vision encoder's forward where a method reads pictures.
    """
    train, inference = phases["train"], phases["inference"]
    encoder_loss = lambda encoder, batch: encoder(**text_inputs(batch)).last_hidden_state.float().mean()  # noqa: E731
    floor_step = train_step(floor_text, torch.optim.AdamW(floor_text.parameters(), lr=5e-5), device, encoder_loss)

    def floor_text_forward(batch):
        floor_text.eval()
        with torch.no_grad(), autocast(device):
            floor_text(**text_inputs(batch))

    for suffix, batches in variants:
        add(f"{prefix}_text_train{suffix}", floor_step, train[batches], train["examples"])
        add(f"{prefix}_text_inference{suffix}", floor_text_forward, inference[batches], inference["examples"])
    if vision_model is not None:

        def vision_forward(batch):
            with torch.no_grad(), autocast(device):
                vision_model.get_image_features(batch["pixel_values"][batch["image_mask"]])

        add(f"{prefix}_vision_train", vision_forward, train["pixels"], train["examples"])
        add(f"{prefix}_vision_inference", vision_forward, inference["pixels"], inference["examples"])


def add_model_settings(add, prefix: str, model, phases: dict, variants, device):
    """A method's training step and inference forward on `phases`' batches: text with cached features, and pixels."""
    train, inference = phases["train"], phases["inference"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    step = train_step(model, optimizer, device, lambda model, batch: model(**batch).loss)

    def forward(batch):
        model.eval()
        with torch.no_grad(), autocast(device):
            model(**batch)

    for suffix, batches in variants:
        add(f"{prefix}_train{suffix}", step, with_features(train, batches, model), train["examples"])
        add(f"{prefix}_inference{suffix}", forward, with_features(inference, batches, model), inference["examples"])
    if hasattr(model, "get_image_features"):
        add(f"{prefix}_train_pixels", step, train["pixels"], train["examples"])
        add(f"{prefix}_inference_pixels", forward, inference["pixels"], inference["examples"])


def build_settings(args, models, processor, phases, rows, cached_rows, paths, device, ner) -> dict:
    """
    Every setting to time: name -> (function run on each batch, its batches, examples per pass). `ner`
    holds the entity recognizers' models and batches, timed as `ner_<method>_...` against `ner_floor_...`.
    """
    settings = {}

    def add(name, function, batches, examples):
        settings[name] = (function, batches, examples)

    variants = (("", "dynamic"), ("_80", "fixed"), ("_grouped", "grouped"))
    vision_model = next((model for model in models.values() if hasattr(model, "get_image_features")), None)
    floor_text = copy.deepcopy(models["baseline"].text_encoder)  # marker-resized, as every method's
    add_floor_settings(add, "floor", floor_text, vision_model, phases, variants, device)

    inference = phases["inference"]
    user_inputs = pipeline_inputs(rows, paths, inference["chunks"])
    for method, model in models.items():
        add_model_settings(add, method, model, phases, variants, device)
        extract = pipeline(PIPELINE_TASK, model=model, processor=processor, device=device)

        def run_pipeline(inputs, model=model, extract=extract):
            model.eval()
            with autocast(device):
                extract(inputs, batch_size=args.eval_batch_size)

        def run_pipeline_one_by_one(inputs, model=model, extract=extract):
            model.eval()
            with autocast(device):
                for example in inputs:
                    extract(example)

        add(f"{method}_pipeline", run_pipeline, user_inputs, inference["examples"])
        add(f"{method}_pipeline_mixed", run_pipeline, mixed_inputs(user_inputs), inference["examples"])
        add(f"{method}_pipeline_one_by_one", run_pipeline_one_by_one, mixed_inputs(user_inputs), inference["examples"])

    ner_models, ner_phases = ner
    ner_vision = next((model for model in ner_models.values() if hasattr(model, "get_image_features")), None)
    ner_variants = (("", "dynamic"),)
    add_floor_settings(
        add,
        "ner_floor",
        copy.deepcopy(ner_models["baseline"].text_encoder),
        ner_vision,
        ner_phases,
        ner_variants,
        device,
    )
    for method, model in ner_models.items():
        add_model_settings(add, f"ner_{method}", model, ner_phases, ner_variants, device)

    # Data loading as train_accelerate.py's DataLoader does it: reading the rows (which decodes the
    # images) and collating them, with the pictures or with their cached features.
    def load(chunk, cached):
        cached_split, cache = next(iter(cached_rows.values())) if cached else (rows, None)
        records = [cached_split[i] for i in chunk]
        texts = {key: [r[key] for r in records] for key in ("tokens", "head", "tail")}
        if cached:
            processor(**texts)
            cache.stack(records)
        else:
            processor(**texts, images=[r["image"] for r in records])

    if cached_rows:
        train = phases["train"]
        add("loading_pixels", lambda chunk: load(chunk, cached=False), train["chunks"], train["examples"])
        add("loading_features", lambda chunk: load(chunk, cached=True), train["chunks"], train["examples"])
    return settings


def measure(settings, repeats: int, device) -> tuple[dict, dict]:
    """
    Seconds per pass of every setting in each repeat, and its peak memory in MiB. One batch of each
    setting first warms it up (optimizer state, allocator, caches); the repeats then run the settings
    in a rotating order, the first repeat also recording the peak memory. Settings that are compared
    run next to each other (training, then inference; per-batch padding, then 80 tokens, then
    length-grouped), so that a change in the machine's load between them stays small.
    """

    def position(name: str) -> tuple[int, int]:
        phase = 0 if "_train" in name or name.startswith("loading") else 1
        return phase, next((i for i, suffix in enumerate(("_80", "_grouped")) if name.endswith(suffix)), -1)

    def run(name, warm_up=False) -> float:
        function, batches, _ = settings[name]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches[:1] if warm_up else batches:
            function(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for name in settings:
        run(name, warm_up=True)
    names, memory = sorted(settings, key=position), {}
    times = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat * len(names) // repeats
        for name in names[shift:] + names[:shift]:
            if repeat == 0:
                with PeakMemory(device) as peak:
                    times[name].append(run(name))
                memory[name] = peak.mib
            else:
                times[name].append(run(name))
    return times, memory


def benchmark(args, workdir: Path) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load_before = os.getloadavg()[0]
    split, rows, paths, source = benchmark_rows(args, workdir)
    processor = MREProcessor.from_backbones(str(embedded_text_backbone()), str(embedded_vision_backbone()))
    models = build_models(METHODS, processor, rows.features["relation"].names, device)

    vision_model = next((model for model in models.values() if hasattr(model, "get_image_features")), None)
    # The features of each kind the methods read (pooled, patches, ...), computed once each.
    cached_rows, encoding_seconds = {}, 0.0
    for model in models.values():
        if model.visual_features is not None and model.visual_features not in cached_rows:
            started = time.perf_counter()
            cached_rows[model.visual_features] = add_image_features(
                rows, model, processor, batch_size=args.eval_batch_size, cache_dir=workdir / "features"
            )
            if model is vision_model:
                encoding_seconds = time.perf_counter() - started
    encoding_rates = {}
    if vision_model is not None:
        # Images per second of the cache's encoding, by pictures per vision-encoder call: the batch of
        # rows at once (what the cache did before it chunked), and the default for this device.
        chunk_sizes = {"one call per batch of rows": args.eval_batch_size, "default chunks": None}
        seconds = {name: [] for name in chunk_sizes}
        for _ in range(2):
            for name, chunk_size in chunk_sizes.items():
                started = time.perf_counter()
                # An empty cache each time, or the pictures would be read back rather than encoded.
                add_image_features(
                    rows,
                    vision_model,
                    processor,
                    args.eval_batch_size,
                    encoding_batch_size=chunk_size,
                    cache_dir=Path(tempfile.mkdtemp(dir=workdir)),
                )
                seconds[name].append(time.perf_counter() - started)
        encoding_rates = {name: len(rows) / min(times) for name, times in seconds.items()}

    phases = prepare_batches(args, processor, split, rows, cached_rows, device)

    ner_rows, ner_source = ner_benchmark_rows(args, workdir, paths)
    ner_processor = MNERProcessor.from_backbones(str(embedded_text_backbone()), str(embedded_vision_backbone()))
    ner_models = build_models(NER_METHODS, ner_processor, list(NER_TAGS), device)
    ner_cached = {
        model.visual_features: add_image_features(
            ner_rows, model, ner_processor, batch_size=args.eval_batch_size, cache_dir=workdir / "features"
        )
        for model in ner_models.values()
        if model.visual_features is not None
    }
    ner_phases = prepare_ner_batches(args, ner_processor, ner_rows, ner_cached, device)

    settings = build_settings(
        args, models, processor, phases, rows, cached_rows, paths, device, (ner_models, ner_phases)
    )
    times, memory = measure(settings, args.repeats, device)

    lengths = processor(**rows.select_columns(["tokens", "head", "tail"])[:])["attention_mask"].sum(dim=1)
    ner_lengths = ner_phases["train"]["dynamic"]
    context = {
        "device": device,
        "source": source,
        "lengths": lengths.tolist(),
        "num_rows": len(rows),
        "ner_source": ner_source,
        "ner_lengths": [length for batch in ner_lengths for length in batch["attention_mask"].sum(dim=1).tolist()],
        "ner_methods": list(ner_models),
        "encoding_seconds": encoding_seconds,
        "encoding_rates": encoding_rates,
        "load": (load_before, os.getloadavg()[0]),
    }
    return build_report(args, context, settings, times, memory)


def time_ratio(times: dict[str, list[float]], numerator: list[str], denominator: list[str]) -> float:
    """
    Median over repeats of the summed times of `numerator` over those of `denominator` (`times`: seconds per
    repeat by setting, as a result file's "seconds"): a shared machine slows both sides of one repeat alike.
    """
    repeats = range(len(times[numerator[0]]))
    return statistics.median(
        sum(times[n][r] for n in numerator) / sum(times[d][r] for d in denominator) for r in repeats
    )


def build_report(args, context, settings, times, memory) -> dict:
    device = context["device"]

    def ratio(numerator: list[str], denominator: list[str]) -> float:
        return time_ratio(times, numerator, denominator)

    def throughput(name: str) -> float:
        return settings[name][2] / statistics.median(times[name])

    def mib(name: str) -> str:
        return "n/a" if memory[name] is None else f"{memory[name]:.0f}"

    methods = [m for m in METHODS if f"{m}_train" in settings]
    image_methods = [m for m in methods if f"{m}_train_pixels" in settings]
    if device.type == "cuda":
        machine = f"{torch.cuda.get_device_name(device)}, bf16 autocast"
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        machine = f"{cores} CPU cores ({platform.processor() or platform.machine()}), float32"
    load, lengths = context["load"], context["lengths"]
    lines = [
        f"## Speed and memory ({'--quick' if args.quick else 'full'})",
        "",
        f"Machine: {machine}; torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
        f"{transformers.__version__}, Python {platform.python_version()}; load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after (other jobs shared the machine when it exceeds the core count).",
        f"Data: {context['num_rows']} examples of {context['source']}, {statistics.mean(lengths):.1f} tokens on "
        f"average (max {max(lengths)}), one synthetic {args.image_size[0]}x{args.image_size[1]} JPEG each, no "
        f"object crops; batches of {args.train_batch_size} (training) and {args.eval_batch_size} (inference), "
        "prepared in advance (data loading is timed apart); medians of "
        f"{args.repeats} interleaved repeats. Peak memory: above the resting process (weights and optimizer "
        "state excluded), resident set on CPU, allocated memory on GPU.",
    ]

    def speed_table(floor: str, methods: list[str], prefix: str = ""):
        """The table of `methods` (settings `<prefix><method>_...`) against the floor's settings `<floor>_...`."""
        lines.extend(
            [
                "",
                "| setting | training ex/s | time ÷ floor | peak MiB | inference ex/s | time ÷ floor | peak MiB |",
                "|---|---|---|---|---|---|---|",
            ]
        )

        def row(label, train_name, train_floor, inference_name, inference_floor):
            cells = [label]
            for name, floor_names in ((train_name, train_floor), (inference_name, inference_floor)):
                cells += [
                    f"{throughput(name):.1f}",
                    f"{ratio([name], floor_names):.2f}" if floor_names else "",
                    mib(name),
                ]
            lines.append("| " + " | ".join(cells) + " |")

        text_floor = {phase: [f"{floor}_text_{phase}"] for phase in ("train", "inference")}
        full_floor = {phase: [*names, f"{floor}_vision_{phase}"] for phase, names in text_floor.items()}
        row("floor: text encoder", f"{floor}_text_train", None, f"{floor}_text_inference", None)
        with_pixels = [m for m in methods if f"{prefix}{m}_train_pixels" in settings]
        if with_pixels:
            row(
                "floor: vision encoder forward (frozen)",
                f"{floor}_vision_train",
                None,
                f"{floor}_vision_inference",
                None,
            )
        for method in methods:
            name = f"{prefix}{method}"
            if method in with_pixels:
                row(
                    f"{method}, pixels (floor: text + vision)",
                    f"{name}_train_pixels",
                    full_floor["train"],
                    f"{name}_inference_pixels",
                    full_floor["inference"],
                )
                label = f"{method}, cached image features (floor: text)"
            else:
                label = f"{method} (floor: text)"
            row(label, f"{name}_train", text_floor["train"], f"{name}_inference", text_floor["inference"])

    speed_table("floor", methods)
    ner_lengths = context["ner_lengths"]
    lines += [
        "",
        f"Entity recognition: {len(ner_lengths)} windows of {context['ner_source']} (one per tweet unless longer than "
        f"the window), {statistics.mean(ner_lengths):.1f} tokens on average (max {max(ner_lengths)}), one synthetic "
        "JPEG each; batches and repeats as above, ex/s counting tweets. The floor is the same text encoder (no "
        "markers) on these batches.",
    ]
    speed_table("ner_floor", context["ner_methods"], prefix="ner_")

    lines += [
        "",
        f"Padding: time with every text padded to {PEER_LENGTH} tokens (the peers' setting) ÷ time with per-batch "
        "padding, of random batches (as train_accelerate.py draws them) and of length-grouped ones (what "
        "`--group_by_length` gives)" + (", image methods with cached features." if image_methods else "."),
        "",
        "| model | training: random | training: grouped | inference: random | inference: grouped |",
        "|---|---|---|---|---|",
    ]
    padding = {}
    for label, prefix in [("text encoder (floor)", "floor_text")] + [(m, m) for m in methods]:
        padding[label] = {
            f"{phase}_{batches}": ratio([f"{prefix}_{phase}_80"], [f"{prefix}_{phase}{suffix}"])
            for phase in ("train", "inference")
            for batches, suffix in (("random", ""), ("grouped", "_grouped"))
        }
        lines.append(f"| {label} | " + " | ".join(f"{value:.2f}x" for value in padding[label].values()) + " |")

    # The pipeline gives the model pixels; it is compared with the model forward on those same inputs.
    pipeline_share = {
        m: ratio([f"{m}_inference_pixels" if m in image_methods else f"{m}_inference"], [f"{m}_pipeline"])
        for m in methods
    }
    lines += [
        "",
        f"Pipeline: `pipeline('{PIPELINE_TASK}')` from raw text, character offsets and image files, "
        f"batch_size={args.eval_batch_size}; its throughput ÷ the model forward's on the same examples.",
        "",
        "| method | pipeline ex/s | ÷ model forward |",
        "|---|---|---|",
    ]
    for method in methods:
        lines.append(f"| {method} | {throughput(f'{method}_pipeline'):.1f} | {pipeline_share[method]:.2f} |")
    # Mixed batches (every other input without its image) in one call against the same inputs one call each.
    batching_gain = {m: ratio([f"{m}_pipeline_one_by_one"], [f"{m}_pipeline_mixed"]) for m in methods}
    lines += [
        "",
        f"The same inputs, every other one without its image: one call with batch_size={args.eval_batch_size} "
        "against one call per input.",
        "",
        "| method | mixed batch ex/s | one by one ex/s | batched ÷ one by one |",
        "|---|---|---|---|",
    ]
    for method in methods:
        lines.append(
            f"| {method} | {throughput(f'{method}_pipeline_mixed'):.1f} | "
            f"{throughput(f'{method}_pipeline_one_by_one'):.1f} | {batching_gain[method]:.2f}x |"
        )

    cache = {}
    if image_methods:
        rate = context["num_rows"] / context["encoding_seconds"]
        lines += [
            "",
            f"Image features computed once with the frozen vision encoder ({context['num_rows']} images in "
            f"{context['encoding_seconds']:.1f} s, {rate:.1f} images/s, before the first epoch), then reused: "
            "speed-up of a training step. Encoding rate by pictures per vision-encoder call (best of 2): "
            + ", ".join(f"{name}: {rate:.1f} images/s" for name, rate in context["encoding_rates"].items())
            + ".",
            "",
            "| method | model step: pixels ÷ cached | data loading + model step: pixels ÷ cached |",
            "|---|---|---|",
        ]
        for method in image_methods:
            cache[method] = {
                "step": ratio([f"{method}_train_pixels"], [f"{method}_train"]),
                "loading_and_step": ratio(
                    [f"{method}_train_pixels", "loading_pixels"], [f"{method}_train", "loading_features"]
                ),
            }
            lines.append(f"| {method} | {cache[method]['step']:.2f}x | {cache[method]['loading_and_step']:.2f}x |")

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines += ["", "| target | measured | |", "|---|---|---|"]
    recognizers = [(f"{method} (NER)", f"ner_{method}", "ner_floor") for method in context["ner_methods"]]
    for label, name, floor in [(method, method, "floor") for method in methods] + recognizers:
        steps = [("", f"{name}_train", [f"{floor}_text_train"])]
        if f"{name}_train_pixels" in settings:
            steps.append((" from pixels", f"{name}_train_pixels", [f"{floor}_text_train", f"{floor}_vision_train"]))
        for how, step, floor_names in steps:
            measured = ratio([step], floor_names)
            lines.append(
                f"| {label} training step{how} ≤ 1.3x its floor | {measured:.2f}x | {verdict(measured <= 1.3)} |"
            )
    for method in methods:
        for batches in ("random", "grouped"):
            training, inference = padding[method][f"train_{batches}"], padding[method][f"inference_{batches}"]
            lines.append(
                f"| {method}: per-batch padding ≥ 2x faster than {PEER_LENGTH} tokens, {batches} batches | training "
                f"{training:.2f}x, inference {inference:.2f}x | {verdict(min(training, inference) >= 2)} |"
            )
    for method, share in pipeline_share.items():
        lines.append(f"| {method}: pipeline ≥ 0.8x model forward | {share:.2f}x | {verdict(share >= 0.8)} |")

    return {
        "markdown": "\n".join(lines),
        # provenance()'s "device" names the machine; this one is torch's (cpu, cuda).
        "torch_device": str(device),
        "source": context["source"],
        "load_average": load,
        "examples_per_second": {name: throughput(name) for name in settings},
        "seconds": times,
        "peak_memory_mib": memory,
        "padding_fixed_over_dynamic": padding,
        "pipeline_over_forward": pipeline_share,
        "pipeline_mixed_batch_over_one_by_one": batching_gain,
        "cache_speedup": cache,
        "encoding_seconds": context["encoding_seconds"],
        "encoding_rates": context["encoding_rates"],
    }


if __name__ == "__main__":
    main()
