#!/usr/bin/env python
"""
Train and evaluate a multimodal relation-extraction model (or, on the Twitter sets, a multimodal
entity recognizer) with 🤗 Accelerate, the way the papers do: train on train, evaluate validation
after every epoch, keep the epoch with the best validation micro-F1 (over relations other than
`None`; for entities, seqeval's entity-level micro-F1), evaluate test once with it.

    accelerate launch train_accelerate.py                      # embedded demo, no data or downloads
    accelerate launch train_accelerate.py --method mmib --dataset mnre --data_dir ../shared/data/mnre
    accelerate launch train_accelerate.py --method mmib --dataset more --data_dir MORE/
    accelerate launch train_accelerate.py --method mmib --dataset mnre --data_dir MNRE/ \
        --text_backbone bert-base-uncased --vision_backbone microsoft/resnet-50 --lora
    accelerate launch train_accelerate.py --method wmajl --config_overrides "use_watcher_fusion=false,num_watchers=4"
    accelerate launch train_accelerate.py --method roc --dataset mnre --data_dir ../shared/data/mnre \
        --validation_from_train 0.1     # select on a tenth of train, report MNRE's validation once
    accelerate launch train_accelerate.py --method mmib --dataset twitter2017 --data_dir ../shared/data/twitter/twitter2017
    accelerate launch train_accelerate.py --method baseline --dataset demo-mner   # BERT-CRF on the synthetic MNER set

With no flags it writes a small synthetic dataset in MNRE's layout (the relation is visible only in
the image) and trains MMIB on the embedded offline backbones (all-MiniLM-L6-v2, ImageNet MobileNetV2).
The output folder loads with `AutoModel`, `AutoProcessor` and `pipeline(..., trust_remote_code=True)`.
"""

import argparse
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, set_seed
from huggingface_hub import is_offline_mode
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import SchedulerType, get_scheduler

from modeling_mre import (
    add_image_features,
    carve_validation_from_train,
    embedded_text_backbone,
    embedded_vision_backbone,
    push_model_folder,
    save_hub_folder,
    write_model_card,
)
from modeling_mre.atomic import atomic_folder
from modeling_mre.data.feature_cache import can_cache_image_features
from modeling_mre.training import (
    TASKS,
    LengthGroupedSampler,
    check_finite,
    encoder_parameter_ids,
    find_checkpoint,
    load_saved_weights,
    lora_config,
    loss_terms,
    parameter_groups,
    parse_config_overrides,
    save_checkpoint,
    task_of_dataset,
)


logger = get_logger(__name__)

BEST_MODEL_DIR = "best_model"
FEATURE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
LORA_BASE_DIR, LORA_ADAPTER_DIR = "lora_base", "lora_adapter"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = sorted({method for task in TASKS.values() for method in task.methods})
    parser.add_argument("--method", choices=methods, default="mmib")
    parser.add_argument(
        "--dataset",
        choices=[dataset for task in TASKS.values() for dataset in task.datasets],
        default="demo",
        help="demo (relations) and demo-mner (entities): the embedded synthetic sets; twitter2015 and twitter2017: MNER",
    )
    parser.add_argument(
        "--data_dir", type=str, default=None, help="Folder in MNRE's, MORE's or the Twitter sets' layout."
    )
    parser.add_argument(
        "--image_dir", type=str, default=None, help="Images, if not <data_dir>/img_org (Twitter: <data_dir>/images)."
    )
    parser.add_argument(
        "--crop_dir", type=str, default=None, help="Twitter: the object crops' folder (<split>/crops/)."
    )
    parser.add_argument("--text_backbone", type=str, default=None, help="Hub id or folder; default: embedded MiniLM.")
    parser.add_argument(
        "--vision_backbone", type=str, default=None, help="Hub id or folder; default: embedded MobileNetV2."
    )
    parser.add_argument("--output_dir", type=str, default=None, help="Default: outputs/<method>-<dataset>.")
    parser.add_argument(
        "--max_length", type=int, default=128, help="Longest tokenized input; entities are always kept."
    )
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument(
        "--group_by_length",
        action="store_true",
        help="Training batches of similar length (shuffled, seeded per epoch): less padding, faster epochs.",
    )
    parser.add_argument("--learning_rate", type=float, default=5e-5, help="Learning rate of the text encoder.")
    parser.add_argument(
        "--head_learning_rate",
        type=float,
        default=1e-3,
        help="Learning rate of the freshly initialised method layers.",
    )
    parser.add_argument(
        "--weight_decay", type=float, default=0.01, help="AdamW decay of weight matrices (none on biases and norms)."
    )
    parser.add_argument("--num_train_epochs", type=int, default=3)
    parser.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs when set.")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--lr_scheduler_type", choices=[kind.value for kind in SchedulerType], default="linear")
    parser.add_argument("--num_warmup_steps", type=int, default=None, help="Default: 6%% of the training steps.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Truncate train (for quick runs).")
    parser.add_argument(
        "--hold_out_relations",
        nargs="+",
        default=None,
        metavar="RELATION",
        help="Drop these relations' rows from train (they stay in the label set and in evaluation; ROC also leaves "
        "them out of its training softmax): how well a retrieval method finds relations it was never trained on, "
        "from their descriptions alone.",
    )
    parser.add_argument(
        "--validation_from_train",
        type=float,
        default=None,
        metavar="FRACTION",
        help="Select the best epoch on this share of train (seeded, stratified by relation) and evaluate the "
        "dataset's validation split once, as test: for data whose test split is withheld (MNRE here).",
    )
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Truncate validation and test.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--checkpointing_steps", type=str, default=None, help="'epoch' or a number of steps.")
    parser.add_argument(
        "--checkpoints_total_limit",
        type=int,
        default=None,
        help="Keep at most this many checkpoints (oldest deleted).",
    )
    parser.add_argument("--resume_from_checkpoint", type=str, default=None, help="A checkpoint folder, or 'latest'.")
    parser.add_argument("--with_tracking", action="store_true", help="Log to the trackers of --report_to.")
    parser.add_argument("--report_to", type=str, default="all")
    parser.add_argument(
        "--lora", action="store_true", help="LoRA on the pretrained encoders; the method's new layers train whole."
    )
    parser.add_argument("--lora_r", type=int, default=8)
    parser.add_argument("--lora_alpha", type=int, default=16)
    parser.add_argument("--lora_dropout", type=float, default=0.1)
    parser.add_argument(
        "--config_overrides",
        type=str,
        default=None,
        help="Fields of the method's config, as run_clm.py's: \"use_watcher_fusion=false,kl_weight=0.01,supervised_layers=[2,4]\"; "
        "values are read as JSON, else as strings. The method's ablation switches are such fields.",
    )
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument(
        "--cache_image_features",
        action="store_const",
        const=True,
        default=None,
        help="Encode every distinct picture once with the frozen vision encoder and train on the stored features "
        "(no image decoding or vision forward per step). Default: on when the vision encoder is frozen.",
    )
    parser.add_argument(
        "--no_cache_image_features",
        dest="cache_image_features",
        action="store_const",
        const=False,
        help="Read the pictures at every step instead.",
    )
    parser.add_argument(
        "--image_feature_dtype",
        choices=sorted(FEATURE_DTYPES),
        default="float16",
        help="How the cache stores features: float16 (half the disk; logits within 1e-3 of float32's) or float32 "
        "(the logits of the pixels exactly).",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="Upload the model and its card at the end.")
    parser.add_argument("--hub_model_id", type=str, default=None, help="Hub repository; default: output folder name.")
    parser.add_argument("--hub_token", type=str, default=None, help="Hub token; default: HF_TOKEN or the saved login.")
    parser.add_argument("--hub_private_repo", action="store_true", help="Create the Hub repository as private.")
    args = parser.parse_args(argv)
    if args.push_to_hub and is_offline_mode():
        parser.error("--push_to_hub needs the network, but HF_HUB_OFFLINE is set")  # before hours of training
    task = task_of_dataset(args.dataset)
    if args.dataset != task.demo_dataset and args.data_dir is None:
        parser.error(f"--dataset {args.dataset} needs --data_dir (a folder in {args.dataset.upper()}'s layout)")
    if args.method not in task.methods:
        methods = ", ".join(sorted(task.methods))
        parser.error(f"--dataset {args.dataset} is {task.description}: --method must be one of {methods}")
    for other in TASKS.values():
        for flag in other.flags:
            if flag not in task.flags and getattr(args, flag) is not None:
                parser.error(f"--{flag} is for {other.description}; --dataset {args.dataset} is {task.description}")
    if args.checkpointing_steps not in (None, "epoch") and not args.checkpointing_steps.isdigit():
        parser.error("--checkpointing_steps must be 'epoch' or a number of steps")
    for flag, minimum in (
        ("max_length", 1),
        ("per_device_train_batch_size", 1),
        ("per_device_eval_batch_size", 1),
        ("num_train_epochs", 1),
        ("max_train_steps", 1),
        ("gradient_accumulation_steps", 1),
        ("num_warmup_steps", 0),
        ("max_train_samples", 1),
        ("max_eval_samples", 1),
        ("checkpoints_total_limit", 1),
        ("lora_r", 1),
        ("dataloader_num_workers", 0),
    ):
        if getattr(args, flag) is not None and getattr(args, flag) < minimum:
            parser.error(f"--{flag} must be at least {minimum}, got {getattr(args, flag)}")
    if args.validation_from_train is not None and not 0 < args.validation_from_train < 1:
        parser.error(f"--validation_from_train must be a fraction in (0, 1), got {args.validation_from_train}")
    if not 0 <= args.lora_dropout < 1:
        parser.error(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")
    for flag in ("data_dir", "image_dir", "crop_dir"):  # before the model is built, not when the data is read
        if getattr(args, flag) is not None and not os.path.isdir(getattr(args, flag)):
            parser.error(f"--{flag} {getattr(args, flag)} is not a folder")
    if args.output_dir is None:
        args.output_dir = os.path.join("outputs", f"{args.method}-{args.dataset}")
    return args


def load_data(args, accelerator):
    """The splits to train, select and test on: the task's reader, then the flags that reshape them."""
    with accelerator.main_process_first():  # the main process writes the demo, the others read it
        dataset = task_of_dataset(args.dataset).read(
            args.dataset,
            args.data_dir,
            image_dir=args.image_dir,
            crop_dir=args.crop_dir,
            demo_dir=Path(args.output_dir) / "demo_data",
            seed=args.seed,
        )
    if args.validation_from_train is not None:
        dataset = carve_validation_from_train(dataset, args.validation_from_train, args.seed)
    if args.hold_out_relations:
        names = dataset["train"].features["relation"].names
        unknown = sorted(set(args.hold_out_relations) - set(names))
        if unknown:
            raise ValueError(f"--hold_out_relations: {unknown} are not relations of the dataset ({', '.join(names)})")
        held_out = {names.index(relation) for relation in args.hold_out_relations}
        dataset["train"] = dataset["train"].filter(lambda relation: relation not in held_out, input_columns="relation")
    for split, limit in (
        ("train", args.max_train_samples),
        ("validation", args.max_eval_samples),
        ("test", args.max_eval_samples),
    ):
        if split in dataset and limit is not None:
            dataset[split] = dataset[split].select(range(min(limit, len(dataset[split]))))
    return dataset


def build_model_and_processor(args, task, train_split, label_names, accelerator):
    with accelerator.main_process_first():  # converts the embedded MobileNetV2 once, on the main process
        text_backbone = args.text_backbone or str(embedded_text_backbone())
        vision_backbone = args.vision_backbone or str(embedded_vision_backbone())
    processor = task.processor_class.from_backbones(text_backbone, vision_backbone, max_length=args.max_length)
    model_class = task.methods[args.method]
    uses_images = model_class.visual_features is not None
    # What the data decides (a relation extractor's object tails), and relations held out of training
    # for a method that can leave them out of its softmax altogether (ROC).
    from_data = task.config_from_data(train_split)
    if args.hold_out_relations and "held_out_relations" in model_class.config_class.__dataclass_fields__:
        from_data["held_out_relations"] = args.hold_out_relations
    model = model_class.from_backbones(
        text_backbone,
        vision_backbone if uses_images else None,
        processor=processor,  # the markers' ids and embeddings; the tokenizer for ROC's descriptions
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        **from_data,
        **parse_config_overrides(args.config_overrides, model_class.config_class),
    )
    return model, processor, uses_images


def use_feature_cache(args, model) -> bool:
    """Whether to train on cached image features: --cache_image_features, else whenever the vision encoder is frozen."""
    possible = can_cache_image_features(model)
    if args.cache_image_features and not possible:
        raise ValueError(f"--cache_image_features needs a frozen vision encoder, which --method {args.method} lacks")
    return possible if args.cache_image_features is None else args.cache_image_features


def main(argv=None):
    args = parse_args(argv)
    accelerator_kwargs = {
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        # Shuffling from (seed, epoch) rather than the global RNG lets a resumed run replay the epoch.
        "dataloader_config": DataLoaderConfiguration(use_seedable_sampler=True),
    }
    if args.with_tracking:
        accelerator_kwargs.update(log_with=args.report_to, project_dir=args.output_dir)
    accelerator = Accelerator(**accelerator_kwargs)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    task = task_of_dataset(args.dataset)
    dataset = load_data(args, accelerator)
    label_names = task.label_names(dataset["train"].features)
    model, processor, uses_images = build_model_and_processor(args, task, dataset["train"], label_names, accelerator)
    model_class = type(model)
    encoder_ids = encoder_parameter_ids(model)  # before PEFT wraps it: its additions are new layers
    if args.lora:
        from peft import get_peft_model

        # The adapter needs its starting point: the pretrained encoders with the resized vocabulary.
        if accelerator.is_main_process:
            save_hub_folder(model, processor, output_dir / LORA_BASE_DIR)
        markers = getattr(processor, "marker_ids", [])  # an entity recognizer adds no tokens
        model = get_peft_model(model, lora_config(model, markers, args.lora_r, args.lora_alpha, args.lora_dropout))
        if accelerator.is_main_process:
            model.print_trainable_parameters()

    feature_cache, base_model = None, model.get_base_model() if args.lora else model
    if use_feature_cache(args, base_model):
        model.to(accelerator.device)  # encode on the training device; prepare() would move it there anyway
        with accelerator.main_process_first():  # the main process writes the cache, the others read it
            dataset, feature_cache = add_image_features(
                dataset,
                base_model,
                processor,
                batch_size=args.per_device_eval_batch_size,
                dtype=FEATURE_DTYPES[args.image_feature_dtype],
            )
    collate, eval_collate = task.make_collate_fns(processor, uses_images, feature_cache)
    loader_kwargs = {"collate_fn": collate, "num_workers": args.dataloader_num_workers}
    # A loader's own generator: creating an iterator would otherwise draw from the global RNG, so a
    # resumed run (which creates one more) would see different dropout and sampling noise.
    sampling = {"shuffle": True}
    if args.group_by_length:
        lengths = task.example_lengths(dataset["train"], processor)
        sampling = {"sampler": LengthGroupedSampler(lengths, args.per_device_train_batch_size, seed=args.seed)}
    train_dataloader = DataLoader(
        dataset["train"],
        batch_size=args.per_device_train_batch_size,
        generator=torch.Generator().manual_seed(args.seed),
        **sampling,
        **loader_kwargs,
    )
    eval_dataloaders = {
        split: DataLoader(
            dataset[split],
            batch_size=args.per_device_eval_batch_size,
            generator=torch.Generator(),
            **{**loader_kwargs, "collate_fn": eval_collate},
        )
        for split in ("validation", "test")
        if split in dataset
    }
    if "validation" not in eval_dataloaders:
        raise ValueError("the dataset has no validation split to select the best epoch on")

    # The pretrained encoders are fine-tuned gently; the method's new layers start from scratch.
    optimizer = torch.optim.AdamW(
        parameter_groups(model, encoder_ids, args.learning_rate, args.head_learning_rate, args.weight_decay)
    )

    steps_per_epoch = math.ceil(len(train_dataloader) / accelerator.num_processes / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * steps_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    num_warmup_steps = args.num_warmup_steps
    if num_warmup_steps is None:
        num_warmup_steps = math.ceil(0.06 * args.max_train_steps)
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=num_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )

    model, optimizer, train_dataloader, lr_scheduler, *eval_loaders = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler, *eval_dataloaders.values()
    )
    eval_dataloaders = dict(zip(eval_dataloaders, eval_loaders))

    if args.with_tracking:
        accelerator.init_trackers(
            "mre", {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )

    total_batch_size = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(f"  Method = {args.method}, dataset = {args.dataset}, processes = {accelerator.num_processes}")
    logger.info(f"  Num examples = {len(dataset['train'])}, num epochs = {args.num_train_epochs}")
    logger.info(f"  Total train batch size = {total_batch_size}, optimization steps = {args.max_train_steps}")

    state = {"completed_steps": 0, "epoch": 0, "best_epoch": None, "best_validation_f1": -1.0, "log_history": []}
    resume_step_in_epoch = 0
    if args.resume_from_checkpoint:
        checkpoint = find_checkpoint(output_dir, args.resume_from_checkpoint)
        accelerator.print(f"Resumed from checkpoint: {checkpoint}")
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / "training_state.json").read_text())
        resume_step_in_epoch = state["completed_steps"] - state["epoch"] * steps_per_epoch

    progress_bar = tqdm(
        range(args.max_train_steps), initial=state["completed_steps"], disable=not accelerator.is_local_main_process
    )
    for epoch in range(state["epoch"], args.num_train_epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        if args.group_by_length:
            sampling["sampler"].set_epoch(epoch)
        epoch_start = time.perf_counter()
        active_dataloader = train_dataloader
        if resume_step_in_epoch:
            active_dataloader = accelerator.skip_first_batches(
                train_dataloader, resume_step_in_epoch * args.gradient_accumulation_steps
            )
            resume_step_in_epoch = 0
        # Sums over this epoch's batches of the total loss and of each term (see `loss_terms`).
        running_losses, running_batches = {}, 0
        for batch in active_dataloader:
            with accelerator.accumulate(model):
                outputs = model(**batch)
                check_finite(accelerator, outputs.loss, state, output_dir)
                accelerator.backward(outputs.loss)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            terms = {"loss": outputs.loss, **loss_terms(model_class, outputs)}
            values = torch.stack([value.detach().float() for value in terms.values()]).tolist()  # one device sync
            for name, value in zip(terms, values):
                running_losses[name] = running_losses.get(name, 0.0) + value
            running_batches += 1
            if not accelerator.sync_gradients:
                continue
            progress_bar.update(1)
            state["completed_steps"] += 1
            progress_bar.set_postfix(
                {name: f"{total / running_batches:.4f}" for name, total in running_losses.items()}
            )
            if args.checkpointing_steps and args.checkpointing_steps.isdigit():
                if state["completed_steps"] % int(args.checkpointing_steps) == 0:
                    save_checkpoint(
                        accelerator,
                        output_dir / f"step_{state['completed_steps']}",
                        state,
                        args.checkpoints_total_limit,
                    )
            if state["completed_steps"] >= args.max_train_steps:
                break
        epoch_seconds = time.perf_counter() - epoch_start

        metrics = task.evaluate(model, eval_dataloaders["validation"], accelerator, label_names, "validation")
        record = {
            "epoch": epoch + 1,
            "step": state["completed_steps"],
            **{f"train_{name}": total / max(running_batches, 1) for name, total in running_losses.items()},
            "epoch_seconds": epoch_seconds,
            **{f"validation_{k}": v for k, v in metrics.items() if not isinstance(v, (dict, list))},
        }
        state["log_history"].append(record)
        accelerator.print(
            f"epoch {epoch + 1}: val micro-F1 {metrics['micro_f1']:.4f} P {metrics['micro_precision']:.4f} "
            f"R {metrics['micro_recall']:.4f} acc {metrics['accuracy']:.4f} ({epoch_seconds:.0f} s training)"
        )
        if args.with_tracking:
            accelerator.log({k: v for k, v in record.items() if k != "epoch"}, step=state["completed_steps"])

        # Peers keep the latest epoch among equals (>=).
        if metrics["micro_f1"] >= state["best_validation_f1"]:
            state["best_validation_f1"], state["best_epoch"] = metrics["micro_f1"], epoch + 1
            with atomic_folder(
                output_dir / BEST_MODEL_DIR,
                is_main_process=accelerator.is_main_process,
                wait_for_everyone=accelerator.wait_for_everyone,
            ) as staging:
                accelerator.save_model(model, staging)
        state["epoch"] = epoch + 1
        if args.checkpointing_steps == "epoch":
            save_checkpoint(accelerator, output_dir / f"epoch_{epoch + 1}", state, args.checkpoints_total_limit)
        if state["completed_steps"] >= args.max_train_steps:
            break
    progress_bar.close()

    # Test once, with the epoch chosen on validation.
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    load_saved_weights(unwrapped, output_dir / BEST_MODEL_DIR)
    results = {
        "method": args.method,
        "task": unwrapped.task,
        "dataset": args.dataset,
        "best_epoch": state["best_epoch"],
        "held_out_relations": args.hold_out_relations or [],
        "validation_from_train": args.validation_from_train,
        "seed": args.seed,
        "num_processes": accelerator.num_processes,
        "validation": task.evaluate(model, eval_dataloaders["validation"], accelerator, label_names, "validation"),
        "seconds_per_epoch": sum(r["epoch_seconds"] for r in state["log_history"]) / len(state["log_history"]),
        "log_history": state["log_history"],
    }
    if "test" in eval_dataloaders:
        results["test"] = task.evaluate(model, eval_dataloaders["test"], accelerator, label_names, "test")
    for split in ("validation", "test"):
        if split in results:
            m = results[split]
            accelerator.print(
                f"{split} (epoch {state['best_epoch']}): micro-F1 {m['micro_f1']:.4f} P {m['micro_precision']:.4f} "
                f"R {m['micro_recall']:.4f} acc {m['accuracy']:.4f}"
            )

    if accelerator.is_main_process:
        # The whole model folder (weights, code, processor, results, card) appears at once, beside
        # the run's checkpoints: a kill leaves the previous folder or this one, never a mix.
        with atomic_folder(output_dir, keep_other_entries=True) as staging:
            if args.lora:
                # The adapter (LoRA weights, marker rows, method layers) over lora_base, and a merged
                # copy for AutoModel and the pipeline.
                unwrapped.peft_config["default"].base_model_name_or_path = str((output_dir / LORA_BASE_DIR).resolve())
                unwrapped.save_pretrained(staging / LORA_ADAPTER_DIR)
                unwrapped = unwrapped.merge_and_unload()
            unwrapped.cpu().eval().save_pretrained(staging)  # weights, config, code and pipeline
            processor.save_pretrained(staging)
            (staging / "eval_results.json").write_text(json.dumps(results, indent=2))
            # README.md and figures/, from eval_results.json
            write_model_card(staging, repo_id=str(output_dir), training_args=vars(args))
        shutil.rmtree(output_dir / BEST_MODEL_DIR)
        accelerator.print(f"Saved the model to {output_dir} (load it with trust_remote_code=True)")
        if args.push_to_hub:
            repo_id = args.hub_model_id or output_dir.absolute().name
            commit = push_model_folder(output_dir, repo_id, token=args.hub_token, private=args.hub_private_repo)
            accelerator.print(f"Pushed to {commit.commit_url}")
    if args.with_tracking:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return results


if __name__ == "__main__":
    main()
